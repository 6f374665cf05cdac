"""Leases belong to their claimer: a row claimed again after its lease ran out is recorded only by the
new owner, so a late result is never counted twice and the parts of a split reply are neither repeated
nor skipped; and a claim is no bigger than the budget can send before its leases run out."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from adaldyk_bots.dispatcher import LOST, Dispatcher
from adaldyk_bots.domain import Delivered, ReplyTarget, RetryLater
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import OutboxItem
from adaldyk_bots.textsplit import split_text
from adaldyk_bots.workflow import Target, Workflow
from connectors.telegram import TelegramConnector
from tests.conftest import BOT_ID, TOKEN

LEASE = 30.0
CHAT = 8101


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def _long_reply() -> str:
    paragraph = "Уважаемый заявитель, по вашему обращению проведена проверка. " * 30
    return "\n\n".join([paragraph.strip()] * 5)  # three Telegram parts


def _enqueue(engine: Any, key: str, chat: int, text: str) -> None:
    with unit_of_work(engine) as s:
        Workflow.enqueue(
            s,
            key=key,
            target=Target("telegram", BOT_ID, str(chat)),
            purpose="reply",
            appeal_id=None,
            text=text,
            now=utcnow(),
        )


def _row(engine: Any, key: str) -> OutboxItem:
    with Session(engine) as s:
        return s.exec(select(OutboxItem).where(OutboxItem.key == key)).one()


def test_a_late_result_after_the_lease_was_claimed_again_is_not_recorded(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, CHAT)
    text = _long_reply()
    _enqueue(engine, "long:1", CHAT, text)
    clock = Clock()
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    parts = split_text(text, connector.text_limit, connector.measure_text)
    assert len(parts) == 3
    target = ReplyTarget("telegram", BOT_ID, str(CHAT))
    first = Dispatcher(
        engine=engine, connectors={"telegram": connector}, lease_seconds=LEASE, now=clock, owner="a"
    )
    second = Dispatcher(
        engine=engine, connectors={"telegram": connector}, lease_seconds=LEASE, now=clock, owner="b"
    )

    async def run() -> None:
        # The first worker claims the reply and sends its first part, then stalls past its lease.
        (claimed,) = await asyncio.to_thread(first._claim, "a:1")
        assert (claimed.lease_owner, claimed.state) == ("a:1", "sending")
        part_one = await first._send(connector, target, parts[0], "long:1#1")
        assert isinstance(part_one, Delivered)
        after_one = await asyncio.to_thread(first._record, claimed.id, "a:1", part_one, 3)
        assert after_one is not None and after_one.parts_sent == 1
        clock.advance(LEASE + 1)

        # The second claims it again and sends what is left: parts two and three, not one again.
        assert await second.dispatch_due() == 1
        row = _row(engine, "long:1")
        assert (row.state, row.parts_sent, row.lease_owner) == ("sent", 3, None)

        # The first wakes up: its late results are refused, and it sends nothing more.
        assert await asyncio.to_thread(first._record, claimed.id, "a:1", Delivered("999"), 3) is None
        late = RetryLater("telegram.network", "late")
        assert await asyncio.to_thread(first._record, claimed.id, "a:1", late, 3) is None
        assert await first._deliver(after_one, "a:1") is LOST  # gives the row up, sends nothing
        await connector.stop()

    asyncio.run(run())
    sent = fake_telegram.sent_messages(TOKEN, CHAT)
    assert [m["text"] for m in sent] == parts  # each part once, in order
    row = _row(engine, "long:1")
    assert row.platform_message_ids == [str(m["message_id"]) for m in sent]
    assert (row.state, row.attempts, row.last_error_code) == ("sent", 0, None)
    first.close()
    second.close()


def test_an_expired_lease_of_a_dead_worker_is_sent_again_by_the_next(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    fake_telegram.add_chat(TOKEN, CHAT)
    _enqueue(engine, "one:1", CHAT, "ответ")
    clock = Clock()
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    dead = Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=LEASE, now=clock)
    alive = Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=LEASE, now=clock)
    (claimed,) = dead._claim("dead:1")  # and then the process is gone

    async def run() -> None:
        assert await alive.dispatch_due() == 0  # the lease still runs: nobody else may touch the row
        clock.advance(LEASE + 1)
        assert await alive.dispatch_due() == 1
        await connector.stop()

    asyncio.run(run())
    row = _row(engine, "one:1")
    assert (row.state, row.attempts, len(row.platform_message_ids)) == ("sent", 0, 1)
    assert dead._record(claimed.id, "dead:1", Delivered("1"), 1) is None
    dead.close()
    alive.close()


def test_a_claim_is_no_bigger_than_the_budget_can_send_before_the_leases_run_out(
    database_url: str, fake_telegram: Any
) -> None:
    engine = make_engine(database_url)
    with unit_of_work(engine) as s:
        for chat in range(300):
            Workflow.enqueue(
                s,
                key=f"c:{chat}",
                target=Target("telegram", BOT_ID, str(30_000 + chat)),
                purpose="reply",
                appeal_id=None,
                text="ответ",
                now=utcnow(),
            )
    connector = TelegramConnector(token=TOKEN, api_url=fake_telegram.url)
    # 25 sends/s; a 19 s lease less a 15 s send timeout leaves 4 s, half of it claimed: 50 rows.
    short = Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=19, send_timeout=15)
    assert short.claim_limit("telegram") == 50
    tiny = Dispatcher(engine=engine, connectors={"telegram": connector}, lease_seconds=16, send_timeout=15)
    assert tiny.claim_limit("telegram") == 12
    assert len(tiny._claim("tiny:1")) == 12
    with Session(engine) as s:
        leased = s.exec(select(OutboxItem).where(OutboxItem.state == "sending")).all()
    assert len(leased) == 12 and {r.lease_owner for r in leased} == {"tiny:1"}
    short.close()
    tiny.close()
