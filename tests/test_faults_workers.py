"""One web and two workers on PostgreSQL, 1,000 citizens writing through the fake Telegram and VK, while
each worker is SIGKILLed once and the Telegram poller's lock holder loses its connection
(pg_terminate_backend): every message stored once, every citizen acknowledged, no appeal opened twice,
duplicate acknowledgements within the documented window, no platform limit exceeded."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, func, select

from adaldyk_bots.ports import poller_lock_name
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, Message, RawEvent
from connectors.telegram.fake import FakeTelegramServer
from connectors.vk.fake import FakeVK
from tests.conftest import BOT_ID, TOKEN
from tests.connectors.vk import GROUP_ID
from tests.connectors.vk import TOKEN as VK_TOKEN
from tests.faults import lock_holder_pids, service_process, tail, terminate_lock_holder
from tests.support import free_port, wait_until

pytestmark = pytest.mark.faults

CITIZENS = 1_000  # half on Telegram, half on VK
IN_FLIGHT = 4  # ADALDYK_DISPATCH_CONCURRENCY: the duplicate window is this many parts per crash
TELEGRAM_POLLER = poller_lock_name("telegram", BOT_ID)


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _citizens_write(telegram: FakeTelegramServer, vk: FakeVK) -> None:
    """About 100 citizens a second, Telegram and VK in turn, each writing once."""
    for n in range(CITIZENS // 2):
        telegram.citizen_message(
            TOKEN, chat_id=60_000 + n, text=f"Обращение {n}: свалка у реки", language_code="ru"
        )
        vk.citizen_message(70_000 + n, f"Өтініш {n}: өзен ластанған", lang_id=97)
        time.sleep(1 / 50)


def test_two_workers_killed_and_cut_off_lose_nothing_and_double_nothing(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("not applicable to SQLite: two workers share a database only on PostgreSQL")
    telegram = FakeTelegramServer(chat_burst=3, chat_rate_per_s=1.0, bot_burst=30, bot_rate_per_s=30.0)
    telegram.start()
    telegram.add_bot(TOKEN)
    vk = FakeVK()
    vk.start()
    vk.add_group(GROUP_ID, VK_TOKEN)
    port = free_port()
    web_url = f"http://127.0.0.1:{port}"
    env = {
        "ADALDYK_DATABASE_URL": database_url,
        "ADALDYK_SECRET_KEY": "workers-test-secret-key-0123456789",
        "ADALDYK_TELEGRAM_TOKEN": TOKEN,
        "ADALDYK_TELEGRAM_API_URL": telegram.url,
        "ADALDYK_TELEGRAM_POLL_TIMEOUT": "1",
        "ADALDYK_VK_TOKEN": VK_TOKEN,
        "ADALDYK_VK_GROUP_ID": str(GROUP_ID),
        "ADALDYK_VK_API_URL": vk.url,
        "ADALDYK_VK_LONGPOLL_WAIT": "1",
        "ADALDYK_DISPATCH_INTERVAL_SECONDS": "0.1",
        "ADALDYK_DISPATCH_CONCURRENCY": str(IN_FLIGHT),
        "ADALDYK_OUTBOX_LEASE_SECONDS": "15",
        "ADALDYK_LOOP_STALE_SECONDS": "20",
        "ADALDYK_HOST": "127.0.0.1",
        "ADALDYK_PORT": str(port),
        "ADALDYK_LOG_LEVEL": "WARNING",
    }
    engine = make_engine(database_url)
    logs: list[Path] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}-{len(logs)}.log"
        logs.append(log)
        return service_process([name], env, log)

    web = start("web")
    workers = [start("worker"), start("worker")]
    kills = 0
    feeder = threading.Thread(target=_citizens_write, args=(telegram, vk), daemon=True)
    try:
        wait_until(lambda: _health(web_url).get("database") or web.poll() is not None, timeout=60, what="web")
        assert web.poll() is None, tail(logs[0])
        # A first VK start begins at VK's current position; citizens write after that.
        wait_until(lambda: _count(engine, RawEvent) == 0 and _vk_cursor(engine), timeout=30, what="VK")
        wait_until(lambda: lock_holder_pids(database_url, TELEGRAM_POLLER), timeout=30, what="a poller")
        started = time.monotonic()
        feeder.start()
        for victim in (0, 1):
            time.sleep(2.5)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(timeout=10)
            kills += 1
            workers[victim] = start("worker")
        time.sleep(2.0)
        wait_until(lambda: lock_holder_pids(database_url, TELEGRAM_POLLER), timeout=15, what="a poller")
        terminate_lock_holder(database_url, TELEGRAM_POLLER)
        cut_at = time.monotonic()
        wait_until(lambda: lock_holder_pids(database_url, TELEGRAM_POLLER), timeout=15, what="a new holder")
        takeover = time.monotonic() - cut_at
        feeder.join(timeout=60)

        half = CITIZENS // 2
        wait_until(
            lambda: _count(engine, Message, Message.direction == "in") == CITIZENS,
            timeout=90,
            interval=0.5,
            what="every message stored and processed",
        )
        wait_until(
            lambda: (
                len({m["chat_id"] for m in telegram.sent_messages(TOKEN)}) == half
                and len({m["peer_id"] for m in vk.sent_messages()}) == half
            ),
            timeout=120,
            interval=0.5,
            what="every citizen acknowledged",
        )
        took = time.monotonic() - started
        time.sleep(1.0)  # room for a duplicate to show up, if there were one

        wait_until(
            lambda: _health(web_url).get("status") == "ok", timeout=40, interval=0.5, what="/healthz ok"
        )
        assert all(p.poll() is None for p in (web, *workers)), [tail(log) for log in logs]
    finally:
        for process in (web, *workers):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in (web, *workers)]
        telegram.stop()
        vk.stop()

    output = "".join(log.read_text(errors="replace") for log in logs)
    half = CITIZENS // 2
    telegram_acks = Counter(m["chat_id"] for m in telegram.sent_messages(TOKEN))
    vk_acks = Counter(m["peer_id"] for m in vk.sent_messages())
    print(
        f"\n{CITIZENS} citizens, {kills} SIGKILLs, one terminated lock holder (new holder after "
        f"{takeover:.1f} s): all acknowledged {took:.0f} s after the first message; "
        f"{sum(telegram_acks.values()) - half} duplicate Telegram acknowledgements, "
        f"{len(telegram.violations)} Telegram and {len(vk.violations)} VK limit violations"
    )
    assert _count(engine, RawEvent, RawEvent.channel == "telegram") == half  # stored once
    # VK also reports the community's own answers (message_reply): stored, and ignored.
    assert _count(engine, RawEvent, RawEvent.channel == "vk", RawEvent.state == "processed") == half
    assert _count(engine, RawEvent, col(RawEvent.state).in_(["received", "quarantined"])) == 0
    assert _count(engine, Message, Message.direction == "in") == CITIZENS
    with Session(engine) as s:
        per_contact = s.exec(select(Appeal.contact_id, func.count()).group_by(Appeal.contact_id)).all()
    assert len(per_contact) == CITIZENS and {n for _c, n in per_contact} == {1}  # no appeal opened twice
    assert set(telegram_acks) == {60_000 + n for n in range(half)}
    assert set(vk_acks) == {70_000 + n for n in range(half)} and set(vk_acks.values()) == {1}  # random_id
    # Telegram has no idempotency key: a crash may repeat only the parts in flight (README).
    assert sum(telegram_acks.values()) - half <= kills * IN_FLIGHT
    # Exactly one poller at a time: a second getUpdates would have ended the first with 409 Conflict.
    assert "Conflict" not in output
    assert telegram.violations == [] and vk.violations == []
    assert codes == [0, 0, 0], output[-3000:]
    engine.dispose()


def _vk_cursor(engine: Any) -> str | None:
    from adaldyk_bots.storage.models import ChannelCursor

    with Session(engine) as s:
        row = s.get(ChannelCursor, ("vk", str(GROUP_ID)))
        return row.value if row else None


def _health(url: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{url}/healthz", timeout=5).json())
    except httpx.HTTPError:
        return {}
