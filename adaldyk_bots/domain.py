"""Plain typed data shared by the core and the connectors: no SDK, ORM or web type lives here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Language(enum.StrEnum):
    KK = "kk"
    RU = "ru"
    EN = "en"


class Category(enum.StrEnum):
    """Appeal kinds after the Administrative Procedural and Process Code, Art. 4 (R11)."""

    COMPLAINT = "complaint"
    PROPOSAL = "proposal"
    REQUEST = "request"
    APPLICATION = "application"
    CORRUPTION_REPORT = "corruption_report"
    GRATITUDE = "gratitude"
    OTHER = "other"


class AppealStatus(enum.StrEnum):
    RECEIVED = "received"  # signal taken in, awaiting a moderator
    IN_PROGRESS = "in_progress"
    FORWARDED = "forwarded"  # sent to the competent body (R5)
    EXTENDED = "extended"  # term extended by the head's reasoned decision (R4)
    ANSWERED = "answered"
    CLOSED = "closed"
    REJECTED = "rejected"  # spam or not an appeal

    @property
    def is_open(self) -> bool:
        return self not in _FINISHED


_FINISHED = {AppealStatus.ANSWERED, AppealStatus.CLOSED, AppealStatus.REJECTED}


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
class ReplyTarget:
    channel: str
    account: str
    chat_id: str
    reply_to_key: str | None = None
    kind: str = "message"


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


SendResult = Delivered | RetryLater | Held | Failed
