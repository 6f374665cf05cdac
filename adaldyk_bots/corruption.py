"""Corruption reports: handled by the project office alone, hidden from the unit they are about.

A moderator marks an appeal as a report concerning unit X (`mark_corruption_report`): its category
becomes corruption_report, X is recorded as the concerned unit, the appeal becomes confidential and goes
to the project office «Адалдық алаңы». From then on the units that must not see it (`hidden_from`) are:

    X itself, every unit above X (its chain of command, org.chain: the committee, the ministry), and
    every unit below X (its sub-units: a committee's regional departments);
    but never the project office (nor a unit under it): it is the one that handles the report.

So a report about the ministry root (the minister's own office) is hidden from every unit but the
project office — the whole ministry is its chain of command. A report about the project office itself
stays visible to the office (nobody else in the ministry may take it over); such a report is for the
Anti-Corruption Agency, and the moderators forward it there (R5).

The rule is on people's units, not on their roles: a moderator, auditor or administrator whose account
names a unit in that set is excluded like an officer of it; accounts with no unit (the project office's
moderators usually) are not. It is applied at the data layer: `access.appeal_scope` (every list, count,
search, export and API route), `access.visible_appeal` (the same 404 as a missing number), the inbox's
live stream (`Viewer.sees`), staff notices (`notice_recipient`: such a notice goes to the project office
instead), and `workflow.assign_unit` (such a report cannot be assigned into that set).
"""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session, select

from adaldyk_bots import audit
from adaldyk_bots.domain import Category
from adaldyk_bots.errors import Conflict, StatusUnchanged, UnknownUnit
from adaldyk_bots.org import PROJECT_OFFICE, unit_by_code
from adaldyk_bots.storage.db import require_id, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, StaffUser, Unit


class UnitAssigner(Protocol):
    """workflow.Workflow's unit step (a protocol: the workflow imports this module for its guard)."""

    def assign_unit(self, s: Session, appeal: Appeal, unit_code: str, *, actor: str) -> AppealEvent: ...


__all__ = [
    "concealed_reports",
    "hidden_for_appeal",
    "hidden_from",
    "office_units",
    "mark_corruption_report",
    "notice_recipient",
]


class _Tree:
    """(id → parent) of every unit, read once: the org tree is small and changes only on migrate."""

    def __init__(self, s: Session) -> None:
        self.parents: dict[int, int | None] = {
            uid: parent for uid, parent in s.exec(select(Unit.id, Unit.parent_id)).all() if uid is not None
        }
        self.children: dict[int, list[int]] = {}
        for uid, parent in self.parents.items():
            if parent is not None:
                self.children.setdefault(parent, []).append(uid)
        office = s.exec(select(Unit.id).where(Unit.code == PROJECT_OFFICE)).first()
        self.office: set[int] = self.below(office) if office is not None else set()

    def above(self, unit_id: int) -> set[int]:
        out: set[int] = set()
        current: int | None = unit_id
        while current is not None and current not in out:
            out.add(current)
            current = self.parents.get(current)
        return out

    def below(self, unit_id: int) -> set[int]:
        out, todo = {unit_id}, [unit_id]
        while todo:
            for child in self.children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out


def hidden_from(s: Session, concerned_unit_id: int) -> set[int]:
    """The units that must never see a report about `concerned_unit_id` (module docstring)."""
    tree = _Tree(s)
    return (tree.above(concerned_unit_id) | tree.below(concerned_unit_id)) - tree.office


def hidden_for_appeal(s: Session, appeal_id: int | None) -> frozenset[int]:
    """The units that must never hear of `appeal_id`: `hidden_from` its concerned unit; none when the
    appeal is no corruption report (or there is no appeal)."""
    appeal = s.get(Appeal, appeal_id) if appeal_id is not None else None
    if appeal is None or appeal.concerned_unit_id is None:
        return frozenset()
    return frozenset(hidden_from(s, appeal.concerned_unit_id))


def office_units(s: Session) -> frozenset[int]:
    """The project office and the units under it: never hidden from any report."""
    return frozenset(_Tree(s).office)


def concealed_reports(s: Session, unit_id: int | None) -> frozenset[int]:
    """The concerned units whose reports a person of `unit_id` must not see: reports about their own
    unit, any unit above it or any unit below it (the converse of `hidden_from`). None: no unit."""
    if unit_id is None:
        return frozenset()
    tree = _Tree(s)
    if unit_id in tree.office:
        return frozenset()
    return frozenset(tree.above(unit_id) | tree.below(unit_id))


def mark_corruption_report(
    workflow: UnitAssigner, s: Session, appeal: Appeal, concerned_code: str, *, actor: str
) -> AppealEvent:
    """Make `appeal` a confidential corruption report about the unit `concerned_code`, handled by the
    project office; recorded in the appeal's history and the audit log. Works in the caller's
    transaction (never commits); the caller checked that the viewer is a moderator."""
    concerned = unit_by_code(s, concerned_code)
    if concerned is None:
        raise UnknownUnit(f"unknown unit {concerned_code!r}")
    office = unit_by_code(s, PROJECT_OFFICE)
    if office is None:
        raise Conflict("there is no project office unit: load config/org.toml with `adaldyk migrate`")
    if (
        appeal.category == Category.CORRUPTION_REPORT.value
        and appeal.concerned_unit_id == concerned.id
        and appeal.confidential
        and appeal.unit_id == office.id
    ):
        raise StatusUnchanged(f"appeal {appeal.number} is already a report about {concerned.code}")
    now = utcnow()
    hidden = hidden_from(s, require_id(concerned))
    detail: dict[str, object] = {
        "concerned": concerned.code,
        "from_category": appeal.category,
        "from_unit": appeal.unit_id,
    }
    # Set before the unit changes: assign_unit refuses a unit in the hidden set, and the office is not.
    appeal.category = Category.CORRUPTION_REPORT.value
    appeal.concerned_unit_id = concerned.id
    appeal.confidential = True
    if appeal.unit_id != office.id:
        workflow.assign_unit(s, appeal, PROJECT_OFFICE, actor=actor)
    if appeal.assignee_id is not None:
        person = s.get(StaffUser, appeal.assignee_id)
        if person is not None and person.unit_id in hidden:
            detail["assignee_removed"] = person.username
            appeal.assignee_id = None
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    event = AppealEvent(
        appeal_id=require_id(appeal), kind="corruption_report", actor=actor, detail=detail, created_at=now
    )
    s.add(event)
    s.flush()
    audit.record(s, actor=actor, action="appeal.corruption_report", subject=appeal.number, detail=detail)
    return event


def notice_recipient(
    s: Session, *, appeal_id: int | None, unit_id: int | None, user_id: int | None
) -> tuple[int | None, int | None]:
    """(unit_id, user_id) a staff notice about `appeal_id` may go to: unchanged, unless the appeal is a
    report hidden from that unit or that person's unit — then the project office (and nobody by name)."""
    hidden = hidden_for_appeal(s, appeal_id)
    if not hidden:
        return unit_id, user_id
    person = s.get(StaffUser, user_id) if user_id is not None else None
    person_unit = person.unit_id if person is not None else None
    if (unit_id is not None and unit_id in hidden) or (person_unit is not None and person_unit in hidden):
        office = unit_by_code(s, PROJECT_OFFICE)
        return (office.id if office is not None else None), None
    return unit_id, user_id
