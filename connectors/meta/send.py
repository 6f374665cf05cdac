"""Outbound for Facebook, Instagram and WhatsApp: the send requests per product and target, reply windows
decided at send time, text limits, rate budgets. The channel connectors (connector.py) compose one
`MetaSender` each and hand it send(), reply_window(), rate_scopes() and measure_text().

Targets (ReplyTarget.kind; the conversation's chat_id is the thread's or the comment's own id):
- "message": a private thread. Messenger / Instagram through the Page: `POST /{page-id}/messages` with the
  Page token, `recipient={"id": PSID|IGSID}`, `messaging_type=RESPONSE` or `MESSAGE_TAG` + `tag=HUMAN_AGENT`
  [P] developers.facebook.com/docs/messenger-platform/reference/send-api (platforms.md §4b); Instagram Login:
  `POST /{ig-account-id}/messages` on graph.instagram.com with the Instagram token [S] composio #3604 (§5b).
  WhatsApp: `POST /{phone-number-id}/messages` `{"messaging_product": "whatsapp", "to", "type"}` with
  type text or template (§7b); the answer's `messages[0].id` is the wamid the statuses webhook speaks of.
- "comment": the one private reply to a comment, `recipient={"comment_id": ...}` on the messages path
  [P] .../messenger-platform/discovery/private-replies and .../instagram-platform/private-replies.
- "public_comment": a public answer under the comment: Facebook `POST /{comment-id}/comments` [P]
  developers.facebook.com/docs/graph-api/reference/object/comments (publishing), Instagram
  `POST /{ig-comment-id}/replies?message=` [P] .../instagram-graph-api/reference/ig-comment/replies.
The comment id is `reply_to_key` when set, else `chat_id`.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from adaldyk_bots.domain import (
    Choice,
    Delivered,
    ReplyTarget,
    RetryLater,
    SendContext,
    SendResult,
    WindowDecision,
    choices_as_text,
)
from adaldyk_bots.ports import RateScope
from connectors.meta.errors import (
    PRIVATE_REPLY_ALREADY_SENT,
    WINDOW_CLOSED_DETAIL,
    classify,
    window_closed,
)
from connectors.meta.graph import GraphClient, GraphError

__all__ = [
    "PRODUCTS",
    "MetaSender",
    "Product",
    "WhatsAppTemplate",
    "WhatsAppTemplates",
    "decide_window",
]

log = logging.getLogger(__name__)

STANDARD_WINDOW = timedelta(hours=24)  # Messenger/Instagram "standard messaging", WhatsApp's service window
HUMAN_AGENT_WINDOW = timedelta(days=7)  # HUMAN_AGENT tag: "within 7 days after a user message" (§4b)
PRIVATE_REPLY_WINDOW = timedelta(days=7)  # "within 7 days from when the post or comment was created"


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class Product:
    """What differs between the three Meta channels on the way out."""

    channel: str
    text_limit: int
    measure: Callable[[str], int]
    send_per_second: int  # the account's budget, below Meta's published rate
    calls_per_second: int  # every call of the account's client, spaced as it leaves (just below Meta's)
    thread_limit: int  # sends to one recipient per `thread_seconds`
    thread_seconds: int
    private_replies_per_hour: int | None = None


PRODUCTS = {
    # 2000 characters (§4d); 300 calls/s per Page for text (§4c) -> 250; "may be rate limited if too many
    # messages are sent to a single thread": at most 2 a second to one person.
    "facebook": Product("facebook", 2000, len, 250, 280, 2, 1, private_replies_per_hour=700),
    # 1000 UTF-8 bytes (§5d, ~500 Cyrillic letters); 100/s per account in the Instagram docs, 300/s in the
    # Messenger ones (§5c): budget below the lower. Private replies 750/h per account -> 700.
    "instagram": Product("instagram", 1000, utf8_bytes, 90, 95, 2, 1, private_replies_per_hour=700),
    # 4096 characters (§7b); 80 messages/s per number by default (§7c) -> 70; the pair limit to one user
    # (~1 every 6 s on average, UNCONFIRMED-primary) -> 10 a minute.
    "whatsapp": Product("whatsapp", 4096, len, 70, 75, 10, 60),
}


# --- WhatsApp templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatsAppTemplate:
    name: str
    languages: Mapping[str, str]  # our language (kk, ru, en) -> the template's language code at Meta
    params: tuple[str, ...] = ()  # fields of the notice, in the order of the body's {{1}}, {{2}}, ...


@dataclass(frozen=True)
class WhatsAppTemplates:
    """config/whatsapp_templates.toml: one approved template per notice kind (outbox purpose)."""

    by_purpose: Mapping[str, WhatsAppTemplate] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WhatsAppTemplates:
        if not path.exists():
            return cls()
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        templates: dict[str, WhatsAppTemplate] = {}
        for purpose, spec in data.get("templates", {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ValueError(f"{path}: templates.{purpose} needs a name")
            languages = spec.get("language", {})
            if not isinstance(languages, dict) or not languages:
                raise ValueError(f"{path}: templates.{purpose}.language must map kk/ru/en to codes")
            templates[purpose] = WhatsAppTemplate(
                name=spec["name"],
                languages={str(k): str(v) for k, v in languages.items()},
                params=tuple(str(p) for p in spec.get("params", ())),
            )
        return cls(templates)

    def names(self) -> set[str]:
        """Every template name the file uses (each must be approved in WhatsApp Manager)."""
        return {t.name for t in self.by_purpose.values()}

    def decision(self, purpose: str, context: SendContext) -> WindowDecision | None:
        template = self.by_purpose.get(purpose)
        if template is None:
            return None
        language = context.language or "ru"
        code = template.languages.get(language) or next(iter(template.languages.values()))
        params = tuple(context.fields.get(p, "") for p in template.params)
        return WindowDecision("template", template=template.name, template_language=code, params=params)


# --- reply windows -----------------------------------------------------------------------------------

ANSWER_READY = "answer_ready"
WAITING_CODE = "whatsapp.window_closed_waiting"
WAITING_DETAIL = (
    "the answer waits for the citizen: WhatsApp allows free text only within 24 h of their last "
    "message; a template told them an answer is ready, and it goes as soon as they reply"
)


def decide_window(
    channel: str,
    target: ReplyTarget,
    context: SendContext,
    *,
    human_agent: bool,
    templates: WhatsAppTemplates | None = None,
) -> WindowDecision:
    """May this send go now, and how (platforms.md §4b, §5b, §7b; issue 8 "Reply windows")."""
    if target.kind == "public_comment":
        return WindowDecision.open()  # a public answer under a comment has no window
    age = context.now - context.last_inbound_at if context.last_inbound_at is not None else None
    if channel == "whatsapp":
        return _whatsapp_window(age, context, templates or WhatsAppTemplates())
    if target.kind == "comment":
        if context.sent_since_inbound > 0:
            return WindowDecision.closed(
                "meta.window_closed",
                f"{WINDOW_CLOSED_DETAIL}: the one private reply to this comment was already sent; "
                "later notices go to the citizen's private thread once they answer there",
            )
        if age is not None and age > PRIVATE_REPLY_WINDOW:
            return WindowDecision.closed(
                "meta.window_closed", f"{WINDOW_CLOSED_DETAIL}: the comment is older than 7 days"
            )
        return WindowDecision.open()
    if age is None or age <= STANDARD_WINDOW:
        return WindowDecision.open("RESPONSE")
    if age <= HUMAN_AGENT_WINDOW and context.written_by_person and human_agent:
        # Only text a moderator typed; automated notices never carry HUMAN_AGENT (Meta's policy, §4b).
        return WindowDecision.open("HUMAN_AGENT")
    why = "more than 24 hours since the citizen's last message"
    if age <= HUMAN_AGENT_WINDOW and context.written_by_person:
        why += " (the Human Agent permission, ADALDYK_META_HUMAN_AGENT, is off)"
    elif age <= HUMAN_AGENT_WINDOW:
        why += " (an automated notice may not use the HUMAN_AGENT tag)"
    return WindowDecision.closed("meta.window_closed", f"{WINDOW_CLOSED_DETAIL}: {why}")


def _whatsapp_window(
    age: timedelta | None, context: SendContext, templates: WhatsAppTemplates
) -> WindowDecision:
    if context.purpose == ANSWER_READY:
        # The notice that asks the citizen to write: always the approved template, never its stand-in text.
        return templates.decision(ANSWER_READY, context) or WindowDecision.closed(
            "meta.window_closed", f"{WINDOW_CLOSED_DETAIL}: no approved answer_ready template configured"
        )
    if age is None or age <= STANDARD_WINDOW:
        return WindowDecision.open()
    if context.written_by_person:
        if ANSWER_READY in templates.by_purpose:
            return WindowDecision("wait", code=WAITING_CODE, detail=WAITING_DETAIL, notice=ANSWER_READY)
        return WindowDecision.closed(
            "meta.window_closed",
            f"{WINDOW_CLOSED_DETAIL}: more than 24 hours since the citizen's last WhatsApp message and no "
            "answer_ready template configured",
        )
    template = templates.decision(context.purpose, context)
    if template is not None:
        return template
    return WindowDecision.closed(
        "meta.window_closed",
        f"{WINDOW_CLOSED_DETAIL}: more than 24 hours since the citizen's last WhatsApp message and no "
        f"approved template for {context.purpose!r} notices",
    )


# --- the sender --------------------------------------------------------------------------------------


class MetaSender:
    """One product's account (a Page, an Instagram account, a WhatsApp number) on the way out."""

    def __init__(
        self,
        *,
        channel: str,
        account: str,
        token: str,
        client: GraphClient,
        human_agent: bool = False,
        templates: WhatsAppTemplates | None = None,
        instagram_login: bool = False,
        on_token_refused: Callable[[str], None] | None = None,
        rate_limit_pause_seconds: float | None = None,
    ) -> None:
        self.product = PRODUCTS[channel]
        self.channel = channel
        self.account = account
        self._token = token
        self.client = client
        client.limit_rate(self.product.calls_per_second)
        self.human_agent = human_agent
        self.templates = templates or WhatsAppTemplates()
        self.instagram_login = instagram_login
        self._on_token_refused = on_token_refused
        # Meta gives no retry-after; tests shorten the pause (errors.RATE_LIMIT_PAUSE_SECONDS otherwise).
        self.rate_limit_pause_seconds = rate_limit_pause_seconds

    # --- what the dispatcher asks ----------------------------------------------------------------------

    @property
    def text_limit(self) -> int:
        return self.product.text_limit

    def measure_text(self, text: str) -> int:
        return self.product.measure(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        base = f"meta:{self.channel}:{self.account}"
        scopes = [RateScope(base, self.product.send_per_second)]
        if target.kind == "comment" and self.product.private_replies_per_hour:
            scopes.append(RateScope(f"{base}:private_replies", self.product.private_replies_per_hour, 3600))
        if target.chat_id:
            scopes.append(
                RateScope(f"{base}:{target.chat_id}", self.product.thread_limit, self.product.thread_seconds)
            )
        return scopes

    def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision:
        return decide_window(
            self.channel, target, context, human_agent=self.human_agent, templates=self.templates
        )

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        path, data, private_reply_to = self.request(target, text, idempotency_key=idempotency_key)
        if private_reply_to is not None:
            part = idempotency_key.rpartition("#")[2]  # the dispatcher keys later parts <key>#2, #3 ...
            if "#" in idempotency_key and part.isdigit() and int(part) > 1:
                # A comment allows one private reply: a text longer than one message cannot go on.
                return window_closed(
                    f"{WINDOW_CLOSED_DETAIL}: only the first part went as the one private reply to the "
                    "comment; the rest is owed on the citizen's private thread"
                )
            checked = await self._private_reply_state(private_reply_to)
            if checked is not None:
                return checked
        try:
            answer = await self.client.post(path, data, token=self._token)
        except GraphError as exc:
            result = classify(exc, private_reply_to=private_reply_to)
            if isinstance(result, RetryLater) and result.rate_limited and self.rate_limit_pause_seconds:
                result = RetryLater(
                    result.code,
                    result.detail,
                    self.rate_limit_pause_seconds,
                    rate_limited=True,
                    scope=result.scope,
                )
            if exc.code == 190 and self._on_token_refused is not None:
                self._on_token_refused(str(exc))
            if exc.code == PRIVATE_REPLY_ALREADY_SENT and private_reply_to is not None:
                log.warning(
                    "%s: private reply to comment %s already there (a lost answer); recorded as sent",
                    self.channel,
                    private_reply_to,
                )
            return result
        found = _sent_id(answer)
        if found is None:
            return RetryLater("meta.bad_response", f"the send answered without an id: {answer!r:.200}")
        return Delivered(found)

    async def _private_reply_state(self, comment_id: str) -> SendResult | None:
        """Facebook: check before a private reply whether one is already there (a lost answer of ours, or a
        moderator's from the Page inbox): the Comment node's `private_reply_conversation` and
        `can_reply_privately` [S] public client code reading both (e.g. fields=can_reply_privately,
        private_reply_conversation). None: go ahead. Instagram has no such field; there Meta's own
        once-only answer (10900) is the check (errors.classify)."""
        if self.channel != "facebook":
            return None
        try:
            node = await self.client.get(
                comment_id, {"fields": "can_reply_privately,private_reply_conversation"}, token=self._token
            )
        except GraphError as exc:
            # Never send blind: without the answer, try again later (or hold, for a refused token).
            result = classify(exc)
            return result if not isinstance(result, Delivered) else None
        if node.get("private_reply_conversation"):
            log.warning(
                "facebook: comment %s already has its private reply (an earlier answer was lost); "
                "recorded as sent",
                comment_id,
            )
            return Delivered(f"private-reply:{comment_id}")
        if node.get("can_reply_privately") is False:
            return window_closed(
                f"{WINDOW_CLOSED_DETAIL}: Meta does not allow a private reply to this comment (older than "
                "7 days, deleted, or written by a Page)"
            )
        return None

    # --- building requests -----------------------------------------------------------------------------

    def request(
        self, target: ReplyTarget, text: str, *, idempotency_key: str
    ) -> tuple[str, dict[str, Any], str | None]:
        """(path under the versioned URL, form fields, the comment id when it is a private reply)."""
        window = target.window or WindowDecision.open()
        if self.channel == "whatsapp":
            return f"{self.account}/messages", self._whatsapp(target, text, window, idempotency_key), None
        comment_id = target.reply_to_key or target.chat_id
        if target.kind in ("public_comment", "comment"):
            # A comment and its private reply carry text only: the choices as numbered lines.
            text = choices_as_text(text, target.choices)
        if target.kind == "public_comment":
            edge = "replies" if self.channel == "instagram" else "comments"
            return f"{comment_id}/{edge}", {"message": text}, None
        # Facebook: the Page's messages edge. Instagram through the Page: `me/messages` with the Page token
        # (`me` is the Page, whose id this channel does not hold); Instagram Login: the account's own edge.
        if self.channel == "instagram" and not self.instagram_login:
            path = "me/messages"
        else:
            path = f"{self.account}/messages"
        message: dict[str, Any] = {"text": text}
        if self.channel == "facebook":
            # Echoed back in message_echoes: reconciliation can match an echo to its outbox row.
            message["metadata"] = idempotency_key[:1000]
        if target.kind == "comment":
            return path, {"recipient": {"comment_id": comment_id}, "message": message}, comment_id
        if target.choices:
            message["quick_replies"] = quick_replies(target.choices)
        data: dict[str, Any] = {"recipient": {"id": target.chat_id}, "message": message}
        if window.tag:
            if window.tag == "RESPONSE":
                data["messaging_type"] = "RESPONSE"
            else:
                data["messaging_type"] = "MESSAGE_TAG"
                data["tag"] = window.tag
        return path, data, None

    @staticmethod
    def _whatsapp(
        target: ReplyTarget, text: str, window: WindowDecision, idempotency_key: str
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": target.chat_id,
            # Echoed in the statuses webhook (≤ 512 bytes): a status finds its outbox row by it too.
            "biz_opaque_callback_data": idempotency_key.encode()[:512].decode("utf-8", "ignore"),
        }
        if window.kind == "template":
            template: dict[str, Any] = {
                "name": window.template,
                "language": {"code": window.template_language},
            }
            if window.params:
                template["components"] = [
                    {"type": "body", "parameters": [{"type": "text", "text": p} for p in window.params]}
                ]
            data.update(type="template", template=template)
        elif target.choices and len(text) <= WA_BUTTON_BODY_LIMIT:
            data.update(type="interactive", interactive=whatsapp_buttons(text, target.choices))
        else:
            # Too long a body for an interactive message, or nothing to pick: plain text (numbered choices).
            body = choices_as_text(text, target.choices)
            data.update(type="text", text={"body": body, "preview_url": False})
        return data

    # --- token check -----------------------------------------------------------------------------------

    async def check_token(self) -> tuple[str, str]:
        """("ok" | "broken" | "degraded", detail) from `GET /me` (for /healthz at start and every hour)."""
        try:
            me = await self.client.get("me", {"fields": "id,name"}, token=self._token)
        except GraphError as exc:
            if exc.code == 190:
                return "broken", f"Meta refused the {self.channel} token (error 190): set a new one"
            if 200 <= exc.code <= 299 or exc.code == 10:
                return "broken", f"the {self.channel} token lacks a permission (Meta error {exc.code})"
            return "degraded", f"token check failed: {exc}"
        return "ok", f"token accepted for {me.get('name') or me.get('id')}"


# Messenger Platform, quick replies (developers.facebook.com/docs/messenger-platform/send-messages/
# quick-replies): up to 13, content_type "text", a title of up to 20 characters, a payload of up to 1000.
QUICK_REPLY_LIMIT, QUICK_REPLY_TITLE_LIMIT, QUICK_REPLY_PAYLOAD_LIMIT = 13, 20, 1000
# WhatsApp Cloud API, interactive reply buttons (developers.facebook.com/docs/whatsapp/cloud-api/messages/
# interactive-reply-buttons-messages): up to 3 buttons, id up to 256 characters, title up to 20, body
# text up to 1024.
WA_BUTTON_LIMIT, WA_BUTTON_ID_LIMIT, WA_BUTTON_BODY_LIMIT = 3, 256, 1024  # titles: 20


def quick_replies(choices: Sequence[Choice]) -> list[dict[str, str]]:
    return [
        {
            "content_type": "text",
            "title": c.label[:QUICK_REPLY_TITLE_LIMIT],
            "payload": c.id[:QUICK_REPLY_PAYLOAD_LIMIT],
        }
        for c in choices[:QUICK_REPLY_LIMIT]
    ]


def whatsapp_buttons(text: str, choices: Sequence[Choice]) -> dict[str, Any]:
    return {
        "type": "button",
        "body": {"text": text},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": c.id[:WA_BUTTON_ID_LIMIT], "title": c.label[:20]}}
                for c in choices[:WA_BUTTON_LIMIT]
            ]
        },
    }


def _sent_id(answer: Mapping[str, Any]) -> str | None:
    """Messenger/Instagram {"recipient_id", "message_id"}; comments {"id"}; WhatsApp {"messages": [...]}."""
    for key in ("message_id", "id"):
        value = answer.get(key)
        if isinstance(value, str) and value:
            return value
    messages = answer.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        if isinstance(wamid, str) and wamid:
            return wamid
    return None
