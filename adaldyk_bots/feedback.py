""" "Was your problem solved?": asked after every answer, read from a button press or from words, and a
"no" reopens the appeal, returns it to its unit and raises it to the head's superior (issue 10).

When: the question is written to the outbox in the same transaction as the answer notice, right after
it (key feedback:<appeal>[:n]). The dispatcher keeps one chat's messages in order, so the citizen reads
it under the answer; an answer that cannot be delivered becomes a staff task (notices.py), and the
question to such a citizen is not sent at all (nobody can press a button on a phone call).

How: the question carries choices (domain.Choice, id `feedback:<appeal>:yes|no`). Telegram, VK, Messenger,
Instagram and WhatsApp show them as buttons and give the id back (InboundMessage.choice); every other
channel shows them as numbered lines, and the citizen's words ("иә/жоқ", "да/нет", "решено/не решено",
"1"/"2") are read here (`recognise`), but only while an answered appeal of that conversation waits for
the answer, so an ordinary "нет" in a conversation is never taken for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from adaldyk_bots import audit, deadlines, feedback_reading, i18n, staff_work
from adaldyk_bots.domain import AppealStatus, Choice
from adaldyk_bots.i18n import DEFAULT_LANGUAGE, N_
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, Conversation, OutboxItem, Unit
from adaldyk_bots.workflow import Target, Workflow

__all__ = [
    "FeedbackAnswer",
    "UnitStats",
    "ask",
    "awaiting",
    "recognise",
    "record",
    "solved_by_unit",
]

YES, NO, PURPOSE = feedback_reading.YES, feedback_reading.NO, feedback_reading.PURPOSE
FeedbackAnswer = feedback_reading.FeedbackAnswer
recognise = feedback_reading.recognise
awaiting = feedback_reading.awaiting
UNREACHABLE_CHANNELS = staff_work.UNREACHABLE_CHANNELS
# The unit is told in the reader's language (staff_work renders it for whoever reads it).
REOPENED = N_("The citizen says appeal %(number)s is not solved: it is reopened and back with your unit.")


def choices(workflow: Workflow, appeal: Appeal) -> tuple[Choice, ...]:
    appeal_id = require_id(appeal)
    render = workflow.texts.render
    return (
        Choice(f"feedback:{appeal_id}:{YES}", render(appeal.language, "feedback_yes")),
        Choice(f"feedback:{appeal_id}:{NO}", render(appeal.language, "feedback_no")),
    )


def ask(s: Session, workflow: Workflow, appeal: Appeal, *, now: datetime) -> bool:
    """Owe the citizen the question after an answer (once per answer: feedback:<appeal>[:n])."""
    appeal_id = require_id(appeal)
    conversation = s.get(Conversation, appeal.conversation_id)
    if conversation is None or conversation.channel in UNREACHABLE_CHANNELS:
        return False
    appeal.resolved = None  # a new answer asks again (after a reopening)
    s.add(appeal)
    asked = s.exec(
        select(func.count()).where(OutboxItem.appeal_id == appeal_id, OutboxItem.purpose == PURPOSE)
    ).one()
    key = f"feedback:{appeal_id}" + (f":{asked + 1}" if asked else "")
    return workflow.enqueue(
        s,
        key=key,
        target=Target.of(conversation),
        purpose=PURPOSE,
        appeal_id=appeal_id,
        text=workflow.texts.render(appeal.language, "feedback_question", number=appeal.number),
        now=now,
        choices=choices(workflow, appeal),
    )


def record(
    s: Session, workflow: Workflow, appeal_id: int, answer: str, *, message_id: int, now: datetime
) -> None:
    """The citizen's word: "yes" closes the appeal as solved; "no" reopens it (lifecycle), returns it to
    its unit (a notice to whoever answers for the unit today) and escalates to the superior head."""
    appeal = s.get(Appeal, appeal_id)
    if appeal is None:
        return
    solved = answer == YES
    appeal.resolved = solved
    s.add(appeal)
    detail: dict[str, object] = {"answer": answer, "message_id": message_id}
    audit.record(s, actor="citizen", action="appeal.feedback", subject=appeal.number, detail=detail)
    language = appeal.language
    if solved:
        note = workflow.texts.render(language, "feedback_closed_note")
        workflow.change_status(s, appeal, AppealStatus.CLOSED.value, actor="citizen", note=note)
        return
    note = workflow.texts.render(language, "feedback_reopen_note")
    workflow.change_status(s, appeal, AppealStatus.REOPENED.value, actor="citizen", note=note)
    today = now.astimezone(workflow.calendar.tz).date()
    if appeal.unit_id is not None:
        staff_work.notify_acting_head(
            s,
            appeal.unit_id,
            key=f"reopened:{appeal_id}:{message_id}",
            kind="reopened",
            # In the reader's language (the head, or whoever it goes to when the head has no account).
            text=lambda lang: (
                i18n.gettext(lang if lang in i18n.LANGUAGES else DEFAULT_LANGUAGE, REOPENED)
                % {"number": appeal.number}
            ),
            on=today,
            now=now,
            appeal_id=appeal_id,
        )
    deadlines.escalate(
        s,
        appeal,
        reason="not_resolved",
        key=f"not_resolved:{appeal_id}:{message_id}",
        now=now,
        workflow=workflow,
    )


@dataclass(frozen=True)
class UnitStats:
    unit_id: int | None
    code: str | None
    name: str
    asked: int  # answers whose citizen has said yes or no
    solved: int

    @property
    def share(self) -> float | None:
        return self.solved / self.asked if self.asked else None


def solved_by_unit(s: Session) -> list[UnitStats]:
    """Per unit: how many citizens said whether the answer solved their problem, and how many said yes.
    Corruption reports are counted under their own unit (the project office), like every other list."""
    solved = func.sum(case((col(Appeal.resolved).is_(True), 1), else_=0))
    rows = s.execute(  # five columns: more than SQLModel's typed select takes
        core_select(col(Appeal.unit_id), col(Unit.code), col(Unit.name_ru), func.count(), solved)
        .join(Unit, col(Unit.id) == col(Appeal.unit_id), isouter=True)
        .where(col(Appeal.resolved).is_not(None))
        .group_by(col(Appeal.unit_id), col(Unit.code), col(Unit.name_ru))
        .order_by(col(Unit.code))
    ).all()
    return [
        UnitStats(unit_id, code, name or "", int(asked), int(yes or 0))
        for unit_id, code, name, asked, yes in rows
    ]
