"""Reads never wait for the writer: while a transaction holds the write lock (and webhooks queue up
behind it), /healthz and the API's reads answer. Ordering, not timing: each read must complete while
the writer still holds the lock. On SQLite that is the writer hand-off and WAL; on PostgreSQL, MVCC."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from adaldyk_bots.storage.db import read_session, unit_of_work
from adaldyk_bots.storage.models import Appeal, RawEvent
from adaldyk_bots.threads import WRITE_THREADS
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, TOKEN
from tests.support import ServiceThread, create_api_token, free_port, wait_processed, wait_until

SECRET = "webhook-secret_0123456789"


def _update(n: int, text: str) -> dict[str, Any]:
    return {
        "update_id": n,
        "message": {
            "message_id": n,
            "from": {"id": 6000 + n, "is_bot": False, "first_name": "Ерлан"},
            "chat": {"id": 6000 + n, "type": "private"},
            "date": 1795760000,
            "text": text,
        },
    }


class HeldWriter:
    """A transaction that has written and holds the write lock until told to finish."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.holding = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with unit_of_work(self.engine) as s:
            s.execute(update(Appeal).values(summary="being rewritten"))
            s.flush()
            self.holding.set()
            self.release.wait(timeout=60)

    def __enter__(self) -> HeldWriter:
        self.thread.start()
        assert self.holding.wait(timeout=20), "the writer never got the lock"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.thread.join(timeout=30)

    @property
    def still_holds(self) -> bool:
        return self.thread.is_alive() and not self.release.is_set()


@pytest.fixture
def svc(make_settings: Any, fake_telegram: Any) -> Iterator[ServiceThread]:
    port = free_port()
    settings = make_settings(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_mode="webhook",
        telegram_webhook_secret=SECRET,
    )
    with ServiceThread(settings) as service:
        event = parse_update_payload(json.dumps(_update(1, "Су ластанған")).encode(), account=BOT_ID)
        service.runtime.intake.store(channel="telegram", account=BOT_ID, events=[event])
        wait_processed(service.runtime.engine)
        yield service


def test_reads_answer_while_the_writer_holds_the_lock(svc: ServiceThread) -> None:
    token = create_api_token(svc.settings)
    api = httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    with Session(svc.runtime.engine) as s:
        number = s.exec(select(Appeal.number)).one()

    # Webhooks queue behind the writer, more of them than the server has threads: reads must not
    # need a thread that a waiting writer holds.
    big = "ы" * 4000  # near Telegram's 4096-character limit
    bodies = [json.dumps(_update(100 + i, big)).encode() for i in range(60)]
    with ThreadPoolExecutor(max_workers=60) as pool, HeldWriter(svc.runtime.engine) as writer:
        webhooks = [
            pool.submit(
                httpx.post,
                f"{svc.url}/webhooks/telegram",
                content=body,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                timeout=120,
            )
            for body in bodies
        ]
        # The write threads fill up first (each waits for the writer); the rest are queued behind them.
        wait_until(
            lambda: _worker_threads() >= WRITE_THREADS or all(w.done() for w in webhooks), what="writes"
        )
        time.sleep(1.0)  # not a measure: lets the other bodies arrive, so reads compete with all of them

        health = api.get("/healthz")
        assert health.status_code == 200 and health.json()["database"]["state"] == "ok"
        listing = api.get("/api/v1/appeals", params={"limit": 200})  # the webhooks add up to 60 appeals
        assert listing.status_code == 200
        summaries = {a["number"]: a["summary"] for a in listing.json()["items"]}
        assert summaries[number] == "Су ластанған"  # the last commit, not the writer's change
        assert api.get(f"/api/v1/appeals/{number}").status_code == 200
        assert writer.still_holds, "a read waited for the writer"
        assert not any(w.done() for w in webhooks) or svc.runtime.engine.dialect.name == "postgresql"

    assert all(w.result().status_code == 200 for w in webhooks)  # the writes went through after it
    with read_session(svc.runtime.engine) as s:
        assert len(s.exec(select(RawEvent)).all()) == 61


def _worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("AnyIO worker thread"))
