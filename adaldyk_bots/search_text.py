"""The one text normalisation behind full-text search, applied in Python to documents and queries alike.

Neither database can be trusted to fold Cyrillic the same way: SQLite's LIKE and lower() fold ASCII
only, PostgreSQL's lower() and to_tsvector follow the database's LC_CTYPE (a "C" database folds
nothing beyond ASCII), and FTS5's unicode61 strips diacritics from Latin letters only. So the text is
reduced here to lower-case tokens of letters or of digits separated by single spaces, and each
database merely splits on the spaces: SQLite FTS5 (unicode61) and PostgreSQL to_tsvector('simple', …)
then see the same tokens and find the same appeals.

Decisions (bench/README.md has the figures):
- case: `str.lower()` (not casefold, whose ß → ss PostgreSQL's 'simple' dictionary would not repeat);
- diacritics are removed (é → e, ё → е) except the breve of й, which is a letter of its own in Russian
  and Kazakh; the Kazakh letters ә ғ қ ң ө ұ ү һ і have no decomposition and stay as they are, so
  "қала" finds "ҚАЛА" but not "кала";
- a run of letters and a run of digits are separate tokens ("ADL-2026-000123" → adl 2026 000123,
  "№123а" → 123 а), so a bare number is found whatever surrounds it;
- every query token of PREFIX_MIN letters or more matches as a prefix ("экол" finds "экология",
  "мектеп" finds "мектепке"): Russian and above all Kazakh (agglutinative) inflect the word's end and
  neither database has a Kazakh stemmer; shorter tokens match whole words only;
- tokens longer than MAX_TOKEN characters are dropped on both sides (PostgreSQL refuses words over
  2047 bytes in a tsvector; nobody searches for such a word).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_QUERY_TOKENS", "MAX_TOKEN", "PREFIX_MIN", "normalize", "query_tokens"]

PREFIX_MIN = 3
MAX_TOKEN = 64
MAX_QUERY_TOKENS = 8

_TOKEN = re.compile(r"\d+|[^\W\d_]+")
# Combining marks left after NFD (Mn): the accents that are removed.
_MARKS = re.compile(r"[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SHORT_I = "\u0438\u0306"  # и + combining breve: й after NFD


def _tokens(text: str) -> list[str]:
    if not text:
        return []
    folded = text.lower()
    if not folded.isascii():
        folded = unicodedata.normalize("NFKD", folded).replace(_SHORT_I, "й")
        folded = unicodedata.normalize("NFC", _MARKS.sub("", folded))
    out = []
    for token in _TOKEN.findall(folded):
        if not (token.isdecimal() or token.isalpha()):
            # Other numerics (², ½, Roman numerals) are neither letters nor digits to both databases'
            # parsers: keep only the letters, as the databases would split there.
            token = "".join(c for c in token if c.isalpha())
            if not token:
                continue
        if len(token) <= MAX_TOKEN:
            out.append(token)
    return out


def normalize(text: str) -> str:
    """The searchable form of `text`: its tokens, space-separated."""
    return " ".join(_tokens(text))


def query_tokens(query: str) -> list[str]:
    """The distinct tokens of a search query, in order, at most MAX_QUERY_TOKENS of them."""
    seen: dict[str, None] = {}
    for token in _tokens(query):
        seen.setdefault(token, None)
    return list(seen)[:MAX_QUERY_TOKENS]
