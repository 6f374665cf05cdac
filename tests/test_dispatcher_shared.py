"""Several dispatchers on one database: rate budgets shared through Redis (two dispatchers, hundreds of
chats, never over the fake Telegram's limits), Redis unreachable (sends wait, nothing fails), and the
one elected dispatcher per PostgreSQL database when there is no Redis."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from sqlmodel import Session, select

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.ratelimit import BudgetUnavailable, ScopeLimiter
from adaldyk_bots.settings import SettingsError, load_settings
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import OutboxItem
from connectors.telegram import TelegramConnector
from tests.conftest import BOT_ID, PG_URL, TOKEN, RedisForTest
from tests.support import enqueue_replies, free_port

BUNCHED_LIMIT = 40  # well under the ~50/s two workers with their own budgets send


def _enqueue(engine: Any, items: list[tuple[str, int, str]]) -> None:
    enqueue_replies(engine, items, channel="telegram", account=BOT_ID)


def _states(engine: Any) -> dict[str, str]:
    with Session(engine) as s:
        return {r.key: r.state for r in s.exec(select(OutboxItem))}


def _busiest_second(stamps: list[float]) -> int:
    """The most sends the fake received within any one second."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, at in enumerate(stamps):
        while at - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _all_sent(engine: Any) -> bool:
    return all(state == "sent" for state in _states(engine).values())


def _run_worker(database_url: str, fake_url: str, redis_url: str, prefix: str, timeout: float) -> int:
    """One `worker` process: its own engine, connector, budgets client and event loop."""
    engine = make_engine(database_url)
    connector = TelegramConnector(token=TOKEN, api_url=fake_url)
    limiter = ScopeLimiter(redis_url, key_prefix=prefix)
    dispatcher = Dispatcher(
        engine=engine, connectors={"telegram": connector}, limiter=limiter, lease_seconds=30
    )
    handled = 0

    async def run() -> None:
        nonlocal handled
        deadline = time.monotonic() + timeout
        while not _all_sent(engine) and time.monotonic() < deadline:
            handled += await dispatcher.dispatch_due()
            await asyncio.sleep(0.02)
        await connector.stop()

    try:
        asyncio.run(run())
    finally:
        dispatcher.close()
        engine.dispose()
    return handled


def test_two_dispatchers_with_redis_budgets_never_exceed_the_platform_limits(
    database_url: str, fake_telegram: Any, redis_budget: RedisForTest
) -> None:
    chats = [20_000 + n for n in range(300)]
    for chat in chats:
        fake_telegram.add_chat(TOKEN, chat)
    engine = make_engine(database_url)
    # 300 citizens at once, and a few with three answers each (the per-chat budget is shared too).
    items = [(f"s:{chat}", chat, f"Ответ {chat}") for chat in chats]
    items += [(f"s:{chat}:{n}", chat, f"Ещё {n}") for chat in chats[:10] for n in (2, 3)]
    _enqueue(engine, items)

    started = time.monotonic()
    # Two processes, as two `adaldyk worker`s would be (threads would share one GIL with the fake).
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        args = (database_url, fake_telegram.url, redis_budget.url, redis_budget.prefix, 90.0)
        handled = [f.result() for f in [pool.submit(_run_worker, *args) for _ in range(2)]]
    elapsed = time.monotonic() - started

    assert _all_sent(engine)
    sent = fake_telegram.sent_messages(TOKEN)
    assert len(sent) == len(items)
    assert fake_telegram.rate_limit_answers(TOKEN) == []  # the fake never had to answer 429
    busiest = _busiest_second([m["at"] for m in sent])
    per_chat = max(_busiest_second([m["at"] for m in sent if m["chat_id"] == chat]) for chat in chats[:10])
    span = max(m["at"] for m in sent) - min(m["at"] for m in sent)
    print(
        f"\n{len(sent)} sends by 2 dispatcher processes over {span:.1f} s ({len(sent) / span:.1f}/s;"
        f" {elapsed:.1f} s with process start-up); busiest second {busiest}, per chat {per_chat}"
    )
    # The platform's view is the fake's bucket (30/s, bursts of 30): no 429 above. Our budget is 25/s at
    # the moment a send leaves; on this loaded 2-core machine a descheduled worker's sends reach the fake
    # late, bunched with the other's (measured: busiest second 29-34). Unshared budgets give ~50.
    assert busiest <= BUNCHED_LIMIT
    assert per_chat <= 2
    assert all(h > 0 for h in handled)  # both dispatchers sent: shared, not elected
    engine.dispose()


def test_redis_unreachable_makes_sends_wait_without_failing_any(
    database_url: str, fake_telegram: Any
) -> None:
    fake_telegram.add_chat(TOKEN, 21_001)
    engine = make_engine(database_url)
    _enqueue(engine, [("r:1", 21_001, "ответ")])
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    limiter = ScopeLimiter(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    dispatcher = Dispatcher(
        engine=engine, connectors={"telegram": connector}, limiter=limiter, max_attempts=1
    )

    async def run() -> None:
        for _ in range(3):
            with pytest.raises(BudgetUnavailable, match="ADALDYK_REDIS_URL"):
                await dispatcher.dispatch_due()
        await connector.stop()

    asyncio.run(run())
    with Session(engine) as s:
        row = s.exec(select(OutboxItem)).one()
    assert (row.state, row.attempts, row.lease_owner) == ("pending", 0, None)
    assert fake_telegram.send_attempts == []
    assert dispatcher.status["state"] == "waiting" and "ADALDYK_REDIS_URL" in dispatcher.status["detail"]
    dispatcher.close()


def test_redis_url_is_checked_at_start_and_named_in_the_error() -> None:
    with pytest.raises(SettingsError, match="ADALDYK_REDIS_URL"):
        load_settings(_env_file=None, redis_url="http://127.0.0.1:6379")
    assert load_settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0").redis_url


def test_without_redis_one_dispatcher_per_postgresql_database_sends(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 22_001)
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    first = Dispatcher(engine=engine, connectors={"telegram": connector}, election_seconds=1.5)
    second = Dispatcher(engine=engine, connectors={"telegram": connector}, election_seconds=1.5)
    if not PG_URL:  # SQLite: one machine, one dispatcher; no election is needed or held
        assert first.election is None and first.may_dispatch() and second.may_dispatch()
        return
    assert first.may_dispatch() and not second.may_dispatch()
    _enqueue(engine, [("e:1", 22_001, "ответ")])

    async def standby_round() -> int:
        return await second.dispatch_due()

    assert asyncio.run(standby_round()) == 0 and _states(engine) == {"e:1": "pending"}
    assert second.status["role"] == "standby"
    # The leader stops renewing (it died or lost its database): the standby takes over once it expires,
    # and the old leader, back again, finds that it no longer leads.
    time.sleep(1.7)  # expired, but not yet handed over (2 s after the expiry)
    assert not second.may_dispatch()
    time.sleep(2.1)
    assert second.may_dispatch() and not first.may_dispatch()

    async def leader_round() -> None:
        await second.dispatch_due()
        await connector.stop()

    asyncio.run(leader_round())
    assert _states(engine) == {"e:1": "sent"}
    second.close()  # hands over after a budget window, not at once
    assert not first.may_dispatch()
    time.sleep(2.2)
    assert first.may_dispatch()
    first.close()
    engine.dispose()
