"""At most N requests of people and programs inside the app at once; the rest wait their turn without
holding anything.

Why: a request holds a pooled database connection from its first dependency to its end, but each sync
step (the session's dependency, the login check, the route) needs one of the 40 worker threads. With
more requests in flight than connections, the threads all wait for a connection while the requests
that hold the connections wait for a thread: 200 simultaneous page loads stalled for the pool's 30 s
timeout and then got 503. Admitting at most `max_requests` (below both the pool and the thread count)
keeps that from ever forming; a waiting request holds only its socket.

Not admitted: platform webhooks (their pipeline bounds itself: threads.run_write and group commit), the
live-update streams (they hold no connection while they wait for news, and a stream may last ten
minutes), static files, and /healthz (liveness must answer under load).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AdmitRequests"]

UNADMITTED_PREFIXES = ("/events/", "/static/", "/healthz", "/webhooks/")


class AdmitRequests:
    def __init__(self, app: ASGIApp, *, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop, at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(UNADMITTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_requests)
        async with self._slots:
            await self.app(scope, receive, send)
