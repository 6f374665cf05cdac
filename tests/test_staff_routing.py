"""Notices for a unit whose head has no workspace account (staff_work.notify_acting_head): they go up the
chain of command to the nearest acting head who has one, then to the project office's head, then to
its moderators — each in the reader's language, saying why it came to them — and never into the chain a
concealed corruption report is hidden from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from adaldyk_bots import org, staff_notices, staff_work
from adaldyk_bots.deadlines import REMINDER, Deadlines, escalate
from adaldyk_bots.staff_alerts import Alerts
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, OutboxItem, StaffNotice, StaffUser, Unit
from tests.deadline_support import build_workflow, config_copy, local, register, set_due

TODAY = date(2026, 12, 1)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _tree(engine: Engine) -> tuple[dict[str, int], dict[str, int]]:
    """ministry (minister, with an account) > cerc (a head by name only) > cerc_almaty (no head); the
    project office (a head by name only); moderators of the office, without a unit, of the committee."""
    with unit_of_work(engine) as s:
        users: dict[str, int] = {}
        for name, role, language, email in (
            ("minister", "officer", "ru", "minister@ecogeo.gov.kz"),
            ("maria", "moderator", "kk", "maria@ecogeo.gov.kz"),
            ("office_mod", "moderator", "ru", None),
            ("cerc_mod", "moderator", "ru", None),
            ("gone_mod", "moderator", "ru", None),
        ):
            user = StaffUser(
                username=name,
                password_hash="-",
                role=role,
                created_at=utcnow(),
                language=language,
                email=email,
            )
            if name == "gone_mod":
                user.disabled_at = utcnow()
            s.add(user)
            s.flush()
            assert user.id is not None
            users[name] = user.id
        units: dict[str, int] = {}
        for code, parent, head, head_user in (
            ("ministry", None, "Министр", "minister"),
            ("cerc", "ministry", "Председатель комитета", None),
            ("cerc_almaty", "cerc", None, None),
            (org.PROJECT_OFFICE, "ministry", "Руководитель офиса", None),
        ):
            unit = Unit(
                code=code,
                name_ru=f"{code} (ru)",
                name_kk=f"{code} (kk)",
                head_name=head,
                head_user_id=users[head_user] if head_user else None,
                parent_id=units[parent] if parent else None,
            )
            s.add(unit)
            s.flush()
            assert unit.id is not None
            units[code] = unit.id
        for name, unit_code in (
            ("office_mod", org.PROJECT_OFFICE),
            ("cerc_mod", "cerc"),
            ("minister", "ministry"),
        ):
            person = s.get(StaffUser, users[name])
            assert person is not None
            person.unit_id = units[unit_code]
            s.add(person)
    return units, users


def _notify(engine: Engine, unit_id: int, key: str, appeal_id: int | None = None) -> staff_work.NoticeRoute:
    with unit_of_work(engine) as s:
        return staff_work.notify_acting_head(
            s,
            unit_id,
            key=key,
            kind="reminder",
            text="Срок ответа",
            on=TODAY,
            now=utcnow(),
            appeal_id=appeal_id,
        )


def _readers(engine: Engine, key_prefix: str) -> dict[int | None, StaffNotice]:
    with Session(engine) as s:
        rows = s.exec(select(StaffNotice).where(col(StaffNotice.key).startswith(key_prefix))).all()
    return {n.user_id: n for n in rows}


def test_a_headless_unit_notice_goes_to_the_nearest_head_with_an_account(engine: Engine) -> None:
    units, users = _tree(engine)
    route = _notify(engine, units["cerc_almaty"], "remind:1:T-3")
    assert route.headless and route.user_ids == (users["minister"],)
    [notice] = _readers(engine, "remind:1:T-3").values()
    assert notice.user_id == users["minister"] and notice.unit_id == units["cerc_almaty"]
    assert notice.text.startswith("Срок ответа\n\n")
    assert "у подразделения «cerc_almaty (ru)» нет руководителя" in notice.text  # the minister reads Russian
    # It is on the minister's /notices page (the page lists staff_notices.notices_of).
    with Session(engine) as s:
        assert [n.key for n, _number in staff_notices.notices_of(s, users["minister"])] == [notice.key]
        assert staff_notices.unread_notices(s, users["minister"]) == 1
    # The minister's own unit: to the minister, with no such line.
    _notify(engine, units["ministry"], "remind:2:T-3")
    [own] = _readers(engine, "remind:2:T-3").values()
    assert own.user_id == users["minister"] and own.text == "Срок ответа"


def test_with_nobody_up_the_chain_the_project_office_moderators_get_it(engine: Engine) -> None:
    units, users = _tree(engine)
    with unit_of_work(engine) as s:
        ministry = s.get(Unit, units["ministry"])
        assert ministry is not None
        ministry.head_user_id = None  # the minister's account is not linked
        s.add(ministry)
    route = _notify(engine, units["cerc_almaty"], "remind:3:T-3")
    assert route.headless
    readers = _readers(engine, "remind:3:T-3")
    # The office's moderators, by unit or without one; not the committee's moderator, not a disabled one.
    assert set(readers) == {users["maria"], users["office_mod"]}
    assert (
        "«cerc_almaty (kk)» бөлімшесінің жүйеде есептік жазбасы бар басшысы" in readers[users["maria"]].text
    )
    assert "у подразделения «cerc_almaty (ru)»" in readers[users["office_mod"]].text
    with Session(engine) as s:
        assert staff_notices.unread_notices(s, users["maria"]) == 1
    # The same event again (a second worker, a rerun): nobody is told twice.
    _notify(engine, units["cerc_almaty"], "remind:3:T-3")
    assert len(_readers(engine, "remind:3:T-3")) == 2


def test_nobody_at_all_still_writes_the_notice_for_the_unit(engine: Engine) -> None:
    units, users = _tree(engine)
    with unit_of_work(engine) as s:
        ministry = s.get(Unit, units["ministry"])
        assert ministry is not None
        ministry.head_user_id = None
        s.add(ministry)
        for name in ("maria", "office_mod"):
            person = s.get(StaffUser, users[name])
            assert person is not None
            person.disabled_at = utcnow()
            s.add(person)
    _notify(engine, units["cerc_almaty"], "remind:4:T-3")
    [notice] = _readers(engine, "remind:4:T-3").values()
    assert notice.user_id is None and notice.unit_id == units["cerc_almaty"] and notice.text == "Срок ответа"


def test_a_concealed_report_never_climbs_into_the_concerned_chain(engine: Engine, tmp_path: Path) -> None:
    units, users = _tree(engine)
    workflow = build_workflow(config_copy(tmp_path))
    report = register(engine, workflow, at=local(2026, 12, 1, 10))
    with unit_of_work(engine) as s:
        appeal = s.get(Appeal, report.id)
        assert appeal is not None
        appeal.category, appeal.confidential = "corruption_report", True
        appeal.concerned_unit_id, appeal.unit_id = units["cerc_almaty"], units[org.PROJECT_OFFICE]
        s.add(appeal)
    # For the concerned unit, its committee or the office itself: the office has no head with an account,
    # and the minister (who has one, and is next up from the office) must not hear of it.
    for i, code in enumerate(("cerc_almaty", "cerc", org.PROJECT_OFFICE)):
        _notify(engine, units[code], f"remind:r{i}", appeal_id=report.id)
        readers = _readers(engine, f"remind:r{i}")
        assert set(readers) == {users["maria"], users["office_mod"]}, code
        assert all(n.unit_id == units[org.PROJECT_OFFICE] for n in readers.values())
        assert all("«project_office" in n.text for n in readers.values())


def test_alerts_render_for_each_reader_and_mail_them(engine: Engine) -> None:
    units, users = _tree(engine)
    alerts = Alerts(mail_account="appeals@ecogeo.gov.kz")
    with unit_of_work(engine) as s:
        who = alerts.to_unit_head(
            s,
            units["cerc_almaty"],
            key="remind:9:T-1",
            kind="reminder",
            msgid=REMINDER,
            params={"number": "ADL-2026-000009", "due": "03.12.2026", "left": 1},
            on=TODAY,
            now=utcnow(),
        )
    assert who is None  # the unit itself names nobody: the caller records that
    [notice] = _readers(engine, "remind:9:T-1").values()
    assert notice.user_id == users["minister"]
    assert "ADL-2026-000009" in notice.text and "«cerc_almaty (ru)»" in notice.text
    with Session(engine) as s:
        [mail] = s.exec(select(OutboxItem).where(OutboxItem.purpose == "staff_notice")).all()
    assert mail.chat_id == "minister@ecogeo.gov.kz" and mail.text == notice.text


def test_a_headless_units_digest_is_covered_by_whoever_its_notices_go_to(
    engine: Engine, tmp_path: Path
) -> None:
    units, users = _tree(engine)
    workflow = build_workflow(config_copy(tmp_path))
    appeal = register(engine, workflow, at=local(2026, 3, 16, 10), unit_id=units["cerc_almaty"])
    set_due(engine, appeal.id or 0, local(2026, 3, 19, 18))
    with unit_of_work(engine) as s:
        assert Deadlines(workflow).send_digests(s, now=local(2026, 3, 18, 9, 0)) == 1
    with Session(engine) as s:
        [digest] = s.exec(select(StaffNotice).where(StaffNotice.kind == "digest")).all()
    assert digest.user_id == users["minister"] and appeal.number in digest.text
    assert "без руководителя" in digest.text and "«cerc_almaty (ru)»" in digest.text
    assert "«cerc (ru)»" in digest.text  # the committee's head has no account either


def test_an_escalation_that_climbs_to_the_office_tells_its_moderators_once(
    engine: Engine, tmp_path: Path
) -> None:
    units, users = _tree(engine)
    with unit_of_work(engine) as s:
        ministry = s.get(Unit, units["ministry"])
        assert ministry is not None
        ministry.head_user_id = None  # nobody up the chain has an account: both routes end at the moderators
        s.add(ministry)
    workflow = build_workflow(config_copy(tmp_path))
    appeal = register(engine, workflow, at=local(2026, 3, 16, 10), unit_id=units["cerc_almaty"])
    with unit_of_work(engine) as s:
        current = s.get(Appeal, appeal.id)
        assert current is not None
        assert escalate(
            s, current, reason="overdue", key="overdue:1", now=local(2026, 3, 18, 10), workflow=workflow
        )
    with Session(engine) as s:
        told = s.exec(select(StaffNotice).where(StaffNotice.kind == "escalation")).all()
    assert sorted(n.user_id or 0 for n in told) == sorted([users["maria"], users["office_mod"]])
