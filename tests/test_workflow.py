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


def test_a_new_citizens_appeal_is_indexed_as_a_rebuild_from_the_rows_would_index_it(runtime):
    """The first message of a new citizen writes its search document from what it just stored
    (search_index.write_first); it must be the very document `refresh` reads back from the rows, also
    for names and texts the databases cannot store as they came (storage/types.py)."""
    from adaldyk_bots.storage import search_index
    from adaldyk_bots.storage.models import AppealSearch

    plain = update("private_text_cyrillic")
    odd = json.loads(json.dumps(plain))
    odd["update_id"] += 1
    odd["message"]["chat"]["id"] = odd["message"]["from"]["id"] = 424243
    odd["message"]["from"]["first_name"] = "Ай\u0000гер\ud800ім"
    odd["message"]["from"]["username"] = "x_\udfff_y"
    odd["message"]["text"] = "Қоқыс\u0000 төгілді ADL-2026-000009 \ud83d жанында"
    nameless = json.loads(json.dumps(plain))
    nameless["update_id"] += 2
    nameless["message"]["chat"]["id"] = nameless["message"]["from"]["id"] = 424244
    del nameless["message"]["from"]["username"]
    follow_up = json.loads(json.dumps(plain))
    follow_up["update_id"] += 3
    follow_up["message"]["message_id"] += 1
    follow_up["message"]["date"] += 60
    follow_up["message"]["text"] = "Тағы бір сөз"
    # ASCII JSON: lone surrogates travel as \\u escapes, as a platform may send them.
    events = [parse_update_payload(json.dumps(u).encode(), account=ACCOUNT) for u in (plain, odd, nameless)]
    runtime.intake.store(channel="telegram", account=ACCOUNT, events=events)
    store(runtime, follow_up)
    with Session(runtime.engine) as s:
        written = {row.appeal_id: row.document for row in s.exec(select(AppealSearch))}
    assert len(written) == 3 and all(written.values())
    with unit_of_work(runtime.engine) as s:
        search_index.refresh(s.connection(), list(written))
    with Session(runtime.engine) as s:
        rebuilt = {row.appeal_id: row.document for row in s.exec(select(AppealSearch))}
    assert rebuilt == written
    assert "сөз" in written[min(written)]  # the follow-up joined the first appeal and is found in it
