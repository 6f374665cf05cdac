"""Four-eyes pages: the answer draft on an appeal's page, the head's approve / return buttons, and
/approvals, the list of answers waiting for the viewer's approval with each unit's share of "solved"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from adaldyk_bots import answers, feedback
from adaldyk_bots.access import Viewer, visible_appeal
from adaldyk_bots.errors import Conflict, EmptyReply, Invalid
from adaldyk_bots.org import Responsible
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import AnswerDraft, Appeal
from adaldyk_bots.web.deps import Db, PageViewer, PageWriter
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import render
from adaldyk_bots.workflow import Workflow

__all__ = ["AnswerBox", "answer_box", "build_answer_router"]

TEXT_LIMIT = answers.DRAFT_MAX_CHARS


@dataclass(frozen=True)
class AnswerBox:
    """What the appeal page shows of the four eyes: whether they apply, the waiting draft, who approves."""

    required: bool
    pending: AnswerDraft | None
    approver: Responsible | None
    may_decide: bool  # the viewer is the head (or the deputy acting today) of the appeal's unit
    drafts: list[AnswerDraft]


def answer_box(s: Session, workflow: Workflow, appeal: Appeal, viewer: Viewer) -> AnswerBox:
    today = datetime.now(workflow.calendar.tz).date()
    approver = answers.approver_of(s, appeal, today)
    return AnswerBox(
        required=answers.needs_approval(workflow, appeal),
        pending=answers.pending_draft(s, appeal),
        approver=approver,
        may_decide=approver is not None and approver.user_id == viewer.user_id,
        drafts=answers.drafts_of(s, appeal),
    )


def _back(number: str, *, done: str | None = None, error: str | None = None) -> RedirectResponse:
    query = f"?done={done}" if done else f"?error={error}" if error else ""
    return RedirectResponse(f"/appeals/{number}{query}#answer", status_code=303)


def build_answer_router(runtime: AppParts) -> APIRouter:
    engine, workflow = runtime.engine, runtime.workflow
    router = APIRouter(include_in_schema=False)

    @router.post("/appeals/{number}/answer")
    def save_draft(
        number: str, viewer: PageWriter, text: Annotated[str, Form(max_length=TEXT_LIMIT)] = ""
    ) -> RedirectResponse:
        try:
            with unit_of_work(engine) as s:
                answers.save_draft(s, workflow, visible_appeal(s, viewer, number), text, viewer=viewer)
        except EmptyReply:
            return _back(number, error="empty")
        except Conflict:
            return _back(number, error="draft")
        return _back(number, done="draft")

    @router.post("/appeals/{number}/answer/approve")
    def approve(number: str, viewer: PageWriter) -> RedirectResponse:
        # A wrong person's approval is a 403 (errors.Forbidden), a decided draft a 409: the one handler.
        with unit_of_work(engine) as s:
            appeal = visible_appeal(s, viewer, number)
            answers.approve(s, workflow, answers.pending_id(s, appeal), viewer=viewer)
        return _back(number, done="approved")

    @router.post("/appeals/{number}/answer/return")
    def return_draft(
        number: str, viewer: PageWriter, comment: Annotated[str, Form(max_length=4000)] = ""
    ) -> RedirectResponse:
        try:
            with unit_of_work(engine) as s:
                appeal = visible_appeal(s, viewer, number)
                answers.return_draft(
                    s, workflow, answers.pending_id(s, appeal), viewer=viewer, comment=comment
                )
        except Invalid:
            return _back(number, error="comment")
        return _back(number, done="returned")

    @router.get("/approvals", response_class=HTMLResponse)
    def approvals(request: Request, viewer: PageViewer, s: Db) -> HTMLResponse:
        today = datetime.now(workflow.calendar.tz).date()
        context: dict[str, Any] = {
            "pending": [
                p for p in answers.pending_approvals(s, viewer.user_id, today) if viewer.sees_unit(p.unit_id)
            ],
            "stats": [u for u in feedback.solved_by_unit(s) if viewer.sees_unit(u.unit_id)],
        }
        return render(request, "approvals.html", context)

    return router
