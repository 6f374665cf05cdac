"""One supervisor per process owns every long-running loop: it restarts any that fails and reports them all.

Loops (the intake processor, each connector's poller) are `LoopSpec`s: the supervisor calls one round
after another; an error is logged with its traceback, recorded, and the loop goes on after a backoff
(1 s, 2 s, 4 s … 30 s). A loop with a lock runs its rounds only while this process holds the lock, and
the lock is checked with the database before every round (storage/locks.py), so a holder that lost it
stops within one round. Scheduled jobs (outbox dispatch, overdue sweep) stay on the process's one
APScheduler, wrapped so that their rounds are recorded and backed off the same way.

What each loop did last is kept in memory (`records`) and written every few seconds to `loop_heartbeat`
by the `heartbeat` loop, so that any process's /healthz, a web-only one too, can show every worker's
loops (`loops_report`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, delete
from sqlmodel import col, select

from adaldyk_bots.ports import LoopSpec
from adaldyk_bots.storage.db import read_session, unit_of_work, utcnow
from adaldyk_bots.storage.models import LoopHeartbeat

log = logging.getLogger(__name__)

BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
HEARTBEAT_SECONDS = 5.0
# A process whose heartbeat is older than this is gone (killed, or cut off from the database).
HEARTBEAT_LIVE_SECONDS = 15.0
# Heartbeats of processes gone this long are deleted by the live ones.
HEARTBEAT_RETENTION = timedelta(hours=1)
# When several processes run a loop, the most useful state says what the loop as a whole is doing.
_STATE_RANK = {"running": 0, "backing_off": 1, "standby": 2, "starting": 3, "stopped": 4}


class Lock(Protocol):
    """What the supervisor needs of a lock (storage/locks.py PollerLock)."""

    def try_acquire(self) -> bool: ...

    def check(self) -> bool: ...

    def release(self) -> None: ...


@dataclass
class LoopRecord:
    """What a loop did last; read by /healthz, written to loop_heartbeat."""

    name: str
    period: float = 0.0
    state: str = "starting"  # starting | running | standby | backing_off | stopped
    started_at: datetime = field(default_factory=utcnow)
    last_success_at: datetime | None = None  # the last round of real work (not a standby check)
    last_error: str | None = None
    last_error_at: datetime | None = None
    restarts: int = 0
    _streak: int = 0  # errors in a row
    _delay: float = BACKOFF_MIN_SECONDS

    def succeeded(self) -> None:
        self.state = "running"
        self.last_success_at = utcnow()
        self._streak = 0
        self._delay = BACKOFF_MIN_SECONDS

    def failed(self, exc: BaseException) -> float:
        """Record the error, log it, and return how long to wait before the next round."""
        text = f"{type(exc).__name__}: {exc}"[:2000]
        if self._streak == 0 or text != self.last_error:
            # Once with its traceback; the same error again in the same streak is one line, so a
            # database outage does not fill the log with identical tracebacks.
            log.error("loop %s failed; restarting in %.0f s", self.name, self._delay, exc_info=exc)
        else:
            log.warning(
                "loop %s still failing (%d in a row): %s; restarting in %.0f s",
                self.name,
                self._streak + 1,
                text,
                self._delay,
            )
        self.state = "backing_off"
        self.last_error, self.last_error_at = text, utcnow()
        self.restarts += 1
        self._streak += 1
        delay = self._delay
        self._delay = min(self._delay * 2, BACKOFF_MAX_SECONDS)
        return delay

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_success_at": _iso(self.last_success_at),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "restarts": self.restarts,
        }


class Supervisor:
    def __init__(self, lock_factory: Callable[[str], Lock], *, process_id: str | None = None) -> None:
        self.lock_factory = lock_factory
        # host:pid plus a random tail: a pid can be reused by a later process on the same host.
        self.process_id = process_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.records: dict[str, LoopRecord] = {}
        self._specs: dict[str, LoopSpec] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    # --- loops ----------------------------------------------------------------------------------

    def add(self, spec: LoopSpec) -> None:
        if spec.name in self.records:
            raise ValueError(f"loop {spec.name} is already supervised")
        self._specs[spec.name] = spec
        self.records[spec.name] = LoopRecord(spec.name, period=spec.period)
        if self._started:
            self._launch(spec)

    @property
    def _started(self) -> bool:
        return bool(self._tasks) or self._stopping

    def start(self) -> None:
        for spec in self._specs.values():
            if spec.name not in self._tasks:
                self._launch(spec)

    def _launch(self, spec: LoopSpec) -> None:
        task = asyncio.get_running_loop().create_task(self._run(spec), name=f"loop:{spec.name}")
        task.add_done_callback(self._ended)
        self._tasks[spec.name] = task

    def _ended(self, task: asyncio.Task[None]) -> None:
        # _run catches every Exception; only something like SystemExit gets here, and it must be seen.
        if not task.cancelled() and task.exception() is not None:
            log.critical("loop %s ended", task.get_name(), exc_info=task.exception())

    async def _run(self, spec: LoopSpec) -> None:
        record = self.records[spec.name]
        lock = self.lock_factory(spec.lock) if spec.lock else None
        holding = False
        try:
            while True:
                try:
                    if lock is not None:
                        if holding and not await asyncio.to_thread(lock.check):
                            log.warning("loop %s: lost its lock %s; stopped acting", spec.name, spec.lock)
                            holding = False
                            record.state = "standby"
                            # Whatever cut this session off may still be there: the standbys, which
                            # try every standby_seconds, get the first turn at the lock.
                            await asyncio.sleep(2 * spec.standby_seconds)
                        if not holding:
                            if not await asyncio.to_thread(lock.try_acquire):
                                record.state = "standby"
                                record._delay = BACKOFF_MIN_SECONDS
                                if spec.on_standby is not None:
                                    spec.on_standby()
                                await asyncio.sleep(spec.standby_seconds)
                                continue
                            holding = True
                            log.info("loop %s: holds lock %s", spec.name, spec.lock)
                            if spec.on_acquire is not None:
                                await spec.on_acquire()
                    if record.state != "running":
                        record.state = "running"
                    await spec.run_round()
                    record.succeeded()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await asyncio.sleep(record.failed(exc))
        finally:
            record.state = "stopped"
            if lock is not None:
                try:
                    await asyncio.to_thread(lock.release)
                except Exception:
                    log.exception("loop %s: releasing lock %s failed", spec.name, spec.lock)

    async def stop(self) -> None:
        """Cancel every loop and wait for them; an error one raised while stopping is logged, not lost."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("loop %s raised while stopping", task.get_name(), exc_info=result)
        self._tasks.clear()

    # --- scheduled jobs -------------------------------------------------------------------------

    def schedule(
        self,
        scheduler: AsyncIOScheduler,
        name: str,
        job: Callable[[], Awaitable[object]],
        *,
        seconds: float,
        on_the_minute: bool = False,
    ) -> None:
        """Add an interval job to the process's one scheduler, recorded as a loop: a run that raises is
        logged and recorded, and the job's next run is put off by the backoff instead of the interval.
        `on_the_minute`: after the first run (at once), every run starts at hh:mm:00, not `seconds` after
        whenever the process happened to start (the overdue sweep: overdue from the right minute)."""
        record = self.records[name] = LoopRecord(name, period=seconds)

        async def run_recorded() -> None:
            try:
                await job()
            except Exception as exc:
                delay = record.failed(exc)
                if not self._stopping and scheduler.running:
                    scheduler.modify_job(name, next_run_time=utcnow() + timedelta(seconds=delay))
            else:
                record.succeeded()

        trigger: dict[str, Any] = (
            {"trigger": "cron", "second": 0}
            if on_the_minute
            else {
                "trigger": "interval",
                "seconds": seconds,
            }
        )
        scheduler.add_job(
            run_recorded,
            **trigger,
            id=name,
            max_instances=1,
            coalesce=True,
            # Late is not skipped: APScheduler drops a run more than 1 s late by default, and a busy start
            # (connectors starting, models loading) made a 10-minute job wait its whole interval.
            misfire_grace_time=None,
            next_run_time=utcnow(),
        )

    # --- heartbeats -----------------------------------------------------------------------------

    def heartbeat_loop(self, engine: Engine) -> LoopSpec:
        """A loop that writes this process's records to loop_heartbeat every few seconds."""

        async def beat() -> None:
            await asyncio.to_thread(self.write_heartbeats, engine)
            await asyncio.sleep(HEARTBEAT_SECONDS)

        return LoopSpec(name="heartbeat", run_round=beat, period=HEARTBEAT_SECONDS)

    def write_heartbeats(self, engine: Engine) -> None:
        now = utcnow()
        with unit_of_work(engine) as s:
            s.exec(delete(LoopHeartbeat).where(col(LoopHeartbeat.process) == self.process_id))
            s.exec(delete(LoopHeartbeat).where(col(LoopHeartbeat.updated_at) < now - HEARTBEAT_RETENTION))
            for r in self.records.values():
                if r.name == "heartbeat":
                    continue
                s.add(
                    LoopHeartbeat(
                        process=self.process_id,
                        loop=r.name,
                        state=r.state,
                        started_at=r.started_at,
                        last_success_at=r.last_success_at,
                        last_error=r.last_error,
                        last_error_at=r.last_error_at,
                        restarts=r.restarts,
                        period_seconds=r.period,
                        updated_at=now,
                    )
                )


def read_heartbeats(engine: Engine, *, exclude_process: str | None = None) -> list[LoopHeartbeat]:
    # The read path: /healthz must answer while a writer holds SQLite's write lock.
    with read_session(engine) as s:
        query = select(LoopHeartbeat)
        if exclude_process is not None:
            query = query.where(LoopHeartbeat.process != exclude_process)
        return list(s.exec(query))


def loops_report(
    local: Supervisor | None,
    remote: Iterable[LoopHeartbeat],
    *,
    stale_seconds: float,
    now: datetime | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every loop of every process, merged by name (a poller runs in one worker and stands by in the
    others), and the names of the stale ones: no process has finished a round of real work for
    `stale_seconds` plus the loop's own period."""
    now = now or utcnow()
    rows: list[tuple[str, LoopRecord, bool]] = []  # (process, record, live)
    if local is not None:
        rows += [(local.process_id, r, True) for r in local.records.values()]
    for hb in remote:
        record = LoopRecord(
            hb.loop,
            period=hb.period_seconds,
            state=hb.state,
            started_at=hb.started_at,
            last_success_at=hb.last_success_at,
            last_error=hb.last_error,
            last_error_at=hb.last_error_at,
            restarts=hb.restarts,
        )
        rows.append((hb.process, record, (now - hb.updated_at).total_seconds() <= HEARTBEAT_LIVE_SECONDS))
    report: dict[str, dict[str, Any]] = {}
    stale: list[str] = []
    for name in sorted({r.name for _p, r, _l in rows}):
        mine = [(p, r, live) for p, r, live in rows if r.name == name]
        live = [r for _p, r, is_live in mine if is_live] or [r for _p, r, _l in mine]
        best = min(live, key=lambda r: _STATE_RANK.get(r.state, 9))
        successes = [r.last_success_at for _p, r, _l in mine if r.last_success_at is not None]
        errors = [r for r in live if r.last_error_at is not None]
        last_error = max(errors, key=lambda r: r.last_error_at or now) if errors else None
        reference = max(successes) if successes else min(r.started_at for r in live)
        is_stale = (now - reference).total_seconds() > stale_seconds + max(r.period for r in live)
        if is_stale:
            stale.append(name)
        report[name] = {
            "state": best.state if any(is_live for _p, _r, is_live in mine) else "gone",
            "last_success_at": _iso(max(successes) if successes else None),
            "last_error": last_error.last_error if last_error else None,
            "last_error_at": _iso(last_error.last_error_at if last_error else None),
            "restarts": sum(r.restarts for r in live),
            "stale": is_stale,
            "processes": {p: (r.state if is_live else "gone") for p, r, is_live in mine},
        }
    return report, stale


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
