"""A small ministry for the deadline tests: units with heads and acting deputies, their accounts, a
workflow on a test-local copy of config/ (calendar overrides with a decree, terms), and a frozen clock."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from adaldyk_bots import direct_intake, org
from adaldyk_bots.access import Viewer, viewer_for
from adaldyk_bots.calendar import OVERRIDES_FILE, CalendarOverrides, WorkingCalendar
from adaldyk_bots.categories import CATEGORIES_FILE, CategoryRules
from adaldyk_bots.deadlines import Deadlines
from adaldyk_bots.domain import Category
from adaldyk_bots.staff_alerts import Alerts
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, StaffNotice, StaffUser, Unit, UnitDeputy
from adaldyk_bots.terms import TERMS_FILE, Terms
from adaldyk_bots.texts import Texts
from adaldyk_bots.workflow import Target, Workflow

ALMATY = ZoneInfo("Asia/Almaty")
CONFIG = Path(__file__).parent.parent / "config"

# A Government decree of the kind issued every year (e.g. No. 944 of 2024 moved Saturday 4 May): here Friday
# 8 January 2027 becomes a day off and Saturday 9 January a working day, bridging Orthodox Christmas
# (Thursday 7 January). Test-local: the shipped file must not carry a decree that does not exist.
DECREE = """
[[days_off]]
date = 2027-01-08
reason = "test decree: Friday 8 January 2027 is a day off"

[[working_days]]
date = 2027-01-09
reason = "test decree: Saturday 9 January 2027 is a working day"
"""


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ALMATY)


def config_copy(tmp_path: Path, *, terms: str | None = None) -> Path:
    """config/ copied for one test, with the decree added to the calendar overrides."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    with (target / OVERRIDES_FILE).open("a", encoding="utf-8") as fh:
        fh.write(DECREE)
    if terms is not None:
        (target / TERMS_FILE).write_text(terms, encoding="utf-8")
    return target


def build_workflow(config_dir: Path, *, mail_account: str | None = None) -> Workflow:
    calendar = WorkingCalendar(tz=ALMATY, overrides=CalendarOverrides.load(config_dir / OVERRIDES_FILE))
    return Workflow(
        calendar=calendar,
        texts=Texts.load(config_dir / "templates", ALMATY),
        term_days=15,
        number_prefix="ADL",
        terms=Terms.load(config_dir / TERMS_FILE),
        alerts=Alerts(mail_account=mail_account),
        categories=CategoryRules.load(config_dir / CATEGORIES_FILE),
    )


@dataclass
class Ministry:
    """Unit ids by code and user ids by username."""

    units: dict[str, int]
    users: dict[str, int]


def build_ministry(engine: Engine, *, deputy_range: tuple[date, date] | None = None) -> Ministry:
    """ministry > committee > department, and the project office. The committee's head has a deputy who
    acts for them over `deputy_range` (inclusive)."""
    with unit_of_work(engine) as s:
        users: dict[str, int] = {}
        for name, language, email in (
            ("minister", "ru", None),
            ("committee_head", "ru", "head@ecogeo.gov.kz"),
            ("committee_deputy", "kk", None),
            ("dept_head", "ru", None),
            ("office_head", "en", "office@ecogeo.gov.kz"),
            ("officer", "ru", None),
            ("admin", "ru", None),
        ):
            user = StaffUser(
                username=name,
                full_name=name.replace("_", " ").title(),
                password_hash="-",
                role="admin" if name == "admin" else "officer" if name != "office_head" else "moderator",
                created_at=local(2026, 1, 1, 9),
                language=language,
                email=email,
            )
            s.add(user)
            s.flush()
            assert user.id is not None
            users[name] = user.id
        units: dict[str, int] = {}
        for code, parent, head in (
            ("ministry", None, "minister"),
            ("cerc", "ministry", "committee_head"),
            ("cerc_astana", "cerc", "dept_head"),
            ("cerc_almaty", "cerc", None),
            (org.PROJECT_OFFICE, "ministry", "office_head"),
        ):
            unit = Unit(
                code=code,
                name_ru=code,
                name_kk=code,
                head_name=head,
                head_user_id=users[head] if head else None,
                parent_id=units[parent] if parent else None,
            )
            s.add(unit)
            s.flush()
            assert unit.id is not None
            units[code] = unit.id
        for name in ("dept_head", "officer"):
            person = s.get(StaffUser, users[name])
            assert person is not None
            person.unit_id = units["cerc_astana"]
            s.add(person)
        if deputy_range is not None:
            s.add(
                UnitDeputy(
                    unit_id=units["cerc"],
                    name="Committee Deputy",
                    position="deputy chairman",
                    user_id=users["committee_deputy"],
                    starts_on=deputy_range[0],
                    ends_on=deputy_range[1],
                )
            )
    return Ministry(units, users)


def register(
    engine: Engine,
    workflow: Workflow,
    *,
    at: datetime,
    kind: Category = Category.COMPLAINT,
    unit_id: int | None = None,
    chat: str | None = "5001",
) -> Appeal:
    """A formal appeal taken at `at` (the frozen clock), its notices owed to a Telegram chat."""
    reply_to = Target("telegram", "bot", chat) if chat else None
    with unit_of_work(engine) as s:
        created = direct_intake.register_direct(
            s,
            workflow,
            direct_intake.DirectAppeal(
                channel="web",
                text="Свалка у реки",
                kind=kind,
                name="Асель Нурланова",
                iin="900101300028",
                consent=True,
                unit_id=unit_id,
                reply_to=reply_to,
            ),
            actor="citizen",
            taken_by_id=None,
            now=at,
        )
        if (
            unit_id is not None
        ):  # given to a unit: its head answers for it (lifecycle: registered -> assigned)
            workflow.change_status(s, created, "assigned", actor="user:office_head")
        return created


def set_due(engine: Engine, appeal_id: int, due: datetime) -> None:
    with unit_of_work(engine) as s:
        appeal = s.get(Appeal, appeal_id)
        assert appeal is not None
        appeal.due_at = appeal.original_due_at = due
        s.add(appeal)


def sweep(engine: Engine, deadlines: Deadlines, now: datetime) -> Any:
    with unit_of_work(engine) as s:
        return deadlines.sweep_round(s, now=now)


def notices(engine: Engine, kind: str | None = None) -> list[StaffNotice]:
    with Session(engine) as s:
        query = select(StaffNotice).order_by(col(StaffNotice.id))
        if kind is not None:
            query = query.where(StaffNotice.kind == kind)
        return list(s.exec(query))


def events(engine: Engine, appeal_id: int, kind: str) -> list[AppealEvent]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(AppealEvent)
                .where(AppealEvent.appeal_id == appeal_id, AppealEvent.kind == kind)
                .order_by(col(AppealEvent.id))
            )
        )


def viewer(engine: Engine, user_id: int) -> Viewer:
    with Session(engine) as s:
        user = s.get(StaffUser, user_id)
        assert user is not None
        return viewer_for(s, user)


def appeal(engine: Engine, appeal_id: int) -> Appeal:
    with Session(engine) as s:
        found = s.get(Appeal, appeal_id)
        assert found is not None
        return found
