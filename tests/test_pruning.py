"""Pruning (pruning.py): expired sessions and old login attempts go, in bounded batches, while the
throttle still locks and nobody is logged out early; the audit log is never touched. Time moves by the
app's clock (deps.now) and by the `now` the prune is given, never by sleeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import Session, func, select

from adaldyk_bots.accounts import FAILURE_LIMIT
from adaldyk_bots.pruning import ATTEMPT_RETENTION, SESSION_MARGIN, prune
from adaldyk_bots.runtime import PRUNE_JOB
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import AuditEvent, LoginAttempt, WebSession
from adaldyk_bots.web.deps import SESSION_COOKIE
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import PASSWORD, WebApp, create_user, csrf_of, login


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _post_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    form = client.get("/login")
    data = {"username": username, "password": password, "csrf_token": csrf_of(form.text)}
    return client.post("/login", data=data, follow_redirects=False)


def test_the_throttle_still_locks_after_a_prune(make_settings: Any) -> None:
    with WebApp(make_settings()) as web:
        engine = web.runtime.engine
        create_user(engine, "maria", "moderator")
        with unit_of_work(engine) as s:  # yesterday's attempts: nothing reads them any more
            for i in range(5):
                s.add(
                    LoginAttempt(
                        username="maria",
                        address="127.0.0.1",
                        at=web.clock.at - timedelta(days=1, minutes=i),
                        ok=False,
                    )
                )
        for _ in range(FAILURE_LIMIT):
            assert _post_login(web.client, "maria", "guess-guess-guess").status_code == 200
        web.clock.advance(minutes=14)
        report = web.runtime.prune(now=web.clock.at)
        assert report.attempts == 5 and report.sessions == 0
        assert _count(engine, LoginAttempt) == FAILURE_LIMIT
        assert _post_login(web.client, "maria", PASSWORD).status_code == 429  # still locked
        web.clock.advance(minutes=1, seconds=1)
        assert _post_login(web.client, "maria", PASSWORD).status_code == 303  # the lock ended on time
        # Once the throttle no longer reads them (and the margin has passed), they go; the audit stays.
        web.clock.advance(seconds=ATTEMPT_RETENTION.total_seconds() + 60)
        audit_before = _count(engine, AuditEvent)
        assert web.runtime.prune(now=web.clock.at).attempts == FAILURE_LIMIT + 1
        assert _count(engine, LoginAttempt) == 0
        assert _count(engine, AuditEvent) == audit_before  # the failed logins stay on record


def test_only_sessions_expired_beyond_the_margin_go(make_settings: Any) -> None:
    with WebApp(make_settings(session_idle_hours=2)) as web:
        engine = web.runtime.engine
        create_user(engine, "maria", "moderator")
        create_user(engine, "olzhas", "moderator")
        create_user(engine, "aigul", "moderator")
        login(web.client, "maria")  # idle from now on
        with web.new_client() as olzhas, web.new_client() as aigul:
            csrf = login(olzhas, "olzhas")
            assert (
                olzhas.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
            )
            login(aigul, "aigul")
            # Aigul works on: her use is recorded (SEEN_PRECISION: at most once a minute).
            web.clock.advance(hours=1, minutes=59)
            assert aigul.get("/account/password").status_code == 200
            wait_until(
                lambda: _seen(engine, "aigul") > web.clock.at - timedelta(minutes=1),
                what="aigul's use recorded",
            )
            # Just past maria's idle limit, within the margin: hers stays (the page ends it itself when
            # she comes back); olzhas logged out more than the margin ago: his goes.
            web.clock.advance(minutes=2)
            assert web.runtime.prune(now=web.clock.at).sessions == 1
            assert _count(engine, WebSession, WebSession.user_id == _user_id(engine, "maria")) == 1
            assert _count(engine, WebSession, WebSession.user_id == _user_id(engine, "olzhas")) == 0
            # Past idle + margin for maria: hers goes; aigul's stays.
            web.clock.advance(seconds=SESSION_MARGIN.total_seconds())
            assert web.runtime.prune(now=web.clock.at).sessions == 1
            with Session(engine) as s:
                [left] = s.exec(select(WebSession)).all()
            assert left.user_id == _user_id(engine, "aigul")
            # Her session was used 1 h 2 min ago (idle limit 2 h): it still opens her pages.
            assert aigul.get("/account/password", follow_redirects=False).status_code == 200
        # Maria's cookie finds no session: the login page, as for any idle session.
        answer = web.client.get("/account/password", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert SESSION_COOKIE in web.client.cookies


def _seen(engine: Any, username: str) -> Any:
    with Session(engine) as s:
        row = s.exec(select(WebSession).where(WebSession.user_id == _user_id(engine, username))).one()
        return row.last_seen_at.replace(tzinfo=row.last_seen_at.tzinfo or utcnow().tzinfo)


def _user_id(engine: Any, username: str) -> int:
    from adaldyk_bots.storage.models import StaffUser

    with Session(engine) as s:
        user_id = s.exec(select(StaffUser.id).where(StaffUser.username == username)).one()
    assert user_id is not None
    return user_id


def test_batches_are_bounded_and_the_rest_waits_for_the_next_run(make_settings: Any) -> None:
    settings = make_settings()
    with WebApp(settings) as web:
        engine = web.runtime.engine
        old = utcnow() - ATTEMPT_RETENTION - timedelta(minutes=1)
        with unit_of_work(engine) as s:
            for i in range(250):
                s.add(LoginAttempt(username=f"bot{i}", address="203.0.113.9", at=old, ok=False))
        now = utcnow()
        first = prune(engine, now=now, idle=timedelta(hours=12), batch_size=100, max_batches=2)
        assert first.attempts == 200 and _count(engine, LoginAttempt) == 50
        second = prune(engine, now=now, idle=timedelta(hours=12), batch_size=100, max_batches=2)
        assert second.attempts == 50 and _count(engine, LoginAttempt) == 0


def test_the_worker_runs_the_prune_on_its_schedule(make_settings: Any) -> None:
    settings = make_settings(port=free_port())
    old = utcnow() - ATTEMPT_RETENTION - timedelta(hours=1)
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        with unit_of_work(engine) as s:
            s.add(LoginAttempt(username="bot", address="203.0.113.9", at=old, ok=False))
            s.add(LoginAttempt(username="maria", address="127.0.0.1", at=utcnow(), ok=False))
        # The job's first run is at start; run it again now rather than wait its interval out.
        job = svc.service.scheduler.get_job(PRUNE_JOB)
        assert job is not None
        svc.service._loop.call_soon_threadsafe(lambda: job.modify(next_run_time=utcnow()))  # type: ignore[union-attr]
        wait_until(
            lambda: _count(engine, LoginAttempt, LoginAttempt.username == "bot") == 0,
            timeout=20,
            what="the scheduled prune",
        )
        assert _count(engine, LoginAttempt, LoginAttempt.username == "maria") == 1
        loops = httpx.get(f"http://127.0.0.1:{settings.port}/healthz", timeout=10).json()["loops"]
        assert loops[PRUNE_JOB]["last_success_at"] is not None
