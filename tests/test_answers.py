"""Notices exactly once, four-eyes answers and the citizen's "was it solved?" on a real database, fed by
the real Telegram parser (updates shaped as the Bot API documents Update, Message and CallbackQuery:
core.telegram.org/bots/api#update)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from itertools import count

import pytest
from sqlmodel import Session, col, select

from adaldyk_bots import answers, feedback, notices
from adaldyk_bots.errors import ApprovalRequired, Conflict, Forbidden, Invalid
from adaldyk_bots.extension import extend
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import (
    AnswerDraft,
    Appeal,
    AppealEvent,
    AuditEvent,
    Conversation,
    OutboxItem,
    StaffNotice,
)
from connectors.telegram.parser import parse_update_payload
from tests.answers_support import make_formal, seed_org, viewer
from tests.conftest import BOT_ID, TOKEN

_ids = count(5000)


@pytest.fixture
def rt(make_settings):
    settings = make_settings(telegram_token=TOKEN)
    runtime = Runtime.build(settings, engine=make_engine(settings.database_url))
    yield runtime
    runtime.engine.dispose()


def _store(rt: Runtime, update: dict) -> None:
    event = parse_update_payload(json.dumps(update, ensure_ascii=False).encode(), account=BOT_ID)
    rt.intake.store(channel="telegram", account=BOT_ID, events=[event])
    while rt.intake.process_received():
        pass


def citizen_writes(rt: Runtime, chat_id: int, text: str) -> None:
    user = {"id": chat_id, "is_bot": False, "first_name": "Айгүл", "language_code": "ru"}
    message = {
        "message_id": next(_ids),
        "from": user,
        "chat": {"id": chat_id, "first_name": "Айгүл", "type": "private"},
        "date": int(utcnow().timestamp()),
        "text": text,
    }
    _store(rt, {"update_id": next(_ids), "message": message})


def citizen_presses(rt: Runtime, chat_id: int, data: str, question: OutboxItem) -> None:
    """A CallbackQuery under our question, its reply_markup as our connector sent it."""
    keyboard = [[{"text": c["label"], "callback_data": c["id"]}] for c in question.choices or []]
    message = {
        "message_id": next(_ids),
        "from": {"id": int(BOT_ID), "is_bot": True, "first_name": "Adaldyk", "username": "adaldyk_bot"},
        "chat": {"id": chat_id, "first_name": "Айгүл", "type": "private"},
        "date": int(utcnow().timestamp()),
        "text": question.text,
        "reply_markup": {"inline_keyboard": keyboard},
    }
    query = {
        "id": str(next(_ids)),
        "from": {"id": chat_id, "is_bot": False, "first_name": "Айгүл"},
        "message": message,
        "chat_instance": "-4242",
        "data": data,
    }
    _store(rt, {"update_id": next(_ids), "callback_query": query})


def appeal_of(rt: Runtime, chat_id: int) -> Appeal:
    with Session(rt.engine) as s:
        return s.exec(
            select(Appeal)
            .join(Conversation, col(Conversation.id) == col(Appeal.conversation_id))
            .where(Conversation.chat_id == str(chat_id))
            .order_by(col(Appeal.id).desc())
        ).first()


def outbox(rt: Runtime, appeal_id: int) -> dict[str, OutboxItem]:
    with Session(rt.engine) as s:
        return {o.key: o for o in s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal_id))}


def formal_appeal(rt: Runtime, chat_id: int, org) -> Appeal:
    citizen_writes(rt, chat_id, "Здравствуйте! Завод сбрасывает отходы в реку Нура, прошу принять меры.")
    appeal = appeal_of(rt, chat_id)
    make_formal(rt.engine, appeal.id, org.department)
    return appeal


def draft_and_approve(
    rt: Runtime, org, appeal: Appeal, text: str = "Проверка проведена, наложен штраф."
) -> None:
    officer, head = viewer(rt.engine, org.officer), viewer(rt.engine, org.department_head)
    with unit_of_work(rt.engine) as s:
        answers.save_draft(s, rt.workflow, s.get(Appeal, appeal.id), text, viewer=officer)
    with unit_of_work(rt.engine) as s:
        draft = answers.pending_draft(s, s.get(Appeal, appeal.id))
        answers.approve(s, rt.workflow, draft.id, viewer=head)


def everyone(rt: Runtime, org) -> dict:
    """Each person's Viewer, read before a test's write transaction (SQLite has one writer)."""
    ids = (org.committee_head, org.department_head, org.deputy, org.office_head, org.officer)
    return {user_id: viewer(rt.engine, user_id) for user_id in ids}


# --- notices -------------------------------------------------------------------------------------------


def test_registration_notice_carries_the_receipt_data_and_is_owed_once(rt):
    org = seed_org(rt.engine)
    citizen_writes(rt, 7001, "Здравствуйте! Рядом с домом незаконная свалка, прошу проверить.")
    appeal = appeal_of(rt, 7001)
    moderator = viewer(rt.engine, org.department_head)
    with unit_of_work(rt.engine) as s:
        a = s.get(Appeal, appeal.id)
        rt.workflow.change_status(s, a, "registered", actor=moderator.actor, actor_id=moderator.user_id)
    rows = outbox(rt, appeal.id)
    notice = rows[f"notice:registration:{appeal.id}"]
    local = appeal.registered_at.astimezone(rt.workflow.calendar.tz)
    assert notice.purpose == "registration"
    assert appeal.number in notice.text
    assert local.strftime("%d.%m.%Y %H:%M") in notice.text  # R2: date AND time
    assert "Сейтқали А. Б., руководитель департамента" in notice.text  # surname, initials, position
    assert appeal.due_at.astimezone(rt.workflow.calendar.tz).strftime("%d.%m.%Y") in notice.text
    assert "/status" in notice.text
    assert not any(k.startswith("status:") for k in rows)  # the notice replaces the generic message
    # The same notice owed again (a replayed step, a second worker): still one row.
    with unit_of_work(rt.engine) as s:
        a = s.get(Appeal, appeal.id)
        assert not notices.notify_citizen(s, rt.workflow, a, "registration", text="again", now=utcnow())
    assert [k for k in outbox(rt, appeal.id) if k.startswith("notice:registration")] == [notice.key]


def test_an_automatic_registration_names_the_project_office(rt):
    citizen_writes(rt, 7002, "Здравствуйте! Вырубают деревья в парке, прошу проверить.")
    appeal = appeal_of(rt, 7002)
    with unit_of_work(rt.engine) as s:
        rt.workflow.change_status(s, s.get(Appeal, appeal.id), "registered", actor="system")
    assert "проектный офис «Адалдық алаңы»" in outbox(rt, appeal.id)[f"notice:registration:{appeal.id}"].text


def test_two_workers_owing_the_same_notice_write_one_row(rt):
    citizen_writes(rt, 7003, "Здравствуйте! Пыль от карьера над посёлком, прошу принять меры.")
    appeal = appeal_of(rt, 7003)
    start = threading.Barrier(2)
    results: list[bool] = []

    def worker() -> None:
        start.wait()
        with unit_of_work(rt.engine) as s:
            a = s.get(Appeal, appeal.id)
            results.append(
                notices.notify_citizen(s, rt.workflow, a, "forwarding", text="to the akimat", now=utcnow())
            )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert [k for k in outbox(rt, appeal.id) if k.startswith("notice:forwarding")] == [
        f"notice:forwarding:{appeal.id}"
    ]


def test_extension_and_hearing_notices_say_what_the_law_asks(rt):
    org = seed_org(rt.engine)
    head = viewer(rt.engine, org.department_head)
    appeal = formal_appeal(rt, 7004, org)
    with unit_of_work(rt.engine) as s:
        a = s.get(Appeal, appeal.id)
        # R4 through the deadlines module's extension (the head's reasoned decision; its own notice).
        extend(s, rt.workflow, a, viewer=head, reason="нужна экспертиза", working_days=5, now=utcnow())
        rt.workflow.change_status(s, a, "hearing", actor=head.actor, note="в удовлетворении отказать")
        rt.workflow.change_status(s, a, "in_progress", actor=head.actor)
        rt.workflow.change_status(s, a, "hearing", actor=head.actor, note="отказать повторно")
        due = a.due_at.astimezone(rt.workflow.calendar.tz).strftime("%d.%m.%Y")
    rows = outbox(rt, appeal.id)
    extension = next(o for k, o in rows.items() if k.startswith(f"notice:extension:{appeal.id}"))
    assert due in extension.text and "нужна экспертиза" in extension.text
    first, second = rows[f"notice:hearing:{appeal.id}"], rows[f"notice:hearing:{appeal.id}:2"]
    assert "в удовлетворении отказать" in first.text and "2 рабочих дней" in first.text
    assert "отказать повторно" in second.text  # owed again, numbered
    assert any(k.startswith("status:") for k in rows)  # in_progress has no statutory notice: generic


# --- four eyes -----------------------------------------------------------------------------------------


def test_without_approval_nothing_leaves(rt):
    org = seed_org(rt.engine)
    appeal = formal_appeal(rt, 7101, org)
    officer = viewer(rt.engine, org.officer)
    with unit_of_work(rt.engine) as s:
        a = s.get(Appeal, appeal.id)
        with pytest.raises(ApprovalRequired):
            rt.workflow.reply(s, a, "Ответ без согласования", actor=officer.actor)
    with unit_of_work(rt.engine) as s:
        a = s.get(Appeal, appeal.id)
        with pytest.raises(ApprovalRequired):
            rt.workflow.change_status(s, a, "answered", actor=officer.actor, note="Ответ без согласования")
    with unit_of_work(rt.engine) as s:
        answers.save_draft(s, rt.workflow, s.get(Appeal, appeal.id), "Проверка проведена.", viewer=officer)
    rows = outbox(rt, appeal.id)
    assert not any(k.startswith(("notice:answer", "reply:", "feedback:")) for k in rows)
    assert appeal_of(rt, 7101).status == "in_progress"
    with Session(rt.engine) as s:
        asked = s.exec(select(StaffNotice).where(StaffNotice.kind == "approval")).one()
    assert asked.user_id == org.department_head  # the approver is told
    with Session(rt.engine) as s:  # what the deadlines digest counts for the department's head
        assert [a.id for a in answers.awaiting_approval(s, [org.department])] == [appeal.id]
        assert answers.awaiting_approval(s, [org.committee]) == []


def test_a_wrong_persons_approval_is_refused_and_the_heads_goes_out(rt):
    org = seed_org(rt.engine)
    people = everyone(rt, org)
    appeal = formal_appeal(rt, 7102, org)
    with unit_of_work(rt.engine) as s:
        answers.save_draft(
            s, rt.workflow, s.get(Appeal, appeal.id), "Штраф наложен.", viewer=people[org.officer]
        )
    with Session(rt.engine) as s:
        draft_id = answers.pending_draft(s, s.get(Appeal, appeal.id)).id
    for wrong in (org.officer, org.committee_head, org.deputy):  # the deputy's range has ended
        with unit_of_work(rt.engine) as s, pytest.raises(Forbidden):
            answers.approve(s, rt.workflow, draft_id, viewer=people[wrong])
    assert not any(k.startswith("notice:answer") for k in outbox(rt, appeal.id))
    with Session(rt.engine) as s:
        assert answers.pending_approvals(s, org.department_head, utcnow().date())[0].draft_id == draft_id
        assert answers.pending_approvals(s, org.deputy, utcnow().date()) == []
    with unit_of_work(rt.engine) as s:
        answers.approve(s, rt.workflow, draft_id, viewer=people[org.department_head])
    rows = outbox(rt, appeal.id)
    answer = rows[f"notice:answer:{appeal.id}"]
    assert "Штраф наложен." in answer.text and answer.purpose == "answer"
    question = rows[f"feedback:{appeal.id}"]
    assert [c["id"] for c in question.choices] == [f"feedback:{appeal.id}:yes", f"feedback:{appeal.id}:no"]
    assert answer.id < question.id  # the question follows the answer in the chat
    with Session(rt.engine) as s:
        draft = s.get(AnswerDraft, draft_id)
        assert (draft.decision, draft.decided_by_id) == ("approved", org.department_head)
        approved = s.exec(select(AppealEvent).where(AppealEvent.kind == "answer_approved")).one()
        assert approved.detail["approver"] == "t_dhead"
        assert (
            s.exec(select(AuditEvent).where(AuditEvent.action == "answer.approve")).one().actor
            == "user:t_dhead"
        )
        assert s.get(Appeal, appeal.id).status == "answered"
    with unit_of_work(rt.engine) as s, pytest.raises(Conflict):  # decided once
        answers.approve(s, rt.workflow, draft_id, viewer=people[org.department_head])


def test_the_deputy_approves_inside_the_range_and_not_the_head(rt):
    today = utcnow().date()
    org = seed_org(rt.engine, deputy_from=today - timedelta(days=2), deputy_to=today + timedelta(days=2))
    people = everyone(rt, org)
    appeal = formal_appeal(rt, 7103, org)
    with unit_of_work(rt.engine) as s:
        answers.save_draft(s, rt.workflow, s.get(Appeal, appeal.id), "Ответ.", viewer=people[org.officer])
    with Session(rt.engine) as s:
        draft_id = answers.pending_draft(s, s.get(Appeal, appeal.id)).id
        assert [p.deputy for p in answers.pending_approvals(s, org.deputy, today)] == [True]
    with unit_of_work(rt.engine) as s, pytest.raises(Forbidden):
        answers.approve(s, rt.workflow, draft_id, viewer=people[org.department_head])
    with unit_of_work(rt.engine) as s:
        answers.approve(s, rt.workflow, draft_id, viewer=people[org.deputy])
    assert f"notice:answer:{appeal.id}" in outbox(rt, appeal.id)


def test_returning_a_draft_sends_nothing_and_needs_a_comment(rt):
    org = seed_org(rt.engine)
    people = everyone(rt, org)
    appeal = formal_appeal(rt, 7104, org)
    head = viewer(rt.engine, org.department_head)
    with unit_of_work(rt.engine) as s:
        answers.save_draft(s, rt.workflow, s.get(Appeal, appeal.id), "Черновик.", viewer=people[org.officer])
    with Session(rt.engine) as s:
        draft_id = answers.pending_draft(s, s.get(Appeal, appeal.id)).id
    with unit_of_work(rt.engine) as s, pytest.raises(Invalid):
        answers.return_draft(s, rt.workflow, draft_id, viewer=head, comment="  ")
    before = set(outbox(rt, appeal.id))
    with unit_of_work(rt.engine) as s:
        answers.return_draft(s, rt.workflow, draft_id, viewer=head, comment="Укажите сумму штрафа")
    assert set(outbox(rt, appeal.id)) == before
    with Session(rt.engine) as s:
        draft = s.get(AnswerDraft, draft_id)
        assert (draft.decision, draft.comment) == ("returned", "Укажите сумму штрафа")
        told = s.exec(select(StaffNotice).where(StaffNotice.kind == "returned")).one()
        assert told.user_id == org.officer
    assert appeal_of(rt, 7104).status == "in_progress"


def test_a_signal_is_answered_without_approval(rt):
    citizen_writes(rt, 7105, "Спасибо за чистый парк!")
    appeal = appeal_of(rt, 7105)
    with unit_of_work(rt.engine) as s:
        rt.workflow.change_status(
            s, s.get(Appeal, appeal.id), "answered", actor="user:x", note="Рады стараться."
        )
    assert f"notice:answer:{appeal.id}" in outbox(rt, appeal.id)


# --- "was it solved?" ----------------------------------------------------------------------------------


def test_a_no_button_reopens_returns_to_the_unit_and_escalates(rt):
    org = seed_org(rt.engine)
    appeal = formal_appeal(rt, 7201, org)
    draft_and_approve(rt, org, appeal)
    question = outbox(rt, appeal.id)[f"feedback:{appeal.id}"]
    citizen_presses(rt, 7201, f"feedback:{appeal.id}:no", question)
    after = appeal_of(rt, 7201)
    assert after.id == appeal.id  # the press joined the answered appeal; no new appeal was opened
    assert (after.status, after.resolved, after.unit_id) == ("reopened", False, org.department)
    with Session(rt.engine) as s:
        notices_ = {(n.kind, n.unit_id, n.user_id) for n in s.exec(select(StaffNotice))}
        feedback_event = s.exec(select(AppealEvent).where(AppealEvent.kind == "feedback")).one()
    assert ("reopened", org.department, org.department_head) in notices_
    assert ("escalation", org.committee, org.committee_head) in notices_  # the head's superior
    assert ("escalation", org.office, org.office_head) in notices_  # and the project office
    assert feedback_event.detail["answer"] == "no"
    # The same press delivered again (Telegram redelivers an update): nothing more happens.
    with Session(rt.engine) as s:
        before = len(s.exec(select(StaffNotice)).all())
    citizen_presses(rt, 7201, f"feedback:{appeal.id}:no", question)
    with Session(rt.engine) as s:
        assert len(s.exec(select(StaffNotice)).all()) == before


def test_yes_in_words_closes_as_solved_and_the_share_is_kept(rt):
    org = seed_org(rt.engine)
    solved, unsolved = formal_appeal(rt, 7202, org), formal_appeal(rt, 7203, org)
    draft_and_approve(rt, org, solved)
    draft_and_approve(rt, org, unsolved)
    citizen_writes(rt, 7202, "Иә, шешілді!")
    citizen_writes(rt, 7203, "нет")
    assert (appeal_of(rt, 7202).status, appeal_of(rt, 7202).resolved) == ("closed", True)
    with Session(rt.engine) as s:
        assert s.get(Appeal, unsolved.id).resolved is False
        stats = {u.code: u for u in feedback.solved_by_unit(s)}
    department = stats["t_department"]
    assert (department.asked, department.solved, department.share) == (2, 1, 0.5)


def test_a_no_without_a_question_is_an_ordinary_message(rt):
    citizen_writes(rt, 7204, "Здравствуйте! Свалка у реки.")
    first = appeal_of(rt, 7204)
    citizen_writes(rt, 7204, "нет")
    with Session(rt.engine) as s:
        assert s.get(Appeal, first.id).status == "received"
        assert s.exec(select(AppealEvent).where(AppealEvent.kind == "feedback")).all() == []


def test_a_forged_button_for_another_chats_appeal_is_ignored(rt):
    org = seed_org(rt.engine)
    victim = formal_appeal(rt, 7205, org)
    draft_and_approve(rt, org, victim)
    citizen_writes(rt, 7206, "Здравствуйте! Шум от стройки ночью.")
    question = outbox(rt, victim.id)[f"feedback:{victim.id}"]
    citizen_presses(rt, 7206, f"feedback:{victim.id}:no", question)
    with Session(rt.engine) as s:
        assert s.get(Appeal, victim.id).status == "answered"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Иә", "yes"), ("иә, шешілді", "yes"), ("Да!", "yes"), ("решено", "yes"), ("Yes, solved", "yes"),
        ("1", "yes"), ("жоқ", "no"), ("Жоқ, шешілмеді.", "no"), ("Нет", "no"), ("не решено", "no"),
        ("Нет, не решена", "no"), ("no", "no"), ("not solved", "no"), ("2", "no"),
        ("нет воды в посёлке уже неделю", None), ("Здравствуйте", None),
    ],
)  # fmt: skip
def test_the_word_matcher_reads_kazakh_russian_and_english(text, answer):
    """E-mail and every channel without buttons answer in words (e-mail is built elsewhere: this is its
    part of the contract)."""
    said = feedback.recognise(text, None)
    assert (said.answer if said else None) == answer


def test_a_choice_id_is_read_only_in_our_format():
    assert feedback.recognise("", "feedback:12:no") == feedback.FeedbackAnswer("no", 12)
    assert feedback.recognise("", '{"command":"start"}') is None
