"""The ASGI application: health, platform webhooks and the JSON API."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from adaldyk_bots import __version__
from adaldyk_bots.health import health_report
from adaldyk_bots.supervisor import Supervisor
from adaldyk_bots.web.admission import AdmitRequests
from adaldyk_bots.web.answer_pages import build_answer_router
from adaldyk_bots.web.api import build_api_router
from adaldyk_bots.web.appeal_pages import build_appeal_router
from adaldyk_bots.web.audit_pages import build_audit_router
from adaldyk_bots.web.auth_pages import build_auth_router
from adaldyk_bots.web.deps import install_auth_handlers
from adaldyk_bots.web.direct_pages import build_direct_router
from adaldyk_bots.web.errors import install_error_handlers
from adaldyk_bots.web.health_pages import build_health_router
from adaldyk_bots.web.inbox_pages import inbox_router
from adaldyk_bots.web.limits import LimitBodySize
from adaldyk_bots.web.notice_pages import build_notice_router
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.public_pages import build_public_router, too_large_page
from adaldyk_bots.web.routing_pages import build_routing_router
from adaldyk_bots.web.task_pages import build_task_router
from adaldyk_bots.web.triage_pages import build_triage_router
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
    # The public form checks its files' sizes itself, so that a citizen gets the form back with a message.
    app.add_middleware(
        LimitBodySize,
        max_bytes=runtime.settings.max_body_bytes,
        paths={"/public/appeal": runtime.settings.public_max_request_bytes},
        refusals={"/public/appeal": too_large_page},
    )
    app.add_middleware(AdmitRequests, max_requests=runtime.settings.web_concurrent_requests)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        body, code = health_report(runtime, supervisor)
        return JSONResponse(body, status_code=code)

    # Every connector's webhook routes on the core's one pipeline; a path may serve several channels.
    routes = [route for connector in runtime.connectors.values() for route in connector.webhooks()]
    app.include_router(webhook_router(routes, runtime.intake))
    app.include_router(build_api_router(runtime), prefix="/api/v1")
    # The workspace's pages are routers of their own (web/*_pages.py), included here.
    # Before the appeal page: /appeals/new is not an appeal number.
    app.include_router(build_direct_router(runtime))
    app.include_router(build_task_router(runtime))
    app.include_router(build_appeal_router(runtime))
    app.include_router(build_answer_router(runtime))
    app.include_router(build_routing_router(runtime))
    app.include_router(build_triage_router(runtime))
    app.include_router(build_auth_router())
    app.include_router(build_health_router(runtime, supervisor=supervisor))
    app.include_router(inbox_router())
    app.include_router(build_audit_router(runtime))
    app.include_router(build_public_router(runtime))
    app.include_router(build_notice_router(runtime))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


class WebServer(uvicorn.Server):
    """uvicorn, which first runs the app's `before_shutdown` hooks when it is asked to stop."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        for hook in getattr(getattr(app, "state", None), "before_shutdown", []):
            hook()
        await super().shutdown(sockets)
