"""The appeal workflow: what a citizen's message, a status change or a reply does to the store.

Every function here works inside a transaction it is given and never commits (the unit of work does);
whatever the citizen must be told is written to the outbox in that same transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, Row, update
from sqlmodel import Session, col, select

from adaldyk_bots import audit, feedback_reading, lifecycle, org, staff_work
from adaldyk_bots.approval_rules import ApprovalRules
from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.categories import CategoryRules
from adaldyk_bots.domain import AppealStatus, Category, Choice, InboundMessage, Language, ReplyTarget
from adaldyk_bots.errors import (
    AppealNotFound,
    ApprovalRequired,
    EmptyReply,
    Forbidden,
    StatusUnchanged,
    UnknownStatus,
    UnknownUnit,
    UseExtension,
    UseForwarding,
)
from adaldyk_bots.errors import WorkflowError as WorkflowError  # re-exported for callers that catch it
from adaldyk_bots.i18n import N_
from adaldyk_bots.language import detect_language, language_from_hint
from adaldyk_bots.staff_alerts import Alerts, claim
from adaldyk_bots.storage import search_index
from adaldyk_bots.storage.db import insert_ignoring_conflict, require_id, utcnow
from adaldyk_bots.storage.inbound import OPEN_STATUSES, InboundStatements, statements
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    Conversation,
    Message,
    OutboxItem,
    Unit,
)
from adaldyk_bots.terms import Terms
from adaldyk_bots.texts import Texts

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/(?P<name>[a-z_]+)(?:@\w+)?(?:\s+(?P<arg>.*))?$", re.IGNORECASE | re.DOTALL)

__all__ = [
    "DIRECT_CHANNELS",
    "OPEN_STATUSES",
    "CitizenHooks",
    "DialogueHook",
    "Target",
    "Workflow",
    "WorkflowError",
]

# Where an appeal is registered the moment it is taken (direct_intake.py: the web form, the phone line, the
# reception room). A connector's message is a signal until a moderator's triage registers it (R13).
DIRECT_CHANNELS = frozenset({"web", "phone", "reception"})


class CitizenHooks(Protocol):
    """What the workflow leaves to the modules built on it (step_notices.py, wired by the runtime), so
    the imports go one way: the notice a legal step owes, and the citizen's answer to "was it solved?"."""

    def owe_notice(
        self, s: Session, workflow: Workflow, appeal: Appeal, kind: str, *, note: str | None,
        actor_id: int | None, now: datetime,
    ) -> None: ...  # fmt: skip

    def feedback_said(
        self, s: Session, workflow: Workflow, appeal_id: int, answer: str, *, message_id: int, now: datetime
    ) -> None: ...


@dataclass(frozen=True)
class Target:
    channel: str
    account: str
    chat_id: str
    kind: str = "message"
    reply_to_key: str | None = None

    @classmethod
    def of(cls, conversation: Conversation) -> Target:
        """Where a message to the citizen in `conversation` goes."""
        return cls(conversation.channel, conversation.account, conversation.chat_id, conversation.kind)


class _Said(NamedTuple):
    """The citizen's yes or no to "was it solved?", recognised on the inbound path (feedback.py)."""

    appeal_id: int
    answer: str
    message_id: int


class _AppealRef(NamedTuple):
    """What the inbound path needs of an appeal (no ORM object on the hot path)."""

    id: int
    number: str
    language: str
    registered_at: datetime
    due_at: datetime
    category: str = Category.OTHER.value


class _Accepted(NamedTuple):
    """What `_accept` did that the search index must follow (accept_message)."""

    contact_id: int
    renamed: bool  # the sender's name changed: every appeal of theirs is indexed again
    said: _Said | None = None  # the citizen's answer to "was it solved?"
    appeal_id: int | None = None  # the appeal the message joined or opened, where _accept knows it
    # Opened in this transaction by a citizen created in it: its only message and identity are known.
    first: _AppealRef | None = None


# The project office's notice when an appeal has been passed between units too often (config/terms.toml).
TRANSFERS_FLAG = N_("Appeal %(number)s has been passed between units %(transfers)s times; now: %(unit)s.")


def _outbox_values(
    key: str, target: Target, purpose: str, appeal_id: int | None, text: str, now: datetime
) -> dict[str, Any]:
    return {
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
    }


class DialogueHook(Protocol):
    """What takes a citizen's message while the bot is asking them questions (data_collection.answer). A
    hook, not an import: the dialogue registers appeals through notices.py, which imports this module."""

    def __call__(
        self,
        s: Session,
        workflow: Workflow,
        *,
        conversation_id: int,
        message_id: int,
        msg: InboundMessage,
        target: Target,
    ) -> bool: ...


class Workflow:
    def __init__(
        self,
        *,
        calendar: WorkingCalendar,
        texts: Texts,
        term_days: int,
        number_prefix: str,
        categories: CategoryRules | None = None,
        approval: ApprovalRules | None = None,
        hooks: CitizenHooks | None = None,
        terms: Terms | None = None,
        alerts: Alerts | None = None,
        dialogue: DialogueHook | None = None,
        status_url: str = "/public/status",
    ) -> None:
        self.calendar = calendar
        self.dialogue = dialogue
        self.status_url = status_url  # where a citizen looks an appeal up by number and code (notices)
        # None: every step tells the citizen in the generic status message, and no "was it solved?".
        self.hooks = hooks
        self.approval = approval or ApprovalRules()
        self.texts = texts
        self.categories = categories or CategoryRules()
        self.term_days = term_days
        # The term per kind of appeal (R3) and the other clocks; without a file, `term_days` for every kind.
        self.terms = terms or Terms.model_validate({"term": {"default": term_days}})
        self.alerts = alerts or Alerts()  # staff notices (runtime: with the e-mail connector's account)
        self.number_prefix = number_prefix
        # (day of registration, kind) -> due; (day of registration) -> forwarding due (R5)
        self._due_by_day: dict[tuple[date, str], datetime] = {}
        self._forward_by_day: dict[date, datetime] = {}
        self._number = re.compile(rf"\b{re.escape(number_prefix)}-\d{{4}}-\d{{6}}\b", re.IGNORECASE)

    # --- inbound -------------------------------------------------------------------------------
    #
    # The hot path: prebuilt Core statements (storage/inbound.py), no ORM objects, so one new appeal costs
    # about a dozen short statements. Everything runs inside the caller's transaction.

    def accept_message(self, s: Session, msg: InboundMessage, *, raw_event_id: int | None) -> None:
        conn = s.connection()
        sql = statements(conn.dialect.name)
        if msg.deleted:
            self._mark_deleted(conn, sql, msg, utcnow())
            return
        accepted = self._accept(s, conn, sql, msg, raw_event_id)
        said = accepted.said
        if said is not None and self.hooks is not None:  # the citizen's yes or no after an answer
            now = utcnow()
            self.hooks.feedback_said(
                s, self, said.appeal_id, said.answer, message_id=said.message_id, now=now
            )
        # The search index follows in the same transaction (storage/search_index.py): the appeal the
        # message joined or opened, and every appeal of a citizen whose name changed.
        if accepted.first is not None:  # the commonest case: what refresh would read back is known
            first = accepted.first
            search_index.write_first(
                conn,
                first.id,
                number=first.number,
                name=msg.sender_name,
                username=msg.sender_username,
                text=msg.text,
            )
            return
        appeal_id = accepted.appeal_id
        if appeal_id is None:
            where = {"channel": msg.channel, "account": msg.account, "chat_id": msg.chat_id}
            appeal_id = conn.execute(sql.message_appeal, {**where, "external_key": msg.message_key}).scalar()
        if accepted.renamed:
            search_index.refresh_contact(conn, accepted.contact_id, also=appeal_id)
        elif appeal_id is not None:
            search_index.refresh(conn, [appeal_id])

    def _accept(
        self,
        s: Session,
        conn: Connection,
        sql: InboundStatements,
        msg: InboundMessage,
        raw_event_id: int | None,
    ) -> _Accepted:
        now = utcnow()
        contact_id, contact_language, renamed, new_contact = self._sender(conn, sql, msg, now)
        done = _Accepted(contact_id, renamed)  # where the appeal, if any, is looked up afterwards
        conversation_id, new_conversation, collecting = self._conversation(conn, sql, msg, contact_id, now)
        attachments = [asdict(a) for a in msg.attachments]
        key = {"conversation_id": conversation_id, "external_key": msg.message_key}

        if msg.edited_at is not None:
            known = conn.execute(sql.message_by_key, key).first()
            if known is not None:
                self._merge_version(conn, sql, known, msg, attachments, raw_event_id, now)
                return done
            # The original has not reached us (sent before the bot was connected, or delivered after its
            # edit on another webhook connection): the edit stands in for it until it comes.

        target = Target(msg.channel, msg.account, msg.chat_id, msg.kind, msg.message_key)
        # A conversation created in this transaction has no message and no appeal yet: the commonest path
        # (a new citizen) opens the appeal first and inserts the message into it, a statement fewer.
        opened = None
        if new_conversation and not self._looks_like_command(msg.text):
            opened = self._open_appeal(conn, sql, msg, contact_id, contact_language, conversation_id, now)
        message_id = conn.execute(
            sql.insert_message,
            {
                "conversation_id": conversation_id,
                "raw_event_id": raw_event_id,
                "direction": "in",
                "external_key": msg.message_key,
                "text": msg.text,
                "attachments": attachments,
                "sent_at": msg.sent_at,
                "created_at": now,
                "stand_in_edited_at": msg.edited_at,
                "appeal_id": opened.id if opened else None,
                "thread": list(msg.thread),
            },
        ).scalar_one_or_none()
        if message_id is None:
            if opened is not None:  # cannot happen; fail the event rather than leave an empty appeal
                raise RuntimeError("a message already stored in a conversation created just now")
            known = conn.execute(sql.message_by_key, key).first()
            if known is not None and known.stand_in_edited_at is not None:
                self._merge_version(conn, sql, known, msg, attachments, raw_event_id, now)
                return done
            # Otherwise the same message under another delivery: already handled. Logged, so that a
            # message dropped as a false duplicate could be traced.
            log.info(
                "%s message %s in chat %s is already stored; raw event %s adds nothing",
                msg.channel,
                msg.message_key,
                msg.chat_id,
                raw_event_id,
            )
            return done
        if collecting and self._collect_answer(s, msg, conversation_id, message_id, target):
            return done
        if opened is None and self._answer_command(
            conn, sql, msg, contact_id, contact_language, conversation_id, target, message_id
        ):
            return done
        reads = self.hooks is not None and not new_conversation
        said = feedback_reading.recognise(msg.text, msg.choice) if reads else None
        waiting = feedback_reading.awaiting(conn, conversation_id, said) if said is not None else None
        if said is not None and waiting is not None:
            # The answer to the question under an answered appeal: it joins that appeal (no new one).
            conn.execute(sql.set_message_appeal, {"b_id": message_id, "b_appeal_id": waiting})
            self._add_event(
                conn, sql, waiting, "feedback", {"message_id": message_id, "answer": said.answer}, now
            )
            return _Accepted(contact_id, renamed, _Said(waiting, said.answer, message_id))

        # A conversation created in this transaction has no appeal yet.
        found, continues = (
            (None, None)
            if new_conversation
            else self._appeal_to_join(conn, sql, msg, contact_id, conversation_id)
        )
        if found is None:
            appeal = opened or self._open_appeal(
                conn, sql, msg, contact_id, contact_language, conversation_id, now
            )
            created: dict[str, object] = {"message_id": message_id}
            if continues is not None:
                created["continues"] = continues
            self._add_event(conn, sql, appeal.id, "created", created, now)
            self._enqueue(
                conn,
                sql,
                key=f"ack:{appeal.id}",
                target=target,
                purpose="ack",
                appeal_id=appeal.id,
                text=self._ack_text(appeal, msg.channel),
                now=now,
            )
            if opened is not None:  # the message was inserted into it
                first = appeal if new_contact else None
                return _Accepted(contact_id, renamed, appeal_id=appeal.id, first=first)
        else:
            appeal = found
            self._add_event(conn, sql, appeal.id, "message", {"message_id": message_id}, now)
            conn.execute(sql.touch_appeal, {"b_id": appeal.id, "b_at": now})
            self._acknowledge_again_if_undelivered(conn, sql, appeal, target, now)
        conn.execute(sql.set_message_appeal, {"b_id": message_id, "b_appeal_id": appeal.id})
        first = appeal if found is None and new_contact else None  # a new appeal holds this message alone
        return _Accepted(contact_id, renamed, appeal_id=appeal.id, first=first)

    @staticmethod
    def _appeal_to_join(
        conn: Connection, sql: InboundStatements, msg: InboundMessage, contact_id: int, conversation_id: int
    ) -> tuple[_AppealRef | None, str | None]:
        """(the open appeal the message joins, or None; the number of a finished appeal it continues).

        A message that names its appeal (`msg.appeal_number`: an e-mail answering one of ours, or with
        the number in its subject) joins that appeal when it is the sender's own and still open, even
        when a newer appeal of theirs is open. A finished one (answered, closed, rejected) is not
        reopened: as on every channel, the next message after an answer is a new appeal, whose history
        names the one it continues. A number that is not the sender's is ignored (anyone can type one)."""
        continues = None
        if msg.appeal_number:
            named = conn.execute(
                sql.named_appeal_for_update,
                {"number": msg.appeal_number.upper(), "contact_id": contact_id},
            ).first()
            if named is not None and named.status in OPEN_STATUSES:
                return _AppealRef(*named[:5]), None
            if named is not None:
                continues = str(named.number)
        found = conn.execute(sql.open_appeal_for_update, {"conversation_id": conversation_id}).first()
        return (_AppealRef(*found) if found is not None else None), continues

    def _mark_deleted(
        self, conn: Connection, sql: InboundStatements, msg: InboundMessage, now: datetime
    ) -> None:
        """The citizen deleted a message on the platform: the stored message is marked, its words kept
        (the appeal is a record), and the appeal's history says so."""
        found = conn.execute(
            sql.conversation, {"channel": msg.channel, "account": msg.account, "chat_id": msg.chat_id}
        ).first()
        known = (
            conn.execute(
                sql.message_by_key, {"conversation_id": found.id, "external_key": msg.message_key}
            ).first()
            if found is not None
            else None
        )
        if known is None:
            log.info(
                "%s message %s deleted before we stored it: nothing to mark", msg.channel, msg.message_key
            )
            return
        marked = conn.execute(
            update(Message)
            .where(col(Message.id) == known.id, col(Message.deleted_at).is_(None))
            .values(deleted_at=msg.edited_at or now)
        )
        if getattr(marked, "rowcount", 0) and known.appeal_id is not None:
            self._add_event(conn, sql, known.appeal_id, "deleted", {"message_id": known.id}, now)

    def _acknowledge_again_if_undelivered(
        self, conn: Connection, sql: InboundStatements, appeal: _AppealRef, target: Target, now: datetime
    ) -> None:
        """The acknowledgement failed for good (blocked, no permission: e.g. VK 901 for the author of a wall
        comment) and the citizen has written again, maybe where we can answer: owe it once more, there."""
        state = conn.execute(sql.outbox_state, {"key": f"ack:{appeal.id}"}).scalar_one_or_none()
        if state != "failed":
            return
        self._enqueue(
            conn,
            sql,
            key=f"ack:{appeal.id}:again",  # once: a second failure stays visible and is not retried here
            target=target,
            purpose="ack",
            appeal_id=appeal.id,
            text=self._ack_text(appeal, target.channel),
            now=now,
        )

    def next_number(self, conn: Connection, registered_at: datetime) -> str:
        """The next public number of the registration year (ADL-2026-000123), assigned once (R13)."""
        year = registered_at.astimezone(self.calendar.tz).year
        seq = int(conn.execute(statements(conn.dialect.name).bump_counter, {"year": year}).scalar_one())
        return f"{self.number_prefix}-{year}-{seq:06d}"

    def due_for(self, registered_at: datetime, kind: Category | str = Category.OTHER) -> datetime:
        """R3: when an appeal of `kind` registered at `registered_at` must be answered."""
        return self._due_at(registered_at, str(kind))

    def forward_due_for(self, registered_at: datetime) -> datetime:
        """R5: by when it must be forwarded to the competent body or given to a unit."""
        day = registered_at.astimezone(self.calendar.tz).date()
        due = self._forward_by_day.get(day)
        if due is None:
            due = self.calendar.due_at(registered_at, self.terms.forwarding.working_days)
            self._forward_by_day[day] = due
        return due

    def ack_text(self, appeal: Appeal) -> str:
        return self._ack_text(appeal, appeal.channel)

    def _ack_text(self, appeal: _AppealRef | Appeal, channel: str) -> str:
        """The acknowledgement of a channel's message: a signal (R13 and the note on social networks), not
        a registered appeal, so it gives the number to follow it by and says a moderator will decide; no
        registration and no legal term, which only a formal appeal has (notice_texts.registration, R2)."""
        how = "how_to_ask_email" if channel == "email" else "how_to_ask_bot"
        return self.texts.render(
            appeal.language, "ack", number=appeal.number, how_to_ask=self.texts.render(appeal.language, how)
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

    def enqueue_elsewhere(self, s: Session, row: OutboxItem) -> str | None:
        """Dispatcher hook for Failed.elsewhere: `row` cannot reach the citizen on its conversation now (a
        reply window closed); owe the same message on the citizen's most recent other conversation (another
        channel, or the private thread of a comment), once. None when they are known nowhere else."""
        if row.key.startswith("elsewhere:"):
            return None  # one hop: a rerouted message that cannot go either stays failed, visibly
        contact_id = s.exec(
            select(Conversation.contact_id).where(
                Conversation.channel == row.channel,
                Conversation.account == row.account,
                Conversation.chat_id == row.chat_id,
            )
        ).first()
        if contact_id is None:
            return None
        other = s.exec(
            select(Conversation)
            .where(
                Conversation.contact_id == contact_id,
                ~(
                    (col(Conversation.channel) == row.channel)
                    & (col(Conversation.account) == row.account)
                    & (col(Conversation.chat_id) == row.chat_id)
                ),
            )
            .order_by(col(Conversation.last_inbound_at).desc())
            .limit(1)
        ).first()
        if other is None:
            return None
        key = f"elsewhere:{row.key}"[:200]
        added = self.enqueue(
            s,
            key=key,
            target=Target(other.channel, other.account, other.chat_id, other.kind),
            purpose=row.purpose,
            appeal_id=row.appeal_id,
            text=row.text,
            now=utcnow(),
        )
        return f"{key} ({other.channel})" if added else None

    def notice_fields(self, s: Session, row: OutboxItem) -> tuple[str | None, dict[str, str]]:
        """Dispatcher hook: what a template may show about the row's appeal, in the appeal's language."""
        appeal = s.get(Appeal, row.appeal_id) if row.appeal_id is not None else None
        if appeal is None:
            return None, {}
        return appeal.language, {
            "number": appeal.number,
            "status": self.texts.status_name(appeal.language, appeal.status),
            "due": appeal.due_at.astimezone(self.calendar.tz).strftime("%d.%m.%Y"),
        }

    @staticmethod
    def _sender(
        conn: Connection, sql: InboundStatements, msg: InboundMessage, now: datetime
    ) -> tuple[int, str | None, bool, bool]:
        """The citizen behind the message: (contact id, the language they chose or None, renamed, created
        just now)."""
        where = {"channel": msg.channel, "account": msg.account, "external_id": msg.sender_id}
        known = conn.execute(sql.sender, where).first()
        if known is not None:
            contact_id, name, language = known
            renamed = bool(msg.sender_name and name != msg.sender_name)
            if renamed:
                conn.execute(sql.rename_contact, {"b_id": contact_id, "b_name": msg.sender_name})
            return int(contact_id), language, renamed, False
        contact_id = conn.execute(
            sql.insert_contact, {"display_name": msg.sender_name, "language": None, "created_at": now}
        ).scalar_one()
        # One processor runs at a time (Intake.processor_lock), so no concurrent first message of the same
        # person can race this insert; if one ever did, the UNIQUE key fails the event, which is retried.
        conn.execute(
            sql.insert_identity,
            {
                "contact_id": contact_id,
                "channel": msg.channel,
                "account": msg.account,
                "external_id": msg.sender_id,
                "username": msg.sender_username,
            },
        )
        return int(contact_id), None, False, True

    @staticmethod
    def _conversation(
        conn: Connection, sql: InboundStatements, msg: InboundMessage, contact_id: int, now: datetime
    ) -> tuple[int, bool, bool]:
        """(the conversation's id, whether it was created just now, whether the bot is collecting the
        citizen's R12 data there)."""
        where = {"channel": msg.channel, "account": msg.account, "chat_id": msg.chat_id}
        known = conn.execute(sql.conversation, where).first()
        if known is None:
            created = int(
                conn.execute(
                    sql.insert_conversation,
                    {
                        **where,
                        "contact_id": contact_id,
                        "kind": msg.kind,
                        "last_inbound_at": msg.sent_at,
                        "created_at": now,
                    },
                ).scalar_one()
            )
            return created, True, False
        conversation_id, last_inbound_at, collecting = known
        if msg.sent_at > last_inbound_at:
            conn.execute(sql.touch_conversation, {"b_id": conversation_id, "b_at": msg.sent_at})
            # A reply window opened again: what waited for the citizen to write (outbox `waiting`) goes now.
            conn.execute(
                sql.release_waiting,
                {
                    "b_channel": msg.channel,
                    "b_account": msg.account,
                    "b_chat_id": msg.chat_id,
                    "b_at": now,
                },
            )
        return int(conversation_id), False, bool(collecting)

    def _collect_answer(
        self, s: Session, msg: InboundMessage, conversation_id: int, message_id: int, target: Target
    ) -> bool:
        """The citizen answers the bot's R12 questions (data_collection.answer, given by the runtime): True
        when the message was one of the answers. Reached only while the conversation's flag is set, so the
        rest never pays for it."""
        if self.dialogue is None:
            return False
        return self.dialogue(
            s, self, conversation_id=conversation_id, message_id=message_id, msg=msg, target=target
        )

    def _merge_version(
        self,
        conn: Connection,
        sql: InboundStatements,
        known: Row[Any],
        msg: InboundMessage,
        attachments: list[dict[str, object]],
        raw_event_id: int | None,
        now: datetime,
    ) -> None:
        """Add `msg` to the versions of the message we hold, keeping the platform's order.

        The message row holds the earliest version known: the original, or an edit standing in for it
        (`stand_in_edited_at`). A version older than the stand-in (above all the original itself, which has
        no edit time) takes the row's place and the stand-in becomes a MessageVersion: the rows are
        rearranged, no word the citizen wrote is changed or lost (invariant 5)."""
        stand_in = known.stand_in_edited_at
        arrived = msg.edited_at  # None: this is the original
        if stand_in is not None and (arrived is None or arrived < stand_in):
            conn.execute(
                sql.replace_message_content,
                {
                    "b_id": known.id,
                    "b_text": msg.text,
                    "b_attachments": attachments,
                    "b_raw_event_id": raw_event_id,
                    "b_stand_in": arrived,
                },
            )
            text, kept, edited_at, version_raw = known.text, known.attachments, stand_in, known.raw_event_id
        elif arrived is None or arrived == stand_in:
            return  # the original again, or the stand-in edit again: nothing new
        else:
            text, kept, edited_at, version_raw = msg.text, attachments, arrived, raw_event_id
        version_id = conn.execute(
            sql.insert_version,
            {
                "message_id": known.id,
                "raw_event_id": version_raw,
                "text": text,
                "attachments": kept,
                "edited_at": edited_at,
                "created_at": now,
            },
        ).scalar_one_or_none()
        if version_id is None or known.appeal_id is None:
            return
        detail: dict[str, object] = {"message_id": known.id, "version_id": version_id}
        if arrived is None:
            detail["original_arrived_late"] = True
            # The summary was taken from the stand-in; it is the original's words that open the appeal.
            conn.execute(
                sql.replace_summary,
                {"b_id": known.appeal_id, "b_old": known.text[:1000], "b_new": msg.text[:1000]},
            )
        self._add_event(conn, sql, known.appeal_id, "edited", detail, now)

    def _open_appeal(
        self,
        conn: Connection,
        sql: InboundStatements,
        msg: InboundMessage,
        contact_id: int,
        contact_language: str | None,
        conversation_id: int,
        now: datetime,
    ) -> _AppealRef:
        registered_at = self.calendar.registration_time(msg.sent_at)
        number = self.next_number(conn, registered_at)
        language = (
            Language(contact_language)
            if contact_language
            else detect_language(msg.text, hint=msg.language_hint)
        )
        category = self.categories.classify(msg.text).value
        due_at = self._due_at(registered_at, category)
        appeal_id = conn.execute(
            sql.insert_appeal,
            {
                "number": number,
                "contact_id": contact_id,
                "conversation_id": conversation_id,
                "channel": msg.channel,
                "language": language.value,
                "status": AppealStatus.RECEIVED.value,
                "category": category,
                "summary": msg.text[:1000],
                "received_at": msg.sent_at,
                "registered_at": registered_at,
                "due_at": due_at,
                "original_due_at": due_at,
                "forward_due_at": self.forward_due_for(registered_at),
                "overdue": False,
                "created_at": now,
                "updated_at": now,
                "last_activity_at": now,
            },
        ).scalar_one()
        return _AppealRef(int(appeal_id), number, language.value, registered_at, due_at, category)

    def _due_at(self, registered_at: datetime, kind: str) -> datetime:
        # The term depends only on the day of registration and the kind; counting working days through the
        # holiday calendar for every appeal was a tenth of the new-appeal path.
        key = (registered_at.astimezone(self.calendar.tz).date(), kind)
        due = self._due_by_day.get(key)
        if due is None:
            due = self.calendar.due_at(registered_at, self.terms.days_for(kind))
            self._due_by_day[key] = due
        return due

    def _answer_command(
        self,
        conn: Connection,
        sql: InboundStatements,
        msg: InboundMessage,
        contact_id: int,
        contact_language: str | None,
        conversation_id: int,
        target: Target,
        message_id: int,
    ) -> bool:
        """Commands and status look-ups are answered at once and never open an appeal."""
        text = msg.text.strip()
        match = _COMMAND.match(text)
        if not match and not self._looks_like_command(text):
            return False
        language = self._language_of(conn, sql, contact_language, conversation_id, msg)
        name = match.group("name").lower() if match else "status"
        arg = (match.group("arg") or "").strip() if match else text
        if name == "start":
            reply = self.texts.render(language, "welcome")
        elif name == "lang":
            chosen = arg.lower()[:2]
            if chosen in Language._value2member_map_:
                conn.execute(sql.set_contact_language, {"b_id": contact_id, "b_language": chosen})
                language = Language(chosen)
                # An open appeal is answered in the language the citizen now asks for.
                conn.execute(
                    sql.set_open_appeals_language,
                    {"b_conversation_id": conversation_id, "b_language": chosen},
                )
                reply = self.texts.render(language, "lang_set")
            else:
                reply = self.texts.render(language, "lang_unknown")
        elif name == "status":
            reply = self._status_text(conn, contact_id, language, arg)
        else:
            return False  # an unknown command is ordinary text: the citizen may mean it
        self._enqueue(
            conn,
            sql,
            key=f"answer:{message_id}",
            target=target,
            purpose="info",
            appeal_id=None,
            text=reply,
            now=utcnow(),
        )
        return True

    def _looks_like_command(self, text: str) -> bool:
        """A command or a bare appeal number (a status look-up); unknown commands are decided later."""
        text = text.strip()
        return bool(_COMMAND.match(text) or self._number.fullmatch(text.strip(" .!?")))

    @staticmethod
    def _language_of(
        conn: Connection,
        sql: InboundStatements,
        contact_language: str | None,
        conversation_id: int,
        msg: InboundMessage,
    ) -> Language:
        if contact_language:
            return Language(contact_language)
        latest = conn.execute(sql.latest_appeal_language, {"conversation_id": conversation_id}).scalar()
        return Language(latest) if latest else language_from_hint(msg.language_hint)

    def _status_text(self, conn: Connection, contact_id: int, language: Language, arg: str) -> str:
        found = self._number.search(arg)
        query = select(Appeal).where(Appeal.contact_id == contact_id)  # rare: built when asked
        if found:
            # Only the citizen's own appeals: a number alone must not reveal someone else's case.
            row = conn.execute(query.where(Appeal.number == found.group(0).upper())).first()
            if row is None:
                return self.texts.render(language, "status_not_found", number=found.group(0).upper())
        else:
            row = conn.execute(query.order_by(col(Appeal.id).desc()).limit(1)).first()
            if row is None:
                return self.texts.render(language, "status_none")
        appeal = row._mapping
        status = self.texts.status_name(language, appeal["status"])
        if not (appeal["formal"] or appeal["channel"] in DIRECT_CHANNELS):
            # A signal (or what its triage made of it): no registration date and no legal term to give.
            number, received = appeal["number"], appeal["received_at"]
            return self.texts.render(
                language, "status_query_signal", number=number, received=received, status=status
            )
        return self.texts.render(
            language,
            "status_query",
            number=appeal["number"],
            registered=appeal["registered_at"],
            due=appeal["due_at"],
            status=status,
        )

    @staticmethod
    def _add_event(
        conn: Connection,
        sql: InboundStatements,
        appeal_id: int,
        kind: str,
        detail: dict[str, object],
        now: datetime,
    ) -> None:
        conn.execute(
            sql.insert_event,
            {"appeal_id": appeal_id, "kind": kind, "actor": "citizen", "detail": detail, "created_at": now},
        )

    @staticmethod
    def _enqueue(
        conn: Connection,
        sql: InboundStatements,
        *,
        key: str,
        target: Target,
        purpose: str,
        appeal_id: int | None,
        text: str,
        now: datetime,
    ) -> bool:
        return (
            conn.execute(
                sql.insert_outbox, _outbox_values(key, target, purpose, appeal_id, text, now)
            ).scalar_one_or_none()
            is not None
        )

    # --- staff actions -------------------------------------------------------------------------

    def appeal_by_number(self, s: Session, number: str) -> Appeal:
        appeal = s.exec(select(Appeal).where(Appeal.number == number.upper())).first()
        if appeal is None:
            raise AppealNotFound(f"appeal {number} not found")
        return appeal

    def change_status(
        self,
        s: Session,
        appeal: Appeal,
        status: str,
        *,
        actor: str,
        note: str | None = None,
        actor_id: int | None = None,
        approved: bool = False,
        notify: bool = True,
        detail: dict[str, object] | None = None,
    ) -> AppealEvent:
        """Take one step of the legal table (lifecycle.py), recorded and audited. A step the law attaches a
        notice to (registration, forwarding, extension, hearing, answer) owes that notice, exactly once
        (notices.py); any other step tells the citizen the new status in a generic message (status:<event>).
        `notify` False: the caller owes the citizen a notice of its own (triage, forwarding). `note` is the
        reason of a reasoned step, the preliminary decision of a hearing, the answer's text of an answer.
        Two steps are refused here because a status and a note cannot carry them: `extended` (extension.py)
        and a `forwarded` whose `detail` names no outside body (forwarding.py)."""
        try:
            new = AppealStatus(status)
        except ValueError:
            raise UnknownStatus(f"unknown status {status!r}; one of: {', '.join(AppealStatus)}") from None
        self._lock(s, appeal)
        if new.value == appeal.status:
            raise StatusUnchanged(f"appeal {appeal.number} is already {status}")
        step = lifecycle.check(appeal.status, new.value)  # the legal table refuses a step it does not hold
        if new is AppealStatus.ANSWERED and not approved:
            self._refuse_without_approval(appeal)
        if new is AppealStatus.EXTENDED:
            raise UseExtension(
                "an extension moves the due date by the head's reasoned decision: use the extend action"
            )
        if new is AppealStatus.FORWARDED and not (detail or {}).get("body"):
            raise UseForwarding(
                "a forwarding names the outside body the appeal goes to (R5): use the forward action "
                "(the appeal page's forwarding form, POST /api/v1/appeals/{number}/forward)"
            )
        now = utcnow()
        facts: dict[str, object] = {"from": appeal.status, "to": new.value, "note": note, **(detail or {})}
        event = self._event(s, appeal, "status", actor, facts, now)
        appeal.status = new.value
        appeal.updated_at = appeal.last_activity_at = now
        if new is AppealStatus.ANSWERED:
            appeal.answered_at = now
        s.add(appeal)
        audit.record(s, actor=actor, action="appeal.status", subject=appeal.number, detail=event.detail)
        if not notify:
            return event
        if step.notice is not None and self.hooks is not None:
            self.hooks.owe_notice(s, self, appeal, step.notice, note=note, actor_id=actor_id, now=now)
            return event
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

    def _refuse_without_approval(self, appeal: Appeal) -> None:
        if self.approval.needs_approval(formal=appeal.formal, category=appeal.category):
            raise ApprovalRequired(
                f"the answer to the formal appeal {appeal.number} goes out only after the head of its unit "
                "approves it: save it as a draft (answers.py)"
            )

    def reply(self, s: Session, appeal: Appeal, text: str, *, actor: str) -> AppealEvent:
        if not text.strip():
            raise EmptyReply("reply text is empty")
        self._refuse_without_approval(appeal)  # a formal appeal is answered through a draft
        self._lock(s, appeal)
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
        appeal.updated_at = appeal.last_activity_at = now
        s.add(appeal)
        audit.record(
            s,
            actor=actor,
            action="appeal.reply",
            subject=appeal.number,
            detail={"event": event.id, "text": text},
        )
        return event

    def assign_unit(self, s: Session, appeal: Appeal, unit_code: str, *, actor: str) -> AppealEvent:
        unit = s.exec(select(Unit).where(Unit.code == unit_code)).first()
        if unit is None:
            raise UnknownUnit(f"unknown unit {unit_code!r}")
        if appeal.concerned_unit_id is not None:
            from adaldyk_bots.corruption import hidden_from  # corruption.py calls this method

            if require_id(unit) in hidden_from(s, appeal.concerned_unit_id):
                raise Forbidden(
                    "a corruption report never goes to the unit it concerns or its chain of command"
                )
        now = utcnow()
        event = self._event(
            s, appeal, "unit", actor, {"from": appeal.unit_id, "to": unit.id, "code": unit.code}, now
        )
        passed = appeal.unit_id is not None and appeal.unit_id != unit.id
        appeal.unit_id = unit.id
        if passed:  # from one unit to another; the first assignment is not a transfer
            appeal.transfers += 1
        appeal.updated_at = appeal.last_activity_at = now
        s.add(appeal)
        audit.record(s, actor=actor, action="appeal.unit", subject=appeal.number, detail=event.detail)
        if passed and appeal.transfers > self.terms.transfers.flag_after:
            self._flag_transfers(s, appeal, unit, now)
        return event

    def too_many_transfers(self, appeal: Appeal) -> bool:
        """Passed between units more often than config/terms.toml [transfers] allows (shown as a flag)."""
        return appeal.transfers > self.terms.transfers.flag_after

    def _flag_transfers(self, s: Session, appeal: Appeal, unit: Unit, now: datetime) -> None:
        """The project office is told each time a transfer beyond the limit happens, once per count."""
        key = f"transfers:{appeal.id}:{appeal.transfers}"
        if not claim(s, key, appeal_id=appeal.id, now=now):
            return
        detail: dict[str, object] = {"transfers": appeal.transfers, "unit": unit.code}
        self._event(s, appeal, "transfers_flagged", "system", detail, now)
        audit.record(
            s, actor="system", action="appeal.transfers_flagged", subject=appeal.number, detail=detail
        )
        office = org.unit_by_code(s, org.PROJECT_OFFICE)
        if office is not None and office.id is not None:
            self.alerts.to_unit_head(
                s,
                office.id,
                key=key,
                kind="transfers",
                msgid=TRANSFERS_FLAG,
                params={"number": appeal.number, "transfers": appeal.transfers, "unit": unit.code},
                on=now.astimezone(self.calendar.tz).date(),
                now=now,
                appeal_id=appeal.id,
            )

    def mark_overdue(
        self,
        s: Session,
        *,
        now: datetime | None = None,
        then: Callable[[Session, Appeal, datetime], object] | None = None,
        batch: int = 500,
    ) -> int:
        """R7 (APPC Art. 91(2)): a missed deadline is a legal state, recorded once with its own event.

        Past due_at means overdue from that minute (the sweep runs at the start of every minute). Each
        appeal is set with a compare-and-set (`overdue` false -> true): of two workers sweeping at once,
        the second waits on the row and then changes nothing, so the event, the audit record and `then`
        (the escalation, deadlines.py) happen once."""
        now = now or utcnow()
        late = s.exec(
            select(Appeal.id, Appeal.due_at)
            .where(
                col(Appeal.status).in_(OPEN_STATUSES),
                Appeal.due_at < now,
                Appeal.overdue == False,  # noqa: E712
            )
            .order_by(col(Appeal.due_at), col(Appeal.id))
            .limit(batch)
        ).all()
        marked = 0
        for appeal_id, due_at in late:
            changed = s.execute(
                update(Appeal)
                .where(
                    col(Appeal.id) == appeal_id,
                    col(Appeal.overdue).is_(False),
                    col(Appeal.due_at) == due_at,
                )
                .values(overdue=True)
            )
            if not getattr(changed, "rowcount", 0):
                continue  # another worker marked it, or the term moved (an extension) meanwhile
            appeal = s.get(Appeal, appeal_id, populate_existing=True)
            assert appeal is not None
            marked += 1
            self._event(s, appeal, "overdue", "system", {"due_at": appeal.due_at.isoformat()}, now)
            audit.record(s, actor="system", action="appeal.overdue", subject=appeal.number)
            if then is not None:
                then(s, appeal, now)
        return marked

    @staticmethod
    def _lock(s: Session, appeal: Appeal) -> None:
        """Take the appeal's row lock and read it again before a staff action decides anything.

        A citizen's message being processed at the same moment holds the same lock (inbound.py,
        open_appeal_for_update): either it joined the appeal first, and is in the history before this
        action, or it waits and then finds the appeal answered and opens a new one (issue 6 item 7)."""
        s.execute(
            select(Appeal)
            .where(col(Appeal.id) == require_id(appeal))
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    # --- shared --------------------------------------------------------------------------------

    def _target(self, s: Session, appeal: Appeal) -> Target:
        conversation = s.get(Conversation, appeal.conversation_id)
        assert conversation is not None
        return Target.of(conversation)

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
        s: Session,
        *,
        key: str,
        target: Target,
        purpose: str,
        appeal_id: int | None,
        text: str,
        now: datetime,
        choices: Sequence[Choice] = (),
    ) -> bool:
        """Owe the citizen a message (with `choices` to pick from, e.g. buttons). The UNIQUE key makes a
        second enqueue of the same thing a no-op."""
        if target.channel in staff_work.UNREACHABLE_CHANNELS and appeal_id is not None:
            # No connector sends to a phone or reception conversation: a reply or status notice there
            # would wait in the outbox forever. A person owes the citizen these words instead.
            return staff_work.add_task(
                s, key=f"call:{key}", appeal_id=appeal_id, kind="call_citizen", text=text, now=now
            )
        values = _outbox_values(key, target, purpose, appeal_id, text, now)
        if choices:
            values["choices"] = [{"id": c.id, "label": c.label} for c in choices]
        return insert_ignoring_conflict(s, OutboxItem, values) is not None
