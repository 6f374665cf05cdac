"""Group commit: writers that arrive while a transaction commits share the next one, so many concurrent
webhook requests cost one BEGIN and one fsync'd COMMIT instead of one each.

Each caller hands its item to `GroupCommitter.submit` and blocks until the transaction that holds the
item has committed (then it gets its own result) or failed (then it gets the error). There is no thread
of its own: the first caller that finds nobody committing leads — it begins a transaction, takes every
item waiting at that moment, writes them, commits and wakes their callers — and hands the lead to the
next waiting caller when its own item is done. A caller alone finds nobody ahead of it and commits at
once, so a quiet service pays no extra latency; under load the groups grow by themselves.

Failures: an error that concerns the database (connection, lock, disk, schema) fails every caller of
that group, and only them. An error that can only come from the values of some row (`IntegrityError`,
`DataError`) is isolated: each item of the group is written again in a transaction of its own, so one
caller's bad row never fails another's (duplicates are no error at all: the write ignores them).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from adaldyk_bots.storage.db import unit_of_work

__all__ = ["GroupCommitter"]

T = TypeVar("T")
R = TypeVar("R")

# Errors raised by the values of a row, not by the state of the database: worth retrying item by item.
_ROW_ERRORS = (IntegrityError, DataError)


@dataclass(eq=False)
class _Ticket(Generic[T, R]):
    item: T
    size: int
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # set (under the committer's lock) when this caller is to lead the next group
    done: bool = False
    result: R | None = None
    error: BaseException | None = None
    group: int = 0  # the number of the transaction that held the item (tests and logs)


class GroupCommitter(Generic[T, R]):
    """Runs `write(session, items)` for the items of concurrent callers in one transaction.

    `write` must return one result per item, in order, and must not commit (the committer does, through
    `unit_of_work`). `size` says how many rows an item is; a group holds at most `max_rows` of them (and
    always at least one item)."""

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Session, Sequence[T]], Sequence[R]],
        *,
        size: Callable[[T], int] = lambda _item: 1,
        max_rows: int = 2000,
    ) -> None:
        self.engine = engine
        self._write = write
        self._size = size
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: deque[_Ticket[T, R]] = deque()
        self._leading = False
        self._open = threading.Event()
        self._open.set()
        self._groups = 0
        # Figures for the bench and tests: transactions committed, the items in them, the largest group.
        self.committed_groups = 0
        self.committed_items = 0
        self.largest_group = 0

    @property
    def waiting(self) -> int:
        """Callers whose items are not yet in a transaction."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: T) -> R:
        """Write `item` in the next transaction and return its result once that transaction committed."""
        return self.submit_ticket(item).result  # type: ignore[return-value]

    def submit_ticket(self, item: T) -> _Ticket[T, R]:
        """`submit`, returning the ticket (its `group` says which transaction held the item)."""
        ticket: _Ticket[T, R] = _Ticket(item, self._size(item))
        with self._lock:
            self._queue.append(ticket)
            if not self._leading:
                self._leading = ticket.leads = True
        if not ticket.leads:
            ticket.wake.wait()  # until our group is done, or the lead is handed to us
        if not ticket.done:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No new group begins inside the block; the callers that arrive meanwhile wait and are written
        together when it ends. For tests that need to know which callers share a transaction."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    # --- the leader -------------------------------------------------------------------------------------

    def _lead(self, me: _Ticket[T, R]) -> None:
        try:
            while not me.done:
                self._open.wait()
                self._commit_group()
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.wake.set()
                else:
                    self._leading = False

    def _take(self) -> list[_Ticket[T, R]]:
        with self._lock:
            group = [self._queue.popleft()]
            rows = group[0].size
            while self._queue and rows + self._queue[0].size <= self._max_rows:
                ticket = self._queue.popleft()
                rows += ticket.size
                group.append(ticket)
            self._groups += 1
            number = self._groups
        for ticket in group:
            ticket.group = number
        return group

    def _commit_group(self) -> None:
        group: list[_Ticket[T, R]] = []
        try:
            with unit_of_work(self.engine) as s:
                # BEGIN first (on SQLite: wait for the write lock), then take who is waiting by now.
                s.connection()
                group = self._take()
                results = self._write(s, [t.item for t in group])
        except _ROW_ERRORS as exc:
            group = group or self._take()
            if len(group) > 1:
                self._one_by_one(group)
            else:
                self._finish(group, error=exc)
        except BaseException as exc:
            self._finish(group or self._take(), error=exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like: the callers got their error, the leader stops
        else:
            self.committed_groups += 1
            self.committed_items += len(group)
            self.largest_group = max(self.largest_group, len(group))
            self._finish(group, results=results)

    def _one_by_one(self, group: list[_Ticket[T, R]]) -> None:
        for ticket in group:
            try:
                with unit_of_work(self.engine) as s:
                    (result,) = self._write(s, [ticket.item])
            except Exception as exc:
                self._finish([ticket], error=exc)
            else:
                self._finish([ticket], results=[result])

    def _finish(
        self,
        group: list[_Ticket[T, R]],
        *,
        results: Sequence[R] | None = None,
        error: BaseException | None = None,
    ) -> None:
        for index, ticket in enumerate(group):
            if error is not None:
                # Each waiting caller raises its own copy: one exception object raised in several threads
                # at once would collect all their tracebacks. The leader raises the original.
                ticket.error = error if ticket.leads else _copy_of(error)
            else:
                ticket.result = cast(Sequence[R], results)[index]
            ticket.done = True
            if not ticket.leads:
                ticket.wake.set()


def _copy_of(error: BaseException) -> BaseException:
    try:
        twin = copy.copy(error)
    except Exception:  # an exception class that cannot be copied: share the one object
        return error
    twin.__cause__ = error.__cause__
    return twin
