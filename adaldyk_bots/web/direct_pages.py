"""Appeals taken on the phone line and at the reception room, and their receipts.

GET  /appeals/new               the form (moderators, officers for their unit's tree, admins; auditors 403)
POST /appeals/new               register (CSRF); errors re-render the form with what was typed kept
GET  /appeals/{number}/receipt  the R2 receipt as a PDF; `?format=html` a print-ready page

The person who took the appeal is recorded (appeal.taken_by_id, the audit event's actor) and named on the
receipt. Notices go to the e-mail the citizen gave when e-mail is on here; otherwise they become "call the
citizen" tasks (notices.py, /tasks).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from adaldyk_bots.access import Viewer, require_write, visible_appeal
from adaldyk_bots.appeal_receipt import RECEIPT_LANGUAGES, build_receipt, receipt_pdf
from adaldyk_bots.direct_intake import register_direct, reply_target
from adaldyk_bots.domain import Category
from adaldyk_bots.staff_intake import STAFF_CHANNELS, StaffAppealForm, check_form
from adaldyk_bots.storage.db import read_session, unit_of_work
from adaldyk_bots.storage.models import Appeal, Unit
from adaldyk_bots.web.appeal_pages import CATEGORY_NAMES
from adaldyk_bots.web.deps import Db, Now, PageViewer, PageWriter
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import PRIVATE_HEADERS, render, request_language

__all__ = ["build_direct_router", "register_from_form"]

Number = Annotated[str, Path(max_length=32)]


def register_from_form(
    runtime: AppParts, viewer: Viewer, form: StaffAppealForm, *, now: datetime
) -> tuple[Appeal | None, dict[str, str]]:
    """Check and register in one transaction: (the appeal, {}) or (None, {field: msgid})."""
    target = reply_target(runtime.connectors, "email", form.email) if form.email else None
    with unit_of_work(runtime.engine) as s:
        appeal_in, errors = check_form(s, viewer, form, email_target=target)
        if appeal_in is None:
            return None, errors
        appeal = register_direct(
            s, runtime.workflow, appeal_in, actor=viewer.actor, taken_by_id=viewer.user_id, now=now
        )
        s.flush()
        s.expunge(appeal)
    return appeal, {}


def _units(s: Session, viewer: Viewer, lang: str) -> list[tuple[str, str]]:
    query = select(Unit).order_by(col(Unit.code))
    if viewer.unit_ids is not None:
        query = query.where(col(Unit.id).in_(sorted(viewer.unit_ids) or [-1]))
    return [(u.code, u.name_kk if lang == "kk" else u.name_ru) for u in s.exec(query)]


def build_direct_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def form_page(
        request: Request,
        s: Session,
        viewer: Viewer,
        form: StaffAppealForm,
        errors: dict[str, str],
        status_code: int = 200,
    ) -> HTMLResponse:
        context = {
            "form": form,
            "errors": errors,
            "channels": STAFF_CHANNELS,
            "kinds": [(c.value, CATEGORY_NAMES[c.value]) for c in Category],
            "units": _units(s, viewer, request_language(request)),
            "email_on": "email" in runtime.connectors,
        }
        return render(request, "appeal_new.html", context, status_code=status_code)

    @router.get("/appeals/new", response_class=HTMLResponse)
    def new_appeal(
        request: Request,
        viewer: PageViewer,
        s: Db,
        channel: Annotated[str, Query(max_length=16)] = "phone",
    ) -> HTMLResponse:
        require_write(viewer)
        return form_page(request, s, viewer, StaffAppealForm(channel=channel), {})

    @router.post("/appeals/new", response_model=None)
    async def register(request: Request, viewer: PageWriter, at: Now) -> Response:
        raw = await request.form()
        form = StaffAppealForm.from_mapping({k: v for k, v in raw.items() if isinstance(v, str)})
        appeal, errors = await run_in_threadpool(register_from_form, runtime, viewer, form, now=at)
        if appeal is None:

            def again() -> HTMLResponse:
                with read_session(runtime.engine) as s:
                    return form_page(request, s, viewer, form, errors, status_code=422)

            return await run_in_threadpool(again)
        return RedirectResponse(f"/appeals/{appeal.number}?done=registered", status_code=303)

    @router.get("/appeals/{number}/receipt", response_model=None)
    def receipt(
        request: Request,
        number: Number,
        viewer: PageViewer,
        s: Db,
        format: Annotated[str, Query(max_length=8, pattern="^(pdf|html)$")] = "pdf",  # noqa: A002
    ) -> Response:
        appeal = visible_appeal(s, viewer, number)
        data = build_receipt(
            s,
            appeal,
            calendar=runtime.workflow.calendar,
            public_url=runtime.settings.public_url,
            phone_line=runtime.settings.phone_line,
        )
        if format == "html":
            sections = [(lang, *data.section(lang)) for lang in RECEIPT_LANGUAGES]
            return render(request, "receipt.html", {"receipt": data, "sections": sections})
        return Response(
            receipt_pdf(data),
            media_type="application/pdf",
            headers={
                **PRIVATE_HEADERS,
                "Content-Disposition": f'inline; filename="receipt-{appeal.number}.pdf"',
            },
        )

    return router
