"""Load the organisation tree from config/org.toml into the unit table (insert or update by code)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlmodel import Session, col, select

from adaldyk_bots.storage.models import Unit, UnitDeputy

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


# --- who answers for a unit today -----------------------------------------------------------------


@dataclass(frozen=True)
class Responsible:
    """The person who answers for a unit on a given day: its head, or the deputy acting for the head."""

    unit_id: int
    name: str
    position: str
    user_id: int | None  # their workspace account, when org.toml names one
    deputy: bool  # acting for the head (UnitDeputy range covers the day)


def acting_head(s: Session, unit_id: int, on: date) -> Responsible | None:
    """The deputy whose range covers `on` (Asia/Almaty date; the latest-starting one if ranges overlap),
    otherwise the head; None when the unit names neither."""
    deputy = s.exec(
        select(UnitDeputy)
        .where(UnitDeputy.unit_id == unit_id, UnitDeputy.starts_on <= on, UnitDeputy.ends_on >= on)
        .order_by(col(UnitDeputy.starts_on).desc(), col(UnitDeputy.id).desc())
    ).first()
    if deputy is not None:
        return Responsible(unit_id, deputy.name, deputy.position, deputy.user_id, True)
    unit = s.get(Unit, unit_id)
    if unit is None or not (unit.head_name or unit.head_user_id):
        return None
    return Responsible(unit_id, unit.head_name or "", unit.head_position or "", unit.head_user_id, False)


def chain(s: Session, unit_id: int) -> list[int]:
    """`unit_id` and its chain of command upwards (parent, grandparent … the ministry), nearest first."""
    parents = dict(s.exec(select(Unit.id, Unit.parent_id)).all())
    out: list[int] = []
    current: int | None = unit_id
    while current is not None and current not in out:
        out.append(current)
        current = parents.get(current)
    return out


def superior(s: Session, unit_id: int) -> int | None:
    """The unit above `unit_id` (its head is the one an escalation goes to), or None at the top."""
    unit = s.get(Unit, unit_id)
    return unit.parent_id if unit is not None else None


PROJECT_OFFICE = "project_office"  # the unit code of «Адалдық алаңы» (config/org.toml)


def unit_by_code(s: Session, code: str) -> Unit | None:
    return s.exec(select(Unit).where(Unit.code == code)).first()
