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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from adaldyk_bots.domain import Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.groupcommit import GroupCommitter
from adaldyk_bots.ports import IntakeResult, RawEvent
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.storage.models import ChannelCursor, IntakeGap
from adaldyk_bots.storage.models import RawEvent as RawEventRow
from adaldyk_bots.workflow import Workflow

log = logging.getLogger(__name__)

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

    def process_received(self, *, limit: int = 100) -> int:
        """Run the workflow on up to `limit` stored events, oldest first; returns how many were handled.

        Only one processor runs at a time (Service holds `processor_lock`): a citizen's follow-up must
        see the appeal their first message opened."""
        with unit_of_work(self.engine) as s:
            rows = list(
                s.exec(
                    select(RawEventRow)
                    .where(
                        RawEventRow.state == "received",
                        # A channel not configured here stays queued for a process that has it.
                        col(RawEventRow.channel).in_(list(self.parsers)),
                    )
                    .order_by(col(RawEventRow.id))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                self._process_one(s, row)
        return len(rows)

    def _process_one(self, s: Session, row: RawEventRow) -> None:
        parse = self.parsers[row.channel]
        try:
            with s.begin_nested():
                parsed = parse(row.corrected_payload or row.payload)
                state, reason = _state_of(parsed.outcomes)
                for outcome in parsed.outcomes:
                    if state == "received" and isinstance(outcome, InboundMessage):
                        self.workflow.accept_message(s, outcome, raw_event_id=row.id)
        except Exception as exc:  # a poison event must not block the ones behind it
            log.exception("%s event %s broke the workflow; quarantined", row.channel, row.dedup_key)
            state, reason = "quarantined", f"processing_error: {type(exc).__name__}: {exc}"
        row.state = "processed" if state == "received" else state
        row.reason = reason
        row.processed_at = utcnow()
        s.add(row)

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
        with Session(self.engine) as s:
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

        A correction is stored beside the original bytes, which stay as they came. Each event is
        handled in its own transaction, so one that still fails does not hold the others back."""
        with Session(self.engine) as s:
            query = select(RawEventRow.id).where(RawEventRow.state == "quarantined")
            if event_id is not None:
                query = select(RawEventRow.id).where(RawEventRow.id == event_id)
            ids = [int(i) for i in s.exec(query.order_by(col(RawEventRow.id))) if i is not None]
        report: list[tuple[int, str, str | None]] = []
        for raw_id in ids:
            with unit_of_work(self.engine) as s:
                row = s.get(RawEventRow, raw_id)
                assert row is not None
                if row.state != "quarantined":
                    report.append((raw_id, row.state, "not quarantined; nothing to do"))
                    continue
                if row.channel not in self.parsers:
                    report.append((raw_id, row.state, f"channel {row.channel} is not configured"))
                    continue
                if corrected_payload is not None:
                    row.corrected_payload = corrected_payload
                self._process_one(s, row)
                report.append((raw_id, row.state, row.reason))
        return report
