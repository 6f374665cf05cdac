"""The one path every outbound message takes: claim due outbox rows, respect limits, send, record.

Delivery is at-least-once. A row is leased (state `sending`, `lease_owner` = this dispatcher's round)
before its part goes out, and the result is recorded right after, only by the lease's owner. A crash in
between leaves the lease to expire and the part is sent again, so a crash repeats at most the parts in
flight at that moment (`concurrency`, default 8). A late result from an owner whose lease ran out and was
claimed again is not recorded: a part is never counted twice, and the next part is the first unrecorded.

Several workers on one database are safe in one of two ways:
- ADALDYK_REDIS_URL set: every dispatcher sends; the rate budgets and pauses live in Redis (ratelimit.py).
- not set, PostgreSQL: one dispatcher per database is elected (a `dispatcher_lease` row with an owner
  and an expiry in database time, renewed every round); the others stand by and send nothing. The
  leader starts a send only while its lease has at least 1 s left, and a standby takes over only 2 s
  after the expiry, so two leaders' sends are always more than a budget window (1 s) apart.
SQLite is the one-machine default: its one dispatcher always sends.

Waiting is not failing: a rate limit, a pause or a retry_after never uses up `max_attempts`; a refused
token (Held) puts the channel's sends in state `held` until a probe send (one row every
`hold_probe_seconds`) goes through, then they all go out by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, case, func, or_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from adaldyk_bots import audit, staff_work
from adaldyk_bots.domain import (
    Choice,
    Delivered,
    Failed,
    Held,
    ReplyTarget,
    RetryLater,
    SendContext,
    SendResult,
    WindowDecision,
)
from adaldyk_bots.ports import Connector, ContextualSend, RateScope, ReplyWindows
from adaldyk_bots.ratelimit import DEFAULT_RATE_LIMIT_PAUSE_SECONDS, BudgetUnavailable, ScopeLimiter
from adaldyk_bots.receipts import link_sent, sends_receipts
from adaldyk_bots.storage.db import insert_ignoring_conflict, read_session, unit_of_work, utcnow
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    Conversation,
    DispatcherLease,
    Message,
    OutboxItem,
)
from adaldyk_bots.textsplit import split_text

log = logging.getLogger(__name__)

# Owes the citizen a message at a connector's fallback target (Failed.fallback), in the transaction that
# records the failure; returns the new outbox key, or None when nothing was added (already owed).
FallbackWriter = Callable[[Session, OutboxItem, ReplyTarget], str | None]
# Owes the same message on another conversation of the same citizen (Failed.elsewhere: a reply window
# closed here); returns the new outbox key, or None when the citizen is known nowhere else.
ElsewhereWriter = Callable[[Session, OutboxItem], str | None]
# What a template may show about the row's appeal, in its language: (language, {number, status, ...}).
NoticeFields = Callable[[Session, OutboxItem], tuple[str | None, Mapping[str, str]]]
Clock = Callable[[], datetime]
T = TypeVar("T")

# Outbox purposes whose text a person wrote (Meta's HUMAN_AGENT tag and WhatsApp's answer_ready wait are for
# these only): a moderator's reply, and the four-eyes answer a head approved (answers.py).
PERSON_WRITTEN_PURPOSES = frozenset({"reply", "answer"})


def _choices(stored: list[dict[str, str]] | None) -> tuple[Choice, ...]:
    return tuple(
        Choice(str(c["id"]), str(c["label"])) for c in stored or () if c.get("id") and c.get("label")
    )


# A row in one of these keeps the later rows of its chat waiting, so the citizen reads them in order.
# Not `waiting` (a reply window closed until the citizen writes): the notice that asks them to must pass it.
UNFINISHED = ["pending", "retrying", "sending", "held"]
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 30 * 60.0
HOLD_PROBE_SECONDS = 30.0
BUDGET_RETRY_SECONDS = 1.0  # Redis unreachable: try the budgets again this soon
ELECTION_NAME = "outbox-dispatcher"
# A standby takes over only this long after the leader's lease expired, and a leader starts a send only
# while its lease has at least ELECTION_SEND_MARGIN_SECONDS left: two leaders' sends are always more
# than a budget window (1 s, the longest we use) apart, so per-process budgets are never overdrawn.
ELECTION_HANDOVER_SECONDS = 2.0
ELECTION_SEND_MARGIN_SECONDS = 1.0
# Claim only what the account's budget can send in this share of the lease (the rest is margin), and
# no more than about CLAIM_SECONDS of sending: a round's rows wait for the budget in the round itself.
CLAIM_SHARE_OF_LEASE = 0.5
CLAIM_SECONDS = 2.0
# A budget that frees within this long is waited for in the round; a longer wait (a pause the platform
# asked for) gives the row back to the database with its next attempt time.
INLINE_WAIT_SECONDS = 2.0


def backoff_seconds(attempt: int) -> float:
    """Exponential with jitter: 5 s, 10 s, 20 s ... capped at 30 min, each scaled by 0.5-1.0 at random
    so that rows failing together do not come back together."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(attempt - 1, 0)) * random.uniform(
        0.5, 1.0
    )


def dispatcher_id() -> str:
    """host:pid:random, short enough to leave room for the round number in a 64-character owner."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Lost:
    """The row's lease is no longer ours: leave the row alone."""


LOST = _Lost()


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
        elsewhere_writer: ElsewhereWriter | None = None,
        notice_fields: NoticeFields | None = None,
        now: Clock = utcnow,
        elect: bool | None = None,
        election_seconds: float = 10.0,
        hold_probe_seconds: float = HOLD_PROBE_SECONDS,
        owner: str | None = None,
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
        self.elsewhere_writer = elsewhere_writer
        self.notice_fields = notice_fields
        self.now = now  # every time written to or compared with the outbox; tests move it
        self.hold_probe = timedelta(seconds=hold_probe_seconds)
        self.owner = owner or dispatcher_id()
        if elect is None:
            elect = engine.dialect.name == "postgresql" and not self.limiter.shared
        self.election = Election(engine, self.owner, election_seconds) if elect else None
        self._running = False
        self._round = 0
        self._held: set[tuple[str, str]] = set()  # (channel, account) with held rows, as last seen
        self._held_in_round: set[tuple[str, str]] = set()  # a send of this round was answered Held
        self._budget_error: BudgetUnavailable | None = None
        self.status: dict[str, Any] = {
            "budgets": "redis" if self.limiter.shared else "memory",
            "role": "elected" if self.election else "sender",
            "state": "starting",
            "detail": "",
            "held": [],
        }

    # --- the round -------------------------------------------------------------------------------------

    def may_dispatch(self) -> bool:
        """May this dispatcher send now? True without an election; with one, takes or renews the lease
        (a database call: run it in a thread). A standby's round sends nothing."""
        if self.election is None:
            return True
        held = self.election.hold()
        self.status["role"] = "leader" if held else "standby"
        return held

    async def dispatch_due(self) -> int:
        """One round: send what is due now and return how many rows it handled. Rows to one chat go in
        order, one after another; chats in parallel. Raises BudgetUnavailable when the shared budgets
        cannot be reached (rows wait, none fails) so the loop running it reports why."""
        if self._running:  # the scheduler also guards this; a manual call must not overlap either
            return 0
        self._running = True
        try:
            if not await asyncio.to_thread(self.may_dispatch):
                self._set_status("standby", "another dispatcher of this database sends")
                return 0
            try:
                await self._budget_call(self.limiter.check)
            except BudgetUnavailable as exc:
                self._set_status("waiting", str(exc))
                raise
            self._round += 1
            owner = f"{self.owner}:{self._round}"
            self._budget_error = None
            self._held_in_round = set()
            rows = await asyncio.to_thread(self._claim, owner)
            by_chat: dict[tuple[str, str, str], list[OutboxItem]] = defaultdict(list)
            for row in rows:
                by_chat[(row.channel, row.account, row.chat_id)].append(row)
            results = await asyncio.gather(
                *(self._deliver_chat(chat_rows, owner) for chat_rows in by_chat.values()),
                return_exceptions=True,
            )
            for error in results:
                if isinstance(error, BaseException):
                    # One chat's trouble (a database hiccup while recording) must not stop the others;
                    # its rows stay leased and are sent again when the lease runs out.
                    log.error("dispatch to one chat failed", exc_info=error)
            # Channels whose sends wait for a refused token to work again (the rows say why).
            self.status["held"] = sorted(f"{channel}:{account}" for channel, account in self._held)
            if self._budget_error is not None:
                self._set_status("waiting", str(self._budget_error))
                raise self._budget_error
            self._set_status("ok", "")
            return len(rows)
        finally:
            self._running = False

    def close(self) -> None:
        """Hand the election over and close the budget store; call once when the process stops."""
        if self.election is not None:
            self.election.release()
        self.limiter.close()

    def _set_status(self, state: str, detail: str) -> None:
        if (self.status["state"], self.status["detail"]) != (state, detail) and state == "waiting":
            log.error("dispatcher waiting: %s", detail)
        self.status["state"], self.status["detail"] = state, detail

    async def _budget_call(self, call: Callable[..., T], *args: Any) -> T:
        if self.limiter.blocking:  # Redis: a slow answer must not stall the event loop
            return await asyncio.to_thread(call, *args)
        return call(*args)

    # --- claiming --------------------------------------------------------------------------------------

    def claim_limit(self, channel: str) -> int:
        """Rows worth claiming for one channel: no more than its broadest budget can send in half the
        lease after the send timeout (the rest is margin), so a claimed row never waits its lease out,
        and at most CLAIM_SECONDS of sending, so a round stays short."""
        connector = self.connectors[channel]
        scopes = connector.rate_scopes(ReplyTarget(channel, connector.account, ""))
        if not scopes:
            return self.batch_size
        broad = scopes[0]
        seconds = max(self.lease.total_seconds() - self.send_timeout, 1.0) * CLAIM_SHARE_OF_LEASE
        seconds = min(seconds, CLAIM_SECONDS)
        return max(1, min(self.batch_size, int(broad.limit / broad.per_seconds * seconds)))

    def _claim(self, owner: str) -> list[OutboxItem]:
        """Lease due rows, only the oldest unfinished row of each chat: a citizen reads our messages
        in the order we wrote them, even when an earlier one is waiting for a retry."""
        now = self.now()
        rows: list[OutboxItem] = []
        with unit_of_work(self.engine) as s:
            for channel, connector in self.connectors.items():
                self._probe_held(s, channel, connector.account, now)
                query = (
                    self._due(channel, now)
                    .order_by(col(OutboxItem.id))
                    .limit(self.claim_limit(channel))
                    .with_for_update(skip_locked=True)  # PostgreSQL: workers never claim the same row
                )
                for row in s.exec(query):
                    row.state, row.lease_owner = "sending", owner
                    row.lease_until = now + self.lease
                    s.add(row)
                    rows.append(row)
        return rows

    @staticmethod
    def _due(channel: str, now: datetime) -> Any:
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
        return select(OutboxItem).where(
            OutboxItem.channel == channel,
            or_(
                col(OutboxItem.state).in_(["pending", "retrying"]),
                # A lease that ran out means the worker died mid-send: send again.
                (col(OutboxItem.state) == "sending") & (col(OutboxItem.lease_until) < now),
            ),
            OutboxItem.next_attempt_at <= now,
            ~earlier_unfinished,
        )

    def _probe_held(self, s: Session, channel: str, account: str, now: datetime) -> None:
        """A held channel: when the probe is due, its oldest held row is sent as the probe; rows queued
        meanwhile join the hold instead of each trying the refused token."""
        oldest = s.exec(
            select(OutboxItem)
            .where(OutboxItem.channel == channel, OutboxItem.account == account, OutboxItem.state == "held")
            .order_by(col(OutboxItem.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if oldest is None:
            self._held.discard((channel, account))
            return
        self._held.add((channel, account))
        if oldest.next_attempt_at <= now:
            oldest.state = "retrying" if oldest.attempts else "pending"
            oldest.next_attempt_at = now
            s.add(oldest)
        s.execute(
            update(OutboxItem)
            .where(
                col(OutboxItem.channel) == channel,
                col(OutboxItem.account) == account,
                col(OutboxItem.state).in_(["pending", "retrying"]),
                col(OutboxItem.id) != oldest.id,
            )
            .values(
                state="held",
                last_error_code=oldest.last_error_code,
                last_error_detail=oldest.last_error_detail,
            )
        )

    # --- delivering ------------------------------------------------------------------------------------

    async def _deliver_chat(self, rows: list[OutboxItem], owner: str) -> None:
        for index, row in enumerate(rows):
            wait = await self._deliver(row, owner)
            if isinstance(wait, _Lost):
                return
            if wait is not None:
                # Keep the chat's order: everything after this row waits as long as it does.
                await asyncio.to_thread(self._release, [r.id for r in rows[index:]], owner, wait)
                return

    async def _deliver(self, row: OutboxItem, owner: str) -> float | _Lost | None:
        """Send the row's remaining parts; returns seconds the chat must wait (limit or retry), if any."""
        connector = self.connectors[row.channel]
        target = ReplyTarget(row.channel, row.account, row.chat_id, row.reply_to_key, row.target_kind)
        parts = split_text(row.text, connector.text_limit, connector.measure_text)
        context: SendContext | None = None
        if isinstance(connector, ReplyWindows | ContextualSend):
            context = await asyncio.to_thread(self._send_context, row)
        if isinstance(connector, ReplyWindows):
            # Reply windows are decided now, at send time, from the citizen's last message.
            assert context is not None
            decision = connector.reply_window(target, context)
            if decision.kind in ("closed", "wait"):
                done = await asyncio.to_thread(self._record_window, row.id, owner, decision)
                return None if done else LOST
            target = replace(target, window=decision)
            if decision.kind == "template":
                parts = parts[:1]  # the template goes instead of the text: one send
        scopes = connector.rate_scopes(target)
        while row.parts_sent < len(parts):
            key = row.key if len(parts) == 1 else f"{row.key}#{row.parts_sent + 1}"
            # The budget is taken only once the send has its slot and leaves at once: taken before
            # waiting for a slot, a queue of sends would burst out together later.
            async with self._in_flight:
                if (row.channel, row.account) in self._held_in_round:
                    return LOST  # another chat's send just found the token refused; the hold took this row
                if not await self._leases_last(row, owner):
                    return LOST
                try:
                    wait = await self._budget_call(self.limiter.try_acquire, scopes)
                except BudgetUnavailable as exc:
                    self._budget_error = exc
                    return BUDGET_RETRY_SECONDS
                if wait is None:
                    last = row.parts_sent == len(parts) - 1
                    # The choices (buttons) go with the last part, under the words they answer.
                    part_target = replace(target, choices=_choices(row.choices)) if last else target
                    result = await self._send(connector, part_target, parts[row.parts_sent], key, context)
                    if isinstance(result, RetryLater):
                        await self._obey(result, scopes)
                    if isinstance(result, Held):
                        self._held_in_round.add((row.channel, row.account))
                    recorded = await asyncio.to_thread(self._record, row.id, owner, result, len(parts))
            if wait is not None:
                if wait > INLINE_WAIT_SECONDS:
                    return wait  # a pause: the row goes back to the database until then
                # The budget frees within a moment: wait for it here, outside the send slot, instead of
                # giving the row back and claiming it again (the claim is sized for this, claim_limit).
                await asyncio.sleep(wait + random.uniform(0.0, 0.05))
                continue
            if recorded is None:
                return LOST
            row = recorded
            if isinstance(result, RetryLater) and row.state == "retrying":
                # Later rows to this chat wait for this one, so the citizen reads them in order.
                return max((row.next_attempt_at - self.now()).total_seconds(), 0.0)
            if not isinstance(result, Delivered):
                return LOST if isinstance(result, Held) else None
        return None

    async def _obey(self, result: RetryLater, scopes: Sequence[RateScope]) -> None:
        """Pause the scope the platform's wait is about (ratelimit.ScopeLimiter.rate_limited has the rule)."""
        if not scopes or not (result.rate_limited or result.after_seconds):
            return
        try:
            if result.rate_limited:
                paused = await self._budget_call(
                    self.limiter.rate_limited, scopes, result.after_seconds, result.scope
                )
                if paused == scopes[0].key and len(scopes) > 1:
                    log.warning("%s: rate limit for the whole account; pausing %s", result.code, paused)
            elif result.after_seconds:
                await self._budget_call(self.limiter.pause, scopes[-1].key, result.after_seconds)
        except BudgetUnavailable as exc:
            self._budget_error = exc  # the row itself still waits: _record sets its next attempt

    async def _leases_last(self, row: OutboxItem, owner: str) -> bool:
        """Both leases (the row's and, if elected, the dispatcher's) must outlive the send; renew them if
        they would not, and give the row up when one of them is no longer ours."""
        if self.election is not None and not self.election.valid_for(self.election.seconds / 2):
            if not await asyncio.to_thread(self.may_dispatch) or not self.election.valid_for(
                ELECTION_SEND_MARGIN_SECONDS
            ):
                log.warning("dispatcher lost the election mid-round; leaving %s to the new leader", row.key)
                return False
        # The send must end (send_timeout) before the lease does; with a lease shorter than that (tests
        # of crashes use 2 s) renew at half of it instead of before every part.
        margin = min(self.send_timeout + 1.0, self.lease.total_seconds() / 2)
        if row.lease_until is None or row.lease_until - timedelta(seconds=margin) <= self.now():
            renewed = await asyncio.to_thread(self._renew, row.id, owner)
            if renewed is None:
                log.warning("outbox %s: lease lost before sending; another dispatcher has it", row.key)
                return False
            row.lease_until = renewed
        return True

    async def _send(
        self,
        connector: Connector,
        target: ReplyTarget,
        text: str,
        key: str,
        context: SendContext | None = None,
    ) -> SendResult:
        try:
            if isinstance(connector, ContextualSend):
                sending = connector.send(target, text, idempotency_key=key, context=context)
            else:
                sending = connector.send(target, text, idempotency_key=key)
            return await asyncio.wait_for(sending, timeout=self.send_timeout)
        except TimeoutError:
            return RetryLater(f"{connector.name}.timeout", "no answer from the platform in time")
        except Exception as exc:  # a connector bug must not stop the other chats
            log.exception("connector %s raised while sending", connector.name)
            return RetryLater(f"{connector.name}.error", f"{type(exc).__name__}: {exc}")

    # --- recording -------------------------------------------------------------------------------------

    @staticmethod
    def _owned(s: Session, row_id: int | None, owner: str) -> OutboxItem | None:
        row = s.exec(select(OutboxItem).where(OutboxItem.id == row_id).with_for_update()).first()
        if row is None or row.state != "sending" or row.lease_owner != owner:
            return None
        return row

    def _renew(self, row_id: int | None, owner: str) -> datetime | None:
        with unit_of_work(self.engine) as s:
            row = self._owned(s, row_id, owner)
            if row is None:
                return None
            row.lease_until = self.now() + self.lease
            s.add(row)
            return row.lease_until

    def _record(
        self, row_id: int | None, owner: str, result: SendResult, total_parts: int
    ) -> OutboxItem | None:
        """Record one part's result, only if the lease is still this owner's; None when it is not (the
        row was claimed again after its lease ran out: the new owner's results count, not ours)."""
        now = self.now()
        with unit_of_work(self.engine) as s:
            row = self._owned(s, row_id, owner)
            if row is None:
                log.warning("outbox %s: lease lost; result %s not recorded", row_id, type(result).__name__)
                return None
            if isinstance(result, Delivered):
                self._record_delivered(s, row, result, total_parts, now)
            elif isinstance(result, Held):
                self._record_held(s, row, result, owner, now)
            elif isinstance(result, RetryLater) and result.rate_limited:
                # Waiting is not failing: the platform asked us to slow down, the message is fine.
                row.state, row.lease_until, row.lease_owner = "retrying", None, None
                row.last_error_code, row.last_error_detail = result.code, result.detail
                wait = result.after_seconds or DEFAULT_RATE_LIMIT_PAUSE_SECONDS
                row.next_attempt_at = now + timedelta(seconds=wait)
            else:
                self._record_attempt(s, row, result, now)
            s.add(row)
        return row

    def _record_delivered(
        self, s: Session, row: OutboxItem, result: Delivered, total_parts: int, now: datetime
    ) -> None:
        row.parts_sent += 1
        row.platform_message_ids = [*row.platform_message_ids, result.platform_message_id]
        row.last_error_code = row.last_error_detail = None
        if row.parts_sent >= total_parts:
            row.state, row.sent_at, row.lease_until, row.lease_owner = "sent", now, None, None
        else:
            row.lease_until = now + self.lease
        # Index the id for the platform's later receipts (and apply one that came first); only for a
        # channel whose platform sends receipts (Telegram's message ids repeat across chats).
        if sends_receipts(self.connectors.get(row.channel)):
            link_sent(s, row, result.platform_message_id, now, elsewhere=self.elsewhere_writer)
        if (row.channel, row.account) in self._held:
            # The token works again (this was the probe, or a row sent meanwhile): the hold ends.
            released: Any = s.execute(
                update(OutboxItem)
                .where(
                    col(OutboxItem.channel) == row.channel,
                    col(OutboxItem.account) == row.account,
                    col(OutboxItem.state) == "held",
                )
                .values(
                    state=case((col(OutboxItem.attempts) > 0, "retrying"), else_="pending"),
                    next_attempt_at=now,
                )
            )
            self._held.discard((row.channel, row.account))
            log.warning(
                "%s %s: sending again; %s held rows released", row.channel, row.account, released.rowcount
            )

    def _record_held(self, s: Session, row: OutboxItem, result: Held, owner: str, now: datetime) -> None:
        row.state, row.lease_until, row.lease_owner = "held", None, None
        row.last_error_code, row.last_error_detail = result.code, result.detail
        row.next_attempt_at = now + self.hold_probe
        # The whole channel waits with it, visibly, including rows this round has leased but not sent.
        s.execute(
            update(OutboxItem)
            .where(
                col(OutboxItem.channel) == row.channel,
                col(OutboxItem.account) == row.account,
                col(OutboxItem.id) != row.id,
                or_(
                    col(OutboxItem.state).in_(["pending", "retrying"]),
                    (col(OutboxItem.state) == "sending") & (col(OutboxItem.lease_owner) == owner),
                ),
            )
            .values(
                state="held",
                lease_until=None,
                lease_owner=None,
                last_error_code=result.code,
                last_error_detail=result.detail,
            )
        )
        self._held.add((row.channel, row.account))
        log.warning(
            "outbox %s: %s (%s) -> held, next probe at %s",
            row.key,
            result.code,
            result.detail,
            row.next_attempt_at,
        )

    def _record_attempt(
        self, s: Session, row: OutboxItem, result: RetryLater | Failed, now: datetime
    ) -> None:
        row.attempts += 1
        row.last_error_code, row.last_error_detail = result.code, result.detail
        row.lease_until, row.lease_owner = None, None
        if isinstance(result, Failed) or row.attempts >= self.max_attempts:
            row.state = "failed"
            fallback = None
            if isinstance(result, Failed) and result.fallback and self.fallback_writer:
                fallback = self.fallback_writer(s, row, result.fallback)
            elif isinstance(result, Failed) and result.elsewhere and self.elsewhere_writer:
                fallback = self.elsewhere_writer(s, row)
                if fallback is not None:
                    row.last_error_detail = f"{result.detail}; owed on another channel instead ({fallback})"
            self._note_failure(s, row, now, fallback)
        else:
            row.state = "retrying"
            # The platform's own hint wins over our backoff: it knows when the limit resets.
            delay = result.after_seconds or backoff_seconds(row.attempts)
            row.next_attempt_at = now + timedelta(seconds=delay)
        log.warning("outbox %s: %s (%s) -> %s", row.key, result.code, result.detail, row.state)

    # --- reply windows ---------------------------------------------------------------------------------

    def _send_context(self, row: OutboxItem) -> SendContext:
        """What the connector's reply_window needs: the citizen's last message time (the platform's), how
        many of our messages reached this target since, and the appeal's fields for a template; and for a
        ContextualSend connector the id of the citizen's last message (e-mail's In-Reply-To)."""
        now = self.now()
        with read_session(self.engine) as s:  # on SQLite: beside the writer, never taking its lock
            last_inbound = s.exec(
                select(Conversation.last_inbound_at).where(
                    Conversation.channel == row.channel,
                    Conversation.account == row.account,
                    Conversation.chat_id == row.chat_id,
                )
            ).first()
            sent = select(func.count()).where(
                OutboxItem.channel == row.channel,
                OutboxItem.account == row.account,
                OutboxItem.chat_id == row.chat_id,
                OutboxItem.state == "sent",
            )
            if last_inbound is not None:
                sent = sent.where(col(OutboxItem.sent_at) >= last_inbound)
            sent_since = int(s.exec(sent).one())
            language, fields = self.notice_fields(s, row) if self.notice_fields else (None, {})
            inbound = (
                select(Message.external_key, Message.thread)
                .join(Conversation, col(Conversation.id) == Message.conversation_id)
                .where(
                    Conversation.channel == row.channel,
                    Conversation.account == row.account,
                    Conversation.chat_id == row.chat_id,
                    Message.direction == "in",
                )
            )
            last = s.exec(
                inbound.order_by(col(Message.sent_at).desc(), col(Message.id).desc()).limit(1)
            ).first()
            last_inbound_key, reply_thread = (last[0], last[1]) if last is not None else (None, [])
            if row.reply_to_key and row.reply_to_key != last_inbound_key:  # it answers an earlier one
                parent = s.exec(inbound.where(Message.external_key == row.reply_to_key).limit(1)).first()
                reply_thread = parent[1] if parent is not None else []
        return SendContext(
            purpose=row.purpose,
            # A moderator typed it: a reply, or the four-eyes answer (answers.py) a head approved.
            written_by_person=row.purpose in PERSON_WRITTEN_PURPOSES,
            last_inbound_at=last_inbound,
            now=now,
            sent_since_inbound=sent_since,
            language=language,
            fields=dict(fields),
            last_inbound_key=last_inbound_key,
            reply_thread=tuple(str(mid) for mid in reply_thread or ()),
        )

    def _record_window(self, row_id: int | None, owner: str, decision: WindowDecision) -> bool:
        """A closed window fails the row (owed elsewhere when the citizen is known elsewhere); a wait parks
        it in state `waiting` until the citizen writes (the workflow releases it) and owes the notice that
        tells them to. False when the lease is no longer ours."""
        if decision.kind == "closed":
            failed = Failed(decision.code, decision.detail, elsewhere=True)
            return self._record(row_id, owner, failed, 1) is not None
        now = self.now()
        with unit_of_work(self.engine) as s:
            row = self._owned(s, row_id, owner)
            if row is None:
                return False
            row.state, row.lease_until, row.lease_owner = "waiting", None, None
            row.last_error_code, row.last_error_detail = decision.code, decision.detail
            s.add(row)
            notice_key = None
            if decision.notice:
                notice_key = f"{decision.notice}:{row.key}"[:200]
                insert_ignoring_conflict(
                    s,
                    OutboxItem,
                    {
                        "key": notice_key,
                        "channel": row.channel,
                        "account": row.account,
                        "chat_id": row.chat_id,
                        "target_kind": row.target_kind,
                        "reply_to_key": row.reply_to_key,
                        "appeal_id": row.appeal_id,
                        "purpose": decision.notice,
                        # What moderators read; the connector sends its approved template for this purpose.
                        "text": f"[{decision.notice}] {decision.detail}",
                        "state": "pending",
                        "attempts": 0,
                        "parts_sent": 0,
                        "platform_message_ids": [],
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                )
            if row.appeal_id is not None:
                detail = {"outbox": row.key, "code": decision.code, "detail": decision.detail}
                if notice_key:
                    detail["notice"] = notice_key
                s.add(
                    AppealEvent(
                        appeal_id=row.appeal_id,
                        kind="delivery_waiting",
                        actor="system",
                        created_at=now,
                        detail=detail,
                    )
                )
        log.info("outbox %s: %s (%s) -> waiting", row_id, decision.code, decision.detail)
        return True

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
            if fallback is None:  # owed nowhere else: a person must reach the citizen
                staff_work.task_for_undelivered(s, row, now)

    def _release(self, row_ids: list[int | None], owner: str, wait: float) -> None:
        at = self.now() + timedelta(seconds=wait)
        with unit_of_work(self.engine) as s:
            for row_id in row_ids:
                row = self._owned(s, row_id, owner)
                if row is not None:
                    # A probe of a held channel that could not go yet stays held (and visible as such).
                    held = (row.channel, row.account) in self._held and row.last_error_code is not None
                    row.state = "held" if held else "retrying" if row.attempts else "pending"
                    row.lease_until, row.lease_owner = None, None
                    row.next_attempt_at = at
                    s.add(row)


class Election:
    """One dispatcher per PostgreSQL database: a lease row renewed every round, in database time.

    A row, not an advisory lock: a holder whose connection drops cannot renew it and stops within one
    round, and a standby takes over when the expiry passes, whatever happened to the old holder."""

    def __init__(self, engine: Engine, owner: str, seconds: float, name: str = ELECTION_NAME) -> None:
        self.engine = engine
        self.owner = owner
        self.seconds = seconds
        self.name = name
        self._valid_until = 0.0  # time.monotonic() by which our lease surely has expired

    def hold(self) -> bool:
        """Take the lease if it is free or ours (renewing it); False when another dispatcher holds it."""
        started = time.monotonic()
        table = DispatcherLease.__table__  # type: ignore[attr-defined]
        expires = func.clock_timestamp() + timedelta(seconds=self.seconds)
        handed_over = func.clock_timestamp() - timedelta(seconds=ELECTION_HANDOVER_SECONDS)
        insert = postgresql.insert(table).values(name=self.name, owner=self.owner, expires_at=expires)
        stmt = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": self.owner, "expires_at": expires},
            where=(table.c.owner == self.owner) | (table.c.expires_at < handed_over),
        ).returning(table.c.owner)
        try:
            with self.engine.begin() as conn:
                won = conn.execute(stmt).first() is not None
        except SQLAlchemyError:
            self._valid_until = 0.0
            raise
        self._valid_until = started + self.seconds if won else 0.0
        return won

    def valid_for(self, seconds: float) -> bool:
        return time.monotonic() + seconds < self._valid_until

    def release(self) -> None:
        """Let a standby take over (ELECTION_HANDOVER_SECONDS after now: budgets are per process)."""
        if self._valid_until == 0.0:
            return
        table = DispatcherLease.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(table)
                    .where(table.c.name == self.name, table.c.owner == self.owner)
                    .values(expires_at=func.clock_timestamp())
                )
        except SQLAlchemyError:
            log.warning("could not hand the dispatcher election over; it expires by itself", exc_info=True)
        self._valid_until = 0.0


# --- operators' commands ----------------------------------------------------------------------------------


def requeue(
    s: Session,
    *,
    now: datetime,
    channel: str | None = None,
    code: str | None = None,
    appeal_number: str | None = None,
    outbox_id: int | None = None,
    actor: str = "cli",
) -> list[OutboxItem]:
    """Send failed and held rows again (optionally only of one channel, error code, appeal or one row):
    attempts start over, and each appeal's history says who requeued what and how many attempts the
    row had made before (so the page can count them all). `adaldyk outbox requeue` and the appeal
    page's retry button both come here; the running dispatcher sends the row as a new attempt."""
    query = select(OutboxItem).where(col(OutboxItem.state).in_(["failed", "held"]))
    if outbox_id is not None:
        query = query.where(OutboxItem.id == outbox_id)
    if channel:
        query = query.where(OutboxItem.channel == channel)
    if code:
        query = query.where(OutboxItem.last_error_code == code)
    if appeal_number:
        query = query.join(Appeal, col(Appeal.id) == col(OutboxItem.appeal_id)).where(
            Appeal.number == appeal_number
        )
    rows = list(s.exec(query.order_by(col(OutboxItem.id)).with_for_update()))
    numbers = dict(
        s.exec(
            select(Appeal.id, Appeal.number).where(
                col(Appeal.id).in_({r.appeal_id for r in rows if r.appeal_id is not None})
            )
        ).all()
    )
    for row in rows:
        detail = {
            "outbox": row.key,
            "outbox_id": row.id,
            "was": row.state,
            "code": row.last_error_code,
            "attempts_before": row.attempts,
        }
        audit.record(
            s, actor=actor, action="delivery.retry", subject=numbers.get(row.appeal_id), detail=detail
        )
        row.state, row.attempts, row.next_attempt_at = "pending", 0, now
        row.lease_until = row.lease_owner = None
        s.add(row)
        if row.appeal_id is not None:
            s.add(
                AppealEvent(
                    appeal_id=row.appeal_id, kind="requeued", actor=actor, created_at=now, detail=detail
                )
            )
    return rows
