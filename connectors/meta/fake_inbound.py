"""Meta's inbound side, faked on loopback: webhook deliveries signed like Meta's, messages held back from
the webhook (so reconciliation has something to find), and the Graph calls reconciliation and the token
check make (`GET /{version}/me`, `GET /{version}/me/conversations`).

Kept apart from the outbound fake (connectors/meta/fake.py: sends, windows, error bodies) so the two
sides could be built at the same time; `FakeMetaInbound` also accepts `POST /{version}/{id}/messages`
(recorded, answered like the Send API) so a test can see acknowledgements without the outbound fake.

Wire facts it keeps (platforms.md §3): a delivery is `{"object", "entry": [...]}` serialized with
escaped unicode (`\\u0441`, json.dumps' default) and signed `X-Hub-Signature-256: sha256=<hex HMAC of
the raw body with the app secret>` (plus the legacy SHA-1 header); up to 1000 items per POST; Graph
errors as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer

__all__ = ["FakeMetaInbound", "HeldMessage", "sign_body", "webhook_body"]

OBJECT = {"facebook": "page", "instagram": "instagram", "whatsapp": "whatsapp_business_account"}


def sign_body(body: bytes, secret: str) -> dict[str, str]:
    """Meta's two signature headers over the exact bytes sent."""
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


def webhook_body(channel: str, account: str, items: list[dict[str, Any]], *, per_entry: int = 1) -> bytes:
    """A delivery as Meta sends it: items grouped into entries, escaped unicode (never UTF-8 raw)."""
    entries = []
    kind = "changes" if channel == "whatsapp" or "field" in (items[0] if items else {}) else "messaging"
    for start in range(0, len(items), per_entry):
        entries.append(
            {
                "id": account,
                "time": int(datetime.now(UTC).timestamp() * 1000),
                kind: items[start : start + per_entry],
            }
        )
    return json.dumps({"object": OBJECT[channel], "entry": entries}).encode("ascii")


def messaging_item(sender: str, account: str, mid: str, text: str, at_ms: int) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": account},
        "timestamp": at_ms,
        "message": {"mid": mid, "text": text},
    }


@dataclass
class HeldMessage:
    """A citizen's message in a conversation; `delivered` says whether the webhook carried it."""

    mid: str
    sender: str
    text: str
    at: datetime
    delivered: bool = False


@dataclass
class _Account:
    channel: str
    account: str
    token: str
    token_expired: bool = False
    messages: list[HeldMessage] = field(default_factory=list)


class FakeMetaInbound(LoopbackServer):
    """Graph's read side for reconciliation and token checks, plus a webhook sender."""

    def __init__(self, *, app_secret: str, version: str = "v23.0", port: int = 0) -> None:
        super().__init__(port=port, name="fake-meta-inbound")
        self.app_secret = app_secret
        self.version = version
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}  # by token
        self._ids = itertools.count(1)
        self.sent: list[dict[str, Any]] = []  # POST .../messages bodies, in order
        self.calls: list[tuple[str, str]] = []  # (method, path) of every Graph call
        self.app = Starlette(
            routes=[
                Route(f"/{version}/me", self._me, methods=["GET"]),
                Route(f"/{version}/me/conversations", self._conversations, methods=["GET"]),
                Route(f"/{version}/{{node}}/conversations", self._conversations, methods=["GET"]),
                Route(f"/{version}/{{node}}/messages", self._send, methods=["POST"]),
            ]
        )

    @property
    def graph_url(self) -> str:
        return f"{self.url}/{self.version}"

    # --- set-up ---------------------------------------------------------------------------------------

    def add_account(self, channel: str, account: str, token: str) -> None:
        with self._lock:
            self._accounts[token] = _Account(channel, account, token)

    def expire_token(self, token: str) -> None:
        with self._lock:
            self._accounts[token].token_expired = True

    def citizen_writes(
        self, token: str, sender: str, text: str, *, deliver: bool = True, mid: str | None = None
    ) -> HeldMessage:
        """A message into the account's conversation with `sender`; `deliver=False` holds it back from
        the webhook (Meta's silent loss), so only the Conversations API shows it."""
        message = HeldMessage(mid or f"m_fake_{next(self._ids)}", sender, text, datetime.now(UTC))
        with self._lock:
            self._accounts[token].messages.append(message)
        if deliver:
            self.deliver(token, [message])
        return message

    # --- webhook deliveries ---------------------------------------------------------------------------

    webhook_url: str | None = None

    def deliver(self, token: str, messages: list[HeldMessage], *, per_entry: int = 1) -> httpx.Response:
        """POST the messages to the webhook as one signed body, like Meta."""
        assert self.webhook_url, "set webhook_url first"
        account = self._accounts[token]
        items = [
            messaging_item(m.sender, account.account, m.mid, m.text, int(m.at.timestamp() * 1000))
            for m in messages
        ]
        body = webhook_body(account.channel, account.account, items, per_entry=per_entry)
        answer = httpx.post(
            self.webhook_url,
            content=body,
            headers={"Content-Type": "application/json", **sign_body(body, self.app_secret)},
        )
        if answer.status_code == 200:
            for m in messages:
                m.delivered = True
        return answer

    # --- Graph ----------------------------------------------------------------------------------------

    def _who(self, request: Request) -> _Account | JSONResponse:
        return self._who_by_token(request.query_params.get("access_token", ""))

    def _who_by_token(self, token: str) -> _Account | JSONResponse:
        """The token's account, or Graph's own 190 error body (expired: 401 with subcode 463)."""
        account = self._accounts.get(token)
        if account is None or account.token_expired:
            subcode = 463 if account is not None else None
            body: dict[str, Any] = {
                "message": "Error validating access token: Session has expired."
                if account is not None
                else "Invalid OAuth access token - Cannot parse access token",
                "type": "OAuthException",
                "code": 190,
                "fbtrace_id": "AfakeTrace0001",
            }
            if subcode:
                body["error_subcode"] = subcode
            return JSONResponse({"error": body}, status_code=400 if account is None else 401)
        return account

    async def _me(self, request: Request) -> JSONResponse:
        self.calls.append(("GET", request.url.path))
        who = self._who(request)
        if isinstance(who, JSONResponse):
            return who
        return JSONResponse({"id": who.account, "name": f"Fake {who.channel} account"})

    async def _conversations(self, request: Request) -> JSONResponse:
        """`GET /me/conversations?platform=…&fields=messages{id,message,from,created_time}`: the
        account's threads, newest first, each with its recent messages."""
        self.calls.append(("GET", request.url.path))
        who = self._who(request)
        if isinstance(who, JSONResponse):
            return who
        platform = request.query_params.get("platform")
        wanted = {"facebook": "messenger", "instagram": "instagram"}.get(who.channel)
        if platform != wanted:
            error = {
                "message": f"(#100) Invalid platform {platform!r}",
                "type": "OAuthException",
                "code": 100,
            }
            return JSONResponse({"error": {**error, "fbtrace_id": "AfakeTrace0002"}}, status_code=400)
        with self._lock:
            threads: dict[str, list[HeldMessage]] = {}
            for m in who.messages:
                threads.setdefault(m.sender, []).append(m)
        data = [
            {
                "id": f"t_{sender}",
                "messages": {
                    "data": [
                        {
                            "id": m.mid,
                            "message": m.text,
                            "from": {"id": m.sender},
                            "created_time": m.at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                        }
                        for m in reversed(found)
                    ]
                },
            }
            for sender, found in threads.items()
        ]
        return JSONResponse({"data": data})

    async def _send(self, request: Request) -> JSONResponse:
        self.calls.append(("POST", request.url.path))
        # Graph's form body (facebook-sdk posts urlencoded fields; nested ones as JSON strings).
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        token = form.get("access_token") or request.query_params.get("access_token") or ""
        who = self._who_by_token(token)
        if isinstance(who, JSONResponse):
            return who
        fields = {k: str(v) for k, v in form.items() if k != "access_token"}
        with self._lock:
            self.sent.append({"path": request.url.path, **fields})
            number = next(self._ids)
        if who.channel == "whatsapp":
            to = (
                json.loads(fields.get("to", '""'))
                if fields.get("to", "").startswith('"')
                else fields.get("to")
            )
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": f"wamid.fake{number}"}],
                }
            )
        recipient = json.loads(fields.get("recipient", "{}"))
        return JSONResponse({"recipient_id": recipient.get("id", ""), "message_id": f"m_out_{number}"})
