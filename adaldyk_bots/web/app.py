"""The ASGI application: health, platform webhooks and the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import func, select

from adaldyk_bots import __version__
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import read_session
from adaldyk_bots.storage.models import IntakeGap, OutboxItem, RawEvent
from adaldyk_bots.web.api import build_api_router
from adaldyk_bots.web.errors import install_error_handlers
from adaldyk_bots.web.limits import LimitBodySize


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Adaldyk",
        version=__version__,
        description="Citizens' appeals from social networks: intake, deadlines and answers.",
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(LimitBodySize, max_bytes=runtime.settings.max_body_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "version": __version__, "channels": {}}
        gaps: dict[str, dict[str, Any]] = {}
        try:
            with read_session(runtime.engine) as s:
                s.exec(text("SELECT 1"))  # type: ignore[call-overload]
                body["database"] = {
                    "state": "ok",
                    "quarantined_events": s.exec(
                        select(func.count()).select_from(RawEvent).where(RawEvent.state == "quarantined")
                    ).one(),
                    "failed_sends": s.exec(
                        select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "failed")
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
        except SQLAlchemyError as exc:
            body["status"] = "degraded"
            body["database"] = {"state": "down", "detail": type(exc).__name__}
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

    for connector in runtime.connectors.values():
        router = connector.webhook_router(runtime.intake)
        if router is not None:
            app.include_router(router)
    app.include_router(build_api_router(runtime), prefix="/api/v1")
    return app
