"""R5 (APPC Art. 65): forwarding an appeal that is not the ministry's business to the competent body — the
one action behind the appeal page's forwarding form, the API's POST …/forward and a signal's triage.

The body is one of config/org.toml's [[outside_body]] entries, or another organisation the moderator names
(`other`, with its name). The appeal records where it went (`forwarded_to`: the code or `other`;
`forwarded_to_name`: the name the citizen read), the status event carries the body, and the citizen gets
the one forwarding notice (notice_texts.forwarding) naming the body in their language. A bare status change
to `forwarded` names no body and is refused (Workflow.change_status: errors.UseForwarding). A forwarded
appeal is no longer open, so the 3-working-day clock (deadlines.flag_forwarding) stops as it always did.

Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from adaldyk_bots import audit, notice_texts, notices, step_notices
from adaldyk_bots.appeal_actions import clean
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import AdaldykError, Conflict, Invalid
from adaldyk_bots.org_config import OTHER_BODY, OutsideBody
from adaldyk_bots.storage.models import Appeal, AppealEvent
from adaldyk_bots.workflow import Workflow

__all__ = [
    "NAME_MAX",
    "OTHER",
    "REASON_MAX",
    "Addressee",
    "BodyRefused",
    "ForwardRefused",
    "ReasonRefused",
    "addressee",
    "forward",
    "options",
]

OTHER = OTHER_BODY  # an organisation config/org.toml does not list: the moderator types its name
NAME_MAX = 300  # appeal.forwarded_to_name
REASON_MAX = 4_000


class ForwardRefused(AdaldykError):
    """A forwarding refused for one field: `field` (body, reason) and a stable `reason` code (missing,
    code, name, empty, long), which the pages turn into words."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class BodyRefused(ForwardRefused, Conflict):
    """A well-formed body config/org.toml does not list, or `other` without its name (409: the request is
    valid, what it names cannot be forwarded to; as triage.ApplicantRefused)."""


class ReasonRefused(ForwardRefused, Invalid):
    """No reason, or one too long (422; the API's schema refuses these first)."""


@dataclass(frozen=True)
class Addressee:
    """The body an appeal goes to, named in each language the citizen may read."""

    code: str  # config/org.toml's code, or OTHER
    name_kk: str
    name_ru: str
    name_en: str

    def name(self, language: str) -> str:
        return {"kk": self.name_kk, "en": self.name_en}.get(language, self.name_ru)


def addressee(bodies: Sequence[OutsideBody], code: str, name: str = "") -> Addressee:
    """The outside body `code` names among `bodies` (org.toml; a given `name` is not needed), or, for
    `other`, the organisation `name` names. ForwardRefused says which is missing or wrong."""
    code = code.strip().lower()
    if not code:
        raise BodyRefused("body", "missing", "choose the outside body the appeal is forwarded to")
    for body in bodies:
        if body.code == code:
            return Addressee(body.code, body.name_kk, body.name_ru, body.name_en or body.name_ru)
    if code != OTHER:
        known = ", ".join([b.code for b in bodies] + [OTHER])
        raise BodyRefused("body", "code", f"unknown outside body {code!r}; one of: {known}")
    name = clean(name)
    if not name or len(name) > NAME_MAX:
        raise BodyRefused(
            "body", "name", f"the other organisation's name, as the citizen will read it (≤ {NAME_MAX})"
        )
    return Addressee(OTHER, name, name, name)


def options(bodies: Sequence[OutsideBody], language: str) -> list[tuple[str, str]]:
    """(code, name in `language`) of every body a form offers, `other` not included."""
    return [(b.code, addressee(bodies, b.code).name(language)) for b in bodies]


def forward(
    s: Session,
    workflow: Workflow,
    appeal: Appeal,
    to: Addressee,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> AppealEvent:
    """Forward `appeal` to `to` with the reason the citizen is told (the step must be legal from the
    appeal's status: lifecycle.py); returns the status event."""
    reason = clean(reason)
    if not reason:
        raise ReasonRefused("reason", "empty", "a forwarding needs its reason: the citizen is told it")
    if len(reason) > REASON_MAX:
        raise ReasonRefused("reason", "long", f"at most {REASON_MAX} characters")
    name = to.name(appeal.language)
    facts: dict[str, object] = {"body": to.code, "body_name": name}
    event = workflow.change_status(
        s, appeal, AppealStatus.FORWARDED, actor=actor, note=reason, notify=False, detail=facts
    )
    appeal.forwarded_to, appeal.forwarded_to_name = to.code, name
    s.add(appeal)
    audit.record(
        s, actor=actor, action="appeal.forward", subject=appeal.number, detail={**facts, "reason": reason}
    )
    text = notice_texts.forwarding(workflow.texts, appeal, body=name, reason=reason)
    seq = step_notices.notice_seq(s, appeal, "forwarding")  # forwarded again after a reopening: :2
    notices.notify_citizen(s, workflow, appeal, "forwarding", text=text, now=now, seq=seq)
    return event
