"""What the system asks of people: tasks on an appeal (call the citizen, reach one whose notice could not
be delivered) and notices to a staff member (reminders, escalations, digests, approval requests).

Each row has a UNIQUE key, so a sweep that two workers run at once, or one that runs again after a crash,
writes it once. Like the workflow, these functions work inside the caller's transaction and never commit.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session

from adaldyk_bots import corruption, org
from adaldyk_bots.storage.db import insert_ignoring_conflict
from adaldyk_bots.storage.models import OutboxItem, StaffNotice, StaffTask

__all__ = [
    "NOTICE_PURPOSES",
    "UNREACHABLE_CHANNELS",
    "add_task",
    "notify_acting_head",
    "notify_staff",
    "task_for_undelivered",
]

# Conversations no connector sends to (phone, reception, a web form without an address): what is owed
# there is a person's task. Here rather than in notices.py so that the workflow can use it too.
UNREACHABLE_CHANNELS = frozenset({"phone", "reception", "web"})

# Outbox purposes that tell a citizen something they are owed (the law's notices, acknowledgements, status
# notices, staff replies, answers to "where is my appeal"): one that fails for good becomes a person's task.
NOTICE_PURPOSES = frozenset(
    {
        "registration",
        "forwarding",
        "extension",
        "answer",
        "hearing",
        "ack",
        "status",
        "reply",
        "status_query",
        "info",
        "invite",
        "notice",
    }
)


def add_task(
    s: Session,
    *,
    key: str,
    appeal_id: int,
    kind: str,
    text: str,
    now: datetime,
    outbox_id: int | None = None,
) -> bool:
    """Owe a person a task on the appeal; False when the task with that key already exists."""
    values = {
        "key": key,
        "appeal_id": appeal_id,
        "kind": kind,
        "text": text,
        "outbox_id": outbox_id,
        "created_at": now,
    }
    return insert_ignoring_conflict(s, StaffTask, values) is not None


def task_for_undelivered(s: Session, row: OutboxItem, now: datetime) -> bool:
    """A notice that cannot be delivered is a task for staff, never a silent gap: called in the same
    transaction that marks `row` failed for good (dispatcher, delivery receipts). False when the row is
    no citizen's notice, belongs to no appeal, or its task exists already."""
    if row.appeal_id is None or row.id is None or row.purpose not in NOTICE_PURPOSES:
        return False
    return add_task(
        s,
        key=f"undelivered:{row.id}",
        appeal_id=row.appeal_id,
        kind="undelivered_notice",
        text=row.text,
        now=now,
        outbox_id=row.id,
    )


def notify_staff(
    s: Session,
    *,
    key: str,
    kind: str,
    text: str,
    now: datetime,
    user_id: int | None = None,
    unit_id: int | None = None,
    appeal_id: int | None = None,
) -> bool:
    """A notice to a person (or to a unit whose head has no account yet); False when already written.

    A notice about a corruption report never reaches the unit it concerns or its chain of command
    (corruption.py): it goes to the project office instead."""
    unit_id, user_id = corruption.notice_recipient(s, appeal_id=appeal_id, unit_id=unit_id, user_id=user_id)
    values = {
        "key": key,
        "kind": kind,
        "text": text,
        "user_id": user_id,
        "unit_id": unit_id,
        "appeal_id": appeal_id,
        "created_at": now,
    }
    return insert_ignoring_conflict(s, StaffNotice, values) is not None


def notify_acting_head(
    s: Session,
    unit_id: int,
    *,
    key: str,
    kind: str,
    text: str,
    on: date,
    now: datetime,
    appeal_id: int | None = None,
) -> org.Responsible | None:
    """A notice to whoever answers for `unit_id` on `on` (the head, or the deputy acting for them).

    `key` names the event (e.g. remind:<appeal>:T-3); the unit is appended, so the same event may go to
    several units once each. Returns who it went to (None: the unit names nobody; the notice is still
    written for the unit, so the gap is visible). For a corruption report whose concerned unit's chain
    `unit_id` is in, it goes to the project office's acting head instead (corruption.py)."""
    target, _user = corruption.notice_recipient(s, appeal_id=appeal_id, unit_id=unit_id, user_id=None)
    unit_id = target if target is not None else unit_id
    responsible = org.acting_head(s, unit_id, on)
    notify_staff(
        s,
        key=f"{key}:unit:{unit_id}",
        kind=kind,
        text=text,
        now=now,
        user_id=responsible.user_id if responsible else None,
        unit_id=unit_id,
        appeal_id=appeal_id,
    )
    return responsible
