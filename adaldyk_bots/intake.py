"""Intake: store what a platform sent, exactly once, and run the workflow on it in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from adaldyk_bots.domain import Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from adaldyk_bots.storage.db import insert_ignoring_conflict, unit_of_work, utcnow
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.storage.models import ChannelCursor, IntakeGap
from adaldyk_bots.storage.models import RawEvent as RawEventRow
from adaldyk_bots.workflow import Workflow

log = logging.getLogger(__name__)


@dataclass
class IntakeResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0


def _state_of(outcomes: Sequence[ParseOutcome]) -> tuple[str, str | None]:
    quarantined = [o.reason for o in outcomes if isinstance(o, Quarantined)]
    if quarantined:
        return "quarantined", "; ".join(quarantined)
    if outcomes and all(isinstance(o, Ignored) for o in outcomes):
        return "ignored", "; ".join(o.reason for o in outcomes if isinstance(o, Ignored))
    return "processed", None


class Intake:
    def __init__(self, engine: Engine, workflow: Workflow) -> None:
        self.engine = engine
        self.workflow = workflow

    def store(
        self, *, channel: str, account: str, events: Sequence[RawEvent], cursor: str | None = None
    ) -> IntakeResult:
        """One transaction for the whole batch and the poller's new cursor: both land, or neither."""
        result = IntakeResult()
        with unit_of_work(self.engine) as s:
            for event in events:
                self._store_one(s, channel, account, event, result)
            if cursor is not None:
                self._save_cursor(s, channel, account, cursor)
        return result

    def _store_one(
        self, s: Session, channel: str, account: str, event: RawEvent, result: IntakeResult
    ) -> None:
        state, reason = _state_of(event.outcomes)
        now = utcnow()
        raw_id = insert_ignoring_conflict(
            s,
            RawEventRow,
            {
                "channel": channel,
                "account": account,
                "dedup_key": event.dedup_key,
                "payload": event.payload,
                "received_at": now,
                "state": state,
                "reason": reason,
                "processed_at": now if state == "processed" else None,
            },
        )
        if raw_id is None:
            result.duplicates += 1
            return
        if state == "quarantined":
            result.quarantined += 1
            log.warning("quarantined %s event %s: %s", channel, event.dedup_key, reason)
            return
        if state == "ignored":
            result.ignored += 1
            log.info("ignored %s event %s: %s", channel, event.dedup_key, reason)
            return
        for outcome in event.outcomes:
            if isinstance(outcome, InboundMessage):
                self.workflow.accept_message(s, outcome, raw_event_id=raw_id)
        result.stored += 1

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
        self,
        *,
        parsers: Mapping[str, Callable[[bytes], RawEvent]],
        event_id: int | None = None,
        corrected_payload: bytes | None = None,
    ) -> list[tuple[int, str, str | None]]:
        """Run quarantined events through today's parsers again (`adaldyk replay`).

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
                parse = parsers.get(row.channel)
                if parse is None:
                    report.append((raw_id, row.state, f"channel {row.channel} is not configured"))
                    continue
                if corrected_payload is not None:
                    row.corrected_payload = corrected_payload
                parsed = parse(row.corrected_payload or row.payload)
                state, reason = _state_of(parsed.outcomes)
                row.state, row.reason = state, reason
                if state == "processed":
                    row.processed_at = utcnow()
                    for outcome in parsed.outcomes:
                        if isinstance(outcome, InboundMessage):
                            self.workflow.accept_message(s, outcome, raw_event_id=raw_id)
                s.add(row)
                report.append((raw_id, state, reason))
        return report
