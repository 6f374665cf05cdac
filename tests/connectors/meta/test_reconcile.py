"""Reconciliation finds what the webhook never delivered, stores it under the webhook's own dedup key
(so a late delivery is a duplicate), and the appeal is acknowledged once; history from before the
channel was connected is not imported; an expired token shows on /healthz. Against the fake Graph API,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Message, RawEvent
from connectors.meta.connector import MetaConnector
from connectors.meta.fake import FakeGraph
from connectors.meta.reconcile import TOKEN_CHECK_SECONDS
from tests.connectors.meta.conftest import ACCOUNTS, TOKENS, meta_settings
from tests.support import ServiceThread, wait_processed, wait_until


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_a_message_the_webhook_never_delivered_is_recovered_and_acknowledged_once(
    make_settings: Any, fake_meta: FakeGraph, channel: str
) -> None:
    account = ACCOUNTS[channel]
    lost = fake_meta.citizen_message(account, "5550001", "Жарық жоқ, көмектесіңізші", deliver=False)
    mid = lost["entry"][0]["messaging"][0]["message"]["mid"]
    # History from before the channel was connected is not imported as new appeals.
    fake_meta.citizen_message(account, "5550002", "Былтырғы хат", deliver=False, at=time.time() - 30 * 86400)
    with ServiceThread(meta_settings(make_settings, fake_meta)) as svc:
        fake_meta.webhook_url = f"{svc.url}/webhooks/meta"
        engine = svc.runtime.engine
        connector = svc.runtime.connectors[channel]
        wait_until(
            lambda: len(fake_meta.messages_to("5550001")) == 1, timeout=30, what="the recovered message's ack"
        )
        assert connector.health.extra["recovered_by_reconciliation"] == 1
        health = httpx.get(f"{svc.url}/healthz").json()
        assert health["channels"][channel]["recovered_by_reconciliation"] == 1
        # Meta delivers it after all (a late webhook): the same key, a duplicate, nothing new.
        fake_meta.deliver(lost)
        wait_until(lambda: fake_meta.pending_webhooks() == 0, what="the late delivery")
        # And the next reconciliation pass finds nothing new either.
        asyncio.run_coroutine_threadsafe(
            connector.reconciler.reconcile_once(svc.runtime.intake), svc.service._loop
        ).result(timeout=15)
        wait_processed(engine)
        with Session(engine) as s:
            rows = s.exec(select(RawEvent).where(RawEvent.channel == channel)).all()
            messages = s.exec(select(Message).where(Message.direction == "in")).all()
        assert [r.dedup_key for r in rows] == [f"mid:{mid}"]  # not the month-old one
        assert [m.text for m in messages] == ["Жарық жоқ, көмектесіңізші"]
        assert len(fake_meta.messages_to("5550001")) == 1 and fake_meta.messages_to("5550002") == []
        assert connector.health.extra["recovered_by_reconciliation"] == 1
        assert fake_meta.violations == []  # paced within 2 Conversations API calls a second
        platform = "messenger" if channel == "facebook" else "instagram"
        reads = [
            c
            for c in fake_meta.calls
            if c["path"].endswith("conversations") and c["params"].get("platform") == platform
        ]
        assert len(reads) >= 2
        # The Page's own edge; Instagram through the Page: the Page token's /me (the Page).
        expected = f"{account}/conversations" if channel == "facebook" else "me/conversations"
        assert {c["path"] for c in reads} == {expected}


def test_an_expired_token_shows_broken_on_healthz_at_start(make_settings: Any, fake_meta: FakeGraph) -> None:
    fake_meta.expire_token(TOKENS["instagram"])
    with ServiceThread(meta_settings(make_settings, fake_meta)) as svc:
        health = wait_until(
            lambda: (
                (h := httpx.get(f"{svc.url}/healthz").json())["channels"]["instagram"]["state"] == "broken"
                and h
            ),
            what="instagram broken on /healthz",
        )
        assert "190" in health["channels"]["instagram"]["detail"]
        assert health["channels"]["facebook"]["state"] == "ok"


def test_the_token_is_checked_every_hour_whatever_the_reconciliation_period(
    make_settings: Any, fake_meta: FakeGraph
) -> None:
    # Reconciliation may run once a day, and only in the worker holding its lock: the hourly token
    # check is its own unlocked loop in every process, for all three products.
    settings = meta_settings(make_settings, fake_meta, meta_reconcile_seconds=86400)
    with ServiceThread(settings) as svc:
        health = httpx.get(f"{svc.url}/healthz").json()
        for channel in ("facebook", "instagram", "whatsapp"):
            name = f"{channel}:token_check:{ACCOUNTS[channel]}"
            assert name in health["loops"], health["loops"]
            [spec] = [
                s
                for s in svc.runtime.connectors[channel].background_loops(svc.runtime.intake)
                if s.name == name
            ]
            assert spec.lock is None and spec.period == TOKEN_CHECK_SECONDS
        # The Page token is revoked after start: the next check shows it before any send fails.
        fake_meta.expire_token(TOKENS["facebook"])
        connector = svc.runtime.connectors["facebook"]
        assert isinstance(connector, MetaConnector) and connector.health.state == "ok"
        connector.reconciler.token_check_seconds = 0.0  # the hour has passed
        [spec] = [s for s in connector.background_loops(svc.runtime.intake) if ":token_check:" in s.name]

        async def one_round() -> None:
            await spec.run_round()

        loop = svc.service._loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(one_round(), loop).result(timeout=15)
        channels = httpx.get(f"{svc.url}/healthz").json()["channels"]
        assert channels["facebook"]["state"] == "broken" and "190" in channels["facebook"]["detail"]
        assert channels["instagram"]["state"] == "ok"
        assert fake_meta.sent == []


def test_the_next_page_is_read_only_while_threads_reach_the_horizon() -> None:
    from datetime import UTC, datetime

    from connectors.meta.reconcile import _next_page

    horizon = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    page = {
        "data": [{"id": "t_1", "updated_time": "2026-12-01T11:00:00+0000"}],
        "paging": {"cursors": {"before": "QVFIUb", "after": "QVFIUa"}, "next": "https://graph…"},
    }
    assert _next_page(page, horizon) == "QVFIUa"
    page["data"][0]["updated_time"] = "2026-12-01T09:00:00+0000"  # older than the horizon: stop
    assert _next_page(page, horizon) is None
    assert _next_page({"data": [{"id": "t_1"}]}, horizon) is None  # no cursor: the last page
