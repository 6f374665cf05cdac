"""A request body limit as pure ASGI middleware: oversized bodies get 413 before they are in memory.

A declared Content-Length over the limit is refused before a byte is read. A body without one
(chunked transfer) is counted as it streams in, and refused as soon as it passes the limit, so a
request never holds more than the limit plus one chunk. Six concurrent 20 MB bodies took the process
to 815 MB before this existed. A path may be given a limit of its own (`paths`): the public appeal form
carries citizens' files and checks their sizes itself, so that an over-limit file gets its message on the
form rather than a bare 413.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Answers a refused body in its own way (a page for people): (scope, receive, send, the limit).
Refusal = Callable[[Scope, Receive, Send, int], Awaitable[None]]

__all__ = ["BodyTooLarge", "LimitBodySize", "Refusal"]


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class LimitBodySize:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        paths: Mapping[str, int] | None = None,
        refusals: Mapping[str, Refusal] | None = None,
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.paths = dict(paths or {})
        self.refusals = dict(refusals or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.paths.get(scope.get("path", ""), self.default_max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            own = self.refusals.get(scope.get("path", ""))
            if own is not None:
                await own(scope, receive, send, max_bytes)
            else:
                await self._refuse(send, max_bytes)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Only reached when the app had no handler for it (a bare ASGI app); answer if we still can.
            if not started:
                await self._refuse(send, max_bytes)

    @property
    def max_bytes(self) -> int:
        return self.default_max_bytes

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body = json.dumps(
            {"detail": f"request body larger than {max_bytes} bytes", "code": "too_large", "errors": []}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                # The client is still sending; closing tells it to stop instead of keeping the socket.
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the server refuses it before we are called
    return None
