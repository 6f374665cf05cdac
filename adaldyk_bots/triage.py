"""A moderator's triage of a signal: what a social message becomes (R13 and the note on social networks).

A signal is an appeal in status `received` that is not formal. The moderator decides one of:

    informational  an answer is sent and the signal is answered; nothing is registered
    formal         the R12 data are collected — by the bot in a dialogue (data_collection.py) where the
                   channel can hold one, otherwise typed in by the moderator — and a new formal appeal is
                   registered (formal_appeal.py); the signal is closed with a link to it
    forward        not the ministry's competence: forwarded to an outside body (R5, forwarding.py: the same
                   action as a registered appeal's), the citizen told where and why
    spam           rejected without a word to the sender (appeal_actions.mark_spam)

Every decision is an AppealEvent "triage" and an audit record "appeal.triage" with its author and
reason, and the citizen is told which it is — except spam: answering spam tells its sender that the
inbox is read and by whom, and a real citizen's message marked by mistake is reopened by a moderator
(status `reopened`, with its reason) and answered then.
Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from adaldyk_bots import appeal_actions, audit, data_collection, forwarding, notices
from adaldyk_bots.applicant import Applicant, check_address, check_iin_text, check_name
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import AdaldykError, Conflict, Invalid
from adaldyk_bots.formal_appeal import register_formal
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, AppealEvent, Conversation, Message
from adaldyk_bots.workflow import Target, Workflow

__all__ = [
    "DECISIONS",
    "TEXT_MAX",
    "ApplicantForm",
    "ApplicantRefused",
    "FieldRefusal",
    "InvalidField",
    "NotASignal",
    "is_signal",
    "forward",
    "triage",
]

DECISIONS = ("informational", "formal", "forward", "spam")
TEXT_MAX = 20_000
REASON_MAX = 4_000


class FieldRefusal(AdaldykError):
    """A triage refused for one field: `field` and a stable `reason` code, which the page turns into words."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class InvalidField(FieldRefusal, Invalid):
    """A field missing or malformed (422; the API's schema already refuses these)."""


class ApplicantRefused(FieldRefusal, Conflict):
    """Well-formed R12 data the law's rules refuse — an IIN whose check digit or birth date is wrong, a
    name that is not one — or none where the channel cannot ask for them (409: the request is valid,
    what it carries cannot be accepted)."""


class NotASignal(Conflict):
    """Only a signal (received, not formal) is triaged; a formal appeal follows the status table."""


@dataclass(frozen=True)
class ApplicantForm:
    """The R12 data as a moderator typed them (a phone call, the reception room, a public comment)."""

    name: str = ""
    iin: str = ""
    address: str = ""
    consent: bool = False  # the citizen consented to processing their personal data (Law 94-V)

    @property
    def given(self) -> bool:
        return bool(self.name.strip() or self.iin.strip() or self.address.strip())


def is_signal(appeal: Appeal) -> bool:
    return appeal.status == AppealStatus.RECEIVED and not appeal.formal


def check_applicant(form: ApplicantForm) -> Applicant:
    """The moderator's entry, checked as the bot checks the citizen's answers."""
    if not form.consent:
        raise InvalidField("consent", "missing", "the citizen's consent to processing personal data")
    name, iin, address = check_name(form.name), check_iin_text(form.iin), check_address(form.address)
    for field, checked in (("name", name), ("iin", iin), ("address", address)):
        if not checked.ok:
            raise ApplicantRefused(field, str(checked.reason), f"refused ({checked.reason})")
    return Applicant(name=name.value, iin=iin.value, address=address.value)


def triage(
    s: Session,
    workflow: Workflow,
    signal: Appeal,
    decision: str,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
    text: str = "",
    body: forwarding.Addressee | None = None,
    applicant: ApplicantForm | None = None,
) -> AppealEvent:
    """Decide what `signal` is; returns the "triage" event. Refusals: InvalidField (422), NotASignal (409)."""
    if decision not in DECISIONS:
        raise InvalidField("decision", "unknown", f"one of {', '.join(DECISIONS)}")
    _lock(s, signal)
    if not is_signal(signal):
        raise NotASignal(f"{signal.number} is not a signal awaiting triage (status {signal.status})")
    reason = appeal_actions.clean(reason)
    if len(reason) > REASON_MAX:
        raise InvalidField("reason", "long", f"at most {REASON_MAX} characters")
    if decision != "formal" and not reason:
        raise InvalidField("reason", "empty", "a triage decision needs its reason")
    if decision == "informational":
        return _informational(s, workflow, signal, text, actor=actor, reason=reason, now=now)
    if decision == "formal":
        return _formal(s, workflow, signal, applicant, actor=actor, reason=reason, now=now)
    if decision == "forward":
        if body is None:
            raise InvalidField("body", "missing", "the outside body the appeal is forwarded to")
        return _forward(s, workflow, signal, body, actor=actor, reason=reason, now=now)
    return _spam(s, signal, actor=actor, reason=reason, now=now)


def _informational(
    s: Session, workflow: Workflow, signal: Appeal, text: str, *, actor: str, reason: str, now: datetime
) -> AppealEvent:
    text = appeal_actions.clean(text)
    if not text:
        raise InvalidField("text", "empty", "the informational answer to send")
    if len(text) > TEXT_MAX:
        raise InvalidField("text", "long", f"at most {TEXT_MAX} characters")
    _stop_dialogue(s, signal, now)
    event = _record(s, signal, "informational", actor=actor, reason=reason, now=now, detail={"text": text})
    key = f"triage:{require_id(signal)}"
    body = workflow.texts.render(signal.language, "triage_informational", number=signal.number, text=text)
    conversation = s.get(Conversation, signal.conversation_id)
    if conversation is None or conversation.channel in notices.UNREACHABLE_CHANNELS:
        notices.notify_citizen(s, workflow, signal, "triage", text=body, now=now)
    else:
        # Written by a person, like a reply (purpose "reply": Meta's HUMAN_AGENT tag may carry it).
        target = Target.of(conversation)
        workflow.enqueue(s, key=key, target=target, purpose="reply", appeal_id=signal.id, text=body, now=now)
        s.add(
            Message(
                conversation_id=signal.conversation_id,
                appeal_id=signal.id,
                direction="out",
                external_key=key,
                text=body,
                sent_at=now,
                created_at=now,
            )
        )
    workflow.change_status(s, signal, AppealStatus.ANSWERED, actor=actor, note=reason, notify=False)
    _set(s, signal, triage="informational")
    return event


def _formal(
    s: Session,
    workflow: Workflow,
    signal: Appeal,
    applicant: ApplicantForm | None,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> AppealEvent:
    conversation = s.get(Conversation, signal.conversation_id)
    entered = applicant is not None and applicant.given
    if not entered and not data_collection.can_hold_dialogue(conversation):
        raise ApplicantRefused(
            "name", "empty", "this channel cannot hold a dialogue: enter the applicant's R12 data"
        )
    if not entered:
        event = _record(s, signal, "formal", actor=actor, reason=reason, now=now, detail={"via": "dialogue"})
        data_collection.start(s, workflow, signal, actor=actor, now=now)
        _set(s, signal, triage="formal")
        return event
    assert applicant is not None
    checked = check_applicant(applicant)
    _stop_dialogue(s, signal, now)
    event = _record(s, signal, "formal", actor=actor, reason=reason, now=now, detail={"via": "staff"})
    appeal = register_formal(
        s, workflow, signal, checked, consent_at=now, actor=actor, now=now, detail={"entered_by": actor}
    )
    told = workflow.texts.render(
        signal.language, "triage_formal_registered", number=signal.number, formal=appeal.number
    )
    notices.notify_citizen(s, workflow, signal, "triage", text=told, now=now)
    return event


def _forward(
    s: Session,
    workflow: Workflow,
    signal: Appeal,
    body: forwarding.Addressee,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> AppealEvent:
    _stop_dialogue(s, signal, now)
    facts: dict[str, object] = {"body": body.code, "body_name": body.name(signal.language)}
    event = _record(s, signal, "forward", actor=actor, reason=reason, now=now, detail=facts)
    try:
        forwarding.forward(s, workflow, signal, body, reason=reason, actor=actor, now=now)
    except forwarding.ForwardRefused as exc:
        raise InvalidField(exc.field, exc.reason, str(exc)) from None
    _set(s, signal, triage="forward")
    return event


def forward(
    s: Session,
    workflow: Workflow,
    appeal: Appeal,
    body: forwarding.Addressee,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> AppealEvent:
    """The forwarding action (the appeal page's form, POST …/forward): a signal's forwarding is its triage
    decision (recorded as one, and only the project office's moderators take it, as every triage); any
    other appeal's is the R5 step itself (forwarding.forward)."""
    if is_signal(appeal):
        return triage(s, workflow, appeal, "forward", actor=actor, now=now, reason=reason, body=body)
    return forwarding.forward(s, workflow, appeal, body, reason=reason, actor=actor, now=now)


def _spam(s: Session, signal: Appeal, *, actor: str, reason: str, now: datetime) -> AppealEvent:
    _stop_dialogue(s, signal, now)
    event = _record(s, signal, "spam", actor=actor, reason=reason, now=now, detail={})
    appeal_actions.mark_spam(s, signal, actor=actor)
    _set(s, signal, triage="spam")
    return event


def _record(
    s: Session,
    signal: Appeal,
    decision: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    detail: dict[str, object],
) -> AppealEvent:
    facts: dict[str, object] = {"decision": decision, "reason": reason, **detail}
    event = AppealEvent(
        appeal_id=require_id(signal), kind="triage", actor=actor, detail=facts, created_at=now
    )
    s.add(event)
    s.flush()
    audit.record(s, actor=actor, action="appeal.triage", subject=signal.number, detail=facts)
    return event


def _stop_dialogue(s: Session, signal: Appeal, now: datetime) -> None:
    """Another decision ends a dialogue the bot is holding for this signal."""
    request = data_collection.open_request_of(s, signal)
    if request is not None:
        data_collection.cancel(s, request, reason="staff", now=now)


def _set(s: Session, signal: Appeal, **values: object) -> None:
    for name, value in values.items():
        setattr(signal, name, value)
    s.add(signal)


def _lock(s: Session, appeal: Appeal) -> None:
    """The signal's row lock, read again: a citizen's answer or another moderator's triage waits for it."""
    s.execute(
        select(Appeal)
        .where(col(Appeal.id) == require_id(appeal))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
