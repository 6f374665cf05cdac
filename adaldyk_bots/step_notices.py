"""The notice each legal step owes the citizen (lifecycle.Step.notice), rendered with what the law asks
(notice_texts.py) and owed exactly once (notices.notify_citizen); after the answer, the "was it solved?"
question (feedback.py). The runtime hands `StepNotices()` to the Workflow as its CitizenHooks.

Which steps tell the citizen what:
- registration, forwarding, extension, hearing, answer: their own notice, once (`notice:<kind>:<appeal>`;
  a notice the law may owe again is numbered, `:2`, `:3`: a second extension, the answer after a
  reopening). The registration is owed once for ever.
- every other step (assigned, in progress, rejected, merged, reopened, closed): the generic status
  message, `status:<event>`, as before (workflow.change_status).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from adaldyk_bots import feedback, lifecycle, notice_texts, notices
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, AppealEvent, Message
from adaldyk_bots.workflow import Workflow

__all__ = ["REPEATABLE_NOTICES", "StepNotices", "notice_seq", "notice_text"]

# Notices the law may owe more than once per appeal (a second extension; the answer after a reopening).
REPEATABLE_NOTICES = frozenset({"forwarding", "extension", "hearing", "answer"})
HEARING_OBJECTION_DAYS = 2  # R6 (APPC Art. 73(3)): working days to object to the preliminary decision


class StepNotices:
    """Workflow.CitizenHooks: notices for the legal steps, and the citizen's word after an answer."""

    def owe_notice(
        self,
        s: Session,
        workflow: Workflow,
        appeal: Appeal,
        kind: str,
        *,
        note: str | None,
        actor_id: int | None,
        now: datetime,
    ) -> None:
        text = notice_text(s, workflow, appeal, kind, note=note, actor_id=actor_id, now=now)
        seq = notice_seq(s, appeal, kind)
        owed = notices.notify_citizen(s, workflow, appeal, kind, text=text, now=now, seq=seq)
        if kind == "answer":
            if owed and note:
                # The answer is part of the conversation's record, like a moderator's reply.
                s.add(
                    Message(
                        conversation_id=appeal.conversation_id,
                        appeal_id=appeal.id,
                        direction="out",
                        external_key=notices.notice_key(kind, require_id(appeal), seq),
                        text=text,
                        sent_at=now,
                        created_at=now,
                    )
                )
            feedback.ask(s, workflow, appeal, now=now)

    def feedback_said(
        self, s: Session, workflow: Workflow, appeal_id: int, answer: str, *, message_id: int, now: datetime
    ) -> None:
        feedback.record(s, workflow, appeal_id, answer, message_id=message_id, now=now)


def notice_text(
    s: Session,
    workflow: Workflow,
    appeal: Appeal,
    kind: str,
    *,
    note: str | None,
    actor_id: int | None,
    now: datetime,
) -> str:
    """The words of the `kind` notice from what the step carries: `note` is the reason of a reasoned step,
    the preliminary decision of a hearing, the text of an answer."""
    texts = workflow.texts
    if kind == "registration":
        return notice_texts.registration(
            s, texts, appeal, accepted_by_id=actor_id or appeal.taken_by_id, status_url=workflow.status_url
        )
    if kind == "forwarding":
        # Never a bare status change (Workflow.change_status refuses one without its body): forwarding.py
        # owes this notice, naming the body in the citizen's language.
        raise ValueError("the forwarding notice is written by forwarding.forward")
    if kind == "extension":
        # Never a bare status change (Workflow.change_status refuses it): extension.py owes this notice,
        # with the new due date and the head's reason.
        raise ValueError("the extension notice is written by extension.extend")
    if kind == "hearing":
        # Counted from now, when the notice is sent (the citizen's receipt of it, as near as we know).
        object_by = workflow.calendar.due_at(now, HEARING_OBJECTION_DAYS)
        return notice_texts.hearing(texts, appeal, decision=note or "", object_by=object_by)
    if note:
        return notice_texts.answer(texts, appeal, text=note)
    # The answer itself went as a moderator's reply (workflow.reply); the notice says it is answered.
    status = texts.status_name(appeal.language, AppealStatus.ANSWERED)
    return texts.render(appeal.language, "status_changed", number=appeal.number, status=status)


def notice_seq(s: Session, appeal: Appeal, kind: str) -> int | None:
    """None the first time; n = 2, 3 ... for the n-th time the step of a repeatable notice is taken."""
    if kind not in REPEATABLE_NOTICES:
        return None
    status = next(to for to, notice in lifecycle.NOTICE_OF.items() if notice == kind)
    taken = sum(
        1
        for detail in s.exec(
            select(AppealEvent.detail).where(AppealEvent.appeal_id == appeal.id, AppealEvent.kind == "status")
        )
        if detail.get("to") == status.value
    )
    return taken if taken > 1 else None
