"""Telegram channel: our own durable getUpdates loop or a verified webhook in, python-telegram-bot out.

PTB's Updater is not used for intake: it confirms updates (advances the offset) before handlers finish
and keeps the offset only in memory, so a crash would lose citizens' messages. We keep PTB for what it
does well: the Bot API client and its mapping of error responses to exception classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from adaldyk_bots.domain import Delivered, Failed, Held, ReplyTarget, RetryLater, SendResult
from adaldyk_bots.ports import (
    ChannelHealth,
    ConnectorFactory,
    Delivery,
    IntakeSink,
    LoopSpec,
    RateScope,
    RawEvent,
    WebhookRequest,
    WebhookRoute,
    poller_lock_name,
)
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.textsplit import utf16_units
from adaldyk_bots.webhooks import same_secret
from connectors.telegram.parser import TELEGRAM_TEXT_LIMIT, parse_update_payload
from connectors.telegram.settings import TelegramSettings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Update types we turn into appeals or need to see; the others are never requested.
# callback_query: a press of an inline button under our "was it solved?" question (feedback.py).
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member", "callback_query"]
# Bot FAQ: about 30 messages/s in bulk and 1 message/s per chat; stay under both.
BOT_SENDS_PER_SECOND = 25
CHAT_SENDS_PER_SECOND = 1
# A retry_after longer than this is about the whole bot (see send()).
BOT_WIDE_RETRY_AFTER_SECONDS = 10.0
TOKEN_REJECTED = "the bot token was rejected by Telegram (ADALDYK_TELEGRAM_TOKEN)"  # noqa: S105 - a message


class TelegramConnector:
    name: ClassVar[str] = "telegram"
    text_limit: ClassVar[int] = TELEGRAM_TEXT_LIMIT
    settings_model: ClassVar[type[TelegramSettings]] = TelegramSettings

    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        mode: str = "polling",
        webhook_secret: str | None = None,
        public_url: str | None = None,
        poll_timeout: int = 25,
        files_dir: Path | None = None,
    ) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.mode = mode
        self._webhook_secret = webhook_secret
        self.public_url = public_url
        self.poll_timeout = poll_timeout
        self.files_dir = files_dir or Path("var/files/telegram")
        # The bot id is the part of the token before the colon: known without a network call.
        self._account = token.split(":", 1)[0]
        self._health = ChannelHealth(extra={"mode": mode})
        self._tasks: set[asyncio.Task[None]] = set()  # answerCallbackQuery calls after a webhook commit
        self._bot = Bot(
            token,
            base_url=f"{self.api_url}/bot",
            base_file_url=f"{self.api_url}/file/bot",
            request=HTTPXRequest(connection_pool_size=64, read_timeout=10.0, write_timeout=10.0),
            get_updates_request=HTTPXRequest(read_timeout=poll_timeout + 10.0),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramConnector | None:
        own = settings.channel(TelegramSettings)
        if own.telegram_token is None:
            return None
        secret = own.telegram_webhook_secret
        return cls(
            token=own.telegram_token.get_secret_value(),
            api_url=own.telegram_api_url,
            mode=own.telegram_mode,
            webhook_secret=secret.get_secret_value() if secret else None,
            public_url=settings.public_url,
            poll_timeout=own.telegram_poll_timeout,
            files_dir=settings.files_dir / "telegram",
        )

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return utf16_units(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return [
            RateScope(f"telegram:{self._account}", BOT_SENDS_PER_SECOND),
            RateScope(f"telegram:{self._account}:{target.chat_id}", CHAT_SENDS_PER_SECOND),
        ]

    def parse_payload(self, payload: bytes) -> RawEvent:
        return parse_update_payload(payload, account=self._account)

    # --- receiving -----------------------------------------------------------------------------

    def webhooks(self) -> list[WebhookRoute]:
        if self.mode != "webhook" or not self._webhook_secret:
            return []
        return [
            WebhookRoute(
                path="/webhooks/telegram",
                verify=self._authentic,
                route=self._route,
                quarantine_as=(self.name, self._account),
                on_stored=self._note_stored,
                # An empty 200: Telegram reads a method call from a webhook answer's body.
            )
        ]

    def _authentic(self, request: WebhookRequest) -> bool:
        assert self._webhook_secret is not None  # webhooks() serves none without it
        return same_secret(request.headers.get(SECRET_HEADER), self._webhook_secret)

    def _route(self, body: bytes) -> list[Delivery]:
        return [Delivery(self.name, self._account, self.parse_payload(body))]

    def _note_stored(self, deliveries: Sequence[Delivery]) -> None:
        self._health.last_event_at = utcnow().isoformat()
        # Button presses are answered after the commit, off the request (a webhook calls no API inline).
        updates = []
        for delivery in deliveries:
            try:
                updates.append(json.loads(delivery.event.payload))
            except ValueError:
                continue
        if any(isinstance(u, dict) and "callback_query" in u for u in updates):
            try:
                task = asyncio.get_running_loop().create_task(self._answer_callbacks(updates))
            except RuntimeError:  # no loop in this thread: Telegram stops waiting by itself
                return
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        try:
            await self._bot.initialize()  # getMe
            self._health.extra["username"] = self._bot.bot.username
            self._health.extra["credentials"] = "accepted"  # getMe answered with the token
        except InvalidToken:
            self._set_health("broken", TOKEN_REJECTED)
            return
        except TelegramError as exc:
            # Network trouble at start is not fatal: the poll loop keeps retrying.
            self._set_health("degraded", f"getMe failed: {exc}")
        if not receive:
            self._set_health("ok", "sending only")
            return
        if self.mode == "webhook":
            await self._register_webhook()

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        """The getUpdates loop, one per bot across workers (the supervisor holds the lock), unless the
        bot receives by webhook or its token was rejected at start."""
        if self.mode == "webhook" or self._health.state == "broken":
            return []
        return [
            LoopSpec(
                name=f"telegram:poller:{self._account}",
                run_round=lambda: self._poll_round(intake),
                lock=poller_lock_name(self.name, self._account),
                on_acquire=self._drop_webhook,
                on_standby=lambda: self._set_health("ok", "standby: another worker polls this bot"),
                period=self.poll_timeout + 10.0,
            )
        ]

    async def _register_webhook(self) -> None:
        url = f"{self.public_url}/webhooks/telegram"
        try:
            await self._bot.set_webhook(
                url=url,
                secret_token=self._webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,  # never: it discards citizens' messages
            )
            self._set_health("ok", f"webhook registered at {url}")
        except TelegramError as exc:
            self._set_health("broken", f"setWebhook failed: {exc}")

    async def _drop_webhook(self) -> None:
        try:
            # A webhook left over from webhook mode would make every getUpdates fail with 409.
            await self._bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            log.warning("telegram: deleteWebhook failed: %s", exc)

    async def _poll_round(self, intake: IntakeSink) -> None:
        """One round for the supervisor: an error says why on the channel's health and is raised, so
        the supervisor logs it and backs off. Network errors and a database that is down never lose
        anything: the offset was not advanced, so the same updates come again."""
        try:
            await self.poll_once(intake)
        except RetryAfter as exc:
            # Telegram's own pause is an answer, not a failure: wait exactly as long as it says.
            self._set_health("degraded", f"getUpdates: flood control, retry after {exc.retry_after}")
            await asyncio.sleep(_seconds(exc.retry_after))
        except InvalidToken:
            self._set_health("broken", TOKEN_REJECTED)
            raise
        except Conflict as exc:
            self._set_health("degraded", f"getUpdates conflict: {exc.message}")
            raise
        except Exception as exc:
            self._set_health("degraded", f"polling: {type(exc).__name__}: {exc}")
            raise

    async def poll_once(self, intake: IntakeSink) -> int | None:
        """One getUpdates round; stores the batch and the next offset in one transaction."""
        cursor = await asyncio.to_thread(intake.cursor, self.name, self._account)
        params: dict[str, Any] = {
            "timeout": self.poll_timeout,
            "limit": 100,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if cursor:
            params["offset"] = int(cursor)
        with warnings.catch_warnings():
            # PTB suggests Bot.get_updates, but that returns parsed objects and we keep raw updates.
            warnings.simplefilter("ignore", PTBUserWarning)
            updates = await self._bot.do_api_request(
                "getUpdates", api_kwargs=params, read_timeout=self.poll_timeout + 10.0
            )
        if self._health.state != "ok":
            self._set_health("ok", "polling")
        if not updates:
            return None
        events = [self.parse_payload(json.dumps(u, ensure_ascii=False).encode()) for u in updates]
        ids = [u["update_id"] for u in updates if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
        # The offset confirms everything below it at Telegram, so it moves only with the stored batch.
        next_offset = str(max(ids) + 1) if ids else cursor
        result = await asyncio.to_thread(
            intake.store, channel=self.name, account=self._account, events=events, cursor=next_offset
        )
        self._health.last_event_at = utcnow().isoformat()
        await self._answer_callbacks(updates)
        return result.stored

    async def _answer_callbacks(self, updates: Sequence[Any]) -> None:
        """After the batch is stored: answerCallbackQuery for every button press in it, so the citizen's
        client stops its progress indicator (Bot API: "the answer is required"). A failure changes nothing
        stored: Telegram stops waiting by itself after a while."""
        for update in updates:
            query = update.get("callback_query") if isinstance(update, dict) else None
            if isinstance(query, dict) and isinstance(query.get("id"), str):
                try:
                    await self._bot.answer_callback_query(query["id"])
                except TelegramError as exc:
                    log.info("telegram: answerCallbackQuery %s failed: %s", query["id"], exc)

    async def stop(self) -> None:
        # The poll loop belongs to the supervisor, which has stopped it before this is called.
        try:
            await self._bot.shutdown()
        except TelegramError:
            pass

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "telegram: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail
        # The token's state for the channel health page (adaldyk_bots/health.py): every "ok" follows an
        # answer to a call made with the token; a refusal is always said with TOKEN_REJECTED.
        if state == "ok" and not detail.startswith("standby"):
            self._health.extra["credentials"] = "accepted"
        elif detail == TOKEN_REJECTED:
            self._health.extra["credentials"] = "refused"

    # --- sending -------------------------------------------------------------------------------

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        # Telegram has no idempotency key for sendMessage; the outbox lease keeps duplicates to the
        # one part in flight during a crash.
        try:
            message = await self._bot.send_message(
                chat_id=int(target.chat_id), text=text, reply_markup=_keyboard(target)
            )
        except RetryAfter as exc:
            after = _seconds(exc.retry_after)
            # Telegram does not say whether a 429 is the chat's or the bot's (platforms.md §1c). A chat's
            # limit (1/s, 20/min in groups) frees a message within seconds; a longer wait is flood control
            # of the whole bot. Shorter ones are left to the dispatcher (two chats at once: the bot's).
            scope = "account" if after > BOT_WIDE_RETRY_AFTER_SECONDS else None
            return RetryLater("telegram.rate_limited", str(exc), after, rate_limited=True, scope=scope)
        except Forbidden as exc:
            code = "telegram.blocked" if "blocked" in exc.message else "telegram.forbidden"
            if "deactivated" in exc.message:
                code = "telegram.user_deactivated"
            return Failed(code, exc.message)
        except InvalidToken as exc:
            self._set_health("broken", TOKEN_REJECTED)
            return Held("telegram.token_invalid", f"{TOKEN_REJECTED}: {exc.message}")
        except ChatMigrated as exc:
            return Failed("telegram.chat_migrated", f"chat moved to {exc.new_chat_id}")
        except BadRequest as exc:  # before NetworkError: PTB's BadRequest subclasses it
            code = (
                "telegram.chat_not_found"
                if "chat not found" in exc.message.lower()
                else "telegram.bad_request"
            )
            return Failed(code, exc.message)
        except TimedOut as exc:
            return RetryLater("telegram.timeout", exc.message)
        except NetworkError as exc:
            return RetryLater("telegram.network", exc.message)
        except TelegramError as exc:
            return RetryLater("telegram.error", exc.message)
        if self._health.detail == TOKEN_REJECTED:
            self._set_health("ok", "the bot token is accepted again")
        return Delivered(str(message.message_id))

    async def download_file(self, file_id: str) -> Path:
        """Fetch a citizen's file into local storage (Telegram's file links expire) and return its path."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch for ch in file_id if ch.isalnum() or ch in "-_")
        path = self.files_dir / safe
        if not path.exists():
            file = await self._bot.get_file(file_id)
            await file.download_to_drive(custom_path=path.with_suffix(".part"))
            path.with_suffix(".part").rename(path)
        return path


def _keyboard(target: ReplyTarget) -> InlineKeyboardMarkup | None:
    """The choices as an inline keyboard, one button a row; a press comes back as a callback_query whose
    `data` is the choice's id (core.telegram.org/bots/api#inlinekeyboardmarkup; callback_data 1-64 bytes)."""
    if not target.choices:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(c.label, callback_data=c.id[:64])] for c in target.choices]
    )


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# mypy checks the class against the ports here (its from_settings returns a Connector), so a drift is a
# type error rather than a surprise at start-up.
_FACTORY: ConnectorFactory = TelegramConnector
