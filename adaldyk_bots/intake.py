"""Intake in two steps: store what a platform sent, exactly once and durably; then turn it into messages
and appeals.

Step one (`store`) is what a webhook answer or a poller's cursor waits for: the raw bytes keyed by the
platform's dedup key, in one multi-row INSERT per batch, with the cursor in the same transaction. Step
two (`process_received`) runs the workflow on stored events in order, one worker at a time, each event
in a savepoint so that one that breaks the workflow is quarantined instead of blocking the queue.
Splitting them keeps the platform's answer fast however much the workflow does (platforms.md §10.1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Row
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session, col, select

from adaldyk_bots.domain import DeliveryReceipt, Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.groupcommit import GroupCommitter
from adaldyk_bots.ports import IntakeResult, RawEvent
from adaldyk_bots.receipts import apply_receipt
from adaldyk_bots.storage.db import read_session, unit_of_work, utcnow
from adaldyk_bots.storage.inbound import statements
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.storage.models import ChannelCursor, IntakeGap
from adaldyk_bots.storage.models import RawEvent as RawEventRow
from adaldyk_bots.workflow import Workflow

log = logging.getLogger(__name__)

T = TypeVar("T")

# A passing database error is retried this many times at once (with a short backoff) before it is left
# to the processor's loop, which tries again a moment later; it never quarantines the event.
TRANSIENT_ATTEMPTS = 4
# How long `replay` waits for a running processor to take the events it handed back to it.
REPLAY_WAIT_SECONDS = 60.0
# PostgreSQL SQLSTATE classes that say nothing about the event: transaction rollback (deadlock 40P01,
# serialization failure 40001), connection exception, insufficient resources, operator intervention
# (e.g. 57P01, the backend terminated by an administrator or a failover).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"40", "08", "53", "57"})


def is_transient(exc: BaseException) -> bool:
    """Is this error about the database's state at the moment rather than about the event?

    Such an event is retried, never quarantined: quarantine is for what our code cannot understand. The
    cause chain is searched because a dropped connection can surface as the failed ROLLBACK TO SAVEPOINT
    that followed the real error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DisconnectionError | PoolTimeoutError):
            return True
        if isinstance(current, DBAPIError):
            # OperationalError: psycopg's deadlock, serialization failure, lost connection, lock timeout;
            # SQLite's "database is locked". None of them is the event's fault.
            if current.connection_invalidated or isinstance(current, OperationalError):
                return True
            sqlstate = getattr(current.orig, "sqlstate", None)
            if isinstance(sqlstate, str) and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES:
                return True
        current = current.__cause__ or current.__context__
    return False


def retrying(what: str, attempt: Callable[[], T], *, attempts: int = TRANSIENT_ATTEMPTS) -> T:
    """Run `attempt` (one whole transaction) again after a passing database error, up to `attempts`."""
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except Exception as exc:
            if number == attempts or not is_transient(exc):
                raise
            log.warning(
                "%s: passing database error (try %d of %d), retrying: %s: %s",
                what,
                number,
                attempts,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            time.sleep(0.05 * 2**number)
    raise AssertionError("unreachable")


Parser = Callable[[bytes], RawEvent]


# (raw_event id, state, dedup key) of a row a store inserted.
Inserted = tuple[int, str, str]


@dataclass(frozen=True)
class _Batch:
    """One `store` call on its way through the group committer."""

    channel: str
    account: str
    rows: list[dict[str, Any]]
    cursor: str | None


def _insert_raw_statement(engine: Engine) -> Any:
    # Built once: SQLAlchemy runs it as an executemany ("insertmanyvalues": multi-row VALUES pages of a
    # cached statement), where a fresh multi-row INSERT per call cost 11.6 ms per 100 rows to build
    # against 2.1 ms (bench/README.md).
    table = RawEventRow.__table__  # type: ignore[attr-defined]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing()
    return stmt.returning(table.c.id, table.c.state, table.c.channel, table.c.account, table.c.dedup_key)


class _EventBroke(Exception):
    """An event broke the workflow in a batch run without savepoints: run the batch again isolated."""


def _state_of(outcomes: Sequence[ParseOutcome]) -> tuple[str, str | None]:
    """What can be decided without the workflow: quarantine, ignore, or queue for processing."""
    quarantined = [o.reason for o in outcomes if isinstance(o, Quarantined)]
    if quarantined:
        return "quarantined", "; ".join(quarantined)
    if outcomes and all(isinstance(o, Ignored) for o in outcomes):
        return "ignored", "; ".join(o.reason for o in outcomes if isinstance(o, Ignored))
    return "received", None


class Intake:
    def __init__(
        self, engine: Engine, workflow: Workflow, parsers: Mapping[str, Parser] | None = None
    ) -> None:
        self.engine = engine
        self.workflow = workflow
        self.parsers: dict[str, Parser] = dict(parsers or {})
        # Called (from any thread) after new events are stored, so the processor need not poll.
        self.on_received: Callable[[], None] | None = None
        self.committer: GroupCommitter[_Batch, list[Inserted]] = GroupCommitter(
            engine, self._write_batches, size=lambda batch: max(1, len(batch.rows))
        )
        self._insert_raw = _insert_raw_statement(engine)

    def store(
        self, *, channel: str, account: str, events: Sequence[RawEvent], cursor: str | None = None
    ) -> IntakeResult:
        """One transaction for the whole batch and the poller's new cursor: both land, or neither.

        Concurrent calls (webhook requests on their threads) share a transaction (`GroupCommitter`):
        this returns only after the transaction that holds the batch committed, and raises if it failed."""
        now = utcnow()
        rows = []
        for event in events:
            state, reason = _state_of(event.outcomes)
            rows.append(
                {
                    "channel": channel,
                    "account": account,
                    "dedup_key": event.dedup_key,
                    "payload": event.payload,
                    "received_at": now,
                    "state": state,
                    "reason": reason,
                    "processed_at": None if state == "received" else now,
                }
            )
            if state != "received":
                level = logging.WARNING if state == "quarantined" else logging.INFO
                log.log(level, "%s %s event %s: %s", state, channel, event.dedup_key, reason)
        inserted = self.committer.submit(_Batch(channel, account, rows, cursor))
        if len(inserted) < len(rows):
            self._log_duplicates(channel, account, [e.dedup_key for e in events], {i for i, _, _ in inserted})
        states = [state for _id, state, _key in inserted]
        result = IntakeResult(
            stored=states.count("received"),
            duplicates=len(rows) - len(inserted),
            quarantined=states.count("quarantined"),
            ignored=states.count("ignored"),
        )
        if result.stored and self.on_received is not None:
            self.on_received()
        return result

    def _write_batches(self, s: Session, batches: Sequence[_Batch]) -> list[list[Inserted]]:
        """The committer's write: every batch's rows in one executemany of one cached INSERT … ON
        CONFLICT DO NOTHING, then the cursors in order; returns what each batch inserted."""
        rows = [row for batch in batches for row in batch.rows]
        returned: dict[tuple[str, str, str], tuple[int, str]] = {}
        if rows:
            for row_id, state, channel, account, key in s.execute(self._insert_raw, rows):
                returned[(channel, account, key)] = (int(row_id), str(state))
        out: list[list[Inserted]] = []
        for batch in batches:
            mine: list[Inserted] = []
            for row in batch.rows:
                # A key sent twice (a redelivery racing its original) was inserted once: the first
                # caller to name it gets the row, the next sees a duplicate.
                found = returned.pop((batch.channel, batch.account, row["dedup_key"]), None)
                if found is not None:
                    mine.append((found[0], found[1], row["dedup_key"]))
            out.append(mine)
            if batch.cursor is not None:
                self._save_cursor(s, batch.channel, batch.account, batch.cursor)
        return out

    def _log_duplicates(self, channel: str, account: str, keys: list[str], inserted_ids: set[int]) -> None:
        """One line per duplicate, naming the event it repeats: a false duplicate must be findable."""
        try:
            with read_session(self.engine) as s:
                stored = {
                    key: (raw_id, state)
                    for raw_id, key, state in s.exec(
                        select(RawEventRow.id, RawEventRow.dedup_key, RawEventRow.state).where(
                            RawEventRow.channel == channel,
                            RawEventRow.account == account,
                            col(RawEventRow.dedup_key).in_(set(keys)),
                        )
                    )
                }
        except SQLAlchemyError as exc:  # the batch is committed; the log line must not turn it into a 5xx
            stored = {}
            log.warning("duplicates in a %s batch not looked up: %s", channel, type(exc).__name__)
        fresh = {key for key, (raw_id, _state) in stored.items() if raw_id in inserted_ids}
        for key in keys:
            if key in fresh:
                fresh.discard(key)  # the first of this key in the batch was stored; a second is a duplicate
                continue
            raw_id, state = stored.get(key, (None, "unknown"))
            log.info(
                "duplicate %s event %s (account %s) dropped: already stored as raw event %s (%s)",
                channel,
                key,
                account,
                raw_id,
                state,
            )

    def process_received(self, *, limit: int = 100) -> int:
        """Run the workflow on up to `limit` stored events, oldest first; returns how many were handled.

        Only one processor runs at a time (Service holds `processor_lock`): a citizen's follow-up must
        see the appeal their first message opened. A passing database error (deadlock, serialization
        failure, dropped connection) rolls the batch back and runs it again; it quarantines nothing."""
        if not self.parsers:
            return 0
        return retrying("intake processing", lambda: self._process_batch(limit))

    def _process_batch(self, limit: int) -> int:
        # Optimistic first: a savepoint per event costs as much as a third of a new appeal's statements,
        # and an event that breaks the workflow is rare. When one does, the batch is rolled back and run
        # again with every event in its own savepoint, so that only the poison event is quarantined.
        try:
            return self._run_batch(limit, isolate=False)
        except _EventBroke:
            return self._run_batch(limit, isolate=True)

    def _run_batch(self, limit: int, *, isolate: bool) -> int:
        with unit_of_work(self.engine) as s:
            conn = s.connection()
            sql = statements(conn.dialect.name)
            rows = conn.execute(sql.received_events, {"channels": list(self.parsers), "limit": limit}).all()
            finished = []
            for row in rows:
                state, reason = self._process_one(s, row, isolate=isolate)
                finished.append({"b_id": row.id, "b_state": state, "b_reason": reason, "b_at": utcnow()})
            if finished:
                conn.execute(sql.finish_event, finished)
        return len(rows)

    def _process_one(
        self, s: Session, row: Row[Any] | RawEventRow, *, isolate: bool = True
    ) -> tuple[str, str | None]:
        """The workflow on one stored event; returns its new state and reason. With `isolate`, the event
        runs in a savepoint and is quarantined if it breaks the workflow; without, _EventBroke is raised
        and the caller rolls back."""
        parse = self.parsers[row.channel]
        try:
            with s.begin_nested() if isolate else nullcontext():
                parsed = parse(row.corrected_payload or row.payload)
                state, reason = _state_of(parsed.outcomes)
                for outcome in parsed.outcomes:
                    if state == "received" and isinstance(outcome, InboundMessage):
                        self.workflow.accept_message(s, outcome, raw_event_id=row.id)
                    elif state == "received" and isinstance(outcome, DeliveryReceipt):
                        apply_receipt(s, outcome, elsewhere=self.workflow.enqueue_elsewhere)
        except Exception as exc:
            if is_transient(exc):
                raise  # not the event's fault: the whole batch is tried again
            if not isolate:
                raise _EventBroke from exc
            # A poison event must not block the ones behind it.
            log.exception("%s event %s broke the workflow; quarantined", row.channel, row.dedup_key)
            return "quarantined", f"processing_error: {type(exc).__name__}: {exc}"
        if state != "received":
            level = logging.WARNING if state == "quarantined" else logging.INFO
            log.log(level, "%s %s event %s: %s", state, row.channel, row.dedup_key, reason)
            return state, reason
        return "processed", reason

    def processor_lock(self) -> PollerLock:
        return PollerLock(self.engine, "intake:processor")

    @staticmethod
    def _save_cursor(s: Session, channel: str, account: str, value: str) -> None:
        row = s.get(ChannelCursor, (channel, account))
        if row is None:
            s.add(ChannelCursor(channel=channel, account=account, value=value, updated_at=utcnow()))
        else:
            row.value = value
            row.updated_at = utcnow()
            s.add(row)

    def poller_lock(self, channel: str, account: str) -> PollerLock:
        """The lock a poller holds while it polls, so two workers never poll one account."""
        return PollerLock(self.engine, f"poller:{channel}:{account}")

    def cursor(self, channel: str, account: str) -> str | None:
        with read_session(self.engine) as s:
            row = s.get(ChannelCursor, (channel, account))
            return row.value if row else None

    def record_gap(
        self,
        *,
        channel: str,
        account: str,
        reason: str,
        detail: str,
        cursor_before: str | None,
        cursor_after: str,
    ) -> None:
        """A poller was told events may be lost and moves on to `cursor_after`: the gap and the new cursor
        land in one transaction, so a gap is never skipped without its record (invariant 1)."""
        with unit_of_work(self.engine) as s:
            s.add(
                IntakeGap(
                    channel=channel,
                    account=account,
                    detected_at=utcnow(),
                    reason=reason,
                    cursor_before=cursor_before,
                    cursor_after=cursor_after,
                    detail=detail,
                )
            )
            self._save_cursor(s, channel, account, cursor_after)
        log.warning("%s %s: possible gap in intake (%s): %s", channel, account, reason, detail)

    def replay(
        self, *, event_id: int | None = None, corrected_payload: bytes | None = None
    ) -> list[tuple[int, str, str | None]]:
        """Run quarantined events through today's parsers and workflow again (`adaldyk replay`).

        A correction is stored beside the original bytes, which stay as they came. Replay holds the
        processor's lock, so it never runs beside the processor (two writers of one conversation could
        open two appeals). When a processor is running, the events are handed back to it instead: marked
        `received` again, it takes them next, and replay reports what became of them."""
        ids = self._quarantined_ids(event_id)
        lock = self.processor_lock()
        if not lock.try_acquire():
            return self._hand_to_processor(ids, corrected_payload)
        try:
            return [self._replay_one(raw_id, corrected_payload) for raw_id in ids]
        finally:
            lock.release()

    def _quarantined_ids(self, event_id: int | None) -> list[int]:
        with read_session(self.engine) as s:
            query = select(RawEventRow.id).where(RawEventRow.state == "quarantined")
            if event_id is not None:
                query = select(RawEventRow.id).where(RawEventRow.id == event_id)
            return [int(i) for i in s.exec(query.order_by(col(RawEventRow.id))) if i is not None]

    def _replay_one(self, raw_id: int, corrected_payload: bytes | None) -> tuple[int, str, str | None]:
        """One event in its own transaction, so one that still fails does not hold the others back."""

        def attempt() -> tuple[int, str, str | None]:
            with unit_of_work(self.engine) as s:
                row = s.get(RawEventRow, raw_id)
                assert row is not None
                refused = self._refuse_replay(row)
                if refused is not None:
                    return refused
                if corrected_payload is not None:
                    row.corrected_payload = corrected_payload
                row.state, row.reason = self._process_one(s, row)
                row.processed_at = utcnow()
                s.add(row)
                return raw_id, row.state, row.reason

        return retrying(f"replay of raw event {raw_id}", attempt)

    def _refuse_replay(self, row: RawEventRow) -> tuple[int, str, str | None] | None:
        raw_id = int(row.id or 0)
        if row.state != "quarantined":
            return raw_id, row.state, "not quarantined; nothing to do"
        if row.channel not in self.parsers:
            return raw_id, row.state, f"channel {row.channel} is not configured"
        return None

    def _hand_to_processor(
        self, ids: list[int], corrected_payload: bytes | None
    ) -> list[tuple[int, str, str | None]]:
        report: dict[int, tuple[int, str, str | None]] = {}
        queued: list[int] = []
        with unit_of_work(self.engine) as s:
            for raw_id in ids:
                row = s.get(RawEventRow, raw_id)
                assert row is not None
                refused = self._refuse_replay(row)
                if refused is not None:
                    report[raw_id] = refused
                    continue
                if corrected_payload is not None:
                    row.corrected_payload = corrected_payload
                row.state, row.reason, row.processed_at = "received", "replay requested", None
                s.add(row)
                queued.append(raw_id)
        log.info("replay: the processor is running elsewhere; %d event(s) handed back to it", len(queued))
        if queued and self.on_received is not None:
            self.on_received()
        for raw_id, state, reason in self._wait_processed(queued):
            report[raw_id] = (raw_id, state, reason)
        return [report[raw_id] for raw_id in ids]

    def _wait_processed(self, ids: list[int]) -> Iterator[tuple[int, str, str | None]]:
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        pending = set(ids)
        final: dict[int, tuple[str, str | None]] = {}
        while pending:
            with read_session(self.engine) as s:
                for raw_id, state, reason in s.exec(
                    select(RawEventRow.id, RawEventRow.state, RawEventRow.reason).where(
                        col(RawEventRow.id).in_(pending)
                    )
                ):
                    if state != "received" and raw_id is not None:
                        final[raw_id] = (state, reason)
                        pending.discard(raw_id)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for raw_id in ids:
            state, reason = final.get(raw_id, ("received", "queued for the running processor"))
            yield raw_id, state, reason
