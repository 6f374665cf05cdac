"""Load the organisation tree from config/org.toml into the unit table (insert or update by code)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sqlmodel import Session, select

from adaldyk_bots.storage.models import Unit

ORG_FILE = "org.toml"


def sync_units(s: Session, path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        entries = tomllib.load(fh).get("unit", [])
    by_code = {u.code: u for u in s.exec(select(Unit))}
    for entry in entries:
        for required in ("code", "name_ru", "name_kk"):
            if not entry.get(required):
                raise ValueError(f"{path}: a [[unit]] entry has no {required}: {entry!r}")
        unit = by_code.get(entry["code"]) or Unit(code=entry["code"], name_ru="", name_kk="")
        unit.name_ru, unit.name_kk = entry["name_ru"], entry["name_kk"]
        unit.head_name = entry.get("head")
        parent = entry.get("parent")
        if parent is not None:
            if parent not in by_code:
                raise ValueError(f"{path}: unit {entry['code']} names parent {parent!r} before it is defined")
            unit.parent_id = by_code[parent].id
        s.add(unit)
        s.flush()
        by_code[unit.code] = unit
    return len(entries)
