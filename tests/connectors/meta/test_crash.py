"""SIGKILL of the service right after a webhook body is committed (before or while its 200 goes out),
then Meta's redelivery of the same body: every message stored, processed and acknowledged once."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, ChannelCursor, Message, OutboxItem, RawEvent
from connectors.meta.fake import FakeGraph
from tests.connectors.meta.conftest import APP_SECRET, PAGE, TOKENS, VERIFY_TOKEN, sign_body
from tests.faults import service_process, tail
from tests.support import free_port, wait_until

CITIZENS = 100
MESSAGES_EACH = 2
IN_FLIGHT = 4

pytestmark = pytest.mark.faults


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_sigkill_between_commit_and_response_then_redelivery_duplicates_nothing(
    database_url: str, fake_meta: FakeGraph, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "ADALDYK_DATABASE_URL": database_url,
        "ADALDYK_SECRET_KEY": "test-secret-key-0123456789",
        "ADALDYK_PORT": str(port),
        "ADALDYK_META_APP_SECRET": APP_SECRET,
        "ADALDYK_META_VERIFY_TOKEN": VERIFY_TOKEN,
        "ADALDYK_GRAPH_API_URL": fake_meta.api_url,
        "ADALDYK_FACEBOOK_PAGE_ID": PAGE,
        "ADALDYK_FACEBOOK_PAGE_TOKEN": TOKENS["facebook"],
        "ADALDYK_META_RECONCILE_SECONDS": "3600",
        "ADALDYK_DISPATCH_INTERVAL_SECONDS": "0.1",
        "ADALDYK_OUTBOX_LEASE_SECONDS": "2",
        "ADALDYK_DISPATCH_CONCURRENCY": str(IN_FLIGHT),
        "ADALDYK_LOG_LEVEL": "WARNING",
    }
    url = f"http://127.0.0.1:{port}/webhooks/meta"
    engine = make_engine(database_url)
    log = tmp_path / "serve.log"

    def listening() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    service = service_process(["serve"], env, log)
    answer: list[object] = []
    try:
        wait_until(listening, timeout=30, what="the service to listen")
        # The first reconciliation pass is over (its cursor is stored): what follows reaches us only
        # by the webhook body posted below.
        wait_until(lambda: _count(engine, ChannelCursor) > 0, timeout=30, what="the first reconciliation")
        # The citizens write through the fake (it knows them, so the acknowledgements can go); their messages
        # reach us as one batched, escaped-unicode body, which the test posts itself to control the kill.
        written = [
            fake_meta.citizen_message(PAGE, f"880{c:05d}", f"Өтініш {c}/{n}: жол жөндеу", deliver=False)
            for n in range(MESSAGES_EACH)
            for c in range(CITIZENS)
        ]
        entries = [entry for body in written for entry in body["entry"]]
        body = json.dumps({"object": "page", "entry": entries}).encode("ascii")
        headers = {"Content-Type": "application/json", **sign_body(body, APP_SECRET)}
        poster = threading.Thread(
            target=lambda: answer.append(_post_or_error(url, body, headers)), daemon=True
        )
        poster.start()
        wait_until(lambda: _count(engine, RawEvent) > 0, timeout=30, interval=0.001, what="the commit")
        service.send_signal(signal.SIGKILL)  # the body is committed; its 200 may not have left
        service.wait(timeout=10)
        poster.join(timeout=15)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert _count(engine, RawEvent) == CITIZENS * MESSAGES_EACH  # one transaction: all of it landed
    print(f"the killed delivery was answered: {answer or ['nothing']}")  # 200, or a broken connection

    # Meta did not see a 200 in time (or at all): it delivers the same body again to the new process.
    service = service_process(["serve"], env, log)
    try:
        wait_until(listening, timeout=30, what="the restarted service")
        for _ in range(2):
            assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 200
        wait_until(
            lambda: (
                _count(engine, OutboxItem, OutboxItem.purpose == "ack", OutboxItem.state == "sent")
                == CITIZENS
                and _count(engine, RawEvent, RawEvent.state == "received") == 0
            ),
            timeout=120,
            interval=0.2,
            what="every acknowledgement sent and every message processed: " + tail(log, 500),
        )
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=20) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert _count(engine, RawEvent) == CITIZENS * MESSAGES_EACH
    assert _count(engine, Message, Message.direction == "in") == CITIZENS * MESSAGES_EACH
    assert _count(engine, Appeal) == CITIZENS
    acks = Counter(m["to"] for m in fake_meta.sent)
    assert len(acks) == CITIZENS
    # At-least-once: the kill can repeat only the sends in flight at that moment (here none had begun
    # when the body was just committed, but the bound is the dispatcher's).
    assert sum(acks.values()) - CITIZENS <= IN_FLIGHT
    engine.dispose()


def _post_or_error(url: str, body: bytes, headers: dict[str, str]) -> object:
    try:
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__
