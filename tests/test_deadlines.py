"""Deadlines and accountability (issue 10) with a frozen clock: every `now` is passed in, nothing sleeps.

Dates worked out by hand from the law on holidays (kz-appeals-law.md) and the `holidays` package:
2026: Nauryz 21-23 March (Sat-Mon) with 24-25 March off for the weekend days; 2027: New Year 1-2 January
(Fri-Sat) with Monday 4 January off, Orthodox Christmas Thursday 7 January (never moved), Nauryz 21-23
March with Wednesday 24 March off; and the test decree (deadline_support.DECREE): Friday 8 January 2027
off, Saturday 9 January 2027 a working day.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from adaldyk_bots import deadlines as dl
from adaldyk_bots.domain import Category
from adaldyk_bots.errors import Forbidden, IllegalTransition
from adaldyk_bots.storage.db import make_engine, unit_of_work
from adaldyk_bots.storage.models import Appeal, OutboxItem, StaffTask
from adaldyk_bots.terms import TERMS_FILE, Terms, TermsError
from tests.deadline_support import (
    appeal,
    build_ministry,
    build_workflow,
    config_copy,
    events,
    local,
    notices,
    register,
    set_due,
    sweep,
    viewer,
)

PER_KIND = """
[term]
default = 15
[term.kinds]
complaint = 20
proposal = 15
request = 10
application = 15
report = 12
response = 5
corruption_report = 30
gratitude = 3
other = 15
"""


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return config_copy(
        tmp_path, terms=(Path(__file__).parent.parent / "config" / TERMS_FILE).read_text() + ""
    )


@pytest.fixture
def workflow(config_dir):
    return build_workflow(config_dir, mail_account="ministry@ecogeo.gov.kz")


@pytest.fixture
def deadlines(workflow):
    return dl.Deadlines(workflow)


# --- config ---------------------------------------------------------------------------------------------


def test_shipped_terms_are_valid_and_fifteen_working_days_by_default():
    terms = Terms.load(Path(__file__).parent.parent / "config" / TERMS_FILE)
    assert {terms.days_for(kind) for kind in Category} == {15}
    assert terms.forwarding.working_days == 3 and terms.extension.cap_months == 2
    assert terms.reminder_days == (3, 1)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[term]\ndefault = 0\n", ["terms.toml:2", "[term] default", "greater than or equal to 1"]),
        ("[term.kinds]\ncomplaint = 20\nwish = 5\n", ["terms.toml:3", "[term.kinds] wish"]),
        ("[extension]\ncap_from = 'answer'\n", ["terms.toml:2", "[extension] cap_from"]),
        ("[digest]\nhour = 25\n", ["terms.toml:2", "[digest] hour"]),
        ("[reminders]\nbefore_due = [3, -1]\n", ["terms.toml:2", "before_due"]),
        ("[forwarding]\nwork_days = 3\n", ["terms.toml:2", "[forwarding] work_days", "Extra inputs"]),
        ("[term\ndefault = 15\n", ["terms.toml", "line 1"]),
    ],
)
def test_a_wrong_terms_file_names_the_key_and_the_line(tmp_path, text, names):
    path = tmp_path / TERMS_FILE
    path.write_text(text)
    with pytest.raises(TermsError) as refused:
        Terms.load(path)
    for part in names:
        assert part in str(refused.value)


# --- R3: the term per kind, at registration -------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Category))
def test_each_kind_gets_its_own_term_at_registration(engine, tmp_path, kind):
    workflow = build_workflow(config_copy(tmp_path, terms=PER_KIND))
    days = Terms.model_validate({"term": {"kinds": {k: v for k, v in _kinds(PER_KIND).items()}}}).days_for(
        kind
    )
    received = local(2027, 3, 12, 10, 0)  # Friday, before Constitution Day's week and Nauryz 2027
    created = register(engine, workflow, at=received, kind=kind)
    assert created.due_at == workflow.calendar.due_at(received, days)
    assert created.original_due_at == created.due_at
    # The per-(day, kind) cache gives each kind its own term on the same day.
    assert workflow.due_for(received, kind) == created.due_at


def _kinds(text: str) -> dict[str, int]:
    import tomllib

    return dict(tomllib.loads(text)["term"]["kinds"])


def test_fifteen_working_days_across_constitution_day_and_nauryz_2027(engine, workflow):
    # Fri 12 Mar 2027: 16,17,18,19 | 22-24 off | 25,26,29,30,31, 1,2,5,6,7,8 Apr (15 Mon 15 Mar is off).
    created = register(engine, workflow, at=local(2027, 3, 12, 10, 0))
    assert created.due_at == local(2027, 4, 8, 18, 0).astimezone(UTC)


def test_decree_moves_registration_and_the_term(engine, workflow):
    # Received on the decree's day off (Fri 8 Jan 2027): registered on its working Saturday (R1); 15 working
    # days: 11-15, 18-22, 25-29 January.
    created = register(engine, workflow, at=local(2027, 1, 8, 10, 0))
    assert created.registered_at == local(2027, 1, 9, 9, 0).astimezone(UTC)
    assert created.due_at == local(2027, 1, 29, 18, 0).astimezone(UTC)


def test_intake_hot_path_applies_the_kind_s_term(engine, tmp_path):
    from adaldyk_bots.domain import InboundMessage

    workflow = build_workflow(config_copy(tmp_path, terms=PER_KIND))
    sent = local(2026, 12, 31, 10, 0)  # Thursday; New Year 2027 and its Monday transfer follow
    with unit_of_work(engine) as s:
        for chat, text in (("1", "Жалоба: свалка у реки"), ("2", "Подскажите, как получить разрешение")):
            message = InboundMessage(
                channel="telegram",
                account="bot",
                chat_id=chat,
                message_key="1",
                sender_id=chat,
                sent_at=sent,
                text=text,
            )
            workflow.accept_message(s, message, raw_event_id=None)
    with Session(engine) as s:
        by_kind = {a.category: a for a in s.exec(select(Appeal))}
    # complaint, 20 working days: 5, 6, 9, 11-15, 18-22, 25-29 Jan, 1, 2 Feb (7 Jan off; the decree's Saturday
    # 9 Jan counts, its Friday 8 Jan does not); request, 10: 5, 6, 9, 11-15, 18, 19 Jan.
    assert by_kind["complaint"].due_at == local(2027, 2, 2, 18, 0).astimezone(UTC)
    assert by_kind["request"].due_at == local(2027, 1, 19, 18, 0).astimezone(UTC)
    assert by_kind["request"].original_due_at == by_kind["request"].due_at
    # R5: forwarding within 3 working days: 5, 6, 9 January (the decree's Saturday).
    assert by_kind["request"].forward_due_at == local(2027, 1, 9, 18, 0).astimezone(UTC)


# --- R5: the forwarding clock ---------------------------------------------------------------------------


def test_not_forwarded_or_assigned_in_three_working_days_is_flagged_once(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    # Thu 19 Mar 2026: 20 | 21-25 Nauryz off | 26, 27 -> forward by Fri 27 Mar 18:00.
    late = register(engine, workflow, at=local(2026, 3, 19, 10, 0))
    given = register(engine, workflow, at=local(2026, 3, 19, 10, 5), unit_id=ministry.units["cerc_astana"])
    assert late.forward_due_at == local(2026, 3, 27, 18, 0).astimezone(UTC)
    assert sweep(engine, deadlines, local(2026, 3, 27, 17, 59)).forwarding == 0
    assert sweep(engine, deadlines, local(2026, 3, 27, 18, 1)).forwarding == 1
    assert sweep(engine, deadlines, local(2026, 3, 27, 18, 2)).forwarding == 0
    assert [e.kind for e in events(engine, late.id, "forwarding_late")] == ["forwarding_late"]
    assert events(engine, given.id, "forwarding_late") == []
    office = notices(engine, "forwarding")
    assert [(n.user_id, n.appeal_id) for n in office] == [(ministry.users["office_head"], late.id)]
    assert late.number in office[0].text and "working days" in office[0].text  # office_head reads English


# --- R4: extension --------------------------------------------------------------------------------------


def test_extension_by_the_acting_head_with_reason_cap_notice_and_its_clock(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    dept = ministry.units["cerc_astana"]
    # Thu 31 Dec 2026 -> 15 working days: due Tue 26 Jan 2027 (the decree swaps 8 and 9 January).
    created = register(engine, workflow, at=local(2026, 12, 31, 10, 0), unit_id=dept)
    assert created.due_at == local(2027, 1, 26, 18, 0).astimezone(UTC)
    now = local(2027, 1, 27, 10, 0)  # a day late: overdue first
    with unit_of_work(engine) as s:
        assert deadlines.mark_overdue(s, now=now) == 1
    head, officer, admin = (viewer(engine, ministry.users[n]) for n in ("dept_head", "officer", "admin"))

    def extend(who, days, reason="Нужна выездная проверка", at=now):
        with unit_of_work(engine) as s:
            found = s.get(Appeal, created.id)
            return dl.extend(s, workflow, found, viewer=who, reason=reason, working_days=days, now=at)

    with pytest.raises(Forbidden):
        extend(officer, 5)  # not the head of the unit
    with pytest.raises(dl.ExtensionRefused):
        extend(head, 5, reason="  ")
    with pytest.raises(dl.ExtensionRefused):
        extend(head, 0)
    # R4's cap, read as a total: two months from registration, the term may end on 28 Feb 2027 at the
    # latest; 23 working days after 26 Jan is Fri 26 Feb, 24 is Mon 1 Mar.
    with pytest.raises(dl.ExtensionRefused) as capped:
        extend(head, 24)
    assert "28.02.2027" in str(capped.value) and "at most 23 working" in str(capped.value)
    extend(head, 10)
    after = appeal(engine, created.id)
    assert after.status == "extended" and not after.overdue and after.extensions == 1
    assert after.original_due_at == created.due_at
    assert after.due_at == local(2027, 2, 9, 18, 0).astimezone(UTC)  # 27-29 Jan, 1-5, 8, 9 Feb
    # The notice owed once, with its own clock: 3 working days (28, 29 Jan, 1 Feb).
    assert after.extension_notice_due_at == local(2027, 2, 1, 18, 0).astimezone(UTC)
    with Session(engine) as s:
        owed = s.exec(select(OutboxItem).where(OutboxItem.purpose == "extension")).all()
    assert [o.key for o in owed] == [f"notice:extension:{created.id}:1"]
    assert "09.02.2027" in owed[0].text and "выездная проверка" in owed[0].text
    # An admin may extend too; a second extension is seq 2 and keeps the first due date.
    extend(admin, 2, at=local(2027, 1, 28, 10, 0))
    second = appeal(engine, created.id)
    assert second.extensions == 2 and second.original_due_at == created.due_at
    assert second.due_at == local(2027, 2, 11, 18, 0).astimezone(UTC)
    with Session(engine) as s:
        keys = [o.key for o in s.exec(select(OutboxItem).where(OutboxItem.purpose == "extension"))]
    assert keys == [f"notice:extension:{created.id}:1", f"notice:extension:{created.id}:2"]
    # Nothing was delivered (no dispatcher here): when the notice's clock runs out, the office is told once.
    assert sweep(engine, deadlines, local(2027, 2, 2, 17, 0)).extension_notices == 0
    assert sweep(engine, deadlines, local(2027, 2, 2, 18, 1)).extension_notices == 1
    assert sweep(engine, deadlines, local(2027, 2, 2, 18, 2)).extension_notices == 0
    late = notices(engine, "extension_notice")
    assert {n.user_id for n in late} == {ministry.users["office_head"], ministry.users["dept_head"]}
    assert len(events(engine, created.id, "extension")) == 2


def test_a_delivered_extension_notice_is_not_flagged(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    created = register(
        engine, workflow, at=local(2026, 12, 31, 10, 0), unit_id=ministry.units["cerc_astana"], chat=None
    )
    now, admin = local(2027, 1, 20, 10, 0), viewer(engine, ministry.users["admin"])
    with unit_of_work(engine) as s:
        found = s.get(Appeal, created.id)
        dl.extend(s, workflow, found, viewer=admin, reason="r", working_days=3, now=now)
    with unit_of_work(engine) as s:  # no address: a call task, which staff mark done
        task = s.exec(select(StaffTask).where(StaffTask.key == f"call:notice:extension:{created.id}:1")).one()
        task.done_at = local(2027, 1, 21, 11, 0)
        s.add(task)
    assert sweep(engine, deadlines, local(2027, 1, 26, 10, 0)).extension_notices == 0
    assert appeal(engine, created.id).extension_notice_due_at is None


def test_extension_is_refused_from_a_status_the_law_does_not_allow(engine, workflow):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2026, 12, 31, 10, 0), unit_id=ministry.units["cerc_astana"])
    with unit_of_work(engine) as s:
        found = s.get(Appeal, created.id)
        found.status = "answered"
        s.add(found)
    admin = viewer(engine, ministry.users["admin"])
    with pytest.raises(IllegalTransition), unit_of_work(engine) as s:
        found = s.get(Appeal, created.id)
        dl.extend(s, workflow, found, viewer=admin, reason="r", working_days=1, now=local(2027, 1, 5, 10))


# --- reminders ------------------------------------------------------------------------------------------


def test_reminders_at_t_minus_3_and_t_minus_1_across_nauryz(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2026, 3, 2, 10, 0), unit_id=ministry.units["cerc_astana"])
    set_due(engine, created.id, local(2026, 3, 26, 18, 0).astimezone(UTC))  # Thu, after Nauryz
    # T-3 is Wed 18 Mar (19, 20, 26 left); T-1 is Fri 20 Mar, before the five days off.
    for moment, expected in (
        (local(2026, 3, 17, 10, 0), 0),  # T-4
        (local(2026, 3, 18, 8, 59), 0),  # T-3, before the reminders' hour
        (local(2026, 3, 18, 9, 0), 1),
        (local(2026, 3, 18, 15, 0), 0),  # once
        (local(2026, 3, 19, 9, 0), 0),  # T-2: nothing new
        (local(2026, 3, 20, 9, 30), 1),  # T-1
        (local(2026, 3, 23, 9, 30), 0),  # Nauryz: no reminders on a day off
        (local(2026, 3, 26, 9, 30), 0),  # the due day: T-1 was sent
    ):
        assert sweep(engine, deadlines, moment).reminders == expected, moment
    sent = notices(engine, "reminder")
    assert [n.key.split(":")[2] for n in sent] == ["T-3", "T-1"]
    assert {n.user_id for n in sent} == {ministry.users["dept_head"]}
    assert "26.03.2026" in sent[0].text


def test_reminder_on_the_decree_s_working_saturday_and_re_armed_by_an_extension(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2026, 12, 21, 10, 0), unit_id=ministry.units["cerc_astana"])
    set_due(engine, created.id, local(2027, 1, 13, 18, 0).astimezone(UTC))  # Wed
    # Without the decree T-3 would be Fri 8 Jan; with it 8 Jan is off and Sat 9 Jan is T-3 (11, 12, 13).
    assert sweep(engine, deadlines, local(2027, 1, 8, 10, 0)).reminders == 0
    assert sweep(engine, deadlines, local(2027, 1, 9, 10, 0)).reminders == 1
    head = viewer(engine, ministry.users["dept_head"])
    with unit_of_work(engine) as s:
        found = s.get(Appeal, created.id)
        dl.extend(s, workflow, found, viewer=head, reason="r", working_days=1, now=local(2027, 1, 11, 10))
    # The new due day (Thu 14 Jan) has its own reminders: T-3 caught up at once (2 left), then T-1.
    assert sweep(engine, deadlines, local(2027, 1, 11, 10, 1)).reminders == 1
    assert sweep(engine, deadlines, local(2027, 1, 13, 9, 0)).reminders == 1
    keys = [n.key for n in notices(engine, "reminder")]
    assert [k.split(":")[2:4] for k in keys] == [
        ["T-3", "2027-01-13"],
        ["T-3", "2027-01-14"],
        ["T-1", "2027-01-14"],
    ]


def test_reminder_goes_to_the_deputy_acting_that_day(engine, workflow, deadlines):
    ministry = build_ministry(engine, deputy_range=(date(2026, 3, 20), date(2026, 3, 27)))
    created = register(engine, workflow, at=local(2026, 3, 2, 10, 0), unit_id=ministry.units["cerc"])
    set_due(engine, created.id, local(2026, 3, 26, 18, 0).astimezone(UTC))
    sweep(engine, deadlines, local(2026, 3, 18, 9, 0))  # T-3: the head, the range has not started
    sweep(engine, deadlines, local(2026, 3, 20, 9, 0))  # T-1: the deputy acts from today
    sent = notices(engine, "reminder")
    assert [n.user_id for n in sent] == [ministry.users["committee_head"], ministry.users["committee_deputy"]]
    assert "жұмыс" in sent[1].text  # the deputy reads Kazakh


# --- R7: overdue at the right minute, and escalation ----------------------------------------------------


def test_overdue_from_the_minute_due_at_passes_and_escalates_through_the_acting_deputy(
    engine, workflow, deadlines
):
    # The committee's deputy acts 5-9 April 2027 (inclusive).
    ministry = build_ministry(engine, deputy_range=(date(2027, 4, 5), date(2027, 4, 9)))
    dept = ministry.units["cerc_astana"]
    first = register(engine, workflow, at=local(2027, 3, 12, 10, 0), unit_id=dept)  # due Thu 8 Apr 18:00
    assert first.due_at == local(2027, 4, 8, 18, 0).astimezone(UTC)
    with unit_of_work(engine) as s:
        assert deadlines.mark_overdue(s, now=local(2027, 4, 8, 17, 59, 59)) == 0
        assert deadlines.mark_overdue(s, now=local(2027, 4, 8, 18, 0, 0)) == 0  # due *by* 18:00
    with unit_of_work(engine) as s:
        assert deadlines.mark_overdue(s, now=local(2027, 4, 8, 18, 0, 1)) == 1
    with unit_of_work(engine) as s:
        assert deadlines.mark_overdue(s, now=local(2027, 4, 8, 18, 1)) == 0
    assert appeal(engine, first.id).overdue
    escalated = notices(engine, "escalation")
    # To the superior (the committee): its deputy, whose range has started; and the project office.
    assert {n.user_id for n in escalated} == {
        ministry.users["committee_deputy"],
        ministry.users["office_head"],
    }
    assert [n.user_id for n in notices(engine, "overdue")] == [ministry.users["dept_head"]]
    # After the range has ended (Mon 12 Apr), escalation goes to the head again.
    second = register(engine, workflow, at=local(2027, 3, 12, 11, 0), unit_id=dept)
    set_due(engine, second.id, local(2027, 4, 12, 18, 0).astimezone(UTC))
    with unit_of_work(engine) as s:
        assert deadlines.mark_overdue(s, now=local(2027, 4, 12, 18, 0, 30)) == 1
    later = [n for n in notices(engine, "escalation") if n.appeal_id == second.id]
    assert {n.user_id for n in later} == {ministry.users["committee_head"], ministry.users["office_head"]}
    assert len(events(engine, first.id, "escalated")) == 1


def test_escalate_is_once_per_key(engine, workflow):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2027, 3, 12, 10, 0), unit_id=ministry.units["cerc_astana"])
    now = local(2027, 3, 20, 10, 0)
    with unit_of_work(engine) as s:
        found = s.get(Appeal, created.id)
        assert dl.escalate(s, found, reason="not_resolved", key=f"not_resolved:{created.id}:1", now=now)
        assert not dl.escalate(s, found, reason="not_resolved", key=f"not_resolved:{created.id}:1", now=now)
        assert dl.escalate(s, found, reason="not_resolved", key=f"not_resolved:{created.id}:2", now=now)
    assert len(notices(engine, "escalation")) == 4  # committee head and project office, twice
    assert (
        "not resolved"
        in [n for n in notices(engine, "escalation") if n.user_id == ministry.users["office_head"]][0].text
    )


# --- transfers ------------------------------------------------------------------------------------------


def test_passed_between_units_more_than_twice_is_flagged(engine, workflow):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2027, 3, 12, 10, 0))
    for code in ("cerc_astana", "cerc_almaty", "cerc_astana", "cerc_astana", "cerc_almaty"):
        with unit_of_work(engine) as s:
            found = s.get(Appeal, created.id)
            if found.unit_id != ministry.units[code]:
                workflow.assign_unit(s, found, code, actor="user:office_head")
    # First assignment is no transfer; then astana->almaty (1), ->astana (2), ->almaty (3: flagged).
    after = appeal(engine, created.id)
    assert after.transfers == 3 and workflow.too_many_transfers(after)
    assert len(events(engine, created.id, "transfers_flagged")) == 1
    flagged = notices(engine, "transfers")
    assert [n.user_id for n in flagged] == [ministry.users["office_head"]]


# --- the digest -----------------------------------------------------------------------------------------


def test_daily_digest_once_per_person_per_working_day(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    dept = ministry.units["cerc_astana"]
    soon = register(engine, workflow, at=local(2026, 3, 2, 10, 0), unit_id=dept)
    set_due(engine, soon.id, local(2026, 3, 26, 18, 0).astimezone(UTC))
    late = register(engine, workflow, at=local(2026, 3, 2, 10, 5), unit_id=dept)
    set_due(engine, late.id, local(2026, 3, 17, 18, 0).astimezone(UTC))
    sweep(engine, deadlines, local(2026, 3, 18, 8, 0))  # marks `late` overdue; before the digest hour
    assert notices(engine, "digest") == []
    assert sweep(engine, deadlines, local(2026, 3, 18, 9, 0)).digests == 1
    assert sweep(engine, deadlines, local(2026, 3, 18, 9, 1)).digests == 0
    assert sweep(engine, deadlines, local(2026, 3, 21, 9, 0)).digests == 0  # Nauryz, a day off
    digest = notices(engine, "digest")
    assert [n.user_id for n in digest] == [ministry.users["dept_head"]]
    assert soon.number in digest[0].text and late.number in digest[0].text
    assert sweep(engine, deadlines, local(2026, 3, 19, 9, 0)).digests == 1  # the next working day


def test_staff_notice_is_copied_by_email_when_the_person_has_an_address(engine, workflow, deadlines):
    ministry = build_ministry(engine)
    created = register(engine, workflow, at=local(2026, 3, 19, 10, 0))  # no unit: forwarding is late
    sweep(engine, deadlines, local(2026, 3, 27, 18, 1))
    with Session(engine) as s:
        mails = s.exec(select(OutboxItem).where(OutboxItem.channel == "email")).all()
    assert [(m.chat_id, m.account, m.purpose, m.appeal_id) for m in mails] == [
        ("office@ecogeo.gov.kz", "ministry@ecogeo.gov.kz", "staff_notice", None)
    ]
    assert created.number in mails[0].text
    assert ministry.users["office_head"]


def test_email_off_the_page_is_enough(engine, config_dir):
    workflow = build_workflow(config_dir, mail_account=None)
    build_ministry(engine)
    register(engine, workflow, at=local(2026, 3, 19, 10, 0))
    sweep(engine, dl.Deadlines(workflow), local(2026, 3, 27, 18, 1))
    assert len(notices(engine, "forwarding")) == 1
    with Session(engine) as s:
        assert s.exec(select(OutboxItem).where(OutboxItem.channel == "email")).all() == []


def test_moments_are_not_naive(engine, workflow):
    build_ministry(engine)
    created = register(engine, workflow, at=local(2026, 3, 19, 10, 0))
    assert created.forward_due_at is not None and created.forward_due_at.utcoffset() == timedelta(0)


def test_a_wrong_terms_file_stops_the_start_with_the_line(tmp_path, database_url, monkeypatch, capsys):
    from adaldyk_bots.cli import main

    config_dir = config_copy(tmp_path, terms="[term]\ndefault = 15\n\n[reminders]\nhour = 30\n")
    monkeypatch.setenv("ADALDYK_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("ADALDYK_DATABASE_URL", database_url)
    monkeypatch.setenv("ADALDYK_SECRET_KEY", "test-secret-key-0123456789")
    assert main(["worker"]) == 2
    said = capsys.readouterr().err
    assert "configuration error" in said and "terms.toml:5" in said and "[reminders] hour = 30" in said
