"""Routing suggestions: which unit (or outside body) an appeal's text points to, for the moderator to
confirm with one click. Pure and fast: it runs on every render of the appeal page.

The text and every stem of config/org.toml go through the search normalisation (search_text.py: lower
case, no diacritics, Kazakh letters kept), and a stem matches the start of a word ("свалк" finds
«свалки», «қоқыс» finds «қоқысты»); a stem of several words matches consecutive words; a stem written
with a final "." is a whole word ("лес." finds «лес», not «лестница»). Where stems
overlap, the longest wins ("вывоз мусора" is the akimat's, not a dump for the ecology department;
"алматы облысы" is the oblast, not the city).

Scores (higher first):
    3 per distinct stem of the unit's own keywords (or of the outside body's);
    3 per distinct stem a territorial unit takes from its parent (it has none of its own), and only
      when the text names one of its regions;
    +2 when the text names one of the unit's regions.
So a department whose region is named always comes above its committee for the same words (a
Karaganda river dump → cerc_karaganda, then cerc), and without a region only the committee is named.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from adaldyk_bots.org_config import OrgConfig
from adaldyk_bots.search_text import normalize

__all__ = ["MAX_TEXT", "Router", "Suggestion", "suggest"]

MAX_TEXT = 20_000  # characters of the appeal read for suggestions: the start says what it is about
OWN, INHERITED, REGION = 3, 3, 2


@dataclass(frozen=True)
class Suggestion:
    kind: Literal["unit", "outside"]
    code: str
    name_ru: str
    name_kk: str
    score: int
    words: tuple[str, ...]  # the topic stems found in the text
    regions: tuple[str, ...] = ()  # the region stems found that this unit covers

    def name(self, lang: str) -> str:
        return self.name_kk if lang == "kk" else self.name_ru


@dataclass(frozen=True)
class _Stem:
    owner: str  # a unit code, "outside:<code>" or "region:<code>"
    text: str  # as written in the file
    tokens: tuple[str, ...]
    whole: bool = False  # written with a final "." ("лес."): the last word must end there

    def fits(self, words: list[str], start: int) -> bool:
        end = start + len(self.tokens)
        if end > len(words):
            return False
        if not all(words[start + k].startswith(t) for k, t in enumerate(self.tokens)):
            return False
        return not self.whole or words[end - 1] == self.tokens[-1]


@dataclass
class _Index:
    """Stems by their first token, so each word of the text costs a few dictionary look-ups."""

    by_first: dict[str, list[_Stem]] = field(default_factory=dict)
    longest_first: int = 0

    def add(self, owner: str, stem: str) -> None:
        tokens = tuple(normalize(stem).split())
        if not tokens:
            return
        whole = stem.rstrip().endswith(".")
        self.by_first.setdefault(tokens[0], []).append(_Stem(owner, stem.rstrip(". "), tokens, whole))
        self.longest_first = max(self.longest_first, len(tokens[0]))

    def matches(self, words: list[str]) -> list[tuple[int, int, _Stem]]:
        """(start, end, stem) of every match, then only the longest where matches overlap."""
        found: list[tuple[int, int, _Stem]] = []
        starting: dict[str, list[_Stem]] = {}  # a long text repeats its words: look each up once
        for i, word in enumerate(words):
            stems = starting.get(word)
            if stems is None:
                stems = starting[word] = [
                    stem
                    for length in range(1, min(len(word), self.longest_first) + 1)
                    for stem in self.by_first.get(word[:length], ())
                ]
            found.extend((i, i + len(stem.tokens), stem) for stem in stems if stem.fits(words, i))
        return _longest(found, len(words))


def _longest(found: list[tuple[int, int, _Stem]], count: int) -> list[tuple[int, int, _Stem]]:
    """Drop a match overlapped by a strictly longer one (in words, then in letters); equal ones stay."""

    def size(m: tuple[int, int, _Stem]) -> tuple[int, int]:
        return (m[1] - m[0], sum(len(t) for t in m[2].tokens))

    best: list[tuple[int, int]] = [(0, 0)] * count  # the size of the longest match kept over each word
    kept: list[tuple[int, int, _Stem]] = []
    for match in sorted(found, key=size, reverse=True):
        here = size(match)
        if all(best[i] <= here for i in range(match[0], match[1])):
            kept.append(match)
            for i in range(match[0], match[1]):
                best[i] = max(best[i], here)
    return kept


class Router:
    """The suggestion rules of one org.toml, compiled once (build it at start-up, call it per page)."""

    def __init__(self, config: OrgConfig) -> None:
        self.config = config
        self._topics = _Index()
        self._regions = _Index()
        for region in config.regions:
            for stem in region.stems:
                self._regions.add(region.code, stem)
        for unit in config.units:
            for stem in unit.keywords:
                self._topics.add(unit.code, stem)
        for body in config.outside_bodies:
            for stem in body.keywords:
                self._topics.add("outside:" + body.code, stem)
        by_code = {u.code: u for u in config.units}
        # A territorial unit without keywords of its own takes those of the nearest unit above with some.
        self._inherits: dict[str, str] = {}
        for unit in config.units:
            if unit.keywords or not unit.regions:
                continue
            parent = by_code.get(unit.parent or "")
            seen: set[str] = set()
            while parent is not None and not parent.keywords and parent.code not in seen:
                seen.add(parent.code)
                parent = by_code.get(parent.parent or "")
            if parent is not None and parent.keywords:
                self._inherits[unit.code] = parent.code

    def suggest(self, text: str, *, limit: int = 5, exclude: Collection[str] = ()) -> list[Suggestion]:
        """The best units and outside bodies for `text`, best first; `exclude`: codes not to suggest
        (the appeal's present unit)."""
        words = normalize(text[:MAX_TEXT]).split()
        if not words:
            return []
        topics: dict[str, dict[str, None]] = {}
        for _start, _end, stem in self._topics.matches(words):
            topics.setdefault(stem.owner, {})[stem.text] = None
        named: dict[str, dict[str, None]] = {}
        for _start, _end, stem in self._regions.matches(words):
            named.setdefault(stem.owner, {})[stem.text] = None
        out: list[Suggestion] = []
        for unit in self.config.units:
            if unit.code in exclude:
                continue
            own = tuple(topics.get(unit.code, {}))
            inherited = tuple(topics.get(self._inherits.get(unit.code, ""), {})) if not own else ()
            region_words = tuple(w for r in unit.regions for w in named.get(r, {}))
            if own:
                score = OWN * len(own) + (REGION if region_words else 0)
            elif inherited and region_words:
                score = INHERITED * len(inherited) + REGION
            else:
                continue
            out.append(
                Suggestion(
                    "unit", unit.code, unit.name_ru, unit.name_kk, score, own or inherited, region_words
                )
            )
        for body in self.config.outside_bodies:
            own = tuple(topics.get("outside:" + body.code, {}))
            if own and body.code not in exclude:
                out.append(Suggestion("outside", body.code, body.name_ru, body.name_kk, OWN * len(own), own))
        out.sort(key=lambda g: (-g.score, g.kind != "unit", g.code))
        return out[:limit]

    def regions_named(self, text: str) -> list[str]:
        """The region codes the text names (for display and tests), in the order of the file."""
        words = normalize(text[:MAX_TEXT]).split()
        named = {stem.owner for _s, _e, stem in self._regions.matches(words)}
        return [r.code for r in self.config.regions if r.code in named]


def suggest(
    config: OrgConfig | Router, text: str, *, limit: int = 5, exclude: Iterable[str] = ()
) -> list[Suggestion]:
    """Suggestions for `text` from an org config (compiled on the spot) or a compiled Router."""
    router = config if isinstance(config, Router) else Router(config)
    return router.suggest(text, limit=limit, exclude=frozenset(exclude))
