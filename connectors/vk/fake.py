"""A fake VK API, Bots Long Poll server and Callback API sender on loopback, with VK's real envelopes.

What it reproduces, because our code depends on it (sources in ../shared/reference/platforms.md §2):
- API answers `{"response": ...}` or `{"error": {"error_code", "error_msg", "request_params"}}` with HTTP 200;
- 20 requests per second per community token, answered with error 6 beyond that (and recorded);
- messages.send: `random_id` de-duplicated over the community's whole history (the same id returns the
  first message's id and stores nothing), 901 for a user who never wrote and never allowed messages,
  900 for a user who blocked the community, 914 beyond 9000 characters;
- wall.createComment with `guid` de-duplication;
- long poll: `ts` numbering, `failed` 1 (ts out of history), 2 (key expired), 3 (key and ts lost);
- Callback API: one event at a time until the server answers the plain string `ok`, with the secret.

Thread-safe Python control API (the test or the sandbox thread) and the same over HTTP at /_fake/...
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer

__all__ = ["FakeVK"]

API_VERSION = "5.199"
TEXT_LIMIT = 9000
CHAT_PEER_BASE = 2_000_000_000

ERROR_MESSAGES = {
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    8: "Invalid request: v (version) is required",
    9: "Flood control",
    10: "Internal server error",
    14: "Captcha needed",
    15: "Access denied",
    29: "Rate limit reached",
    100: "One of the parameters specified was missing or invalid",
    900: "Can't send messages for users from blacklist",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    914: "Message is too long",
    911: "Keyboard format is invalid",
}


class ApiError(Exception):
    def __init__(self, code: int, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or ERROR_MESSAGES.get(code, "Unknown error occurred"))
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Unknown error occurred")
        self.extra = extra


def _error_body(error: ApiError, method: str, params: dict[str, Any]) -> dict[str, Any]:
    # request_params echoes what was asked, minus the token, as VK does.
    request_params = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
    request_params += [
        {"key": k, "value": str(v)} for k, v in params.items() if k not in ("access_token", "method")
    ]
    body: dict[str, Any] = {
        "error_code": error.code,
        "error_msg": error.message,
        "request_params": request_params,
    }
    body.update(error.extra)
    return {"error": body}


def _int(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(
                100, f"One of the parameters specified was missing or invalid: {name} is undefined"
            )
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(
            100, f"One of the parameters specified was missing or invalid: {name} not integer"
        ) from None


@dataclass
class _Forced:
    method: str
    code: int
    message: str | None
    peer_id: int | None


@dataclass
class _Group:
    group_id: int
    token: str
    name: str
    next_ts: int
    history_start: int
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    forced_failed: deque[int] = field(default_factory=deque)
    forced_raw: deque[tuple[int, bytes]] = field(default_factory=deque)
    next_message_id: int = 1
    cmid: dict[int, int] = field(default_factory=dict)
    allowed: set[int] = field(default_factory=set)
    blocked: set[int] = field(default_factory=set)
    by_random_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    posts: set[int] = field(default_factory=set)
    next_comment_id: int = 1
    by_guid: dict[str, dict[str, Any]] = field(default_factory=dict)
    callback_url: str = ""
    callback_secret: str | None = None
    confirmation: str = ""
    callback_queue: list[dict[str, Any]] = field(default_factory=list)
    deliverer: asyncio.Task[None] | None = None
    recent: deque[float] = field(default_factory=deque)  # request times in the last second (rate window)


Handler = Callable[[_Group, dict[str, Any]], Awaitable[Any]]


class FakeVK(LoopbackServer):
    """Serves /method/<name>, /lp/<group_id> and /_fake/<group_id>/<action> on a loopback port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_second: int = 20,
        longpoll_batch: int = 100,
        callback_retry_delay: float = 0.2,
        callback_timeout: float = 5.0,
    ) -> None:
        super().__init__(host=host, port=port, name="fake-vk")
        self.requests_per_second = requests_per_second
        self.longpoll_batch = longpoll_batch
        self.callback_retry_delay = callback_retry_delay
        self.callback_timeout = callback_timeout

        # Public records that tests assert on (append-only from the server side).
        self.violations: list[dict[str, Any]] = []  # every error 6 the fake answered
        self.forced_answers: list[dict[str, Any]] = []
        self.send_attempts: list[dict[str, Any]] = []  # every messages.send, accepted or not
        self.method_calls: list[dict[str, Any]] = []
        self.callback_deliveries: list[dict[str, Any]] = []
        self.longpoll_requests = 0

        self._lock = threading.RLock()
        self._groups: dict[int, _Group] = {}
        self._tokens: dict[str, int] = {}
        self._sent: list[dict[str, Any]] = []
        self._comments: list[dict[str, Any]] = []
        self._forced: deque[_Forced] = deque()
        self._delays: deque[tuple[str, float]] = deque()
        self._media_seq = itertools.count(457_239_000)

        self._methods: dict[str, Handler] = {
            "groups.getlongpollserver": self._get_long_poll_server,
            "groups.getbyid": self._get_by_id,
            "messages.send": self._messages_send,
            "wall.createcomment": self._wall_create_comment,
        }
        self.app = Starlette(
            routes=[
                Route("/method/{name}", self._method, methods=["GET", "POST"]),
                Route("/lp/{group_id:int}", self._long_poll, methods=["GET", "POST"]),
                Route("/_fake/{group_id:int}/{action}", self._control, methods=["GET", "POST"]),
            ]
        )

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _on_serving(self) -> None:
        with self._lock:
            for group in self._groups.values():
                group.deliverer = None
                if group.callback_url:
                    group.deliverer = asyncio.create_task(self._deliver(group))

    async def _on_stopped(self) -> None:
        with self._lock:
            tasks = [g.deliverer for g in self._groups.values()]
            for g in self._groups.values():
                g.deliverer = None
        await self._cancel_tasks(tasks)

    # --- Python control API ----------------------------------------------------------------------------

    def add_group(self, group_id: int, token: str, *, name: str = "Экология министрлігі") -> None:
        with self._lock:
            if group_id in self._groups:
                return
            # Real ts values are large and arbitrary; never 0 or 1, so off-by-one bugs show.
            start = random.randint(1_000, 90_000)
            self._groups[group_id] = _Group(
                group_id=group_id, token=token, name=name, next_ts=start, history_start=start
            )
            self._tokens[token] = group_id

    def _group(self, group_id: int | None) -> _Group:
        if group_id is None:
            if len(self._groups) != 1:
                raise KeyError("several communities: pass group_id")
            return next(iter(self._groups.values()))
        group = self._groups.get(group_id)
        if group is None:
            raise KeyError(f"unknown community {group_id}; call add_group first")
        return group

    def _emit(self, group: _Group, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Record an event (lock held): into the long-poll history and, if set, the callback queue."""
        event = {
            "group_id": group.group_id,
            "type": kind,
            "event_id": secrets.token_hex(20),
            "v": API_VERSION,
            "object": obj,
        }
        group.events.append((group.next_ts, event))
        group.next_ts += 1
        if group.callback_url:
            group.callback_queue.append(event)
        self._notify(group.group_id)
        return copy.deepcopy(event)

    def citizen_message(
        self,
        user_id: int,
        text: str = "",
        *,
        group_id: int | None = None,
        lang_id: int = 0,
        chat_id: int | None = None,
        photo: bool = False,
        geo: tuple[float, float] | None = None,
        reply_to_cmid: int | None = None,
        payload: str | None = None,
    ) -> dict[str, Any]:
        """A citizen writes to the community (message_new, >= 5.103 shape); returns the event as sent.
        `payload`: the message is a press of a keyboard button carrying it (press_button).
        Writing first is what lets the community answer (otherwise messages.send gives 901)."""
        with self._lock:
            group = self._group(group_id)
            peer_id = CHAT_PEER_BASE + chat_id if chat_id is not None else user_id
            cmid = group.cmid.get(peer_id, 0) + 1
            group.cmid[peer_id] = cmid
            message: dict[str, Any] = {
                "date": int(time.time()),
                "from_id": user_id,
                # message.id is 0 in chats (platforms.md §2e)
                "id": 0 if chat_id is not None else self._next_message_id(group),
                "out": 0,
                "version": 10_000_000 + cmid,
                "peer_id": peer_id,
                "text": text,
                "conversation_message_id": cmid,
                "fwd_messages": [],
                "important": False,
                "random_id": 0,
                "attachments": [self._photo(user_id)] if photo else [],
                "is_hidden": False,
            }
            if payload is not None:
                message["payload"] = payload
            if geo is not None:
                message["geo"] = {"type": "point", "coordinates": {"latitude": geo[0], "longitude": geo[1]}}
            if reply_to_cmid is not None:
                message["reply_message"] = {
                    "date": message["date"],
                    "from_id": -group.group_id,
                    "text": "",
                    "attachments": [],
                    "conversation_message_id": reply_to_cmid,
                    "peer_id": peer_id,
                    "id": 0,
                }
            if chat_id is None:
                group.allowed.add(user_id)
            client_info = {
                "button_actions": ["text", "vkpay", "open_app", "location", "open_link", "callback"],
                "keyboard": True,
                "inline_keyboard": True,
                "carousel": True,
                "lang_id": lang_id,
            }
            return self._emit(group, "message_new", {"message": message, "client_info": client_info})

    def press_button(self, user_id: int, choice: str, *, group_id: int | None = None) -> dict[str, Any]:
        """The citizen presses the keyboard button whose payload names `choice` under the latest message to
        them that has one: VK sends message_new with the button's label as text and its payload as
        message.payload (dev.vk.com/ru/api/bots/development/keyboard, "payload")."""
        with self._lock:
            group = self._group(group_id)
            button = next(
                (
                    b["action"]
                    for sent in reversed(self._sent)
                    if sent["peer_id"] == user_id
                    and sent["group_id"] == group.group_id
                    and sent.get("keyboard")
                    for row in sent["keyboard"]["buttons"]
                    for b in row
                    if json.loads(b["action"].get("payload") or "{}").get("choice") == choice
                ),
                None,
            )
        if button is None:
            raise ValueError(f"no message to {user_id} has a button for {choice!r}")
        return self.citizen_message(user_id, button["label"], group_id=group_id, payload=button["payload"])

    def citizen_edit(
        self, user_id: int, cmid: int, text: str, *, group_id: int | None = None
    ) -> dict[str, Any]:
        """The citizen edits an earlier message of theirs (message_edit carries the message object)."""
        with self._lock:
            group = self._group(group_id)
            now = int(time.time())
            message = {
                "date": now,
                "from_id": user_id,
                "id": 0,
                "out": 0,
                "peer_id": user_id,
                "text": text,
                "conversation_message_id": cmid,
                "fwd_messages": [],
                "important": False,
                "random_id": 0,
                "attachments": [],
                "is_hidden": False,
                "update_time": now,
            }
            return self._emit(group, "message_edit", message)

    def citizen_wall_comment(
        self,
        user_id: int,
        text: str,
        *,
        post_id: int = 1,
        group_id: int | None = None,
        reply_to_comment: int | None = None,
    ) -> dict[str, Any]:
        """A public comment under a post on the community wall (wall_reply_new). It does not let the
        community write to the author privately."""
        with self._lock:
            group = self._group(group_id)
            group.posts.add(post_id)
            comment = self._add_comment(group, post_id, user_id, text, reply_to_comment)
            obj = {
                "id": comment["comment_id"],
                "from_id": user_id,
                "post_id": post_id,
                "owner_id": -group.group_id,
                "parents_stack": [reply_to_comment] if reply_to_comment else [],
                "date": int(time.time()),
                "text": text,
                "thread": {"count": 0},
                "post_owner_id": -group.group_id,
            }
            if reply_to_comment:
                obj["reply_to_comment"] = reply_to_comment
            return self._emit(group, "wall_reply_new", obj)

    def set_messages_allowed(self, user_id: int, allowed: bool, *, group_id: int | None = None) -> None:
        """message_allow / message_deny: whether the community may write to this user (error 901)."""
        with self._lock:
            group = self._group(group_id)
            if allowed:
                group.allowed.add(user_id)
                self._emit(group, "message_allow", {"user_id": user_id, "key": ""})
            else:
                group.allowed.discard(user_id)
                self._emit(group, "message_deny", {"user_id": user_id})

    def block_community(self, user_id: int, *, group_id: int | None = None, blocked: bool = True) -> None:
        """The citizen put the community on their blacklist (error 900)."""
        with self._lock:
            group = self._group(group_id)
            (group.blocked.add if blocked else group.blocked.discard)(user_id)

    def force_error(
        self,
        code: int,
        *,
        method: str = "messages.send",
        times: int = 1,
        peer_id: int | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` calls of `method` (to `peer_id`, if given) answer with this error."""
        with self._lock:
            self._forced.extend(_Forced(method.lower(), code, message, peer_id) for _ in range(times))

    def force_delay(self, seconds: float, *, method: str = "messages.send", times: int = 1) -> None:
        """The next `times` calls of `method` are carried out, then answered only after `seconds`: an
        answer lost to a client timeout, although VK did the work."""
        with self._lock:
            self._delays.extend((method.lower(), seconds) for _ in range(times))

    def force_failed(self, code: int, *, times: int = 1, group_id: int | None = None) -> None:
        """The next `times` long-poll requests answer {"failed": code} (1, 2 or 3)."""
        if code not in (1, 2, 3):
            raise ValueError("failed is 1, 2 or 3")
        with self._lock:
            self._group(group_id).forced_failed.extend([code] * times)

    def force_longpoll_answer(
        self, body: bytes, *, status: int = 200, times: int = 1, group_id: int | None = None
    ) -> None:
        """The next `times` long-poll requests get these raw bytes (a proxy's error page, a cut answer)."""
        with self._lock:
            self._group(group_id).forced_raw.extend([(status, body)] * times)

    def sent_messages(
        self, peer_id: int | None = None, *, group_id: int | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(m)
                for m in self._sent
                if peer_id in (None, m["peer_id"]) and group_id in (None, m["group_id"])
            ]

    def wall_comments(
        self, post_id: int | None = None, *, group_id: int | None = None, by_community: bool | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(c)
                for c in self._comments
                if post_id in (None, c["post_id"])
                and group_id in (None, c["group_id"])
                and by_community in (None, c["from_id"] < 0)
            ]

    def events(self, *, group_id: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for _n, e in self._group(group_id).events]

    def long_poll_position(self, *, group_id: int | None = None) -> int:
        """The ts the next event will get."""
        with self._lock:
            return self._group(group_id).next_ts

    def calls(self, method: str) -> int:
        with self._lock:
            return sum(1 for c in self.method_calls if c["method"] == method.lower())

    def set_callback_server(
        self, url: str, *, secret: str, confirmation: str = "", group_id: int | None = None
    ) -> None:
        """Deliver every new event to `url` (Callback API), one at a time, until it answers `ok`."""
        with self._lock:
            group = self._group(group_id)
            group.callback_url, group.callback_secret, group.confirmation = url, secret, confirmation
            loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._ensure_deliverer(group.group_id), loop).result(5)

    def confirm_callback_server(self, *, group_id: int | None = None) -> tuple[int, str]:
        """What VK does when an admin presses "Confirm": POST the confirmation event, return the answer."""
        with self._lock:
            group = self._group(group_id)
            body: dict[str, Any] = {"type": "confirmation", "group_id": group.group_id}
            if group.callback_secret:
                body["secret"] = group.callback_secret
            url = group.callback_url
        response = httpx.post(url, json=body, timeout=self.callback_timeout, trust_env=False)
        return response.status_code, response.text

    def callback_pending(self, *, group_id: int | None = None) -> int:
        with self._lock:
            return len(self._group(group_id).callback_queue)

    # --- helpers (lock held) ----------------------------------------------------------------------------

    @staticmethod
    def _next_message_id(group: _Group) -> int:
        value = group.next_message_id
        group.next_message_id += 1
        return value

    def _photo(self, owner_id: int) -> dict[str, Any]:
        photo_id = next(self._media_seq)
        sizes = [
            {"type": "s", "url": f"https://sun9-1.userapi.com/s/{photo_id}.jpg", "width": 75, "height": 56},
            {"type": "x", "url": f"https://sun9-1.userapi.com/x/{photo_id}.jpg", "width": 604, "height": 453},
            {
                "type": "z",
                "url": f"https://sun9-1.userapi.com/z/{photo_id}.jpg",
                "width": 1280,
                "height": 960,
            },
        ]
        return {
            "type": "photo",
            "photo": {
                "album_id": -3,
                "date": int(time.time()),
                "id": photo_id,
                "owner_id": owner_id,
                "access_key": secrets.token_hex(9),
                "sizes": sizes,
                "text": "",
            },
        }

    def _add_comment(
        self, group: _Group, post_id: int, from_id: int, text: str, reply_to: int | None
    ) -> dict[str, Any]:
        comment = {
            "group_id": group.group_id,
            "owner_id": -group.group_id,
            "post_id": post_id,
            "comment_id": group.next_comment_id,
            "from_id": from_id,
            "text": text,
            "reply_to_comment": reply_to,
            "at": time.monotonic(),
        }
        group.next_comment_id += 1
        self._comments.append(comment)
        return comment

    # --- HTTP: VK API -----------------------------------------------------------------------------------

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            body = await request.body()
            if body:
                kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if kind == "application/json":
                    # "application/json Currently not supported" (dev.vk.com/en/api/api-requests)
                    raise ApiError(8, "Invalid request: application/json is not supported")
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and "access_token" not in params:
            params["access_token"] = auth[7:].strip()
        return params

    async def _method(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        params: dict[str, Any] = {}
        try:
            params = await self._params(request)
            handler = self._methods.get(name.lower())
            now = time.monotonic()
            with self._lock:
                group_id = self._tokens.get(str(params.get("access_token", "")))
                self.method_calls.append({"method": name.lower(), "group_id": group_id, "at": now})
                if group_id is None:
                    raise ApiError(5)
                group = self._groups[group_id]
                self._check_rate(group, name, now)
                if not params.get("v"):
                    raise ApiError(8)
                if handler is None:
                    raise ApiError(3)
                self._check_forced(group, name.lower(), params, now)
            result = await handler(group, params)
        except ApiError as error:
            return JSONResponse(_error_body(error, name, params))
        return JSONResponse({"response": result})

    def _check_rate(self, group: _Group, name: str, now: float) -> None:
        window = group.recent
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.requests_per_second:
            self.violations.append(
                {"group_id": group.group_id, "method": name, "at": now, "in_window": len(window)}
            )
            raise ApiError(6)
        window.append(now)

    def _check_forced(self, group: _Group, method: str, params: dict[str, Any], now: float) -> None:
        peer = _int(params, "peer_id") or _int(params, "user_id")
        for forced in list(self._forced):
            if forced.method == method and forced.peer_id in (None, peer):
                self._forced.remove(forced)
                self.forced_answers.append(
                    {"method": method, "code": forced.code, "peer_id": peer, "at": now}
                )
                if method == "messages.send":
                    self.send_attempts.append(
                        {
                            "peer_id": peer,
                            "random_id": _int(params, "random_id"),
                            "ok": False,
                            "error_code": forced.code,
                            "at": now,
                        }
                    )
                extra: dict[str, Any] = {}
                if forced.code == 14:
                    # vk-api builds its Captcha object from these two fields
                    extra = {
                        "captcha_sid": "548474212345",
                        "captcha_img": "https://api.vk.com/captcha.php?sid=548474212345",
                    }
                raise ApiError(forced.code, forced.message, **extra)

    async def _delay_for(self, method: str) -> None:
        with self._lock:
            found = next((d for d in self._delays if d[0] == method), None)
            if found is not None:
                self._delays.remove(found)
        if found is not None:
            await asyncio.sleep(found[1])

    async def _get_long_poll_server(self, group: _Group, params: dict[str, Any]) -> Any:
        if _int(params, "group_id", required=True) != group.group_id:
            raise ApiError(15, "Access denied: no access to this group")
        with self._lock:
            key = secrets.token_hex(20)
            group.keys.add(key)
            return {"key": key, "server": f"{self.url}/lp/{group.group_id}", "ts": str(group.next_ts)}

    async def _get_by_id(self, group: _Group, params: dict[str, Any]) -> Any:
        info = {
            "id": group.group_id,
            "name": group.name,
            "screen_name": f"club{group.group_id}",
            "is_closed": 0,
            "type": "page",
        }
        return {"groups": [info], "profiles": []}

    async def _messages_send(self, group: _Group, params: dict[str, Any]) -> Any:
        now = time.monotonic()
        peer_id = _int(params, "peer_id") or _int(params, "user_id")
        random_id = _int(params, "random_id")
        text = str(params.get("message", ""))
        attempt: dict[str, Any] = {"peer_id": peer_id, "random_id": random_id, "at": now, "text": text}
        try:
            with self._lock:
                result = self._accept_message(group, peer_id, random_id, text, params, now)
        except ApiError as error:
            with self._lock:
                self.send_attempts.append({**attempt, "ok": False, "error_code": error.code})
            raise
        with self._lock:
            self.send_attempts.append({**attempt, "ok": True, "error_code": None, "message_id": result})
        await self._delay_for("messages.send")
        return result

    def _accept_message(
        self,
        group: _Group,
        peer_id: int | None,
        random_id: int | None,
        text: str,
        params: dict[str, Any],
        now: float,
    ) -> int:
        if peer_id is None:
            raise ApiError(
                100, "One of the parameters specified was missing or invalid: peer_id is undefined"
            )
        if random_id is None:
            raise ApiError(
                100,
                "One of the parameters specified was missing or invalid: random_id is a required parameter",
            )
        if random_id and random_id in group.by_random_id:
            # Unique "за всю историю сообщений": the repeat is not sent again.
            return int(group.by_random_id[random_id]["message_id"])
        if not text.strip() and not params.get("attachment"):
            raise ApiError(
                100, "One of the parameters specified was missing or invalid: message is empty or invalid"
            )
        if len(text) > TEXT_LIMIT:
            raise ApiError(914)
        keyboard = _keyboard(params.get("keyboard"))
        if 0 < peer_id < CHAT_PEER_BASE:
            if peer_id in group.blocked:
                raise ApiError(900)
            if peer_id not in group.allowed:
                raise ApiError(901)
        group.cmid[peer_id] = group.cmid.get(peer_id, 0) + 1
        message: dict[str, Any] = {
            "group_id": group.group_id,
            "peer_id": peer_id,
            "text": text,
            "random_id": random_id,
            "message_id": self._next_message_id(group),
            "conversation_message_id": group.cmid[peer_id],
            "at": now,
            "wall": time.time(),
            "keyboard": keyboard,
        }
        if random_id:
            group.by_random_id[random_id] = message
        self._sent.append(message)
        self._emit(
            group,
            "message_reply",
            {
                "date": int(time.time()),
                "from_id": -group.group_id,
                "id": message["message_id"],
                "out": 1,
                "peer_id": peer_id,
                "text": text,
                "conversation_message_id": message["conversation_message_id"],
                "random_id": random_id,
                "attachments": [],
            },
        )
        return int(message["message_id"])

    async def _wall_create_comment(self, group: _Group, params: dict[str, Any]) -> Any:
        owner_id = _int(params, "owner_id", required=True)
        post_id = _int(params, "post_id", required=True)
        reply_to = _int(params, "reply_to_comment")
        guid = str(params.get("guid") or "")
        text = str(params.get("message", ""))
        with self._lock:
            if owner_id != -group.group_id:
                raise ApiError(15, "Access denied: a community token comments only on its own wall")
            if guid and guid in group.by_guid:
                earlier = group.by_guid[guid]
                stack = [earlier["reply_to_comment"]] if earlier["reply_to_comment"] else []
                return {"comment_id": earlier["comment_id"], "parents_stack": stack}
            if post_id not in group.posts:
                raise ApiError(100, "One of the parameters specified was missing or invalid: post not found")
            if not text.strip():
                raise ApiError(
                    100, "One of the parameters specified was missing or invalid: message is empty"
                )
            comment = self._add_comment(group, post_id or 0, -group.group_id, text, reply_to)
            comment["guid"] = guid or None
            if guid:
                group.by_guid[guid] = comment
            obj = {
                "id": comment["comment_id"],
                "from_id": -group.group_id,
                "post_id": post_id,
                "owner_id": -group.group_id,
                "parents_stack": [reply_to] if reply_to else [],
                "date": int(time.time()),
                "text": text,
                "thread": {"count": 0},
                "post_owner_id": -group.group_id,
            }
            if reply_to:
                obj["reply_to_comment"] = reply_to
            # VK reports the community's own comment too; a connector must not treat it as an appeal.
            self._emit(group, "wall_reply_new", obj)
            return {"comment_id": comment["comment_id"], "parents_stack": obj["parents_stack"]}

    # --- HTTP: Bots Long Poll ---------------------------------------------------------------------------

    async def _long_poll(self, request: Request) -> Response:
        group_id: int = request.path_params["group_id"]
        params = dict(request.query_params)
        try:
            ts = int(params.get("ts", ""))
        except ValueError:
            ts = -1
        try:
            wait = min(90.0, max(0.0, float(params.get("wait", "25"))))
        except ValueError:
            wait = 25.0
        key = params.get("key", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self._lock:
            self.longpoll_requests += 1
            group = self._groups.get(group_id)
            if group is None:
                return JSONResponse({"failed": 2})
            if group.forced_raw:
                status, raw = group.forced_raw.popleft()
                return Response(raw, status_code=status, media_type="application/json")
            if group.forced_failed:
                code = group.forced_failed.popleft()
                if code == 1:
                    # "история событий устарела или была частично утеряна": continue from the new ts.
                    return JSONResponse({"failed": 1, "ts": group.next_ts})
                group.keys.discard(key)  # 2: the key expired; 3: key and ts lost
                return JSONResponse({"failed": code})
            if key not in group.keys:
                return JSONResponse({"failed": 2})
            if ts < group.history_start or ts > group.next_ts:
                return JSONResponse({"failed": 1, "ts": group.next_ts})
        while True:
            with self._lock:
                batch = [(n, e) for n, e in group.events if n >= ts][: self.longpoll_batch]
            if batch or self._closing or loop.time() >= deadline:
                next_ts = batch[-1][0] + 1 if batch else ts
                # ts is a string in answers and an integer in failed:1 (recorded answers, platforms.md §2a)
                return JSONResponse({"ts": str(next_ts), "updates": [e for _n, e in batch]})
            event = self._wakeup(group_id)
            try:
                await asyncio.wait_for(event.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                pass

    # --- Callback API sender ------------------------------------------------------------------------------

    async def _ensure_deliverer(self, group_id: int) -> None:
        with self._lock:
            group = self._groups[group_id]
            if group.deliverer is None and group.callback_url:
                group.deliverer = asyncio.get_running_loop().create_task(self._deliver(group))
        self._wake(group_id)

    async def _deliver(self, group: _Group) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=self.callback_timeout) as client:
            while True:
                with self._lock:
                    if not group.callback_url or self._closing:
                        group.deliverer = None
                        return
                    url, secret = group.callback_url, group.callback_secret
                    event = group.callback_queue[0] if group.callback_queue else None
                if event is None:
                    await self._wakeup(group.group_id).wait()
                    continue
                body = dict(event)
                if secret:
                    body["secret"] = secret
                status: int | None = None
                answer = ""
                error: str | None = None
                try:
                    response = await client.post(
                        url,
                        content=json.dumps(body, ensure_ascii=False).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    status, answer = response.status_code, response.text
                    if status != 200 or answer != "ok":
                        error = f"server answered {status} {answer[:40]!r}"
                except httpx.HTTPError as exc:
                    error = str(exc) or type(exc).__name__
                with self._lock:
                    self.callback_deliveries.append(
                        {
                            "group_id": group.group_id,
                            "event_id": event["event_id"],
                            "status": status,
                            "error": error,
                            "at": time.monotonic(),
                        }
                    )
                    if error is None:
                        group.callback_queue = [
                            e for e in group.callback_queue if e["event_id"] != event["event_id"]
                        ]
                if error is not None:
                    await asyncio.sleep(self.callback_retry_delay)

    # --- HTTP: control API (the sandbox drives the fake from another process) -----------------------------

    async def _control(self, request: Request) -> Response:
        group_id: int = request.path_params["group_id"]
        action: str = request.path_params["action"]
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                return JSONResponse({"ok": False, "error": "JSON body expected"}, status_code=400)
            if not isinstance(parsed, dict):
                return JSONResponse({"ok": False, "error": "JSON object expected"}, status_code=400)
            body = parsed
        actions: dict[str, Callable[..., Any]] = {
            "citizen_message": self.citizen_message,
            "citizen_edit": self.citizen_edit,
            "citizen_wall_comment": self.citizen_wall_comment,
            "set_messages_allowed": self.set_messages_allowed,
            "block_community": self.block_community,
            "force_error": self.force_error,
            "force_failed": self.force_failed,
        }
        try:
            if request.method == "POST" and action in actions:
                if action in ("force_error",):
                    result = actions[action](**body)
                else:
                    result = actions[action](group_id=group_id, **body)
                return JSONResponse({"ok": True, "result": result})
            if action == "sent":
                peer = request.query_params.get("peer_id")
                return JSONResponse(self.sent_messages(int(peer) if peer else None, group_id=group_id))
            if action == "wall_comments":
                return JSONResponse(self.wall_comments(group_id=group_id))
        except (TypeError, ValueError, KeyError) as error:
            return JSONResponse({"ok": False, "error": str(error)}, status_code=400)
        return JSONResponse({"ok": False, "error": "unknown action"}, status_code=404)


def _keyboard(raw: object) -> dict[str, Any] | None:
    """messages.send's `keyboard`, checked as VK documents it (dev.vk.com/ru/api/bots/development/keyboard):
    a JSON object with `buttons` (rows of buttons), each button an `action` with a `type`; a text button
    has a `label` of at most 40 characters and an optional `payload`, a JSON string of at most 255
    characters; an inline keyboard holds at most 6 rows. Anything else: error 911 (keyboard format)."""
    if raw is None or raw == "":
        return None
    try:
        keyboard = json.loads(str(raw))
    except ValueError:
        raise ApiError(911) from None
    rows = keyboard.get("buttons") if isinstance(keyboard, dict) else None
    if not isinstance(rows, list) or (keyboard.get("inline") and len(rows) > 6):
        raise ApiError(911)
    for row in rows:
        if not isinstance(row, list):
            raise ApiError(911)
        for button in row:
            action = button.get("action") if isinstance(button, dict) else None
            if not isinstance(action, dict) or action.get("type") != "text":
                raise ApiError(911)
            label, payload = action.get("label"), action.get("payload")
            if not isinstance(label, str) or not label or len(label) > 40:
                raise ApiError(911)
            if payload is not None:
                if not isinstance(payload, str) or len(payload) > 255:
                    raise ApiError(911)
                try:
                    json.loads(payload)
                except ValueError:
                    raise ApiError(911) from None
    return dict(keyboard)
