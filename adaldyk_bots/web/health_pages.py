"""The admins' channel health page, `GET /admin/health`: what /healthz knows (adaldyk_bots/health.py, the
same report), plus each channel's cursor, recorded gaps, failures of the last 24 h and held sends, in
words a person reads. The page refreshes its body every 10 s (htmx); an htmx request gets the body only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from adaldyk_bots.access import Viewer
from adaldyk_bots.errors import Forbidden
from adaldyk_bots.health import FAILURE_WINDOW, channel_details, health_report
from adaldyk_bots.i18n import N_
from adaldyk_bots.storage.db import as_utc, utcnow
from adaldyk_bots.supervisor import Supervisor
from adaldyk_bots.web.deps import PageViewer
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import render

__all__ = ["REFRESH_SECONDS", "build_health_router"]

REFRESH_SECONDS = 10

# What each state means, for a person (the codes stay on the page as data-state for tests and CSS).
CHANNEL_STATES = {
    "ok": N_("Working"),
    "starting": N_("Starting"),
    "degraded": N_("Degraded"),
    "broken": N_("Broken"),
    "off": N_("Off"),
}
LOOP_STATES = {
    "starting": N_("Starting"),
    "running": N_("Running"),
    "standby": N_("Standing by (another process runs it)"),
    "backing_off": N_("Waiting to restart after an error"),
    "stopped": N_("Stopped"),
    "gone": N_("Gone (its process stopped reporting)"),
}
TOKEN_STATES = {
    "accepted": N_("Accepted by the platform"),
    "refused": N_("Refused by the platform: sends are held"),
    "missing": N_("Not configured"),
    "unknown": N_("Unknown (see the state)"),
}
# The e-mail channel's SMTP side (connectors/email: health.extra["smtp"]), checked by logging in.
SMTP_STATES = {
    "unchecked": N_("Not checked yet"),
    "ok": N_("The server accepts our login"),
    "refused": N_("The server refuses to send for us: sends are held"),
    "unreachable": N_("The server does not answer; it is checked again within 5 minutes"),
}
SMTP_REFUSED = {
    "email.auth_failed": N_(
        "The server refused the login (the user or application password in ADALDYK_SMTP_URL): sends are held"
    ),
    "email.tls_failed": N_("The server's certificate is not trusted (ADALDYK_MAIL_CA_FILE?): sends are held"),
}
BACKLOG = {
    "oldest_unprocessed_event_seconds": N_("Oldest stored event not yet processed"),
    "oldest_due_notice_seconds": N_("Oldest due message not yet sent"),
}
# Extra keys a connector reports that the page shows in their own rows.
SHOWN_EXTRA = {"recorded_gaps", "last_gap_at", "username", "send_alert", "credentials", "smtp"}


def admin_only(viewer: PageViewer) -> Viewer:
    # 403 like every admin page (access.require_admin): the page is no secret, only not theirs.
    if not viewer.is_admin:
        raise Forbidden("only administrators may see the channels' health")
    return viewer


HealthViewer = Annotated[Viewer, Depends(admin_only)]


def build_health_router(parts: AppParts, *, supervisor: Supervisor | None = None) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/admin/health", response_class=HTMLResponse)
    def health_page(request: Request, _viewer: HealthViewer) -> HTMLResponse:
        report, _code = health_report(parts, supervisor)
        now = utcnow()
        details = channel_details(parts.engine, report["channels"], now=now)
        tz = parts.settings.tz
        context: dict[str, Any] = {
            "report": report,
            "channels": [
                _channel(name, report["channels"][name], details[name]) for name in sorted(report["channels"])
            ],
            "loops": sorted(report["loops"].items()),
            "backlog": [(BACKLOG[k], v) for k, v in report.get("backlog", {}).items() if k in BACKLOG],
            "channel_states": CHANNEL_STATES,
            "loop_states": LOOP_STATES,
            "token_states": TOKEN_STATES,
            "smtp_states": SMTP_STATES,
            "smtp_refused": SMTP_REFUSED,
            "window_hours": int(FAILURE_WINDOW.total_seconds() // 3600),
            "refresh_seconds": REFRESH_SECONDS,
            "checked_at": now,
            "zone": parts.settings.timezone,
            "when": lambda value: _when(value, tz),
            "age": _age,
        }
        partial = request.headers.get("hx-request") == "true"
        return render(request, "admin_health_body.html" if partial else "admin_health.html", context)

    return router


def _channel(name: str, reported: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in reported.items() if k not in {"state", "detail", "last_event_at", *SHOWN_EXTRA}}
    return {
        "name": name,
        "state": reported.get("state", "unknown"),
        "detail": reported.get("detail", ""),
        "last_event_at": reported.get("last_event_at"),
        "recorded_gaps": reported.get("recorded_gaps", len(detail["gaps"])),
        "username": reported.get("username"),
        "send_alert": reported.get("send_alert"),
        "smtp": reported.get("smtp"),
        "extra": extra,
        **detail,
    }


def _when(value: str | datetime | None, tz: Any) -> str:
    """A time in the service's zone (ADALDYK_TIMEZONE), to the second; '' for none."""
    if value is None or value == "":
        return ""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    assert isinstance(moment, datetime)
    return as_utc(moment).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> tuple[str, int] | None:
    """(unit msgid, amount) for an age in seconds, rounded to the largest sensible unit."""
    if seconds is None:
        return None
    if seconds < 120:
        return N_("%(n)s s"), int(seconds)
    if seconds < 2 * 3600:
        return N_("%(n)s min"), int(seconds // 60)
    if seconds < 2 * 86400:
        return N_("%(n)s h"), int(seconds // 3600)
    return N_("%(n)s d"), int(seconds // 86400)
