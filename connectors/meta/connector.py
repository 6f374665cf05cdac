"""The three Meta channels (facebook, instagram, whatsapp): one webhook, one parser, one Graph client.

`MetaConnector` holds what they share; the subclasses say which product they are (channel name, the
webhook `object`, the id and token settings, the text limit). All three serve `/webhooks/meta`: the
pipeline's shared `dispatch` reads the body's `object`, and the route whose key it is verifies and
routes it (adaldyk_bots/webhooks.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from adaldyk_bots.domain import Failed, ReplyTarget, SendResult
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
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.webhooks import hub_signature_valid, quarantined_body, same_secret
from connectors.meta.graph import GraphClient, GraphError
from connectors.meta.parser import body_object, parse_item_payload, split_body
from connectors.meta.reconcile import Reconciler
from connectors.meta.settings import MetaSettings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/meta"
SIGNATURE_HEADER = "X-Hub-Signature-256"

# Sends per second per Page / account / number, below Meta's published rates (platforms.md §3-5):
# Messenger/Instagram sends ~ 250 requests/s per Page for the Send API (we stay far below), WhatsApp
# Cloud API 80 messages/s per number by default.
SENDS_PER_SECOND = {"facebook": 20, "instagram": 20, "whatsapp": 40}


class MetaConnector:
    name: ClassVar[str]
    webhook_object: ClassVar[str]  # the body's `object` for this product
    id_field: ClassVar[str]
    credential_field: ClassVar[str]
    text_limit: ClassVar[int]
    settings_model: ClassVar[type[MetaSettings]] = MetaSettings

    def __init__(self, *, settings: MetaSettings, api_url: str | None = None) -> None:
        self.settings = settings
        account = getattr(settings, self.id_field)
        token = getattr(settings, self.credential_field)
        assert account is not None and token is not None  # from_settings builds us only when both are set
        self._account = str(account)
        self.token = token.get_secret_value()
        self._secrets = settings.app_secrets(self.webhook_object)
        self._verify_token = (
            settings.meta_verify_token.get_secret_value() if settings.meta_verify_token else ""
        )
        self.graph = GraphClient(api_url=api_url or settings.graph_api_url)
        self._health = ChannelHealth(extra={"webhook": WEBHOOK_PATH, "recovered_by_reconciliation": 0})
        self.reconciler = Reconciler(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> MetaConnector | None:
        own = settings.channel(MetaSettings)
        if cls.name not in own.enabled_products():
            return None
        return cls(settings=own)

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return len(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return [RateScope(f"{self.name}:{self._account}", SENDS_PER_SECOND[self.name])]

    def parse_payload(self, payload: bytes) -> RawEvent:
        return parse_item_payload(payload, channel=self.name, account=self._account)

    # --- receiving -------------------------------------------------------------------------------------

    def webhooks(self) -> list[WebhookRoute]:
        return [
            WebhookRoute(
                path=WEBHOOK_PATH,
                methods=("GET", "POST"),
                handshake=self._hub_challenge,
                verify=self._signed,
                route=self.route,
                quarantine_as=(self.name, self._account),
                dispatch=body_object,
                key=self.webhook_object,
                on_stored=self._note_stored,
            )
        ]

    def _hub_challenge(self, request: WebhookRequest) -> WebhookReply | None:
        """Meta's subscription check: `hub.challenge` back only when `hub.verify_token` is ours."""
        if request.method != "GET":
            return None
        q = request.query
        if q.get("hub.mode") == "subscribe" and same_secret(q.get("hub.verify_token"), self._verify_token):
            return WebhookReply(body=q.get("hub.challenge", ""), media_type="text/plain")
        return WebhookReply(status=403)

    def _signed(self, request: WebhookRequest) -> bool:
        """X-Hub-Signature-256 over the raw bytes as received (Meta signs the escaped-unicode body; it is
        never re-serialized). The SHA-1 X-Hub-Signature alone is not enough."""
        header = request.headers.get(SIGNATURE_HEADER)
        return any(hub_signature_valid(request.body, header, secret) for secret in self._secrets)

    def route(self, body: bytes) -> list[Delivery]:
        """Every item of an authentic body, each its own stored event. Total: never raises."""
        try:
            items, problem = split_body(body)
        except Exception as exc:  # a bug here must keep the body, not refuse it
            items, problem = [], f"meta.route_error: {type(exc).__name__}"
        if problem is not None:
            return [Delivery(self.name, self._account, quarantined_body(body, problem))]
        # Every item is stored under our account: one for another Page/number (a shared app) is kept,
        # ignored, by its parse (meta.other_account), never mixed into our conversations.
        return [Delivery(self.name, self._account, self.parse_payload(item.payload)) for item in items]

    def _note_stored(self, _deliveries: Sequence[Delivery]) -> None:
        self._health.last_event_at = utcnow().isoformat()

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        await self.check_token()

    async def check_token(self) -> None:
        """An expired or refused token shows on /healthz before a send fails (code 190)."""
        try:
            await self.graph.get(self.token_check_path(), {"fields": "id"}, token=self.token)
        except GraphError as exc:
            if exc.code == 190:
                self.set_health(
                    "broken",
                    f"the {self.name} token was refused (Graph error 190: expired or revoked): "
                    f"set a new ADALDYK_{self.credential_field.upper()}",
                )
            elif exc.code in (10, 200) or 200 <= exc.code <= 299:
                self.set_health(
                    "broken", f"the {self.name} token lacks a permission (Graph error {exc.code})"
                )
            else:
                self.set_health("degraded", f"token check failed: {exc}")
            return
        self.set_health("ok", f"webhook at {WEBHOOK_PATH}")

    def token_check_path(self) -> str:
        return "me"

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        return [self.reconciler.loop(intake)]

    async def stop(self) -> None:
        self.graph.close()

    def set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(
                logging.INFO if state == "ok" else logging.WARNING, "%s: %s (%s)", self.name, state, detail
            )
        self._health.state, self._health.detail = state, detail

    # --- sending ---------------------------------------------------------------------------------------

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        return await send_message(self, target, text, idempotency_key=idempotency_key)


async def send_message(
    connector: MetaConnector, target: ReplyTarget, text: str, *, idempotency_key: str
) -> SendResult:
    """Placeholder until the outbound side (connectors/meta/send.py) is merged."""
    return Failed("meta.not_implemented", f"sending to {connector.name} is not built yet")


class FacebookConnector(MetaConnector):
    name: ClassVar[str] = "facebook"
    webhook_object: ClassVar[str] = "page"
    id_field: ClassVar[str] = "facebook_page_id"
    credential_field: ClassVar[str] = "facebook_page_token"
    text_limit: ClassVar[int] = 2000  # characters (Messenger Send API)


class InstagramConnector(MetaConnector):
    name: ClassVar[str] = "instagram"
    webhook_object: ClassVar[str] = "instagram"
    id_field: ClassVar[str] = "instagram_account_id"
    credential_field: ClassVar[str] = "instagram_token"
    text_limit: ClassVar[int] = 1000  # UTF-8 bytes (≈500 Cyrillic letters)

    def __init__(self, *, settings: MetaSettings, api_url: str | None = None) -> None:
        super().__init__(settings=settings, api_url=api_url or settings.instagram_url)

    def measure_text(self, text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))


class WhatsAppConnector(MetaConnector):
    name: ClassVar[str] = "whatsapp"
    webhook_object: ClassVar[str] = "whatsapp_business_account"
    id_field: ClassVar[str] = "whatsapp_phone_number_id"
    credential_field: ClassVar[str] = "whatsapp_token"
    text_limit: ClassVar[int] = 4096

    def token_check_path(self) -> str:
        return self._account  # the phone number object; /me is not a WhatsApp object

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        # WhatsApp has no Conversations API: only the hourly token check runs.
        return [self.reconciler.token_loop()]


CONNECTORS: dict[str, Any] = {c.name: c for c in (FacebookConnector, InstagramConnector, WhatsAppConnector)}
