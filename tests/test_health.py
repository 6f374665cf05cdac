"""/healthz on the embedded default: the service runs with every channel off, and says so."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.support import ServiceThread, free_port, wait_until


def test_health_reports_database_and_channels_without_credentials(make_settings):
    with ServiceThread(make_settings(port=free_port())) as svc:
        answer = httpx.get(f"{svc.url}/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["database"]["state"] == "ok"
    assert body["channels"]["telegram"] == {"state": "off", "detail": "no credentials configured"}
    assert body["channels"]["vk"]["state"] == "off"


LOOPS = {
    "intake:processor",
    "heartbeat",
    "dispatch_due_outbox",
    "mark_overdue_appeals",
    "deadline_sweep",
    "prune_sessions_and_attempts",
}


def test_health_reports_every_loop_and_the_backlog(make_settings):
    with ServiceThread(make_settings(port=free_port())) as svc:
        body = wait_until(
            lambda: (
                (b := httpx.get(f"{svc.url}/healthz").json())
                and all(b["loops"].get(name, {}).get("last_success_at") for name in LOOPS - {"heartbeat"})
                and b
            ),
            what="every loop to finish a round",
        )
    assert body["status"] == "ok" and set(body["loops"]) == LOOPS
    processor = body["loops"]["intake:processor"]
    assert processor["state"] == "running" and processor["restarts"] == 0 and processor["last_error"] is None
    assert processor["processes"] == {body["process"]: "running"}
    assert body["backlog"] == {
        "oldest_unprocessed_event_seconds": None,
        "oldest_due_notice_seconds": None,
        "oldest_unmarked_overdue_seconds": None,
    }


def test_an_old_backlog_makes_health_degraded(make_settings, database_url):
    from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
    from adaldyk_bots.storage.models import OutboxItem, RawEvent

    long_ago = utcnow() - timedelta(minutes=10)
    engine = make_engine(database_url)
    with unit_of_work(engine) as s:
        # A channel no process here has: nothing can process or send these, so they only grow older.
        s.add(
            RawEvent(
                channel="email",
                account="a",
                dedup_key="k",
                payload=b"{}",
                received_at=long_ago,
                state="received",
            )
        )
        s.add(
            OutboxItem(
                key="ack:1",
                channel="email",
                account="a",
                chat_id="c",
                purpose="ack",
                text="x",
                next_attempt_at=long_ago,
                created_at=long_ago,
            )
        )
    engine.dispose()
    with ServiceThread(make_settings(port=free_port(), backlog_degraded_seconds=300)) as svc:
        body = httpx.get(f"{svc.url}/healthz").json()
    assert body["status"] == "degraded"
    assert 590 < body["backlog"]["oldest_unprocessed_event_seconds"] < 700
    assert 590 < body["backlog"]["oldest_due_notice_seconds"] < 700


def test_a_web_only_process_shows_the_workers_loops(make_settings):
    port = free_port()
    with ServiceThread(make_settings(port=free_port()), web=False, worker=True) as worker:
        with ServiceThread(make_settings(port=port), web=True, worker=False) as web:
            body = wait_until(
                lambda: (
                    (b := httpx.get(f"{web.url}/healthz").json())
                    and b["loops"].get("intake:processor", {}).get("last_success_at")
                    and b
                ),
                timeout=20,
                what="the worker's first heartbeat",
            )
            worker_id = worker.service.supervisor.process_id
            assert body["process"] != worker_id
            assert set(body["loops"]) == LOOPS - {"heartbeat"}
            assert body["loops"]["intake:processor"]["processes"] == {worker_id: "running"}
            assert body["status"] == "ok"
    assert not web.service.supervisor.records  # the web process runs no loop of its own
