"""The audit log: who did what, append-only and hash-chained, so that a changed or missing row is found.

`record()` is called by whoever changes state or looks at an appeal (workflow, login, the appeal page),
inside the caller's own unit of work. The event is written just before that transaction commits (a
`before_commit` hook), so it is in the database exactly when the change it describes is, and the
lock that keeps the chain linear is held only for the commit itself — never across the caller's work,
where it could meet the caller's row locks in the other order and deadlock.

The chain: each row's `hash` is sha256 over a canonical JSON of its fields and the previous row's
hash. Appends are serialized by the one-row `audit_head` table (locked FOR UPDATE on PostgreSQL; on
SQLite every write transaction is already the only one), which also keeps the last id and hash so
that a deleted tail is noticed too. Ids are given from the head, one after another, so a gap is a
deleted row. Triggers (migration 0007_audit) refuse UPDATE and DELETE on audit_event; TRUNCATE (the
test suite's reset, an operator's deliberate act) still works, and empties the head with the log.

The hash chain proves the log consistent with itself; an operator who wants proof against someone who
can rewrite the whole table keeps the head hash that `adaldyk audit verify` prints somewhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.storage.models import AuditEvent, AuditHead
from adaldyk_bots.storage.types import dumps_storable, storable

__all__ = [
    "GENESIS",
    "Break",
    "Filters",
    "Verification",
    "actor_for_token",
    "actor_for_user",
    "event_hash",
    "known_actions",
    "record",
    "search",
    "verify",
]

GENESIS = "0" * 64  # the prev_hash of the first event
_PENDING = "adaldyk.audit.pending"
_HOOKED = "adaldyk.audit.hooked"


def actor_for_user(username: str) -> str:
    return f"user:{username}"


def actor_for_token(name: str) -> str:
    return f"token:{name}"


@dataclass(frozen=True)
class _Pending:
    at: datetime
    actor: str
    action: str
    subject: str | None
    address: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def record(
    s: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    address: str | None = None,
) -> None:
    """Add an audit event to `s`'s transaction; it is written when (and only if) the caller commits.

    actor: "user:<name>", "token:<name>", "system" or "citizen"; action: a dotted verb such as
    "login", "appeal.view", "appeal.status"; subject: what it is about (appeal number, username);
    address: the client's address when a person did it over HTTP; detail: any JSON-able facts."""
    pending: list[_Pending] = s.info.setdefault(_PENDING, [])
    pending.append(
        _Pending(
            at=utcnow(),
            actor=actor,
            action=action,
            subject=subject,
            address=address,
            # Cleaned and copied now: what is hashed is what the database will hold, and a caller that
            # changes its dict afterwards changes nothing here.
            detail=json.loads(dumps_storable(detail or {})),
        )
    )
    if not s.info.get(_HOOKED):
        s.info[_HOOKED] = True
        event.listen(s, "before_commit", _append_pending)
        event.listen(s, "after_rollback", _forget_pending)


def _forget_pending(s: OrmSession) -> None:
    s.info.pop(_PENDING, None)


def _append_pending(s: OrmSession) -> None:
    pending: list[_Pending] = s.info.pop(_PENDING, [])
    if not pending:
        return
    last_id, last_hash = _lock_head(s)
    rows = []
    for item in pending:
        last_id += 1
        values = {
            "id": last_id,
            "at": item.at,
            "actor": storable(item.actor),
            "action": storable(item.action),
            "subject": None if item.subject is None else storable(item.subject),
            "address": None if item.address is None else storable(item.address),
            "detail": item.detail,
            "prev_hash": last_hash,
        }
        last_hash = event_hash(values)
        rows.append({**values, "hash": last_hash})
    s.execute(AuditEvent.__table__.insert(), rows)  # type: ignore[attr-defined]
    s.execute(
        text("UPDATE audit_head SET last_id = :id, last_hash = :hash WHERE id = 1"),
        {"id": last_id, "hash": last_hash},
    )


def _lock_head(s: OrmSession) -> tuple[int, str]:
    # The head row may be missing (a fresh or truncated database): create it, quietly if another
    # process just did. On PostgreSQL a second inserter waits for the first one's commit, then finds
    # the row and takes its lock in turn.
    s.execute(
        text(
            "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, :genesis)"
            " ON CONFLICT (id) DO NOTHING"
        ),
        {"genesis": GENESIS},
    )
    lock = " FOR UPDATE" if s.get_bind().dialect.name == "postgresql" else ""
    row = s.execute(text(f"SELECT last_id, last_hash FROM audit_head WHERE id = 1{lock}")).one()
    return int(row[0]), str(row[1])


def _canonical_at(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(values: dict[str, Any]) -> str:
    """sha256 of the event's fields and the previous hash, in one canonical JSON (sorted keys, no
    spaces, UTF-8): the same bytes whichever database the row was read back from."""
    canonical = {
        "id": int(values["id"]),
        "at": _canonical_at(values["at"]),
        "actor": values["actor"],
        "action": values["action"],
        "subject": values["subject"],
        "address": values["address"],
        "detail": values["detail"],
        "prev_hash": values["prev_hash"],
    }
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


# --- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first link that does not hold: the row's id (or the head's) and what differs."""

    id: int
    reason: str


@dataclass(frozen=True)
class Verification:
    count: int
    head_hash: str
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _rows(s: Session, batch: int) -> Iterator[AuditEvent]:
    after = 0
    while True:
        chunk = s.exec(
            select(AuditEvent).where(col(AuditEvent.id) > after).order_by(col(AuditEvent.id)).limit(batch)
        ).all()
        if not chunk:
            return
        yield from chunk
        after = int(chunk[-1].id or 0)


def verify(s: Session, *, batch: int = 2000) -> Verification:
    """Walk the whole chain in id order; stop at the first row whose id, link or hash is wrong."""
    expected_id, prev_hash, count = 1, GENESIS, 0
    for row in _rows(s, batch):
        row_id = int(row.id or 0)
        if row_id != expected_id:
            missing = f"{expected_id}" if row_id == expected_id + 1 else f"{expected_id}..{row_id - 1}"
            return Verification(count, prev_hash, Break(row_id, f"row(s) {missing} missing before it"))
        if row.prev_hash != prev_hash:
            return Verification(
                count, prev_hash, Break(row_id, "prev_hash does not match the hash of the row before it")
            )
        computed = event_hash(row.model_dump())
        if computed != row.hash:
            return Verification(
                count, prev_hash, Break(row_id, "its fields do not match its hash (the row was changed)")
            )
        prev_hash, expected_id, count = row.hash, expected_id + 1, count + 1
    head = s.get(AuditHead, 1)
    last_id = head.last_id if head else 0
    if last_id != count:
        return Verification(
            count,
            prev_hash,
            Break(
                last_id, f"the head says the log ends at {last_id}, the table ends at {count} (rows deleted)"
            ),
        )
    if head is not None and head.last_hash != prev_hash:
        return Verification(count, prev_hash, Break(last_id, "the head's hash does not match the last row"))
    return Verification(count, prev_hash, None)


# --- reading (the auditor's page) --------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the auditor's page filters by; empty fields do not filter. Dates are local calendar days
    (the service's time zone), both ends included."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    date_from: date | None = None
    date_to: date | None = None


def search(
    s: Session, filters: Filters, *, tz: tzinfo, before: int | None = None, limit: int = 50
) -> tuple[list[AuditEvent], int | None]:
    """Newest first, `limit` at a time; keyset paging by id (`before`) so that a deep page of a large log
    costs the same as the first. Returns the rows and the `before` of the next (older) page, if any."""
    query = select(AuditEvent)
    if filters.actor:
        query = query.where(AuditEvent.actor == filters.actor)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.subject:
        # Appeal numbers are upper case; a typed "adl-2026-000001" means the same appeal.
        query = query.where(col(AuditEvent.subject).in_({filters.subject, filters.subject.upper()}))
    if filters.date_from is not None:
        start = datetime.combine(filters.date_from, time.min, tzinfo=tz)
        query = query.where(col(AuditEvent.at) >= start.astimezone(UTC))
    if filters.date_to is not None:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=tz)
        query = query.where(col(AuditEvent.at) < end.astimezone(UTC))
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    rows = list(s.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (int(rows[-1].id) if more and rows else None)


def known_actions(s: Session) -> list[str]:
    """The actions present in the log, for the page's filter list."""
    return sorted(str(a) for a in s.exec(select(AuditEvent.action).distinct()))
