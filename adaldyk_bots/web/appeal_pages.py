"""The appeal page, `/appeals/{number}`, and its actions (form POSTs under `/appeals/{number}/…`).

The page shows the whole thread (every message of the appeal, from every conversation of the citizen,
with each message's versions original first), the citizen card, the legal clock in working days, every
outbound message with its delivery state, the history and internal notes. Every action is a form POST
with the session's CSRF token (deps.PageWriter: auditors 403), opens the appeal with
`access.visible_appeal` (out of scope: the same 404 as a missing number) and answers 303 back to the
page with a message code (`?done=…` or `?error=…`, shown translated: never text from the request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from adaldyk_bots import answers, appeal_actions, extension, lifecycle
from adaldyk_bots.access import Viewer, appeal_scope, assignable_staff, not_found, visible_appeal
from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.domain import AppealStatus, ReplyTarget, SendContext
from adaldyk_bots.errors import (
    Conflict,
    EmptyReply,
    Forbidden,
    IllegalTransition,
    Invalid,
    NoFile,
    NotFound,
    StatusUnchanged,
    UnknownUnit,
    UpstreamFailed,
    UseExtension,
    UseForwarding,
)
from adaldyk_bots.i18n import N_
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.ports import Connector, reply_window
from adaldyk_bots.reply_templates import ReplyTemplate, load_reply_templates
from adaldyk_bots.storage.db import require_id, unit_of_work, utcnow
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    AppealNote,
    ChannelIdentity,
    Contact,
    Conversation,
    Message,
    MessageVersion,
    OutboxItem,
    StaffUser,
    Unit,
)
from adaldyk_bots.textsplit import split_text
from adaldyk_bots.uploads import upload_id_of
from adaldyk_bots.web.answer_pages import answer_box
from adaldyk_bots.web.deps import Db, PageViewer, PageWriter, client_address
from adaldyk_bots.web.labels import STATUSES
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.public_pages import content_disposition, upload_for
from adaldyk_bots.web.routing_pages import routing_context, routing_rules
from adaldyk_bots.web.task_pages import TASK_KINDS, appeal_tasks
from adaldyk_bots.web.triage_pages import TRIAGE_DONE, TRIAGE_ERRORS, TRIAGE_NAMES, triage_context
from adaldyk_bots.web.ui import render, request_language
from adaldyk_bots.workflow import DIRECT_CHANNELS

__all__ = ["DELIVERY_STATES", "EVENT_NAMES", "build_appeal_router", "explain_code", "working_days_left"]

log = logging.getLogger(__name__)

MAX_ID = 2**31 - 1
Number = Annotated[str, Path(max_length=32)]
OutboxId = Annotated[int, Path(ge=1, le=MAX_ID)]
TEXT_LIMIT = 20_000
# a reply longer than this is a document, not a message

DELIVERY_STATES = ("pending", "sending", "retrying", "sent", "failed", "held", "waiting")
# States that change by themselves: the page keeps asking for these until they settle.
LIVE_STATES = frozenset({"pending", "sending", "retrying", "held", "waiting"})
STATE_NAMES = {
    "pending": N_("waiting to be sent"),
    "sending": N_("sending"),
    "retrying": N_("will be tried again"),
    "sent": N_("delivered"),
    "failed": N_("not delivered"),
    "held": N_("held: the channel refuses our token"),
    "waiting": N_("waiting for the citizen's reply window"),
}
PURPOSE_NAMES = {
    "ack": N_("acknowledgement"),
    "status": N_("status notice"),
    "reply": N_("reply"),
    "status_query": N_("status answer"),
    "info": N_("information"),
    "invite": N_("invitation"),
    "notice": N_("notice"),
    # The notices the law owes (notices.py) and the "was it solved?" question (feedback.py).
    "registration": N_("registration notice"),
    "forwarding": N_("forwarding notice"),
    "extension": N_("extension notice"),
    "hearing": N_("hearing notice"),
    "answer": N_("answer"),
    "feedback": N_("was it solved?"),
}
# History entries said in a few words; the others have their own line in appeal.html (with details), and
# a kind written by a later version than this page is shown by its code (tests/test_appeal_pages.py reads
# the code for every kind written).
EVENT_NAMES = {
    "answer_draft": N_("draft answer sent for approval"),
    "answer_approved": N_("answer approved"),
    "answer_returned": N_("answer returned to its author"),
    "extension": N_("extended"),
    "escalated": N_("escalation"),
    "reminder": N_("reminder"),
    "forwarding_late": N_("not forwarded in time"),
    "extension_notice_late": N_("extension notice not delivered"),
    "transfers_flagged": N_("passed between units too often"),
    "delivery_waiting": N_("waiting for the citizen's reply window"),
    "edited": N_("the citizen edited a message"),
    "deleted": N_("deleted by the citizen"),
    "feedback": N_("the citizen said whether the problem was solved"),
}
STATUS_NAMES = {
    "received": N_("received"),
    "registered": N_("registered"),
    "assigned": N_("assigned"),
    "in_progress": N_("in progress"),
    "hearing": N_("hearing"),
    "merged": N_("merged"),
    "reopened": N_("reopened"),
    "forwarded": N_("forwarded"),
    "extended": N_("extended"),
    "answered": N_("answered"),
    "closed": N_("closed"),
    "rejected": N_("rejected"),
}
CATEGORY_NAMES = {
    "complaint": N_("complaint"),
    "proposal": N_("proposal"),
    "request": N_("request"),
    "application": N_("application"),
    "report": N_("report of a violation"),
    "response": N_("response"),
    "corruption_report": N_("corruption report"),
    "gratitude": N_("gratitude"),
    "other": N_("other"),
}
# What a moderator should understand from a platform's error code: by its last part (the "family"),
# the same for every channel; the exact code and the platform's own words are shown beside it.
CODE_EXPLANATIONS = {
    "blocked": N_("The citizen has blocked the bot: nothing can be sent until they unblock it."),
    "forbidden": N_("The platform does not allow us to write to this citizen."),
    "user_deactivated": N_("The citizen's account has been deleted or deactivated."),
    "chat_not_found": N_("The chat no longer exists or the citizen never started it."),
    "chat_migrated": N_("The group moved to a new chat id: the message must be sent there."),
    "bad_request": N_("The platform refused the message as malformed."),
    "bad_target": N_("The address of this conversation is not valid for the platform."),
    "token_invalid": N_("The platform refuses our access token: an administrator must renew it."),
    "rate_limited": N_("The platform asked us to slow down: it goes out by itself shortly."),
    "timeout": N_("The platform did not answer in time: it will be tried again."),
    "network": N_("The platform could not be reached: it will be tried again."),
    "error": N_("The platform answered with an unexpected error."),
    "window_closed": N_("The platform's reply window is closed: the citizen must write again first."),
    "bounced": N_(
        "The citizen's mail server returned the message as undeliverable: check the address, or reach "
        "the citizen another way."
    ),
    # E-mail (connectors/email/smtp.py); a 5xx for the message shows the server's own words.
    "4xx": N_("The mail server asked us to try again later: it will be tried again."),
    "auth_failed": N_(
        "The mail server refuses our login: an administrator must set the right (application) password "
        "in ADALDYK_SMTP_URL. The messages wait meanwhile."
    ),
    "sender_refused": N_(
        "The mail server refuses our sender address (ADALDYK_MAIL_FROM): an administrator must fix it. "
        "The messages wait meanwhile."
    ),
    "tls_failed": N_(
        "The mail server's certificate could not be verified: an administrator must check the server or "
        "ADALDYK_MAIL_CA_FILE. The messages wait meanwhile."
    ),
    "starttls_unavailable": N_(
        "The mail server offers no encryption: an administrator must use smtps:// or another server. "
        "The messages wait meanwhile."
    ),
    "bad_address": N_("The citizen's e-mail address is not one valid address: reach them another way."),
    "address_unsupported": N_("The mail server cannot send to an address written in non-Latin letters."),
    "5": N_("The platform refuses our access token: an administrator must renew it."),
    "14": N_("The platform asked for a captcha: the message was not sent."),
    "29": N_("The platform's daily quota is used up: it goes out by itself later."),
    "900": N_("The citizen has blocked messages from the community."),
    "901": N_("The citizen has not allowed the community to write to them."),
    "902": N_("The citizen's privacy settings do not allow messages from the community."),
}
UNKNOWN_CODE = N_("The platform refused the message; its own words are below.")
DONE_MESSAGES = {
    "reply": N_("The reply is in the outbox; its delivery state is shown below."),
    "status": N_("The status was changed; the citizen is told in their channel."),
    "unit": N_("The appeal was assigned to the unit."),
    "assignee": N_("The person responsible was changed."),
    "note": N_("The internal note was saved. The citizen does not see it."),
    "spam": N_("The appeal was marked as spam and closed without a notice."),
    "retry": N_("The message will be sent again: a new attempt is on its way."),
    "registered": N_("The appeal is registered. Print the receipt for the citizen."),
    "task": N_("The task is done."),
    "draft": N_("The answer waits for the approval of the unit's head; nothing was sent yet."),
    "approved": N_("The answer was approved and is in the outbox."),
    "returned": N_("The answer was returned to its author; the citizen was sent nothing."),
    "extend": N_("The term was extended; the citizen is told in their channel."),
    "corruption": N_("The appeal is a confidential corruption report now, with the project office."),
    **TRIAGE_DONE,
}
ERROR_MESSAGES = {
    "empty": N_("The text is empty."),
    "too_long": N_("The text is too long."),
    "reason": N_("This status needs a reason: the citizen is told why."),
    "unchanged": N_("Nothing changed: the appeal already has that value."),
    "unit": N_("That unit is unknown or outside your unit."),
    "person": N_("That person may not be put in charge of this appeal."),
    "status": N_("Unknown status."),
    "illegal": N_("The law does not allow this step from the appeal's present status."),
    "retry": N_("This message is no longer failed or held: nothing to send again."),
    "invalid": N_("The form was not filled in correctly."),
    "task_already": N_("Someone has already done this task."),
    "task_outcome": N_("Say what came of it (the outcome note is required)."),
    "draft": N_("This appeal cannot take a new answer now: one waits for approval, or it is answered."),
    "comment": N_("Say why the answer is returned: the comment is empty."),
    "extend": N_("The term was not extended: give a reason and a number of working days within the cap."),
    "extend_use": N_(
        "An extension is made with its own form: the head's reason and the working days to add."
    ),
    "extend_forbidden": N_(
        "Only the head of the appeal's unit (or the deputy acting for the head) may extend."
    ),
    "no_office": N_("There is no project office unit: load config/org.toml with adaldyk migrate."),
    **TRIAGE_ERRORS,
}


def working_days_left(calendar: WorkingCalendar, now: datetime, due_at: datetime) -> int:
    """Working days from today up to the due day, both counted while the due moment is ahead (so the
    due day itself is "1 day left"); after it, minus the working days since (overdue)."""
    today = now.astimezone(calendar.tz).date()
    due_day = due_at.astimezone(calendar.tz).date()
    if now <= due_at:
        return _working_days(calendar, today, due_day)
    return -_working_days(calendar, due_day + timedelta(days=1), today)


def _working_days(calendar: WorkingCalendar, first: date, last: date) -> int:
    count, day = 0, first
    while day <= last:
        count += calendar.is_working_day(day)
        day += timedelta(days=1)
    return count


def explain_code(code: str | None) -> str | None:
    """The msgid explaining an error code to a moderator (translated where shown), None without code."""
    if not code:
        return None
    return CODE_EXPLANATIONS.get(code.rsplit(".", 1)[-1], UNKNOWN_CODE)


@dataclass
class Delivery:
    row: OutboxItem
    retries: list[AppealEvent] = field(default_factory=list)

    @property
    def attempts_in_all(self) -> int:
        """Every send tried: the dispatcher counts failed ones in `attempts` (reset by a retry, which
        records the count it found), and the one that went through is not among them."""
        before = sum(int(e.detail.get("attempts_before") or 0) for e in self.retries)
        return self.row.attempts + before + (1 if self.row.state == "sent" else 0)


@dataclass
class Entry:
    """One line of the thread: a citizen's message (with versions) or one of ours (with its delivery)."""

    at: datetime
    direction: str
    channel: str
    message: Message | None = None
    versions: list[MessageVersion] = field(default_factory=list)
    delivery: Delivery | None = None
    # The number of the duplicate merged into this appeal that the message came with (None: its own).
    merged_from: str | None = None

    @property
    def text(self) -> str:
        if self.delivery is not None:
            return self.delivery.row.text
        return self.message.text if self.message else ""


def thread_appeals(s: Session, viewer: Viewer, appeal: Appeal) -> dict[int, str]:
    """The appeals whose citizen messages make `appeal`'s thread, id -> number: its own; the signal it was
    registered from (a formal appeal shows the citizen's words of its essence); and the duplicates merged
    into it, at any depth, that the viewer may see — a merge says "the same matter", often written on
    another channel, so the moderator reads it in one thread."""
    ids = {require_id(appeal): appeal.number}
    if appeal.signal_id is not None:
        signal = s.get(Appeal, appeal.signal_id)
        if signal is not None:
            ids[appeal.signal_id] = signal.number
    frontier = [require_id(appeal)]
    while frontier:
        duplicates = s.exec(select(Appeal).where(col(Appeal.merged_into_id).in_(frontier)))
        frontier = []
        for d in duplicates:
            if d.id is not None and d.id not in ids and viewer.sees(d.unit_id, d.concerned_unit_id):
                ids[d.id] = d.number
                frontier.append(d.id)
    return ids


def _thread(
    s: Session, viewer: Viewer, appeal: Appeal
) -> tuple[list[Entry], dict[int, Delivery], dict[int, Conversation]]:
    members = thread_appeals(s, viewer, appeal)
    own = {require_id(appeal)} | ({appeal.signal_id} if appeal.signal_id is not None else set())
    messages = [
        m
        for m in s.exec(
            select(Message)
            .where(col(Message.appeal_id).in_(sorted(members)))
            .order_by(col(Message.sent_at), col(Message.id))
        )
        # A duplicate's own notices and replies stay on its page, with their deliveries and retries.
        if m.appeal_id in own or m.direction == "in"
    ]
    conversation_ids = {m.conversation_id for m in messages} | {appeal.conversation_id}
    conversations = {
        c.id: c
        for c in s.exec(select(Conversation).where(col(Conversation.id).in_(conversation_ids)))
        if c.id
    }
    versions: dict[int, list[MessageVersion]] = {}
    if messages:
        for v in s.exec(
            select(MessageVersion)
            .where(col(MessageVersion.message_id).in_([m.id for m in messages]))
            .order_by(col(MessageVersion.edited_at), col(MessageVersion.id))
        ):
            versions.setdefault(v.message_id, []).append(v)
    rows = list(
        s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal.id).order_by(col(OutboxItem.id)))
    )
    retries: dict[int, list[AppealEvent]] = {}
    for event in s.exec(
        select(AppealEvent)
        .where(AppealEvent.appeal_id == appeal.id, AppealEvent.kind == "requeued")
        .order_by(col(AppealEvent.id))
    ):
        outbox_id = event.detail.get("outbox_id")
        if isinstance(outbox_id, int):
            retries.setdefault(outbox_id, []).append(event)
    deliveries = {r.id: Delivery(r, retries.get(r.id, [])) for r in rows if r.id is not None}
    by_key = {d.row.key: d for d in deliveries.values()}
    entries: list[Entry] = []
    shown: set[int] = set()
    for m in messages:
        channel = (
            conversations[m.conversation_id].channel if m.conversation_id in conversations else appeal.channel
        )
        delivery = by_key.get(m.external_key) if m.direction == "out" else None
        if delivery is not None and delivery.row.id is not None:
            shown.add(delivery.row.id)
        merged_from = None if m.appeal_id in own or m.appeal_id is None else members.get(m.appeal_id)
        entries.append(
            Entry(m.sent_at, m.direction, channel, m, versions.get(m.id or 0, []), delivery, merged_from)
        )
    for row_id, delivery in deliveries.items():
        if row_id not in shown:  # notices without a message row: acknowledgements, status notices
            entries.append(Entry(delivery.row.created_at, "out", delivery.row.channel, None, [], delivery))
    entries.sort(key=lambda e: (e.at, 0 if e.direction == "in" else 1))
    return entries, deliveries, conversations


def _unit_choices(s: Session, viewer: Viewer) -> list[Unit]:
    query = select(Unit).order_by(col(Unit.code))
    if viewer.unit_ids is not None:  # an officer assigns only within their own sub-tree
        query = query.where(col(Unit.id).in_(sorted(viewer.unit_ids) or [-1]))
    return list(s.exec(query))


def _unit_name(unit: Unit | None, lang: str) -> str:
    if unit is None:
        return ""
    return unit.name_kk if lang == "kk" else unit.name_ru


@dataclass(frozen=True)
class Window:
    """What the reply form says about the channel's reply window."""

    known: bool
    open: bool
    code: str = ""
    detail: str = ""
    last_inbound_at: datetime | None = None


def _reply_window(connector: Connector | None, conversation: Conversation, appeal: Appeal) -> Window:
    """What the dispatcher would decide for a moderator's reply sent now (ports.reply_window): open,
    open with a tag, waiting for the citizen, or closed; always open on a channel without windows."""
    last = conversation.last_inbound_at
    if connector is None:  # the channel is off or broken in this process: nothing to ask
        return Window(known=False, open=True, last_inbound_at=last)
    target = ReplyTarget(
        channel=conversation.channel,
        account=conversation.account,
        chat_id=conversation.chat_id,
        kind=conversation.kind,
    )
    context = SendContext(
        purpose="reply", written_by_person=True, last_inbound_at=last, now=utcnow(), language=appeal.language
    )
    try:
        decision = reply_window(connector, target, context)
    except Exception as exc:  # noqa: BLE001 - the page must show, whatever the connector thinks
        log.warning("reply window of %s could not be decided: %s", conversation.channel, describe(exc))
        return Window(known=False, open=True, last_inbound_at=last)
    return Window(
        known=True,
        open=decision.kind in ("open", "template"),
        code=decision.code,
        detail=decision.detail,
        last_inbound_at=last,
    )


@dataclass(frozen=True)
class Preview:
    parts: list[str]
    limit: int | None


def _preview(runtime: AppParts, appeal: Appeal, channel: str, text: str) -> Preview:
    """How the channel will split the reply as the citizen will get it (the workflow's reply wrapper)."""
    body = (
        runtime.workflow.texts.render(appeal.language, "reply", number=appeal.number, text=text)
        if text
        else ""
    )
    connector = runtime.connectors.get(channel)
    if connector is None or not body:
        return Preview([body] if body else [], None)
    parts = split_text(body, connector.text_limit, connector.measure_text)
    return Preview(parts, connector.text_limit)


def _back(
    number: str, *, done: str | None = None, error: str | None = None, anchor: str = ""
) -> RedirectResponse:
    query = f"?done={done}" if done else f"?error={error}" if error else ""
    return RedirectResponse(f"/appeals/{number}{query}{anchor}", status_code=303)


def build_appeal_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = runtime.engine
    workflow = runtime.workflow
    calendar = workflow.calendar
    templates: list[ReplyTemplate] = load_reply_templates(runtime.settings.config_dir)
    routing = routing_rules(runtime)

    def record_view(request: Request, viewer: Viewer, appeal: Appeal) -> None:
        try:
            with unit_of_work(engine) as s:
                appeal_actions.record_view(
                    s, appeal, viewer=viewer, address=client_address(request, runtime.settings)
                )
        except SQLAlchemyError as exc:
            # No page without its record: a view missing from the audit log is a gap nobody could see.
            throttled(
                log, failure_kind("audit.view", exc), "could not record an appeal view: %s", describe(exc)
            )
            raise

    @router.get("/appeals/{number}", response_class=HTMLResponse)
    def appeal_page(
        request: Request,
        number: Number,
        viewer: PageViewer,
        s: Db,
        template: Annotated[str | None, Query(max_length=64)] = None,
        done: Annotated[str | None, Query(max_length=32)] = None,
        error: Annotated[str | None, Query(max_length=32)] = None,
    ) -> HTMLResponse:
        appeal = visible_appeal(s, viewer, number)
        lang = request_language(request)
        entries, deliveries, conversations = _thread(s, viewer, appeal)
        conversation = conversations.get(appeal.conversation_id)
        contact = s.get(Contact, appeal.contact_id)
        identities = list(
            s.exec(
                select(ChannelIdentity)
                .where(ChannelIdentity.contact_id == appeal.contact_id)
                .order_by(col(ChannelIdentity.id))
            )
        )
        others = list(
            s.exec(
                select(Appeal)
                .where(Appeal.contact_id == appeal.contact_id, Appeal.id != appeal.id, appeal_scope(viewer))
                .order_by(col(Appeal.id).desc())
                .limit(50)
            )
        )
        events = list(
            s.exec(
                select(AppealEvent).where(AppealEvent.appeal_id == appeal.id).order_by(col(AppealEvent.id))
            )
        )
        notes = list(
            s.exec(select(AppealNote).where(AppealNote.appeal_id == appeal.id).order_by(col(AppealNote.id)))
        )
        unit = s.get(Unit, appeal.unit_id) if appeal.unit_id else None
        assignee = s.get(StaffUser, appeal.assignee_id) if appeal.assignee_id else None
        chosen = next((t for t in templates if t.id == template), None)
        draft = chosen.text(appeal.language) if chosen else ""
        channel = conversation.channel if conversation else appeal.channel
        now = utcnow()
        record_view(request, viewer, appeal)
        context = {
            "appeal": appeal,
            "entries": entries,
            "deliveries": deliveries,
            "contact": contact,
            "identities": identities,
            "others": others,
            "events": events,
            "notes": notes,
            "unit": unit,
            "unit_name": _unit_name(unit, lang),
            "assignee": assignee,
            "units": [(u, _unit_name(u, lang)) for u in _unit_choices(s, viewer)],
            "staff": assignable_staff(s, appeal),
            "statuses": [st.value for st in appeal_actions.plain_statuses(appeal)],
            "status_labels": STATUSES,
            "tr": triage_context(s, viewer, appeal, routing.config.outside_bodies),
            "triage_names": TRIAGE_NAMES,
            "event_names": EVENT_NAMES,
            # A channel's message is a signal until its triage (R13); only these were registered (R1).
            "is_registered": appeal.formal or appeal.channel in DIRECT_CHANNELS,
            "reason_required": sorted(st.value for st in appeal_actions.REASON_REQUIRED),
            "days_left": working_days_left(calendar, now, appeal.due_at),
            "may_extend": extension.may_extend(s, viewer, appeal, now=now, tz=calendar.tz)
            and (
                appeal.status == AppealStatus.EXTENDED
                or lifecycle.allowed(appeal.status, AppealStatus.EXTENDED.value)
            ),
            "max_extension": extension.max_extension_days(workflow, appeal),
            "extension_cap": extension.extension_cap(workflow, appeal),
            "too_many_transfers": workflow.too_many_transfers(appeal),
            "is_overdue": appeal.overdue or (AppealStatus(appeal.status).is_open and now > appeal.due_at),
            "templates": templates,
            "chosen": chosen,
            "draft": draft,
            "preview": _preview(runtime, appeal, channel, draft),
            "window": _reply_window(runtime.connectors.get(channel), conversation, appeal)
            if conversation
            else None,
            "channel": channel,
            "done": DONE_MESSAGES.get(done or ""),
            "error": ERROR_MESSAGES.get(error or ""),
            "status_names": STATUS_NAMES,
            "category_names": CATEGORY_NAMES,
            **delivery_context(s, events, notes),
            "tasks": appeal_tasks(s, require_id(appeal)),
            "task_kinds": TASK_KINDS,
            "has_receipt": appeal.channel in ("phone", "reception"),
            "answer_box": answer_box(s, workflow, appeal, viewer),
            **routing_context(
                s,
                routing,
                viewer,
                appeal,
                " ".join([appeal.summary] + [e.text for e in entries if e.direction == "in"]),
            ),
        }
        return render(request, "appeal.html", context)

    def delivery_context(s: Session, events: list[AppealEvent], notes: list[AppealNote]) -> dict[str, Any]:
        """What appeal_delivery.html needs besides the entry (the page and the live fragment share it)."""
        return {
            "state_names": STATE_NAMES,
            "purpose_names": PURPOSE_NAMES,
            "explain_code": explain_code,
            "retryable": appeal_actions.RETRYABLE,
            "live_states": LIVE_STATES,
            "local": lambda moment: _local(calendar, moment),
            "staff_names": _staff_names(s, events, notes),
        }

    @router.get("/appeals/{number}/deliveries/{outbox_id}", response_class=HTMLResponse)
    def delivery_fragment(
        request: Request, number: Number, outbox_id: OutboxId, viewer: PageViewer, s: Db
    ) -> HTMLResponse:
        """One outbound message with its delivery state: the page re-fetches it (htmx) until it settles."""
        appeal = visible_appeal(s, viewer, number)
        entries, _deliveries, _conversations = _thread(s, viewer, appeal)
        entry = next((e for e in entries if e.delivery is not None and e.delivery.row.id == outbox_id), None)
        if entry is None:
            raise not_found(number)
        events = [r for d in _deliveries.values() for r in d.retries]
        context = {"appeal": appeal, "entry": entry, **delivery_context(s, events, [])}
        return render(request, "appeal_delivery.html", context)

    @router.get("/appeals/{number}/reply-preview", response_class=HTMLResponse)
    def reply_preview(
        request: Request,
        number: Number,
        viewer: PageViewer,
        s: Db,
        text: Annotated[str, Query(max_length=TEXT_LIMIT)] = "",
    ) -> HTMLResponse:
        """The split preview for the text being typed (htmx, as the moderator types)."""
        appeal = visible_appeal(s, viewer, number)
        conversation = s.get(Conversation, appeal.conversation_id)
        channel = conversation.channel if conversation else appeal.channel
        return render(
            request,
            "appeal_preview.html",
            {"preview": _preview(runtime, appeal, channel, text), "channel": channel},
        )

    @router.get("/appeals/{number}/messages/{message_id}/attachments/{index}")
    async def attachment(
        request: Request,
        number: Number,
        message_id: OutboxId,
        index: Annotated[int, Path(ge=0, le=1000)],
        viewer: PageViewer,
    ) -> Response:
        """A citizen's file for the page (session auth): images are shown inline, files downloaded."""
        appeal, item = await run_in_threadpool(_attachment_of, engine, viewer, number, message_id, index)
        upload_id = upload_id_of(item.get("file_id"))
        if upload_id is not None:
            # A web-form file, kept in our database (uploads.py): served through the same scope check.
            row = await run_in_threadpool(upload_for, engine, require_id(appeal), upload_id)
            if row is None:
                raise not_found(number)
            inline = row.mime_type.startswith("image/") and request.query_params.get("download") is None
            return Response(
                row.data,
                media_type=row.mime_type,
                headers={
                    "Content-Disposition": content_disposition(
                        "inline" if inline else "attachment", row.name
                    ),
                    "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "sandbox",
                    "Cache-Control": "private",
                },
            )
        connector = runtime.connectors.get(appeal.channel)
        download = getattr(connector, "download_file", None)
        if download is None or not item.get("file_id"):
            raise NoFile(f"{item.get('kind')} attachments of {appeal.channel} hold no file")
        try:
            path = await download(item["file_id"])
        except Exception as exc:  # noqa: BLE001 - the platform refused or is unreachable: say so
            raise UpstreamFailed(f"could not fetch the file from {appeal.channel}: {describe(exc)}") from None
        mime = str(
            item.get("mime_type")
            or ("image/jpeg" if item.get("kind") == "photo" else "application/octet-stream")
        )
        inline = mime.startswith("image/") and request.query_params.get("download") is None
        return FileResponse(
            path,
            media_type=mime,
            filename=str(item.get("name") or path.name),
            content_disposition_type="inline" if inline else "attachment",
            # A citizen's file is never run as a page of ours: no sniffing, no scripts, even if opened.
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
                "Cache-Control": "private",
            },
        )

    # --- actions -----------------------------------------------------------------------------------

    def act(number: str, viewer: Viewer, work: Callable[[Session, Appeal], object]) -> None:
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            work(s, appeal)

    @router.post("/appeals/{number}/reply")
    def reply(
        number: Number, viewer: PageWriter, text: Annotated[str, Form(max_length=TEXT_LIMIT)] = ""
    ) -> RedirectResponse:
        if not text.strip():
            return _back(number, error="empty", anchor="#reply")
        four_eyes = False

        def work(s: Session, appeal: Appeal) -> object:
            nonlocal four_eyes
            if answers.needs_approval(
                workflow, appeal
            ):  # a formal appeal: the answer is a draft (answers.py)
                four_eyes = True
                return answers.save_draft(s, workflow, appeal, text, viewer=viewer)
            return workflow.reply(s, appeal, text, actor=viewer.actor)

        try:
            act(number, viewer, work)
        except EmptyReply:
            return _back(number, error="empty", anchor="#reply")
        except Conflict:
            return _back(number, error="draft", anchor="#answer")
        return _back(number, done="draft" if four_eyes else "reply")

    @router.post("/appeals/{number}/status")
    def status(
        number: Number,
        viewer: PageWriter,
        status: Annotated[str, Form(max_length=32)] = "",
        reason: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    ) -> RedirectResponse:
        try:
            act(
                number,
                viewer,
                lambda s, a: appeal_actions.change_status(
                    workflow, s, a, status, reason=reason, actor=viewer.actor
                ),
            )
        except appeal_actions.ReasonRequired:
            return _back(number, error="reason", anchor="#status")
        except StatusUnchanged:
            return _back(number, error="unchanged", anchor="#status")
        except IllegalTransition:
            return _back(number, error="illegal", anchor="#status")
        except UseExtension:
            return _back(number, error="extend_use", anchor="#extend")
        except UseForwarding:
            return _back(number, error="forward_use", anchor="#forward")
        except appeal_actions.OwnAction:
            return _back(number, error="own_action", anchor="#status")
        except Invalid:
            return _back(number, error="status", anchor="#status")
        return _back(number, done="status")

    @router.post("/appeals/{number}/unit")
    def unit(
        number: Number, viewer: PageWriter, unit: Annotated[str, Form(max_length=64)] = ""
    ) -> RedirectResponse:
        def work(s: Session, appeal: Appeal) -> object:
            if viewer.unit_ids is not None:
                target = s.exec(select(Unit.id).where(Unit.code == unit)).first()
                if target is None or target not in viewer.unit_ids:
                    raise Forbidden("that unit is outside your unit: ask the project office to forward")
            if (s.get(Unit, appeal.unit_id).code if appeal.unit_id else None) == unit:  # type: ignore[union-attr]
                raise StatusUnchanged("already in that unit")
            return workflow.assign_unit(s, appeal, unit, actor=viewer.actor)

        try:
            act(number, viewer, work)
        except (UnknownUnit, Forbidden):
            return _back(number, error="unit", anchor="#unit")
        except StatusUnchanged:
            return _back(number, error="unchanged", anchor="#unit")
        return _back(number, done="unit")

    @router.post("/appeals/{number}/assignee")
    def assignee(
        number: Number, viewer: PageWriter, assignee: Annotated[str, Form(max_length=12)] = ""
    ) -> RedirectResponse:
        person = int(assignee) if assignee.isdigit() else None
        if assignee and person is None:
            return _back(number, error="person", anchor="#assignee")
        try:
            act(number, viewer, lambda s, a: appeal_actions.assign_person(s, a, person, actor=viewer.actor))
        except StatusUnchanged:
            return _back(number, error="unchanged", anchor="#assignee")
        except Invalid:
            return _back(number, error="person", anchor="#assignee")
        return _back(number, done="assignee")

    @router.post("/appeals/{number}/note")
    def note(
        number: Number, viewer: PageWriter, text: Annotated[str, Form(max_length=TEXT_LIMIT)] = ""
    ) -> RedirectResponse:
        if not text.strip():
            return _back(number, error="empty", anchor="#notes")
        act(number, viewer, lambda s, a: appeal_actions.add_note(s, a, text, viewer=viewer))
        return _back(number, done="note", anchor="#notes")

    @router.post("/appeals/{number}/spam")
    def spam(number: Number, viewer: PageWriter) -> RedirectResponse:
        try:
            act(number, viewer, lambda s, a: appeal_actions.mark_spam(s, a, actor=viewer.actor))
        except StatusUnchanged:
            return _back(number, error="unchanged")
        except IllegalTransition:
            return _back(number, error="illegal", anchor="#status")
        return _back(number, done="spam")

    @router.post("/appeals/{number}/extend")
    def extend(
        number: Number,
        viewer: PageWriter,
        days: Annotated[str, Form(max_length=4)] = "",
        reason: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    ) -> RedirectResponse:
        if not days.isdigit() or not reason.strip():
            return _back(number, error="extend", anchor="#extend")
        try:
            act(
                number,
                viewer,
                lambda s, a: extension.extend(
                    s, workflow, a, viewer=viewer, reason=reason, working_days=int(days), now=utcnow()
                ),
            )
        except Forbidden:
            return _back(number, error="extend_forbidden", anchor="#extend")
        except IllegalTransition:
            return _back(number, error="illegal", anchor="#extend")
        except Invalid:
            return _back(number, error="extend", anchor="#extend")
        return _back(number, done="extend")

    @router.post("/appeals/{number}/deliveries/{outbox_id}/retry")
    def retry(number: Number, outbox_id: OutboxId, viewer: PageWriter) -> RedirectResponse:
        try:
            act(
                number,
                viewer,
                lambda s, a: appeal_actions.retry_delivery(s, a, outbox_id, actor=viewer.actor),
            )
        except NotFound:
            raise
        except Conflict:
            return _back(number, error="retry", anchor=f"#delivery-{outbox_id}")
        return _back(number, done="retry", anchor=f"#delivery-{outbox_id}")

    return router


def _attachment_of(
    engine: Any, viewer: Viewer, number: str, message_id: int, index: int
) -> tuple[Appeal, dict[str, Any]]:
    from adaldyk_bots.storage.db import read_session

    with read_session(engine) as s:
        appeal = visible_appeal(s, viewer, number)
        message = s.get(Message, message_id)
        members = thread_appeals(s, viewer, appeal)
        if message is None or message.appeal_id not in members or not 0 <= index < len(message.attachments):
            # The same words as a missing appeal: a hidden appeal's messages give nothing away either.
            raise not_found(number)
        s.expunge(appeal)
        return appeal, dict(message.attachments[index])


def _local(calendar: WorkingCalendar, moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(calendar.tz).strftime("%d.%m.%Y %H:%M")


def _staff_names(s: Session, events: Iterable[AppealEvent], notes: Iterable[AppealNote]) -> dict[str, str]:
    """actor -> the person's full name, for the history ("user:olga" -> "Olga Petrova")."""
    usernames = {
        a.removeprefix("user:")
        for a in [e.actor for e in events] + [n.author for n in notes]
        if a.startswith("user:")
    }
    if not usernames:
        return {}
    rows = s.exec(
        select(StaffUser.username, StaffUser.full_name).where(col(StaffUser.username).in_(sorted(usernames)))
    )
    return {f"user:{u}": (f or u) for u, f in rows}
