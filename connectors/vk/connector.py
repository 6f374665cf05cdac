"""VKontakte community channel: Bots Long Poll or Callback API in; messages.send, or a public reply, out."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from adaldyk_bots import safejson
from adaldyk_bots.domain import Delivered, Failed, Held, ReplyTarget, RetryLater, SendResult, choices_as_text
from adaldyk_bots.ports import (
    ChannelHealth,
    ConnectorFactory,
    Delivery,
    IntakeSink,
    LoopSpec,
    RateScope,
    RawEvent,
    WebhookReply,
    WebhookRequest,
    WebhookRoute,
    poller_lock_name,
)
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.textsplit import utf16_units
from adaldyk_bots.webhooks import same_secret
from connectors.vk.client import VKClient, VKError, derive_random_id
from connectors.vk.longpoll import LongPoller
from connectors.vk.parser import CHANNEL, VK_TEXT_LIMIT, WallKey, parse_event_payload
from connectors.vk.settings import VKSettings

log = logging.getLogger(__name__)

# 20 requests/s per community token (vk-api's VkApiGroup, platforms.md §2c). Two caps keep us under it:
# the dispatcher takes at most 17 sends a second (the budget below), and the client lets a request leave
# only 1/18 s after the previous one, whatever it is (sends, getLongPollServer): 18 a second at most, even
# when a key refresh falls between sends.
COMMUNITY_REQUESTS_PER_SECOND = 17
CLIENT_REQUESTS_PER_SECOND = 18
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


class VKConnector:
    name: ClassVar[str] = CHANNEL
    text_limit: ClassVar[int] = VK_TEXT_LIMIT
    settings_model: ClassVar[type[VKSettings]] = VKSettings

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

    @classmethod
    def from_settings(cls, settings: Settings) -> VKConnector | None:
        own = settings.channel(VKSettings)
        if own.vk_token is None or own.vk_group_id is None:
            return None
        secret = own.vk_secret
        salt = settings.secret_key.get_secret_value() if settings.secret_key else ""
        return cls(
            token=own.vk_token.get_secret_value(),
            group_id=own.vk_group_id,
            api_url=own.vk_api_url,
            api_version=own.vk_api_version,
            mode=own.vk_mode,
            confirmation=own.vk_confirmation,
            secret=secret.get_secret_value() if secret else None,
            longpoll_wait=own.vk_longpoll_wait,
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

    def webhooks(self) -> list[WebhookRoute]:
        if self.mode != "callback" or not self._secret:
            return []
        return [
            WebhookRoute(
                path="/webhooks/vk",
                handshake=self._confirm,
                verify=self._authentic,
                route=self._route,
                quarantine_as=(self.name, self._account),
                # The plain "ok", only after the commit (DESIGN.md invariant 1); anything else and VK
                # sends the event again (and pauses the server only after several errors in a row).
                reply=WebhookReply(body="ok", media_type="text/plain"),
                on_stored=self._note_stored,
            )
        ]

    def _confirm(self, request: WebhookRequest) -> WebhookReply | None:
        event = _json_object(request.body)
        if event is None or event.get("type") != "confirmation":
            return None
        assert self._secret is not None  # webhooks() serves none without it
        # Public bot code records VK's confirmation request both with the secret and without it, and the
        # docs do not say (platforms.md §2a): a secret that is there must match; the group must be ours.
        supplied = event.get("secret")
        if supplied is not None and not (isinstance(supplied, str) and same_secret(supplied, self._secret)):
            return WebhookReply(status=403)
        if str(event.get("group_id")) != self._account or not self._confirmation:
            return WebhookReply(status=403)
        return WebhookReply(body=self._confirmation, media_type="text/plain")

    def _authentic(self, request: WebhookRequest) -> bool:
        assert self._secret is not None
        event = _json_object(request.body)
        if event is None:
            # The secret of an unreadable body can still be found by pattern, so an authentic but
            # broken event is quarantined (kept) instead of refused.
            found = _SECRET_IN_BODY.search(request.body)
            return found is not None and same_secret(found.group(1), self._secret)
        # The secret travels in the body (callback_base.secret); compared in constant time.
        supplied = event.get("secret")
        return isinstance(supplied, str) and same_secret(supplied, self._secret)

    def _route(self, body: bytes) -> list[Delivery]:
        return [Delivery(self.name, self._account, self.parse_payload(body))]

    def _note_stored(self, _deliveries: Sequence[Delivery]) -> None:
        self._health.last_event_at = utcnow().isoformat()

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
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
        # Long poll: the loop itself comes from background_loops() and runs under the supervisor.

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        """The long-poll loop, one per community across workers (the supervisor holds the lock)."""
        if self.mode != "longpoll":
            return []

        async def fresh_session() -> None:
            self.poller.reset()

        return [
            LoopSpec(
                name=f"vk:poller:{self._account}",
                run_round=lambda: self.poller.poll_round(intake),
                lock=poller_lock_name(self.name, self._account),
                on_acquire=fresh_session,
                on_standby=lambda: self._set_health("ok", "standby: another worker polls this community"),
                period=self.poller.wait + 10.0,
            )
        ]

    async def stop(self) -> None:
        # The poll loop belongs to the supervisor, which has stopped it before this is called.
        await self.poller.close()
        self.client.close()

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "vk: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail
        # The token's state for the channel health page (adaldyk_bots/health.py): every "ok" follows an
        # answer to a call made with the token; VK refuses a token with error 5, and every refusal says so.
        if state == "ok" and "standby" not in detail:
            self._health.extra["credentials"] = "accepted"
        elif "VK error 5" in detail:
            self._health.extra["credentials"] = "refused"

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
            # A public comment has no keyboard: the choices as numbered lines.
            return await self._comment(target, choices_as_text(text, target.choices), idempotency_key)
        try:
            peer_id = int(target.chat_id)
        except ValueError:
            return Failed("vk.bad_target", f"not a VK dialog: {target.chat_id!r}")
        extra: dict[str, Any] = {"keyboard": keyboard_json(target)} if target.choices else {}
        try:
            message_id = await self.client.call(
                "messages.send",
                peer_id=peer_id,
                message=text,
                # The same outbox key gives the same random_id, so a retry after a lost answer is dropped
                # by VK itself instead of reaching the citizen twice.
                random_id=derive_random_id(idempotency_key, salt=self._salt),
                dont_parse_links=1,
                **extra,
            )
        except VKError as exc:
            return self._classify(exc, target)
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            return RetryLater("vk.bad_response", f"messages.send answered {message_id!r}")
        if self._health.state == "broken" and "VK error 5" in self._health.detail:
            self._set_health("ok", "the community token is accepted again")
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
        # Both are about the community token (VK's only budget for us): waiting, not failing.
        if code == 6:
            detail = f"VK: too many requests per second ({exc.message})"
            return RetryLater(
                "vk.6", detail, TOO_MANY_REQUESTS_PAUSE_SECONDS, rate_limited=True, scope="account"
            )
        if code == 29:
            detail = f"VK: method quota reached ({exc.message})"
            return RetryLater("vk.29", detail, QUOTA_RETRY_SECONDS, rate_limited=True, scope="account")
        if code in _RETRY_LATER:
            return RetryLater(f"vk.{code}", f"{_RETRY_LATER[code]} ({exc.message})")
        if code == 5:
            self._set_health(
                "broken",
                "the community token was rejected (VK error 5): re-authorize, "
                "then set a new ADALDYK_VK_TOKEN",
            )
            self._alert("vk.5", "a send was refused: the community token is invalid")
            # Nothing is wrong with the message: the channel's sends wait (held) until the token works.
            return Held("vk.5", f"community token invalid: {exc.message}")
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


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (total: deep nesting and huge numbers too)."""
    try:
        event = safejson.loads(body)
    except safejson.NotJson:
        return None
    return event if isinstance(event, dict) else None


# mypy checks the class against the ports here (its from_settings returns a Connector), so a drift is a
# type error rather than a surprise at start-up.
_FACTORY: ConnectorFactory = VKConnector


KEYBOARD_LABEL_LIMIT = 40  # dev.vk.com/ru/api/bots/development/keyboard: "label" up to 40 characters


def keyboard_json(target: ReplyTarget) -> str:
    """The choices as an inline keyboard of text buttons, one a row (dev.vk.com/ru/api/bots/development/
    keyboard: {"inline": true, "buttons": [[{"action": {"type": "text", "label", "payload"}}]]}); a press
    comes back as message_new with the button's label as text and its payload (a JSON string, up to 255
    characters) as message.payload, which the parser reads as the choice."""
    buttons = [
        [
            {
                "action": {
                    "type": "text",
                    "label": c.label[:KEYBOARD_LABEL_LIMIT],
                    "payload": json.dumps({"choice": c.id}, ensure_ascii=False),
                },
                "color": "secondary",
            }
        ]
        for c in target.choices
    ]
    return json.dumps({"inline": True, "buttons": buttons}, ensure_ascii=False)
