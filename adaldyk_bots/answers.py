"""Four-eyes answers: the final answer to a formal appeal is a draft until the unit's head, or the deputy
acting for the head that day (org.acting_head), approves it; only then does it go out (the "answer" notice,
status answered, the "was it solved?" question). Returning it with a comment sends nothing.

Which appeals need it: config/approval.toml (approval_rules.py). Like the workflow, these functions work
inside the caller's transaction and never commit; each decision is an AppealEvent and an audit record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from adaldyk_bots import audit, org, staff_work
from adaldyk_bots.access import Viewer
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Conflict, EmptyReply, Forbidden, Invalid, NotFound
from adaldyk_bots.i18n import DEFAULT_LANGUAGE, LANGUAGES, N_, gettext, translations
from adaldyk_bots.storage.db import require_id, utcnow
from adaldyk_bots.storage.models import AnswerDraft, Appeal, AppealEvent
from adaldyk_bots.workflow import Workflow

__all__ = [
    "APPROVED",
    "RETURNED",
    "PendingApproval",
    "approve",
    "approver_of",
    "awaiting_approval",
    "drafts_of",
    "last_event",
    "needs_approval",
    "pending_approvals",
    "pending_draft",
    "pending_id",
    "return_draft",
    "save_draft",
]

APPROVED, RETURNED = "approved", "returned"
DRAFT_MAX_CHARS = 20_000
# The head is asked in their own language (staff_work renders it for whoever reads it).
APPROVAL_ASKED = N_("The answer to appeal %(number)s waits for your approval.")


def needs_approval(workflow: Workflow, appeal: Appeal) -> bool:
    return workflow.approval.needs_approval(formal=appeal.formal, category=appeal.category)


def approver_of(s: Session, appeal: Appeal, on: date) -> org.Responsible | None:
    """Who may approve the appeal's answer on `on`: the unit's head, or the deputy acting for them."""
    return org.acting_head(s, appeal.unit_id, on) if appeal.unit_id is not None else None


def pending_draft(s: Session, appeal: Appeal) -> AnswerDraft | None:
    return s.exec(
        select(AnswerDraft).where(AnswerDraft.appeal_id == appeal.id, col(AnswerDraft.decision).is_(None))
    ).first()


def drafts_of(s: Session, appeal: Appeal) -> list[AnswerDraft]:
    return list(
        s.exec(select(AnswerDraft).where(AnswerDraft.appeal_id == appeal.id).order_by(col(AnswerDraft.id)))
    )


def _today(workflow: Workflow, now: datetime) -> date:
    return now.astimezone(workflow.calendar.tz).date()


def _event(
    s: Session, appeal: Appeal, kind: str, actor: str, detail: dict[str, object], now: datetime
) -> AppealEvent:
    event = AppealEvent(appeal_id=require_id(appeal), kind=kind, actor=actor, detail=detail, created_at=now)
    s.add(event)
    s.flush()
    return event


def save_draft(s: Session, workflow: Workflow, appeal: Appeal, text: str, *, viewer: Viewer) -> AnswerDraft:
    """The answer, written and waiting for approval; the approver is told (a staff notice)."""
    text = text.strip()
    if not text:
        raise EmptyReply("the answer is empty")
    if len(text) > DRAFT_MAX_CHARS:
        raise Invalid(f"the answer is longer than {DRAFT_MAX_CHARS} characters")
    if not needs_approval(workflow, appeal):
        raise Conflict(f"appeal {appeal.number} needs no approval: answer it directly")
    if appeal.status in (AppealStatus.ANSWERED, AppealStatus.CLOSED):
        raise Conflict(f"appeal {appeal.number} is already {appeal.status}")
    if pending_draft(s, appeal) is not None:
        raise Conflict(f"appeal {appeal.number} already has an answer waiting for approval")
    if appeal.unit_id is None:
        raise Conflict(f"appeal {appeal.number} has no unit: its head approves the answer, assign one first")
    now = utcnow()
    draft = AnswerDraft(appeal_id=require_id(appeal), text=text, author_id=viewer.user_id, created_at=now)
    s.add(draft)
    s.flush()
    detail: dict[str, object] = {"draft": draft.id}
    _event(s, appeal, "answer_draft", viewer.actor, detail, now)
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    audit.record(s, actor=viewer.actor, action="answer.draft", subject=appeal.number, detail=detail)
    staff_work.notify_acting_head(
        s,
        appeal.unit_id,
        key=f"approval:{draft.id}",
        kind="approval",
        # In the reader's language (the head, or whoever it goes to when the head has no account).
        text=lambda lang: (
            gettext(lang if lang in LANGUAGES else DEFAULT_LANGUAGE, APPROVAL_ASKED)
            % {"number": appeal.number}
        ),
        on=_today(workflow, now),
        now=now,
        appeal_id=appeal.id,
    )
    return draft


def _decidable(
    s: Session, workflow: Workflow, draft_id: int, viewer: Viewer
) -> tuple[AnswerDraft, Appeal, datetime]:
    draft = s.exec(select(AnswerDraft).where(AnswerDraft.id == draft_id).with_for_update()).first()
    appeal = s.get(Appeal, draft.appeal_id) if draft is not None else None
    if draft is None or appeal is None:
        raise NotFound(f"no answer draft {draft_id}")
    if draft.decision is not None:
        raise Conflict(f"the answer draft {draft_id} is already {draft.decision}")
    now = utcnow()
    approver = approver_of(s, appeal, _today(workflow, now))
    if approver is None or approver.user_id is None or approver.user_id != viewer.user_id:
        raise Forbidden(
            f"only the head of the appeal's unit, or the deputy acting for the head today, decides on the "
            f"answer to {appeal.number}"
        )
    return draft, appeal, now


def last_event(s: Session, appeal: Appeal) -> AppealEvent:
    """The appeal's latest history entry (what an API answer shows after a draft decision)."""
    return s.exec(
        select(AppealEvent).where(AppealEvent.appeal_id == appeal.id).order_by(col(AppealEvent.id).desc())
    ).first() or AppealEvent(
        appeal_id=require_id(appeal), kind="none", actor="", detail={}, created_at=utcnow()
    )


def pending_id(s: Session, appeal: Appeal) -> int:
    """The id of the appeal's draft waiting for approval, or NotFound."""
    draft = pending_draft(s, appeal)
    if draft is None:
        raise NotFound(f"appeal {appeal.number} has no answer waiting for approval")
    return require_id(draft)


def approve(s: Session, workflow: Workflow, draft_id: int, *, viewer: Viewer) -> AnswerDraft:
    """The four eyes: the answer goes out now (notice "answer", status answered), the approver recorded."""
    draft, appeal, now = _decidable(s, workflow, draft_id, viewer)
    draft.decision, draft.decided_by_id, draft.decided_at = APPROVED, viewer.user_id, now
    s.add(draft)
    detail: dict[str, object] = {"draft": draft.id, "approver": viewer.username, "author_id": draft.author_id}
    _event(s, appeal, "answer_approved", viewer.actor, detail, now)
    audit.record(s, actor=viewer.actor, action="answer.approve", subject=appeal.number, detail=detail)
    workflow.change_status(
        s, appeal, AppealStatus.ANSWERED.value, actor=viewer.actor, note=draft.text, approved=True
    )
    return draft


def return_draft(
    s: Session, workflow: Workflow, draft_id: int, *, viewer: Viewer, comment: str
) -> AnswerDraft:
    """Back to its author with the approver's comment; the citizen is sent nothing."""
    comment = comment.strip()
    if not comment:
        raise Invalid("say why the answer is returned: the comment is empty")
    draft, appeal, now = _decidable(s, workflow, draft_id, viewer)
    draft.decision, draft.decided_by_id, draft.decided_at, draft.comment = (
        RETURNED,
        viewer.user_id,
        now,
        comment,
    )
    s.add(draft)
    detail: dict[str, object] = {"draft": draft.id, "approver": viewer.username, "comment": comment}
    _event(s, appeal, "answer_returned", viewer.actor, detail, now)
    audit.record(s, actor=viewer.actor, action="answer.return", subject=appeal.number, detail=detail)
    gettext = translations(DEFAULT_LANGUAGE).gettext
    staff_work.notify_staff(
        s,
        key=f"returned:{draft.id}",
        kind="returned",
        text=gettext("Your answer to appeal %(number)s was returned: %(comment)s")
        % {"number": appeal.number, "comment": comment},
        now=now,
        user_id=draft.author_id,
        unit_id=appeal.unit_id,
        appeal_id=appeal.id,
    )
    return draft


def awaiting_approval(s: Session, unit_ids: Sequence[int]) -> Sequence[Appeal]:
    """The appeals of these units whose answer waits for approval (deadlines.Approvals: the digest)."""
    if not unit_ids:
        return ()
    return list(
        s.exec(
            select(Appeal)
            .join(AnswerDraft, col(AnswerDraft.appeal_id) == col(Appeal.id))
            .where(col(AnswerDraft.decision).is_(None), col(Appeal.unit_id).in_(list(unit_ids)))
            .order_by(col(Appeal.id))
        )
    )


@dataclass(frozen=True)
class PendingApproval:
    draft_id: int
    appeal_id: int
    number: str
    unit_id: int
    author_id: int | None
    created_at: datetime
    deputy: bool  # the viewer approves as the deputy acting for the head


def pending_approvals(s: Session, user_id: int, on: date) -> list[PendingApproval]:
    """The answers waiting for `user_id`'s approval on `on` (the approvals list; the deadlines digest)."""
    rows = s.exec(
        select(AnswerDraft, Appeal)
        .join(Appeal, col(Appeal.id) == col(AnswerDraft.appeal_id))
        .where(col(AnswerDraft.decision).is_(None), col(Appeal.unit_id).is_not(None))
        .order_by(col(AnswerDraft.created_at), col(AnswerDraft.id))
    ).all()
    responsible: dict[int, org.Responsible | None] = {}
    out: list[PendingApproval] = []
    for draft, appeal in rows:
        unit_id = appeal.unit_id
        assert unit_id is not None
        if unit_id not in responsible:
            responsible[unit_id] = org.acting_head(s, unit_id, on)
        who = responsible[unit_id]
        if who is not None and who.user_id == user_id:
            out.append(
                PendingApproval(
                    require_id(draft),
                    require_id(appeal),
                    appeal.number,
                    unit_id,
                    draft.author_id,
                    draft.created_at,
                    who.deputy,
                )  # fmt: skip
            )
    return out
