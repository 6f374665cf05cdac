"""The appeal page's legal actions: triage of a signal (`POST /appeals/{number}/triage`), forwarding to an
outside body (`POST /appeals/{number}/forward`, R5: a signal's or a registered appeal's, one form) and
merging a duplicate (`POST /appeals/{number}/merge`), with what the page shows about them (`triage_context`).

Like the other actions (appeal_pages.py): a form POST with the session's CSRF token, the appeal opened
with `access.visible_appeal`, and a 303 back to the page with a message code (never text from the request).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, Path
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from adaldyk_bots import appeal_actions, data_collection, forwarding, lifecycle, merging, org, triage
from adaldyk_bots.access import Role, Viewer, visible_appeal
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Conflict, Forbidden, IllegalTransition, Invalid, NotFound, StatusUnchanged
from adaldyk_bots.formal_appeal import formal_appeal_of
from adaldyk_bots.i18n import N_
from adaldyk_bots.org_config import OutsideBody as OrgOutsideBody
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, Conversation, DataRequest
from adaldyk_bots.web.deps import PageWriter
from adaldyk_bots.web.parts import AppParts

__all__ = [
    "TRIAGE_DONE",
    "TRIAGE_ERRORS",
    "TRIAGE_NAMES",
    "TriageView",
    "build_triage_router",
    "triage_context",
]

Number = Annotated[str, Path(max_length=32)]
LONG = 20_000
TRIAGE_ROLES = frozenset({Role.MODERATOR, Role.ADMIN})  # the project office decides what a signal is

TRIAGE_DONE = {
    "t_info": N_("The informational answer is in the outbox; the signal is answered."),
    "t_collect": N_("The bot is asking the citizen for the data of a formal appeal."),
    "t_formal": N_("The formal appeal was registered; the citizen is told its number."),
    "t_forward": N_("The signal was forwarded; the citizen is told where."),
    "forward": N_("The appeal was forwarded to the outside body; the citizen is told where and why."),
    "t_spam": N_("The signal was marked as spam and closed without a notice."),
    "merge": N_("The appeal was merged into the other one."),
}
TRIAGE_ERRORS = {
    "t_reason_empty": N_("This decision needs a reason."),
    "t_reason_long": N_("The reason is too long."),
    "t_text_empty": N_("Write the informational answer."),
    "t_text_long": N_("The answer is too long."),
    "t_body_missing": N_("Choose the outside body the appeal is forwarded to."),
    "t_body_code": N_("Choose an outside body from the list, or another organisation with its name."),
    "t_body_name": N_("Give the other organisation's name as the citizen will read it."),
    "t_consent_missing": N_(
        "Without the citizen's consent to processing their personal data no formal appeal is registered."
    ),
    "t_name_empty": N_("Enter the applicant's surname and name."),
    "t_name_short": N_("Enter at least the applicant's surname and name."),
    "t_name_letters": N_("A name has letters only (and hyphens)."),
    "t_name_long": N_("The name is too long."),
    "t_iin_length": N_("An IIN has exactly 12 digits."),
    "t_iin_digits": N_("An IIN consists of digits only."),
    "t_iin_date": N_("The first six digits of the IIN are not a date of birth."),
    "t_iin_century": N_("The seventh digit of the IIN must be 1 to 6."),
    "t_iin_checksum": N_("The IIN's check digit does not match: there is a typo in the number."),
    "t_address_short": N_("The postal address is too short: city or village, street and house."),
    "t_address_long": N_("The postal address is too long."),
    "t_decision_unknown": N_("Unknown triage decision."),
    "t_not_signal": N_("This appeal is not a signal awaiting triage."),
    "t_busy": N_("The bot is already asking the citizen for their data."),
    "t_role": N_("Signals are triaged by the project office's moderators."),
    "merge_self": N_("An appeal cannot be merged into itself."),
    "merge_target": N_(
        "No such appeal to merge into, or it is itself merged: merge into the one that carries on."
    ),
    "merge_reason": N_("A merge needs a reason: the citizen is told why."),
    "own_action": N_("This status is set by its own action (triage or merge), not by a status change."),
    "forward_use": N_("A forwarding is made with its own form: the outside body it goes to and the reason."),
}
TRIAGE_NAMES = {
    "informational": N_("informational answer"),
    "formal": N_("formal appeal"),
    "forward": N_("forwarded to an outside body"),
    "spam": N_("spam"),
    "other": N_("other"),
}
STEP_NAMES = {
    "consent": N_("consent to personal data processing"),
    "name": N_("full name"),
    "iin": N_("IIN"),
    "address": N_("postal address"),
}


@dataclass
class TriageView:
    """What appeal_triage.html shows (`tr` in the template)."""

    is_signal: bool
    can_triage: bool
    can_dialogue: bool
    collecting: DataRequest | None
    signal: Appeal | None
    formal_appeal: Appeal | None
    merged_into: Appeal | None
    merged_here: list[Appeal] = field(default_factory=list)
    forwarded_to: str | None = None
    forwarded_to_name: str | None = None
    can_merge: bool = False  # the table allows `merged` from the present status
    can_forward: bool = False  # the table allows `forwarded`, and the viewer may take this step
    # (code, name in the appeal's language) of config/org.toml's outside bodies; `other` is the form's own
    outside_bodies: list[tuple[str, str]] = field(default_factory=list)
    step_names: dict[str, str] = field(default_factory=lambda: dict(STEP_NAMES))


def triage_context(
    s: Session, viewer: Viewer, appeal: Appeal, bodies: Sequence[OrgOutsideBody] = ()
) -> TriageView:
    conversation = s.get(Conversation, appeal.conversation_id)
    return TriageView(
        is_signal=triage.is_signal(appeal),
        can_triage=viewer.role in TRIAGE_ROLES,
        can_dialogue=data_collection.can_hold_dialogue(conversation),
        collecting=data_collection.open_request_of(s, appeal) if triage.is_signal(appeal) else None,
        signal=s.get(Appeal, appeal.signal_id) if appeal.signal_id else None,
        formal_appeal=formal_appeal_of(s, appeal) if appeal.triage == "formal" else None,
        merged_into=s.get(Appeal, appeal.merged_into_id) if appeal.merged_into_id else None,
        merged_here=merging.merged_into(s, appeal),
        forwarded_to=appeal.forwarded_to,
        forwarded_to_name=appeal.forwarded_to_name,
        can_merge=AppealStatus.MERGED in lifecycle.next_statuses(appeal.status),
        can_forward=viewer.can_write
        and AppealStatus.FORWARDED in lifecycle.next_statuses(appeal.status)
        and (not triage.is_signal(appeal) or viewer.role in TRIAGE_ROLES),
        # Named in the appeal's language: the citizen's notice quotes the name.
        outside_bodies=forwarding.options(bodies, appeal.language),
    )


def _back(
    number: str, *, done: str | None = None, error: str | None = None, anchor: str = ""
) -> RedirectResponse:
    query = f"?done={done}" if done else f"?error={error}" if error else ""
    return RedirectResponse(f"/appeals/{number}{query}{anchor}", status_code=303)


def _refused(exc: triage.FieldRefusal | forwarding.ForwardRefused) -> str:
    code = f"t_{exc.field}_{exc.reason}"
    return code if code in TRIAGE_ERRORS else "invalid"


def build_triage_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = runtime.engine
    workflow = runtime.workflow
    bodies = org.outside_bodies(runtime.settings.config_dir)  # the ones a forwarding may name (R5)

    def act(number: str, viewer: Viewer, work: Callable[[Session, Appeal], object]) -> None:
        with unit_of_work(engine) as s:
            work(s, visible_appeal(s, viewer, number))

    @router.post("/appeals/{number}/triage")
    def triage_signal(
        number: Number,
        viewer: PageWriter,
        decision: Annotated[str, Form(max_length=32)] = "",
        reason: Annotated[str, Form(max_length=LONG)] = "",
        text: Annotated[str, Form(max_length=LONG)] = "",
        body_code: Annotated[str, Form(max_length=200)] = "",
        body_name: Annotated[str, Form(max_length=1000)] = "",
        name: Annotated[str, Form(max_length=1000)] = "",
        iin: Annotated[str, Form(max_length=100)] = "",
        address: Annotated[str, Form(max_length=2000)] = "",
        consent: Annotated[str, Form(max_length=8)] = "",
    ) -> RedirectResponse:
        if viewer.role not in TRIAGE_ROLES:
            return _back(number, error="t_role", anchor="#triage")
        applicant = triage.ApplicantForm(name=name, iin=iin, address=address, consent=consent == "1")
        done = {"informational": "t_info", "forward": "t_forward", "spam": "t_spam"}.get(decision, "t_formal")
        if decision == "formal" and not applicant.given:
            done = "t_collect"

        def work(s: Session, appeal: Appeal) -> object:
            body = forwarding.addressee(bodies, body_code, body_name) if decision == "forward" else None
            return triage.triage(
                s,
                workflow,
                appeal,
                decision,
                actor=viewer.actor,
                now=utcnow(),
                reason=reason,
                text=text,
                body=body,
                applicant=applicant,
            )

        try:
            act(number, viewer, work)
        except (triage.FieldRefusal, forwarding.ForwardRefused) as exc:
            return _back(number, error=_refused(exc), anchor="#triage")
        except triage.NotASignal:
            return _back(number, error="t_not_signal", anchor="#triage")
        except (Conflict, IllegalTransition):
            return _back(number, error="t_busy", anchor="#triage")
        return _back(number, done=done)

    @router.post("/appeals/{number}/forward")
    def forward(
        number: Number,
        viewer: PageWriter,
        body_code: Annotated[str, Form(max_length=200)] = "",
        body_name: Annotated[str, Form(max_length=1000)] = "",
        reason: Annotated[str, Form(max_length=LONG)] = "",
    ) -> RedirectResponse:
        """R5: forward to an outside body of config/org.toml, or another organisation (`other` with its
        name), with the reason; a signal's forwarding is its triage (moderators only)."""
        signal = False

        def work(s: Session, appeal: Appeal) -> object:
            nonlocal signal
            signal = triage.is_signal(appeal)
            if signal and viewer.role not in TRIAGE_ROLES:
                raise Forbidden("signals are triaged by the project office's moderators")
            to = forwarding.addressee(bodies, body_code, body_name)
            return triage.forward(s, workflow, appeal, to, actor=viewer.actor, reason=reason, now=utcnow())

        try:
            act(number, viewer, work)
        except (triage.FieldRefusal, forwarding.ForwardRefused) as exc:
            return _back(number, error=_refused(exc), anchor="#forward")
        except Forbidden:
            return _back(number, error="t_role", anchor="#forward")
        except IllegalTransition:
            return _back(number, error="illegal", anchor="#forward")
        except StatusUnchanged:
            return _back(number, error="unchanged", anchor="#forward")
        except Conflict:
            return _back(number, error="t_busy", anchor="#forward")
        return _back(number, done="t_forward" if signal else "forward")

    @router.post("/appeals/{number}/merge")
    def merge(
        number: Number,
        viewer: PageWriter,
        into: Annotated[str, Form(max_length=32)] = "",
        reason: Annotated[str, Form(max_length=LONG)] = "",
    ) -> RedirectResponse:
        def work(s: Session, appeal: Appeal) -> object:
            try:
                survivor = visible_appeal(s, viewer, into.strip())
            except NotFound:
                raise Conflict("no such appeal to merge into") from None
            return merging.merge(workflow, s, appeal, survivor, reason=reason, actor=viewer.actor)

        try:
            act(number, viewer, work)
        except appeal_actions.ReasonRequired:
            return _back(number, error="merge_reason", anchor="#status")
        except merging.SelfMerge:
            return _back(number, error="merge_self", anchor="#status")
        except IllegalTransition:
            return _back(number, error="illegal", anchor="#status")
        except StatusUnchanged:
            return _back(number, error="unchanged", anchor="#status")
        except Conflict:
            return _back(number, error="merge_target", anchor="#status")
        except (Invalid, Forbidden):
            return _back(number, error="invalid", anchor="#status")
        return _back(number, done="merge")

    return router
