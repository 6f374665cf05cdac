"""What the workspace shows of a person's staff notices (reminders, escalations, digests…): their list,
newest first, the unread count in the header, and marking them read. Only the person's own notices."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from adaldyk_bots import audit
from adaldyk_bots.errors import NotFound
from adaldyk_bots.storage.models import Appeal, StaffNotice

__all__ = ["PAGE_SIZE", "mark_all_read", "mark_read", "notices_of", "unread_notices"]

PAGE_SIZE = 100


def unread_notices(s: Session, user_id: int) -> int:
    return int(
        s.exec(
            select(func.count())
            .select_from(StaffNotice)
            .where(StaffNotice.user_id == user_id, col(StaffNotice.read_at).is_(None))
        ).one()
    )


def notices_of(
    s: Session, user_id: int, *, before: int | None = None, limit: int = PAGE_SIZE
) -> list[tuple[StaffNotice, str | None]]:
    """(notice, its appeal's number) newest first; `before`: the page after the notice with that id."""
    query = (
        select(StaffNotice, Appeal.number)
        .join(Appeal, col(Appeal.id) == col(StaffNotice.appeal_id), isouter=True)
        .where(StaffNotice.user_id == user_id)
    )
    if before is not None:
        query = query.where(col(StaffNotice.id) < before)
    rows = s.exec(query.order_by(col(StaffNotice.id).desc()).limit(limit))
    return [(notice, number) for notice, number in rows]


def mark_read(s: Session, user_id: int, notice_id: int, *, actor: str, now: datetime) -> None:
    notice = s.get(StaffNotice, notice_id)
    if notice is None or notice.user_id != user_id:
        raise NotFound(f"no notice {notice_id}")  # someone else's notice is not there for this person
    if notice.read_at is None:
        notice.read_at = now
        s.add(notice)
        audit.record(s, actor=actor, action="notice.read", subject=notice.key)


def mark_all_read(s: Session, user_id: int, *, actor: str, now: datetime) -> int:
    done = s.execute(
        update(StaffNotice)
        .where(col(StaffNotice.user_id) == user_id, col(StaffNotice.read_at).is_(None))
        .values(read_at=now)
    )
    count = int(getattr(done, "rowcount", 0) or 0)
    if count:
        audit.record(s, actor=actor, action="notice.read_all", detail={"count": count})
    return count
