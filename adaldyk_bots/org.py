"""The org tree in the database: config/org.toml written into the unit tables (insert or update by
code, deputies replaced), and who answers for a unit on a given day (`acting_head`, `chain`, `superior`).

The file is read and checked by org_config.py; this module only writes what it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlmodel import Session, col, delete, select

from adaldyk_bots.org_config import ORG_FILE, OrgConfig, OrgConfigError, OutsideBody, load_org
from adaldyk_bots.storage.models import StaffUser, Unit, UnitDeputy

__all__ = [
    "ORG_FILE",
    "PROJECT_OFFICE",
    "Responsible",
    "acting_head",
    "chain",
    "link_accounts",
    "link_new_account",
    "outside_bodies",
    "superior",
    "sync_units",
    "unit_by_code",
    "unit_title",
]

log = logging.getLogger(__name__)


def sync_units(s: Session, path: Path) -> int:
    """Write the units of `path` (checked first: OrgConfigError names the line and the reason).

    Units are matched by code and updated; a unit no longer in the file stays (appeals point at it).
    Each listed unit's deputies are replaced by the file's. Usernames are resolved to accounts; one
    without an account is logged as a warning (accounts are made after migrate; `link_accounts`
    runs again when one is). Returns the number of units in the file.

    Not in the audit log: like a schema migration, loading the shipped configuration is the
    operator's deployment step (the file is under version control), not a person's action."""
    config = load_org(path)
    if not config.units:
        return 0
    by_code = {u.code: u for u in s.exec(select(Unit))}
    for spec in config.parents_first():
        unit = by_code.get(spec.code) or Unit(code=spec.code, name_ru="", name_kk="")
        unit.name_ru, unit.name_kk = spec.name_ru, spec.name_kk
        unit.kind = spec.kind
        unit.head_name = spec.head
        # One column for the position: the Russian form, the staff's working language (both are in
        # the file for the pages that need the Kazakh one).
        unit.head_position = spec.head_position_ru or spec.head_position_kk or None
        unit.parent_id = by_code[spec.parent].id if spec.parent is not None else None
        unit.regions = list(spec.regions)
        unit.keywords = list(spec.keywords)
        s.add(unit)
        s.flush()
        by_code[unit.code] = unit
        s.exec(delete(UnitDeputy).where(col(UnitDeputy.unit_id) == unit.id))
        for deputy in spec.deputy:
            s.add(
                UnitDeputy(
                    unit_id=unit.id or 0,
                    name=deputy.name,
                    position=deputy.position_ru or deputy.position_kk,
                    starts_on=deputy.starts_on,
                    ends_on=deputy.ends_on,
                )
            )
    s.flush()
    missing = link_accounts(s, config)
    for username in missing:
        log.warning(
            "%s: no workspace account %r yet (it is linked once `adaldyk user create` makes it)",
            path,
            username,
        )
    return len(config.units)


def link_accounts(s: Session, config: OrgConfig) -> list[str]:
    """Point heads and deputies at the accounts `head_username` / `username` name; returns the
    usernames that have no account (yet). Deputies are matched by unit, name and dates."""
    wanted = {u.head_username for u in config.units if u.head_username} | {
        d.username for u in config.units for d in u.deputy if d.username
    }
    accounts: dict[str, int] = {}
    if wanted:
        rows = s.exec(
            select(StaffUser.username, StaffUser.id).where(col(StaffUser.username).in_(sorted(wanted)))
        )
        accounts = {name: uid for name, uid in rows if uid is not None}
    units = {u.code: u for u in s.exec(select(Unit))}
    for spec in config.units:
        unit = units.get(spec.code)
        if unit is None:
            continue
        head_id = accounts.get(spec.head_username) if spec.head_username else None
        if unit.head_user_id != head_id:
            unit.head_user_id = head_id
            s.add(unit)
        stored = list(s.exec(select(UnitDeputy).where(UnitDeputy.unit_id == unit.id)))
        for deputy in spec.deputy:
            user_id = accounts.get(deputy.username) if deputy.username else None
            for row in stored:
                same = (row.name, row.starts_on, row.ends_on) == (
                    deputy.name,
                    deputy.starts_on,
                    deputy.ends_on,
                )
                if same and row.user_id != user_id:
                    row.user_id = user_id
                    s.add(row)
    s.flush()
    return sorted(wanted - accounts.keys())


def link_new_account(s: Session, config_dir: Path) -> None:
    """After an account is made (`adaldyk user create`, /admin/users): a head or deputy the file names by
    that username gets it at once. A file broken since start-up is logged, not fatal: the account is
    still made, and the next `adaldyk migrate` (which refuses the file) says what to fix."""
    try:
        config = load_org(config_dir / ORG_FILE)
    except OrgConfigError as exc:
        log.warning("accounts not linked to heads and deputies: %s", exc)
        return
    link_accounts(s, config)


def outside_bodies(config_dir: Path) -> tuple[OutsideBody, ...]:
    """The bodies outside the ministry appeals are forwarded to (R5), from config/org.toml."""
    return load_org(config_dir / ORG_FILE).outside_bodies


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


def unit_title(s: Session, unit_id: int, language: str | None) -> str:
    """«The unit's name» in `language` for a staff notice (Kazakh unless "ru"/"en", which read the Russian
    name); its code when it has no name, its id when it is gone."""
    unit = s.get(Unit, unit_id)
    if unit is None:
        return str(unit_id)
    return f"«{(unit.name_kk if language == 'kk' or language is None else unit.name_ru) or unit.code}»"
