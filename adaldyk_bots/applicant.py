"""What a formal appeal must carry about its author (R12, APPC Art. 63), checked the same way whether the
citizen answers the bot (data_collection.py) or a moderator types it on the appeal page (triage.py).

Each check returns the cleaned value or a stable reason code; the bot and the page turn the code into words
in the reader's language (`collect_<field>_<reason>` templates, the page's error messages).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from adaldyk_bots.iin import check_iin

__all__ = [
    "ADDRESS_MAX",
    "NAME_MAX",
    "Applicant",
    "Checked",
    "check_address",
    "check_iin_text",
    "check_name",
    "consent_answer",
    "is_cancel",
]

NAME_MAX = 300  # appeal.applicant_name
ADDRESS_MAX = 500
ADDRESS_MIN = 10  # "Astana" alone is not a postal address: a street and a house are wanted

# Letters of any script, with the hyphen and apostrophe of double names (Мұхаммед-Әли, O'Neil).
_NAME_WORD = re.compile(r"^[^\W\d_](?:[^\W\d_]|[-'’])*$")
_PUNCTUATION = " \t\r\n.,!?;:«»\"'()"

# Law 94-V asks for consent; these are the words people answer with (kk, ru, en), compared casefolded
# without the punctuation around them. Anything else is asked again, never taken as either.
YES = frozenset(
    {"иә", "ия", "йә", "әрине", "келісемін", "келісем", "да", "согласен", "согласна", "конечно", "yes",
     "agree", "i agree"}
)  # fmt: skip
NO = frozenset(
    {"жоқ", "жок", "келіспеймін", "нет", "не согласен", "не согласна", "no", "disagree"}
)  # fmt: skip
# Stop the dialogue at any question; the signal stays a signal.
CANCEL = frozenset(
    {"/cancel", "cancel", "stop", "отмена", "отменить", "стоп", "бас тарту", "болдырмау", "тоқтату", "тоқта"}
)  # fmt: skip


@dataclass(frozen=True)
class Checked:
    value: str = ""
    reason: str | None = None  # None: accepted

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Applicant:
    """The R12 data of a formal appeal, each part already checked."""

    name: str
    iin: str
    address: str


def _words(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().strip(_PUNCTUATION).split())


def consent_answer(text: str) -> bool | None:
    """True for yes, False for no, None when the answer is neither."""
    word = _words(text)
    if word in YES:
        return True
    if word in NO:
        return False
    return None


def is_cancel(text: str) -> bool:
    return _words(text) in CANCEL


def check_name(text: str) -> Checked:
    """Surname, name and patronymic (where the person has one): two to five words of letters."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name:
        return Checked(reason="empty")
    if len(name) > NAME_MAX:
        return Checked(reason="long")
    words = name.split(" ")
    if not all(_NAME_WORD.match(w) for w in words):
        return Checked(reason="letters")
    if len(words) < 2:
        return Checked(reason="short")  # a surname alone, or a first name alone
    if len(words) > 5:
        return Checked(reason="long")
    return Checked(name)


def check_address(text: str) -> Checked:
    address = " ".join(unicodedata.normalize("NFC", text).split())
    if len(address) < ADDRESS_MIN or len(address.split(" ")) < 2:
        return Checked(reason="short")
    if len(address) > ADDRESS_MAX:
        return Checked(reason="long")
    return Checked(address)


def check_iin_text(text: str) -> Checked:
    result = check_iin(text)
    return Checked(result.iin) if result.ok else Checked(reason=result.reason)
