"""The audit log (adaldyk_bots/audit.py) on a real database: chained, append-only in the database
itself, linear with several processes writing at once, and `adaldyk audit verify` names the first
broken link."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session, col, select

from adaldyk_bots import audit, cli
from adaldyk_bots.org import sync_units
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, read_session, unit_of_work
from adaldyk_bots.storage.models import Appeal, AuditEvent
from adaldyk_bots.storage.scratch import truncate_all
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, PG_URL, TOKEN

FIXTURES = Path(__file__).resolve().parent / "connectors" / "telegram" / "fixtures"
CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _append(engine: Engine, n: int, *, actor: str = "user:moderator") -> None:
    for i in range(n):
        with unit_of_work(engine) as s:
            audit.record(s, actor=actor, action="appeal.view", subject=f"A-{i}", address="127.0.0.1")


def _verify(engine: Engine) -> audit.Verification:
    with read_session(engine) as s:
        return audit.verify(s)


def _events(engine: Engine) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id))))


def _tamper(engine: Engine, statement: str) -> None:
    """Run `statement` past the append-only triggers, as someone with the database's own rights could."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # In one transaction: the trigger is back before anyone else (the next test) can see it gone.
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
            conn.execute(text(statement))
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
        else:  # this test's own copy of the database
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
            conn.execute(text(statement))


def test_events_are_chained_and_verify(engine):
    _append(engine, 3)
    with unit_of_work(engine) as s:  # several in one transaction, with text that needs cleaning
        audit.record(
            s, actor="system", action="note", detail={"text": "Сәлем\x00", "n": 1.5, "list": [1, None]}
        )
        audit.record(s, actor="citizen", action="note", subject="Ә-1")
    rows = _events(engine)
    assert [r.id for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    assert rows[3].detail == {"text": "Сәлем\ufffd", "n": 1.5, "list": [1, None]}
    result = _verify(engine)
    assert result.ok and result.count == 5 and result.head_hash == rows[-1].hash


def test_nothing_is_recorded_when_the_transaction_rolls_back(engine):
    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        audit.record(s, actor="user:x", action="appeal.status", subject="A-1")
        raise RuntimeError("the change failed")
    _append(engine, 1)
    assert [r.id for r in _events(engine)] == [1]
    assert _verify(engine).ok


def test_the_database_refuses_update_and_delete(engine):
    _append(engine, 2)
    for statement in (
        "UPDATE audit_event SET actor = 'user:someone_else' WHERE id = 1",
        "DELETE FROM audit_event",
    ):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert len(_events(engine)) == 2 and _verify(engine).ok


def test_a_changed_row_is_named(engine):
    _append(engine, 4)
    _tamper(engine, "UPDATE audit_event SET subject = 'A-99' WHERE id = 3")
    result = _verify(engine)
    assert result.broken == audit.Break(3, "its fields do not match its hash (the row was changed)")
    assert result.count == 2


def test_a_rehashed_row_breaks_the_next_link(engine):
    _append(engine, 4)
    rows = _events(engine)
    forged = rows[1].model_dump()
    forged["actor"] = "user:nobody"
    _tamper(
        engine,
        f"UPDATE audit_event SET actor = 'user:nobody', hash = '{audit.event_hash(forged)}' WHERE id = 2",
    )
    assert _verify(engine).broken == audit.Break(3, "prev_hash does not match the hash of the row before it")


def test_a_deleted_row_is_named(engine):
    _append(engine, 5)
    _tamper(engine, "DELETE FROM audit_event WHERE id = 3")
    assert _verify(engine).broken == audit.Break(4, "row(s) 3 missing before it")


def test_a_deleted_last_row_is_named(engine):
    _append(engine, 3)
    _tamper(engine, "DELETE FROM audit_event WHERE id = 3")
    result = _verify(engine)
    assert result.broken is not None and result.broken.id == 3 and "rows deleted" in result.broken.reason


def test_truncate_still_works_and_starts_a_new_chain(engine, database_url):
    if not PG_URL:
        pytest.skip("the test suite truncates between tests on PostgreSQL only")
    _append(engine, 2)
    truncate_all(database_url)
    _append(engine, 1)
    assert [r.id for r in _events(engine)] == [1] and _verify(engine).ok


def _append_in_process(url: str, n: int, actor: str, start: Any) -> None:
    engine = make_engine(url)
    try:
        with engine.connect():
            pass  # connected before the start, so no writer is still importing when the others begin
        start.wait(timeout=120)  # every writer begins together (spawned processes start seconds apart)
        _append(engine, n, actor=actor)
    finally:
        engine.dispose()


def test_concurrent_processes_keep_one_chain(engine, database_url):
    writers, each = 3, 40
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(writers, mp_context=context) as pool:
        start = manager.Barrier(writers)
        futures = [
            pool.submit(_append_in_process, database_url, each, f"user:w{i}", start) for i in range(writers)
        ]
        for future in futures:
            future.result()
    rows = _events(engine)
    assert [r.id for r in rows] == list(range(1, writers * each + 1))
    assert {r.actor for r in rows} == {f"user:w{i}" for i in range(writers)}
    # Interleaved, not one writer after another: the lock was really contended.
    assert len({r.actor for r in rows[:each]}) > 1 or engine.dialect.name == "sqlite"
    result = _verify(engine)
    assert result.ok and result.count == writers * each


# --- the workflow records what staff do ----------------------------------------------------------


def _appeal(database_url: str, make_settings) -> tuple[Runtime, str]:
    rt = Runtime.build(make_settings(telegram_token=TOKEN), engine=make_engine(database_url))
    update = json.loads((FIXTURES / "doc_text.json").read_text(encoding="utf-8"))["update"]
    update["message"]["text"] = "Өзен жағасында қоқыс жатыр, шара қолданыңыздар"
    event = parse_update_payload(json.dumps(update, ensure_ascii=False).encode(), account=BOT_ID)
    rt.intake.store(channel="telegram", account=BOT_ID, events=[event])
    while rt.intake.process_received():
        pass
    with unit_of_work(rt.engine) as s:
        sync_units(s, CONFIG / "org.toml")
        number = s.exec(select(Appeal.number)).one()
    return rt, number


def test_staff_actions_are_audited(database_url, make_settings):
    rt, number = _appeal(database_url, make_settings)
    try:
        with unit_of_work(rt.engine) as s:
            appeal = rt.workflow.appeal_by_number(s, number)
            rt.workflow.assign_unit(s, appeal, "cerc_astana", actor="user:moderator")
            rt.workflow.change_status(s, appeal, "in_progress", actor="user:moderator", note="проверка")
            rt.workflow.reply(s, appeal, "Жауап дайын", actor="token:crm")
        rows = _events(rt.engine)
        assert [(r.actor, r.action, r.subject) for r in rows] == [
            ("user:moderator", "appeal.unit", number),
            ("user:moderator", "appeal.status", number),
            ("token:crm", "appeal.reply", number),
        ]
        assert rows[1].detail == {"from": "received", "to": "in_progress", "note": "проверка"}
        assert rows[0].detail["code"] == "cerc_astana" and rows[2].detail["text"] == "Жауап дайын"
        assert _verify(rt.engine).ok
    finally:
        rt.engine.dispose()


# --- adaldyk audit verify --------------------------------------------------------------------------


def test_cli_verify_says_ok_then_names_the_broken_row(engine, database_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ADALDYK_DATABASE_URL", database_url)
    monkeypatch.setenv("ADALDYK_SECRET_KEY", "test-secret-key-0123456789")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    _append(engine, 3)
    assert cli.main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 audit event(s), chain intact; head hash ")
    _tamper(engine, "UPDATE audit_event SET address = '10.0.0.1' WHERE id = 2")
    assert cli.main(["audit", "verify"]) == 1
    assert "BROKEN at audit event 2: its fields do not match its hash" in capsys.readouterr().err


def test_a_requeue_and_a_missed_deadline_are_audited(database_url, make_settings):
    from datetime import timedelta

    from sqlalchemy import update

    from adaldyk_bots.dispatcher import requeue
    from adaldyk_bots.storage.db import utcnow
    from adaldyk_bots.storage.models import OutboxItem

    rt, number = _appeal(database_url, make_settings)
    try:
        with unit_of_work(rt.engine) as s:
            s.execute(update(OutboxItem).values(state="failed", last_error_code="telegram.blocked"))
            s.execute(update(Appeal).values(due_at=utcnow() - timedelta(days=1)))
        with unit_of_work(rt.engine) as s:
            assert len(requeue(s, now=utcnow(), actor="user:moderator")) == 1
        with unit_of_work(rt.engine) as s:
            assert rt.workflow.mark_overdue(s) == 1
        rows = _events(rt.engine)
        assert [(r.actor, r.action, r.subject) for r in rows] == [
            ("user:moderator", "delivery.retry", number),
            ("system", "appeal.overdue", number),
        ]
        assert rows[0].detail["was"] == "failed" and rows[0].detail["code"] == "telegram.blocked"
        assert _verify(rt.engine).ok
    finally:
        rt.engine.dispose()


def test_the_head_is_the_last_lock_so_appends_never_deadlock(engine):
    """A transaction whose own change waits for a row that a committing appender holds must not hold the
    head meanwhile: the appender, committing, would wait for the head, and PostgreSQL would kill one."""
    import threading

    from adaldyk_bots.storage.db import utcnow
    from adaldyk_bots.storage.models import ChannelCursor

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no two transactions can hold locks at once")
    with unit_of_work(engine) as s:
        s.add(ChannelCursor(channel="t", account="a", value="0", updated_at=utcnow()))
    holds_row, go, errors = threading.Event(), threading.Event(), []

    def appender_holding_the_row() -> None:
        try:
            with unit_of_work(engine) as s:
                row = s.get(ChannelCursor, ("t", "a"))
                row.value = "appender"
                s.flush()  # the row lock, now
                audit.record(s, actor="user:first", action="note")
                holds_row.set()
                go.wait(10)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def appender_waiting_for_the_row() -> None:
        try:
            with unit_of_work(engine) as s:
                row = s.get(ChannelCursor, ("t", "a"))  # a plain read never waits
                row.value = "second"  # flushed at commit: waits for the first one's row lock
                audit.record(s, actor="user:second", action="note")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    first = threading.Thread(target=appender_holding_the_row)
    first.start()
    assert holds_row.wait(10)
    second = threading.Thread(target=appender_waiting_for_the_row)
    second.start()

    def someone_waits_for_a_lock() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar()
            )

    from tests.support import wait_until

    wait_until(someone_waits_for_a_lock, timeout=10, what="the second transaction to wait for the row")
    go.set()
    first.join(20)
    second.join(20)
    assert errors == []
    assert [r.actor for r in _events(engine)] == ["user:first", "user:second"]
    assert _verify(engine).ok
