"""Who may see and change what: the one place for the scope rule (DESIGN invariant 6, STYLE habit 12).

Roles:
    admin      every appeal, plus staff accounts and settings
    moderator  the project office: every appeal
    officer    the appeals assigned to their unit and its sub-units; nothing unassigned
    auditor    every appeal, read-only (plus the audit log)

Corruption reports (corruption.py): whoever's account names a unit that a report is about, a unit above
it or a unit below it never sees that report, whatever the role (`Viewer.concealed`); the project
office always does.

Every reader of appeals — workspace pages, the JSON API, search, counts, exports — filters with
`appeal_scope(viewer)` or opens one appeal with `visible_appeal`, so an appeal outside the scope is
answered exactly like a number that does not exist. No web imports here: the CLI and tests use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, false, or_, true
from sqlmodel import Session, col, select

from adaldyk_bots.corruption import concealed_reports
from adaldyk_bots.errors import AppealNotFound, Forbidden
from adaldyk_bots.storage.models import Appeal, StaffUser, Unit

__all__ = [
    "Role",
    "Viewer",
    "appeal_scope",
    "assignable_staff",
    "require_admin",
    "require_write",
    "subunit_ids",
    "viewer_for",
    "visible_appeal",
]


class Role(StrEnum):
    ADMIN = "admin"
    MODERATOR = "moderator"
    OFFICER = "officer"
    AUDITOR = "auditor"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)


@dataclass(frozen=True)
class Viewer:
    """The staff user behind a request, with the set of units whose appeals they may see."""

    user_id: int
    username: str
    full_name: str
    role: Role
    unit_id: int | None
    # None: every appeal. A set (possibly empty): only appeals assigned to one of these units.
    unit_ids: frozenset[int] | None
    language: str | None = None
    # Corruption reports about these units are hidden from this viewer (corruption.concealed_reports).
    concealed: frozenset[int] = frozenset()

    @property
    def can_write(self) -> bool:
        return self.role != Role.AUDITOR

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        """How the appeal history names this person (AppealEvent.actor)."""
        return f"user:{self.username}"

    def sees_unit(self, unit_id: int | None) -> bool:
        return self.unit_ids is None or (unit_id is not None and unit_id in self.unit_ids)

    def sees(self, unit_id: int | None, concerned_unit_id: int | None) -> bool:
        """`appeal_scope` in memory, for an appeal's unit and concerned unit (the inbox's live stream)."""
        return self.sees_unit(unit_id) and (
            concerned_unit_id is None or concerned_unit_id not in self.concealed
        )


def subunit_ids(s: Session, unit_id: int) -> frozenset[int]:
    """`unit_id` and every unit below it (unit.parent_id), however deep; cycles cannot loop forever."""
    # The org tree is small (hundreds of units) and changes only on `adaldyk migrate`: one read of
    # (id, parent_id) and a walk in memory is simpler and faster than a recursive CTE on two dialects.
    children: dict[int, list[int]] = {}
    for child, parent in s.exec(select(Unit.id, Unit.parent_id)).all():
        if child is not None and parent is not None:
            children.setdefault(parent, []).append(child)
    seen = {unit_id}
    todo = [unit_id]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return frozenset(seen)


def viewer_for(s: Session, user: StaffUser) -> Viewer:
    """The viewer for an account already authenticated (session cookie or API token)."""
    if user.id is None:
        raise ValueError("viewer_for needs a stored user")
    try:
        role = Role(user.role)
    except ValueError:
        # A role this version does not know sees nothing and changes nothing, rather than everything.
        role = Role.AUDITOR
        return Viewer(user.id, user.username, user.full_name, role, user.unit_id, frozenset(), user.language)
    unit_ids: frozenset[int] | None = None
    if role == Role.OFFICER:
        unit_ids = subunit_ids(s, user.unit_id) if user.unit_id is not None else frozenset()
    return Viewer(
        user_id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=role,
        unit_id=user.unit_id,
        unit_ids=unit_ids,
        language=user.language,
        concealed=concealed_reports(s, user.unit_id),
    )


def appeal_scope(viewer: Viewer) -> ColumnElement[bool]:
    """The SQL condition on `Appeal` for the appeals this viewer may see; add it to every query."""
    if viewer.unit_ids is not None and not viewer.unit_ids:
        return false()
    units = true() if viewer.unit_ids is None else col(Appeal.unit_id).in_(sorted(viewer.unit_ids))
    if not viewer.concealed:
        return units
    reports = or_(
        col(Appeal.concerned_unit_id).is_(None),
        col(Appeal.concerned_unit_id).not_in(sorted(viewer.concealed)),
    )
    return and_(units, reports)


def not_found(number: str) -> AppealNotFound:
    """The one refusal for "no such appeal" and "not yours": the same words, only the number differs."""
    return AppealNotFound(f"appeal {number} not found")


def visible_appeal(s: Session, viewer: Viewer, number: str) -> Appeal:
    """The appeal with this public number if the viewer may see it; otherwise AppealNotFound, exactly
    as for a number that does not exist."""
    appeal = s.exec(select(Appeal).where(Appeal.number == number.upper(), appeal_scope(viewer))).first()
    if appeal is None:
        raise not_found(number)
    return appeal


def _ancestors(s: Session, unit_id: int) -> set[int]:
    """`unit_id` and every unit above it."""
    parents = dict(s.exec(select(Unit.id, Unit.parent_id)).all())
    seen: set[int] = set()
    current: int | None = unit_id
    while current is not None and current not in seen:
        seen.add(current)
        current = parents.get(current)
    return seen


def assignable_staff(s: Session, appeal: Appeal) -> list[StaffUser]:
    """Who may be assigned this appeal as the person in charge: enabled accounts that can see it and
    may write — admins, moderators, and officers of its unit or a unit above it. Auditors never."""
    users = s.exec(
        select(StaffUser)
        .where(
            col(StaffUser.disabled_at).is_(None),
            col(StaffUser.role).in_([Role.ADMIN.value, Role.MODERATOR.value, Role.OFFICER.value]),
        )
        .order_by(col(StaffUser.full_name), col(StaffUser.username))
    ).all()
    above = _ancestors(s, appeal.unit_id) if appeal.unit_id is not None else set()
    return [u for u in users if u.role != Role.OFFICER or (u.unit_id is not None and u.unit_id in above)]


def require_write(viewer: Viewer) -> None:
    if not viewer.can_write:
        raise Forbidden("auditors have read-only access: nothing can be changed with this account")


def require_admin(viewer: Viewer) -> None:
    # 403, not 404: the admin pages are no secret, and a clear refusal helps a moderator who followed a
    # link. Appeals are different: their existence itself is hidden from those outside the scope.
    if not viewer.is_admin:
        raise Forbidden("only administrators may manage staff accounts")
