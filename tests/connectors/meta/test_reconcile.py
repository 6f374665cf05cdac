"""Reconciliation finds what the webhook never delivered, stores it under the webhook's own dedup key
(so a late delivery is a duplicate), and the appeal is acknowledged once; an expired token shows on
/healthz. Against the loopback fake, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Message, RawEvent
from connectors.meta.fake_inbound import FakeMetaInbound
from tests.connectors.meta.conftest import TOKENS, meta_settings
from tests.support import ServiceThread, wait_processed, wait_until


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_a_message_the_webhook_never_delivered_is_recovered_and_acknowledged_once(
    make_settings: Any, fake_meta: FakeMetaInbound, channel: str
) -> None:
    token = TOKENS[channel]
    lost = fake_meta.citizen_writes(token, "5550001", "Жарық жоқ, көмектесіңізші", deliver=False)
    with ServiceThread(meta_settings(make_settings, fake_meta)) as svc:
        fake_meta.webhook_url = f"{svc.url}/webhooks/meta"
        engine = svc.runtime.engine
        connector = svc.runtime.connectors[channel]

        def acks() -> list[dict[str, Any]]:
            return [m for m in fake_meta.sent if '"5550001"' in m.get("recipient", "")]

        wait_until(lambda: len(acks()) == 1, timeout=30, what="the recovered message's acknowledgement")
        assert connector.health.extra["recovered_by_reconciliation"] == 1
        health = httpx.get(f"{svc.url}/healthz").json()
        assert health["channels"][channel]["recovered_by_reconciliation"] == 1
        # Meta delivers it after all (late webhook): the same key, a duplicate, nothing new.
        assert fake_meta.deliver(token, [lost]).status_code == 200
        # And the next reconciliation pass finds nothing new either.
        asyncio.run_coroutine_threadsafe(
            connector.reconciler.reconcile_once(svc.runtime.intake), svc.service._loop
        ).result(timeout=15)
        wait_processed(engine)
        with Session(engine) as s:
            rows = s.exec(select(RawEvent).where(RawEvent.channel == channel)).all()
            messages = s.exec(select(Message).where(Message.direction == "in")).all()
        assert [r.dedup_key for r in rows] == [f"mid:{lost.mid}"]
        assert [m.text for m in messages] == ["Жарық жоқ, көмектесіңізші"]
        assert len(acks()) == 1
        assert connector.health.extra["recovered_by_reconciliation"] == 1
        assert fake_meta.calls.count(("GET", f"/{fake_meta.version}/me/conversations")) >= 2


def test_an_expired_token_shows_broken_on_healthz_at_start(
    make_settings: Any, fake_meta: FakeMetaInbound
) -> None:
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
