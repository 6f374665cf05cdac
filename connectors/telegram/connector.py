"""Telegram channel: our own durable getUpdates loop or a verified webhook in, python-telegram-bot out.

PTB's Updater is not used for intake: it confirms updates (advances the offset) before handlers finish
and keeps the offset only in memory, so a crash would lose citizens' messages. We keep PTB for what it
does well: the Bot API client and its mapping of error responses to exception classes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from telegram import Bot
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

from adaldyk_bots.domain import Delivered, Failed, ReplyTarget, RetryLater, SendResult
from adaldyk_bots.intake import Intake
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.ports import ChannelHealth, RateScope, RawEvent
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.textsplit import utf16_units
from adaldyk_bots.threads import run_write
from connectors.telegram.parser import TELEGRAM_TEXT_LIMIT, parse_update_payload

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Update types we turn into appeals or need to see; the others are never requested.
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member"]
# Bot FAQ: about 30 messages/s in bulk and 1 message/s per chat; stay under both.
BOT_SENDS_PER_SECOND = 25
CHAT_SENDS_PER_SECOND = 1
TOKEN_INVALID_RETRY_SECONDS = 300.0


class TelegramConnector:
    name: ClassVar[str] = "telegram"
    text_limit: ClassVar[int] = TELEGRAM_TEXT_LIMIT

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
        self._bot = Bot(
            token,
            base_url=f"{self.api_url}/bot",
            base_file_url=f"{self.api_url}/file/bot",
            request=HTTPXRequest(connection_pool_size=64, read_timeout=10.0, write_timeout=10.0),
            get_updates_request=HTTPXRequest(read_timeout=poll_timeout + 10.0),
        )
        self._poll_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramConnector | None:
        if settings.telegram_token is None:
            return None
        secret = settings.telegram_webhook_secret
        return cls(
            token=settings.telegram_token.get_secret_value(),
            api_url=settings.telegram_api_url,
            mode=settings.telegram_mode,
            webhook_secret=secret.get_secret_value() if secret else None,
            public_url=settings.public_url,
            poll_timeout=settings.telegram_poll_timeout,
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

    def webhook_router(self, intake: Intake) -> APIRouter | None:
        if self.mode != "webhook" or not self._webhook_secret:
            return None
        expected = self._webhook_secret.encode()
        router = APIRouter()

        @router.post("/webhooks/telegram", include_in_schema=False)
        async def telegram_webhook(request: Request) -> Response:
            supplied = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(supplied, expected):
                return Response(status_code=403)
            event = self.parse_payload(await request.body())
            try:
                await run_write(intake.store, channel=self.name, account=self._account, events=[event])
            except SQLAlchemyError as exc:
                # One line a minute however many requests fail (an outage would otherwise flood the log).
                throttled(
                    log,
                    failure_kind("telegram.webhook", exc),
                    "telegram webhook: could not store update; Telegram will redeliver: %s",
                    describe(exc),
                )
                return Response(status_code=503)
            self._health.last_event_at = utcnow().isoformat()
            return Response(status_code=200)

        return router

    async def start(self, intake: Intake, *, receive: bool = True) -> None:
        try:
            await self._bot.initialize()  # getMe
            self._health.extra["username"] = self._bot.bot.username
        except InvalidToken:
            self._set_health("broken", "the bot token was rejected by Telegram (ADALDYK_TELEGRAM_TOKEN)")
            return
        except TelegramError as exc:
            # Network trouble at start is not fatal: the poll loop keeps retrying.
            self._set_health("degraded", f"getMe failed: {exc}")
        if not receive:
            self._set_health("ok", "sending only")
            return
        if self.mode == "webhook":
            await self._register_webhook()
        else:
            self._poll_task = asyncio.create_task(self._poll_forever(intake), name="telegram-poller")

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

    async def _poll_forever(self, intake: Intake) -> None:
        lock = intake.poller_lock(self.name, self._account)
        while not await asyncio.to_thread(lock.try_acquire):
            self._set_health("ok", "standby: another worker polls this bot")
            await asyncio.sleep(5)
        try:
            await self._poll_while_holding(intake)
        finally:
            await asyncio.to_thread(lock.release)

    async def _poll_while_holding(self, intake: Intake) -> None:
        try:
            # A webhook left over from webhook mode would make every getUpdates fail with 409.
            await self._bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            log.warning("telegram: deleteWebhook failed: %s", exc)
        delay = 1.0
        while True:
            try:
                stored = await self.poll_once(intake)
                delay = 1.0
                if stored is None:
                    continue
            except asyncio.CancelledError:
                raise
            except InvalidToken:
                self._set_health("broken", "the bot token was rejected by Telegram (ADALDYK_TELEGRAM_TOKEN)")
                return
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after))
            except Conflict as exc:
                self._set_health("degraded", f"getUpdates conflict: {exc.message}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except (TelegramError, SQLAlchemyError, OSError) as exc:
                # Network errors and a database that is down never end the loop; the offset was
                # not advanced, so the same updates come again.
                self._set_health("degraded", f"polling: {type(exc).__name__}: {exc}")
                log.warning("telegram polling failed, retrying in %.0f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def poll_once(self, intake: Intake) -> int | None:
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
        return result.stored

    async def stop(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - shutting down; already logged
                pass
            self._poll_task = None
        try:
            await self._bot.shutdown()
        except TelegramError:
            pass

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "telegram: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail

    # --- sending -------------------------------------------------------------------------------

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        # Telegram has no idempotency key for sendMessage; the outbox lease keeps duplicates to the
        # one part in flight during a crash.
        try:
            message = await self._bot.send_message(chat_id=int(target.chat_id), text=text)
        except RetryAfter as exc:
            return RetryLater("telegram.rate_limited", str(exc), _seconds(exc.retry_after))
        except Forbidden as exc:
            code = "telegram.blocked" if "blocked" in exc.message else "telegram.forbidden"
            if "deactivated" in exc.message:
                code = "telegram.user_deactivated"
            return Failed(code, exc.message)
        except InvalidToken as exc:
            self._set_health("broken", "the bot token was rejected by Telegram (ADALDYK_TELEGRAM_TOKEN)")
            return RetryLater("telegram.token_invalid", exc.message, TOKEN_INVALID_RETRY_SECONDS)
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


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
