"""The citizen's own look-up of a web-form appeal: a secret code given once with the number, kept only as
a hash, and what the look-up shows — the progress and nothing else (no text, no names, no unit).

A wrong number and a wrong code are the same `None`: the look-up is no oracle for which numbers exist.
The code has ~60 random bits (12 characters of a 32-letter alphabet without look-alikes); with the
per-address rate limit of /public/status, guessing one is out of reach, so a plain SHA-256 suffices.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.storage.models import Appeal, PublicReceipt

__all__ = ["CODE_ALPHABET", "StatusView", "code_digest", "format_code", "look_up", "new_code"]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a phone screen, typed back
CODE_LENGTH = 12
_ANSWERED = {AppealStatus.ANSWERED, AppealStatus.CLOSED}
_NOBODY = hashlib.sha256(b"no such receipt").hexdigest()


@dataclass(frozen=True)
class StatusView:
    number: str
    status: str
    registered_at: datetime | None
    due_at: datetime | None
    answered: bool


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """ABCD-EFGH-JKMN: three groups are easier to copy by hand than twelve letters."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_code(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


def code_digest(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


def look_up(s: Session, number: str, code: str) -> StatusView | None:
    """The progress of web-form appeal `number` when `code` is its code; None otherwise (either wrong)."""
    found = s.exec(
        select(Appeal, PublicReceipt)
        .join(PublicReceipt, col(PublicReceipt.appeal_id) == Appeal.id)
        .where(Appeal.number == number.strip().upper())
    ).first()
    stored = found[1].code_sha256 if found is not None else _NOBODY
    # Compared even when nothing was found, so both refusals take the same work.
    matches = hmac.compare_digest(stored.encode(), code_digest(code).encode())
    if found is None or not matches or not normalize_code(code):
        return None
    appeal = found[0]
    return StatusView(
        number=appeal.number,
        status=appeal.status,
        registered_at=appeal.registered_at,
        due_at=appeal.due_at,
        answered=appeal.status in _ANSWERED,
    )
