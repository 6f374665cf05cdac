"""Live updates for open inboxes: one poller per web process asks the database what changed, and every
open event stream (`GET /events/inbox`) is told the numbers of the changed appeals it may see.

Why the database and not an in-process signal: appeals arrive through workers and other web processes,
so only the database knows of them all. Why one poller and not one query per stream: a poll is one
range scan of `ix_appeal_activity` (rows whose `last_activity_at` moved) whatever the number of open
inboxes, and the scope of each stream is applied to that small result in memory
(`Viewer.sees`) — an officer's stream never carries the number of an appeal outside the scope, nor
anyone's the number of a corruption report about their own chain of command.

Between polls no database connection is held (each poll opens a read session and closes it), and a
poll that fails (the database restarting) is logged once a minute and simply tried again: the streams
stay open and hear of what changed meanwhile at the next poll that works, since the watermark only
moves with what was read.

A change is seen late rather than never: `last_activity_at` is set before the writer commits, so an
appeal may become visible with a time a little older than rows already read. Each poll therefore reads
again the last LAG of activity and skips the (id, time) pairs it has already announced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, tuple_
from sqlalchemy import select as sa_select  # five columns: sqlmodel's select types four at most
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from adaldyk_bots.access import Viewer
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.storage.db import as_utc, read_session
from adaldyk_bots.storage.models import Appeal

__all__ = ["LAG", "InboxChanges", "Subscription"]

log = logging.getLogger(__name__)

LAG = timedelta(seconds=10)
BATCH = 500
# A stream tells the page at most this many numbers per event (the page refreshes its list anyway).
MAX_NUMBERS = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Change:
    appeal_id: int
    number: str
    unit_id: int | None
    at: datetime
    concerned_unit_id: int | None = None  # a corruption report's unit (hidden from its chain)


@dataclass(eq=False)  # compared and hashed by identity: a set of open streams
class Subscription:
    """One open stream: what it may see, and the numbers waiting to be sent to it (coalesced)."""

    viewer: Viewer
    pending: list[str] = field(default_factory=list)
    more: bool = False  # more changed than MAX_NUMBERS since the last event
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, changes: list[Change]) -> None:
        numbers = [c.number for c in changes if self.viewer.sees(c.unit_id, c.concerned_unit_id)]
        if not numbers:
            return
        for number in numbers:
            if number in self.pending:
                continue
            if len(self.pending) >= MAX_NUMBERS:
                self.more = True
                break
            self.pending.append(number)
        self.wake.set()

    def drain(self) -> tuple[list[str], bool]:
        numbers, more = self.pending, self.more
        self.pending, self.more = [], False
        self.wake.clear()
        return numbers, more


class InboxChanges:
    """The process's poller; it runs while at least one stream is subscribed."""

    def __init__(self, engine: Engine, *, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._mark: datetime | None = None  # the latest activity time read so far
        self._seen: dict[tuple[int, datetime], datetime] = {}
        self.polls = 0  # for tests and the connection benchmark: polls that worked
        self.failures = 0
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        """Ends every open stream (the server is stopping: a graceful stop waits for open responses)."""
        self.closed = True
        for sub in self._subs:
            sub.wake.set()

    @contextmanager
    def subscribe(self, viewer: Viewer) -> Iterator[Subscription]:
        sub = Subscription(viewer)
        self._subs.add(sub)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-changes")
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    async def _run(self) -> None:
        while True:
            if not self._subs:
                # Checked and cleared with no await in between: a stream subscribing now starts a new task.
                self._task, self._mark = None, None
                self._seen.clear()
                return
            try:
                changes = await asyncio.to_thread(self._poll)
            except SQLAlchemyError as exc:
                self.failures += 1
                throttled(
                    log,
                    failure_kind("web.inbox_events", exc),
                    "live inbox updates: cannot read changes: %s",
                    describe(exc),
                    level=logging.WARNING,
                )
            else:
                self.polls += 1
                if changes:
                    for sub in list(self._subs):
                        sub.offer(changes)
            await asyncio.sleep(self.interval)

    def _poll(self) -> list[Change]:
        with read_session(self.engine) as s:
            if self._mark is None:
                latest = s.exec(select(func.max(Appeal.last_activity_at))).one()
                mark = as_utc(latest) if latest is not None else _EPOCH
                # What already happened is on the page that was just loaded: remember it, announce nothing.
                for change in self._since(s, mark - LAG):
                    self._seen[(change.appeal_id, change.at)] = change.at
                self._mark = mark
                return []
            rows = self._since(s, self._mark - LAG)
        fresh = [c for c in rows if (c.appeal_id, c.at) not in self._seen]
        for change in fresh:
            self._seen[(change.appeal_id, change.at)] = change.at
            self._mark = max(self._mark, change.at)
        horizon = self._mark - LAG
        for key in [k for k, at in self._seen.items() if at <= horizon]:
            del self._seen[key]
        return fresh

    @staticmethod
    def _since(s: Session, since: datetime) -> list[Change]:
        """Every appeal whose activity is later than `since`, in keyset batches of the activity index."""
        out: list[Change] = []
        after: tuple[datetime, int] | None = None
        while True:
            stmt = sa_select(
                col(Appeal.id),
                col(Appeal.number),
                col(Appeal.unit_id),
                col(Appeal.last_activity_at),
                col(Appeal.concerned_unit_id),
            ).where(col(Appeal.last_activity_at) > since)
            if after is not None:
                stmt = stmt.where(tuple_(col(Appeal.last_activity_at), col(Appeal.id)) > tuple_(*after))
            rows = s.execute(stmt.order_by(col(Appeal.last_activity_at), col(Appeal.id)).limit(BATCH)).all()
            for appeal_id, number, unit_id, at, concerned in rows:
                assert appeal_id is not None
                out.append(Change(appeal_id, number, unit_id, as_utc(at), concerned))
            if len(rows) < BATCH:
                return out
            after = (rows[-1][3], rows[-1][0] or 0)


async def event_stream(
    changes: InboxChanges, viewer: Viewer, *, lifetime: float, keepalive: float = 15.0
) -> AsyncIterator[str]:
    """The text/event-stream of one open inbox: `event: appeals` with {"numbers": [...], "more": bool}
    when appeals it may see changed; a comment every `keepalive` seconds (so a dead client is noticed
    and proxies keep the connection); closed after `lifetime` seconds, after which the browser's
    EventSource reconnects — through the session check again, so a logout or a changed unit applies."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    # retry: how long the browser waits before reconnecting after the stream ends or breaks; spread
    # over 1-5 s so that the open inboxes do not all come back at once after a restart.
    yield f"retry: {random.randint(1000, 5000)}\n: connected\n\n"
    with changes.subscribe(viewer) as sub:
        while not changes.closed and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(sub.wake.wait(), timeout=min(keepalive, left))
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if changes.closed:
                return
            numbers, more = sub.drain()
            data = json.dumps({"numbers": numbers, "more": more}, ensure_ascii=False)
            yield f"event: appeals\ndata: {data}\n\n"
