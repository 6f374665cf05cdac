"""A test-only platform with two channels behind one webhook, shaped like Meta's: one app secret signs
every body (X-Hub-Signature-256 over the raw bytes), a GET with hub.challenge sets the webhook up, and
the body's `object` says which channel it is for. It proves that a new connector plugs into the core
through the ports alone: registered for the test through `Runtime.build(factories=…)`, not by an entry
point, with its own settings model read from ADALDYK_TWIN_*.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import SecretStr

from adaldyk_bots.domain import Delivered, InboundMessage, ReplyTarget, SendResult
from adaldyk_bots.ports import (
    ChannelHealth,
    Delivery,
    IntakeSink,
    LoopSpec,
    RateScope,
    RawEvent,
    WebhookReply,
    WebhookRequest,
    WebhookRoute,
)
from adaldyk_bots.settings import ChannelSettings, Settings
from adaldyk_bots.webhooks import hub_signature_valid, same_secret

TWIN_PATH = "/webhooks/twins"
SIGNATURE_HEADER = "X-Hub-Signature-256"


class TwinSettings(ChannelSettings):
    twin_app_secret: SecretStr | None = None
    twin_verify_token: str | None = None
    twin_page_id: str = "page-1"


def twin_object(body: bytes) -> str | None:
    """The shared dispatch of /webhooks/twins: the channel a body is for (Meta's `object`)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    kind = doc.get("object") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _TwinConnector:
    name: ClassVar[str]
    text_limit: ClassVar[int] = 1000
    settings_model: ClassVar[type[TwinSettings]] = TwinSettings

    def __init__(self, *, app_secret: str, verify_token: str, page_id: str) -> None:
        self._secret = app_secret
        self._verify_token = verify_token
        self._account = page_id
        self._health = ChannelHealth(state="ok")
        self.sent: list[tuple[ReplyTarget, str]] = []
        self.stored: list[Delivery] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> _TwinConnector | None:
        own = settings.channel(TwinSettings)
        if own.twin_app_secret is None or own.twin_verify_token is None:
            return None
        return cls(
            app_secret=own.twin_app_secret.get_secret_value(),
            verify_token=own.twin_verify_token,
            page_id=own.twin_page_id,
        )

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return len(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return [RateScope(f"{self.name}:{self._account}", 50)]

    def parse_payload(self, payload: bytes) -> RawEvent:
        doc = json.loads(payload)
        message: dict[str, Any] = doc["message"]
        inbound = InboundMessage(
            channel=self.name,
            account=str(doc["entry_id"]),
            chat_id=str(message["from"]),
            message_key=str(message["mid"]),
            sender_id=str(message["from"]),
            sent_at=datetime.fromtimestamp(message["time"], UTC),
            text=message["text"],
        )
        return RawEvent(dedup_key=f"mid:{message['mid']}", payload=payload, outcomes=[inbound])

    def webhooks(self) -> list[WebhookRoute]:
        return [
            WebhookRoute(
                path=TWIN_PATH,
                methods=("GET", "POST"),
                handshake=self._hub_challenge,
                verify=self._signed,
                route=self._route,
                quarantine_as=(self.name, self._account),
                dispatch=twin_object,
                key=self.name,
                on_stored=self.stored.extend,
            )
        ]

    def _hub_challenge(self, request: WebhookRequest) -> WebhookReply | None:
        if request.method != "GET":
            return None
        q = request.query
        if q.get("hub.mode") == "subscribe" and same_secret(q.get("hub.verify_token"), self._verify_token):
            return WebhookReply(body=q.get("hub.challenge", ""), media_type="text/plain")
        return WebhookReply(status=403)

    def _signed(self, request: WebhookRequest) -> bool:
        return hub_signature_valid(request.body, request.headers.get(SIGNATURE_HEADER), self._secret)

    def _route(self, body: bytes) -> Sequence[Delivery]:
        # Deliberately not total (a real route must be): a body of the wrong shape raises here, and the
        # pipeline has to keep it quarantined anyway.
        doc = json.loads(body)
        deliveries = []
        for entry in doc["entry"]:
            for message in entry["messaging"]:
                item = json.dumps({"entry_id": entry["id"], "message": message}, ensure_ascii=False)
                deliveries.append(Delivery(self.name, str(entry["id"]), self.parse_payload(item.encode())))
        return deliveries

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        return []  # webhooks only: nothing to poll

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        self.sent.append((target, text))
        return Delivered(f"{self.name}-out-{len(self.sent)}")


class AlphaConnector(_TwinConnector):
    name: ClassVar[str] = "alpha"


class BetaConnector(_TwinConnector):
    name: ClassVar[str] = "beta"


TWINS = {"alpha": AlphaConnector, "beta": BetaConnector}
