"""Two worker processes on one PostgreSQL database: exactly one polls the bot; after it is SIGKILLed the
other takes over, and what citizens write meanwhile is stored."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import LoopHeartbeat, Message
from tests.conftest import BOT_ID, TOKEN
from tests.faults import service_process, tail
from tests.support import wait_until

POLLER = f"telegram:poller:{BOT_ID}"


def _running(engine: Any) -> set[int]:
    """Pids of the processes whose last heartbeat says they poll the bot."""
    with Session(engine) as s:
        rows = s.exec(select(LoopHeartbeat).where(LoopHeartbeat.loop == POLLER)).all()
    return {int(r.process.split(":")[1]) for r in rows if r.state == "running"}


def _messages(engine: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(Message)).one())


def test_exactly_one_of_two_workers_polls_and_the_other_takes_over_after_sigkill(
    database_url: str, fake_telegram: Any, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("not applicable to SQLite: two workers share a database only on PostgreSQL")
    engine = make_engine(database_url)
    env = {
        "ADALDYK_DATABASE_URL": database_url,
        "ADALDYK_TELEGRAM_TOKEN": TOKEN,
        "ADALDYK_TELEGRAM_API_URL": fake_telegram.url,
        "ADALDYK_TELEGRAM_POLL_TIMEOUT": "1",
        "ADALDYK_LOG_LEVEL": "WARNING",
    }
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [service_process(["worker"], env, log) for log in logs]
    try:
        by_pid = {w.pid: w for w in workers}
        wait_until(lambda: len(_running(engine)) == 1, timeout=30, what="one worker polling")
        for n in range(20):  # heartbeats come every 5 s: watch two of them
            fake_telegram.citizen_message(
                TOKEN, chat_id=30_000 + n, text=f"Сообщение {n}", language_code="ru"
            )
            time.sleep(0.5)
            assert len(_running(engine)) == 1
        wait_until(lambda: _messages(engine) >= 20, timeout=30, what="the first messages")
        (holder,) = _running(engine)
        by_pid[holder].send_signal(signal.SIGKILL)
        by_pid[holder].wait(timeout=10)
        killed_at = time.monotonic()
        for n in range(20, 30):
            fake_telegram.citizen_message(
                TOKEN, chat_id=30_000 + n, text=f"Сообщение {n}", language_code="ru"
            )
        wait_until(lambda: _messages(engine) >= 30, timeout=30, what="messages after the kill")
        took = time.monotonic() - killed_at
        (other,) = [pid for pid in by_pid if pid != holder]
        wait_until(lambda: other in _running(engine), timeout=15, what="the other worker's heartbeat")
        print(f"\nthe standby stored the next messages {took:.1f} s after the holder was SIGKILLed")
        assert took < 15
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=30) for w in workers]
        engine.dispose()
    output = "".join(tail(log, 100_000) for log in logs)
    assert "Conflict" not in output  # never two getUpdates at once
    assert sorted(codes) == [-signal.SIGKILL, 0], output[-3000:]
