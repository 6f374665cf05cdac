"""Waiting is not failing: 429s pause the right scope and use up no attempt, a refused token holds the
channel's sends (an hour of it, on a clock the test moves) until it works again; against the fake Telegram."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.storage.db import make_engine, utcnow
from connectors.telegram import TelegramConnector
from tests.conftest import BOT_ID, TOKEN
from tests.support import enqueue_replies, outbox_rows

BOT_SCOPE = f"telegram:{BOT_ID}"


class Clock:
    """The dispatcher's `now`: real time plus an offset the test moves (no sleeping through an hour)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def _enqueue(engine: Any, items: list[tuple[str, int, str]]) -> None:
    enqueue_replies(engine, items, channel="telegram", account=BOT_ID)


_rows = outbox_rows


def _dispatcher(engine: Any, connector: TelegramConnector, **kwargs: Any) -> Dispatcher:
    return Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=30, **kwargs)


def test_a_long_retry_after_pauses_the_whole_bot_not_only_the_chat(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    for chat in (7101, 7102, 7103):
        fake_telegram.add_chat(TOKEN, chat)
    # Flood control of the whole bot: a wait no chat's limit would ask for (platforms.md §1c: 2282 s seen).
    fake_telegram.force_status(
        TOKEN, 7101, error_code=429, description="Too Many Requests: retry after 40", retry_after=40
    )
    _enqueue(engine, [("p:1", 7101, "один"), ("p:2", 7102, "два"), ("p:3", 7103, "три")])
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    dispatcher = _dispatcher(engine, connector, concurrency=1)  # in id order: 7101 answers first

    async def run() -> None:
        await dispatcher.dispatch_due()
        await dispatcher.dispatch_due()  # nothing is due: the paused rows wait in the database
        await connector.stop()

    asyncio.run(run())
    rows = _rows(engine)
    assert [a["chat_id"] for a in fake_telegram.send_attempts] == [7101]  # the other chats never tried
    assert dispatcher.limiter.paused_for(BOT_SCOPE) > 35
    assert (rows["p:1"].state, rows["p:1"].attempts, rows["p:1"].last_error_code) == (
        "retrying",
        0,
        "telegram.rate_limited",
    )
    for key in ("p:2", "p:3"):
        assert rows[key].attempts == 0 and rows[key].state == "pending"
        assert rows[key].next_attempt_at > utcnow() + timedelta(seconds=35)
    dispatcher.close()


def test_429s_from_two_chats_at_once_pause_the_bot(database_url: str, fake_telegram: Any) -> None:
    engine = make_engine(database_url)
    for chat in (7201, 7202, 7203):
        fake_telegram.add_chat(TOKEN, chat)
    for chat in (7201, 7202):  # short waits each, as a chat's limit would give: together, the bot's
        fake_telegram.force_status(
            TOKEN, chat, error_code=429, description="Too Many Requests: retry after 3", retry_after=3
        )
    _enqueue(engine, [("q:1", 7201, "один"), ("q:2", 7202, "два"), ("q:3", 7203, "три")])
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    dispatcher = _dispatcher(engine, connector, concurrency=1)

    async def run() -> None:
        await dispatcher.dispatch_due()
        await connector.stop()

    asyncio.run(run())
    assert [a["chat_id"] for a in fake_telegram.send_attempts] == [7201, 7202]
    assert dispatcher.limiter.paused_for(BOT_SCOPE) > 1.5
    rows = _rows(engine)
    assert all(r.attempts == 0 and r.state in ("retrying", "pending") for r in rows.values())
    dispatcher.close()


def test_rate_limits_never_use_up_attempts(database_url: str, fake_telegram: Any) -> None:
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 7301)
    fake_telegram.force_status(
        TOKEN, 7301, error_code=429, description="Too Many Requests: retry after 1", retry_after=1, times=4
    )
    _enqueue(engine, [("w:1", 7301, "ответ")])
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    dispatcher = _dispatcher(engine, connector, max_attempts=2)

    async def run() -> None:
        for _ in range(400):
            if _rows(engine)["w:1"].state in ("sent", "failed"):
                break
            await dispatcher.dispatch_due()
            await asyncio.sleep(0.05)
        await connector.stop()

    asyncio.run(run())
    row = _rows(engine)["w:1"]
    assert (row.state, row.attempts) == ("sent", 0)
    assert len([a for a in fake_telegram.send_attempts if a["error_code"] == 429]) == 4
    dispatcher.close()


def test_a_broken_token_for_an_hour_fails_nothing_and_the_held_sends_go_out_after(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    chats = list(range(7401, 7406))
    for chat in chats:
        fake_telegram.add_chat(TOKEN, chat)
    _enqueue(engine, [(f"h:{chat}", chat, f"ответ {chat}") for chat in chats])
    fake_telegram.revoke_token(TOKEN)
    clock = Clock()
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    dispatcher = _dispatcher(engine, connector, now=clock, max_attempts=3, hold_probe_seconds=30)

    async def run() -> None:
        for _ in range(12):  # an hour in five-minute steps; far past max_attempts' worth of backoff
            await dispatcher.dispatch_due()
            clock.advance(300)
            await asyncio.sleep(0.02)
        rows = _rows(engine)
        assert {r.state for r in rows.values()} == {"held"}
        assert all(r.attempts == 0 and r.last_error_code == "telegram.token_invalid" for r in rows.values())
        assert connector.health.state == "broken"
        assert dispatcher.status["held"] == [f"telegram:{BOT_ID}"]
        assert fake_telegram.sent_messages(TOKEN) == []
        # A row queued while the hold is in force joins it instead of trying the refused token itself.
        _enqueue(engine, [("h:late", 7401, "ещё ответ")])
        await dispatcher.dispatch_due()
        assert _rows(engine)["h:late"].state == "held"

        fake_telegram.restore_token(TOKEN)
        for _ in range(200):
            if all(r.state == "sent" for r in _rows(engine).values()):
                break
            await dispatcher.dispatch_due()
            clock.advance(60)
            await asyncio.sleep(0.05)
        await connector.stop()

    asyncio.run(run())
    rows = _rows(engine)
    assert {r.state for r in rows.values()} == {"sent"}
    assert all(r.attempts == 0 for r in rows.values())
    texts = [m["text"] for m in fake_telegram.sent_messages(TOKEN, 7401)]
    assert texts == ["ответ 7401", "ещё ответ"]  # the held chat kept its order
    assert connector.health.state == "ok"
    dispatcher.close()
