"""The words of the notices the law owes a citizen (config/templates/<lang>.toml, notice_* keys), with
the data each one must carry: the R2 receipt (number, date and time, who accepted it, the due date, how
to ask about progress), the forwarding (R5: to whom, in the citizen's language, and why; forwarding.py
alone sends it, for a signal and a registered appeal alike), the hearing (R6: the preliminary decision and
the 2 working days to object) and the answer (R10). The extension's (R4) is extension.py's, with the move.

Pure rendering: what to send and when is notices.py (exactly once) and workflow.change_status.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal, Conversation, StaffUser, Unit
from adaldyk_bots.texts import Texts

__all__ = ["accepted_by", "answer", "forwarding", "hearing", "registration", "surname_initials"]

# Conversations whose citizen asks about progress on the web page (number and access code), not in a chat.
_WEB_CHANNELS = frozenset({"web", "phone", "reception", "email"})


def surname_initials(full_name: str) -> str:
    """R2 asks for "surname and initials": «Сейтқали Айгерім Болатқызы» → «Сейтқали А. Б.» (the Kazakh
    and Russian order puts the surname first)."""
    words = full_name.split()
    if len(words) < 2:
        return full_name.strip()
    return " ".join([words[0], *(f"{w[0]}." for w in words[1:])])


def accepted_by(s: Session, texts: Texts, language: str, user_id: int | None) -> str:
    """Who accepted the appeal, as R2 asks: surname, initials and position. A unit's head has the position
    org.toml gives; anyone else in the workspace is a moderator of the project office; an appeal registered
    with no person (automatic) names the project office itself."""
    user = s.get(StaffUser, user_id) if user_id is not None else None
    if user is None:
        return texts.render(language, "accepted_by_office")
    name = surname_initials(user.full_name or user.username)
    position = s.exec(select(Unit.head_position).where(Unit.head_user_id == user.id)).first()
    return f"{name}, {position or texts.render(language, 'position_moderator')}"


def _moment(texts: Texts, value: datetime) -> str:
    return value.astimezone(texts.tz).strftime("%d.%m.%Y %H:%M")


def registration(
    s: Session,
    texts: Texts,
    appeal: Appeal,
    *,
    accepted_by_id: int | None,
    status_url: str = "/public/status",
) -> str:
    conversation = s.get(Conversation, appeal.conversation_id)
    channel = conversation.channel if conversation is not None else appeal.channel
    how = (
        texts.render(appeal.language, "how_to_ask_web", status_url=status_url)
        if channel in _WEB_CHANNELS
        else texts.render(appeal.language, "how_to_ask_bot")
    )
    return texts.render(
        appeal.language,
        "notice_registration",
        number=appeal.number,
        registered_time=_moment(texts, appeal.registered_at),
        accepted_by=accepted_by(s, texts, appeal.language, accepted_by_id),
        due=appeal.due_at,
        how_to_ask=how,
    )


def forwarding(texts: Texts, appeal: Appeal, *, body: str, reason: str) -> str:
    return texts.render(appeal.language, "notice_forwarding", number=appeal.number, body=body, reason=reason)


def hearing(texts: Texts, appeal: Appeal, *, decision: str, object_by: datetime) -> str:
    return texts.render(
        appeal.language, "notice_hearing", number=appeal.number, decision=decision, object_by=object_by
    )


def answer(texts: Texts, appeal: Appeal, *, text: str) -> str:
    return texts.render(appeal.language, "notice_answer", number=appeal.number, text=text)
