"""What the system asks of people: tasks on an appeal (call the citizen, reach one whose notice could not
be delivered) and notices to a staff member (reminders, escalations, digests, approval requests).

Each row has a UNIQUE key, so a sweep that two workers run at once, or one that runs again after a crash,
writes it once. Like the workflow, these functions work inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlmodel import Session, col, select

from adaldyk_bots import corruption, org
from adaldyk_bots.access import Role
from adaldyk_bots.i18n import DEFAULT_LANGUAGE, LANGUAGES, N_, gettext
from adaldyk_bots.storage.db import insert_ignoring_conflict
from adaldyk_bots.storage.models import OutboxItem, StaffNotice, StaffTask, StaffUser

__all__ = [
    "HEADLESS_NOTE",
    "NOTICE_PURPOSES",
    "NoticeRoute",
    "Told",
    "UNREACHABLE_CHANNELS",
    "add_task",
    "notify_acting_head",
    "notify_staff",
    "route_to_unit",
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


@dataclass(frozen=True)
class Told:
    """One notice written by `notify_acting_head`: to whom (None: nobody has an account), under which
    key, in which words."""

    user: StaffUser | None
    key: str
    text: str


@dataclass(frozen=True)
class NoticeRoute:
    """Where a notice for a unit goes: `unit_id` (after the corruption rule), who answers for it
    (`responsible`, maybe without an account), and who reads it: that person, else — `headless` — the
    nearest acting head up the chain with an account, else the project office's, else its moderators."""

    unit_id: int
    responsible: org.Responsible | None
    user_ids: tuple[int, ...]
    headless: bool
    told: tuple[Told, ...] = ()


def route_to_unit(s: Session, unit_id: int, *, on: date, appeal_id: int | None = None) -> NoticeRoute:
    """Who reads a notice for `unit_id` on `on` (NoticeRoute). A notice about a corruption report never
    climbs into the units hidden from it (corruption.py): it goes to the project office instead."""
    target, _user = corruption.notice_recipient(s, appeal_id=appeal_id, unit_id=unit_id, user_id=None)
    unit_id = target if target is not None else unit_id
    responsible = org.acting_head(s, unit_id, on)
    if responsible is not None and _reachable(s, responsible.user_id):
        return NoticeRoute(unit_id, responsible, (responsible.user_id or 0,), headless=False)
    hidden = corruption.hidden_for_appeal(s, appeal_id)
    office = org.unit_by_code(s, org.PROJECT_OFFICE)
    climb: list[int] = []
    for above in org.chain(s, unit_id)[1:]:
        if above in hidden:  # every unit above it is in the concerned unit's chain too: stop here
            break
        climb.append(above)
    if office is not None and office.id is not None and office.id not in climb and office.id != unit_id:
        climb.append(office.id)
    for candidate in climb:
        head = org.acting_head(s, candidate, on)
        if head is not None and _reachable(s, head.user_id):
            return NoticeRoute(unit_id, responsible, (head.user_id or 0,), headless=True)
    return NoticeRoute(unit_id, responsible, _office_moderators(s, hidden), headless=True)


def _reachable(s: Session, user_id: int | None) -> bool:
    """An account that can read its notices: it exists and is not disabled."""
    user = s.get(StaffUser, user_id) if user_id is not None else None
    return user is not None and user.disabled_at is None


def _office_moderators(s: Session, hidden: frozenset[int]) -> tuple[int, ...]:
    """The project office's moderators: enabled moderators whose account names the office (or a unit
    under it) or no unit at all (corruption.py: the office's moderators usually have none)."""
    office = corruption.office_units(s)
    rows = s.exec(
        select(StaffUser.id, StaffUser.unit_id)
        .where(StaffUser.role == Role.MODERATOR.value, col(StaffUser.disabled_at).is_(None))
        .order_by(col(StaffUser.id))
    ).all()
    return tuple(
        uid
        for uid, unit in rows
        if uid is not None and (unit is None or unit in office) and unit not in hidden
    )


def notify_acting_head(
    s: Session,
    unit_id: int,
    *,
    key: str,
    kind: str,
    text: str | Callable[[str | None], str],
    on: date,
    now: datetime,
    appeal_id: int | None = None,
) -> NoticeRoute:
    """A notice to whoever answers for `unit_id` on `on` (the head, or the deputy acting for them); when
    that person has no workspace account, to the nearest one up the chain who has (route_to_unit), with
    a line saying why it came to them. `text`: the words, or a function of the reader's language.

    `key` names the event (e.g. remind:<appeal>:T-3); the unit is appended, so the same event may go to
    several units once each (and the user, when the office's moderators each get it). Nobody at all
    (no head, no moderator with an account): the notice is still written for the unit, so the gap is
    visible. For a corruption report whose concerned unit's chain `unit_id` is in, it goes to the
    project office instead (corruption.py)."""
    route = route_to_unit(s, unit_id, on=on, appeal_id=appeal_id)
    base = f"{key}:unit:{route.unit_id}"
    readers: list[StaffUser | None] = [s.get(StaffUser, uid) for uid in route.user_ids] or [None]
    told: list[Told] = []
    for reader in readers:
        language = reader.language if reader is not None else None
        words = text(language) if callable(text) else text
        if route.headless and reader is not None:
            words = f"{words}\n\n{_headless_note(s, route.unit_id, language)}"
        notice_key = base if len(readers) == 1 else f"{base}:user:{reader.id if reader else 0}"
        notify_staff(
            s,
            key=notice_key,
            kind=kind,
            text=words,
            now=now,
            user_id=reader.id if reader is not None else None,
            unit_id=route.unit_id,
            appeal_id=appeal_id,
        )
        told.append(Told(reader, notice_key, words))
    return replace(route, told=tuple(told))


# Added to a notice that came up the chain because its unit has no head with an account.
HEADLESS_NOTE = N_(
    "You receive this notice because %(unit)s has no head (or acting head) with a workspace account."
)


def _headless_note(s: Session, unit_id: int, language: str | None) -> str:
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return gettext(lang, HEADLESS_NOTE) % {"unit": org.unit_title(s, unit_id, lang)}
