"""Plain typed data shared by the core and the connectors: no SDK, ORM or web type lives here."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Language(enum.StrEnum):
    KK = "kk"
    RU = "ru"
    EN = "en"


class Category(enum.StrEnum):
    """Appeal kinds after the Administrative Procedural and Process Code, Art. 4 (R11), plus the office's
    own: a corruption report (isolated, lifecycle.py), gratitude and other."""

    COMPLAINT = "complaint"  # жалоба
    PROPOSAL = "proposal"  # предложение
    REQUEST = "request"  # запрос
    APPLICATION = "application"  # заявление
    REPORT = "report"  # сообщение (of a violation)
    RESPONSE = "response"  # отклик
    CORRUPTION_REPORT = "corruption_report"
    GRATITUDE = "gratitude"
    OTHER = "other"


class AppealStatus(enum.StrEnum):
    """Where an appeal is in its legal life. The legal transitions between them are in lifecycle.py."""

    # A signal: a message taken in, not yet triaged (R13: a social post is not itself an appeal). Stored as
    # "received" since the first release (the API's status filter uses it).
    RECEIVED = "received"
    REGISTERED = "registered"  # a formal appeal, its term running (R1, R3)
    ASSIGNED = "assigned"  # the responsible unit set
    IN_PROGRESS = "in_progress"
    HEARING = "hearing"  # preliminary decision sent, the applicant may object (R6)
    EXTENDED = "extended"  # term extended by the head's reasoned decision (R4)
    ANSWERED = "answered"
    CLOSED = "closed"
    FORWARDED = "forwarded"  # sent to the competent body (R5)
    REJECTED = "rejected"  # spam or not an appeal
    MERGED = "merged"  # a duplicate of another appeal (merged_into_id)
    REOPENED = "reopened"  # the citizen said "not resolved", or staff reopened it

    @property
    def is_open(self) -> bool:
        return self not in _FINISHED


# Finished: nothing more is owed to the citizen here (a forwarded appeal is the competent body's now).
_FINISHED = {
    AppealStatus.ANSWERED,
    AppealStatus.CLOSED,
    AppealStatus.REJECTED,
    AppealStatus.FORWARDED,
    AppealStatus.MERGED,
}


@dataclass(frozen=True)
class Attachment:
    """A file or structured item a citizen sent. Files are kept by the platform's id."""

    kind: str  # photo, document, voice, audio, video, video_note, sticker, location, contact, ...
    file_id: str | None = None
    file_unique_id: str | None = None
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    data: dict[str, Any] = field(default_factory=dict)  # e.g. {"latitude": .., "longitude": ..}


@dataclass(frozen=True)
class InboundMessage:
    """One citizen message (or a new version of one) as a connector understood it."""

    channel: str  # "telegram", "vk", ...
    account: str  # our side: bot id, community id
    chat_id: str  # where a reply goes
    message_key: str  # the platform's id of the message inside the chat
    sender_id: str
    sent_at: datetime  # UTC
    text: str = ""  # text or caption, exactly as written
    sender_name: str | None = None
    sender_username: str | None = None
    language_hint: str | None = None  # e.g. the client's interface language
    attachments: tuple[Attachment, ...] = ()
    edited_at: datetime | None = None  # set when this is a new version of an earlier message
    reply_to_key: str | None = None
    group_key: str | None = None  # album / media group
    kind: str = "message"  # "message" (private dialog) or "comment" (public comment under a post)
    # The citizen deleted (unsent, removed) it; `edited_at` is when. The words already stored are kept:
    # the message is marked, never erased.
    deleted: bool = False
    # The id of an answer the citizen picked (a button, a quick reply: Choice.id, e.g.
    # "feedback:<appeal>:no"); None for typed text, which the workflow may still read as an answer.
    choice: str | None = None
    # The public number of the appeal this message says it continues (an e-mail answering one of ours:
    # In-Reply-To / References, or "[ADL-2026-000123]" in the subject). The workflow joins that appeal
    # only when it is the sender's own and still open; otherwise the usual rule applies.
    appeal_number: str | None = None
    # The platform's ids of the earlier messages of the thread this one answers, oldest first (an e-mail's
    # References), so that our reply carries the chain on; empty where a platform has no such thing.
    thread: tuple[str, ...] = ()

    @property
    def is_edit(self) -> bool:
        return self.edited_at is not None


@dataclass(frozen=True)
class Ignored:
    """An authentic event we deliberately do not turn into a message (policy or irrelevant type)."""

    reason: str


@dataclass(frozen=True)
class Quarantined:
    """An authentic event we could not understand; kept for `adaldyk replay`."""

    reason: str


@dataclass(frozen=True)
class DeliveryReceipt:
    """The platform's word on a message we sent (WhatsApp `statuses`, Messenger `delivery` / `read`): it
    updates the outbox item whose platform message ids hold one of `platform_message_ids`."""

    channel: str
    account: str
    platform_message_ids: tuple[str, ...]
    state: str  # sent | delivered | read | failed
    at: datetime
    code: str | None = None  # when failed: stable, e.g. "whatsapp.131026", "meta.window_closed"
    detail: str | None = None  # when failed: what a moderator reads


ParseOutcome = InboundMessage | Ignored | Quarantined | DeliveryReceipt


@dataclass(frozen=True)
class Choice:
    """One answer a message offers the citizen (e.g. "solved" / "not solved"): `id` comes back in the
    citizen's press (InboundMessage.choice), `label` is what the button or the numbered line shows."""

    id: str
    label: str


@dataclass(frozen=True)
class ReplyTarget:
    channel: str
    account: str
    chat_id: str
    reply_to_key: str | None = None
    kind: str = "message"
    # How this send may reach the citizen, as the connector's reply_window decided at send time (None for
    # channels without windows). The connector's send() reads it: a tag to carry, a template to send.
    window: WindowDecision | None = None
    # Answers to offer with this text: buttons where the platform has them, numbered lines elsewhere
    # (choices_as_text). Empty for an ordinary message.
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class SendContext:
    """What a connector's reply_window needs to decide (and a ContextualSend connector's message needs to
    say), read by the dispatcher just before the send."""

    purpose: str  # the outbox purpose: ack, status, reply, info, invite, answer_ready, ...
    written_by_person: bool  # a moderator typed it (purpose "reply"); never true for automated notices
    last_inbound_at: datetime | None  # the citizen's last message here, by the platform's clock (UTC)
    now: datetime
    sent_since_inbound: int = 0  # our messages to this target already delivered since that message
    language: str | None = None  # the appeal's language (kk, ru, en)
    # Values a template may show (number, status name, due date), rendered in `language` by the workflow.
    fields: Mapping[str, str] = field(default_factory=dict)
    # The platform's id of the citizen's last message in this conversation (e-mail: its Message-ID, for
    # In-Reply-To), when one is stored.
    last_inbound_key: str | None = None
    # The stored `thread` of the message this notice answers (the outbox row's reply_to_key, else the
    # citizen's last message): e-mail's References are that plus its id.
    reply_thread: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowDecision:
    """A connector's answer to "may this go now, and how?" (Messenger's 24 h / HUMAN_AGENT 7 d, WhatsApp's
    customer-service window and templates, a comment's one private reply).

    - open: send the text (`tag` set: outside the standard window with that tag, e.g. HUMAN_AGENT);
    - template: send the approved `template` (name, `template_language`, `params`) instead of the text;
    - wait: the text waits (outbox state `waiting`, `code`/`detail` shown) until the citizen writes again;
      `notice` is owed now (an outbox row of purpose `notice` is written once) to tell them to;
    - closed: cannot reach the citizen here: failed with `code`/`detail`, the same message owed on another
      channel of the same citizen when one is known.
    """

    kind: str = "open"  # open | template | wait | closed
    tag: str | None = None
    template: str | None = None
    template_language: str | None = None
    params: tuple[str, ...] = ()
    code: str = ""
    detail: str = ""
    notice: str | None = None  # wait: the purpose of the notice to owe now (e.g. "answer_ready")

    @classmethod
    def open(cls, tag: str | None = None) -> WindowDecision:
        return cls("open", tag=tag)

    @classmethod
    def closed(cls, code: str, detail: str) -> WindowDecision:
        return cls("closed", code=code, detail=detail)


ALWAYS_OPEN = WindowDecision()


@dataclass(frozen=True)
class Delivered:
    platform_message_id: str


@dataclass(frozen=True)
class RetryLater:
    """Not now. A platform rate limit (`rate_limited`) is waiting, not failing: it uses up no attempt."""

    code: str  # stable, e.g. "telegram.rate_limited", "telegram.network"
    detail: str
    after_seconds: float | None = None  # the platform's hint (retry_after), if it gave one
    rate_limited: bool = False  # the platform said "too fast" (429, VK 6/29): wait, do not count an attempt
    # Which budget the platform's wait is about, when the connector can tell: "account" (the whole bot or
    # token, the broadest rate scope) or "target" (this chat, the narrowest). None: the dispatcher decides.
    scope: str | None = None


@dataclass(frozen=True)
class Held:
    """The channel cannot send at all for now (its token was rejected): nothing is the message's fault, so
    the channel's sends wait in state `held` and go out by themselves once a probe send succeeds."""

    code: str  # stable, e.g. "telegram.token_invalid", "vk.5"
    detail: str


@dataclass(frozen=True)
class Failed:
    code: str  # stable, e.g. "telegram.blocked", "telegram.bad_request"
    detail: str
    # Where the citizen can still be reached when this target cannot (e.g. a public reply under the comment
    # they wrote); the dispatcher asks the workflow to owe them an invitation there, once per appeal.
    fallback: ReplyTarget | None = None
    # The citizen cannot be reached on this conversation now (a reply window closed): the dispatcher asks the
    # workflow to owe the same message on another conversation of the same citizen, if one is known.
    elsewhere: bool = False


SendResult = Delivered | RetryLater | Held | Failed


def choices_as_text(text: str, choices: tuple[Choice, ...]) -> str:
    """The text with its choices as numbered lines, for a channel without buttons (the citizen answers
    with the number or the words; the workflow reads both)."""
    if not choices:
        return text
    lines = "\n".join(f"{n}. {choice.label}" for n, choice in enumerate(choices, 1))
    return f"{text}\n\n{lines}"
