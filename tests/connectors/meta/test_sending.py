"""Sending through the one dispatcher path to the fake Graph API: budgets (a burst of 1000), an injected
613 waited out, a refused token held, one private reply per comment (a lost answer not retried blindly),
texts split within each product's limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import OutboxItem
from adaldyk_bots.workflow import Target, Workflow
from connectors.meta.connector import FacebookConnector, InstagramConnector, MetaConnector, WhatsAppConnector
from connectors.meta.fake import FakeGraph
from tests.connectors.meta import IG_ID, PAGE_ID, PAGE_TOKEN, WA_ID, meta_settings
from tests.support import outbox_rows


def _connectors(make_settings: Any, fake: FakeGraph, **overrides: Any) -> dict[str, MetaConnector]:
    settings = meta_settings(make_settings, fake, **overrides)
    found: dict[str, MetaConnector] = {}
    for cls in (FacebookConnector, InstagramConnector, WhatsAppConnector):
        connector = cls.from_settings(settings)  # type: ignore[arg-type]
        assert connector is not None
        connector.sender.rate_limit_pause_seconds = 0.5  # Meta's minute, shortened for the test
        found[connector.name] = connector
    return found


def _owe(engine: Any, items: list[tuple[str, str, str, str, str]], *, purpose: str = "ack") -> None:
    """(key, channel, account, chat id / comment id, text), kind "comment" when the chat is a comment."""
    with unit_of_work(engine) as s:
        for key, channel, account, chat_id, text in items:
            kind = "comment" if key.startswith("comment") else "message"
            Workflow.enqueue(
                s,
                key=key,
                target=Target(channel, account, chat_id, kind),
                purpose=purpose,
                appeal_id=None,
                text=text,
                now=utcnow(),
            )


def _drain(
    engine: Any, connectors: dict[str, MetaConnector], *, until: Any, timeout: float = 90.0, **kw: Any
) -> Any:
    dispatcher = Dispatcher(engine=engine, connectors=dict(connectors), lease_seconds=30, **kw)

    async def run() -> None:
        deadline = time.monotonic() + timeout
        while not until(outbox_rows(engine)):
            assert time.monotonic() < deadline, "dispatcher did not finish in time"
            await dispatcher.dispatch_due()
            await asyncio.sleep(0.02)

    asyncio.run(run())
    return outbox_rows(engine)


def _all_final(rows: dict[str, OutboxItem]) -> bool:
    return bool(rows) and all(r.state in ("sent", "failed", "waiting") for r in rows.values())


def test_a_burst_of_1000_sends_stays_under_the_fake_limits(
    database_url: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    engine = make_engine(database_url)
    connectors = _connectors(make_settings, fake_graph)
    items = []
    for i in range(1000):
        channel, account = [("facebook", PAGE_ID), ("instagram", IG_ID), ("whatsapp", WA_ID)][i % 3]
        user = f"{7_000_000 + i}"
        fake_graph.citizen_message(account, user, "Сәлем", deliver=False)
        items.append((f"burst:{i}", channel, account, user, f"Өтінішіңіз тіркелді №{i}"))
    _owe(engine, items)
    started = time.monotonic()
    rows = _drain(engine, connectors, until=_all_final, concurrency=32)
    elapsed = time.monotonic() - started
    assert {r.state for r in rows.values()} == {"sent"}
    assert fake_graph.violations == []
    assert len(fake_graph.sent) == 1000
    print(f"\n1000 Meta sends through the dispatcher: {elapsed:.1f} s ({1000 / elapsed:.0f}/s)")


def test_an_injected_613_is_waited_out_without_using_an_attempt(
    database_url: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    engine = make_engine(database_url)
    connectors = _connectors(make_settings, fake_graph)
    fake_graph.citizen_message(PAGE_ID, "7100", "Сәлем", deliver=False)
    fake_graph.fail_next(613, path_contains="messages")
    _owe(engine, [("rl:1", "facebook", PAGE_ID, "7100", "Жауап")])
    rows = _drain(engine, connectors, until=_all_final)
    row = rows["rl:1"]
    assert row.state == "sent" and row.attempts == 0
    assert [e["code"] for e in fake_graph.errors] == [613]
    assert len(fake_graph.messages_to("7100")) == 1


def test_an_expired_token_holds_the_channel_then_sends_when_renewed(
    database_url: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    engine = make_engine(database_url)
    connectors = _connectors(make_settings, fake_graph)
    fake_graph.citizen_message(PAGE_ID, "7200", "Сәлем", deliver=False)
    fake_graph.expire_token(PAGE_TOKEN)
    _owe(
        engine,
        [
            ("tok:1", "facebook", PAGE_ID, "7200", "Жауап 1"),
            ("tok:2", "facebook", PAGE_ID, "7200", "Жауап 2"),
        ],
    )
    rows = _drain(
        engine,
        connectors,
        until=lambda r: r and all(x.state == "held" for x in r.values()),
        hold_probe_seconds=0.3,
    )
    assert {r.last_error_code for r in rows.values()} == {"meta.token_expired"}
    assert connectors["facebook"].health.state == "broken"
    assert fake_graph.sent == []  # held, not failed, not "sent"
    fake_graph.renew_token(PAGE_TOKEN)
    rows = _drain(
        engine, connectors, until=lambda r: all(x.state == "sent" for x in r.values()), hold_probe_seconds=0.3
    )
    assert [m["text"] for m in fake_graph.messages_to("7200")] == ["Жауап 1", "Жауап 2"]


@pytest.mark.parametrize(("channel", "account"), [("facebook", PAGE_ID), ("instagram", IG_ID)])
def test_a_comment_gets_exactly_one_private_reply_even_after_a_lost_answer(
    channel: str, account: str, database_url: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    engine = make_engine(database_url)
    connectors = _connectors(make_settings, fake_graph)
    comment_id, _ = fake_graph.citizen_comment(account, "7300", "Өзенге қоқыс төгіп жатыр", deliver=False)
    fake_graph.lose_answer_next()  # Meta performs the reply; its answer never reaches us in time
    _owe(engine, [(f"comment-ack:{comment_id}", channel, account, comment_id, "Өтінішіңіз тіркелді")])
    rows = _drain(engine, connectors, until=_all_final, send_timeout=0.5)
    row = rows[f"comment-ack:{comment_id}"]
    assert row.state == "sent" and row.last_error_code is None and row.attempts == 1
    assert row.platform_message_ids == [f"private-reply:{comment_id}"]
    private = [m for m in fake_graph.sent if m["kind"] == "private_reply"]
    assert len(private) == 1 and fake_graph.private_replied(comment_id)
    posts = [c for c in fake_graph.calls if c["method"] == "POST"]
    if channel == "facebook":
        # Checked first (the comment's private_reply_conversation), so the retry never went to Meta.
        assert len(posts) == 1 and fake_graph.errors == []
        checks = [c for c in fake_graph.calls if c["method"] == "GET" and c["path"] == comment_id]
        assert len(checks) == 2
    else:
        # Instagram has no such field: Meta's own once-only answer (10900) tells us it is there.
        assert len(posts) == 2 and [e["code"] for e in fake_graph.errors] == [10900]

    # A later notice to the same comment is not tried as a second private reply: visibly unreachable.
    calls = len(fake_graph.calls)
    _owe(
        engine,
        [(f"comment-status:{comment_id}", channel, account, comment_id, "Мәртебесі өзгерді")],
        purpose="status",
    )
    rows = _drain(engine, connectors, until=_all_final)
    later = rows[f"comment-status:{comment_id}"]
    assert later.state == "failed" and later.last_error_code == "meta.window_closed"
    assert later.last_error_detail
    assert later.last_error_detail.startswith("cannot reach the citizen: reply window closed")
    assert len([m for m in fake_graph.sent if m["kind"] == "private_reply"]) == 1
    assert len(fake_graph.calls) == calls  # no attempt at Meta at all


def test_texts_are_split_within_each_products_limit(
    database_url: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    engine = make_engine(database_url)
    connectors = _connectors(make_settings, fake_graph)
    words = " ".join(["өтініш"] * 700)  # 4899 characters, 9199 UTF-8 bytes (Cyrillic is 2 bytes)
    for account, user in ((PAGE_ID, "7400"), (IG_ID, "7401"), (WA_ID, "7402")):
        fake_graph.citizen_message(account, user, "Сәлем", deliver=False)
    _owe(
        engine,
        [
            ("long:fb", "facebook", PAGE_ID, "7400", words),
            ("long:ig", "instagram", IG_ID, "7401", words),
            ("long:wa", "whatsapp", WA_ID, "7402", words),
        ],
    )
    rows = _drain(engine, connectors, until=_all_final)
    assert {r.state for r in rows.values()} == {"sent"}
    fb, ig, wa = (fake_graph.messages_to(u) for u in ("7400", "7401", "7402"))
    assert all(len(m["text"]) <= 2000 for m in fb) and len(fb) == 3
    assert all(len(m["text"].encode()) <= 1000 for m in ig) and len(ig) == 10
    assert all(len(m["text"]) <= 4096 for m in wa) and len(wa) == 2
    for parts in (fb, ig, wa):  # cut at word boundaries: every part is whole words
        assert all(set(m["text"].split(" ")) == {"өтініш"} for m in parts)
        assert sum(len(m["text"].split(" ")) for m in parts) == 700
    assert fake_graph.errors == []
