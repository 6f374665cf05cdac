"""Shared pieces of the notices / four-eyes / feedback tests: a small org (a committee over a department,
the project office) with the heads' and a deputy's accounts, and a formal appeal in the department."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session, select

from adaldyk_bots.access import Viewer, viewer_for
from adaldyk_bots.accounts import hash_password
from adaldyk_bots.org import PROJECT_OFFICE
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.storage.models import Appeal, StaffUser, Unit, UnitDeputy
from tests.web_support import PASSWORD


@dataclass(frozen=True)
class Org:
    committee: int
    department: int
    office: int
    committee_head: int  # user ids
    department_head: int
    deputy: int
    office_head: int
    officer: int  # writes answers in the department


def _user(s: Session, username: str, full_name: str, role: str, unit_id: int | None) -> int:
    user = StaffUser(
        username=username,
        full_name=full_name,
        password_hash=hash_password(PASSWORD),  # the pages' tests log in as these people
        role=role,
        unit_id=unit_id,
        created_at=utcnow(),
    )
    s.add(user)
    s.flush()
    assert user.id is not None
    return user.id


def seed_org(engine: object, *, deputy_from: date | None = None, deputy_to: date | None = None) -> Org:
    """The committee heads the department; the department's deputy acts from `deputy_from` to
    `deputy_to` (default: a range that ended last month, so the head approves)."""
    today = utcnow().date()
    deputy_from = deputy_from or today - timedelta(days=60)
    deputy_to = deputy_to or today - timedelta(days=30)
    with Session(engine) as s:  # type: ignore[arg-type]
        units = {u.code: u for u in s.exec(select(Unit))}
        office = units.get(PROJECT_OFFICE) or Unit(
            code=PROJECT_OFFICE, name_ru="Проектный офис", name_kk="Жобалық офис"
        )
        committee = Unit(code="t_committee", name_ru="Комитет", name_kk="Комитет")
        s.add(office)
        s.add(committee)
        s.flush()
        department = Unit(
            code="t_department", name_ru="Департамент", name_kk="Департамент", parent_id=committee.id
        )
        s.add(department)
        s.flush()
        ids = {
            "committee_head": _user(s, "t_chead", "Ахметов Ерлан Серікұлы", "officer", committee.id),
            "department_head": _user(s, "t_dhead", "Сейтқали Айгерім Болатқызы", "officer", department.id),
            "deputy": _user(s, "t_deputy", "Иванов Пётр Сергеевич", "officer", department.id),
            "office_head": _user(s, "t_ohead", "Омарова Дана", "moderator", office.id),
            "officer": _user(s, "t_officer", "Нұрланов Асхат", "officer", department.id),
        }
        committee.head_user_id, committee.head_name = ids["committee_head"], "Ахметов Е. С."
        department.head_user_id, department.head_name = ids["department_head"], "Сейтқали А. Б."
        department.head_position = "руководитель департамента"
        office.head_user_id, office.head_name = ids["office_head"], "Омарова Д."
        for unit in (committee, department, office):
            s.add(unit)
        s.add(
            UnitDeputy(
                unit_id=department.id,
                name="Иванов П. С.",
                position="заместитель руководителя",
                user_id=ids["deputy"],
                starts_on=deputy_from,
                ends_on=deputy_to,
            )
        )
        s.commit()
        assert committee.id and department.id and office.id
        return Org(committee.id, department.id, office.id, **ids)


def viewer(engine: object, user_id: int) -> Viewer:
    with Session(engine) as s:  # type: ignore[arg-type]
        user = s.get(StaffUser, user_id)
        assert user is not None
        return viewer_for(s, user)


def make_formal(engine: object, appeal_id: int, unit_id: int, *, category: str = "complaint") -> None:
    """What triage does to a signal that becomes a formal appeal (lifecycle helper): formal, in the unit."""
    with Session(engine) as s:  # type: ignore[arg-type]
        appeal = s.get(Appeal, appeal_id)
        assert appeal is not None
        appeal.formal, appeal.unit_id, appeal.category = True, unit_id, category
        appeal.status = "in_progress"
        s.add(appeal)
        s.commit()
