"""A fake Graph API on loopback for Facebook, Instagram and WhatsApp, with Meta's real envelopes.

What it reproduces, because our code depends on it (platforms.md §3-7; each rule notes its source):
- error bodies `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` [P] graph-api/guides/
  error-handling, with the HTTP statuses Meta uses: 400 for most OAuthExceptions (190 included, [S] every
  public report of "Error validating access token"), 403 for Instagram's window error ([S] composio #3604:
  code 10 / 2534022, "IGApiException", HTTP 403), 500 for code 2 ([S] php-graph-sdk and botkit reports);
- Send API `POST /{page-id}/messages`, `/me/messages`, Instagram Login `/{ig-account-id}/messages`:
  `{"recipient_id", "message_id"}`; the 24 h standard window (messaging_type RESPONSE) and 7 days with
  MESSAGE_TAG + HUMAN_AGENT, only for an app holding that permission, else (#10) 2018278 / 2534022 (§4b, §5b);
  Messenger text ≤ 2000 characters, Instagram ≤ 1000 UTF-8 bytes (error 100 beyond);
- private replies (`recipient.comment_id`): one per comment, within 7 days; the second answers (#10900)
  "Activity already replied to" [S] public client code (§4b "Only one message can be sent");
- public replies `POST /{comment-id}/comments` (Facebook) and `POST /{ig-comment-id}/replies` (Instagram) [P];
- WhatsApp `POST /{phone-number-id}/messages` (text, template): `{"messaging_product", "contacts", "messages":
  [{"id": "wamid..."}]}`; outside the 24 h service window a text is still accepted with 200 and fails
  later with a `statuses` webhook (131047), as Cloud API does (§7b); templates only if approved;
- rate limits: 300 sends/s per Page, 100/s per Instagram account (the lower of Meta's two figures), 80/s per
  WhatsApp number, WhatsApp pair limit; answered with 613 / 130429 / 131056 and recorded in `violations`;
- `GET /me` (token check), `GET /{page-id|ig-id|me}/conversations?platform=` with messages and their ids
  (for reconciliation; paced at 2 calls/s per account, §4c, error 613 beyond);
- webhooks signed like Meta: JSON with escaped unicode (ensure_ascii), `X-Hub-Signature-256: sha256=<hex>`
  (and the legacy SHA-1 header), several entries per POST, retried until answered 2xx; a message can be
  held back (never delivered) so that reconciliation has something to find.

Faults: `fail_next(code, subcode, ...)` answers the next matching calls with an error; `lose_answer_next()`
performs a send and then answers only after `lost_answer_delay` (the client times out: a lost answer);
`expire_token(token)` makes every call with it answer 190.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer

__all__ = ["FakeGraph", "GraphFault", "sign"]

DAY = 86400.0
WINDOW_SECONDS = DAY
HUMAN_AGENT_SECONDS = 7 * DAY
PRIVATE_REPLY_SECONDS = 7 * DAY
SEND_RATES = {"facebook": 300, "instagram": 100, "whatsapp": 80}  # per second per account (§4c, §5c, §7c)
CONVERSATIONS_PER_SECOND = 2  # Conversations API, per account (§4c, §5c)
PAIR_LIMIT, PAIR_SECONDS = 10, 60.0  # WhatsApp business/user pair (UNCONFIRMED-primary, §7c)
TEXT_LIMITS = {"facebook": 2000, "whatsapp": 4096}
INSTAGRAM_TEXT_BYTES = 1000


def sign(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` value: HMAC-SHA256 of the exact bytes with the app secret (§3b)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def meta_json(obj: Any) -> bytes:
    """Meta's webhook body: non-ASCII escaped as \\uXXXX with lowercase hex (§3b), compact separators."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


@dataclass
class GraphFault(Exception):
    code: int
    message: str
    subcode: int | None = None
    http_status: int = 400
    type: str = "OAuthException"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "fbtrace_id": base64.b64encode(secrets.token_bytes(8)).decode().rstrip("="),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return {"error": error}


# Real message texts (platforms.md §3d, §4b, §5b, §7b); tests never read them, our code neither.
def _fault(code: int, subcode: int | None = None, *, channel: str = "facebook") -> GraphFault:
    known: dict[int, tuple[str, int]] = {
        1: ("An unknown error occurred", 500),
        2: ("An unexpected error has occurred. Please retry your request later.", 500),
        4: ("(#4) Application request limit reached", 400),
        10: ("(#10) This message is sent outside of allowed window.", 400),
        17: ("(#17) User request limit reached", 400),
        32: ("(#32) Page request limit reached", 400),
        100: ("(#100) Invalid parameter", 400),
        190: ("Error validating access token: Session has expired.", 400),
        200: ("(#200) Permissions error", 403),
        230: ("(#230) Requires pages_messaging permission to manage the object", 403),
        341: ("(#341) Application limit reached", 400),
        368: ("(#368) The action attempted has been deemed abusive or is otherwise disallowed", 400),
        551: ("(#551) This person isn't available right now.", 400),
        613: ("(#613) Calls to this api have exceeded the rate limit.", 400),
        1200: ("(#1200) Temporary send message failure. Please try again later", 500),
        10900: ("(#10900) Activity already replied to", 400),
        130429: ("(#130429) Rate limit hit", 400),
        131056: ("(#131056) (Business Account, Consumer Account) pair rate limit hit", 400),
        132001: ("(#132001) Template name does not exist in the translation", 404),
    }
    message, status = known.get(code, (f"(#{code}) Error", 400))
    kind = "OAuthException"
    if channel == "instagram" and code == 10:
        status, kind = 403, "IGApiException"  # composio #3604: the IG window error with 403
    return GraphFault(code, message, subcode, status, kind)


@dataclass
class _Account:
    channel: str  # facebook | instagram | whatsapp
    id: str
    token: str
    name: str
    human_agent: bool = True  # the app holds the Human Agent permission
    sends: deque[float] = field(default_factory=deque)
    conversation_reads: deque[float] = field(default_factory=deque)
    webhook_account: str = ""  # WhatsApp: the WABA id entries carry


@dataclass
class _Thread:
    account: _Account
    user_id: str
    name: str
    last_inbound: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)  # both directions, oldest first
    id: str = field(default_factory=lambda: "t_" + secrets.token_hex(8))


@dataclass
class _Comment:
    account: _Account
    id: str
    user_id: str
    name: str
    text: str
    created: float
    media_id: str
    private_replied: bool = False
    replies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Fault:
    fault: GraphFault
    count: int
    path_contains: str | None


class FakeGraph(LoopbackServer):
    """Serves /{version}/... (the Graph API) and delivers signed webhooks to `webhook_url`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "v23.0",
        app_secret: str = "fake-app-secret",  # noqa: S107 - a fake's own secret, shared with the test
        webhook_url: str = "",
        instagram_login: bool = False,
        lost_answer_delay: float = 3.0,
        webhook_retry_delay: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host=host, port=port, name="fake-graph")
        self.version = version
        self.app_secret = app_secret
        self.webhook_url = webhook_url
        self.instagram_login = instagram_login  # Instagram comment payloads in the Instagram Login shape
        self.lost_answer_delay = lost_answer_delay
        self.webhook_retry_delay = webhook_retry_delay
        self.clock = clock

        # Public records tests assert on.
        self.sent: list[dict[str, Any]] = []  # every accepted send: channel, account, to, kind, text, ...
        self.violations: list[dict[str, Any]] = []  # every rate-limit error the fake answered
        self.errors: list[dict[str, Any]] = []  # every error answered (code, subcode, status, path)
        self.calls: list[dict[str, Any]] = []  # method, path, params (no token)
        self.webhook_deliveries: list[dict[str, Any]] = []  # status, entries

        self._lock = threading.RLock()
        self._accounts: dict[str, _Account] = {}
        self._tokens: dict[str, list[_Account]] = {}
        self._expired: set[str] = set()
        self._threads: dict[tuple[str, str], _Thread] = {}  # (account id, user id)
        self._comments: dict[str, _Comment] = {}
        self._templates: dict[str, set[str]] = {}  # approved WhatsApp template -> language codes
        self._faults: deque[_Fault] = deque()
        self._lose_answers = 0
        self._fail_async: deque[int] = deque()  # WhatsApp: the next sends fail by statuses webhook
        self._outbox: deque[bytes] = deque()  # webhook bodies waiting for delivery
        self._deliverer: asyncio.Task[None] | None = None
        self._seq = itertools.count(1)
        self.app = Starlette(
            routes=[Route("/{version}/{path:path}", self._graph, methods=["GET", "POST", "DELETE"])]
        )

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What ADALDYK_GRAPH_API_URL (and _INSTAGRAM_API_URL) should be."""
        return f"{self.url}/{self.version}"

    async def _on_serving(self) -> None:
        self._deliverer = asyncio.create_task(self._deliver_loop())

    async def _on_stopped(self) -> None:
        await self._cancel_tasks([self._deliverer])
        self._deliverer = None

    # --- Python control API ----------------------------------------------------------------------------

    def add_page(self, page_id: str, token: str, *, name: str = "Экология министрлігі") -> None:
        self._add(_Account("facebook", page_id, token, name))

    def add_instagram(self, account_id: str, token: str, *, name: str = "ecology.gov.kz") -> None:
        """An Instagram professional account; `token` is the linked Page's token (Facebook Login) or the
        Instagram token (Instagram Login): `me/messages` with it sends as this account."""
        self._add(_Account("instagram", account_id, token, name))

    def add_whatsapp(self, phone_number_id: str, token: str, *, waba_id: str = "102290129340398") -> None:
        self._add(_Account("whatsapp", phone_number_id, token, "+7 717 000 0000", webhook_account=waba_id))

    def _add(self, account: _Account) -> None:
        with self._lock:
            self._accounts[account.id] = account
            self._tokens.setdefault(account.token, []).append(account)

    def set_human_agent(self, account_id: str, allowed: bool) -> None:
        with self._lock:
            self._accounts[account_id].human_agent = allowed

    def approve_template(self, name: str, languages: tuple[str, ...] = ("kk", "ru", "en")) -> None:
        with self._lock:
            self._templates.setdefault(name, set()).update(languages)

    def expire_token(self, token: str) -> None:
        with self._lock:
            self._expired.add(token)

    def renew_token(self, token: str) -> None:
        with self._lock:
            self._expired.discard(token)

    def fail_next(
        self,
        code: int,
        subcode: int | None = None,
        *,
        count: int = 1,
        path_contains: str | None = None,
        http_status: int | None = None,
        channel: str = "facebook",
    ) -> None:
        """The next `count` calls (whose path contains `path_contains`) answer this error."""
        fault = _fault(code, subcode, channel=channel)
        if http_status is not None:
            fault.http_status = http_status
        with self._lock:
            self._faults.append(_Fault(fault, count, path_contains))

    def lose_answer_next(self, count: int = 1) -> None:
        """The next `count` sends are performed, but answered only after `lost_answer_delay` seconds."""
        with self._lock:
            self._lose_answers += count

    def fail_async_next(self, code: int = 131026) -> None:
        """WhatsApp: the next send answers 200 and then fails by a `statuses` webhook with `code`."""
        with self._lock:
            self._fail_async.append(code)

    # --- citizens ----------------------------------------------------------------------------------------

    def citizen_message(
        self,
        account_id: str,
        user_id: str,
        text: str,
        *,
        name: str = "",
        at: float | None = None,
        deliver: bool = True,
    ) -> dict[str, Any]:
        """A citizen writes to the Page / Instagram account / WhatsApp number (opens its reply window).
        `at`: the platform's timestamp (seconds); `deliver=False` holds the webhook back (reconciliation
        has to find it). Returns the webhook body."""
        with self._lock:
            account = self._accounts[account_id]
            when = self.clock() if at is None else at
            thread = self._thread_of(account, user_id, name)
            thread.last_inbound = max(thread.last_inbound, when)
            mid = self._new_id(account.channel)
            thread.messages.append(
                {"id": mid, "from": user_id, "text": text, "created": when, "direction": "in"}
            )
            body = self._message_body(account, user_id, name, mid, text, when)
            if deliver:
                self._queue(body)
            return body

    def tap_choice(self, account_id: str, user_id: str, choice: str) -> dict[str, Any]:
        """The citizen taps the button `choice` under the latest message to them that offers it: a quick
        reply on Messenger / Instagram (webhook message with text = the title and quick_reply.payload,
        developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages), an interactive
        reply button on WhatsApp (messages[].type "interactive", interactive.button_reply {id, title} and
        context.id = our message, developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components).
        Returns the webhook body, queued for delivery."""
        with self._lock:
            account = self._accounts[account_id]
            ours, title = None, None
            for sent in reversed(self.sent):
                if sent["to"] != user_id or sent["account"] != account_id:
                    continue
                buttons = sent.get("quick_replies") or []
                found = [q["title"] for q in buttons if q["payload"] == choice]
                if sent.get("interactive"):
                    found = [
                        b["reply"]["title"]
                        for b in sent["interactive"]["action"]["buttons"]
                        if b["reply"]["id"] == choice
                    ]
                if found:
                    ours, title = sent["id"], found[0]
                    break
            if ours is None or title is None:
                raise ValueError(f"no message to {user_id} offers {choice!r}")
            when = self.clock()
            thread = self._thread_of(account, user_id, "")
            thread.last_inbound = max(thread.last_inbound, when)
            mid = self._new_id(account.channel)
            thread.messages.append(
                {"id": mid, "from": user_id, "text": title, "created": when, "direction": "in"}
            )
            body = self._message_body(account, user_id, "", mid, title, when)
            if account.channel == "whatsapp":
                message = body["entry"][0]["changes"][0]["value"]["messages"][0]
                del message["text"]
                message.update(
                    type="interactive",
                    context={"from": account.id, "id": ours},
                    interactive={"type": "button_reply", "button_reply": {"id": choice, "title": title}},
                )
            else:
                body["entry"][0]["messaging"][0]["message"]["quick_reply"] = {"payload": choice}
            self._queue(body)
            return body

    def add_citizen(self, account_id: str, user_id: str, *, at: float | None = None, name: str = "") -> None:
        """Make a citizen known as if they had written at `at` (default now), without a webhook: for tests
        that post recorded or hand-built bodies to the service themselves."""
        with self._lock:
            thread = self._thread_of(self._accounts[account_id], user_id, name)
            thread.last_inbound = max(thread.last_inbound, self.clock() if at is None else at)

    def citizen_comment(
        self,
        account_id: str,
        user_id: str,
        text: str,
        *,
        name: str = "",
        at: float | None = None,
        deliver: bool = True,
    ) -> tuple[str, dict[str, Any]]:
        """A citizen comments under a post (Facebook feed) or a media (Instagram); (comment id, body)."""
        with self._lock:
            account = self._accounts[account_id]
            when = self.clock() if at is None else at
            seq = next(self._seq)
            if account.channel == "facebook":
                post_id = f"{account.id}_{9_000_000 + seq % 7}"
                comment_id = f"{post_id.split('_')[1]}_{100_000_000 + seq}"
                media_id = post_id
            else:
                comment_id = str(17_850_000_000_000_000 + seq)
                media_id = str(17_900_000_000_000_000 + seq % 7)
            self._comments[comment_id] = _Comment(account, comment_id, user_id, name, text, when, media_id)
            body = self._comment_body(account, comment_id, user_id, name, text, when, media_id)
            if deliver:
                self._queue(body)
            return comment_id, body

    def deliver(self, *bodies: dict[str, Any]) -> None:
        """Deliver (again) webhook bodies built earlier, e.g. to test redelivery; batched into one POST
        per object kind, entries concatenated, as Meta batches."""
        with self._lock:
            by_object: dict[str, list[Any]] = {}
            for body in bodies:
                by_object.setdefault(body["object"], []).extend(body["entry"])
            for obj, entries in by_object.items():
                self._outbox.append(meta_json({"object": obj, "entry": entries}))
        self._notify("webhook")

    def post_webhook(self, body: bytes | dict[str, Any], *, signature: str | None = None) -> httpx.Response:
        """Post one body now from the calling thread (signature tests), signed unless `signature` given."""
        raw = body if isinstance(body, bytes) else meta_json(body)
        headers = {"Content-Type": "application/json"}
        headers["X-Hub-Signature-256"] = sign(self.app_secret, raw) if signature is None else signature
        return httpx.post(self.webhook_url, content=raw, headers=headers, timeout=10.0)

    def backdate(self, account_id: str, user_id: str, seconds: float) -> None:
        """Pretend the citizen's messages to this account were written `seconds` earlier (tests of reply
        windows: "25 hours later" without waiting 25 hours)."""
        with self._lock:
            thread = self._threads[(account_id, user_id)]
            thread.last_inbound -= seconds
            for message in thread.messages:
                message["created"] -= seconds

    def messages_to(self, user_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if m["to"] == user_id]

    def private_replied(self, comment_id: str) -> bool:
        with self._lock:
            return self._comments[comment_id].private_replied

    # --- payloads (shapes from Meta's docs; platforms.md §4a, §5a, §6, §7a) ----------------------------

    def _message_body(
        self, account: _Account, user_id: str, name: str, mid: str, text: str, when: float
    ) -> dict[str, Any]:
        if account.channel == "whatsapp":
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "77170000000", "phone_number_id": account.id},
                "contacts": [{"profile": {"name": name or user_id}, "wa_id": user_id}],
                "messages": [
                    {
                        "from": user_id,
                        "id": mid,
                        "timestamp": str(int(when)),  # WhatsApp: a string of seconds
                        "text": {"body": text},
                        "type": "text",
                    }
                ],
            }
            entry = {"id": account.webhook_account, "changes": [{"value": value, "field": "messages"}]}
            return {"object": "whatsapp_business_account", "entry": [entry]}
        ms = int(when * 1000)  # Messenger / Instagram: milliseconds
        item = {
            "sender": {"id": user_id},
            "recipient": {"id": account.id},
            "timestamp": ms,
            "message": {"mid": mid, "text": text},
        }
        obj = "page" if account.channel == "facebook" else "instagram"
        return {"object": obj, "entry": [{"id": account.id, "time": ms, "messaging": [item]}]}

    def _comment_body(
        self,
        account: _Account,
        comment_id: str,
        user_id: str,
        name: str,
        text: str,
        when: float,
        media_id: str,
    ) -> dict[str, Any]:
        if account.channel == "facebook":
            value = {
                "from": {"id": user_id, "name": name},
                "post": {"status_type": "added_photos", "is_published": True, "id": media_id},
                "message": text,
                "post_id": media_id,
                "comment_id": comment_id,
                "created_time": int(when),  # feed: seconds
                "item": "comment",
                "parent_id": media_id,
                "verb": "add",
            }
            entry = {"id": account.id, "time": int(when), "changes": [{"field": "feed", "value": value}]}
            return {"object": "page", "entry": [entry]}
        media = {"id": media_id, "media_product_type": "FEED"}
        if self.instagram_login:
            value = {
                "from": {"id": user_id, "username": name},
                "media": media,
                "id": comment_id,
                "text": text,
            }
        else:
            value = {"from": {"id": user_id, "username": name}, "comment_id": comment_id, "text": text}
            value["media"] = media
        entry = {"id": account.id, "time": int(when), "changes": [{"field": "comments", "value": value}]}
        return {"object": "instagram", "entry": [entry]}

    def _status_body(
        self, account: _Account, wamid: str, to: str, status: str, opaque: str | None, code: int | None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(self.clock())),
            "recipient_id": to,
        }
        if opaque:
            item["biz_opaque_callback_data"] = opaque
        if code is not None:
            title = "Re-engagement message" if code == 131047 else "Message undeliverable"
            item["errors"] = [
                {
                    "code": code,
                    "title": title,
                    "message": title,
                    "error_data": {
                        "details": "Message failed to send because more than 24 hours have passed "
                        "since the customer last replied to this number."
                        if code == 131047
                        else "Unable to deliver the message."
                    },
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "77170000000", "phone_number_id": account.id},
            "statuses": [item],
        }
        entry = {"id": account.webhook_account, "changes": [{"value": value, "field": "messages"}]}
        return {"object": "whatsapp_business_account", "entry": [entry]}

    # --- webhook delivery --------------------------------------------------------------------------------

    def _queue(self, body: dict[str, Any]) -> None:
        self._outbox.append(meta_json(body))
        self._notify("webhook")

    async def _deliver_loop(self) -> None:
        """One POST at a time, retried until 2xx (Meta retries; §3c)."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            while not self._closing:
                with self._lock:
                    raw = self._outbox[0] if self._outbox and self.webhook_url else None
                if raw is None:
                    await self._wakeup("webhook").wait()
                    continue
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(self.app_secret, raw),
                    "X-Hub-Signature": "sha1="
                    + hmac.new(self.app_secret.encode(), raw, hashlib.sha1).hexdigest(),
                }
                try:
                    response = await client.post(self.webhook_url, content=raw, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.webhook_deliveries.append({"status": status, "bytes": len(raw)})
                    if 200 <= status < 300 and self._outbox and self._outbox[0] is raw:
                        self._outbox.popleft()
                        continue
                await asyncio.sleep(self.webhook_retry_delay)

    def pending_webhooks(self) -> int:
        with self._lock:
            return len(self._outbox)

    # --- the Graph API -------------------------------------------------------------------------------------

    async def _graph(self, request: Request) -> Response:
        params = await _params(request)
        token = params.pop("access_token", None) or _bearer(request)
        path = request.path_params["path"].strip("/")
        with self._lock:
            self.calls.append({"method": request.method, "path": path, "params": dict(params)})
        try:
            if request.path_params["version"] != self.version:
                raise GraphFault(2635, f"(#2635) Unknown version {request.path_params['version']}", None)
            accounts = self._authorize(token)
            self._inject(path)
            answer, lose = self._route(request.method, path, params, accounts)
        except GraphFault as fault:
            with self._lock:
                self.errors.append(
                    {"code": fault.code, "subcode": fault.subcode, "status": fault.http_status, "path": path}
                )
            return JSONResponse(fault.body(), status_code=fault.http_status)
        if lose:
            await asyncio.sleep(self.lost_answer_delay)
        return JSONResponse(answer)

    def _authorize(self, token: str | None) -> list[_Account]:
        with self._lock:
            if not token or token not in self._tokens:
                raise GraphFault(190, "Invalid OAuth access token - Cannot parse access token", None)
            if token in self._expired:
                raise GraphFault(190, "Error validating access token: Session has expired.", 463)
            return list(self._tokens[token])

    def _inject(self, path: str) -> None:
        with self._lock:
            for item in list(self._faults):
                if item.path_contains is None or item.path_contains in path:
                    item.count -= 1
                    if item.count <= 0:
                        self._faults.remove(item)
                    raise item.fault

    def _route(
        self, method: str, path: str, params: dict[str, Any], accounts: list[_Account]
    ) -> tuple[dict[str, Any], bool]:
        parts = path.split("/")
        if method == "GET" and parts == ["me"]:
            first = accounts[0]
            return {"id": first.id, "name": first.name}, False
        if method == "GET" and len(parts) == 2 and parts[1] == "conversations":
            return self._conversations(self._owner(parts[0], accounts, params), params), False
        if method == "POST" and len(parts) == 2 and parts[1] == "messages":
            owner = self._owner(parts[0], accounts, params)
            with self._lock:
                lose = self._lose_answers > 0
                if lose:
                    self._lose_answers -= 1
            if owner.channel == "whatsapp":
                return self._whatsapp_send(owner, params), lose
            return self._messenger_send(owner, params), lose
        if method == "GET" and len(parts) == 1 and parts[0] in self._comments:
            return self._comment_node(parts[0], params, accounts), False
        if method == "POST" and len(parts) == 2 and parts[1] in ("comments", "replies"):
            return self._public_reply(parts[0], parts[1], params, accounts), False
        raise GraphFault(100, f"(#100) Unsupported {method} request to {path}", 33)

    def _owner(self, node: str, accounts: list[_Account], params: dict[str, Any]) -> _Account:
        if node == "me":
            if len(accounts) == 1:
                return accounts[0]
            # A Page token serves the Page and its linked Instagram account: the recipient or the
            # platform parameter tells which.
            recipient = _json(params.get("recipient")) or {}
            wanted = params.get("platform")
            for account in accounts:
                if wanted == "instagram" and account.channel == "instagram":
                    return account
                if wanted == "messenger" and account.channel == "facebook":
                    return account
                if recipient.get("id") and (account.id, str(recipient["id"])) in self._threads:
                    return account
                if recipient.get("comment_id") in self._comments:
                    if self._comments[recipient["comment_id"]].account is account:
                        return account
            return accounts[0]
        for account in accounts:
            if account.id == node:
                return account
        raise GraphFault(
            100, f"(#100) Object with ID '{node}' does not exist or the token cannot reach it", 33
        )

    # --- sends ----------------------------------------------------------------------------------------

    def _rate(self, account: _Account) -> None:
        now = time.monotonic()
        with self._lock:
            window = account.sends
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= SEND_RATES[account.channel]:
                code = 130429 if account.channel == "whatsapp" else 613
                self.violations.append({"account": account.id, "code": code, "at": now})
                raise _fault(code, channel=account.channel)
            window.append(now)

    def _messenger_send(self, account: _Account, params: dict[str, Any]) -> dict[str, Any]:
        recipient = _json(params.get("recipient"))
        message = _json(params.get("message"))
        if not isinstance(recipient, dict) or not isinstance(message, dict):
            raise GraphFault(100, "(#100) param recipient and message must be JSON objects", None)
        text = message.get("text")
        if not isinstance(text, str) or not text:
            raise GraphFault(100, "(#100) The parameter message[text] is required", None)
        self._check_length(account.channel, text)
        quick = _quick_replies(message.get("quick_replies"))
        self._rate(account)
        now = self.clock()
        with self._lock:
            comment_id = recipient.get("comment_id")
            if comment_id is not None:
                return self._private_reply(account, str(comment_id), text, now)
            user_id = str(recipient.get("id") or "")
            thread = self._threads.get((account.id, user_id))
            if thread is None:
                raise GraphFault(100, "(#100) No matching user found", 2018001)
            self._check_window(account, thread, params, now)
            mid = self._new_id(account.channel)
            thread.messages.append({"id": mid, "from": account.id, "text": text, "created": now})
            self.sent.append(
                {
                    "channel": account.channel,
                    "account": account.id,
                    "to": user_id,
                    "kind": "message",
                    "text": text,
                    "messaging_type": params.get("messaging_type"),
                    "tag": params.get("tag"),
                    "id": mid,
                    "quick_replies": quick,
                }
            )
            return {"recipient_id": user_id, "message_id": mid}

    def _check_window(self, account: _Account, thread: _Thread, params: dict[str, Any], now: float) -> None:
        age = now - thread.last_inbound
        subcode = 2534022 if account.channel == "instagram" else 2018278
        if params.get("messaging_type") == "MESSAGE_TAG":
            if params.get("tag") != "HUMAN_AGENT":
                raise GraphFault(100, "(#100) Unsupported message tag", 2018181)
            if not account.human_agent:
                raise _fault(200 if account.channel == "facebook" else 10, None, channel=account.channel)
            if age > HUMAN_AGENT_SECONDS:
                raise _fault(10, subcode, channel=account.channel)
        elif age > WINDOW_SECONDS:
            raise _fault(10, subcode, channel=account.channel)

    def _private_reply(self, account: _Account, comment_id: str, text: str, now: float) -> dict[str, Any]:
        comment = self._comments.get(comment_id)
        if comment is None or comment.account is not account:
            raise GraphFault(100, "(#100) No matching comment found", 2018001)
        if comment.private_replied:
            raise _fault(10900)
        if now - comment.created > PRIVATE_REPLY_SECONDS:
            raise _fault(10, 2018278, channel=account.channel)
        comment.private_replied = True
        # The reply opens a private thread; the citizen's answer there opens its 24 h window.
        thread = self._thread_of(account, comment.user_id, comment.name)
        mid = self._new_id(account.channel)
        thread.messages.append({"id": mid, "from": account.id, "text": text, "created": now})
        self.sent.append(
            {
                "channel": account.channel,
                "account": account.id,
                "to": comment.user_id,
                "kind": "private_reply",
                "comment_id": comment_id,
                "text": text,
                "id": mid,
            }
        )
        return {"recipient_id": comment.user_id, "message_id": mid}

    def _comment_node(
        self, comment_id: str, params: dict[str, Any], accounts: list[_Account]
    ) -> dict[str, Any]:
        """`GET /{comment-id}?fields=...`: a Facebook Comment node's private-reply state."""
        with self._lock:
            comment = self._comments[comment_id]
            if comment.account not in accounts:
                raise GraphFault(100, f"(#100) Object with ID '{comment_id}' does not exist", 33)
            node: dict[str, Any] = {"id": comment_id}
            fields = set(str(params.get("fields", "")).split(","))
            if "message" in fields:
                node["message"] = comment.text
            if "can_reply_privately" in fields:
                node["can_reply_privately"] = not comment.private_replied and (
                    self.clock() - comment.created <= PRIVATE_REPLY_SECONDS
                )
            if "private_reply_conversation" in fields and comment.private_replied:
                thread = self._threads[(comment.account.id, comment.user_id)]
                node["private_reply_conversation"] = {"id": thread.id}
            return node

    def _public_reply(
        self, comment_id: str, edge: str, params: dict[str, Any], accounts: list[_Account]
    ) -> dict[str, Any]:
        with self._lock:
            comment = self._comments.get(comment_id)
            if comment is None or comment.account not in accounts:
                raise GraphFault(100, f"(#100) Object with ID '{comment_id}' does not exist", 33)
            wanted = "replies" if comment.account.channel == "instagram" else "comments"
            if edge != wanted:
                raise GraphFault(100, f"(#100) Tried accessing nonexisting field ({edge})", None)
            text = params.get("message")
            if not isinstance(text, str) or not text:
                raise GraphFault(100, "(#100) The parameter message is required", None)
            self._rate(comment.account)
            reply_id = (
                f"{comment_id.split('_')[0]}_{200_000_000 + next(self._seq)}"
                if comment.account.channel == "facebook"
                else str(17_870_000_000_000_000 + next(self._seq))
            )
            comment.replies.append({"id": reply_id, "text": text})
            self.sent.append(
                {
                    "channel": comment.account.channel,
                    "account": comment.account.id,
                    "to": comment.user_id,
                    "kind": "public_reply",
                    "comment_id": comment_id,
                    "text": text,
                    "id": reply_id,
                }
            )
            return {"id": reply_id}

    def _whatsapp_send(self, account: _Account, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("messaging_product") != "whatsapp":
            raise GraphFault(100, "(#100) The parameter messaging_product is required.", None)
        to = str(params.get("to") or "")
        kind = params.get("type", "text")
        now = self.clock()
        text = ""
        template: dict[str, Any] | None = None
        interactive: dict[str, Any] | None = None
        if kind == "text":
            body = _json(params.get("text")) or {}
            found = body.get("body") if isinstance(body, dict) else None
            if not isinstance(found, str) or not found:
                raise GraphFault(100, "(#100) The parameter text['body'] is required.", None)
            text = found
            if len(text) > TEXT_LIMITS["whatsapp"]:
                raise GraphFault(100, "(#100) Param text['body'] must be at most 4096 characters long.", None)
        elif kind == "interactive":
            interactive = _wa_interactive(_json(params.get("interactive")))
            text = interactive["body"]["text"]
        elif kind == "template":
            template = _json(params.get("template"))
            if not isinstance(template, dict):
                raise GraphFault(100, "(#100) The parameter template is required.", None)
            language = (template.get("language") or {}).get("code")
            if language not in self._templates.get(str(template.get("name")), set()):
                raise _fault(132001, channel="whatsapp")
        else:
            raise GraphFault(100, f"(#100) Unsupported message type {kind}", None)
        self._rate(account)
        with self._lock:
            thread = self._thread_of(account, to, "")
            pair = [
                m
                for m in thread.messages
                if m.get("direction") == "out" and m["created"] > now - PAIR_SECONDS
            ]
            if len(pair) >= PAIR_LIMIT:
                self.violations.append({"account": account.id, "code": 131056, "at": time.monotonic()})
                raise _fault(131056, channel="whatsapp")
            wamid = self._new_id("whatsapp")
            thread.messages.append(
                {"id": wamid, "from": account.id, "text": text, "created": now, "direction": "out"}
            )
            failure = self._fail_async.popleft() if self._fail_async else None
            if failure is None and kind != "template" and now - thread.last_inbound > WINDOW_SECONDS:
                failure = 131047  # accepted now, failed by webhook: Cloud API's way (§7b)
            opaque = params.get("biz_opaque_callback_data")
            if failure is None:
                self.sent.append(
                    {
                        "channel": "whatsapp",
                        "account": account.id,
                        "to": to,
                        "kind": kind,
                        "text": text,
                        "template": template,
                        "interactive": interactive,
                        "id": wamid,
                    }
                )
                self._queue(self._status_body(account, wamid, to, "sent", opaque, None))
            else:
                self._queue(self._status_body(account, wamid, to, "failed", opaque, failure))
            return {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }

    def _check_length(self, channel: str, text: str) -> None:
        if channel == "instagram" and len(text.encode("utf-8")) > INSTAGRAM_TEXT_BYTES:
            raise GraphFault(100, "(#100) Length of param message[text] must be less than 1000", None)
        if channel == "facebook" and len(text) > TEXT_LIMITS["facebook"]:
            raise GraphFault(100, "(#100) Length of param message[text] must be less than 2000", None)

    # --- reads ----------------------------------------------------------------------------------------

    def _conversations(self, account: _Account, params: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            reads = account.conversation_reads
            while reads and reads[0] <= now - 1.0:
                reads.popleft()
            if len(reads) >= CONVERSATIONS_PER_SECOND:
                self.violations.append({"account": account.id, "code": 613, "at": now})
                raise _fault(613)
            reads.append(now)
            threads = [t for t in self._threads.values() if t.account is account]
            threads.sort(key=lambda t: max((m["created"] for m in t.messages), default=0.0), reverse=True)
            limit = int(params.get("limit") or 25)
            data = []
            for thread in threads[:limit]:
                messages = [
                    {
                        "id": m["id"],
                        "created_time": _graph_time(m["created"]),
                        "from": {
                            "id": m["from"],
                            "name": thread.name if m["from"] == thread.user_id else account.name,
                        },
                        "message": m["text"],
                    }
                    for m in reversed(thread.messages)  # newest first, as Graph lists them
                ]
                data.append(
                    {
                        "id": thread.id,
                        "updated_time": _graph_time(max(m["created"] for m in thread.messages)),
                        "messages": {"data": messages},
                    }
                )
            return {"data": data}

    # --- helpers --------------------------------------------------------------------------------------

    def _thread_of(self, account: _Account, user_id: str, name: str) -> _Thread:
        key = (account.id, user_id)
        thread = self._threads.get(key)
        if thread is None:
            thread = self._threads[key] = _Thread(account, user_id, name)
        elif name and not thread.name:
            thread.name = name
        return thread

    def _new_id(self, channel: str) -> str:
        raw = secrets.token_bytes(24)
        if channel == "whatsapp":
            return "wamid.HBgL" + base64.b64encode(raw).decode().rstrip("=")
        if channel == "instagram":
            return "aWdfZAG" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return "m_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _graph_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(seconds))


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


async def _params(request: Request) -> dict[str, Any]:
    """Query, then a form body or a JSON body (Graph accepts both; WhatsApp's docs use JSON)."""
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if body:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                loaded = json.loads(body)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                params.update(loaded)
        else:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def _quick_replies(raw: object) -> list[dict[str, Any]] | None:
    """message.quick_replies as Messenger and Instagram accept them (developers.facebook.com/docs/
    messenger-platform/send-messages/quick-replies): up to 13, each content_type "text" with a title of
    at most 20 characters and a payload of at most 1000."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not 1 <= len(raw) <= 13:
        raise GraphFault(100, "(#100) param message[quick_replies] must be an array of 1 to 13 items", None)
    for quick in raw:
        if not isinstance(quick, dict) or quick.get("content_type") != "text":
            raise GraphFault(
                100, "(#100) param message[quick_replies][0][content_type] must be one of {TEXT, ...}", None
            )
        title, payload = quick.get("title"), quick.get("payload")
        if not isinstance(title, str) or not title or len(title) > 20:
            raise GraphFault(100, "(#100) Quick reply title must be 1 to 20 characters", None)
        if not isinstance(payload, str) or not payload or len(payload) > 1000:
            raise GraphFault(100, "(#100) Quick reply payload must be 1 to 1000 characters", None)
    return [dict(q) for q in raw]


def _wa_interactive(raw: object) -> dict[str, Any]:
    """An interactive reply-buttons message as the Cloud API accepts it (developers.facebook.com/docs/
    whatsapp/cloud-api/messages/interactive-reply-buttons-messages): type "button", body.text up to 1024
    characters, 1 to 3 buttons of type "reply" with a unique id (up to 256) and a title (up to 20)."""
    if not isinstance(raw, dict) or raw.get("type") != "button":
        raise GraphFault(100, "(#100) Param interactive['type'] must be one of {BUTTON, LIST, ...}", None)
    body = raw.get("body")
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text or len(text) > 1024:
        raise GraphFault(
            100, "(#100) Param interactive['body']['text'] must be at most 1024 characters long.", None
        )
    action = raw.get("action")
    buttons = action.get("buttons") if isinstance(action, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise GraphFault(131009, "(#131009) Parameter value is not valid: buttons must be 1 to 3", None)
    ids = set()
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(reply, dict) or button.get("type") != "reply":
            raise GraphFault(131009, "(#131009) Parameter value is not valid: button type", None)
        bid, title = reply.get("id"), reply.get("title")
        if not isinstance(bid, str) or not bid or len(bid) > 256 or bid in ids:
            raise GraphFault(131009, "(#131009) Parameter value is not valid: button id", None)
        if not isinstance(title, str) or not title or len(title) > 20:
            raise GraphFault(131009, "(#131009) Parameter value is not valid: button title", None)
        ids.add(bid)
    return dict(raw)
