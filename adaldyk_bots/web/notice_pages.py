"""`/notices`: a staff member's own notices (reminders, escalations, digests, flags), newest first, with
marking read. Each also shows in the header as an unread count (web/deps.py page_viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from adaldyk_bots import staff_notices
from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.i18n import N_
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.web.deps import Db, PageViewer, PageWriter
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import render

__all__ = ["KIND_NAMES", "build_notice_router"]

# Every kind of notice the code writes (tests/test_notice_pages.py reads the code for them); a kind
# written by a later version than this page is shown by its code.
KIND_NAMES = {
    "approval": N_("an answer waits for your approval"),
    "returned": N_("your answer was returned for rework"),
    "reopened": N_("reopened: the citizen says it is not solved"),
    "reminder": N_("reminder"),
    "overdue": N_("overdue"),
    "escalation": N_("escalation"),
    "forwarding": N_("not forwarded in time"),
    "extension_notice": N_("extension notice not delivered"),
    "transfers": N_("passed between units too often"),
    "digest": N_("daily digest"),
}
MAX_ID = 2**31 - 1


def build_notice_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    calendar: WorkingCalendar = runtime.workflow.calendar

    @router.get("/notices", response_class=HTMLResponse)
    def notices_page(
        request: Request,
        viewer: PageViewer,
        s: Db,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> HTMLResponse:
        rows = staff_notices.notices_of(s, viewer.user_id, before=before)
        more = len(rows) == staff_notices.PAGE_SIZE
        context = {
            "rows": rows,
            "next_before": rows[-1][0].id if more and rows else None,
            "kind_names": KIND_NAMES,
            "local": lambda moment: moment.astimezone(calendar.tz).strftime("%d.%m.%Y %H:%M"),
        }
        return render(request, "notices.html", context)

    @router.post("/notices/{notice_id}/read")
    def read_one(notice_id: Annotated[int, Path(ge=1, le=MAX_ID)], viewer: PageWriter) -> RedirectResponse:
        with unit_of_work(runtime.engine) as s:
            staff_notices.mark_read(s, viewer.user_id, notice_id, actor=viewer.actor, now=utcnow())
        return RedirectResponse(f"/notices#notice-{notice_id}", status_code=303)

    @router.post("/notices/read-all")
    def read_all(viewer: PageWriter) -> RedirectResponse:
        with unit_of_work(runtime.engine) as s:
            staff_notices.mark_all_read(s, viewer.user_id, actor=viewer.actor, now=utcnow())
        return RedirectResponse("/notices", status_code=303)

    return router
