"""Appeals that do not come through a connector: the ministry web-site form, the phone line and the
reception room (staff register those on the citizen's behalf).

They end in the same rows as every channel's: a contact, a conversation (where answers go: the e-mail
address or messenger the citizen gave, or nowhere — then notices become "call the citizen" tasks), the
citizen's words as an inbound message, and an appeal with its number, registration time (R1) and due date
(R3). A formal appeal from the start: registered, its statutory term running. Works inside the caller's
transaction and never commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from adaldyk_bots import audit, notice_texts, notices
from adaldyk_bots.domain import AppealStatus, Category, Language
from adaldyk_bots.language import detect_language
from adaldyk_bots.ports import Connector
from adaldyk_bots.storage import search_index
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    ChannelIdentity,
    Contact,
    Conversation,
    Message,
)
from adaldyk_bots.workflow import DIRECT_CHANNELS, Target, Workflow

__all__ = ["DIRECT_CHANNELS", "DirectAppeal", "register_direct", "reply_target"]


@dataclass(frozen=True)
class DirectAppeal:
    channel: str  # web | phone | reception
    text: str
    kind: Category = Category.OTHER
    language: Language | None = None  # None: detected from the text
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    iin: str | None = None  # already checked (iin.check_iin)
    address: str | None = None
    consent: bool = False
    unit_id: int | None = None  # the unit the citizen asked for
    # Where notices go (an e-mail conversation, a messenger chat), chosen by the caller; None: nowhere.
    reply_to: Target | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)


def reply_target(connectors: Mapping[str, Connector], channel: str, address: str) -> Target | None:
    """Where notices go when the citizen gave `address` on `channel` (e.g. "email" and their address):
    the running connector's account, or None when that channel is off here (then: staff tasks)."""
    connector = connectors.get(channel)
    if connector is None or not address.strip():
        return None
    chat_id = address.strip().lower() if channel == "email" else address.strip()
    return Target(channel, connector.account, chat_id)


def register_direct(
    s: Session,
    workflow: Workflow,
    appeal_in: DirectAppeal,
    *,
    actor: str,
    taken_by_id: int | None,
    now: datetime,
) -> Appeal:
    if appeal_in.channel not in DIRECT_CHANNELS:
        raise ValueError(f"not a direct channel: {appeal_in.channel!r}")
    language = appeal_in.language or detect_language(appeal_in.text)
    conversation = _conversation(s, appeal_in, language, now)
    registered_at = workflow.calendar.registration_time(now)
    due_at = workflow.due_for(registered_at, appeal_in.kind)
    appeal = Appeal(
        number=workflow.next_number(s.connection(), registered_at),
        contact_id=conversation.contact_id,
        conversation_id=require_id(conversation),
        channel=appeal_in.channel,
        language=language.value,
        category=appeal_in.kind.value,
        status=AppealStatus.REGISTERED.value,
        unit_id=appeal_in.unit_id,
        summary=appeal_in.text[:1000],
        received_at=now,
        registered_at=registered_at,
        due_at=due_at,
        original_due_at=due_at,
        forward_due_at=workflow.forward_due_for(registered_at),
        created_at=now,
        updated_at=now,
        last_activity_at=now,
        formal=bool(appeal_in.name and appeal_in.iin and appeal_in.consent),
        applicant_name=appeal_in.name,
        applicant_iin=appeal_in.iin,
        applicant_address=appeal_in.address,
        applicant_email=appeal_in.email,
        applicant_phone=appeal_in.phone,
        consent_at=now if appeal_in.consent else None,
        taken_by_id=taken_by_id,
    )
    s.add(appeal)
    s.flush()
    appeal_id = require_id(appeal)
    message = Message(
        conversation_id=require_id(conversation),
        appeal_id=appeal_id,
        direction="in",
        external_key=f"{appeal_in.channel}:{appeal.number}",
        text=appeal_in.text,
        attachments=appeal_in.attachments,
        sent_at=now,
        created_at=now,
    )
    s.add(message)
    s.flush()
    s.add(
        AppealEvent(
            appeal_id=appeal_id,
            kind="created",
            actor=actor,
            detail={"message_id": message.id, "channel": appeal_in.channel, "taken_by": taken_by_id},
            created_at=now,
        )
    )
    audit.record(
        s, actor=actor, action="appeal.register", subject=appeal.number, detail={"channel": appeal_in.channel}
    )
    search_index.refresh(s.connection(), [appeal_id])
    # R2: the receipt's data (number, date and time, who accepted it, the due date, how to ask).
    text = notice_texts.registration(
        s, workflow.texts, appeal, accepted_by_id=taken_by_id, status_url=workflow.status_url
    )
    notices.notify_citizen(s, workflow, appeal, "registration", text=text, now=now)
    return appeal


def _conversation(s: Session, appeal_in: DirectAppeal, language: Language, now: datetime) -> Conversation:
    """The citizen's conversation where notices go: the one already known for that address, or a new one."""
    target = appeal_in.reply_to
    if target is not None:
        known = s.exec(
            select(Conversation).where(
                Conversation.channel == target.channel,
                Conversation.account == target.account,
                Conversation.chat_id == target.chat_id,
            )
        ).first()
        if known is not None:
            return known
    contact = Contact(display_name=appeal_in.name, language=language.value, created_at=now)
    s.add(contact)
    s.flush()
    if target is not None:
        channel, account, chat_id = target.channel, target.account, target.chat_id
        s.add(
            ChannelIdentity(
                contact_id=require_id(contact), channel=channel, account=account, external_id=chat_id
            )
        )
    else:
        # Nowhere to write: a conversation of its own on the direct channel, so the appeal has one.
        channel, account, chat_id = appeal_in.channel, "direct", secrets.token_hex(8)
    conversation = Conversation(
        contact_id=require_id(contact),
        channel=channel,
        account=account,
        chat_id=chat_id,
        kind="message",
        last_inbound_at=now,
        created_at=now,
    )
    s.add(conversation)
    s.flush()
    return conversation
