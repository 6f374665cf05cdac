"""The workflow on a real database, fed by the real Telegram parser with recorded updates."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, Message, MessageVersion, OutboxItem, RawEvent
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, TOKEN

FIXTURES = Path(__file__).resolve().parent / "connectors" / "telegram" / "fixtures"
ACCOUNT = BOT_ID


def update(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["update"]


@pytest.fixture
def runtime(make_settings):
    settings = make_settings(telegram_token=TOKEN)  # the bot's id is ACCOUNT; nothing goes on the network
    rt = Runtime.build(settings, engine=make_engine(settings.database_url))
    yield rt
    rt.engine.dispose()


def store(rt: Runtime, *updates: dict) -> None:
    events = [
        parse_update_payload(json.dumps(u, ensure_ascii=False).encode(), account=ACCOUNT) for u in updates
    ]
    rt.intake.store(channel="telegram", account=ACCOUNT, events=events)
    while rt.intake.process_received():
        pass


def count(rt: Runtime, model, *where) -> int:
    with Session(rt.engine) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def test_edit_is_a_new_version_and_the_original_stays(runtime):
    edited = update("doc_edited")
    edited["update_id"] += 1  # Telegram's documentation samples all carry update_id 10000
    store(runtime, update("doc_text"), edited, edited)
    with Session(runtime.engine) as s:
        message = s.exec(select(Message)).one()
        versions = s.exec(select(MessageVersion)).all()
        kinds = [e.kind for e in s.exec(select(AppealEvent))]
    assert message.text == "/start"  # the original as first received
    assert [v.text for v in versions] == ["Edited text"]  # the same edit twice: one version
    assert kinds.count("edited") <= 1


def test_album_is_one_appeal_with_one_acknowledgement(runtime):
    store(runtime, update("album_1"), update("album_2"))
    assert count(runtime, Message, Message.direction == "in") == 2
    assert count(runtime, Appeal) == 1
    assert count(runtime, OutboxItem, OutboxItem.purpose == "ack") == 1


def test_group_messages_and_bots_are_ignored_with_a_reason(runtime):
    store(
        runtime,
        update("group_supergroup_photo"),
        update("bot_sender_anonymous_admin"),
        update("channel_post"),
    )
    with Session(runtime.engine) as s:
        raws = s.exec(select(RawEvent)).all()
    assert [r.state for r in raws] == ["ignored"] * 3
    assert {r.reason for r in raws} == {"telegram.group_chat", "telegram.from_bot", "telegram.channel_post"}
    assert count(runtime, Appeal) == 0 and count(runtime, OutboxItem) == 0


def test_each_appeal_gets_the_next_number_of_its_year(runtime):
    first = update("private_text")
    second = json.loads(json.dumps(first))
    second["update_id"] += 1
    second["message"]["chat"]["id"] = second["message"]["from"]["id"] = 424242
    store(runtime, first, second)
    with Session(runtime.engine) as s:
        numbers = [a.number for a in s.exec(select(Appeal).order_by(Appeal.id))]
    year = numbers[0].split("-")[1]
    assert numbers == [f"ADL-{year}-000001", f"ADL-{year}-000002"]


def test_lang_command_switches_the_open_appeal_and_answers_in_the_new_language(runtime):
    first = update("private_text_cyrillic")
    lang = json.loads(json.dumps(first))
    lang["update_id"] += 1
    lang["message"]["message_id"] += 1
    lang["message"]["text"] = "/lang en"
    store(runtime, first, lang)
    with Session(runtime.engine) as s:
        appeal = s.exec(select(Appeal)).one()
        answer = s.exec(select(OutboxItem).where(OutboxItem.purpose == "info")).one()
    assert appeal.language == "en"
    assert answer.text == "Reply language: English."


def test_overdue_is_recorded_once_as_a_legal_state(runtime):
    store(runtime, update("private_text"))
    with unit_of_work(runtime.engine) as s:
        appeal = s.exec(select(Appeal)).one()
        appeal.due_at = utcnow() - timedelta(minutes=1)
        s.add(appeal)
    assert runtime.mark_overdue() == 1
    assert runtime.mark_overdue() == 0
    with Session(runtime.engine) as s:
        assert s.exec(select(Appeal)).one().overdue
        # R7, then its escalation (deadlines.py), each once
        assert [e.kind for e in s.exec(select(AppealEvent))][-2:] == ["overdue", "escalated"]


def test_redelivered_batch_with_cursor_is_idempotent(runtime):
    store(runtime, update("private_text"))
    events = [parse_update_payload(json.dumps(update("private_text")).encode(), account=ACCOUNT)]
    result = runtime.intake.store(channel="telegram", account=ACCOUNT, events=events, cursor="639974025")
    assert (result.stored, result.duplicates) == (0, 1)
    assert runtime.intake.cursor("telegram", ACCOUNT) == "639974025"
    assert count(runtime, Message) == 1
