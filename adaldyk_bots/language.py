"""Which of the office's languages (kk, ru, en) a citizen wrote in."""

from __future__ import annotations

import re

from adaldyk_bots.domain import Language

# Letters of the Kazakh Cyrillic alphabet that Russian does not have: one of them is a strong signal.
_KAZAKH_LETTERS = set("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
# Frequent Kazakh words written only with letters shared with Russian.
_KAZAKH_WORDS = {"мен", "сен", "керек", "туралы", "бойынша", "неге", "кезде", "жер", "ауыл", "мекенжай"}
_WORD = re.compile(r"\w+", re.UNICODE)


def detect_language(text: str, *, hint: str | None = None) -> Language:
    """Kazakh if Kazakh-specific letters or words appear, Russian for other Cyrillic, English for Latin.

    Short texts without letters fall back to the client's interface language, then to Kazakh, the
    state language (Law on Languages, Art. 11)."""
    letters = [ch for ch in text if ch.isalpha()]
    if any(ch in _KAZAKH_LETTERS for ch in letters):
        return Language.KK
    cyrillic = sum(1 for ch in letters if "\u0400" <= ch <= "\u04ff")
    latin = sum(1 for ch in letters if ch.isascii())
    if cyrillic and cyrillic >= latin:
        words = {w.lower() for w in _WORD.findall(text)}
        return Language.KK if words & _KAZAKH_WORDS else Language.RU
    if latin:
        return Language.EN
    return language_from_hint(hint)


def language_from_hint(hint: str | None) -> Language:
    if hint:
        code = hint.split("-")[0].lower()
        if code in Language._value2member_map_:
            return Language(code)
    return Language.KK
