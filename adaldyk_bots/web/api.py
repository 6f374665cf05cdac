"""JSON API /api/v1 for staff tools: appeals, their messages and history, status changes and replies."""
# No `from __future__ import annotations` here: FastAPI reads the dependency aliases defined inside
# build_api_router at run time, and string annotations could not see those local names.

import logging
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from adaldyk_bots import (
    accounts,
    answers,
    appeal_actions,
    audit,
    extension,
    feedback,
    forwarding,
    merging,
    org,
    triage,
)
from adaldyk_bots.access import Role, Viewer, appeal_scope, visible_appeal
from adaldyk_bots.appeal_query import text_condition
from adaldyk_bots.domain import AppealStatus, Category
from adaldyk_bots.errors import Conflict, Forbidden, NoFile, NotFound, UnknownUnit, UpstreamFailed
from adaldyk_bots.formal_appeal import formal_appeal_of
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.staff_intake import (
    EMAIL_PATTERN,
    ERRORS,
    NAME_LIMIT,
    PHONE_PATTERN,
    TEXT_LIMIT,
    StaffAppealForm,
)
from adaldyk_bots.storage.db import read_session, unit_of_work, utcnow
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    IntakeGap,
    Message,
    MessageVersion,
    OutboxItem,
    Unit,
)
from adaldyk_bots.web.deps import ApiViewer, ApiWriter, Db, Now, client_address
from adaldyk_bots.web.direct_pages import register_from_form
from adaldyk_bots.web.errors import ErrorOut, FieldErrorOut, error_response
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.workflow import Workflow

log = logging.getLogger(__name__)

# Every parameter is bounded: an unbounded integer reached the database driver and failed there
# (offset=983423261871276556288 was a 500: SQLite integers are 64-bit).
MAX_OFFSET = 1_000_000
MAX_ID = 2**31 - 1  # ids are INTEGER columns: 32-bit on PostgreSQL
NUMBER_LENGTH = 32  # appeal.number is VARCHAR(32)
CODE_LENGTH = 64  # status, channel, category and unit codes

_ERROR: dict[str, Any] = {"model": ErrorOut}
Responses = dict[int | str, dict[str, Any]]
COMMON_ERRORS: Responses = {
    400: {**_ERROR, "description": "the body could not be read at all (not UTF-8 JSON)"},
    401: {**_ERROR, "description": "no bearer token, or an unknown or revoked one (or one without a user)"},
    422: {**_ERROR, "description": "a parameter or the body does not match this schema"},
    503: {**_ERROR, "description": "the database is unavailable; try again later"},
}
NOT_FOUND: Responses = {
    404: {**_ERROR, "description": "no such appeal (or message, or attachment), or not in the caller's scope"}
}
FORBIDDEN: Responses = {
    403: {**_ERROR, "description": "the token's user may not do this (auditors read only)"}
}
ACTION_ERRORS: Responses = {
    **NOT_FOUND,
    **FORBIDDEN,
    409: {**_ERROR, "description": "the appeal's state does not allow it (e.g. it already has that status)"},
}

Number = Annotated[str, Path(min_length=1, max_length=NUMBER_LENGTH, examples=["ADL-2026-000123"])]
Code = Annotated[str | None, Query(max_length=CODE_LENGTH)]


def token_digest(token: str) -> str:
    """What api_token.token_sha256 holds for a token (accounts.digest)."""
    return accounts.digest(token)


def _actor(request: Request, viewer: Viewer) -> str:
    # The person is who acted, named as on the pages so the audit log's actor filter finds both; the
    # token's name is in the audit log's detail of API views.
    return viewer.actor


class AppealOut(BaseModel):
    number: str
    channel: str
    language: str
    category: str
    status: str
    unit: str | None
    summary: str
    received_at: datetime
    registered_at: datetime
    due_at: datetime
    overdue: bool
    answered_at: datetime | None
    formal: bool = Field(
        description="a formal appeal (R12 data given, statutory term running); false: a signal"
    )
    triage: str | None = Field(description="the moderator's decision on a signal: informational, formal, …")
    signal: str | None = Field(description="the number of the signal this formal appeal was registered from")
    merged_into: str | None = Field(description="the appeal this duplicate was merged into")
    forwarded_to: str | None = Field(
        description="the code of the outside body it was forwarded to (R5; config/org.toml), or `other`"
    )
    forwarded_to_name: str | None = Field(
        default=None, description="the name of the body it was forwarded to, as the citizen's notice gave it"
    )


class ApplicantOut(BaseModel):
    """R12 (APPC Art. 63): who wrote a formal appeal."""

    name: str | None
    iin: str | None
    address: str | None
    consent_at: datetime | None


class MessageVersionOut(BaseModel):
    text: str
    attachments: list[dict[str, Any]]
    edited_at: datetime


class MessageOut(BaseModel):
    id: int
    direction: str
    text: str
    attachments: list[dict[str, Any]]
    sent_at: datetime
    versions: list[MessageVersionOut] = Field(description="later edits; `text` stays the original")


class EventOut(BaseModel):
    kind: str
    actor: str
    detail: dict[str, Any]
    created_at: datetime


class DeliveryOut(BaseModel):
    key: str
    purpose: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error_code: str | None
    last_error_detail: str | None
    sent_at: datetime | None
    platform_message_ids: list[str]


class AppealDetailOut(AppealOut):
    formal_appeal: str | None = Field(description="the formal appeal registered from this signal")
    merged: list[str] = Field(description="the duplicates merged into this appeal")
    applicant: ApplicantOut | None = Field(description="a formal appeal's applicant")
    messages: list[MessageOut]
    history: list[EventOut]
    deliveries: list[DeliveryOut]


class AppealPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AppealOut]


# Request bodies refuse fields they do not declare (additionalProperties: false in /openapi.json), as
# the query does: a misspelt field would otherwise be dropped without a word.
_STRICT = ConfigDict(extra="forbid")


# The legal table's statuses as the API takes them (lifecycle.py; tests/test_lifecycle.py keeps these in
# step with it): a reasoned one needs its note, in the schema itself. Three steps have actions of their
# own, because they carry more than a note: `merged` is POST …/merge (the surviving appeal), `extended` is
# POST …/extend (the head's decision and the working days added, extension.py), `forwarded` is
# POST …/forward (the outside body it goes to, forwarding.py).
OWN_ACTIONS = {"merged": "merge", "extended": "extend", "forwarded": "forward"}
PlainStatus = Literal["received", "registered", "assigned", "in_progress", "answered", "closed"]
ReasonedStatus = Literal["rejected", "hearing", "reopened"]


def _reason(description: str = "") -> Any:
    """A reason: at least one non-space character, so a decision without one is the schema's own 422."""
    return Field(min_length=1, max_length=4000, pattern=r"\S", description=description or None)


class StatusChange(BaseModel):
    model_config = _STRICT
    status: PlainStatus = Field(examples=["in_progress"])
    note: str | None = Field(default=None, max_length=4000, description="shown to the citizen")


class ReasonedStatusChange(BaseModel):
    """A reasoned decision (R6, a refusal, a reopening): the citizen is told the reason."""

    model_config = _STRICT
    status: ReasonedStatus = Field(examples=["rejected"])
    note: str = _reason("the reason, shown to the citizen")


class ReplyIn(BaseModel):
    model_config = _STRICT
    # At least one non-space character: an empty answer is refused by the schema, not later.
    text: str = Field(min_length=1, max_length=20000, pattern=r"\S")
    status: PlainStatus | None = Field(default=None, description="optionally change the status in one step")


class UnitChange(BaseModel):
    model_config = _STRICT
    unit: str = Field(min_length=1, max_length=CODE_LENGTH, description="unit code from config/org.toml")


class StaffAppealIn(BaseModel):
    """An appeal taken on the phone line or at the reception, registered by the token's user (who is
    recorded as the person who accepted it and named on the receipt). At least one of `email`, `phone`,
    `address`. The IIN is taken in the workspace form only: its check digit cannot be said in a schema."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [{"required": ["email"]}, {"required": ["phone"]}, {"required": ["address"]}]
        },
    )
    channel: Literal["phone", "reception"]
    text: str = Field(min_length=1, max_length=TEXT_LIMIT, pattern=r"\S", description="the citizen's words")
    kind: Category = Category.OTHER
    name: str = Field(
        min_length=1, max_length=NAME_LIMIT, pattern=r"\S", description="surname, name, patronymic"
    )
    address: str = Field(default="", max_length=2000, pattern=r"\S", description="postal address")
    email: str = Field(default="", max_length=254, pattern=EMAIL_PATTERN, description="notices go here")
    phone: str = Field(default="", max_length=32, pattern=PHONE_PATTERN)
    unit: str = Field(default="", max_length=CODE_LENGTH, description="unit code (officers: one of theirs)")
    consent: Literal[True] = Field(description="the citizen agrees to the processing of their personal data")


class StaffAppealOut(BaseModel):
    appeal: AppealOut
    receipt: str = Field(description="the receipt's path: PDF, or ?format=html for a page to print")


class ReturnIn(BaseModel):
    model_config = _STRICT
    comment: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="why it goes back")


class ApprovalOut(BaseModel):
    number: str
    created_at: datetime
    as_deputy: bool = Field(description="the caller approves as the deputy acting for the head")


class UnitStatsOut(BaseModel):
    unit: str | None
    name: str
    rated: int = Field(description="answers whose citizen said whether the problem was solved")
    solved: int
    share_solved: float | None


class ExtensionIn(BaseModel):
    model_config = _STRICT
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="told to the citizen (R4)")
    working_days: int = Field(ge=1, le=250, description="working days added to the present due date")


class ActionOut(BaseModel):
    appeal: AppealOut
    event: EventOut


class OutsideBodyIn(BaseModel):
    """One of config/org.toml's outside bodies by its code (the citizen's notice names it as the file does,
    in their language), or `other` with the organisation's name."""

    model_config = _STRICT
    code: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        examples=["agriculture", "other"],
        description="an [[outside_body]] code of config/org.toml, or `other`",
    )
    name: str = Field(
        default="",
        max_length=300,
        description="for `other`: the organisation's name as the citizen reads it (a listed body's: unused)",
    )


class ForwardActionIn(BaseModel):
    """R5 (APPC Art. 65): forward the appeal to the competent body, telling the citizen where and why."""

    model_config = _STRICT
    body: OutsideBodyIn = Field(description="the outside body it goes to")
    reason: str = _reason("told to the citizen")


class ApplicantIn(BaseModel):
    """R12 data as the schema can say it; the rest (the IIN's date and check digit, a name of letters) is
    checked as the bot checks a citizen's answers, and a refusal is 409 naming the field and the reason."""

    model_config = _STRICT
    name: str = Field(max_length=300, pattern=r"\S\s+\S", description="surname, name and patronymic")
    iin: str = Field(pattern=r"^[0-9]{12}$", description="12 digits; the check digit is verified")
    address: str = Field(min_length=10, max_length=500, pattern=r"\S\s+\S", description="postal address")
    consent: Literal[True] = Field(description="the citizen consented to processing personal data (Law 94-V)")


class InformationalIn(BaseModel):
    model_config = _STRICT
    decision: Literal["informational"]
    reason: str = _reason("why it is not a formal appeal")
    text: str = Field(min_length=1, max_length=20000, pattern=r"\S", description="the answer sent")


class FormalIn(BaseModel):
    """Without `applicant`: the bot asks the citizen for the R12 data in their chat (where the channel can
    hold a dialogue; elsewhere 409); with it: the formal appeal is registered at once."""

    model_config = _STRICT
    decision: Literal["formal"]
    reason: str = Field(default="", max_length=4000)
    applicant: ApplicantIn | None = Field(default=None, description="the R12 data, if known")


class ForwardIn(BaseModel):
    model_config = _STRICT
    decision: Literal["forward"]
    reason: str = _reason("told to the citizen")
    body: OutsideBodyIn = Field(description="the outside body (R5)")


class SpamIn(BaseModel):
    model_config = _STRICT
    decision: Literal["spam"]
    reason: str = _reason()


TriageIn = Annotated[InformationalIn | FormalIn | ForwardIn | SpamIn, Field(discriminator="decision")]


class TriageOut(BaseModel):
    appeal: AppealOut
    event: EventOut
    formal_appeal: AppealOut | None = Field(description="formal: the appeal registered now, if any")
    collecting: bool = Field(description="formal: the bot is asking the citizen for the data")


class MergeIn(BaseModel):
    model_config = _STRICT
    into: str = Field(min_length=1, max_length=NUMBER_LENGTH, description="the appeal that carries on")
    reason: str = _reason("shown to the citizen")


class IntakeGapOut(BaseModel):
    channel: str
    account: str
    detected_at: datetime
    reason: str = Field(description="e.g. vk.longpoll_failed_1: the platform said events may be lost")
    cursor_before: str | None
    cursor_after: str | None
    detail: str


def build_api_router(runtime: AppParts) -> APIRouter:
    engine: Engine = runtime.engine
    workflow: Workflow = runtime.workflow
    router = APIRouter(tags=["appeals"], responses=COMMON_ERRORS, dependencies=[Depends(_known_query_only)])
    bodies = org.outside_bodies(runtime.settings.config_dir)  # the ones a forwarding may name (R5)

    @router.get("/appeals", response_model=AppealPage)
    def list_appeals(
        viewer: ApiViewer,
        s: Db,
        status: Code = None,
        channel: Code = None,
        category: Code = None,
        unit: Code = None,
        overdue: bool | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> AppealPage:
        """Appeals in the caller's scope (an officer: their unit and its sub-units), newest first."""
        query = select(Appeal).where(appeal_scope(viewer))
        if status:
            query = query.where(Appeal.status == status)
        if channel:
            query = query.where(Appeal.channel == channel)
        if category:
            query = query.where(Appeal.category == category)
        if unit:
            query = query.join(Unit, col(Unit.id) == Appeal.unit_id).where(Unit.code == unit)
        if overdue is not None:
            query = query.where(Appeal.overdue == overdue)
        if q:
            # The inbox's full-text search (appeal_query): any case, Kazakh and Russian, both databases.
            query = query.where(text_condition(s, q))
        total = s.exec(select(func.count()).select_from(query.subquery())).one()
        rows = s.exec(query.order_by(col(Appeal.id).desc()).offset(offset).limit(limit)).all()
        return AppealPage(total=total, limit=limit, offset=offset, items=[_appeal_out(s, a) for a in rows])

    def write_view(viewer: Viewer, number: str, token: str | None, address: str, confidential: bool) -> None:
        detail: dict[str, object] = {"via": "api", "token": token}
        if confidential:
            detail["confidential"] = True
        with unit_of_work(engine) as s:
            audit.record(
                s, actor=viewer.actor, action="appeal.view", subject=number, detail=detail, address=address
            )

    def record_view(viewer: Viewer, number: str, token: str | None, address: str) -> None:
        try:
            write_view(viewer, number, token, address, False)
        except SQLAlchemyError as exc:  # after the answer: nobody to tell but the log
            throttled(
                log, failure_kind("api.audit_view", exc), "could not record an API view: %s", describe(exc)
            )

    @router.get("/appeals/{number}", response_model=AppealDetailOut, responses=NOT_FOUND)
    def get_appeal(
        number: Number, viewer: ApiViewer, s: Db, request: Request, background: BackgroundTasks
    ) -> AppealDetailOut:
        appeal = visible_appeal(s, viewer, number)
        # Every view is in the audit log. Written after the answer: an API read must not wait for
        # SQLite's writer (tests/test_sqlite_reads.py), so a view during a database outage can be lost
        # (logged).
        address = client_address(request, runtime.settings)
        token_name = getattr(request.state, "token_name", None)
        if appeal.confidential:
            # A confidential reporter's case (corruption.py): no answer without its record in the log
            # (Criminal Code: every view of a reporter's identity is logged), so it is written first.
            write_view(viewer, appeal.number, token_name, address, True)
        else:
            background.add_task(record_view, viewer, appeal.number, token_name, address)
        messages = s.exec(
            select(Message).where(Message.appeal_id == appeal.id).order_by(col(Message.id))
        ).all()
        versions = s.exec(
            select(MessageVersion)
            .where(col(MessageVersion.message_id).in_([m.id for m in messages]))
            .order_by(col(MessageVersion.edited_at))
        ).all()
        events = s.exec(
            select(AppealEvent).where(AppealEvent.appeal_id == appeal.id).order_by(col(AppealEvent.id))
        ).all()
        deliveries = s.exec(
            select(OutboxItem).where(OutboxItem.appeal_id == appeal.id).order_by(col(OutboxItem.id))
        ).all()
        return AppealDetailOut(
            **_appeal_out(s, appeal).model_dump(),
            formal_appeal=(formal := formal_appeal_of(s, appeal)) and formal.number,
            merged=[m.number for m in merging.merged_into(s, appeal)],
            applicant=ApplicantOut(
                name=appeal.applicant_name,
                iin=appeal.applicant_iin,
                address=appeal.applicant_address,
                consent_at=appeal.consent_at,
            )
            if appeal.formal
            else None,
            messages=[
                MessageOut(
                    id=m.id or 0,
                    direction=m.direction,
                    text=m.text,
                    attachments=m.attachments,
                    sent_at=m.sent_at,
                    versions=[
                        MessageVersionOut(text=v.text, attachments=v.attachments, edited_at=v.edited_at)
                        for v in versions
                        if v.message_id == m.id
                    ],
                )
                for m in messages
            ],
            history=[_event_out(e) for e in events],
            deliveries=[DeliveryOut.model_validate(d, from_attributes=True) for d in deliveries],
        )

    @router.get("/intake-gaps", response_model=list[IntakeGapOut], tags=["channels"], responses=FORBIDDEN)
    def list_intake_gaps(
        viewer: ApiViewer, s: Db, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> list[IntakeGapOut]:
        """Windows in which a platform reported that events may have been lost, newest first: messages
        written then must be looked up on the platform by hand (the project office's job: officers 403)."""
        if viewer.role == Role.OFFICER:
            raise Forbidden("intake gaps concern every channel: for moderators, auditors and admins")
        rows = s.exec(select(IntakeGap).order_by(col(IntakeGap.id).desc()).limit(limit)).all()
        return [IntakeGapOut.model_validate(r, from_attributes=True) for r in rows]

    def attachment_of(
        viewer: Viewer, number: str, message_id: int, index: int
    ) -> tuple[Appeal, dict[str, Any]]:
        with read_session(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            message = s.get(Message, message_id)
            if message is None or message.appeal_id != appeal.id:
                raise NotFound(f"message {message_id} is not part of appeal {number}")
            if not 0 <= index < len(message.attachments):
                raise NotFound(f"message {message_id} has no attachment {index}")
            return appeal, message.attachments[index]

    @router.get(
        "/appeals/{number}/messages/{message_id}/attachments/{index}",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}},
            **NOT_FOUND,
            409: {**_ERROR, "description": "this kind of attachment holds no file"},
            502: {**_ERROR, "description": "the platform refused the file or could not be reached"},
        },
    )
    async def get_attachment(
        number: Number,
        message_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        index: Annotated[int, Path(ge=0, le=1000)],
        viewer: ApiViewer,
    ) -> FileResponse:
        """A citizen's file, fetched from the platform on first request and kept in local storage
        (platform file links expire)."""
        # The database part is blocking: it runs in the thread pool, never on the event loop.
        appeal, attachment = await run_in_threadpool(attachment_of, viewer, number, message_id, index)
        connector = runtime.connectors.get(appeal.channel)
        download = getattr(connector, "download_file", None)
        if download is None or not attachment.get("file_id"):
            raise NoFile(f"{attachment.get('kind')} attachments of {appeal.channel} hold no file")
        try:
            path: FilePath = await download(attachment["file_id"])
        except Exception as exc:  # the platform refused or is unreachable: say so, keep nothing
            raise UpstreamFailed(f"could not fetch the file from {appeal.channel}: {exc}") from None
        return FileResponse(
            path,
            media_type=attachment.get("mime_type") or "application/octet-stream",
            filename=attachment.get("name") or path.name,
        )

    @router.post("/appeals/{number}/status", response_model=ActionOut, responses=ACTION_ERRORS)
    def change_status(
        number: Number, body: StatusChange | ReasonedStatusChange, viewer: ApiWriter, request: Request
    ) -> ActionOut:
        """Take a step of the legal table. `merged`, `extended` and `forwarded` are not taken here: each is
        its own action (POST …/merge, …/extend, …/forward), since it carries more than a note."""
        who = _actor(request, viewer)
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            event = appeal_actions.change_status(
                workflow, s, appeal, body.status, reason=body.note or "", actor=who
            )
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    @router.post("/appeals/{number}/reply", response_model=ActionOut, responses=ACTION_ERRORS)
    def reply(number: Number, body: ReplyIn, viewer: ApiWriter, request: Request) -> ActionOut:
        who = _actor(request, viewer)
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            if answers.needs_approval(workflow, appeal):
                # Four eyes (answers.py): the answer to a formal appeal is a draft for the unit's head; it
                # goes out, and the appeal becomes answered, when they approve it (.../answer/approve).
                answers.save_draft(s, workflow, appeal, body.text, viewer=viewer)
                if body.status and body.status not in (appeal.status, AppealStatus.ANSWERED):
                    workflow.change_status(s, appeal, body.status, actor=who)
                return ActionOut(
                    appeal=_appeal_out(s, appeal), event=_event_out(answers.last_event(s, appeal))
                )
            event = workflow.reply(s, appeal, body.text, actor=who)
            if body.status and body.status != appeal.status:
                appeal_actions.change_status(workflow, s, appeal, body.status, reason="", actor=who)
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    @router.post("/appeals/{number}/answer/approve", response_model=ActionOut, responses=ACTION_ERRORS)
    def approve_answer(number: Number, viewer: ApiWriter) -> ActionOut:
        """The unit head (or the deputy acting for them today) approves the waiting answer: it goes out."""
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            answers.approve(s, workflow, answers.pending_id(s, appeal), viewer=viewer)
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(answers.last_event(s, appeal)))

    @router.post("/appeals/{number}/answer/return", response_model=ActionOut, responses=ACTION_ERRORS)
    def return_answer(number: Number, body: ReturnIn, viewer: ApiWriter) -> ActionOut:
        """Back to its author with a comment; nothing is sent to the citizen."""
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            answers.return_draft(
                s, workflow, answers.pending_id(s, appeal), viewer=viewer, comment=body.comment
            )
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(answers.last_event(s, appeal)))

    @router.get("/approvals", response_model=list[ApprovalOut])
    def approvals(viewer: ApiViewer, s: Db) -> list[ApprovalOut]:
        """The answers waiting for the caller's approval today (as head, or as the acting deputy)."""
        today = datetime.now(workflow.calendar.tz).date()
        return [
            ApprovalOut(number=p.number, created_at=p.created_at, as_deputy=p.deputy)
            for p in answers.pending_approvals(s, viewer.user_id, today)
            if viewer.sees_unit(p.unit_id)
        ]

    @router.get("/units/stats", response_model=list[UnitStatsOut])
    def unit_stats(viewer: ApiViewer, s: Db) -> list[UnitStatsOut]:
        """Per unit: answers the citizen rated (solved or not) and the share solved (feedback.py)."""
        return [
            UnitStatsOut(unit=u.code, name=u.name, rated=u.asked, solved=u.solved, share_solved=u.share)
            for u in feedback.solved_by_unit(s)
            if viewer.sees_unit(u.unit_id)
        ]

    @router.post("/appeals/{number}/extend", response_model=ActionOut, responses=ACTION_ERRORS)
    def extend(number: Number, body: ExtensionIn, viewer: ApiWriter, request: Request) -> ActionOut:
        """R4: extend the term by the head's reasoned decision. Only the acting head of the appeal's unit
        (the token's user) or an admin; the total is capped (config/terms.toml [extension]); the citizen's
        notice is owed at once and watched for 3 working days."""
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            event = extension.extend(
                s,
                workflow,
                appeal,
                viewer=viewer,
                reason=body.reason,
                working_days=body.working_days,
                now=utcnow(),
            )
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    @router.post("/appeals/{number}/unit", response_model=ActionOut, responses=ACTION_ERRORS)
    def change_unit(number: Number, body: UnitChange, viewer: ApiWriter, request: Request) -> ActionOut:
        """Assign the appeal to a unit. An officer may assign only within their own unit's sub-tree;
        forwarding to another department is the project office's (moderators') decision."""
        who = _actor(request, viewer)
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            if viewer.unit_ids is not None:
                target = s.exec(select(Unit.id).where(Unit.code == body.unit)).first()
                if target is None:
                    raise UnknownUnit(f"unknown unit {body.unit!r}")
                if target not in viewer.unit_ids:
                    raise Forbidden(
                        f"unit {body.unit} is outside your unit: ask the project office to forward"
                    )
            event = workflow.assign_unit(s, appeal, body.unit, actor=who)
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    @router.post(
        "/appeals",
        response_model=StaffAppealOut,
        status_code=201,
        responses={
            **FORBIDDEN,
            404: {**_ERROR, "description": "no such unit"},
            422: {**_ERROR, "description": "a field is wrong: `errors` names each"},
        },
    )
    def register_staff_appeal(body: StaffAppealIn, viewer: ApiWriter, at: Now) -> Response:
        """Register an appeal taken by phone or at the reception (the workspace's /appeals/new)."""
        form = StaffAppealForm.from_mapping(body.model_dump(mode="json"))
        appeal, errors = register_from_form(runtime, viewer, form, now=at)
        # The unit's refusals are those of the other unit actions: unknown 404, not the officer's 403.
        if errors.get("unit") == ERRORS["unit_unknown"]:
            raise UnknownUnit(f"unknown unit {body.unit!r}")
        if errors.get("unit"):
            raise Forbidden("officers register appeals only for their own unit and its sub-units")
        if appeal is None:
            fields = [
                FieldErrorOut(loc=["body", name], msg=msg, type="invalid") for name, msg in errors.items()
            ]
            return error_response(422, "the appeal was not registered: see errors", errors=fields)
        with read_session(engine) as s:
            out = StaffAppealOut(appeal=_appeal_out(s, appeal), receipt=f"/appeals/{appeal.number}/receipt")
        return JSONResponse(out.model_dump(mode="json"), status_code=201)

    @router.post(
        "/appeals/{number}/triage",
        response_model=TriageOut,
        responses={
            **ACTION_ERRORS,
            409: {
                **_ERROR,
                "description": "not a signal awaiting triage, R12 data the law refuses, or (forward) an "
                "outside body config/org.toml does not list",
            },
        },
    )
    def triage_signal(number: Number, body: TriageIn, viewer: ApiWriter, request: Request) -> TriageOut:
        """Decide what a signal is (informational answer, formal appeal, forwarding, spam): the project
        office's moderators and admins only. A field the decision needs, missing or wrong, is 422 with the
        field and the reason (e.g. `iin: refused (checksum)`)."""
        if viewer.role not in (Role.MODERATOR, Role.ADMIN):
            raise Forbidden("signals are triaged by the project office's moderators")
        who = _actor(request, viewer)
        given = body.applicant if isinstance(body, FormalIn) else None
        applicant = (
            triage.ApplicantForm(name=given.name, iin=given.iin, address=given.address, consent=given.consent)
            if given
            else None
        )
        text = body.text if isinstance(body, InformationalIn) else ""
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            outside = (
                forwarding.addressee(bodies, body.body.code, body.body.name)
                if isinstance(body, ForwardIn)
                else None
            )
            event = triage.triage(
                s,
                workflow,
                appeal,
                body.decision,
                actor=who,
                now=utcnow(),
                reason=body.reason,
                text=text,
                body=outside,
                applicant=applicant,
            )
            formal = formal_appeal_of(s, appeal) if body.decision == "formal" else None
            return TriageOut(
                appeal=_appeal_out(s, appeal),
                event=_event_out(event),
                formal_appeal=_appeal_out(s, formal) if formal else None,
                collecting=body.decision == "formal" and formal is None,
            )

    @router.post(
        "/appeals/{number}/forward",
        response_model=ActionOut,
        responses={
            **ACTION_ERRORS,
            409: {
                **_ERROR,
                "description": "not a legal step from the appeal's status, or config/org.toml lists no such "
                "outside body, or `other` comes without its name",
            },
        },
    )
    def forward(number: Number, body: ForwardActionIn, viewer: ApiWriter, request: Request) -> ActionOut:
        """R5: forward to an outside body (config/org.toml, or `other` with its name) with the reason; the
        appeal records where it went and the citizen's notice names the body in their language. An unknown
        code or an `other` without its name is 409. A signal's forwarding is its triage (moderators and
        admins only, as POST …/triage with decision `forward`)."""
        who = _actor(request, viewer)
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            if triage.is_signal(appeal) and viewer.role not in (Role.MODERATOR, Role.ADMIN):
                raise Forbidden("signals are triaged by the project office's moderators")
            to = forwarding.addressee(bodies, body.body.code, body.body.name)
            event = triage.forward(s, workflow, appeal, to, actor=who, reason=body.reason, now=utcnow())
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    @router.post("/appeals/{number}/merge", response_model=ActionOut, responses=ACTION_ERRORS)
    def merge_duplicate(number: Number, body: MergeIn, viewer: ApiWriter, request: Request) -> ActionOut:
        """Merge this appeal, a duplicate, into `into` (status merged); the surviving appeal lists it."""
        who = _actor(request, viewer)
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            try:
                survivor = visible_appeal(s, viewer, body.into)
            except NotFound:
                raise Conflict(f"no appeal {body.into} to merge into") from None
            event = merging.merge(workflow, s, appeal, survivor, reason=body.reason, actor=who)
            return ActionOut(appeal=_appeal_out(s, appeal), event=_event_out(event))

    return router


_query_names: dict[int, frozenset[str]] = {}


def _known_query_only(request: Request) -> None:
    """A query parameter the operation does not declare, or one given twice, is refused: `?stauts=open`
    would otherwise list every appeal as if no filter had been asked for."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names.get(id(route))
    if allowed is None:
        allowed = _query_names[id(route)] = frozenset(_declared_query(route.dependant))
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", unknown[0][:64]), "msg": "unknown query parameter", "type": "extra_forbidden"}]
        )
    # Every parameter here takes one value: `?status=open&status=closed` would silently mean the last.
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RequestValidationError(
            [{"loc": ("query", repeated[0][:64]), "msg": "given more than once", "type": "too_many_values"}]
        )


def _declared_query(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared_query(sub)
    return names


def _appeal_out(s: Session, appeal: Appeal) -> AppealOut:
    unit = s.get(Unit, appeal.unit_id) if appeal.unit_id else None
    return AppealOut(
        number=appeal.number,
        channel=appeal.channel,
        language=appeal.language,
        category=appeal.category,
        status=appeal.status,
        unit=unit.code if unit else None,
        summary=appeal.summary,
        received_at=appeal.received_at,
        registered_at=appeal.registered_at,
        due_at=appeal.due_at,
        overdue=appeal.overdue,
        answered_at=appeal.answered_at,
        formal=appeal.formal,
        triage=appeal.triage,
        signal=_number_of(s, appeal.signal_id),
        merged_into=_number_of(s, appeal.merged_into_id),
        forwarded_to=appeal.forwarded_to,
        forwarded_to_name=appeal.forwarded_to_name,
    )


def _number_of(s: Session, appeal_id: int | None) -> str | None:
    other = s.get(Appeal, appeal_id) if appeal_id is not None else None
    return other.number if other is not None else None


def _event_out(event: AppealEvent) -> EventOut:
    return EventOut(kind=event.kind, actor=event.actor, detail=event.detail, created_at=event.created_at)
