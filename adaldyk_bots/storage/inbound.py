"""Prebuilt Core statements for the inbound path, which runs for every citizen's message.

Building a statement costs several times more than executing it (SQLAlchemy compiles from a cache, but
the cache key of a freshly built statement is computed each time) and the ORM's unit of work adds more;
on the new-appeal path that was most of the time (bench/README.md). These are built once per dialect
and run with bound parameters. ON CONFLICT needs the dialect's own INSERT, hence one set per dialect.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Insert, Select, Table, Update, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.storage.models import (
    Appeal,
    AppealCounter,
    AppealEvent,
    ChannelIdentity,
    Contact,
    Conversation,
    Message,
    MessageVersion,
    OutboxItem,
    RawEvent,
)

OPEN_STATUSES = [s.value for s in AppealStatus if s.is_open]


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


contact = _t(Contact)
identity = _t(ChannelIdentity)
conversation = _t(Conversation)
message = _t(Message)
version = _t(MessageVersion)
appeal = _t(Appeal)
counter = _t(AppealCounter)
event = _t(AppealEvent)
outbox = _t(OutboxItem)
raw_event = _t(RawEvent)


@dataclass(frozen=True)
class InboundStatements:
    sender: Select[Any]
    insert_contact: Insert
    rename_contact: Update
    set_contact_language: Update
    insert_identity: Insert
    conversation: Select[Any]
    insert_conversation: Insert
    touch_conversation: Update
    release_waiting: Update  # the citizen wrote: what waited for their message (a reply window) may go
    insert_message: Insert  # ON CONFLICT DO NOTHING RETURNING id
    message_by_key: Select[Any]
    replace_message_content: Update
    set_message_appeal: Update
    message_appeal: Select[Any]
    insert_version: Insert  # ON CONFLICT DO NOTHING RETURNING id
    open_appeal_for_update: Select[Any]
    named_appeal_for_update: Select[Any]  # the sender's own appeal by number, with its status
    latest_appeal_language: Select[Any]
    set_open_appeals_language: Update
    appeal_by_id: Select[Any]
    touch_appeal: Update
    replace_summary: Update
    bump_counter: Insert
    insert_appeal: Insert
    insert_event: Insert
    outbox_state: Select[Any]
    insert_outbox: Insert  # ON CONFLICT DO NOTHING RETURNING id
    received_events: Select[Any]
    finish_event: Update


@cache
def statements(dialect: str) -> InboundStatements:
    """The statements for `dialect` ("sqlite" or "postgresql"), built on first use."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    bump = insert(counter).values(year=bindparam("year"), last=1)
    bump = bump.on_conflict_do_update(index_elements=["year"], set_={"last": counter.c["last"] + 1})
    appeal_fields = (appeal.c.id, appeal.c.number, appeal.c.language, appeal.c.registered_at, appeal.c.due_at)
    return InboundStatements(
        sender=select(identity.c.contact_id, contact.c.display_name, contact.c.language)
        .join(contact, contact.c.id == identity.c.contact_id)
        .where(
            identity.c.channel == bindparam("channel"),
            identity.c.account == bindparam("account"),
            identity.c.external_id == bindparam("external_id"),
        ),
        insert_contact=insert(contact).returning(contact.c.id),
        rename_contact=update(contact)
        .where(contact.c.id == bindparam("b_id"))
        .values(display_name=bindparam("b_name")),
        set_contact_language=update(contact)
        .where(contact.c.id == bindparam("b_id"))
        .values(language=bindparam("b_language")),
        insert_identity=insert(identity),
        conversation=select(conversation.c.id, conversation.c.last_inbound_at).where(
            conversation.c.channel == bindparam("channel"),
            conversation.c.account == bindparam("account"),
            conversation.c.chat_id == bindparam("chat_id"),
        ),
        insert_conversation=insert(conversation).returning(conversation.c.id),
        touch_conversation=update(conversation)
        .where(conversation.c.id == bindparam("b_id"))
        .values(last_inbound_at=bindparam("b_at")),
        release_waiting=update(outbox)
        .where(
            outbox.c.channel == bindparam("b_channel"),
            outbox.c.account == bindparam("b_account"),
            outbox.c.chat_id == bindparam("b_chat_id"),
            outbox.c.state == "waiting",
        )
        .values(state="pending", next_attempt_at=bindparam("b_at")),
        insert_message=insert(message).on_conflict_do_nothing().returning(message.c.id),
        message_by_key=select(
            message.c.id,
            message.c.appeal_id,
            message.c.raw_event_id,
            message.c.text,
            message.c.attachments,
            message.c.stand_in_edited_at,
        ).where(
            message.c.conversation_id == bindparam("conversation_id"),
            message.c.direction == "in",
            message.c.external_key == bindparam("external_key"),
        ),
        replace_message_content=update(message)
        .where(message.c.id == bindparam("b_id"))
        .values(
            text=bindparam("b_text"),
            attachments=bindparam("b_attachments"),
            raw_event_id=bindparam("b_raw_event_id"),
            stand_in_edited_at=bindparam("b_stand_in"),
        ),
        set_message_appeal=update(message)
        .where(message.c.id == bindparam("b_id"))
        .values(appeal_id=bindparam("b_appeal_id")),
        message_appeal=select(message.c.appeal_id)
        .join(conversation, conversation.c.id == message.c.conversation_id)
        .where(
            conversation.c.channel == bindparam("channel"),
            conversation.c.account == bindparam("account"),
            conversation.c.chat_id == bindparam("chat_id"),
            message.c.direction == "in",
            message.c.external_key == bindparam("external_key"),
        ),
        insert_version=insert(version).on_conflict_do_nothing().returning(version.c.id),
        # The row lock decides a message racing a moderator's answer (issue 6 item 7): on PostgreSQL a
        # status change waits for it, or it waits for the status change and then, re-checked, finds the
        # appeal no longer open. SQLite has no FOR UPDATE; its single writer serialises the two instead.
        open_appeal_for_update=select(*appeal_fields)
        .where(appeal.c.conversation_id == bindparam("conversation_id"), appeal.c.status.in_(OPEN_STATUSES))
        .order_by(appeal.c.id.desc())
        .limit(1)
        .with_for_update(),
        named_appeal_for_update=select(*appeal_fields, appeal.c.status)
        .where(appeal.c.number == bindparam("number"), appeal.c.contact_id == bindparam("contact_id"))
        .with_for_update(),
        latest_appeal_language=select(appeal.c.language)
        .where(appeal.c.conversation_id == bindparam("conversation_id"))
        .order_by(appeal.c.id.desc())
        .limit(1),
        set_open_appeals_language=update(appeal)
        .where(appeal.c.conversation_id == bindparam("b_conversation_id"), appeal.c.status.in_(OPEN_STATUSES))
        .values(language=bindparam("b_language")),
        appeal_by_id=select(*appeal_fields, appeal.c.summary, appeal.c.status).where(
            appeal.c.id == bindparam("id")
        ),
        touch_appeal=update(appeal)
        .where(appeal.c.id == bindparam("b_id"))
        .values(updated_at=bindparam("b_at"), last_activity_at=bindparam("b_at")),
        replace_summary=update(appeal)
        .where(appeal.c.id == bindparam("b_id"), appeal.c.summary == bindparam("b_old"))
        .values(summary=bindparam("b_new")),
        bump_counter=bump.returning(counter.c["last"]),
        insert_appeal=insert(appeal).returning(appeal.c.id),
        insert_event=insert(event),
        outbox_state=select(outbox.c.state).where(outbox.c.key == bindparam("key")),
        insert_outbox=insert(outbox).on_conflict_do_nothing().returning(outbox.c.id),
        received_events=select(
            raw_event.c.id,
            raw_event.c.channel,
            raw_event.c.dedup_key,
            raw_event.c.payload,
            raw_event.c.corrected_payload,
        )
        .where(
            raw_event.c.state == "received",
            # A channel not configured here stays queued for a process that has it.
            raw_event.c.channel.in_(bindparam("channels", expanding=True)),
        )
        .order_by(raw_event.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True),
        finish_event=update(raw_event)
        .where(raw_event.c.id == bindparam("b_id"))
        .values(state=bindparam("b_state"), reason=bindparam("b_reason"), processed_at=bindparam("b_at")),
    )
