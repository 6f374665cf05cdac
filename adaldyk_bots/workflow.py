"""The appeal workflow: what a citizen's message, a status change or a reply does to the store.

Every function here works inside a transaction it is given and never commits (the unit of work does);
whatever the citizen must be told is written to the outbox in that same transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.categories import CategoryRules
from adaldyk_bots.domain import AppealStatus, InboundMessage, Language, ReplyTarget
from adaldyk_bots.errors import AppealNotFound, EmptyReply, StatusUnchanged, UnknownStatus, UnknownUnit
from adaldyk_bots.errors import WorkflowError as WorkflowError  # re-exported for callers that catch it
from adaldyk_bots.language import detect_language, language_from_hint
from adaldyk_bots.storage.db import insert_ignoring_conflict, require_id, upsert_increment, utcnow
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
    Unit,
)
from adaldyk_bots.texts import Texts

log = logging.getLogger(__name__)

OPEN_STATUSES = [s.value for s in AppealStatus if s.is_open]
_COMMAND = re.compile(r"^/(?P<name>[a-z_]+)(?:@\w+)?(?:\s+(?P<arg>.*))?$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Target:
    channel: str
    account: str
    chat_id: str
    kind: str = "message"
    reply_to_key: str | None = None


class Workflow:
    def __init__(
        self,
        *,
        calendar: WorkingCalendar,
        texts: Texts,
        term_days: int,
        number_prefix: str,
        categories: CategoryRules | None = None,
    ) -> None:
        self.calendar = calendar
        self.texts = texts
        self.categories = categories or CategoryRules()
        self.term_days = term_days
        self.number_prefix = number_prefix
        self._number = re.compile(rf"\b{re.escape(number_prefix)}-\d{{4}}-\d{{6}}\b", re.IGNORECASE)

    # --- inbound -------------------------------------------------------------------------------

    def accept_message(self, s: Session, msg: InboundMessage, *, raw_event_id: int | None) -> None:
        now = utcnow()
        contact = self._contact_for(s, msg, now)
        conversation = self._conversation_for(s, msg, contact, now)
        attachments = [asdict(a) for a in msg.attachments]

        if msg.edited_at is not None:
            original = s.exec(
                select(Message).where(
                    Message.conversation_id == conversation.id,
                    Message.direction == "in",
                    Message.external_key == msg.message_key,
                )
            ).first()
            if original is not None:
                self._store_version(s, original, msg, attachments, raw_event_id, now)
                return
            # The original never reached us (sent before the bot was connected): keep the edit as
            # the message, so the citizen's words are not lost.

        message_id = insert_ignoring_conflict(
            s,
            Message,
            {
                "conversation_id": conversation.id,
                "raw_event_id": raw_event_id,
                "direction": "in",
                "external_key": msg.message_key,
                "text": msg.text,
                "attachments": attachments,
                "sent_at": msg.sent_at,
                "created_at": now,
            },
        )
        if message_id is None:
            return  # the same message under another delivery: already handled
        target = Target(msg.channel, msg.account, msg.chat_id, msg.kind, msg.message_key)
        if self._answer_command(s, msg, contact, conversation, target, message_id):
            return

        appeal = s.exec(
            select(Appeal)
            .where(Appeal.conversation_id == conversation.id, col(Appeal.status).in_(OPEN_STATUSES))
            .order_by(col(Appeal.id).desc())
        ).first()
        if appeal is None:
            appeal = self._open_appeal(s, msg, contact, conversation, now)
            self._event(s, appeal, "created", "citizen", {"message_id": message_id}, now)
            self.enqueue(
                s,
                key=f"ack:{appeal.id}",
                target=target,
                purpose="ack",
                appeal_id=appeal.id,
                text=self._ack_text(appeal),
                now=now,
            )
        else:
            self._event(s, appeal, "message", "citizen", {"message_id": message_id}, now)
            appeal.updated_at = now
            s.add(appeal)
            self._acknowledge_again_if_undelivered(s, appeal, target, now)
        s.execute(update(Message).where(col(Message.id) == message_id).values(appeal_id=appeal.id))

    def _acknowledge_again_if_undelivered(
        self, s: Session, appeal: Appeal, target: Target, now: datetime
    ) -> None:
        """The acknowledgement failed for good (blocked, no permission: e.g. VK 901 for the author of a wall
        comment) and the citizen has written again, maybe where we can answer: owe it once more, there."""
        first = s.exec(select(OutboxItem).where(OutboxItem.key == f"ack:{appeal.id}")).first()
        if first is None or first.state != "failed":
            return
        self.enqueue(
            s,
            key=f"ack:{appeal.id}:again",  # once: a second failure stays visible and is not retried here
            target=target,
            purpose="ack",
            appeal_id=appeal.id,
            text=self._ack_text(appeal),
            now=now,
        )

    def _ack_text(self, appeal: Appeal) -> str:
        return self.texts.render(
            appeal.language,
            "ack",
            number=appeal.number,
            registered=appeal.registered_at,
            due=appeal.due_at,
            term=self.term_days,
        )

    def enqueue_fallback(self, s: Session, row: OutboxItem, target: ReplyTarget) -> str | None:
        """Dispatcher hook for Failed.fallback: `row` cannot reach the citizen, `target` can (for VK, a reply
        under their public comment). Owe one neutral invitation to write privately there, once per appeal.
        The place is public: the text has no name, no number, nothing from the appeal."""
        appeal = s.get(Appeal, row.appeal_id) if row.appeal_id is not None else None
        language = appeal.language if appeal is not None else language_from_hint(None)
        key = f"invite:{appeal.id}" if appeal is not None else f"invite:{row.key}"
        added = self.enqueue(
            s,
            key=key,
            target=Target(target.channel, target.account, target.chat_id, target.kind, target.reply_to_key),
            purpose="invite",
            appeal_id=row.appeal_id,
            text=self.texts.render(language, "public_invite"),
            now=utcnow(),
        )
        return key if added else None

    def _contact_for(self, s: Session, msg: InboundMessage, now: datetime) -> Contact:
        identity = s.exec(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == msg.channel,
                ChannelIdentity.account == msg.account,
                ChannelIdentity.external_id == msg.sender_id,
            )
        ).first()
        if identity is not None:
            contact = s.get(Contact, identity.contact_id)
            assert contact is not None
            if msg.sender_name and contact.display_name != msg.sender_name:
                contact.display_name = msg.sender_name
            return contact
        contact = Contact(display_name=msg.sender_name, created_at=now)
        s.add(contact)
        s.flush()
        # A concurrent first message from the same person fails this insert on the UNIQUE key; the
        # transaction rolls back, the platform gets a 5xx and redelivers, and the retry finds the row.
        s.add(
            ChannelIdentity(
                contact_id=require_id(contact),
                channel=msg.channel,
                account=msg.account,
                external_id=msg.sender_id,
                username=msg.sender_username,
            )
        )
        return contact

    def _conversation_for(
        self, s: Session, msg: InboundMessage, contact: Contact, now: datetime
    ) -> Conversation:
        conversation = s.exec(
            select(Conversation).where(
                Conversation.channel == msg.channel,
                Conversation.account == msg.account,
                Conversation.chat_id == msg.chat_id,
            )
        ).first()
        if conversation is None:
            conversation = Conversation(
                contact_id=require_id(contact),
                channel=msg.channel,
                account=msg.account,
                chat_id=msg.chat_id,
                kind=msg.kind,
                last_inbound_at=msg.sent_at,
                created_at=now,
            )
            s.add(conversation)
            s.flush()
        elif msg.sent_at > conversation.last_inbound_at:
            conversation.last_inbound_at = msg.sent_at
            s.add(conversation)
        return conversation

    def _store_version(
        self,
        s: Session,
        original: Message,
        msg: InboundMessage,
        attachments: list[dict[str, object]],
        raw_event_id: int | None,
        now: datetime,
    ) -> None:
        version_id = insert_ignoring_conflict(
            s,
            MessageVersion,
            {
                "message_id": original.id,
                "raw_event_id": raw_event_id,
                "text": msg.text,
                "attachments": attachments,
                "edited_at": msg.edited_at,
                "created_at": now,
            },
        )
        if version_id is not None and original.appeal_id is not None:
            appeal = s.get(Appeal, original.appeal_id)
            assert appeal is not None
            self._event(
                s, appeal, "edited", "citizen", {"message_id": original.id, "version_id": version_id}, now
            )

    def _open_appeal(
        self, s: Session, msg: InboundMessage, contact: Contact, conversation: Conversation, now: datetime
    ) -> Appeal:
        registered_at = self.calendar.registration_time(msg.sent_at)
        year = registered_at.astimezone(self.calendar.tz).year
        seq = upsert_increment(s, AppealCounter, key={"year": year}, column="last")
        language = (
            Language(contact.language)
            if contact.language
            else detect_language(msg.text, hint=msg.language_hint)
        )
        appeal = Appeal(
            number=f"{self.number_prefix}-{year}-{seq:06d}",
            contact_id=require_id(contact),
            conversation_id=require_id(conversation),
            channel=msg.channel,
            language=language.value,
            status=AppealStatus.RECEIVED.value,
            category=self.categories.classify(msg.text).value,
            summary=msg.text[:1000],
            received_at=msg.sent_at,
            registered_at=registered_at,
            due_at=self.calendar.due_at(registered_at, self.term_days),
            created_at=now,
            updated_at=now,
        )
        s.add(appeal)
        s.flush()
        return appeal

    def _answer_command(
        self,
        s: Session,
        msg: InboundMessage,
        contact: Contact,
        conversation: Conversation,
        target: Target,
        message_id: int,
    ) -> bool:
        """Commands and status look-ups are answered at once and never open an appeal."""
        text = msg.text.strip()
        match = _COMMAND.match(text)
        number = self._number.fullmatch(text.strip(" .!?"))
        if not match and not number:
            return False
        language = self._language_of(s, contact, conversation, msg)
        name = match.group("name").lower() if match else "status"
        arg = (match.group("arg") or "").strip() if match else text
        if name == "start":
            reply = self.texts.render(language, "welcome")
        elif name == "lang":
            chosen = arg.lower()[:2]
            if chosen in Language._value2member_map_:
                contact.language = chosen
                s.add(contact)
                language = Language(chosen)
                # An open appeal is answered in the language the citizen now asks for.
                for appeal in self._open_appeals(s, conversation):
                    appeal.language = chosen
                    s.add(appeal)
                reply = self.texts.render(language, "lang_set")
            else:
                reply = self.texts.render(language, "lang_unknown")
        elif name == "status":
            reply = self._status_text(s, contact, language, arg)
        else:
            return False  # an unknown command is ordinary text: the citizen may mean it
        self.enqueue(
            s,
            key=f"answer:{message_id}",
            target=target,
            purpose="info",
            appeal_id=None,
            text=reply,
            now=utcnow(),
        )
        return True

    def _language_of(
        self, s: Session, contact: Contact, conversation: Conversation, msg: InboundMessage
    ) -> Language:
        if contact.language:
            return Language(contact.language)
        latest = s.exec(
            select(Appeal).where(Appeal.conversation_id == conversation.id).order_by(col(Appeal.id).desc())
        ).first()
        return Language(latest.language) if latest else language_from_hint(msg.language_hint)

    def _open_appeals(self, s: Session, conversation: Conversation) -> list[Appeal]:
        return list(
            s.exec(
                select(Appeal).where(
                    Appeal.conversation_id == conversation.id, col(Appeal.status).in_(OPEN_STATUSES)
                )
            )
        )

    def _status_text(self, s: Session, contact: Contact, language: Language, arg: str) -> str:
        found = self._number.search(arg)
        query = select(Appeal).where(Appeal.contact_id == contact.id)
        if found:
            # Only the citizen's own appeals: a number alone must not reveal someone else's case.
            appeal = s.exec(query.where(Appeal.number == found.group(0).upper())).first()
            if appeal is None:
                return self.texts.render(language, "status_not_found", number=found.group(0).upper())
        else:
            appeal = s.exec(query.order_by(col(Appeal.id).desc())).first()
            if appeal is None:
                return self.texts.render(language, "status_none")
        return self.texts.render(
            language,
            "status_query",
            number=appeal.number,
            registered=appeal.registered_at,
            due=appeal.due_at,
            status=self.texts.status_name(language, appeal.status),
        )

    # --- staff actions -------------------------------------------------------------------------

    def appeal_by_number(self, s: Session, number: str) -> Appeal:
        appeal = s.exec(select(Appeal).where(Appeal.number == number.upper())).first()
        if appeal is None:
            raise AppealNotFound(f"appeal {number} not found")
        return appeal

    def change_status(
        self, s: Session, appeal: Appeal, status: str, *, actor: str, note: str | None = None
    ) -> AppealEvent:
        try:
            new = AppealStatus(status)
        except ValueError:
            raise UnknownStatus(f"unknown status {status!r}; one of: {', '.join(AppealStatus)}") from None
        if new.value == appeal.status:
            raise StatusUnchanged(f"appeal {appeal.number} is already {status}")
        now = utcnow()
        event = self._event(
            s, appeal, "status", actor, {"from": appeal.status, "to": new.value, "note": note}, now
        )
        appeal.status = new.value
        appeal.updated_at = now
        if new is AppealStatus.ANSWERED:
            appeal.answered_at = now
        s.add(appeal)
        key = "status_changed_note" if note else "status_changed"
        text = self.texts.render(
            appeal.language,
            key,
            number=appeal.number,
            note=note or "",
            status=self.texts.status_name(appeal.language, new),
        )
        self.enqueue(
            s,
            key=f"status:{event.id}",
            target=self._target(s, appeal),
            purpose="status",
            appeal_id=appeal.id,
            text=text,
            now=now,
        )
        return event

    def reply(self, s: Session, appeal: Appeal, text: str, *, actor: str) -> AppealEvent:
        if not text.strip():
            raise EmptyReply("reply text is empty")
        now = utcnow()
        event = self._event(s, appeal, "reply", actor, {"text": text}, now)
        key = f"reply:{event.id}"
        body = self.texts.render(appeal.language, "reply", number=appeal.number, text=text)
        self.enqueue(
            s,
            key=key,
            target=self._target(s, appeal),
            purpose="reply",
            appeal_id=appeal.id,
            text=body,
            now=now,
        )
        s.add(
            Message(
                conversation_id=appeal.conversation_id,
                appeal_id=appeal.id,
                direction="out",
                external_key=key,
                text=body,
                sent_at=now,
                created_at=now,
            )
        )
        appeal.updated_at = now
        s.add(appeal)
        return event

    def assign_unit(self, s: Session, appeal: Appeal, unit_code: str, *, actor: str) -> AppealEvent:
        unit = s.exec(select(Unit).where(Unit.code == unit_code)).first()
        if unit is None:
            raise UnknownUnit(f"unknown unit {unit_code!r}")
        now = utcnow()
        event = self._event(
            s, appeal, "unit", actor, {"from": appeal.unit_id, "to": unit.id, "code": unit.code}, now
        )
        appeal.unit_id = unit.id
        appeal.updated_at = now
        s.add(appeal)
        return event

    def mark_overdue(self, s: Session) -> int:
        """R7 (APPC Art. 91(2)): a missed deadline is a legal state, recorded once with its own event."""
        now = utcnow()
        late = s.exec(
            select(Appeal).where(
                col(Appeal.status).in_(OPEN_STATUSES),
                Appeal.due_at < now,
                Appeal.overdue == False,  # noqa: E712
            )
        ).all()
        for appeal in late:
            appeal.overdue = True
            s.add(appeal)
            self._event(s, appeal, "overdue", "system", {"due_at": appeal.due_at.isoformat()}, now)
        return len(late)

    # --- shared --------------------------------------------------------------------------------

    def _target(self, s: Session, appeal: Appeal) -> Target:
        conversation = s.get(Conversation, appeal.conversation_id)
        assert conversation is not None
        return Target(conversation.channel, conversation.account, conversation.chat_id, conversation.kind)

    @staticmethod
    def _event(
        s: Session, appeal: Appeal, kind: str, actor: str, detail: dict[str, object], now: datetime
    ) -> AppealEvent:
        event = AppealEvent(
            appeal_id=require_id(appeal), kind=kind, actor=actor, detail=detail, created_at=now
        )
        s.add(event)
        s.flush()
        return event

    @staticmethod
    def enqueue(
        s: Session, *, key: str, target: Target, purpose: str, appeal_id: int | None, text: str, now: datetime
    ) -> bool:
        """Owe the citizen a message. The UNIQUE key makes a second enqueue of the same thing a no-op."""
        return (
            insert_ignoring_conflict(
                s,
                OutboxItem,
                {
                    "key": key,
                    "channel": target.channel,
                    "account": target.account,
                    "chat_id": target.chat_id,
                    "target_kind": target.kind,
                    "reply_to_key": target.reply_to_key,
                    "appeal_id": appeal_id,
                    "purpose": purpose,
                    "text": text,
                    "state": "pending",
                    "attempts": 0,
                    "parts_sent": 0,
                    "platform_message_ids": [],
                    "next_attempt_at": now,
                    "created_at": now,
                },
            )
            is not None
        )
