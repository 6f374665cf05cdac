"""A fake Telegram Bot API server on loopback that behaves like the real one where our code depends on it."""

from __future__ import annotations

import asyncio
import bisect
import copy
import email.parser
import email.policy
import itertools
import json
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer

__all__ = ["FakeTelegramServer"]

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TEXT_LIMIT = 4096

# The real server sends everything except these three when allowed_updates is [] or was never given.
NON_DEFAULT_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

CONFLICT_WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
CONFLICT_OTHER_POLLER = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
CONFLICT_SET_WEBHOOK = "Conflict: terminated by setWebhook request"

# A minimal JPEG (SOI … EOI) so that downloaded "photos" start with the right magic bytes.
FAKE_JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
)


class ApiError(Exception):
    """An error answer of the Bot API; raised inside handlers and turned into the real envelope."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        return _error_response(self.error_code, self.description, self.retry_after)


def _error_response(error_code: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    # The HTTP status mirrors error_code, as on api.telegram.org; clients (PTB) branch on the status.
    status = error_code if 400 <= error_code <= 599 else 400
    return JSONResponse(body, status_code=status)


def _ok(result: Any, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description is not None:
        body["description"] = description
    return JSONResponse(body)


# ---------------------------------------------------------------------------------------------------------
# Parameter parsing. PTB sends form data in which every non-string value is a JSON string ("123", "true",
# '["message"]'), our own code sends JSON with real types, so every getter accepts both spellings.


def _get_int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _get_float(params: dict[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _get_str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value)


def _get_bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"true", "1", "yes", "on"}


def _get_json(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


def _get_list(params: dict[str, Any], name: str) -> list[Any] | None:
    value = _get_json(params, name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(400, f"Bad Request: can't parse {name} JSON array")
    return value


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    # python-multipart is not installed, and the stdlib email parser handles RFC 7578 bodies well enough
    # for the handful of fields a test sends; file parts keep their bytes.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            fields[name] = raw
        else:
            charset = part.get_content_charset() or "utf-8"
            fields[name] = raw.decode(charset, "replace")
    return fields


async def _read_params(request: Request) -> dict[str, Any]:
    # The real API merges the query string with the body, so GET ?chat_id=… and POST bodies both work.
    params: dict[str, Any] = dict(request.query_params)
    if request.method != "POST":
        return params
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON object") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Bad Request: JSON object expected")
        params.update(data)
    elif kind == "multipart/form-data":
        params.update(_parse_multipart(body, content_type))
    else:
        # application/x-www-form-urlencoded, and also what a bare client sends without a content type.
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


# ---------------------------------------------------------------------------------------------------------
# Server-side state.


@dataclass
class _Bucket:
    """A token bucket; full at creation, like a chat nobody has written to for a while."""

    burst: float
    rate: float
    tokens: float
    stamp: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 when a send may go now)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        if self.rate <= 0:
            return 3600.0
        return (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes


@dataclass
class _Forced:
    error_code: int
    description: str
    retry_after: int | None


@dataclass
class _Bot:
    token: str
    bot_id: int
    username: str
    first_name: str
    next_update_id: int
    queue: list[dict[str, Any]] = field(default_factory=list)
    allowed_updates: list[str] | None = None  # None and [] both mean "the default types"
    webhook_url: str = ""
    webhook_secret: str | None = None
    webhook_max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None
    deliverer: asyncio.Task[None] | None = None
    poll_seq: int = 0
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    callback_queries: set[str] = field(default_factory=set)  # button presses not yet answered
    last_message_id: dict[int, int] = field(default_factory=dict)
    message_dates: dict[tuple[int, int], int] = field(default_factory=dict)
    forced: dict[int, deque[_Forced]] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)
    files_by_path: dict[str, _File] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    chat_buckets: dict[int, _Bucket] = field(default_factory=dict)
    bot_bucket: _Bucket | None = None

    def user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def next_message_id(self, chat_id: int) -> int:
        # In a private chat both sides share one message_id sequence, so citizen and bot messages interleave.
        value = self.last_message_id.get(chat_id, 0) + 1
        self.last_message_id[chat_id] = value
        return value

    def accepts(self, update_type: str) -> bool:
        if not self.allowed_updates:
            return update_type not in NON_DEFAULT_UPDATE_TYPES
        return update_type in self.allowed_updates


def _inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    """sendMessage's reply_markup, checked as the Bot API checks an InlineKeyboardMarkup
    (core.telegram.org/bots/api#inlinekeyboardmarkup): an array of button rows, each button with a text
    and exactly one action; callback_data is 1-64 bytes. Anything else is refused as Telegram refuses it."""
    raw = params.get("reply_markup")
    if raw is None or raw == "":
        return None
    try:
        markup = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object") from None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(
            400, 'Bad Request: can\'t parse inline keyboard button: field "inline_keyboard" must be an Array'
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
                raise ApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard",
                )
            data = button.get("callback_data")
            if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= 64):
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if data is None and "url" not in button:
                raise ApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: "
                    "InlineKeyboardButton must have exactly one optional field",
                )
    return dict(markup)


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def _chat_of(update: dict[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """The chat an update came from and the message_id in it, wherever the update type keeps them."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        holder = value
        if "chat" not in holder and isinstance(holder.get("message"), dict):
            holder = holder["message"]  # callback_query keeps its chat inside .message
        chat = holder.get("chat")
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            message_id = holder.get("message_id")
            return chat, message_id if isinstance(message_id, int) else None
    return None, None


def _default_chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "first_name": "Citizen", "type": "private"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "title": "Test group", "type": kind}


Handler = Callable[[_Bot, dict[str, Any]], Awaitable[JSONResponse]]


class FakeTelegramServer(LoopbackServer):
    """Serves /bot<token>/<method>, /file/bot<token>/<path> and a /_fake/<token>/… control API.

    All control methods are thread-safe: they run on the test thread while the server runs on its own loop.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        chat_burst: int = 3,
        chat_rate_per_s: float = 1.0,
        bot_burst: int = 30,
        bot_rate_per_s: float = 30.0,
        webhook_retry_delay: float = 0.2,
        webhook_timeout: float = 5.0,
    ) -> None:
        super().__init__(host=host, port=port, name="fake-telegram")
        self.chat_burst = chat_burst
        self.chat_rate_per_s = chat_rate_per_s
        self.bot_burst = bot_burst
        self.bot_rate_per_s = bot_rate_per_s
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout

        # Public records that tests assert on; append-only from the server side.
        self.violations: list[dict[str, Any]] = []
        self.forced: list[dict[str, Any]] = []
        self.send_attempts: list[dict[str, Any]] = []
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.get_updates_calls = 0

        # One RLock guards all state: handlers take it briefly (never across an await), the test thread too.
        self._lock = threading.RLock()
        self._bots: dict[str, _Bot] = {}
        self._revoked: set[str] = set()  # tokens that answer 401 until restored (a revoked/broken token)
        self._sent: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []  # answerCallbackQuery calls, in order
        self._callback_seq = itertools.count(1)
        self._file_seq = itertools.count(1)

        self._methods: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "setmycommands": self._set_my_commands,
            "deletemycommands": self._delete_my_commands,
            "getmycommands": self._get_my_commands,
        }
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=["GET", "POST"])])

    # -----------------------------------------------------------------------------------------------------
    # Lifecycle.

    async def _on_serving(self) -> None:
        with self._lock:
            # Webhooks set before a restart keep delivering, as Telegram's would.
            for bot in self._bots.values():
                bot.deliverer = None
                if bot.webhook_url:
                    bot.deliverer = asyncio.create_task(self._deliver(bot))

    async def _on_stopped(self) -> None:
        with self._lock:
            tasks = [bot.deliverer for bot in self._bots.values()]
            for bot in self._bots.values():
                bot.deliverer = None
        await self._cancel_tasks(tasks)

    # -----------------------------------------------------------------------------------------------------
    # Python control API.

    def add_bot(self, token: str, *, username: str = "adaldyk_test_bot", first_name: str = "Adaldyk") -> None:
        match = TOKEN_RE.match(token)
        if match is None:
            raise ValueError(f"not a bot token: {token!r}")
        with self._lock:
            existing = self._bots.get(token)
            if existing is not None:  # re-adding renames the bot but keeps its queue, chats and files
                existing.username, existing.first_name = username, first_name
                return
            self._bots[token] = _Bot(
                token=token,
                bot_id=int(match.group(1)),
                username=username,
                first_name=first_name,
                # Real update ids start at an arbitrary positive number; never 1, so off-by-one bugs show.
                next_update_id=random.randint(10_000_000, 99_000_000),
            )

    def _bot(self, token: str) -> _Bot:
        bot = self._bots.get(token)
        if bot is None:
            raise KeyError(f"unknown bot token {token!r}; call add_bot first")
        return bot

    def inject_update(self, token: str, update: dict[str, Any]) -> int:
        """Queue an update as if Telegram received it; returns its update_id."""
        update = copy.deepcopy(update)
        with self._lock:
            bot = self._bot(token)
            given = update.get("update_id")
            if isinstance(given, int):
                update_id = given
                bot.next_update_id = max(bot.next_update_id, update_id + 1)
            else:
                update_id = bot.next_update_id
                bot.next_update_id += 1
                update = {"update_id": update_id, **update}
            chat, message_id = _chat_of(update)
            if chat is not None:
                chat_id = int(chat["id"])
                bot.chats.setdefault(chat_id, copy.deepcopy(chat))
                if message_id is not None:
                    bot.last_message_id[chat_id] = max(bot.last_message_id.get(chat_id, 0), message_id)
            # allowed_updates applies when an update is created, not when it is fetched (documented).
            if bot.accepts(_update_type(update)):
                ids = [queued["update_id"] for queued in bot.queue]
                bot.queue.insert(bisect.bisect_right(ids, update_id), update)
        self._notify(token)
        return update_id

    def citizen_message(
        self,
        token: str,
        *,
        chat_id: int,
        text: str | None = None,
        first_name: str = "Айгүл",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "kk",
        caption: str | None = None,
        photo: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Inject a private-chat `message` from a citizen; returns the update_id."""
        user: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": first_name}
        chat: dict[str, Any] = {"id": chat_id, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = chat["last_name"] = last_name
        if username is not None:
            user["username"] = chat["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        chat["type"] = "private"
        now = int(time.time())
        with self._lock:
            bot = self._bot(token)
            message_id = bot.next_message_id(chat_id)
            bot.message_dates[(chat_id, message_id)] = now
            message: dict[str, Any] = {"message_id": message_id, "from": user, "chat": chat, "date": now}
            if text is not None:
                message["text"] = text
            if photo:
                message["photo"] = self._make_photo(token)
            if caption is not None:
                message["caption"] = caption
            if extra:
                message.update(copy.deepcopy(extra))
            return self.inject_update(token, {"message": message})

    def citizen_edit(self, token: str, *, chat_id: int, message_id: int, text: str) -> int:
        """Inject an `edited_message` for an earlier citizen message; returns the update_id."""
        now = int(time.time())
        with self._lock:
            bot = self._bot(token)
            chat = copy.deepcopy(bot.chats.get(chat_id) or _default_chat(chat_id))
            user = {"id": chat_id, "is_bot": False, "first_name": chat.get("first_name", "Citizen")}
            message = {
                "message_id": message_id,
                "from": user,
                "chat": chat,
                "date": bot.message_dates.get((chat_id, message_id), now),
                "edit_date": now,
                "text": text,
            }
            return self.inject_update(token, {"edited_message": message})

    def _make_photo(self, token: str) -> list[dict[str, Any]]:
        sizes = []
        for width, height in ((90, 67), (1280, 960)):
            n = next(self._file_seq)
            file_id = f"AgACAgIAAxkBAAI{n:06d}{random.getrandbits(48):012x}"
            self.add_file(token, file_id, FAKE_JPEG, file_path=f"photos/file_{n}.jpg")
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": self._bot(token).files[file_id].file_unique_id,
                    "file_size": len(FAKE_JPEG),
                    "width": width,
                    "height": height,
                }
            )
        return sizes

    def add_chat(self, token: str, chat_id: int) -> None:
        with self._lock:
            self._bot(token).chats.setdefault(chat_id, _default_chat(chat_id))

    def block_chat(self, token: str, chat_id: int) -> None:
        with self._lock:
            bot = self._bot(token)
            bot.chats.setdefault(chat_id, _default_chat(chat_id))
            bot.blocked.add(chat_id)

    def unblock_chat(self, token: str, chat_id: int) -> None:
        with self._lock:
            self._bot(token).blocked.discard(chat_id)

    def revoke_token(self, token: str) -> None:
        """Every Bot API call with this token answers 401 Unauthorized until restore_token (the bot keeps
        its state, as when a token is briefly refused)."""
        with self._lock:
            self._bot(token)
            self._revoked.add(token)

    def restore_token(self, token: str) -> None:
        with self._lock:
            self._revoked.discard(token)

    def rate_limit_answers(self, token: str | None = None) -> list[dict[str, Any]]:
        """Every 429 the fake answered for exceeding its limits (not the forced ones), with its scope."""
        with self._lock:
            return [dict(v) for v in self.violations if token in (None, v["token"])]

    def force_status(
        self,
        token: str,
        chat_id: int,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` sendMessage calls to chat_id fail with this error (recorded in self.forced)."""
        with self._lock:
            queue = self._bot(token).forced.setdefault(chat_id, deque())
            queue.extend(_Forced(error_code, description, retry_after) for _ in range(times))

    def add_file(self, token: str, file_id: str, content: bytes, *, file_path: str | None = None) -> None:
        """Register a downloadable file; file_path defaults to documents/file_<n>."""
        with self._lock:
            bot = self._bot(token)
            path = file_path or f"documents/file_{next(self._file_seq)}"
            unique = "AQAD" + format(abs(hash((token, file_id))) % 16**12, "012x")
            item = _File(file_id=file_id, file_unique_id=unique, file_path=path, content=bytes(content))
            bot.files[file_id] = item
            bot.files_by_path[path] = item

    def sent_messages(self, token: str | None = None, chat_id: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(item)
                for item in self._sent
                if token in (None, item["token"]) and chat_id in (None, item["chat_id"])
            ]

    def pending_count(self, token: str) -> int:
        with self._lock:
            return len(self._bot(token).queue)

    def webhook_info(self, token: str) -> dict[str, Any]:
        with self._lock:
            return self._webhook_info(self._bot(token))

    # -----------------------------------------------------------------------------------------------------
    # HTTP dispatch.

    async def _dispatch(self, request: Request) -> Response:
        path: str = request.scope["path"]
        try:
            if path.startswith("/bot"):
                token, _, method = path[len("/bot") :].partition("/")
                bot = self._bots.get(token)
                if bot is None or token in self._revoked:
                    raise ApiError(401, "Unauthorized")
                handler = self._methods.get(method.lower())
                if handler is None:
                    raise ApiError(404, "Not Found")
                return await handler(bot, await _read_params(request))
            if path.startswith("/file/bot"):
                token, _, file_path = path[len("/file/bot") :].partition("/")
                return self._download(token, file_path)
            if path.startswith("/_fake/"):
                token, _, action = path[len("/_fake/") :].partition("/")
                return await self._control(request, token, action)
        except ClientDisconnect:
            # The client went away mid-request (a test kills the worker with SIGKILL): nothing to answer.
            return Response(status_code=499)
        except ApiError as error:
            return error.response()
        return _error_response(404, "Not Found")

    def _download(self, token: str, file_path: str) -> Response:
        with self._lock:
            bot = self._bots.get(token)
            if bot is None:
                raise ApiError(401, "Unauthorized")
            item = bot.files_by_path.get(file_path)
        if item is None:
            raise ApiError(404, "Not Found")
        return Response(item.content, media_type="application/octet-stream")

    async def _control(self, request: Request, token: str, action: str) -> Response:
        if token not in self._bots:
            raise ApiError(404, "Not Found: unknown bot token")
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                raise ApiError(400, "Bad Request: JSON body expected") from None
            if not isinstance(parsed, dict):
                raise ApiError(400, "Bad Request: JSON object expected")
            body = parsed
        chat_id = _get_int({**dict(request.query_params), **body}, "chat_id")
        try:
            if action == "citizen_message" and request.method == "POST":
                return JSONResponse({"ok": True, "update_id": self.citizen_message(token, **body)})
            if action == "citizen_edit" and request.method == "POST":
                return JSONResponse({"ok": True, "update_id": self.citizen_edit(token, **body)})
            if action == "sent":
                return JSONResponse(self.sent_messages(token, chat_id))
            if action == "pending":
                return JSONResponse({"ok": True, "pending": self.pending_count(token)})
            if action in {"block", "unblock", "add_chat"} and request.method == "POST":
                if chat_id is None:
                    raise ApiError(400, "Bad Request: chat_id is empty")
                {"block": self.block_chat, "unblock": self.unblock_chat, "add_chat": self.add_chat}[action](
                    token, chat_id
                )
                return JSONResponse({"ok": True})
        except TypeError as error:  # wrong keyword arguments in the JSON body
            raise ApiError(400, f"Bad Request: {error}") from None
        raise ApiError(404, "Not Found")

    # -----------------------------------------------------------------------------------------------------
    # Bot API methods.

    async def _get_me(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        return _ok(bot.user())

    async def _get_updates(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        offset = _get_int(params, "offset") or 0
        limit = min(100, max(1, _get_int(params, "limit") or 100))  # the real server clamps, not rejects
        timeout = max(0.0, _get_float(params, "timeout") or 0.0)
        allowed = _get_list(params, "allowed_updates")
        with self._lock:
            self.get_updates_calls += 1
            if bot.webhook_url:
                raise ApiError(409, CONFLICT_WEBHOOK_ACTIVE)
            if allowed is not None:
                bot.allowed_updates = [str(kind) for kind in allowed]
            bot.poll_seq += 1
            my_seq = bot.poll_seq
            if offset > 0:
                bot.queue = [update for update in bot.queue if update["update_id"] >= offset]
            elif offset < 0:
                bot.queue = bot.queue[offset:]  # keep the last -offset updates, forget the rest
        self._wake(bot.token)  # an earlier long poll of this bot must now end with 409

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Check and fetch the event in one synchronous step so a wake-up cannot slip in between.
            with self._lock:
                if bot.poll_seq != my_seq:
                    raise ApiError(409, CONFLICT_OTHER_POLLER)
                if bot.webhook_url:
                    raise ApiError(409, CONFLICT_SET_WEBHOOK)
                batch = bot.queue[:limit]
            event = self._wakeup(bot.token)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return _ok(batch)
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    def _webhook_info(self, bot: _Bot) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.queue),
        }
        if bot.last_error_date is not None:
            info["last_error_date"] = bot.last_error_date
            info["last_error_message"] = bot.last_error_message or ""
        if bot.webhook_url:
            info["max_connections"] = bot.webhook_max_connections
            if bot.allowed_updates:
                info["allowed_updates"] = list(bot.allowed_updates)
        return info

    async def _get_webhook_info(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        with self._lock:
            return _ok(self._webhook_info(bot))

    async def _set_webhook(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        url = (_get_str(params, "url") or "").strip()
        secret = _get_str(params, "secret_token") or None
        max_connections = min(100, max(1, _get_int(params, "max_connections") or 40))
        allowed = _get_list(params, "allowed_updates")
        drop = _get_bool(params, "drop_pending_updates")
        if secret is not None and not SECRET_RE.match(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and urlsplit(url).scheme not in {"http", "https"}:
            # The real API wants HTTPS; the fake also takes http:// because test receivers live on loopback.
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            if drop:
                bot.queue.clear()
            if allowed is not None:
                bot.allowed_updates = [str(kind) for kind in allowed]
            if url != bot.webhook_url:
                bot.last_error_date = bot.last_error_message = None
            was_set = bool(bot.webhook_url)
            bot.webhook_url = url
            bot.webhook_secret = secret
            bot.webhook_max_connections = max_connections
            if url and bot.deliverer is None:
                bot.deliverer = asyncio.get_running_loop().create_task(self._deliver(bot))
        self._wake(bot.token)  # ends a running long poll with 409 and wakes the deliverer
        if not url:
            return _ok(True, "Webhook was deleted" if was_set else "Webhook is already deleted")
        return _ok(True, "Webhook was set")

    async def _delete_webhook(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        drop = _get_bool(params, "drop_pending_updates")
        with self._lock:
            was_set = bool(bot.webhook_url)
            bot.webhook_url = ""
            bot.webhook_secret = None
            if drop:
                bot.queue.clear()
        self._wake(bot.token)  # the deliverer sees the empty url and exits
        return _ok(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _deliver(self, bot: _Bot) -> None:
        """POST queued updates to the webhook one at a time, in update_id order, until the webhook goes."""
        headers_base = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(trust_env=False, timeout=self.webhook_timeout) as client:
            while True:
                with self._lock:
                    if not bot.webhook_url or self._closing:
                        # Cleared in the same step as the decision, so setWebhook starts a fresh deliverer.
                        bot.deliverer = None
                        return
                    url, secret = bot.webhook_url, bot.webhook_secret
                    update = bot.queue[0] if bot.queue else None
                event = self._wakeup(bot.token)
                if update is None:
                    await event.wait()
                    continue
                headers = dict(headers_base)
                if secret:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                status: int | None = None
                error: str | None = None
                try:
                    response = await client.post(url, content=json.dumps(update).encode(), headers=headers)
                    status = response.status_code
                    if not 200 <= status <= 299:
                        error = f"Wrong response from the webhook: {status} {response.reason_phrase}".strip()
                except httpx.HTTPError as exc:
                    error = str(exc) or type(exc).__name__
                with self._lock:
                    self.webhook_deliveries.append(
                        {
                            "token": bot.token,
                            "update_id": update["update_id"],
                            "url": url,
                            "status": status,
                            "error": error,
                            "at": time.monotonic(),
                        }
                    )
                    if error is None:
                        # Remove by id: the queue may have been dropped or confirmed meanwhile.
                        bot.queue = [u for u in bot.queue if u["update_id"] != update["update_id"]]
                    else:
                        bot.last_error_date = int(time.time())
                        bot.last_error_message = error
                if error is not None:
                    await asyncio.sleep(self.webhook_retry_delay)

    async def _send_message(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        now = time.monotonic()
        text = _get_str(params, "text") or ""
        raw_chat = params.get("chat_id")
        if raw_chat is None or raw_chat == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        try:
            chat_id = _get_int(params, "chat_id")
        except ApiError:
            chat_id = None  # "@username" chats exist in the real API but not in the fake
        attempt: dict[str, Any] = {"token": bot.token, "chat_id": chat_id, "text": text, "at": now}
        try:
            with self._lock:
                result = self._accept_message(bot, chat_id, text, params, now)
        except ApiError as error:
            attempt.update(ok=False, error_code=error.error_code, retry_after=error.retry_after)
            attempt["description"] = error.description
            with self._lock:
                self.send_attempts.append(attempt)
            raise
        attempt.update(ok=True, error_code=None, retry_after=None, message_id=result["message_id"])
        with self._lock:
            self.send_attempts.append(attempt)
        return _ok(result)

    def _accept_message(
        self, bot: _Bot, chat_id: int | None, text: str, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Validate and record one sendMessage (lock held); the order of checks follows the real API's."""
        # A forced answer comes first so a test can script failures even for a chat the fake never saw.
        forced = bot.forced.get(chat_id) if chat_id is not None else None
        if forced:
            answer = forced.popleft()
            self.forced.append(
                {
                    "token": bot.token,
                    "chat_id": chat_id,
                    "error_code": answer.error_code,
                    "description": answer.description,
                    "retry_after": answer.retry_after,
                    "at": now,
                }
            )
            raise ApiError(answer.error_code, answer.description, answer.retry_after)
        if chat_id is None or chat_id not in bot.chats:
            raise ApiError(400, "Bad Request: chat not found")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > TEXT_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        if chat_id in bot.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        markup = _inline_markup(params)

        chat_bucket = bot.chat_buckets.get(chat_id)
        if chat_bucket is None:
            chat_bucket = bot.chat_buckets[chat_id] = _Bucket(
                self.chat_burst, self.chat_rate_per_s, self.chat_burst, now
            )
        if bot.bot_bucket is None:
            bot.bot_bucket = _Bucket(self.bot_burst, self.bot_rate_per_s, self.bot_burst, now)
        for scope, bucket in (("chat", chat_bucket), ("bot", bot.bot_bucket)):
            wait = bucket.wait_time(now)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                self.violations.append(
                    {
                        "token": bot.token,
                        "chat_id": chat_id,
                        "scope": scope,
                        "at": now,
                        "retry_after": retry_after,
                    }
                )
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        chat_bucket.take()
        bot.bot_bucket.take()

        message_id = bot.next_message_id(chat_id)
        date = int(time.time())
        message: dict[str, Any] = {
            "message_id": message_id,
            # Inside a Message the bot appears as a plain User: the can_* flags exist only in getMe.
            "from": {key: bot.user()[key] for key in ("id", "is_bot", "first_name", "username")},
            "chat": copy.deepcopy(bot.chats[chat_id]),
            "date": date,
            "text": text,
        }
        if markup is not None:
            message["reply_markup"] = markup
        self._sent.append(
            {
                "token": bot.token,
                "chat_id": chat_id,
                "text": text,
                "message_id": message_id,
                "at": now,
                "wall": time.time(),
                "params": {key: value for key, value in params.items() if not isinstance(value, bytes)},
                "reply_markup": markup,
                "message": copy.deepcopy(message),
            }
        )
        return message

    async def _answer_callback_query(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        query_id = _get_str(params, "callback_query_id")
        with self._lock:
            if query_id is None or query_id not in bot.callback_queries:
                raise ApiError(
                    400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                )
            bot.callback_queries.discard(query_id)
            self.callback_answers.append(
                {"token": bot.token, "callback_query_id": query_id, "at": time.monotonic()}
            )
        return _ok(True)

    def press_button(self, token: str, *, chat_id: int, callback_data: str, first_name: str = "Айгүл") -> int:
        """The citizen presses the inline button with `callback_data` under the latest message we sent to
        them that has one: a `callback_query` update shaped as the Bot API's CallbackQuery (id, from,
        message with its reply_markup, chat_instance, data). Returns the update_id."""
        with self._lock:
            bot = self._bot(token)
            under = next(
                (
                    item["message"]
                    for item in reversed(self._sent)
                    if item["token"] == token
                    and item["chat_id"] == chat_id
                    and any(
                        b.get("callback_data") == callback_data
                        for row in (item.get("reply_markup") or {}).get("inline_keyboard", [])
                        for b in row
                    )
                ),
                None,
            )
            if under is None:
                raise ValueError(f"no message to chat {chat_id} has a button {callback_data!r}")
            query_id = f"{chat_id}{next(self._callback_seq):06d}"
            bot.callback_queries.add(query_id)
        query = {
            "id": query_id,
            "from": {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": "kk"},
            "message": copy.deepcopy(under),
            "chat_instance": f"-{chat_id}",
            "data": callback_data,
        }
        return self.inject_update(token, {"callback_query": query})

    async def _send_chat_action(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        chat_id = _get_int(params, "chat_id")
        if not _get_str(params, "action"):
            raise ApiError(400, "Bad Request: action is empty")
        with self._lock:
            if chat_id is None or chat_id not in bot.chats:
                raise ApiError(400, "Bad Request: chat not found")
            if chat_id in bot.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
        return _ok(True)

    async def _get_file(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        file_id = _get_str(params, "file_id") or ""
        with self._lock:
            item = bot.files.get(file_id)
        if item is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return _ok(
            {
                "file_id": item.file_id,
                "file_unique_id": item.file_unique_id,
                "file_size": len(item.content),
                "file_path": item.file_path,
            }
        )

    async def _set_my_commands(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        commands = _get_list(params, "commands")
        if commands is None:
            raise ApiError(400, 'Bad Request: parameter "commands" is required')
        with self._lock:
            bot.commands = [dict(command) for command in commands if isinstance(command, dict)]
        return _ok(True)

    async def _delete_my_commands(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        with self._lock:
            bot.commands = []
        return _ok(True)

    async def _get_my_commands(self, bot: _Bot, params: dict[str, Any]) -> JSONResponse:
        with self._lock:
            return _ok([dict(command) for command in bot.commands])
