"""What a moderator does to one appeal beyond the workflow's own steps: a status change with the reason
the law asks for, internal notes, assigning a person, marking spam, sending a failed delivery again.

Like workflow.py, every function works inside the caller's transaction and never commits; each one
writes the appeal's history (AppealEvent) and the audit log. The caller has already opened the appeal
with `access.visible_appeal` and checked that the viewer may write.
"""

from __future__ import annotations

from sqlmodel import Session

from adaldyk_bots import audit, data_collection, lifecycle
from adaldyk_bots.access import Viewer, assignable_staff
from adaldyk_bots.dispatcher import requeue
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Conflict, Invalid, NotFound, StatusUnchanged
from adaldyk_bots.storage.db import require_id, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, AppealNote, OutboxItem, StaffUser
from adaldyk_bots.workflow import Workflow

__all__ = [
    "NOTE_MAX_CHARS",
    "OWN_ACTION",
    "OWN_FORM",
    "REASON_REQUIRED",
    "RETRYABLE",
    "OwnAction",
    "ReasonRequired",
    "add_note",
    "clean",
    "assign_person",
    "change_status",
    "mark_spam",
    "plain_statuses",
    "record_view",
    "retry_delivery",
]

# APPC (kz-appeals-law.md): a refusal, an extension of the term and a forwarding to the competent body
# are each a reasoned decision the citizen is told about; the reason goes into the notice (lifecycle.py).
REASON_REQUIRED = lifecycle.REASON_REQUIRED
RETRYABLE = frozenset({"failed", "held"})
NOTE_MAX_CHARS = 20_000


# What the API schema's `\S` (JSON Schema regex, Unicode White_Space) calls a space. Python's str.strip()
# also cuts U+001C–U+001F, so a reason of those alone would pass the schema and then count as empty.
SPACES = (
    " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def clean(text: str) -> str:
    """`text` without the spaces around it (SPACES)."""
    return text.strip(SPACES)


class ReasonRequired(Invalid):
    """A status the law allows only with a stated reason, asked for without one."""


# Steps that need more than a status and a reason, each taken by its own action: a signal becomes a
# formal appeal through triage (triage.py: the R12 data first), a duplicate is merged into another appeal
# (merging.py: which one).
OWN_ACTION = {AppealStatus.MERGED: "merge", AppealStatus.REGISTERED: "triage"}


class OwnAction(Conflict):
    """A status that only its own action sets (OWN_ACTION), asked for as a plain status change."""


# Steps with a form of their own on the appeal page, which a bare status change refuses in the workflow
# (errors.UseForwarding): a forwarding names the outside body (forwarding.py).
OWN_FORM = frozenset({AppealStatus.FORWARDED})


def plain_statuses(appeal: Appeal) -> tuple[AppealStatus, ...]:
    """What the status form offers: the legal next steps (lifecycle.next_statuses) that need nothing but
    a reason."""
    return tuple(
        st
        for st in lifecycle.next_statuses(appeal.status)
        if not _own_action(appeal, st) and st not in OWN_FORM
    )


def _own_action(appeal: Appeal, status: str) -> bool:
    if status == AppealStatus.REGISTERED:
        return not appeal.formal  # a formal appeal taken back into work is registered again; a signal is not
    return status in OWN_ACTION


def change_status(
    workflow: Workflow, s: Session, appeal: Appeal, status: str, *, reason: str, actor: str
) -> AppealEvent:
    reason = clean(reason)
    if _own_action(appeal, status):
        action = OWN_ACTION[AppealStatus(status)]
        raise OwnAction(f"the status {status} is set by its own action ({action}), not a status change")
    if status in REASON_REQUIRED and not reason:
        raise ReasonRequired(f"the status {status} needs a reason: the citizen is told why")
    merged_into = appeal.merged_into_id
    _end_dialogue(s, appeal)
    event = workflow.change_status(s, appeal, status, actor=actor, note=reason or None)
    if status == AppealStatus.REOPENED and merged_into is not None:
        # No longer a duplicate: the appeal it was merged into stops listing it.
        appeal.merged_into_id = None
        s.add(appeal)
    return event


def _end_dialogue(s: Session, appeal: Appeal) -> None:
    """A signal moved on by staff: the bot stops asking its citizen for a formal appeal's data."""
    if appeal.status != AppealStatus.RECEIVED:
        return
    request = data_collection.open_request_of(s, appeal)
    if request is not None:
        data_collection.cancel(s, request, reason="staff", now=utcnow())


def add_note(s: Session, appeal: Appeal, text: str, *, viewer: Viewer) -> AppealNote:
    """An internal note: stored beside the appeal, never in the outbox."""
    text = text.strip()
    if not text:
        raise Invalid("the note is empty")
    if len(text) > NOTE_MAX_CHARS:
        raise Invalid(f"the note is longer than {NOTE_MAX_CHARS} characters")
    now = utcnow()
    note = AppealNote(
        appeal_id=require_id(appeal), author_id=viewer.user_id, author=viewer.actor, text=text, created_at=now
    )
    s.add(note)
    s.flush()
    s.add(
        AppealEvent(
            appeal_id=require_id(appeal),
            kind="note",
            actor=viewer.actor,
            detail={"note": note.id},
            created_at=now,
        )
    )
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    audit.record(s, actor=viewer.actor, action="appeal.note", subject=appeal.number, detail={"note": note.id})
    return note


def assign_person(s: Session, appeal: Appeal, user_id: int | None, *, actor: str) -> AppealEvent:
    """Give the appeal to one person who may be in charge of it (access.assignable_staff; None: nobody)."""
    person: StaffUser | None = None
    if user_id is not None:
        person = next((u for u in assignable_staff(s, appeal) if u.id == user_id), None)
        if person is None:
            raise Invalid("that person may not be put in charge of this appeal")
    if appeal.assignee_id == user_id:
        raise StatusUnchanged(f"appeal {appeal.number} is already assigned so")
    now = utcnow()
    detail: dict[str, object] = {
        "from": appeal.assignee_id,
        "to": user_id,
        "username": person.username if person else None,
    }
    event = AppealEvent(
        appeal_id=require_id(appeal), kind="assignee", actor=actor, detail=detail, created_at=now
    )
    s.add(event)
    appeal.assignee_id = user_id
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    s.flush()
    audit.record(s, actor=actor, action="appeal.assignee", subject=appeal.number, detail=detail)
    return event


def mark_spam(s: Session, appeal: Appeal, *, actor: str) -> AppealEvent:
    """Spam is not an appeal (AppealStatus.REJECTED), closed without a notice: a spammer is not
    answered, and a real citizen's appeal marked by mistake is reopened with a status change."""
    if appeal.status == AppealStatus.REJECTED:
        raise StatusUnchanged(f"appeal {appeal.number} is already rejected")
    lifecycle.check(appeal.status, AppealStatus.REJECTED)
    _end_dialogue(s, appeal)
    now = utcnow()
    detail: dict[str, object] = {"from": appeal.status, "to": AppealStatus.REJECTED.value, "spam": True}
    event = AppealEvent(appeal_id=require_id(appeal), kind="spam", actor=actor, detail=detail, created_at=now)
    s.add(event)
    appeal.status = AppealStatus.REJECTED.value
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    s.flush()
    audit.record(s, actor=actor, action="appeal.spam", subject=appeal.number, detail=detail)
    return event


def retry_delivery(s: Session, appeal: Appeal, outbox_id: int, *, actor: str) -> OutboxItem:
    """Send one failed or held message of this appeal again: the dispatcher's next round makes a new
    attempt (the same path as `adaldyk outbox requeue`). A row of another appeal is not found."""
    row = s.get(OutboxItem, outbox_id)
    if row is None or row.appeal_id != appeal.id:
        raise NotFound(f"appeal {appeal.number} has no delivery {outbox_id}")
    if row.state not in RETRYABLE:
        raise Conflict(f"delivery {outbox_id} is {row.state}: only failed or held messages are sent again")
    done = requeue(s, now=utcnow(), outbox_id=outbox_id, actor=actor)
    if not done:  # another moderator's retry (or the dispatcher) got there first
        raise Conflict(f"delivery {outbox_id} is no longer failed or held")
    appeal.updated_at = appeal.last_activity_at = utcnow()
    s.add(appeal)  # requeue wrote the appeal event ("requeued") and the audit event (delivery.retry)
    return done[0]


def record_view(s: Session, appeal: Appeal, *, viewer: Viewer, address: str | None) -> None:
    """Every view of an appeal, by whom (issue 7: the audit log); a confidential one says so."""
    detail: dict[str, object] | None = {"confidential": True} if appeal.confidential else None
    audit.record(
        s, actor=viewer.actor, action="appeal.view", subject=appeal.number, detail=detail, address=address
    )
