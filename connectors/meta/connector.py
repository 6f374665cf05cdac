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

from adaldyk_bots.domain import ReplyTarget, SendContext, SendResult, WindowDecision
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
from connectors.meta.graph import GraphClient
from connectors.meta.parser import body_object, parse_item_payload, split_body
from connectors.meta.reconcile import Reconciler
from connectors.meta.send import PRODUCTS, MetaSender, WhatsAppTemplates
from connectors.meta.settings import MetaSettings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/meta"
SIGNATURE_HEADER = "X-Hub-Signature-256"

TEMPLATES_FILE = "whatsapp_templates.toml"


class MetaConnector:
    name: ClassVar[str]
    webhook_object: ClassVar[str]  # the body's `object` for this product
    id_field: ClassVar[str]
    credential_field: ClassVar[str]
    text_limit: ClassVar[int]
    settings_model: ClassVar[type[MetaSettings]] = MetaSettings
    # WhatsApp `statuses`, Messenger/Instagram `delivery`/`read` name our sent ids (adaldyk_bots/receipts.py).
    delivery_receipts: ClassVar[bool] = True

    def __init__(
        self,
        *,
        settings: MetaSettings,
        api_url: str | None = None,
        templates: WhatsAppTemplates | None = None,
    ) -> None:
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
        # The outbound side (connectors/meta/send.py): requests, reply windows, limits, budgets.
        self.sender = MetaSender(
            channel=self.name,
            account=self._account,
            token=self.token,
            client=self.graph,
            human_agent=settings.meta_human_agent,
            templates=templates,
            instagram_login=self.name == "instagram" and settings.instagram_login,
            on_token_refused=self._token_refused,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MetaConnector | None:
        own = settings.channel(MetaSettings)
        if cls.name not in own.enabled_products():
            return None
        templates = WhatsAppTemplates.load(settings.config_dir / TEMPLATES_FILE)
        return cls(settings=own, templates=templates)

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return self.sender.measure_text(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return self.sender.rate_scopes(target)

    def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision:
        return self.sender.reply_window(target, context)

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
        state, detail = await self.sender.check_token()
        if state == "broken" and "190" in detail:
            detail += f" (ADALDYK_{self.credential_field.upper()})"
        self.set_health(state, detail if state != "ok" else f"{detail}; webhook at {WEBHOOK_PATH}")

    def _token_refused(self, detail: str) -> None:
        self.set_health("broken", f"a send was refused: the token is expired or revoked ({detail})")

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        return [self.reconciler.loop(intake), self.reconciler.token_loop()]

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
        return await self.sender.send(target, text, idempotency_key=idempotency_key)


class FacebookConnector(MetaConnector):
    name: ClassVar[str] = "facebook"
    webhook_object: ClassVar[str] = "page"
    id_field: ClassVar[str] = "facebook_page_id"
    credential_field: ClassVar[str] = "facebook_page_token"
    text_limit: ClassVar[int] = PRODUCTS["facebook"].text_limit


class InstagramConnector(MetaConnector):
    name: ClassVar[str] = "instagram"
    webhook_object: ClassVar[str] = "instagram"
    id_field: ClassVar[str] = "instagram_account_id"
    credential_field: ClassVar[str] = "instagram_token"
    text_limit: ClassVar[int] = PRODUCTS["instagram"].text_limit  # UTF-8 bytes

    def __init__(
        self,
        *,
        settings: MetaSettings,
        api_url: str | None = None,
        templates: WhatsAppTemplates | None = None,
    ) -> None:
        super().__init__(settings=settings, api_url=api_url or settings.instagram_url, templates=templates)


class WhatsAppConnector(MetaConnector):
    name: ClassVar[str] = "whatsapp"
    webhook_object: ClassVar[str] = "whatsapp_business_account"
    id_field: ClassVar[str] = "whatsapp_phone_number_id"
    credential_field: ClassVar[str] = "whatsapp_token"
    text_limit: ClassVar[int] = PRODUCTS["whatsapp"].text_limit

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        # WhatsApp has no Conversations API: only the hourly token check runs.
        return [self.reconciler.token_loop()]


CONNECTORS: dict[str, Any] = {c.name: c for c in (FacebookConnector, InstagramConnector, WhatsAppConnector)}
