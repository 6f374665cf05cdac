"""The ASGI application: health, platform webhooks and the JSON API."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select

from adaldyk_bots import __version__
from adaldyk_bots.dispatcher import UNFINISHED
from adaldyk_bots.storage.db import read_session, utcnow
from adaldyk_bots.storage.models import IntakeGap, LoopHeartbeat, OutboxItem, RawEvent
from adaldyk_bots.supervisor import Supervisor, loops_report, read_heartbeats
from adaldyk_bots.web.api import build_api_router
from adaldyk_bots.web.appeal_pages import build_appeal_router
from adaldyk_bots.web.audit_pages import build_audit_router
from adaldyk_bots.web.auth_pages import build_auth_router
from adaldyk_bots.web.deps import install_auth_handlers
from adaldyk_bots.web.errors import install_error_handlers
from adaldyk_bots.web.inbox_pages import inbox_router
from adaldyk_bots.web.limits import LimitBodySize
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.ui import STATIC_DIR
from adaldyk_bots.webhooks import webhook_router


def create_app(runtime: AppParts, *, supervisor: Supervisor | None = None) -> FastAPI:
    """`supervisor`: the loops of this process, reported live on /healthz beside the heartbeats that
    other processes (workers) write to the database."""
    app = FastAPI(
        title="Adaldyk",
        version=__version__,
        description="Citizens' appeals from social networks: intake, deadlines and answers.",
    )
    app.state.runtime = runtime
    # Called when the server begins to stop, before it waits for open responses: long-lived ones (the
    # inbox's event streams) end themselves here, or a graceful stop would wait for them (WebServer).
    app.state.before_shutdown = []
    install_error_handlers(app)
    install_auth_handlers(app)
    app.add_middleware(LimitBodySize, max_bytes=runtime.settings.max_body_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "version": __version__, "channels": {}}
        gaps: dict[str, dict[str, Any]] = {}
        heartbeats: list[LoopHeartbeat] = []
        settings = runtime.settings
        try:
            with read_session(runtime.engine) as s:
                s.exec(text("SELECT 1"))  # type: ignore[call-overload]
                body["backlog"] = _backlog(s)
                body["database"] = {
                    "state": "ok",
                    "quarantined_events": s.exec(
                        select(func.count()).select_from(RawEvent).where(RawEvent.state == "quarantined")
                    ).one(),
                    "failed_sends": s.exec(
                        select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "failed")
                    ).one(),
                    # Waiting for a channel whose token is refused (the channel says why); not failed.
                    "held_sends": s.exec(
                        select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "held")
                    ).one(),
                }
                # Windows in which a platform said events may be lost (VK long poll failed 1/3): for
                # moderators to check by hand; they never clear by themselves.
                for channel, count, last in s.exec(
                    select(IntakeGap.channel, func.count(), func.max(IntakeGap.detected_at)).group_by(
                        IntakeGap.channel
                    )
                ):
                    last_at = last.isoformat() if last else None
                    gaps[channel] = {"recorded_gaps": count, "last_gap_at": last_at}
            own = supervisor.process_id if supervisor is not None else None
            heartbeats = read_heartbeats(runtime.engine, exclude_process=own)
        except SQLAlchemyError as exc:
            body["status"] = "degraded"
            body["database"] = {"state": "down", "detail": type(exc).__name__}
        if supervisor is not None:
            body["process"] = supervisor.process_id
        body["loops"], stale = loops_report(supervisor, heartbeats, stale_seconds=settings.loop_stale_seconds)
        backlog = body.get("backlog", {})
        old = [k for k, age in backlog.items() if age is not None and age > settings.backlog_degraded_seconds]
        if stale or old:
            body["status"] = "degraded"
        for name, connector in runtime.connectors.items():
            h = connector.health
            body["channels"][name] = {
                "state": h.state,
                "detail": h.detail,
                "last_event_at": h.last_event_at,
                **gaps.get(name, {"recorded_gaps": 0}),
                **h.extra,
            }
            if h.state in ("broken", "degraded"):
                body["status"] = "degraded"
        for name in runtime.off:
            body["channels"][name] = {"state": "off", "detail": "no credentials configured"}
        for name, reason in runtime.unavailable.items():
            body["channels"][name] = {"state": "broken", "detail": reason}
            body["status"] = "degraded"
        code = 503 if body["database"]["state"] != "ok" else 200
        return JSONResponse(body, status_code=code)

    # Every connector's webhook routes on the core's one pipeline; a path may serve several channels.
    routes = [route for connector in runtime.connectors.values() for route in connector.webhooks()]
    app.include_router(webhook_router(routes, runtime.intake))
    app.include_router(build_api_router(runtime), prefix="/api/v1")
    # The workspace's pages are routers of their own (web/*_pages.py), included here.
    app.include_router(build_appeal_router(runtime))
    app.include_router(build_auth_router())
    app.include_router(build_audit_router(runtime))
    app.include_router(inbox_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


class WebServer(uvicorn.Server):
    """uvicorn, which first runs the app's `before_shutdown` hooks when it is asked to stop."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        for hook in getattr(getattr(app, "state", None), "before_shutdown", []):
            hook()
        await super().shutdown(sockets)


def _backlog(s: Session) -> dict[str, float | None]:
    """Age in seconds of the oldest stored event not yet processed and of the oldest notice that is due
    but not sent (None: nothing waiting). Either growing means appeals or answers have stopped."""
    now = utcnow()
    oldest_event = s.exec(select(func.min(RawEvent.received_at)).where(RawEvent.state == "received")).one()
    oldest_due = s.exec(
        select(func.min(OutboxItem.next_attempt_at)).where(
            col(OutboxItem.state).in_(UNFINISHED), OutboxItem.next_attempt_at <= now
        )
    ).one()

    def age(since: datetime | None) -> float | None:
        return None if since is None else round(max(0.0, (now - _aware(since)).total_seconds()), 1)

    return {
        "oldest_unprocessed_event_seconds": age(oldest_event),
        "oldest_due_notice_seconds": age(oldest_due),
    }


def _aware(value: datetime) -> datetime:
    # Aggregates (min) come back without the column's type on SQLite: naive, but stored as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
