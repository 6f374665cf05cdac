"""The supervisor: a loop whose database goes away restarts by itself and /healthz says so meanwhile; an
error while taking a lock is a restart, not the end; a holder whose connection is terminated stops
within one round and a standby takes over."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from adaldyk_bots.ports import LoopSpec
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.supervisor import Supervisor
from tests.conftest import TOKEN
from tests.faults import database_away, lock_holder_pids, terminate_lock_holder
from tests.support import ServiceThread, free_port, wait_until

PROCESSOR = "intake:processor"


async def _until(check: Any, *, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


def _health(url: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{url}/healthz", timeout=10)
    return answer.status_code, answer.json()


def test_a_scheduled_job_whose_run_comes_late_still_runs_once() -> None:
    # APScheduler skips a run that starts over a second late unless told otherwise: a start-up that kept
    # the event loop busy for two seconds made a 10-minute job wait its whole interval (seen in CI).
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def main() -> int:
        runs: list[float] = []

        async def job() -> None:
            runs.append(time.monotonic())

        supervisor = Supervisor(lambda name: PollerLock(make_engine("sqlite://"), name))
        scheduler = AsyncIOScheduler(timezone="UTC")
        supervisor.schedule(scheduler, "slow", job, seconds=600)
        scheduler.start()
        time.sleep(2.0)  # noqa: ASYNC251 - the event loop blocked past the first run, as by a busy start
        await _until(lambda: runs, within=5.0)
        scheduler.shutdown(wait=False)
        assert supervisor.records["slow"].last_success_at is not None
        return len(runs)

    assert asyncio.run(main()) == 1


def test_a_loop_whose_database_goes_away_restarts_and_health_says_degraded_meanwhile(
    make_settings: Any, database_url: str, fake_telegram: Any
) -> None:
    # A configured channel, so the processor has events to look for: with none it reads nothing.
    settings = make_settings(
        port=free_port(), loop_stale_seconds=3.0, telegram_token=TOKEN, telegram_api_url=fake_telegram.url
    )
    with ServiceThread(settings) as svc:
        wait_until(
            lambda: _health(svc.url)[1]["loops"].get(PROCESSOR, {}).get("last_success_at"), what="a round"
        )
        code, body = _health(svc.url)
        assert code == 200 and body["status"] == "ok", body
        assert set(body["backlog"].values()) == {None}  # nothing waiting
        assert body["loops"][PROCESSOR]["state"] == "running"

        with database_away(database_url, [svc.runtime.engine]):

            def processor_failed() -> dict[str, Any] | None:
                code, body = _health(svc.url)
                loop = body["loops"][PROCESSOR]
                return body if code == 503 and loop["restarts"] >= 1 and loop["last_error"] else None

            body = wait_until(processor_failed, timeout=20, what="the processor to fail and restart")
            assert body["status"] == "degraded" and body["database"]["state"] == "down"
            assert body["loops"][PROCESSOR]["state"] in ("backing_off", "running")
            # Still down after the loop's stale time: the loop itself is reported stale too.
            body = wait_until(
                lambda: (b := _health(svc.url)[1])["loops"][PROCESSOR]["stale"] and b,
                timeout=20,
                what="the processor to be reported stale",
            )
            assert body["status"] == "degraded"
            restarts = body["loops"][PROCESSOR]["restarts"]
        back = time.monotonic()

        # Back without any restart of the service: every loop succeeds again and health is ok.
        def healthy() -> dict[str, Any] | None:
            code, body = _health(svc.url)
            return body if code == 200 and body["status"] == "ok" else None

        body = wait_until(healthy, timeout=40, interval=0.2, what="health to be ok again")
        recovered_after = time.monotonic() - back
        loop = body["loops"][PROCESSOR]
        assert loop["state"] == "running" and loop["restarts"] >= restarts and not loop["stale"]
        assert recovered_after < 35  # the backoff is capped at 30 s
        assert svc.service.supervisor.records[PROCESSOR].state == "running"


def _needs_postgresql(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has no lock to lose or to fail on: there the lock is always granted")


def test_an_error_while_taking_the_lock_is_restarted_not_fatal(database_url: str) -> None:
    _needs_postgresql(database_url)
    holder_engine, engine = make_engine(database_url), make_engine(database_url)
    other = PollerLock(holder_engine, "test:acquire")
    assert other.try_acquire()  # another worker holds it: ours stands by, trying the lock
    rounds: list[float] = []

    async def one_round() -> None:
        rounds.append(time.monotonic())
        await asyncio.sleep(0.05)

    supervisor = Supervisor(lambda name: PollerLock(engine, name))
    supervisor.add(LoopSpec("acquiring", one_round, lock="test:acquire", standby_seconds=0.1))
    record = supervisor.records["acquiring"]

    async def scenario() -> None:
        supervisor.start()
        await _until(lambda: record.state == "standby")
        with database_away(database_url):
            # try_acquire now raises (no connection can be made): the loop backs off and tries again.
            await _until(lambda: record.restarts >= 2)
            assert record.state == "backing_off" and "OperationalError" in (record.last_error or "")
        other.release()  # the holder's session is gone anyway; the lock is free
        await _until(lambda: record.last_success_at is not None)
        await supervisor.stop()

    try:
        asyncio.run(scenario())
    finally:
        other.release()
        holder_engine.dispose()
        engine.dispose()
    assert rounds, "the loop never ran after the database came back"
    assert record.state == "stopped" and record.last_success_at is not None


def test_a_holder_whose_connection_is_terminated_stops_within_one_round(database_url: str) -> None:
    _needs_postgresql(database_url)
    engines = [make_engine(database_url), make_engine(database_url)]
    supervisors = [Supervisor(lambda name, e=e: PollerLock(e, name)) for e in engines]
    rounds: list[tuple[int, float, float]] = []  # (which, start, end)

    def spec(which: int) -> LoopSpec:
        async def one_round() -> None:
            start = time.monotonic()
            await asyncio.sleep(0.05)
            rounds.append((which, start, time.monotonic()))

        return LoopSpec("poller", one_round, lock="test:poller", standby_seconds=0.1)

    for which, supervisor in enumerate(supervisors):
        supervisor.add(spec(which))

    async def scenario() -> tuple[int, float]:
        supervisors[0].start()
        await _until(lambda: rounds)
        supervisors[1].start()
        await asyncio.sleep(0.5)
        assert {which for which, _s, _e in rounds} == {0}  # exactly one runs
        assert supervisors[1].records["poller"].state == "standby"
        await asyncio.to_thread(terminate_lock_holder, database_url, "test:poller")
        terminated = time.monotonic()  # the holder's session is gone from here on
        await _until(lambda: any(which == 1 for which, _s, _e in rounds), within=10)
        await asyncio.sleep(0.5)
        for supervisor in supervisors:
            await supervisor.stop()
        return 1, terminated

    try:
        _new, terminated = asyncio.run(scenario())
    finally:
        for engine in engines:
            engine.dispose()
    first_new = min((s for which, s, _e in rounds if which == 1), default=None)
    assert first_new is not None, "the standby never took over"
    assert first_new - terminated < 5
    # The old holder may finish the round it was in; it starts no round after noticing (one check).
    late = [s for which, s, _e in rounds if which == 0 and s > terminated]
    assert len(late) <= 1, late
    assert all(s < first_new for s in late)
    assert supervisors[0].records["poller"].state == "stopped"
    assert lock_holder_pids(database_url, "test:poller") == []  # both stopped: released
