"""Split a long text into parts that fit a channel's limit, at the most natural boundary available."""

from __future__ import annotations

from collections.abc import Callable

_BOUNDARIES = ("\n\n", "\n", ". ", " ")


def utf16_units(text: str) -> int:
    """Length as Telegram counts it (and a safe count for VK): UTF-16 code units, an emoji outside the
    BMP counting twice; never fewer than characters."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Parts of at most `limit` (as `measure` counts: characters, UTF-16 units or bytes), joined they
    give the text back up to the whitespace at the cuts. Breaks at a paragraph, line, sentence or word
    when one is in the second half of the part, else mid-word."""
    if measure(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while measure(rest) > limit:
        cut = _longest_prefix(rest, limit, measure)
        head = rest[:cut]
        for boundary in _BOUNDARIES:
            at = head.rfind(boundary)
            if at >= cut // 2:
                cut = at + len(boundary)
                break
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _longest_prefix(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """Largest n with measure(text[:n]) <= limit (binary search, since measure may not be len)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return low
