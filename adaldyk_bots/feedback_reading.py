"""Reading the citizen's answer to "was it solved?" (feedback.py) on the inbound path: a button's id,
or words in Kazakh, Russian or English. Pure functions and one query, so the workflow can use them
without importing what it is used by."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlmodel import col, select

from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.storage.models import Appeal, OutboxItem

__all__ = ["NO", "PURPOSE", "YES", "FeedbackAnswer", "awaiting", "recognise"]

PURPOSE = "feedback"  # the outbox purpose of the question
YES, NO = "yes", "no"

# Typed answers, lower-cased, punctuation stripped; "1"/"2" answer the numbered lines (choices_as_text).
_WORDS = {
    YES: {"1", "+", "иә", "ия", "иа", "йә", "шешілді", "иә шешілді", "да", "решено", "решена", "да решено"}
    | {"да решена", "yes", "solved", "yes solved"},
    NO: {"2", "-", "жоқ", "жок", "шешілмеді", "жоқ шешілмеді", "нет", "не решено", "не решена"}
    | {"нет не решено", "нет не решена", "no", "not solved", "no not solved"},
}
_NORMAL = re.compile(r"[\s.,;:!?«»\"'()]+")
_CHOICE = re.compile(r"^feedback:(?P<appeal>\d+):(?P<answer>yes|no)$")


@dataclass(frozen=True)
class FeedbackAnswer:
    answer: str  # yes | no
    appeal_id: int | None  # from a button press; None for words (the conversation's waiting appeal)


def _normal(text: str) -> str:
    return _NORMAL.sub(" ", text.lower().replace("ё", "е")).strip(" ,")


def recognise(text: str, choice: str | None) -> FeedbackAnswer | None:
    """A button's id, or words that mean yes or no in Kazakh, Russian or English; None otherwise."""
    if choice is not None:
        found = _CHOICE.match(choice)
        return FeedbackAnswer(found["answer"], int(found["appeal"])) if found else None
    if len(text) > 40:
        return None
    words = _normal(text)
    for answer, known in _WORDS.items():
        if words in known:
            return FeedbackAnswer(answer, None)
    return None


def awaiting(conn: Connection, conversation_id: int, said: FeedbackAnswer) -> int | None:
    """The appeal of this conversation that waits for the citizen's word (answered, asked, not yet told),
    or None. A button names its appeal; it must still be this conversation's (a forged id is ignored)."""
    query = select(Appeal.id).where(
        Appeal.conversation_id == conversation_id,
        Appeal.status == AppealStatus.ANSWERED.value,
        col(Appeal.resolved).is_(None),
        select(OutboxItem.id)
        .where(OutboxItem.appeal_id == Appeal.id, OutboxItem.purpose == PURPOSE)
        .exists(),
    )
    if said.appeal_id is not None:
        query = query.where(Appeal.id == said.appeal_id)
    found = conn.execute(query.order_by(col(Appeal.id).desc()).limit(1)).scalar()
    return int(found) if found is not None else None
