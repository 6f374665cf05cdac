"""The auditor's page, /audit: the audit log with filters, newest first, for auditors and admins only."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from adaldyk_bots import audit
from adaldyk_bots.access import Viewer
from adaldyk_bots.i18n import N_
from adaldyk_bots.storage.db import read_session
from adaldyk_bots.storage.models import Appeal
from adaldyk_bots.web.deps import PageViewer
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import gettext_for, render

__all__ = ["AUDIT_ROLES", "build_audit_router"]

AUDIT_ROLES = frozenset({"auditor", "admin"})
PAGE_SIZE = 50

# What each action is called on the page: every action the code records (tests/test_audit_page.py walks
# the code for them); one recorded by a later version than this page is shown by its code.
ACTION_NAMES = {
    "login": N_("Logged in"),
    "login_failed": N_("Failed login"),
    "login_throttled": N_("Login refused: too many failed attempts"),
    "logout": N_("Logged out"),
    "password.change": N_("Changed their password"),
    "user.create": N_("Created a user"),
    "user.update": N_("Changed a user"),
    "user.password_reset": N_("Set a user's password"),
    "token.create": N_("Created an API token"),
    "appeal.view": N_("Opened the appeal"),
    "appeal.export": N_("Exported appeals (CSV)"),
    "appeal.register": N_("Registered an appeal"),
    "public.appeal": N_("Appeal sent through the web form"),
    "appeal.consent": N_("The citizen answered on consent to data processing"),
    "appeal.triage": N_("Triaged the signal"),
    "appeal.merge": N_("Merged a duplicate"),
    "appeal.forward": N_("Forwarded to another body"),
    "appeal.status": N_("Changed the status"),
    "appeal.reply": N_("Replied to the citizen"),
    "appeal.note": N_("Wrote an internal note"),
    "appeal.spam": N_("Marked as spam"),
    "appeal.unit": N_("Assigned a unit"),
    "appeal.assignee": N_("Assigned a person"),
    "appeal.corruption_report": N_("Marked a corruption report"),
    "appeal.extend": N_("Extended the term"),
    "appeal.overdue": N_("Became overdue"),
    "appeal.escalate": N_("Escalated to the unit's head"),
    "appeal.forwarding_late": N_("Not forwarded in time"),
    "appeal.extension_notice_late": N_("The extension notice was not delivered in time"),
    "appeal.transfers_flagged": N_("Flagged: passed between units too often"),
    "appeal.feedback": N_("The citizen rated the answer"),
    "answer.draft": N_("Wrote a draft answer"),
    "answer.approve": N_("Approved the answer"),
    "answer.return": N_("Returned the answer for rework"),
    "delivery.retry": N_("Sent a failed message again"),
    "task.done": N_("Completed a task"),
    "notice.read": N_("Read a notice"),
    "notice.read_all": N_("Marked every notice read"),
}
ACTOR_NAMES = {"system": N_("the system"), "citizen": N_("a citizen"), "cli": N_("the command line")}


def _require_auditor(viewer: Viewer) -> None:
    # Anyone else gets the same 404 as a page that does not exist: nothing here tells an officer that
    # there is something to try.
    if viewer.role not in AUDIT_ROLES:
        raise HTTPException(status_code=404)


def _date(value: str | None) -> tuple[date | None, bool]:
    if not value:
        return None, True
    try:
        return date.fromisoformat(value), True
    except ValueError:
        return None, False


def build_audit_router(parts: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/audit", response_class=HTMLResponse)
    def audit_log(request: Request, viewer: PageViewer) -> HTMLResponse:
        _require_auditor(viewer)
        _ = gettext_for(request)
        q = request.query_params
        date_from, from_ok = _date(q.get("from"))
        date_to, to_ok = _date(q.get("to"))
        filters = audit.Filters(
            actor=(q.get("actor") or "").strip(),
            action=(q.get("action") or "").strip(),
            subject=(q.get("subject") or "").strip(),
            date_from=date_from,
            date_to=date_to,
        )
        before_raw = q.get("before") or ""
        before = int(before_raw) if before_raw.isdigit() else None
        with read_session(parts.engine) as s:
            rows, next_before = audit.search(s, filters, tz=parts.settings.tz, before=before, limit=PAGE_SIZE)
            actions = audit.known_actions(s)
            hidden = _hidden_reports(s, viewer, {row.subject for row in rows if row.subject})
        rows = [row for row in rows if row.subject not in hidden]
        kept = [(k, v) for k, v in q.multi_items() if k not in ("before", "lang") and v]
        events = [
            {
                "id": row.id,
                "at": row.at.astimezone(parts.settings.tz).strftime("%Y-%m-%d %H:%M:%S"),
                "actor": _actor_label(row.actor, _),
                "actor_code": row.actor,
                "action": _action_label(row.action, _),
                "action_code": row.action,
                "subject": row.subject or "",
                "is_appeal": row.action.startswith("appeal."),
                "address": row.address or "",
                "detail": json.dumps(row.detail, ensure_ascii=False, sort_keys=True) if row.detail else "",
                "hash": row.hash[:12],
            }
            for row in rows
        ]
        return render(
            request,
            "audit.html",
            {
                "events": events,
                "filters": filters,
                "form": {k: q.get(k) or "" for k in ("actor", "action", "subject", "from", "to")},
                "bad_dates": not (from_ok and to_ok),
                "actions": [
                    (code, _(ACTION_NAMES[code]) if code in ACTION_NAMES else code) for code in actions
                ],
                "next_url": f"/audit?{urlencode([*kept, ('before', next_before)])}" if next_before else None,
                "first_url": f"/audit?{urlencode(kept)}" if before is not None else None,
            },
        )

    return router


def _hidden_reports(s: Session, viewer: Viewer, subjects: set[str]) -> set[str]:
    """The numbers among `subjects` of corruption reports hidden from this auditor's unit (corruption.py):
    their events are left out, so the log does not tell the unit that a report about it exists."""
    if not viewer.concealed or not subjects:
        return set()
    query = select(Appeal.number).where(
        col(Appeal.number).in_(sorted(subjects)), col(Appeal.concerned_unit_id).in_(sorted(viewer.concealed))
    )
    return set(s.exec(query).all())


def _actor_label(actor: str, _: Any) -> str:
    if actor in ACTOR_NAMES:
        return str(_(ACTOR_NAMES[actor]))
    return actor


def _action_label(code: str, _: Any) -> str:
    return str(_(ACTION_NAMES[code])) if code in ACTION_NAMES else code
