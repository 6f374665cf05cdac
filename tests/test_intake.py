"""Intake on a real database (SQLite, or PostgreSQL when ADALDYK_TEST_DATABASE_URL is set), fed by the real
Telegram parser: reused update ids (issue 6 item 5), edits before their originals (item 6), passing
database errors and replay (item 8)."""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, func, select

from adaldyk_bots.intake import is_transient
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, AppealEvent, Message, MessageVersion, OutboxItem, RawEvent
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, PG_URL, TOKEN
from tests.support import wait_until

FIXTURES = Path(__file__).resolve().parent / "connectors" / "telegram" / "fixtures"
ACCOUNT = BOT_ID
pg_only = pytest.mark.skipif(not PG_URL, reason="row locks and backends are PostgreSQL's")
sqlite_only = pytest.mark.skipif(bool(PG_URL), reason="SQLite's file lock; PostgreSQL has the tests above")


def fixture(name: str) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["update"]
    return update


@pytest.fixture
def runtime(make_settings: Any) -> Any:
    settings = make_settings(telegram_token=TOKEN)
    rt = Runtime.build(settings, engine=make_engine(settings.database_url))
    yield rt
    rt.engine.dispose()


def store(rt: Runtime, *updates: dict[str, Any]) -> Any:
    events = [
        parse_update_payload(json.dumps(u, ensure_ascii=False).encode(), account=ACCOUNT) for u in updates
    ]
    return rt.intake.store(channel="telegram", account=ACCOUNT, events=events)


def process_all(rt: Runtime) -> None:
    while rt.intake.process_received():
        pass


def count(rt: Runtime, model: Any, *where: Any) -> int:
    with Session(rt.engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def message(update_id: int, message_id: int, text_: str, *, chat: int = 100000001) -> dict[str, Any]:
    update = fixture("private_text")
    update["update_id"] = update_id
    update["message"]["message_id"] = message_id
    update["message"]["text"] = text_
    update["message"]["chat"]["id"] = update["message"]["from"]["id"] = chat
    return update


def edit(
    update_id: int, message_id: int, text_: str, *, edit_date: int, chat: int = 100000001
) -> dict[str, Any]:
    update = message(update_id, message_id, text_, chat=chat)
    body = update.pop("message")
    body["edit_date"] = edit_date
    update["edited_message"] = body
    return update


# --- item 5: a reused update_id is not a duplicate --------------------------------------------------


def test_a_reused_update_id_carrying_a_new_message_becomes_an_appeal(runtime: Runtime) -> None:
    store(runtime, message(500, 1, "Мусор не вывозят"))
    process_all(runtime)
    with Session(runtime.engine) as s:
        first = s.exec(select(Appeal)).one()
        runtime.workflow.change_status(s, first, "answered", actor="test")
        s.commit()
    # A week later Telegram starts update ids again from a random value, which happens to be 500 again.
    result = store(runtime, message(500, 2, "Снова не вывозят, уже вторую неделю"))
    process_all(runtime)
    assert (result.stored, result.duplicates) == (1, 0)
    with Session(runtime.engine) as s:
        texts = [
            m.text for m in s.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id)))
        ]
        appeals = s.exec(select(Appeal).order_by(col(Appeal.id))).all()
    assert texts == ["Мусор не вывозят", "Снова не вывозят, уже вторую неделю"]
    assert len(appeals) == 2
    assert count(runtime, OutboxItem, OutboxItem.purpose == "ack") == 2


def test_a_real_redelivery_is_dropped_once_and_logged(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    update = message(700, 5, "Свалка у реки")
    store(runtime, update)
    with caplog.at_level(logging.INFO, logger="adaldyk_bots.intake"):
        again = store(runtime, update, copy.deepcopy(update))  # a webhook retry, twice in one batch
        other_update_id = store(runtime, {**copy.deepcopy(update), "update_id": 99_999})
    process_all(runtime)
    assert (again.stored, again.duplicates) == (0, 2)
    assert (other_update_id.stored, other_update_id.duplicates) == (0, 1)
    assert count(runtime, RawEvent) == 1 and count(runtime, Message) == 1 and count(runtime, Appeal) == 1
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("duplicate telegram event")]
    assert len(logged) == 3
    assert all("message:100000001:5" in line and "already stored as raw event 1" in line for line in logged)


# --- item 6: an edit stored before its original ----------------------------------------------------


def versions(rt: Runtime) -> tuple[Message, list[MessageVersion]]:
    with Session(rt.engine) as s:
        msg = s.exec(select(Message).where(Message.direction == "in")).one()
        kept = list(
            s.exec(
                select(MessageVersion)
                .where(MessageVersion.message_id == msg.id)
                .order_by(col(MessageVersion.edited_at))
            )
        )
    return msg, kept


def test_an_edit_before_its_original_keeps_both_in_the_platforms_order(runtime: Runtime) -> None:
    original = message(800, 9, "Во дворе дома 5 свалка")
    edited = edit(801, 9, "Во дворе дома 15 свалка", edit_date=original["message"]["date"] + 60)
    store(runtime, edited)  # two webhook connections: the edit wins the race
    process_all(runtime)
    store(runtime, original)
    process_all(runtime)

    msg, kept = versions(runtime)
    assert msg.text == "Во дворе дома 5 свалка" and msg.stand_in_edited_at is None
    assert [v.text for v in kept] == ["Во дворе дома 15 свалка"]
    with Session(runtime.engine) as s:
        appeal = s.exec(select(Appeal)).one()
        events = [(e.kind, e.detail) for e in s.exec(select(AppealEvent).order_by(col(AppealEvent.id)))]
        raws = {r.id: r.state for r in s.exec(select(RawEvent))}
    assert msg.appeal_id == appeal.id and appeal.summary == "Во дворе дома 5 свалка"
    assert events[0][0] == "created" and events[-1][0] == "edited"
    assert events[-1][1]["original_arrived_late"] is True
    assert set(raws.values()) == {"processed"} and len(raws) == 2
    assert msg.raw_event_id == 2 and kept[0].raw_event_id == 1  # each version keeps its own raw event
    assert count(runtime, OutboxItem, OutboxItem.purpose == "ack") == 1


def test_edits_and_original_in_any_order_end_in_the_same_rows(runtime: Runtime) -> None:
    date = fixture("private_text")["message"]["date"]
    original = message(900, 3, "v0")
    first = edit(901, 3, "v1", edit_date=date + 10)
    second = edit(902, 3, "v2", edit_date=date + 20)
    for update in (second, first, second, original, first, original):  # with redeliveries
        store(runtime, update)
        process_all(runtime)
    msg, kept = versions(runtime)
    assert msg.text == "v0" and msg.stand_in_edited_at is None
    assert [v.text for v in kept] == ["v1", "v2"]
    assert count(runtime, Appeal) == 1


def test_an_edit_whose_original_never_comes_stays_the_message(runtime: Runtime) -> None:
    store(runtime, edit(950, 4, "Только правка", edit_date=fixture("private_text")["message"]["date"] + 5))
    process_all(runtime)
    msg, kept = versions(runtime)
    assert msg.text == "Только правка" and msg.stand_in_edited_at is not None and kept == []
    assert count(runtime, Appeal) == 1


# --- item 8: passing errors pass; unknown content is kept; replay holds the processor's lock -------


def test_unknown_content_is_quarantined_and_replayable(runtime: Runtime) -> None:
    dice = message(1000, 11, "")
    del dice["message"]["text"]
    dice["message"]["dice"] = {"emoji": "🎲", "value": 4}
    result = store(runtime, dice)
    assert result.quarantined == 1
    with Session(runtime.engine) as s:
        raw = s.exec(select(RawEvent)).one()
    assert raw.reason == "telegram.unsupported_content:dice"
    # Today's parser still cannot read it: it stays quarantined, nothing is lost.
    assert runtime.intake.replay() == [(raw.id, "quarantined", "telegram.unsupported_content:dice")]
    fixed = json.dumps(message(1000, 11, "🎲 4"), ensure_ascii=False).encode()
    assert runtime.intake.replay(event_id=raw.id, corrected_payload=fixed) == [(raw.id, "processed", None)]
    assert count(runtime, Appeal) == 1


def test_database_errors_that_pass_are_told_apart_from_broken_events(runtime: Runtime) -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    with runtime.engine.connect() as conn:
        with pytest.raises(Exception) as broken:
            conn.execute(text("SELECT * FROM no_such_table_here"))
    # A missing table is the deployment's fault, not the event's: retried, never quarantined.
    assert is_transient(broken.value) == isinstance(broken.value, OperationalError)
    assert not is_transient(IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))
    assert not is_transient(KeyError("a bug in our code"))


def _backend_waiting_on_a_lock(engine: Any) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ).scalar()


def _open_appeal_and_follow_up(runtime: Runtime, chat: int) -> int:
    store(runtime, message(2000 + chat, 1, "Первое сообщение", chat=chat))
    process_all(runtime)
    follow_up = message(3000 + chat, 2, "Дополнение", chat=chat)
    follow_up["message"]["date"] += 30  # later than the first: the conversation row is updated too
    store(runtime, follow_up)
    with Session(runtime.engine) as s:
        return int(s.exec(select(Appeal.id)).one())


def _run_in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pg_only
def test_a_dropped_connection_while_processing_is_retried_not_quarantined(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    appeal_id = _open_appeal_and_follow_up(runtime, 4101)
    holder = make_engine(runtime.settings.database_url)
    try:
        with holder.connect() as conn, caplog.at_level(logging.WARNING, logger="adaldyk_bots.intake"):
            conn.execute(text("SELECT id FROM appeal WHERE id = :id FOR UPDATE"), {"id": appeal_id})
            thread, box = _run_in_thread(runtime.intake.process_received)
            victim = wait_until(lambda: _backend_waiting_on_a_lock(holder), what="the processor to wait")
            with holder.connect() as admin:  # a failover or an administrator ends the processor's session
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
            wait_until(
                lambda: (pid := _backend_waiting_on_a_lock(holder)) is not None and pid != victim,
                what="the processor to try again on a new connection",
            )
            conn.rollback()  # the lock goes; the retry goes through
            thread.join(timeout=20)
        assert "error" not in box, box
        assert box["result"] == 1
    finally:
        holder.dispose()
    with Session(runtime.engine) as s:
        states = [r.state for r in s.exec(select(RawEvent).order_by(col(RawEvent.id)))]
        joined = s.exec(select(Message).where(Message.appeal_id == appeal_id)).all()
    assert states == ["processed", "processed"] and len(joined) == 2
    assert any("passing database error" in r.getMessage() for r in caplog.records)


@pg_only
def test_a_deadlock_while_processing_is_retried_not_quarantined(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    appeal_id = _open_appeal_and_follow_up(runtime, 4102)
    holder = make_engine(runtime.settings.database_url)
    try:
        with holder.connect() as conn, caplog.at_level(logging.WARNING, logger="adaldyk_bots.intake"):
            # Our side waits long before it looks for a deadlock, so the processor (1 s, the default) is
            # the one PostgreSQL picks to break it.
            conn.execute(text("SET deadlock_timeout = '20s'"))
            conn.execute(text("SELECT id FROM appeal WHERE id = :id FOR UPDATE"), {"id": appeal_id})
            thread, box = _run_in_thread(runtime.intake.process_received)
            wait_until(lambda: _backend_waiting_on_a_lock(holder), what="the processor to wait")
            # The processor holds the conversation row (it touched last_inbound_at) and waits for the appeal;
            # we hold the appeal and now want the conversation: a real deadlock.
            conn.execute(
                text(
                    "UPDATE conversation SET kind = kind"
                    " WHERE id = (SELECT conversation_id FROM appeal WHERE id = :id)"
                ),
                {"id": appeal_id},
            )
            conn.commit()
            thread.join(timeout=20)
        assert "error" not in box, box
        assert box["result"] == 1
    finally:
        holder.dispose()
    with Session(runtime.engine) as s:
        states = [r.state for r in s.exec(select(RawEvent).order_by(col(RawEvent.id)))]
    assert states == ["processed", "processed"]
    assert any(
        "passing database error" in r.getMessage() and "DeadlockDetected" in r.getMessage()
        for r in caplog.records
    )


@pg_only
def test_replay_never_runs_beside_a_running_processor(runtime: Runtime) -> None:
    broken = json.dumps(message(5000, 1, "Жалоба"), ensure_ascii=False)[:-10].encode()
    store_result = runtime.intake.store(
        channel="telegram", account=ACCOUNT, events=[parse_update_payload(broken, account=ACCOUNT)]
    )
    assert store_result.quarantined == 1
    fixed = json.dumps(message(5000, 1, "Жалоба"), ensure_ascii=False).encode()
    processor = runtime.intake.processor_lock()
    assert processor.try_acquire()  # a worker's processor is running
    try:
        thread, box = _run_in_thread(lambda: runtime.intake.replay(event_id=1, corrected_payload=fixed))

        def handed_back() -> bool:
            with Session(runtime.engine) as s:
                return s.exec(select(RawEvent.state)).one() == "received"

        wait_until(handed_back, what="replay to hand the event to the processor")
        time.sleep(0.3)
        assert count(runtime, Appeal) == 0  # replay did not process it itself
        assert runtime.intake.process_received() == 1  # the processor does, in its turn
        thread.join(timeout=20)
    finally:
        processor.release()
    assert box.get("result") == [(1, "processed", None)], box
    assert count(runtime, Appeal) == 1


def test_replay_without_a_processor_runs_under_its_lock(runtime: Runtime) -> None:
    broken = json.dumps(message(5100, 1, "Жалоба"), ensure_ascii=False)[:-10].encode()
    runtime.intake.store(
        channel="telegram", account=ACCOUNT, events=[parse_update_payload(broken, account=ACCOUNT)]
    )
    fixed = json.dumps(message(5100, 1, "Жалоба"), ensure_ascii=False).encode()
    assert runtime.intake.replay(event_id=1, corrected_payload=fixed) == [(1, "processed", None)]
    # The lock is free again for the processor.
    lock = runtime.intake.processor_lock()
    assert lock.try_acquire()
    lock.release()


@sqlite_only
def test_a_locked_sqlite_database_while_processing_is_retried(runtime: Runtime) -> None:
    import sqlite3

    from sqlalchemy import event

    store(runtime, message(6000, 1, "Жалоба"))

    @event.listens_for(runtime.engine, "connect")
    def _short_busy_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=50")  # fail fast instead of SQLite's 30 s wait

    runtime.engine.dispose()
    other = sqlite3.connect(runtime.engine.url.database or "", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process (an old `adaldyk replay`, a backup) writes
    release = threading.Timer(0.3, other.rollback)
    release.start()
    try:
        assert runtime.intake.process_received() == 1
    finally:
        release.join()
        other.close()
    with Session(runtime.engine) as s:
        assert s.exec(select(RawEvent.state)).one() == "processed"


def test_an_event_that_breaks_the_workflow_is_quarantined_and_the_rest_of_its_batch_goes_on(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    store(runtime, message(7000, 1, "Первый", chat=81))
    process_all(runtime)
    year = "2020"  # the fixture's date
    with Session(runtime.engine) as s:
        # Hand-made data (an import, a repair) took the number the next appeal will be given.
        first = s.exec(select(Appeal)).one()
        first.number = f"ADL-{year}-000003"
        s.add(first)
        s.commit()
        first_id = first.id
    store(
        runtime,
        message(7001, 1, "Второй", chat=82),
        message(7002, 1, "Третий", chat=83),
        message(7003, 2, "Первый пишет ещё", chat=81),
    )
    with caplog.at_level(logging.ERROR, logger="adaldyk_bots.intake"):
        assert runtime.intake.process_received() == 3
    with Session(runtime.engine) as s:
        raws = {r.id: (r.state, r.reason) for r in s.exec(select(RawEvent))}
        numbers = sorted(a.number for a in s.exec(select(Appeal)))
        joined = s.exec(select(Message).where(Message.appeal_id == first_id)).all()
    assert [state for state, _ in raws.values()] == ["processed", "processed", "quarantined", "processed"]
    reason = raws[3][1] or ""
    assert reason.startswith("processing_error: IntegrityError"), reason
    assert numbers == [f"ADL-{year}-000002", f"ADL-{year}-000003"] and len(joined) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "telegram event message:83:1 broke the workflow; quarantined"
    ]
