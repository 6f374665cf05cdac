"""The one webhook pipeline: handshake → verify → route → store → 2xx, for every connector's endpoints.

A connector declares `WebhookRoute`s (adaldyk_bots/ports.py) with its own handshake, verify and route
functions; this module owns everything around them, so each channel keeps the invariants without
writing them again (DESIGN.md §1):

- a 2xx only after the body is committed (IntakeSink.store, one transaction per channel and account);
- a forged request (verify says no, or raises) is 403 and nothing is stored;
- an authentic body that `route` cannot read is kept quarantined under a key made of its hash (so a
  redelivery is one row) and still answered 2xx — the platform would otherwise send it forever;
- the database down is 503, so the platform delivers again later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from adaldyk_bots.domain import Quarantined
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.ports import (
    Delivery,
    IntakeSink,
    RawEvent,
    WebhookReply,
    WebhookRequest,
    WebhookRoute,
)
from adaldyk_bots.threads import run_write

log = logging.getLogger(__name__)

__all__ = [
    "WebhookConfigError",
    "hub_signature_valid",
    "quarantined_body",
    "same_secret",
    "webhook_router",
]

A = TypeVar("A")
R = TypeVar("R")


class WebhookConfigError(ValueError):
    """Connectors declared routes that cannot be served together (stops start-up, names the path)."""


def same_secret(supplied: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time comparison of a shared secret (a header or a body field); None never matches."""
    if supplied is None:
        return False
    # surrogatepass: a JSON string may hold a lone surrogate (\ud800), which plain encode() refuses.
    a = supplied.encode("utf-8", "surrogatepass") if isinstance(supplied, str) else supplied
    b = expected.encode("utf-8", "surrogatepass") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def hub_signature_valid(
    body: bytes, header: str | None, secret: str | bytes, *, prefix: str = "sha256="
) -> bool:
    """An HMAC-SHA256 signature of the raw body, hex after `prefix` (Meta's X-Hub-Signature-256)."""
    if not header or not header.startswith(prefix):
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return same_secret(header[len(prefix) :].strip().lower(), expected)


def quarantined_body(body: bytes, reason: str) -> RawEvent:
    """An authentic body nobody could read, keyed by its hash so a redelivery is stored once."""
    return RawEvent(
        dedup_key=f"body:{hashlib.sha256(body).hexdigest()}",
        payload=body,
        outcomes=[Quarantined(reason)],
    )


def webhook_router(routes: Sequence[WebhookRoute], sink: IntakeSink) -> APIRouter:
    """One FastAPI endpoint per path, however many connectors' routes share it."""
    router = APIRouter()
    by_path: dict[str, list[WebhookRoute]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    for path, group in by_path.items():
        endpoint = _Endpoint(path, group, sink)
        methods = sorted({m for r in group for m in _methods(r)})
        router.add_api_route(path, endpoint.handle, methods=methods, include_in_schema=False)
    return router


class _Endpoint:
    def __init__(self, path: str, routes: list[WebhookRoute], sink: IntakeSink) -> None:
        if not path.startswith("/"):
            raise WebhookConfigError(f"webhook path {path!r} must start with /")
        if len(routes) > 1:
            owners = ", ".join(r.quarantine_as[0] for r in routes)
            dispatch = routes[0].dispatch
            if dispatch is None or any(r.dispatch != dispatch for r in routes):
                raise WebhookConfigError(
                    f"webhook path {path} is declared by {owners}: a shared path needs one dispatch "
                    "function given by every route"
                )
            keys = [r.key for r in routes]
            if None in keys or len(set(keys)) != len(keys):
                raise WebhookConfigError(f"webhook path {path} ({owners}): each route needs its own key")
        self.path = path
        self.routes = routes
        self.sink = sink

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        incoming = WebhookRequest(
            method=request.method, headers=request.headers, query=request.query_params, body=body
        )
        for candidate in self.routes:
            if candidate.handshake is not None and request.method in _methods(candidate):
                reply = self._guarded(candidate.handshake, incoming, None, "handshake")
                if reply is not None:
                    return _response(reply)
        if request.method != "POST":
            return Response(status_code=405)
        chosen = self._choose(body)
        deliveries: list[Delivery] | None = None  # None: the chosen route's `route` reads the body
        if chosen is not None:
            if not self._guarded(chosen.verify, incoming, False, "verify"):
                return Response(status_code=403)
            route = chosen
        else:
            # No route's key in the body (or no readable key at all): authentic if any route says so,
            # then kept for a human instead of refused.
            authentic = [r for r in self.routes if self._guarded(r.verify, incoming, False, "verify")]
            if not authentic:
                return Response(status_code=403)
            route = authentic[0]
            deliveries = [Delivery(*route.quarantine_as, quarantined_body(body, "webhook.unknown_kind"))]
        try:
            # Writes on their own threads: a burst of them must not take the pool that serves reads.
            stored = await run_write(self._route_and_store, route, body, deliveries)
        except SQLAlchemyError as exc:
            # One line a minute per kind of failure, no traceback: during an outage every request ends here.
            throttled(
                log,
                failure_kind(f"webhook {self.path}", exc),
                "webhook %s: could not store (%s); answered 503 so the platform delivers again",
                self.path,
                describe(exc),
            )
            return Response(status_code=503)
        except Exception:
            # Not stored, whatever the reason: never a 2xx, and a 503 makes the platform try again.
            log.exception("webhook %s: could not store; answered 503", self.path)
            return Response(status_code=503)
        if route.on_stored is not None:
            self._guarded(route.on_stored, stored, None, "on_stored")
        return _response(route.reply)

    def _choose(self, body: bytes) -> WebhookRoute | None:
        if len(self.routes) == 1:
            return self.routes[0]
        dispatch = self.routes[0].dispatch
        assert dispatch is not None  # checked in __init__
        key = self._guarded(dispatch, body, None, "dispatch")
        return next((r for r in self.routes if r.key == key), None)

    def _route_and_store(
        self, route: WebhookRoute, body: bytes, deliveries: list[Delivery] | None
    ) -> list[Delivery]:
        if deliveries is None:
            try:
                deliveries = list(route.route(body))
            except Exception as exc:  # route must be total; if it is not, the body is still kept
                log.exception("webhook %s: could not route an authentic body; kept quarantined", self.path)
                reason = f"webhook.route_error: {type(exc).__name__}: {exc}"[:500]
                deliveries = [Delivery(*route.quarantine_as, quarantined_body(body, reason))]
        batches: dict[tuple[str, str], list[RawEvent]] = {}
        for d in deliveries:
            batches.setdefault((d.channel, d.account), []).append(d.event)
        # Usually one batch. When a body carries several accounts each is its own transaction: if a
        # later one fails, the 503 makes the platform resend the body and the stored ones dedup.
        for (channel, account), events in batches.items():
            self.sink.store(channel=channel, account=account, events=events)
        return deliveries

    def _guarded(self, call: Callable[[A], R], arg: A, default: R, what: str) -> R:
        # Connector code runs inside the pipeline; its bug must not become a 500.
        try:
            return call(arg)
        except Exception:
            log.exception("webhook %s: the connector's %s failed", self.path, what)
            return default


def _methods(route: WebhookRoute) -> set[str]:
    return {m.upper() for m in route.methods}


def _response(reply: WebhookReply) -> Response:
    return Response(content=reply.body, status_code=reply.status, media_type=reply.media_type)
