"""Notices to staff as the deadline engine writes them: in the recipient's language, once (a sweep mark
claims each thing done), and copied by e-mail when the person has an address and e-mail is on.

    claim(s, key, appeal_id, now) -> bool     True for the one worker that does the thing; the others
                                               wait for it on the UNIQUE key and then get False
    Alerts.to_unit_head(...)                   to whoever answers for a unit that day (staff_work)
    Alerts.to_user(...)                        to one person (the daily digest)

Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session

from adaldyk_bots import org, staff_work
from adaldyk_bots.i18n import DEFAULT_LANGUAGE, LANGUAGES, gettext
from adaldyk_bots.storage.db import insert_ignoring_conflict
from adaldyk_bots.storage.models import DeadlineMark, OutboxItem, StaffUser

__all__ = ["EMAIL_CHANNEL", "Alerts", "claim", "render_for"]

EMAIL_CHANNEL = "email"


def claim(s: Session, key: str, *, appeal_id: int | None, now: datetime) -> bool:
    """Take the mark `key`: True once, for the transaction that inserted it."""
    values = {"key": key[:200], "appeal_id": appeal_id, "created_at": now}
    return insert_ignoring_conflict(s, DeadlineMark, values) is not None


def render_for(language: str | None, msgid: str, params: Mapping[str, object]) -> str:
    """`msgid` (a %(name)s template) translated into the person's workspace language."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return gettext(lang, msgid) % dict(params)


@dataclass(frozen=True)
class Alerts:
    """`mail_account`: the running e-mail connector's account (None: e-mail is off, the page is enough)."""

    mail_account: str | None = None

    def to_unit_head(
        self,
        s: Session,
        unit_id: int,
        *,
        key: str,
        kind: str,
        msgid: str,
        params: Mapping[str, object],
        on: date,
        now: datetime,
        appeal_id: int | None = None,
        translate: Mapping[str, str] | None = None,
    ) -> org.Responsible | None:
        """The notice goes to whoever answers for `unit_id` on `on`, in the reader's language, through
        staff_work (which owns who may be told what, and where a notice goes when that person has no
        account). `translate`: params that are msgids themselves. Returns who answers for the unit."""

        def words(language: str | None) -> str:
            values = {**params, **{k: render_for(language, v, {}) for k, v in (translate or {}).items()}}
            return render_for(language, msgid, values)

        route = staff_work.notify_acting_head(
            s, unit_id, key=key, kind=kind, text=words, on=on, now=now, appeal_id=appeal_id
        )
        for told in route.told:
            self._mail(s, told.user, key=told.key, text=told.text, now=now)
        return route.responsible

    def to_user(self, s: Session, user: StaffUser, *, key: str, kind: str, text: str, now: datetime) -> bool:
        added = staff_work.notify_staff(s, key=key, kind=kind, text=text, now=now, user_id=user.id)
        if added:
            self._mail(s, user, key=key, text=text, now=now)
        return added

    def _mail(self, s: Session, user: StaffUser | None, *, key: str, text: str, now: datetime) -> None:
        if self.mail_account is None or user is None or not (user.email or "").strip():
            return
        values: dict[str, object] = {
            "key": f"staffmail:{key}"[:200],
            "channel": EMAIL_CHANNEL,
            "account": self.mail_account,
            "chat_id": (user.email or "").strip().lower(),
            "target_kind": "message",
            "reply_to_key": None,
            "appeal_id": None,  # not part of the citizen's thread on the appeal page
            "purpose": "staff_notice",
            "text": text,
            "state": "pending",
            "attempts": 0,
            "parts_sent": 0,
            "platform_message_ids": [],
            "next_attempt_at": now,
            "created_at": now,
        }
        insert_ignoring_conflict(s, OutboxItem, values)
