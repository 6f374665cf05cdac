"""Database tables (SQLModel). Times are aware UTC; text shown to people converts them to the local zone."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.storage.types import use_storable_text


def _json_column() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RawEvent(SQLModel, table=True):
    """Every authentic item a platform sent, exactly as sent; the dedup key makes redelivery harmless."""

    __tablename__ = "raw_event"
    __table_args__ = (UniqueConstraint("channel", "account", "dedup_key", name="uq_raw_event_dedup"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    dedup_key: str = Field(max_length=200)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: datetime
    state: str = Field(max_length=16, index=True)  # processed | ignored | quarantined
    reason: str | None = Field(default=None, sa_column=Column(Text))
    # An operator's correction of a quarantined payload; the original bytes are never overwritten.
    corrected_payload: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    processed_at: datetime | None = None


class ChannelCursor(SQLModel, table=True):
    """A poller's position (Telegram offset, VK ts); written only in the batch's own transaction."""

    __tablename__ = "channel_cursor"
    channel: str = Field(primary_key=True, max_length=32)
    account: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)
    updated_at: datetime


class Contact(SQLModel, table=True):
    __tablename__ = "contact"
    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=2)  # chosen by the citizen (/lang)
    created_at: datetime


class ChannelIdentity(SQLModel, table=True):
    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "account", "external_id", name="uq_identity"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    external_id: str = Field(max_length=100)
    username: str | None = Field(default=None, max_length=100)


class Conversation(SQLModel, table=True):
    """Where replies go, and when the citizen last wrote (reply windows are measured from it)."""

    __tablename__ = "conversation"
    __table_args__ = (UniqueConstraint("channel", "account", "chat_id", name="uq_conversation"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    chat_id: str = Field(max_length=100)
    kind: str = Field(default="message", max_length=16)
    last_inbound_at: datetime
    created_at: datetime
    # The bot is asking this citizen for a formal appeal's R12 data (data_request): the inbound path reads
    # the flag with the conversation it already selects, so the common case pays nothing for the dialogue.
    collecting: bool = False


class Unit(SQLModel, table=True):
    """The org tree: ministry, committees, territorial departments, subordinate organizations."""

    __tablename__ = "unit"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    parent_id: int | None = Field(default=None, foreign_key="unit.id")
    name_ru: str = Field(max_length=300)
    name_kk: str = Field(max_length=300)
    head_name: str | None = Field(default=None, max_length=200)
    # From config/org.toml (org.py): what the unit is, who heads it, where it works, what it handles.
    # ministry | committee | department | inspection | subordinate | office
    kind: str = Field(default="unit", max_length=32)
    head_position: str | None = Field(default=None, max_length=300)
    head_user_id: int | None = Field(default=None, foreign_key="staff_user.id")  # the head's account
    regions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class UnitDeputy(SQLModel, table=True):
    """A deputy acting for a unit's head from `starts_on` to `ends_on` inclusive (dates in Asia/Almaty):
    reminders, approvals and escalations go to them while the range lasts (org.acting_head)."""

    __tablename__ = "unit_deputy"
    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    name: str = Field(max_length=200)
    position: str = Field(default="", max_length=300)
    user_id: int | None = Field(default=None, foreign_key="staff_user.id")
    starts_on: date
    ends_on: date


class AppealCounter(SQLModel, table=True):
    """The last public number used per year; bumped with an upsert inside the appeal's transaction."""

    __tablename__ = "appeal_counter"
    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last: int = 0


_INBOX_COLUMNS = ("status", "channel", "category", "language", "unit_id", "assignee_id")
# The text appeal_query.py renders for "open" (domain.AppealStatus.is_open), so the planners match it.
OPEN_WHERE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in AppealStatus if s.is_open))
_OPEN_WHERE = text(OPEN_WHERE_SQL)


def _open_indexes() -> list[Index]:
    orders = {
        "ix_appeal_open_activity": ("last_activity_at", "id"),
        "ix_appeal_open_due": ("due_at", "id"),
        "ix_appeal_open_channel": ("channel",),
        "ix_appeal_open_category": ("category",),
        "ix_appeal_open_language": ("language",),
        "ix_appeal_open_unit": ("unit_id",),
    }
    every = (*_INBOX_COLUMNS, "due_at", "last_activity_at")
    return [
        Index(
            name,
            *lead,
            *[c for c in every if c not in lead],
            sqlite_where=_OPEN_WHERE,
            postgresql_where=_OPEN_WHERE,
        )
        for name, lead in orders.items()
    ]


class Appeal(SQLModel, table=True):
    __tablename__ = "appeal"
    __table_args__ = (
        Index("ix_appeal_conversation_open", "conversation_id", "status"),
        Index("ix_appeal_status_due", "status", "due_at"),
        # The inbox's keyset orders (appeal_query.py): newest activity first, or soonest due first.
        Index("ix_appeal_activity", "last_activity_at", "id"),
        Index("ix_appeal_status_activity", "status", "last_activity_at", "id"),
        Index("ix_appeal_due", "due_at", "id"),
        # The open appeals (a few per cent of all once years have passed) with every column an inbox
        # filter or count reads: the default inbox, its filters and its counts never touch the table.
        # One per order the inbox reads them in: by activity, by due date, and grouped by each counted
        # dimension (a GROUP BY that follows an index needs no sort, which was most of a count's time).
        *_open_indexes(),
        # Counts by every inbox column (the finished appeals' own counts come from appeal_tally).
        Index("ix_appeal_facets", *_INBOX_COLUMNS, "due_at"),
        # A signal becomes at most one formal appeal (triage.py), however often its last answer arrives.
        Index("uq_appeal_signal_id", "signal_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    channel: str = Field(max_length=32, index=True)
    language: str = Field(max_length=2)
    category: str = Field(default="other", max_length=32)
    status: str = Field(default="received", max_length=16)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    received_at: datetime
    registered_at: datetime
    due_at: datetime
    overdue: bool = False
    answered_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    # The staff member the appeal is assigned to (its unit is unit_id); None: nobody yet.
    assignee_id: int | None = Field(default=None, foreign_key="staff_user.id", index=True)
    # When a citizen's message or a staff action last touched the appeal: the inbox's default order.
    last_activity_at: datetime = Field(default_factory=utcnow)

    # --- the legal life (lifecycle.py; migration 0011) ---
    formal: bool = False  # a formal appeal (R12 data given, statutory term running); False: a signal
    triage: str | None = Field(default=None, max_length=16)  # informational | formal | forward | spam
    signal_id: int | None = Field(default=None, foreign_key="appeal.id")  # the signal it came from
    merged_into_id: int | None = Field(default=None, foreign_key="appeal.id")  # duplicate of
    forwarded_to: str | None = Field(default=None, max_length=64)  # an outside body (org.toml) or "other"
    # The name of the body it went to, as the citizen's notice gave it (forwarding.py; migration 0019).
    forwarded_to_name: str | None = Field(default=None, max_length=300)
    # A corruption report: the unit it is about. That unit and its whole chain of command never see it.
    concerned_unit_id: int | None = Field(default=None, foreign_key="unit.id")
    confidential: bool = False  # the reporter's identity is shown only to those who need it; views audited
    transfers: int = 0  # times passed from one unit to another (more than two is flagged)
    original_due_at: datetime | None = None  # the term before any extension (R4's cap counts from it)
    forward_due_at: datetime | None = None  # R5: forward within 3 working days of registration
    # R4 (deadlines.py; migration 0014): extensions granted so far, and when the citizen's notice of the
    # last one must have been delivered (cleared once the sweep has checked it).
    extensions: int = 0
    extension_notice_due_at: datetime | None = Field(default=None, index=True)
    resolved: bool | None = None  # the citizen's word after the answer: solved (True) or not (False)
    # R12: the applicant, as a formal appeal requires; and R2: who accepted it (phone, reception).
    applicant_name: str | None = Field(default=None, max_length=300)
    applicant_iin: str | None = Field(default=None, max_length=12)
    applicant_address: str | None = Field(default=None, sa_column=Column(Text))
    applicant_email: str | None = Field(default=None, max_length=254)
    applicant_phone: str | None = Field(default=None, max_length=32)
    consent_at: datetime | None = None  # consent to personal-data processing (Law 94-V)
    taken_by_id: int | None = Field(default=None, foreign_key="staff_user.id")


class AppealTally(SQLModel, table=True):
    """How many finished appeals have these values (storage/tally.py: kept by triggers, migration 0018).

    One row per grain and combination; NULL means "none" as in `appeal`, or "not kept at this grain"."""

    __tablename__ = "appeal_tally"
    __table_args__ = (
        # A grain is read whole (a few thousand rows) or, at grain "u", by the scope's or filter's units.
        Index("ix_appeal_tally_grain_unit", "grain", "unit_id"),
    )

    key: str = Field(primary_key=True, max_length=200)  # grain and values joined by '|'
    grain: str = Field(max_length=1)
    status: str = Field(max_length=16)
    channel: str | None = Field(default=None, max_length=32)
    category: str | None = Field(default=None, max_length=32)
    language: str | None = Field(default=None, max_length=2)
    unit_id: int | None = None
    concerned_unit_id: int | None = None
    assigned: bool = False
    n: int = 0


class DataRequest(SQLModel, table=True):
    """The bot asking a citizen, one question at a time, for what a formal appeal needs (R12: surname, name
    and patronymic, IIN, postal address, and consent to processing them, Law 94-V) after a moderator
    triaged their signal as formal (data_collection.py). One open request per conversation."""

    __tablename__ = "data_request"
    __table_args__ = (
        Index(
            "uq_data_request_open",
            "conversation_id",
            unique=True,
            sqlite_where=text("finished_at IS NULL AND cancelled_at IS NULL"),
            postgresql_where=text("finished_at IS NULL AND cancelled_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    appeal_id: int = Field(foreign_key="appeal.id", index=True)  # the signal
    conversation_id: int = Field(foreign_key="conversation.id")
    step: str = Field(max_length=16)  # consent | name | iin | address | done
    # The answers accepted so far (name, iin, address, consent_at); emptied when the request is cancelled.
    answers: dict[str, Any] = _json_column()
    attempts: int = 0  # answers refused at the present step
    started_at: datetime
    started_by: str = Field(max_length=200)  # the moderator who triaged the signal as formal
    updated_at: datetime
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    # declined (no consent) | citizen (cancelled in the chat) | staff (another triage decision)
    cancel_reason: str | None = Field(default=None, max_length=16)
    formal_appeal_id: int | None = Field(default=None, foreign_key="appeal.id")


class AppealSearch(SQLModel, table=True):
    """An appeal's searchable text (number, citizen's names, every version of every citizen message),
    normalised by search_text.py and rewritten in the transaction that changes any of them
    (storage/search_index.py). Indexed by SQLite FTS5 (`appeal_fts`) or a PostgreSQL GIN index over
    to_tsvector('simple', document): both made by migration 0008_search, outside these models."""

    __tablename__ = "appeal_search"
    appeal_id: int = Field(
        primary_key=True, foreign_key="appeal.id", sa_column_kwargs={"autoincrement": False}
    )
    document: str = Field(default="", sa_column=Column(Text, nullable=False))


# Database objects of the search index that the models cannot describe (an FTS5 virtual table and its
# shadow tables, an expression GIN index); Alembic's comparison leaves them alone (migrations/env.py).
SEARCH_INDEX_OBJECTS = frozenset(
    {"appeal_fts", "ix_appeal_search_tsv"}
    | {f"appeal_fts_{t}" for t in ("data", "idx", "docsize", "config", "content")}
)


class Message(SQLModel, table=True):
    """A message in a conversation. `text` is the original as first received and is never changed."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("conversation_id", "direction", "external_key", name="uq_message_external"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    appeal_id: int | None = Field(default=None, foreign_key="appeal.id", index=True)
    raw_event_id: int | None = Field(default=None, foreign_key="raw_event.id")
    direction: str = Field(max_length=3)  # in | out
    external_key: str = Field(max_length=100)  # the platform's message id (outbound: outbox key)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sent_at: datetime
    created_at: datetime
    # Set while `text` is an edit standing in for an original that has not arrived (Telegram may deliver
    # an edit first): the edit's time. When the original comes, it takes `text` and the edit becomes a
    # MessageVersion, so both are kept in the platform's order (invariant 5).
    stand_in_edited_at: datetime | None = None
    # The citizen deleted it on the platform (Instagram unsend, a removed comment): marked, text kept.
    deleted_at: datetime | None = None
    # The platform's ids of the earlier messages of the thread this one answers, oldest first (an e-mail's
    # References header, capped): a reply to it carries them on, so it threads in every mail program.
    thread: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


class MessageVersion(SQLModel, table=True):
    """Later versions of an inbound message (edits); the original stays in Message.text."""

    __tablename__ = "message_version"
    __table_args__ = (UniqueConstraint("message_id", "edited_at", name="uq_message_version"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    raw_event_id: int | None = Field(default=None, foreign_key="raw_event.id")
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    edited_at: datetime
    created_at: datetime


class AppealEvent(SQLModel, table=True):
    """Append-only history of an appeal: who did what, when, and what the citizen was told."""

    __tablename__ = "appeal_event"
    id: int | None = Field(default=None, primary_key=True)
    appeal_id: int = Field(foreign_key="appeal.id", index=True)
    kind: str = Field(max_length=32)  # created, message, status, unit, reply, delivery
    actor: str = Field(max_length=100)  # "citizen", "system", "token:<name>"
    detail: dict[str, Any] = _json_column()
    created_at: datetime


class OutboxItem(SQLModel, table=True):
    """A message we owe someone. Written in the same transaction as its cause; the key makes it unique."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_chat", "channel", "account", "chat_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # ack:<appeal>, status:<event>, reply:<event>, ...
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    chat_id: str = Field(max_length=100)
    target_kind: str = Field(default="message", max_length=16)
    reply_to_key: str | None = Field(default=None, max_length=100)
    appeal_id: int | None = Field(default=None, foreign_key="appeal.id", index=True)
    purpose: str = Field(max_length=32)  # ack, status, reply, status_query, info
    text: str = Field(sa_column=Column(Text, nullable=False))
    # pending -> sending -> sent | retrying -> ... | failed; held while the channel's token is refused
    # (last_error_* say why), then pending again by itself. Waiting (rate limits, held) is not an attempt.
    # `waiting`: a reply window is closed until the citizen writes (e.g. WhatsApp's 24 h); their next
    # message sets it pending again (workflow, release_waiting).
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    parts_sent: int = 0  # long texts go out in parts; a retry resumes at the first unsent part
    platform_message_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    next_attempt_at: datetime
    lease_until: datetime | None = None
    # Who holds the lease (dispatcher id and round); a result is recorded only by the holder, so a row that
    # was claimed again after its lease ran out is never counted twice.
    lease_owner: str | None = Field(default=None, max_length=64)
    last_error_code: str | None = Field(default=None, max_length=64)
    last_error_detail: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime
    sent_at: datetime | None = None
    # Answers the citizen may pick ([{"id": ..., "label": ...}], e.g. "was it solved?"): each connector shows
    # them its own way (buttons, quick replies, numbered words) on the last part of the text (domain.Choice).
    choices: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class DispatcherLease(SQLModel, table=True):
    """The one dispatcher of a PostgreSQL database that sends when the rate budgets are not shared (no
    ADALDYK_REDIS_URL): held by `owner` until `expires_at` (database time), renewed every round."""

    __tablename__ = "dispatcher_lease"
    name: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64)
    expires_at: datetime


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    # The staff user whose rights the token carries (access.py); a token made before users existed has
    # none and is refused with a message saying to create it again with --user.
    user_id: int | None = Field(default=None, foreign_key="staff_user.id", index=True)


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    full_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=200)
    role: str = Field(default="moderator", max_length=32)  # admin | moderator | officer | auditor
    unit_id: int | None = Field(default=None, foreign_key="unit.id")
    created_at: datetime
    language: str | None = Field(default=None, max_length=2)  # kk | ru | en, the workspace's language
    # A disabled account cannot log in, its sessions and tokens stop working; the row stays for history.
    disabled_at: datetime | None = None
    password_changed_at: datetime | None = None
    email: str | None = Field(default=None, max_length=254)  # where staff notices are e-mailed
    # The post printed on the receipts of the appeals they accept (R2: surname, initials and position).
    position: str = Field(default="", max_length=200)


class WebSession(SQLModel, table=True):
    """A workspace login, kept on the server so logout and idle expiry really end it. `id` is the
    SHA-256 of the random cookie value: the database never holds a usable cookie."""

    __tablename__ = "web_session"
    __table_args__ = (
        Index("ix_web_session_user", "user_id", "ended_at"),
        # What pruning.py looks for (ended or idle sessions), without a scan of the table.
        Index("ix_web_session_ended", "ended_at"),
        Index("ix_web_session_last_seen", "last_seen_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="staff_user.id")
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    last_seen_at: datetime
    address: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=300)
    ended_at: datetime | None = None
    end_reason: str | None = Field(default=None, max_length=32)  # logout|idle|password|disabled|replaced


class LoginAttempt(SQLModel, table=True):
    """Every login attempt, for throttling failures per (account, address) and for the record."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_pair", "username", "address", "at"),
        Index("ix_login_attempt_at", "at"),  # pruning.py deletes by age
    )

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100)  # as typed (casefolded): unknown accounts are throttled too
    address: str = Field(max_length=64)
    at: datetime
    ok: bool


class IntakeGap(SQLModel, table=True):
    """A poller's report that the platform may have dropped events between two cursors (VK long poll
    `failed` 1 or 3): nothing to replay, but moderators must know the window to look at by hand."""

    __tablename__ = "intake_gap"
    __table_args__ = (Index("ix_intake_gap_channel", "channel", "account", "detected_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    detected_at: datetime
    reason: str = Field(max_length=64)  # a stable code, e.g. "vk.longpoll_failed_1"
    cursor_before: str | None = Field(default=None, max_length=200)
    cursor_after: str | None = Field(default=None, max_length=200)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))


class LoopHeartbeat(SQLModel, table=True):
    """What one process's supervised loop did last (adaldyk_bots/supervisor.py), rewritten every few
    seconds, so a web-only process's /healthz can show the workers' loops."""

    __tablename__ = "loop_heartbeat"

    process: str = Field(primary_key=True, max_length=200)  # host:pid:random
    loop: str = Field(primary_key=True, max_length=200)
    state: str = Field(max_length=16)  # starting | running | standby | backing_off | stopped
    started_at: datetime
    last_success_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = None
    restarts: int = 0
    period_seconds: float = 0.0
    updated_at: datetime


class AuditEvent(SQLModel, table=True):
    """One entry of the audit log (adaldyk_bots/audit.py): append-only, each row chained to the one
    before by `prev_hash`; database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_event"
    __table_args__ = (
        # The auditor's page filters by these and reads newest first (by id).
        Index("ix_audit_event_at", "at"),
        Index("ix_audit_event_actor", "actor", "id"),
        Index("ix_audit_event_action", "action", "id"),
        Index("ix_audit_event_subject", "subject", "id"),
    )

    # Given by the head, one after another (never by a sequence), so a missing id is a deleted row.
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime
    actor: str = Field(max_length=200)  # user:<name> | token:<name> | system | citizen
    action: str = Field(max_length=64)  # login, appeal.view, appeal.status ...
    subject: str | None = Field(default=None, max_length=200)  # appeal number, username ...
    address: str | None = Field(default=None, max_length=100)
    detail: dict[str, Any] = _json_column()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The audit chain's end (one row, id 1): locked by every append so the chain stays one line with
    several processes, and compared by `audit verify` so that a deleted last row is noticed."""

    __tablename__ = "audit_head"
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_id: int
    last_hash: str = Field(max_length=64)


class AppealNote(SQLModel, table=True):
    """A staff member's internal note on an appeal: never sent to the citizen, never edited or deleted
    (a correction is a new note), shown on the appeal page to everyone who may see the appeal."""

    __tablename__ = "appeal_note"
    __table_args__ = (Index("ix_appeal_note_appeal", "appeal_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    appeal_id: int = Field(foreign_key="appeal.id")
    author_id: int | None = Field(default=None, foreign_key="staff_user.id")
    author: str = Field(max_length=200)  # user:<name>, as the audit log names people
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class OutboxPlatformId(SQLModel, table=True):
    """Which outbox item a platform message id belongs to (written when the dispatcher records the
    send), so a delivery receipt finds its item by the id it names without scanning JSON."""

    __tablename__ = "outbox_platform_id"

    channel: str = Field(primary_key=True, max_length=32)
    account: str = Field(primary_key=True, max_length=64)
    platform_message_id: str = Field(primary_key=True, max_length=200)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)


class DeliveryReceiptRow(SQLModel, table=True):
    """A platform's receipt (sent, delivered, read, failed) for a message we sent. Kept even when the
    send it is about is not recorded yet (`outbox_id` null): applied when the dispatcher records it."""

    __tablename__ = "delivery_receipt"
    __table_args__ = (
        UniqueConstraint("channel", "account", "platform_message_id", "state", name="uq_delivery_receipt"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    account: str = Field(max_length=64)
    platform_message_id: str = Field(max_length=200)
    state: str = Field(max_length=16)  # sent | delivered | read | failed
    code: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime  # the platform's time
    received_at: datetime
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", index=True)
    applied_at: datetime | None = None


class StaffTask(SQLModel, table=True):
    """Work a person must do on an appeal because the system cannot: call a citizen who left only a phone
    number, reach one whose notice could not be delivered, ... `key` makes each task exist once."""

    __tablename__ = "staff_task"
    __table_args__ = (Index("ix_staff_task_open", "done_at", "appeal_id"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # e.g. call:<appeal>:<notice>, undelivered:<outbox>
    appeal_id: int = Field(foreign_key="appeal.id", index=True)
    kind: str = Field(max_length=32)  # call_citizen | undelivered_notice | ...
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id")
    text: str = Field(default="", sa_column=Column(Text, nullable=False))  # what to tell the citizen
    created_at: datetime
    done_at: datetime | None = None
    done_by_id: int | None = Field(default=None, foreign_key="staff_user.id")
    outcome: str | None = Field(default=None, sa_column=Column(Text))


class StaffNotice(SQLModel, table=True):
    """A message to a staff member (reminder, escalation, digest, approval request): shown in the
    workspace, and e-mailed when the person has an address and e-mail is on. `key` makes it once only,
    however many workers run the sweep that writes it."""

    __tablename__ = "staff_notice"
    __table_args__ = (Index("ix_staff_notice_user", "user_id", "read_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # e.g. remind:<appeal>:T-3:<user>, digest:<user>:<day>
    user_id: int | None = Field(default=None, foreign_key="staff_user.id")  # None: nobody has the account
    unit_id: int | None = Field(default=None, foreign_key="unit.id")  # the unit the notice is for
    appeal_id: int | None = Field(default=None, foreign_key="appeal.id", index=True)
    kind: str = Field(max_length=32)  # reminder | escalation | digest | approval | reopened | ...
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime
    read_at: datetime | None = None


class Upload(SQLModel, table=True):
    """A file a citizen sent with the web form. Kept in the database: no platform holds it for us to fetch
    again, and a backup of the database then holds the appeal whole. Referenced from the message's
    attachments as file_id "upload:<id>"; appeal_id is set in the transaction that registers the appeal."""

    __tablename__ = "upload"

    id: int | None = Field(default=None, primary_key=True)
    appeal_id: int | None = Field(default=None, foreign_key="appeal.id", index=True)
    name: str = Field(max_length=255)
    mime_type: str = Field(max_length=100)  # sniffed from the bytes, not the name or the browser's claim
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime


class PublicReceipt(SQLModel, table=True):
    """What the web form gave the citizen: the hash of the secret code that, with the number, opens
    /public/status (the code itself is shown once and never stored), and how they asked to be answered."""

    __tablename__ = "public_receipt"

    appeal_id: int = Field(foreign_key="appeal.id", primary_key=True)
    code_sha256: str = Field(max_length=64)
    # The shown form's identity (its signed stamp, hashed): the same form sent twice is one appeal.
    form_key: str = Field(max_length=64, unique=True)
    answer_by: str = Field(max_length=16)  # email | phone | messenger
    messenger: str | None = Field(default=None, max_length=200)  # the handle given (we cannot write there)
    created_at: datetime


class AnswerDraft(SQLModel, table=True):
    """A final answer to a formal appeal waiting for the four eyes: written by `author_id`, sent only once
    the unit's head (or the deputy acting for them that day) approves it (answers.py). `decision` is None
    while it waits, then approved | returned (with the head's `comment`)."""

    __tablename__ = "answer_draft"
    __table_args__ = (Index("ix_answer_draft_pending", "decision", "appeal_id"),)

    id: int | None = Field(default=None, primary_key=True)
    appeal_id: int = Field(foreign_key="appeal.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    author_id: int | None = Field(default=None, foreign_key="staff_user.id")
    created_at: datetime
    decided_by_id: int | None = Field(default=None, foreign_key="staff_user.id")
    decided_at: datetime | None = None
    decision: str | None = Field(default=None, max_length=16)  # None (pending) | approved | returned
    comment: str | None = Field(default=None, sa_column=Column(Text))


class DeadlineMark(SQLModel, table=True):
    """One row per thing a deadline sweep did once (a reminder, an escalation, a flag, a day's digests):
    the UNIQUE key makes the sweep's event, audit record and notices happen once however many workers
    run it at the same moment (the second one's insert waits for the first and then does nothing)."""

    __tablename__ = "deadline_mark"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)  # e.g. remind:<appeal>:3:<due day>, digests:<day>
    appeal_id: int | None = Field(default=None, foreign_key="appeal.id", index=True)
    created_at: datetime


# Last, after every table: any string column holds NUL and lone surrogates (storage/types.py).
use_storable_text(SQLModel.metadata)
