"""The bot asks a citizen for what a formal appeal needs (R12), one question at a time, in their language.

A moderator triages a signal as formal (triage.py); where the channel can hold a dialogue (a private chat
on Telegram, VK, Messenger, Instagram Direct, WhatsApp, an e-mail thread) the bot then asks, in order:

    consent   a short notice on the processing of personal data (Law 94-V) and "do you agree?" — asked
              before any personal data; "no" ends it and the message stays a signal
    name      surname, name and patronymic
    iin       the IIN, its check digit verified (iin.check_iin; each refusal has its own words)
    address   the postal address
    → the formal appeal is registered (formal_appeal.register_formal) and the citizen told its number

An invalid answer is refused with the reason and the question stays; "cancel" (отмена, бас тарту …) at any
step ends it. The citizen's answers are inbound messages like any other (invariant 5), attached to the
signal. State is a `data_request` row; `conversation.collecting` tells the inbound path (workflow.py) to
come here, so a conversation that is not collecting costs nothing more than before.
Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from adaldyk_bots import audit, notices
from adaldyk_bots.applicant import (
    Applicant,
    Checked,
    check_address,
    check_iin_text,
    check_name,
    consent_answer,
    is_cancel,
)
from adaldyk_bots.domain import AppealStatus, InboundMessage
from adaldyk_bots.errors import Conflict
from adaldyk_bots.formal_appeal import formal_appeal_of, register_formal
from adaldyk_bots.iin import normalize_iin
from adaldyk_bots.storage.db import require_id, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, Conversation, DataRequest, Message
from adaldyk_bots.workflow import Target, Workflow

__all__ = [
    "STEPS",
    "NoDialogue",
    "answer",
    "can_hold_dialogue",
    "cancel",
    "open_request",
    "open_request_of",
    "start",
]

STEPS = ("consent", "name", "iin", "address")
_NEXT = {"consent": "name", "name": "iin", "iin": "address", "address": "done"}
# Channel kinds where a question and its answer follow each other: not a public comment, and not the
# phone line, the reception room or the web form, where nobody is on the other end of a chat.
DIALOGUE_KINDS = frozenset({"message"})


class NoDialogue(Conflict):
    """The signal came where the bot cannot ask questions: the moderator enters the data instead."""


def can_hold_dialogue(conversation: Conversation | None) -> bool:
    return (
        conversation is not None
        and conversation.kind in DIALOGUE_KINDS
        and conversation.channel not in notices.UNREACHABLE_CHANNELS
    )


def open_request(s: Session, conversation_id: int) -> DataRequest | None:
    return s.exec(
        select(DataRequest)
        .where(
            DataRequest.conversation_id == conversation_id,
            col(DataRequest.finished_at).is_(None),
            col(DataRequest.cancelled_at).is_(None),
        )
        .with_for_update()
        .execution_options(populate_existing=True)  # a batch's session may hold an older copy
    ).first()


def open_request_of(s: Session, signal: Appeal) -> DataRequest | None:
    """The request now asking the citizen of `signal` for data, if any."""
    request = open_request(s, signal.conversation_id)
    return request if request is not None and request.appeal_id == signal.id else None


def start(s: Session, workflow: Workflow, signal: Appeal, *, actor: str, now: datetime) -> DataRequest:
    """Begin the dialogue for `signal`: the first message tells the citizen why and asks for consent."""
    conversation = s.get(Conversation, signal.conversation_id)
    if conversation is None or not can_hold_dialogue(conversation):
        raise NoDialogue("this channel cannot hold a dialogue: enter the applicant's data on the page")
    if formal_appeal_of(s, signal) is not None:
        raise Conflict(f"signal {signal.number} already has a formal appeal")
    if open_request(s, require_id(conversation)) is not None:
        raise Conflict("the bot is already asking this citizen for their data")
    request = DataRequest(
        appeal_id=require_id(signal),
        conversation_id=require_id(conversation),
        step="consent",
        answers={},
        started_at=now,
        started_by=actor,
        updated_at=now,
    )
    s.add(request)
    conversation.collecting = True
    s.add(conversation)
    s.flush()
    texts = workflow.texts
    intro = texts.render(signal.language, "triage_formal", number=signal.number)
    workflow.enqueue(
        s,
        key=f"collect:{request.id}:start",
        target=Target.of(conversation),
        purpose="collect",
        appeal_id=signal.id,
        text=f"{intro}\n\n{texts.render(signal.language, 'collect_consent')}",
        now=now,
    )
    return request


def cancel(s: Session, request: DataRequest, *, reason: str, now: datetime) -> None:
    """Stop asking. The answers given so far are dropped from the request (they stay, as the citizen's
    messages, in the signal's thread); the signal stays a signal."""
    request.cancelled_at = request.updated_at = now
    request.cancel_reason = reason
    request.answers = {}
    s.add(request)
    _stop_collecting(s, request.conversation_id)


def answer(
    s: Session,
    workflow: Workflow,
    *,
    conversation_id: int,
    message_id: int,
    msg: InboundMessage,
    target: Target,
) -> bool:
    """The citizen's message while the bot is asking: True when it was taken as an answer (and stored on
    the signal), False for what the usual path handles (commands such as /lang or /status)."""
    text = msg.text.strip()
    if text.startswith("/") and not is_cancel(text):
        return False
    request = open_request(s, conversation_id)
    if request is None:  # the flag outlived its request: clear it, the message goes the usual way
        _stop_collecting(s, conversation_id)
        return False
    # The signal's row lock, read afresh: a moderator's triage of it waits, or is seen here once done.
    signal = s.exec(
        select(Appeal)
        .where(col(Appeal.id) == request.appeal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    now = utcnow()
    if signal.status != AppealStatus.RECEIVED:
        # Staff moved the signal on by a plain status change (spam, in progress …) while the bot was asking:
        # the question is moot. The message goes the usual way.
        cancel(s, request, reason="staff", now=now)
        return False
    step = request.step
    _attach(s, signal, message_id, step, now)
    reply = _Reply(s, workflow, signal, target, key=f"collect:{message_id}", now=now)
    if is_cancel(text):
        cancel(s, request, reason="citizen", now=now)
        signal.triage = None  # a signal again, to be triaged anew
        _event(s, signal, "collect_cancelled", {"step": step}, now)
        reply.say("collect_cancelled")
        return True
    if step == "consent":
        _consent(s, request, signal, text, reply, now)
    elif step == "name":
        _take(request, reply, "name", check_name(text), now)
    elif step == "iin":
        checked = check_iin_text(text)
        _take(request, reply, "iin", checked, now, count=len(normalize_iin(text)))
    elif step == "address":
        checked = check_address(text)
        if checked.ok:
            _register(s, workflow, request, signal, checked.value, now)
        else:
            reply.say(f"collect_address_{checked.reason}")
    s.add(request)
    return True


class _Reply:
    """The bot's one answer to one message of the citizen (key collect:<message id>: once per message)."""

    def __init__(
        self, s: Session, workflow: Workflow, signal: Appeal, target: Target, *, key: str, now: datetime
    ) -> None:
        self.s, self.workflow, self.signal, self.target = s, workflow, signal, target
        self.key, self.now = key, now

    def say(self, template: str, **fields: object) -> None:
        text = self.workflow.texts.render(self.signal.language, template, number=self.signal.number, **fields)
        self.workflow.enqueue(
            self.s,
            key=self.key,
            target=self.target,
            purpose="collect",
            appeal_id=self.signal.id,
            text=text,
            now=self.now,
        )


def _consent(
    s: Session, request: DataRequest, signal: Appeal, text: str, reply: _Reply, now: datetime
) -> None:
    given = consent_answer(text)
    if given is None:
        request.attempts += 1
        reply.say("collect_consent_unclear")
        return
    # Law 94-V: whether and when the citizen consented is a fact the office must be able to show.
    audit.record(s, actor="citizen", action="appeal.consent", subject=signal.number, detail={"given": given})
    _event(s, signal, "consent", {"given": given}, now)
    if not given:
        cancel(s, request, reason="declined", now=now)
        signal.triage = None
        reply.say("collect_declined")
        return
    request.answers = {**request.answers, "consent_at": now.isoformat()}
    _advance(request, "name", now)
    reply.say("collect_name")


def _take(
    request: DataRequest, reply: _Reply, field: str, checked: Checked, now: datetime, **fields: object
) -> None:
    if not checked.ok:
        request.attempts += 1
        request.updated_at = now
        reply.say(f"collect_{field}_{checked.reason}", **fields)
        return
    request.answers = {**request.answers, field: checked.value}
    following = _NEXT[field]
    _advance(request, following, now)
    reply.say(f"collect_{following}")


def _advance(request: DataRequest, step: str, now: datetime) -> None:
    request.step = step
    request.attempts = 0
    request.updated_at = now


def _register(
    s: Session, workflow: Workflow, request: DataRequest, signal: Appeal, address: str, now: datetime
) -> None:
    answers = request.answers
    consent_at = datetime.fromisoformat(str(answers["consent_at"]))
    applicant = Applicant(name=str(answers["name"]), iin=str(answers["iin"]), address=address)
    appeal = register_formal(
        s,
        workflow,
        signal,
        applicant,
        consent_at=consent_at,
        actor="citizen",
        now=now,
        detail={"triaged_by": request.started_by, "data_request": request.id},
    )
    request.step = "done"
    request.finished_at = request.updated_at = now
    request.formal_appeal_id = appeal.id
    request.answers = {}  # the data lives in the appeal now; no second copy of it
    _stop_collecting(s, request.conversation_id)


def _attach(s: Session, signal: Appeal, message_id: int, step: str, now: datetime) -> None:
    """The answer is part of the signal's thread, like any message of the citizen's."""
    s.execute(update(Message).where(col(Message.id) == message_id).values(appeal_id=signal.id))
    _event(s, signal, "message", {"message_id": message_id, "collect": step}, now)
    signal.updated_at = signal.last_activity_at = now
    s.add(signal)


def _event(s: Session, signal: Appeal, kind: str, detail: dict[str, object], now: datetime) -> None:
    event = AppealEvent(
        appeal_id=require_id(signal), kind=kind, actor="citizen", detail=detail, created_at=now
    )
    s.add(event)


def _stop_collecting(s: Session, conversation_id: int) -> None:
    s.execute(update(Conversation).where(col(Conversation.id) == conversation_id).values(collecting=False))
