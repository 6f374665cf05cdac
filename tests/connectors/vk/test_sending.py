"""Sending through the one dispatcher path to the fake VK: random_id, error classes, splitting, the burst."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlmodel import select

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import OutboxItem
from connectors.vk.client import derive_random_id
from connectors.vk.connector import VKConnector
from connectors.vk.fake import FakeVK
from tests.connectors.vk import GROUP_ID, TOKEN
from tests.support import enqueue_replies, outbox_rows

ACCOUNT = str(GROUP_ID)


def _connector(fake: FakeVK, **kwargs: Any) -> VKConnector:
    return VKConnector(token=TOKEN, group_id=GROUP_ID, api_url=fake.url, **kwargs)


def _enqueue(engine: Any, items: list[tuple[str, int, str]]) -> None:
    enqueue_replies(engine, items, channel="vk", account=ACCOUNT)


_rows = outbox_rows


def _drain(engine: Any, connector: VKConnector, *, until: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
    dispatcher = Dispatcher(engine=engine, connectors={"vk": connector}, lease_seconds=30, **kwargs)

    async def run() -> None:
        deadline = time.monotonic() + timeout
        while not until(_rows(engine)):
            assert time.monotonic() < deadline, "dispatcher did not finish in time"
            await dispatcher.dispatch_due()
            await asyncio.sleep(0.02)
        await connector.stop()

    asyncio.run(run())
    return _rows(engine)


def _final(rows: dict[str, OutboxItem]) -> bool:
    return all(r.state in ("sent", "failed") for r in rows.values())


def _due_now(engine: Any, key: str) -> None:
    with unit_of_work(engine) as s:  # skip the backoff wait instead of sleeping in a test
        row = s.exec(select(OutboxItem).where(OutboxItem.key == key)).one()
        row.next_attempt_at = utcnow()


def test_random_id_is_stable_per_key_and_salt() -> None:
    assert derive_random_id("ack:1") == derive_random_id("ack:1")
    assert derive_random_id("ack:1") != derive_random_id("ack:2")
    assert derive_random_id("ack:1", salt="a") != derive_random_id("ack:1", salt="b")
    assert all(0 < derive_random_id(f"reply:{n}#2") < 2**63 for n in range(1000))


def test_the_client_spaces_requests_at_18_per_second_below_vks_20(fake_vk: FakeVK) -> None:
    # Whatever asks (a flood of sends, a key refresh, a token check), requests leave spaced.
    connector = _connector(fake_vk)

    async def flood() -> None:
        await asyncio.gather(*(connector.client.call("groups.getById", group_id=GROUP_ID) for _ in range(40)))
        await connector.stop()

    asyncio.run(flood())
    times = sorted(c["at"] for c in fake_vk.method_calls if c["method"] == "groups.getbyid")
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # 1/18 s apart: a window that opens on one request can close just after the 19th (18 gaps), never 20.
    assert len(times) == 40 and busiest <= 19 and fake_vk.violations == []
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert sum(gaps) / len(gaps) >= 1 / 18 - 0.002


def test_a_retry_after_a_timeout_carries_the_same_random_id_and_vk_keeps_one_message(
    database_url: str, fake_vk: FakeVK
) -> None:
    engine = make_engine(database_url)
    fake_vk.citizen_message(9501, "Жалоба")
    # VK takes the message but its answer comes after our 0.5 s timeout: the send looks failed.
    fake_vk.force_delay(1.5)
    _enqueue(engine, [("t:1", 9501, "Ответ по обращению")])
    rows = _drain(engine, _connector(fake_vk, http_timeout=0.5), until=lambda r: r["t:1"].state == "retrying")
    assert rows["t:1"].last_error_code == "vk.timeout"
    assert len(fake_vk.sent_messages(9501)) == 1  # it did reach the citizen

    _due_now(engine, "t:1")
    rows = _drain(engine, _connector(fake_vk, http_timeout=0.5), until=_final)
    attempts = [a for a in fake_vk.send_attempts if a["peer_id"] == 9501]
    assert len(attempts) == 2 and len({a["random_id"] for a in attempts}) == 1
    (stored,) = fake_vk.sent_messages(9501)
    assert rows["t:1"].state == "sent" and rows["t:1"].platform_message_ids == [str(stored["message_id"])]


@pytest.mark.parametrize(
    ("code", "state", "expected"),
    [
        (6, "retrying", "vk.6"),
        (9, "retrying", "vk.9"),
        (10, "retrying", "vk.10"),
        (29, "retrying", "vk.29"),
        (5, "held", "vk.5"),  # a refused token holds the channel's sends (issue 6: waiting is not failing)
        (900, "failed", "vk.900"),
        (901, "failed", "vk.901"),
        (902, "failed", "vk.902"),
        (14, "failed", "vk.14"),
        (100, "failed", "vk.100"),
    ],
)
def test_errors_are_classified_by_code(
    code: int, state: str, expected: str, database_url: str, fake_vk: FakeVK
) -> None:
    engine = make_engine(database_url)
    fake_vk.citizen_message(9601, "Жалоба")
    fake_vk.force_error(code, peer_id=9601)
    _enqueue(engine, [("c:1", 9601, "Ответ")])
    connector = _connector(fake_vk)
    rows = _drain(engine, connector, until=lambda r: r["c:1"].state in ("retrying", "held", "failed"))
    row = rows["c:1"]
    assert (row.state, row.last_error_code) == (state, expected)
    assert row.last_error_detail
    if code == 5:
        assert connector.health.state == "broken" and "re-authorize" in connector.health.detail
        assert connector.health.extra["send_alert"]["code"] == "vk.5"
    if code == 14:
        assert connector.health.state == "degraded" and "captcha" in connector.health.detail
        assert connector.health.extra["send_alert"]["code"] == "vk.14"
    if code in (900, 901, 902):
        assert "the citizen" in (row.last_error_detail or "")


def test_a_long_answer_is_sent_in_parts_within_9000_characters(database_url: str, fake_vk: FakeVK) -> None:
    engine = make_engine(database_url)
    fake_vk.citizen_message(9701, "Жалоба")
    paragraph = "Уважаемый заявитель, по вашему обращению проведена выездная проверка. " * 40
    text = "\n\n".join([paragraph.strip()] * 7)  # ~19,600 characters
    _enqueue(engine, [("long:1", 9701, text)])
    rows = _drain(engine, _connector(fake_vk), until=_final)
    sent = fake_vk.sent_messages(9701)
    assert rows["long:1"].state == "sent" and len(sent) == 3
    assert all(len(m["text"]) <= 9000 for m in sent)
    assert len({m["random_id"] for m in sent}) == 3  # one id per part: key#1, key#2, key#3
    assert "".join(m["text"] for m in sent).replace("\n", "").replace(" ", "") == text.replace(
        "\n", ""
    ).replace(" ", "")


def test_a_burst_of_1000_sends_never_draws_error_6(database_url: str, fake_vk: FakeVK) -> None:
    engine = make_engine(database_url)
    citizens = 100
    for n in range(citizens):
        fake_vk.citizen_message(10_000 + n, "Жалоба")
    _enqueue(engine, [(f"burst:{i}", 10_000 + i % citizens, f"Ответ номер {i}") for i in range(1000)])
    started = time.monotonic()
    rows = _drain(engine, _connector(fake_vk), until=_final, timeout=120)
    elapsed = time.monotonic() - started
    assert all(r.state == "sent" for r in rows.values())
    assert fake_vk.violations == []  # the fake never had to answer error 6
    sent = fake_vk.sent_messages()
    assert len(sent) == 1000
    for n in range(citizens):  # each citizen got theirs in the order they were written
        numbers = [int(m["text"].split()[-1]) for m in sent if m["peer_id"] == 10_000 + n]
        assert numbers == sorted(numbers) and len(numbers) == 10
    assert 1000 / elapsed <= 20
