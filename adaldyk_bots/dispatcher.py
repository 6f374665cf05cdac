"""The one path every outbound message takes: claim due outbox rows, respect limits, send, record.

Delivery is at-least-once. A row is leased (state `sending`) before its part goes out and the result
is recorded right after; a crash in between leaves the lease to expire, and the part is sent again.
So a crash can repeat only the parts in flight at that moment: at most `concurrency` (default 8).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from adaldyk_bots.domain import Delivered, Failed, ReplyTarget, RetryLater, SendResult
from adaldyk_bots.ports import Connector
from adaldyk_bots.ratelimit import ScopeLimiter
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import AppealEvent, OutboxItem
from adaldyk_bots.textsplit import split_text

log = logging.getLogger(__name__)

# Owes the citizen a message at a connector's fallback target (Failed.fallback), in the transaction that
# records the failure; returns the new outbox key, or None when nothing was added (already owed).
FallbackWriter = Callable[[Session, OutboxItem, ReplyTarget], str | None]

UNFINISHED = ["pending", "retrying", "sending"]
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 30 * 60.0


def backoff_seconds(attempt: int) -> float:
    """Exponential with jitter: 5 s, 10 s, 20 s ... capped at 30 min, each scaled by 0.5-1.0 at random
    so that rows failing together do not come back together."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(attempt - 1, 0)) * random.uniform(
        0.5, 1.0
    )


class Dispatcher:
    def __init__(
        self,
        *,
        engine: Engine,
        connectors: dict[str, Connector],
        limiter: ScopeLimiter | None = None,
        lease_seconds: float = 60.0,
        max_attempts: int = 12,
        batch_size: int = 200,
        send_timeout: float = 15.0,
        concurrency: int = 8,
        fallback_writer: FallbackWriter | None = None,
    ) -> None:
        self.engine = engine
        self.connectors = connectors
        self.limiter = limiter or ScopeLimiter()
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.send_timeout = send_timeout
        # A part is "in flight" from the request until its result is committed; a crash repeats
        # exactly those, so this bound is also the bound of the duplicate window.
        self._in_flight = asyncio.Semaphore(concurrency)
        self.fallback_writer = fallback_writer
        self._running = False

    async def dispatch_due(self) -> int:
        """Send what is due now. Rows to one chat go in order, one after another; chats in parallel."""
        if self._running:  # the scheduler also guards this; a manual call must not overlap either
            return 0
        self._running = True
        try:
            rows = await asyncio.to_thread(self._claim)
            by_chat: dict[tuple[str, str, str], list[OutboxItem]] = defaultdict(list)
            for row in rows:
                by_chat[(row.channel, row.account, row.chat_id)].append(row)
            results = await asyncio.gather(
                *(self._deliver_chat(chat_rows) for chat_rows in by_chat.values()), return_exceptions=True
            )
            for error in results:
                if isinstance(error, BaseException):
                    # One chat's trouble (a database hiccup while recording) must not stop the others;
                    # its rows stay leased and are sent again when the lease runs out.
                    log.error("dispatch to one chat failed", exc_info=error)
            return len(rows)
        finally:
            self._running = False

    def _claim(self) -> list[OutboxItem]:
        """Lease due rows, only the oldest unfinished row of each chat: a citizen reads our messages
        in the order we wrote them, even when an earlier one is waiting for a retry."""
        now = utcnow()
        earlier = aliased(OutboxItem)
        earlier_unfinished = (
            select(earlier.id)
            .where(
                earlier.channel == OutboxItem.channel,
                earlier.account == OutboxItem.account,
                earlier.chat_id == OutboxItem.chat_id,
                col(earlier.id) < OutboxItem.id,
                col(earlier.state).in_(UNFINISHED),
            )
            .exists()
        )
        with unit_of_work(self.engine) as s:
            query = (
                select(OutboxItem)
                .where(
                    col(OutboxItem.channel).in_(list(self.connectors)),
                    or_(
                        col(OutboxItem.state).in_(["pending", "retrying"]),
                        # A lease that ran out means the worker died mid-send: send again.
                        (col(OutboxItem.state) == "sending") & (col(OutboxItem.lease_until) < now),
                    ),
                    OutboxItem.next_attempt_at <= now,
                    ~earlier_unfinished,
                )
                .order_by(col(OutboxItem.id))
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)  # PostgreSQL: workers never claim the same row
            )
            rows = list(s.exec(query))
            for row in rows:
                row.state = "sending"
                row.lease_until = now + self.lease
                s.add(row)
        return rows

    async def _deliver_chat(self, rows: list[OutboxItem]) -> None:
        for index, row in enumerate(rows):
            wait = await self._deliver(row)
            if wait is not None:
                # Keep the chat's order: everything after this row waits as long as it does.
                await asyncio.to_thread(self._release, [r.id for r in rows[index:]], wait)
                return

    async def _deliver(self, row: OutboxItem) -> float | None:
        """Send the row's remaining parts; returns seconds the chat must wait (limit or retry), if any."""
        connector = self.connectors[row.channel]
        target = ReplyTarget(row.channel, row.account, row.chat_id, row.reply_to_key, row.target_kind)
        parts = split_text(row.text, connector.text_limit, connector.measure_text)
        scopes = connector.rate_scopes(target)
        while row.parts_sent < len(parts):
            wait = self.limiter.try_acquire(scopes)
            if wait is not None:
                return wait
            key = row.key if len(parts) == 1 else f"{row.key}#{row.parts_sent + 1}"
            async with self._in_flight:
                result = await self._send(connector, target, parts[row.parts_sent], key)
                if isinstance(result, RetryLater) and result.after_seconds and scopes:
                    # The platform said when: pause the narrowest scope (the chat), not just this row.
                    self.limiter.pause(scopes[-1].key, result.after_seconds)
                row = await asyncio.to_thread(self._record, row.id, result, len(parts))
            if isinstance(result, RetryLater) and row.state == "retrying":
                # Later rows to this chat wait for this one, so the citizen reads them in order.
                return max((row.next_attempt_at - utcnow()).total_seconds(), 0.0)
            if not isinstance(result, Delivered):
                return None
        return None

    async def _send(self, connector: Connector, target: ReplyTarget, text: str, key: str) -> SendResult:
        try:
            return await asyncio.wait_for(
                connector.send(target, text, idempotency_key=key), timeout=self.send_timeout
            )
        except TimeoutError:
            return RetryLater(f"{connector.name}.timeout", "no answer from the platform in time")
        except Exception as exc:  # a connector bug must not stop the other chats
            log.exception("connector %s raised while sending", connector.name)
            return RetryLater(f"{connector.name}.error", f"{type(exc).__name__}: {exc}")

    def _record(self, row_id: int | None, result: SendResult, total_parts: int) -> OutboxItem:
        now = utcnow()
        with unit_of_work(self.engine) as s:
            row = s.get(OutboxItem, row_id)
            assert row is not None
            if isinstance(result, Delivered):
                row.parts_sent += 1
                row.platform_message_ids = [*row.platform_message_ids, result.platform_message_id]
                row.last_error_code = row.last_error_detail = None
                if row.parts_sent >= total_parts:
                    row.state, row.sent_at, row.lease_until = "sent", now, None
                else:
                    row.lease_until = now + self.lease
            else:
                row.attempts += 1
                row.last_error_code, row.last_error_detail = result.code, result.detail
                row.lease_until = None
                if isinstance(result, Failed) or row.attempts >= self.max_attempts:
                    row.state = "failed"
                    fallback = None
                    if isinstance(result, Failed) and result.fallback and self.fallback_writer:
                        fallback = self.fallback_writer(s, row, result.fallback)
                    self._note_failure(s, row, now, fallback)
                else:
                    row.state = "retrying"
                    # The platform's own hint wins over our backoff: it knows when the limit resets.
                    delay = result.after_seconds or backoff_seconds(row.attempts)
                    row.next_attempt_at = now + timedelta(seconds=delay)
                log.warning("outbox %s: %s (%s) -> %s", row.key, result.code, result.detail, row.state)
            s.add(row)
        return row

    @staticmethod
    def _note_failure(s: Session, row: OutboxItem, now: datetime, fallback: str | None = None) -> None:
        # Invariant 4: a failure is visible where the moderator works, on the appeal itself.
        if row.appeal_id is not None:
            detail = {"outbox": row.key, "code": row.last_error_code, "detail": row.last_error_detail}
            if fallback is not None:
                detail["fallback"] = fallback
            s.add(
                AppealEvent(
                    appeal_id=row.appeal_id,
                    kind="delivery_failed",
                    actor="system",
                    created_at=now,
                    detail=detail,
                )
            )

    def _release(self, row_ids: list[int | None], wait: float) -> None:
        at = utcnow() + timedelta(seconds=wait)
        with unit_of_work(self.engine) as s:
            for row_id in row_ids:
                row = s.get(OutboxItem, row_id)
                if row is not None and row.state == "sending":
                    row.state = "retrying" if row.attempts else "pending"
                    row.lease_until = None
                    row.next_attempt_at = at
                    s.add(row)
