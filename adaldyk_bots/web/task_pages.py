"""What the system asks staff to do by hand: call a citizen who left no address we can write to, reach
one whose notice could not be delivered (staff_work.py writes the tasks).

GET  /tasks                 the open tasks in the viewer's scope (access.appeal_scope on the task's
                            appeal), newest first, with the words to tell the citizen and their phone
POST /tasks/{id}/done       done, with an outcome note (CSRF; auditors 403); audited and in the history
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, col, select

from adaldyk_bots import audit
from adaldyk_bots.access import Viewer, appeal_scope
from adaldyk_bots.errors import NotFound
from adaldyk_bots.i18n import N_
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, StaffTask
from adaldyk_bots.web.deps import Db, Now, PageViewer, PageWriter
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import render

__all__ = ["TASK_KINDS", "OpenTask", "appeal_tasks", "build_task_router", "open_tasks"]

TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]
OUTCOME_LIMIT = 2000
PAGE_SIZE = 200
TASK_KINDS = {
    "call_citizen": N_("Call the citizen"),
    "undelivered_notice": N_("A notice could not be delivered: reach the citizen"),
}
# Shared with the appeal page's panel (appeal_pages.DONE_MESSAGES / ERROR_MESSAGES take these codes).
MESSAGES = {
    "task": N_("The task is done."),
    "task_already": N_("Someone has already done this task."),
    "task_outcome": N_("Say what came of it (the outcome note is required)."),
}
_NUMBER = re.compile(r"[A-Za-z0-9-]{1,32}")


@dataclass(frozen=True)
class OpenTask:
    task: StaffTask
    appeal: Appeal


def open_tasks(s: Session, viewer: Viewer, *, limit: int = PAGE_SIZE) -> list[OpenTask]:
    """The open tasks on appeals the viewer may see, newest first."""
    rows = s.exec(
        select(StaffTask, Appeal)
        .join(Appeal, col(Appeal.id) == StaffTask.appeal_id)
        .where(col(StaffTask.done_at).is_(None), appeal_scope(viewer))
        .order_by(col(StaffTask.id).desc())
        .limit(limit)
    ).all()
    return [OpenTask(task, appeal) for task, appeal in rows]


def appeal_tasks(s: Session, appeal_id: int) -> list[StaffTask]:
    """Every task of one appeal (open first, then done), for the panel on the appeal page."""
    return list(
        s.exec(
            select(StaffTask)
            .where(StaffTask.appeal_id == appeal_id)
            .order_by(col(StaffTask.done_at).is_not(None), col(StaffTask.id).desc())
        )
    )


class TaskAlreadyDone(Exception):
    pass


def finish_task(s: Session, viewer: Viewer, task_id: int, outcome: str, now: datetime) -> Appeal:
    """Mark the task done by `viewer`; NotFound when it is not in their scope (like a missing one)."""
    found = s.exec(
        select(StaffTask, Appeal)
        .join(Appeal, col(Appeal.id) == StaffTask.appeal_id)
        .where(StaffTask.id == task_id, appeal_scope(viewer))
    ).first()
    if found is None:
        raise NotFound(f"task {task_id} not found")
    task, appeal = found
    if task.done_at is not None:
        raise TaskAlreadyDone(task.key)
    task.done_at, task.done_by_id, task.outcome = now, viewer.user_id, outcome
    s.add(task)
    detail = {"task": task.key, "kind": task.kind, "outcome": outcome}
    s.add(
        AppealEvent(
            appeal_id=task.appeal_id, kind="task_done", actor=viewer.actor, detail=detail, created_at=now
        )
    )
    audit.record(s, actor=viewer.actor, action="task.done", subject=appeal.number, detail=detail)
    return appeal


def build_task_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/tasks", response_class=HTMLResponse)
    def tasks_page(
        request: Request,
        viewer: PageViewer,
        s: Db,
        done: Annotated[str | None, Query(max_length=16)] = None,
        error: Annotated[str | None, Query(max_length=16)] = None,
    ) -> HTMLResponse:
        context = {
            "tasks": open_tasks(s, viewer),
            "kind_names": TASK_KINDS,
            "done": MESSAGES.get(done or ""),
            "error": MESSAGES.get(error or ""),
            "local": lambda moment: moment.astimezone(runtime.workflow.calendar.tz).strftime(
                "%d.%m.%Y %H:%M"
            ),
        }
        return render(request, "tasks.html", context)

    @router.post("/tasks/{task_id}/done")
    def task_done(
        task_id: TaskId,
        viewer: PageWriter,
        at: Now,
        outcome: Annotated[str, Form(max_length=OUTCOME_LIMIT)] = "",
        back: Annotated[str, Form(max_length=40)] = "",
    ) -> RedirectResponse:
        def to(*, done: str | None = None, error: str | None = None) -> RedirectResponse:
            # Back to the appeal page when its panel sent the form (`back` = its number), else the list.
            query = f"done={done}" if done else f"error={error}"
            if _NUMBER.fullmatch(back):
                return RedirectResponse(f"/appeals/{back}?{query}#tasks", status_code=303)
            return RedirectResponse(f"/tasks?{query}", status_code=303)

        if not outcome.strip():
            return to(error="task_outcome")
        try:
            with unit_of_work(runtime.engine) as s:
                finish_task(s, viewer, task_id, outcome.strip(), at)
        except TaskAlreadyDone:
            return to(error="task_already")
        return to(done="task")

    return router
