"""Deleting what is kept only for a while: ended or idle workspace sessions and old login attempts.

Run by the worker's scheduler (runtime.PRUNE_JOB) in bounded batches, each its own short transaction,
so a backlog of millions of rows (a password-guessing bot) never holds SQLite's one writer for long.
Safe to run twice at once (two workers): a row one of them deleted is simply not there for the other.

What stays, and why:
- a session that is live by accounts.resolve_session's own rule (used within ADALDYK_SESSION_IDLE_HOURS)
  is never touched: only sessions idle for longer than that *plus* SESSION_MARGIN, or ended (logout,
  idle, password change, disabled account) more than SESSION_MARGIN ago. The margin covers a web process
  whose clock or setting differs a little from the worker's; nobody is logged out by the prune itself.
- a login attempt is read by accounts.locked_until for FAILURE_WINDOW + LOCK_DURATION (a lock starts at
  the last failure of the window and lasts LOCK_DURATION); attempts are kept ATTEMPT_MARGIN beyond that.
- audit records are never pruned: the log is append-only and hash-chained (audit.py); logins, logouts
  and failed logins are in it for as long as it is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, or_
from sqlmodel import Session, col, select

from adaldyk_bots.accounts import FAILURE_WINDOW, LOCK_DURATION
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import LoginAttempt, WebSession

__all__ = [
    "ATTEMPT_MARGIN",
    "ATTEMPT_RETENTION",
    "BATCH_SIZE",
    "MAX_BATCHES",
    "SESSION_MARGIN",
    "PruneReport",
    "prune",
    "prune_attempts",
    "prune_sessions",
]

log = logging.getLogger(__name__)

SESSION_MARGIN = timedelta(hours=1)
ATTEMPT_MARGIN = timedelta(hours=1)
# The oldest attempt the throttle still reads (accounts.locked_until), plus the margin.
ATTEMPT_RETENTION = FAILURE_WINDOW + LOCK_DURATION + ATTEMPT_MARGIN
BATCH_SIZE = 1000  # rows per transaction
MAX_BATCHES = 50  # per table and run: the rest waits for the next run (every PRUNE_SECONDS)


@dataclass
class PruneReport:
    sessions: int = 0
    attempts: int = 0


def prune_sessions(s: Session, *, now: datetime, idle: timedelta, limit: int = BATCH_SIZE) -> int:
    """Delete at most `limit` sessions that ended, or ran idle, more than SESSION_MARGIN ago."""
    expired = or_(
        col(WebSession.ended_at) < now - SESSION_MARGIN,
        # An ended session has last_seen_at <= ended_at too: the second test finds old ones of both kinds.
        col(WebSession.last_seen_at) < now - idle - SESSION_MARGIN,
    )
    batch = select(WebSession.id).where(expired).limit(limit)
    result = s.execute(delete(WebSession).where(col(WebSession.id).in_(batch)))
    return int(getattr(result, "rowcount", 0) or 0)


def prune_attempts(s: Session, *, now: datetime, limit: int = BATCH_SIZE) -> int:
    """Delete at most `limit` login attempts older than ATTEMPT_RETENTION."""
    batch = select(LoginAttempt.id).where(col(LoginAttempt.at) < now - ATTEMPT_RETENTION).limit(limit)
    result = s.execute(delete(LoginAttempt).where(col(LoginAttempt.id).in_(batch)))
    return int(getattr(result, "rowcount", 0) or 0)


def prune(
    engine: Engine,
    *,
    now: datetime,
    idle: timedelta,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> PruneReport:
    """One run: batches of each table, each in its own transaction, until a batch comes back short or
    `max_batches` are done."""
    report = PruneReport()
    for _ in range(max_batches):
        with unit_of_work(engine) as s:
            deleted = prune_sessions(s, now=now, idle=idle, limit=batch_size)
        report.sessions += deleted
        if deleted < batch_size:
            break
    for _ in range(max_batches):
        with unit_of_work(engine) as s:
            deleted = prune_attempts(s, now=now, limit=batch_size)
        report.attempts += deleted
        if deleted < batch_size:
            break
    if report.sessions or report.attempts:
        log.info("pruned %d expired sessions and %d old login attempts", report.sessions, report.attempts)
    return report
