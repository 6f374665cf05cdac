"""The outbox dispatcher against the fake Telegram: limits, retry_after, failures, long texts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import OutboxItem
from connectors.telegram import TelegramConnector
from tests.conftest import BOT_ID, TOKEN
from tests.support import enqueue_replies, outbox_rows


def _enqueue(engine: Any, items: list[tuple[str, int, str]]) -> None:
    enqueue_replies(engine, items, channel="telegram", account=BOT_ID)


_rows = outbox_rows


def _drain(engine, fake, *, until, timeout=120.0):
    connector = TelegramConnector(token=TOKEN, api_url=fake.url)
    dispatcher = Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=30)

    async def run():
        deadline = time.monotonic() + timeout
        while not until(_rows(engine)):
            assert time.monotonic() < deadline, "dispatcher did not finish in time"
            await dispatcher.dispatch_due()
            await asyncio.sleep(0.05)
        await connector.stop()
        dispatcher.close()

    asyncio.run(run())
    return _rows(engine)


def _all_final(rows):
    return all(r.state in ("sent", "failed") for r in rows.values())


def test_burst_of_1000_replies_to_50_chats_stays_within_limits(database_url, fake_telegram):
    engine = make_engine(database_url)
    for chat in range(50):
        fake_telegram.add_chat(TOKEN, 5000 + chat)
    _enqueue(engine, [(f"burst:{i}", 5000 + i % 50, f"Ответ номер {i}") for i in range(1000)])
    rows = _drain(engine, fake_telegram, until=_all_final)
    assert all(r.state == "sent" for r in rows.values())
    assert fake_telegram.violations == []
    sent = fake_telegram.sent_messages(TOKEN)
    assert len(sent) == 1000
    for chat in range(50):  # each chat got its messages in the order they were queued
        numbers = [int(m["text"].split()[-1]) for m in sent if m["chat_id"] == 5000 + chat]
        assert numbers == sorted(numbers) and len(numbers) == 20


def test_retry_after_is_waited_out_before_the_next_attempt(database_url, fake_telegram):
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 6001)
    fake_telegram.force_status(
        TOKEN, 6001, error_code=429, description="Too Many Requests: retry after 2", retry_after=2, times=1
    )
    _enqueue(engine, [("r:1", 6001, "первое"), ("r:2", 6001, "второе")])
    rows = _drain(engine, fake_telegram, until=_all_final)
    # A 429 is waiting, not failing: it uses up no attempt (issue 6).
    assert rows["r:1"].state == "sent" and rows["r:1"].attempts == 0
    assert rows["r:1"].last_error_code is None
    attempts = [a for a in fake_telegram.send_attempts if a["chat_id"] == 6001]
    assert attempts[0]["error_code"] == 429
    assert attempts[1]["at"] - attempts[0]["at"] >= 2.0  # the whole chat waited, not just the row
    assert [m["text"] for m in fake_telegram.sent_messages(TOKEN, 6001)] == ["первое", "второе"]


def test_blocked_citizen_ends_in_a_visible_classified_failure(database_url, fake_telegram):
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 6002)
    fake_telegram.block_chat(TOKEN, 6002)
    _enqueue(engine, [("b:1", 6002, "ответ")])
    rows = _drain(engine, fake_telegram, until=_all_final)
    assert rows["b:1"].state == "failed"
    assert rows["b:1"].last_error_code == "telegram.blocked"
    assert "blocked" in rows["b:1"].last_error_detail


def test_server_error_is_retried_then_sent(database_url, fake_telegram):
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 6003)
    fake_telegram.force_status(TOKEN, 6003, error_code=500, description="Internal Server Error", times=1)
    _enqueue(engine, [("e:1", 6003, "ответ")])
    rows = _drain(engine, fake_telegram, until=lambda rows: rows["e:1"].state == "retrying")
    assert rows["e:1"].last_error_code == "telegram.network"
    with unit_of_work(engine) as s:  # skip the backoff wait instead of sleeping in a test
        s.get(OutboxItem, rows["e:1"].id).next_attempt_at = utcnow()
    rows = _drain(engine, fake_telegram, until=_all_final)
    assert rows["e:1"].state == "sent" and rows["e:1"].attempts == 1


def test_long_text_goes_out_in_parts_within_telegram_limit(database_url, fake_telegram):
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, 6004)
    paragraph = "Уважаемый заявитель, по вашему обращению проведена проверка. " * 30
    text = "\n\n".join([paragraph.strip()] * 5)  # ~9,300 characters
    _enqueue(engine, [("long:1", 6004, text)])
    rows = _drain(engine, fake_telegram, until=_all_final)
    sent = fake_telegram.sent_messages(TOKEN, 6004)
    assert rows["long:1"].state == "sent" and len(sent) == 3
    assert rows["long:1"].platform_message_ids == [str(m["message_id"]) for m in sent]
    assert all(len(m["text"]) <= 4096 for m in sent)
    assert "".join(m["text"] for m in sent).replace("\n", "").replace(" ", "") == text.replace(
        "\n", ""
    ).replace(" ", "")
