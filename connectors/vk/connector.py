"""VKontakte community channel: Bots Long Poll or Callback API in; messages.send, or a public reply, out."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from typing import Any, ClassVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError

from adaldyk_bots import safejson
from adaldyk_bots.domain import Delivered, Failed, ReplyTarget, RetryLater, SendResult
from adaldyk_bots.intake import Intake
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.ports import ChannelHealth, RateScope, RawEvent
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.textsplit import utf16_units
from adaldyk_bots.threads import run_write
from connectors.vk.client import VKClient, VKError, derive_random_id
from connectors.vk.longpoll import LongPoller
from connectors.vk.parser import CHANNEL, VK_TEXT_LIMIT, WallKey, parse_event_payload

log = logging.getLogger(__name__)

# 20 requests/s per community token (vk-api's VkApiGroup, platforms.md §2c). Two caps keep us under it:
# the dispatcher takes at most 17 sends a second (the budget below), and the client lets a request leave
# only 1/18 s after the previous one, whatever it is (sends, getLongPollServer): 18 a second at most, even
# when a key refresh falls between sends.
COMMUNITY_REQUESTS_PER_SECOND = 17
CLIENT_REQUESTS_PER_SECOND = 18
TOKEN_INVALID_RETRY_SECONDS = 300.0
# Error 29 is a method quota, not a per-second limit; VK does not say when it resets (UNCONFIRMED).
QUOTA_RETRY_SECONDS = 600.0
TOO_MANY_REQUESTS_PAUSE_SECONDS = 1.0

# A citizen who cannot be written to privately; 900, 901, 902 are in messages.send's error list
# (VKCOM/vk-api-schema messages/methods.json). The detail is what a moderator reads on the appeal.
_UNREACHABLE = {
    900: "the citizen has blocked messages from the community (VK error 900)",
    901: "the citizen has not allowed the community to write to them: they never wrote to it privately, "
    "or turned messages off (VK error 901)",
    902: "the citizen's privacy settings do not allow messages from the community (VK error 902)",
}
# Only "not allowed" is worth a public invitation; a citizen who blocked the community (900) said no.
_INVITE_ON = frozenset({901, 902})
_RETRY_LATER = {
    1: "VK: unknown error",
    9: "VK flood control: too many similar messages",
    10: "VK internal server error",
}
# The secret of an unparseable body can still be found by pattern, so an authentic but broken event is
# quarantined (kept) instead of refused.
_SECRET_IN_BODY = re.compile(rb'"secret"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _utf8(text: str) -> bytes:
    # A JSON string may hold a lone surrogate (written \ud800 in JSON), which plain encode() refuses.
    return text.encode("utf-8", "surrogatepass")


class VKConnector:
    name: ClassVar[str] = CHANNEL
    text_limit: ClassVar[int] = VK_TEXT_LIMIT

    def __init__(
        self,
        *,
        token: str,
        group_id: int,
        api_url: str = "https://api.vk.com",
        api_version: str = "5.199",
        mode: str = "longpoll",
        confirmation: str | None = None,
        secret: str | None = None,
        longpoll_wait: int = 25,
        random_id_salt: str = "",
        http_timeout: float = 10.0,
    ) -> None:
        self.group_id = group_id
        self._account = str(group_id)
        self.mode = mode
        self._confirmation = confirmation
        self._secret = secret
        self._salt = random_id_salt
        self._health = ChannelHealth(extra={"mode": mode, "recorded_gaps_since_start": 0})
        self.client = VKClient(
            token=token,
            api_url=api_url,
            api_version=api_version,
            requests_per_second=CLIENT_REQUESTS_PER_SECOND,
            timeout=http_timeout,
        )
        self.poller = LongPoller(
            client=self.client,
            group_id=group_id,
            wait=longpoll_wait,
            parse=self.parse_payload,
            on_state=self._set_health,
            on_gap=self._note_gap,
            on_events=self._note_events,
        )
        self._poll_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> VKConnector | None:
        if settings.vk_token is None or settings.vk_group_id is None:
            return None
        secret = settings.vk_secret
        salt = settings.secret_key.get_secret_value() if settings.secret_key else ""
        return cls(
            token=settings.vk_token.get_secret_value(),
            group_id=settings.vk_group_id,
            api_url=settings.vk_api_url,
            api_version=settings.vk_api_version,
            mode=settings.vk_mode,
            confirmation=settings.vk_confirmation,
            secret=secret.get_secret_value() if secret else None,
            longpoll_wait=settings.vk_longpoll_wait,
            random_id_salt=salt,
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
        # One budget: the community token. A retry hint (error 6) pauses all sends through it.
        return [RateScope(f"vk:{self._account}", COMMUNITY_REQUESTS_PER_SECOND)]

    def parse_payload(self, payload: bytes) -> RawEvent:
        return parse_event_payload(payload, account=self._account)

    # --- receiving -------------------------------------------------------------------------------------

    def webhook_router(self, intake: Intake) -> APIRouter | None:
        if self.mode != "callback" or not self._secret:
            return None
        expected = self._secret.encode()
        router = APIRouter()

        @router.post("/webhooks/vk", include_in_schema=False)
        async def vk_callback(request: Request) -> Response:
            body = await request.body()
            try:
                event: Any = safejson.loads(body)
            except safejson.NotJson:
                event = None
            if not isinstance(event, dict):
                found = _SECRET_IN_BODY.search(body)
                if found is None or not hmac.compare_digest(found.group(1), expected):
                    return Response(status_code=403)
                return await self._store(intake, self.parse_payload(body))
            if event.get("type") == "confirmation":
                return self._confirm(event, expected)
            supplied = event.get("secret")
            # The secret travels in the body (callback_base.secret); compare in constant time.
            if not isinstance(supplied, str) or not hmac.compare_digest(_utf8(supplied), expected):
                return Response(status_code=403)
            return await self._store(intake, self.parse_payload(body))

        return router

    def _confirm(self, event: dict[str, Any], expected: bytes) -> Response:
        # Public bot code records VK's confirmation request both with the secret and without it, and the
        # docs do not say (platforms.md §2a): a secret that is there must match; the group must be ours.
        supplied = event.get("secret")
        if supplied is not None and not (
            isinstance(supplied, str) and hmac.compare_digest(_utf8(supplied), expected)
        ):
            return Response(status_code=403)
        group_id = event.get("group_id")
        if not isinstance(group_id, int | str) or str(group_id) != self._account or not self._confirmation:
            return Response(status_code=403)
        return PlainTextResponse(self._confirmation)

    async def _store(self, intake: Intake, event: RawEvent) -> Response:
        try:
            await run_write(intake.store, channel=self.name, account=self._account, events=[event])
        except SQLAlchemyError as exc:
            # Not "ok": VK sends the event again (and pauses the server only after several errors in a row).
            # One line a minute however many requests fail (an outage would otherwise flood the log).
            throttled(
                log,
                failure_kind("vk.callback", exc),
                "vk callback: could not store the event; VK will send it again: %s",
                describe(exc),
            )
            return Response(status_code=503)
        self._health.last_event_at = utcnow().isoformat()
        # "ok" only now, after the commit (DESIGN.md invariant 1).
        return PlainTextResponse("ok")

    async def start(self, intake: Intake, *, receive: bool = True) -> None:
        if self.mode == "callback" or not receive:
            try:
                await self.client.call("groups.getById", group_id=self.group_id)
            except VKError as exc:
                if exc.code == 5:
                    self._set_health(
                        "broken",
                        "the community token was rejected (VK error 5): re-authorize, "
                        "then set a new ADALDYK_VK_TOKEN",
                    )
                else:
                    self._set_health("degraded", f"groups.getById failed: {exc}")
                return
            detail = "callback API at /webhooks/vk" if self.mode == "callback" else "sending only"
            self._set_health("ok", detail)
            return
        self._poll_task = asyncio.create_task(self.poller.run(intake), name="vk-long-poll")

    async def stop(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - shutting down; already logged
                pass
            self._poll_task = None
        await self.poller.close()
        self.client.close()

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "vk: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail

    def _note_events(self) -> None:
        self._health.last_event_at = utcnow().isoformat()

    def _alert(self, code: str, detail: str) -> None:
        # Kept apart from state/detail, which the next good long poll resets to "ok": what went wrong on a
        # send stays on /healthz until the process restarts.
        self._health.extra["send_alert"] = {"code": code, "detail": detail, "at": utcnow().isoformat()}

    def _note_gap(self, gap: dict[str, Any]) -> None:
        self._health.extra["recorded_gaps_since_start"] += 1
        self._health.extra["last_gap"] = {**gap, "at": utcnow().isoformat()}

    # --- sending ---------------------------------------------------------------------------------------

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        if target.kind == "wall_comment":
            return await self._comment(target, text, idempotency_key)
        try:
            peer_id = int(target.chat_id)
        except ValueError:
            return Failed("vk.bad_target", f"not a VK dialog: {target.chat_id!r}")
        try:
            message_id = await self.client.call(
                "messages.send",
                peer_id=peer_id,
                message=text,
                # The same outbox key gives the same random_id, so a retry after a lost answer is dropped
                # by VK itself instead of reaching the citizen twice.
                random_id=derive_random_id(idempotency_key, salt=self._salt),
                dont_parse_links=1,
            )
        except VKError as exc:
            return self._classify(exc, target)
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            return RetryLater("vk.bad_response", f"messages.send answered {message_id!r}")
        return Delivered(str(message_id))

    async def _comment(self, target: ReplyTarget, text: str, idempotency_key: str) -> SendResult:
        where = WallKey.split(target.chat_id)
        if where is None:
            return Failed("vk.bad_target", f"not a wall post: {target.chat_id!r}")
        owner_id, post_id, _ = where
        params: dict[str, Any] = {
            "owner_id": owner_id,
            "post_id": post_id,
            "from_group": self.group_id,
            "message": text,
            # wall.createComment's own de-duplication key (VKCOM/vk-api-schema wall/methods.json)
            "guid": hashlib.blake2b(
                f"{self._salt}\x00{idempotency_key}".encode(), digest_size=16
            ).hexdigest(),
        }
        if target.reply_to_key:
            params["reply_to_comment"] = int(target.reply_to_key)
        try:
            answer = await self.client.call("wall.createComment", **params)
        except VKError as exc:
            return self._classify(exc, None)
        comment_id = answer.get("comment_id") if isinstance(answer, dict) else None
        if not isinstance(comment_id, int):
            return RetryLater("vk.bad_response", f"wall.createComment answered {answer!r}")
        return Delivered(WallKey.make(owner_id, post_id, comment_id))

    def _classify(self, exc: VKError, target: ReplyTarget | None) -> SendResult:
        code = exc.code
        if code == 6:
            return RetryLater(
                "vk.6", f"VK: too many requests per second ({exc.message})", TOO_MANY_REQUESTS_PAUSE_SECONDS
            )
        if code == 29:
            return RetryLater("vk.29", f"VK: method quota reached ({exc.message})", QUOTA_RETRY_SECONDS)
        if code in _RETRY_LATER:
            return RetryLater(f"vk.{code}", f"{_RETRY_LATER[code]} ({exc.message})")
        if code == 5:
            self._set_health(
                "broken",
                "the community token was rejected (VK error 5): re-authorize, "
                "then set a new ADALDYK_VK_TOKEN",
            )
            self._alert("vk.5", "a send was refused: the community token is invalid")
            return RetryLater("vk.5", f"community token invalid: {exc.message}", TOKEN_INVALID_RETRY_SECONDS)
        if code == 14:
            # A captcha cannot be solved by a server; a human must look at why VK suspects the community.
            log.error("vk: captcha required on send (VK error 14): sending needs attention")
            self._set_health("degraded", "VK asked for a captcha (error 14); sends fail until it stops")
            self._alert("vk.14", "VK asked for a captcha on a send; the message was not sent")
            return Failed("vk.14", "VK asked for a captcha (error 14); the message was not sent")
        if code in _UNREACHABLE:
            return Failed(
                f"vk.{code}", _UNREACHABLE[code], self._invite_target(target) if code in _INVITE_ON else None
            )
        if code == VKError.TIMEOUT:
            return RetryLater("vk.timeout", exc.message)
        if code in (VKError.NETWORK, VKError.HTTP, VKError.BAD_RESPONSE):
            return RetryLater("vk.network", exc.message)
        return Failed(f"vk.{code}", f"VK error {code}: {exc.message}")

    def _invite_target(self, target: ReplyTarget | None) -> ReplyTarget | None:
        """For an answer to a wall comment: a reply under that comment (wall.createComment)."""
        if target is None or target.kind != "comment":
            return None
        where = WallKey.split(target.reply_to_key)
        if where is None or where[2] is None:
            return None
        owner_id, post_id, comment_id = where
        return ReplyTarget(
            channel=CHANNEL,
            account=self._account,
            chat_id=WallKey.make(owner_id, post_id),
            reply_to_key=str(comment_id),
            kind="wall_comment",
        )
