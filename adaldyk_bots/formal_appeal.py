"""A signal becomes a formal appeal: a new appeal with its own number and statutory term, linked both ways.

R12 (APPC Art. 63) asks a written appeal for its author's surname, name and patronymic, IIN and postal
address; a social message rarely carries them (R13 and the note on social networks), so a moderator's
"formal" triage gathers them first (data_collection.py in a dialogue, or the moderator on the page) and
then `register_formal` makes the appeal: registered on the day (R1), due in the configured working days
(R3), the citizen told its number (R2: the registration notice), and the signal closed with a link to it.
Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from adaldyk_bots import audit, lifecycle, notice_texts, notices
from adaldyk_bots.applicant import Applicant
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Conflict
from adaldyk_bots.storage import search_index
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, AppealEvent
from adaldyk_bots.workflow import Workflow

__all__ = ["formal_appeal_of", "register_formal"]


def formal_appeal_of(s: Session, signal: Appeal) -> Appeal | None:
    """The formal appeal registered from `signal`, if there is one."""
    return s.exec(select(Appeal).where(Appeal.signal_id == require_id(signal))).first()


def register_formal(
    s: Session,
    workflow: Workflow,
    signal: Appeal,
    applicant: Applicant,
    *,
    consent_at: datetime,
    actor: str,
    now: datetime,
    detail: dict[str, object] | None = None,
) -> Appeal:
    """Register the formal appeal of `signal` with the applicant's R12 data; close the signal.

    The signal is closed when the table allows it (a signal is `received`); one a moderator has moved on
    meanwhile (say, into work) while the citizen was answering keeps its status and gets the link."""
    if formal_appeal_of(s, signal) is not None:  # the UNIQUE index on signal_id would refuse it too
        raise Conflict(f"signal {signal.number} already has a formal appeal")
    registered_at = workflow.calendar.registration_time(now)
    due_at = workflow.due_for(registered_at, signal.category)
    appeal = Appeal(
        number=workflow.next_number(s.connection(), registered_at),
        contact_id=signal.contact_id,
        conversation_id=signal.conversation_id,
        channel=signal.channel,
        language=signal.language,
        category=signal.category,
        status=AppealStatus.REGISTERED.value,
        unit_id=signal.unit_id,
        summary=signal.summary,
        received_at=now,  # the day the written appeal is complete: the law's clock starts here
        registered_at=registered_at,
        due_at=due_at,
        original_due_at=due_at,
        forward_due_at=workflow.forward_due_for(registered_at),
        created_at=now,
        updated_at=now,
        last_activity_at=now,
        formal=True,
        signal_id=require_id(signal),
        # A corruption report stays isolated from the unit it is about, whatever it becomes.
        concerned_unit_id=signal.concerned_unit_id,
        confidential=signal.confidential,
        applicant_name=applicant.name,
        applicant_iin=applicant.iin,
        applicant_address=applicant.address,
        consent_at=consent_at,
    )
    s.add(appeal)
    s.flush()
    appeal_id = require_id(appeal)
    facts: dict[str, object] = {"signal": signal.number, **(detail or {})}
    s.add(AppealEvent(appeal_id=appeal_id, kind="created", actor=actor, detail=facts, created_at=now))
    link: dict[str, object] = {"formal_appeal": appeal.number}
    if lifecycle.allowed(signal.status, AppealStatus.CLOSED):
        workflow.change_status(s, signal, AppealStatus.CLOSED, actor=actor, notify=False, detail=link)
    else:
        event = AppealEvent(
            appeal_id=require_id(signal), kind="formal", actor=actor, detail=link, created_at=now
        )
        s.add(event)
    signal.triage = "formal"  # after change_status: its row lock reads the signal again
    signal.updated_at = signal.last_activity_at = now
    s.add(signal)
    audit.record(s, actor=actor, action="appeal.register", subject=appeal.number, detail=facts)
    search_index.refresh(s.connection(), [appeal_id])
    text = notice_texts.registration(
        s, workflow.texts, appeal, accepted_by_id=None, status_url=workflow.status_url
    )
    notices.notify_citizen(s, workflow, appeal, "registration", text=text, now=now)
    return appeal
