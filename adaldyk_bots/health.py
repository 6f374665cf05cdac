"""What the service knows about its own health: one report for `/healthz` (programs) and the admins'
channel health page (people), so the two can never disagree.

    health_report(parts, supervisor) -> (body, http_status)     the /healthz JSON, unchanged contract
    channel_details(engine, channels) -> {channel: {...}}        what the page adds per channel: the
        cursor, every recorded gap with its window, failures of the last 24 h by code, held sends and
        the token's state as far as the service can tell
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select

from adaldyk_bots import __version__
from adaldyk_bots.dispatcher import UNFINISHED
from adaldyk_bots.ports import Connector
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import as_utc, read_session, utcnow
from adaldyk_bots.storage.inbound import OPEN_STATUSES
from adaldyk_bots.storage.models import (
    Appeal,
    ChannelCursor,
    IntakeGap,
    LoopHeartbeat,
    OutboxItem,
    RawEvent,
)
from adaldyk_bots.supervisor import Supervisor, loops_report, read_heartbeats

__all__ = ["FAILURE_WINDOW", "GAPS_SHOWN", "HealthParts", "channel_details", "health_report"]

# "Failures in the last 24 h": a day covers a night nobody watched, and stays short enough that
# yesterday's fixed outage does not alarm today.
FAILURE_WINDOW = timedelta(hours=24)
# Gaps never clear by themselves; the page lists the newest ones (the count says how many in all).
GAPS_SHOWN = 20


class HealthParts(Protocol):
    """What the report reads of the running service (web.parts.AppParts and runtime.Runtime have it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def connectors(self) -> Mapping[str, Connector]: ...

    @property
    def off(self) -> Sequence[str]: ...

    @property
    def unavailable(self) -> Mapping[str, str]: ...


def health_report(parts: HealthParts, supervisor: Supervisor | None = None) -> tuple[dict[str, Any], int]:
    """The /healthz body and its status code (503 while the database does not answer). `supervisor`:
    the loops of this process, reported live beside the heartbeats other processes (workers) write."""
    body: dict[str, Any] = {"status": "ok", "version": __version__, "channels": {}}
    gaps: dict[str, dict[str, Any]] = {}
    heartbeats: list[LoopHeartbeat] = []
    settings = parts.settings
    try:
        with read_session(parts.engine) as s:
            s.exec(text("SELECT 1"))  # type: ignore[call-overload]
            body["backlog"] = _backlog(s)
            body["database"] = {
                "state": "ok",
                "quarantined_events": s.exec(
                    select(func.count()).select_from(RawEvent).where(RawEvent.state == "quarantined")
                ).one(),
                "failed_sends": s.exec(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "failed")
                ).one(),
                # Waiting for a channel whose token is refused (the channel says why); not failed.
                "held_sends": s.exec(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "held")
                ).one(),
            }
            # Windows in which a platform said events may be lost (VK long poll failed 1/3): for
            # moderators to check by hand; they never clear by themselves.
            for channel, count, last in s.exec(
                select(IntakeGap.channel, func.count(), func.max(IntakeGap.detected_at)).group_by(
                    IntakeGap.channel
                )
            ):
                last_at = last.isoformat() if last else None
                gaps[channel] = {"recorded_gaps": count, "last_gap_at": last_at}
        own = supervisor.process_id if supervisor is not None else None
        heartbeats = read_heartbeats(parts.engine, exclude_process=own)
    except SQLAlchemyError as exc:
        body["status"] = "degraded"
        body["database"] = {"state": "down", "detail": type(exc).__name__}
    if supervisor is not None:
        body["process"] = supervisor.process_id
    body["loops"], stale = loops_report(supervisor, heartbeats, stale_seconds=settings.loop_stale_seconds)
    backlog = body.get("backlog", {})
    old = [k for k, age in backlog.items() if age is not None and age > settings.backlog_degraded_seconds]
    if stale or old:
        body["status"] = "degraded"
    for name, connector in parts.connectors.items():
        h = connector.health
        body["channels"][name] = {
            "state": h.state,
            "detail": h.detail,
            "last_event_at": h.last_event_at,
            **gaps.get(name, {"recorded_gaps": 0}),
            **h.extra,
        }
        if h.state in ("broken", "degraded"):
            body["status"] = "degraded"
    for name in parts.off:
        body["channels"][name] = {"state": "off", "detail": "no credentials configured"}
    for name, reason in parts.unavailable.items():
        body["channels"][name] = {"state": "broken", "detail": reason}
        body["status"] = "degraded"
    code = 503 if body["database"]["state"] != "ok" else 200
    return body, code


def channel_details(
    engine: Engine, channels: Mapping[str, Mapping[str, Any]], *, now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Per channel of `channels` (the report's), what a person checking it needs beyond the report:

    cursors      [{account, value, updated_at}]     where each poller will go on from
    gaps         [{account, detected_at, reason, cursor_before, cursor_after, detail}], newest first
    failures     {code: count} of sends that failed for good in the last FAILURE_WINDOW
    held         sends waiting for a refused token, and the code the platform gave
    token        "accepted" | "refused" | "missing" | "unknown": held sends, else what the connector says
                 in health.extra["credentials"] ("accepted" | "refused"), else from the channel's state

    A database that does not answer gives each channel empty lists (the report already says it is down).
    """
    now = now or utcnow()
    details: dict[str, dict[str, Any]] = {
        name: {"cursors": [], "gaps": [], "failures": {}, "held": 0, "held_code": None} for name in channels
    }
    try:
        with read_session(engine) as s:
            _read_details(s, details, since=now - FAILURE_WINDOW)
    except SQLAlchemyError:
        pass
    for name, channel in channels.items():
        details[name]["token"] = _token_state(channel, details[name])
    return details


def _read_details(s: Session, details: dict[str, dict[str, Any]], *, since: datetime) -> None:
    names = list(details)
    for cursor in s.exec(
        select(ChannelCursor)
        .where(col(ChannelCursor.channel).in_(names))
        .order_by(col(ChannelCursor.account))
    ):
        details[cursor.channel]["cursors"].append(
            {"account": cursor.account, "value": cursor.value, "updated_at": as_utc(cursor.updated_at)}
        )
    for name in names:
        gaps = s.exec(
            select(IntakeGap)
            .where(IntakeGap.channel == name)
            .order_by(col(IntakeGap.detected_at).desc(), col(IntakeGap.id).desc())
            .limit(GAPS_SHOWN)
        )
        details[name]["gaps"] = [_gap(g) for g in gaps]
    failed = s.exec(
        select(OutboxItem.channel, OutboxItem.last_error_code, func.count())
        .where(
            OutboxItem.state == "failed",
            col(OutboxItem.channel).in_(names),
            # A row fails on the attempt that was due at next_attempt_at (a failure leaves it as it
            # was); created_at would miss a day-old notice that failed an hour ago after its retries.
            OutboxItem.next_attempt_at >= since,
        )
        .group_by(col(OutboxItem.channel), col(OutboxItem.last_error_code))
    )
    for channel, code, count in failed:
        details[channel]["failures"][code or "unknown"] = count
    held = s.exec(
        select(OutboxItem.channel, func.count(), func.max(OutboxItem.last_error_code))
        .where(OutboxItem.state == "held", col(OutboxItem.channel).in_(names))
        .group_by(OutboxItem.channel)
    )
    for channel, count, code in held:
        details[channel]["held"], details[channel]["held_code"] = count, code


def _gap(gap: IntakeGap) -> dict[str, Any]:
    return {
        "account": gap.account,
        "detected_at": as_utc(gap.detected_at),
        "reason": gap.reason,
        "cursor_before": gap.cursor_before,
        "cursor_after": gap.cursor_after,
        "detail": gap.detail,
    }


def _token_state(channel: Mapping[str, Any], detail: Mapping[str, Any]) -> str:
    # Held sends are the dispatcher's proof that the platform refuses the token right now. Otherwise
    # the connector's own word (health.extra["credentials"]: "accepted" after a call made with it succeeded,
    # "refused" when the platform refused it), else: a channel that answers (ok) has a token the
    # platform took. Anything else cannot be told from here.
    if channel.get("state") == "off":
        return "missing"
    if detail.get("held"):
        return "refused"
    said = channel.get("credentials")
    if said in ("accepted", "refused"):
        return str(said)
    if channel.get("state") == "ok":
        return "accepted"
    return "unknown"


def _backlog(s: Session) -> dict[str, float | None]:
    """Age in seconds of the oldest stored event not yet processed, of the oldest notice that is due
    but not sent, and of the oldest open appeal past its term not yet marked overdue (the deadline sweep
    is behind: R7 says overdue from that minute). None: nothing waiting. Any growing means intake, answers
    or the legal clock have stopped."""
    now = utcnow()
    oldest_event = s.exec(select(func.min(RawEvent.received_at)).where(RawEvent.state == "received")).one()
    oldest_due = s.exec(
        select(func.min(OutboxItem.next_attempt_at)).where(
            col(OutboxItem.state).in_(UNFINISHED), OutboxItem.next_attempt_at <= now
        )
    ).one()

    unmarked = s.exec(
        select(func.min(Appeal.due_at)).where(
            col(Appeal.status).in_(OPEN_STATUSES), Appeal.due_at < now, col(Appeal.overdue).is_(False)
        )
    ).one()

    def age(since: datetime | None) -> float | None:
        return None if since is None else round(max(0.0, (now - as_utc(since)).total_seconds()), 1)

    return {
        "oldest_unprocessed_event_seconds": age(oldest_event),
        "oldest_due_notice_seconds": age(oldest_due),
        "oldest_unmarked_overdue_seconds": age(unmarked),
    }
