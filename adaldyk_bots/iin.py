"""The Kazakh individual identification number (ИИН / ЖСН): 12 digits, a birth date, a check digit.

Layout: YYMMDD, then the century-and-sex digit (1–6: 1800s/1900s/2000s, odd = male), four serial digits,
and the check digit: the digits weighted 1…11, sum mod 11; if that is 10, weighted 3…11,1,2 instead; a
result of 10 again means the number is never issued. Refusals carry a stable reason code that pages and
the bot turn into words in the citizen's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["IinCheck", "check_iin", "normalize_iin"]

_FIRST = tuple(range(1, 12))
_SECOND = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_CENTURY = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


@dataclass(frozen=True)
class IinCheck:
    ok: bool
    reason: str | None = None  # length | digits | date | century | checksum
    iin: str = ""


def normalize_iin(value: str) -> str:
    """What a person types, without the spaces and dashes they group it with."""
    return "".join(ch for ch in value if ch not in " -\u00a0\t")


def check_digit(digits: str) -> int | None:
    """The 12th digit for the first 11, or None when the number cannot be issued."""
    values = [int(ch) for ch in digits[:11]]
    total = sum(v * w for v, w in zip(values, _FIRST, strict=True)) % 11
    if total == 10:
        total = sum(v * w for v, w in zip(values, _SECOND, strict=True)) % 11
        if total == 10:
            return None
    return total


def check_iin(value: str) -> IinCheck:
    iin = normalize_iin(value)
    if not iin.isascii() or not iin.isdigit():
        return IinCheck(False, "digits", iin)
    if len(iin) != 12:
        return IinCheck(False, "length", iin)
    century = _CENTURY.get(int(iin[6]))
    if century is None:
        return IinCheck(False, "century", iin)
    try:
        date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError:
        return IinCheck(False, "date", iin)
    if check_digit(iin) != int(iin[11]):
        return IinCheck(False, "checksum", iin)
    return IinCheck(True, None, iin)
