"""Which of the office's languages (kk, ru, en) a citizen wrote in.

The citizen's own words decide, never the client's interface language: links, e-mail addresses,
mentions, appeal numbers, digits and emoji are set aside first, and only a text with no letters left
falls back to the hint (then to Kazakh). Then the script most words are written in picks the branch:

* Cyrillic: Kazakh or Russian, decided by lingua (its Kazakh and Russian models only, loaded on first
  use). Capitalised words with Kazakh-only letters are names of people and places (Қарағанды, Нұрлан)
  and are left out while other words remain, so "В Қарағанды дым" is Russian. (Lingua's per-span
  detection was tried for mixed sentences and was worse on short texts: see bench/README.md.)
* Latin: Kazakh in the Latin alphabet (2021: ä ğ ı ñ ö ū ü ş, q; or plain ASCII) or English. No
  maintained detector knows Kazakh in Latin letters, so a small explicit rule weighs words that look
  Kazakh (its letters or a q not before u, less in a capitalised name; a frequent Kazakh word or stem)
  against frequent English words.

`bench/language_bench.py` measures this against the labelled set in `bench/data/`."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from adaldyk_bots.domain import Language

if TYPE_CHECKING:
    from lingua import LanguageDetector

# Not the citizen's words: whitespace-separated tokens that are links (with or without a scheme),
# e-mail addresses, @mentions or appeal numbers (PREFIX-2026-000123, the prefix is a setting of 1-8
# capitals). Matched at the token's start only, so a long token costs linear time, never quadratic.
_NOT_A_WORD = re.compile(
    r"(?:https?://|www\.)"
    r"|[\w-]+(?:\.[\w-]+)*\.(?:kz|ru|com|org|net|gl|be|me|io|info|gov|ly|su)(?:[/?#:]|$)"
    r"|[\w.+-]+@[\w-]+\.[\w.-]+"
    r"|@\w"
    r"|[A-Za-z]{1,8}-\d{4}-\d+\b",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"\S+")
_LINK_INSIDE = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)  # "видео:https://…" has no space
_EDGE_PUNCTUATION = "()[]{}<>«»\"'.,;:!?"
# Enough of a text to know its language: e-mails and long complaints are not read to the end.
_MAX_CHARS = 4_000
_MAX_WORDS = 200
_Q_NOT_U = re.compile(r"q(?!u)")
# Runs of letters, with inner hyphens and apostrophes (Нұр-Сұлтан, бала-шаға, don't).
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")

# A character of the Cyrillic block; an ASCII one or one of Latin-1 Supplement's letters to Latin Extended-B.
# Searched in C: a generator over the characters was a tenth of the language's share of a new appeal.
_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_LATIN_LETTER = re.compile("[\x00-\x7f\u00c0-\u024f]")
# Letters of the Kazakh Cyrillic alphabet that Russian does not have.
_KAZAKH_CYRILLIC = frozenset("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
# Letters of the Kazakh Latin alphabets (2021, and the 2018 acute forms) that English does not use.
_KAZAKH_LATIN = frozenset("äğıñöūüşçİÄĞÑÖŪÜŞÇáǵńóúýśÁǴŃÓÚÝŚ")

# One-word replies lingua cannot judge alone ("да" is also a Kazakh particle).
_REPLIES = {
    "да": Language.RU,
    "нет": Language.RU,
    "ок": Language.RU,
    "спасибо": Language.RU,
    "хорошо": Language.RU,
    "ладно": Language.RU,
    "иә": Language.KK,
    "ия": Language.KK,
    "жоқ": Language.KK,
    "жок": Language.KK,
    "рахмет": Language.KK,
    "жарайды": Language.KK,
    "сәлем": Language.KK,
    "салем": Language.KK,
}

# Frequent Kazakh words and stems of citizens' messages, in Cyrillic; matched against Latin words after
# both are folded to one ASCII spelling (_fold). A stem of four or more letters also matches longer words.
_KAZAKH_VOCABULARY = """
мен сен ол біз сіз сіздер олар және бірақ ма ме ба бе па пе ғой ғана емес жоқ бар иә ия керек қажет
үшін туралы бойынша қашан қайда неге неліктен қалай қандай кім не осы сол бұл мына тағы әлі өте көп
тез бүгін кеше ертең түнде күндіз рахмет сәлем сәлеметсіз қайырлы күн кеш жауап өтініш шағым ұсыныс
сұрақ мәселе жағдай қоқыс түтін ауа су өзен көл орман ағаш жер ауыл қала көше аула зауыт құдық мал
балық бала үй жол жаңа ескі лас жатыр бол кет кел кес төг шығ жаз жібер күте көр көмек тексер рұқсат
ластан өрт жақ ақша пара жинайт жина ашу жаман жақсы дұрыс жарайды түсін мекенжай алғыс ұмыт біл
сұрай сұра хабар тірке қабылда мерзім өт бізде біздің сіздің менің маған сізге бізге қоршаған
ортаны қорға аудан облыс әкім әкімдік тұр тұрғын салып отыр отырмын
"""

_FOLD = str.maketrans(
    {
        # Kazakh Cyrillic to the plain Latin spelling most people type.
        "а": "a", "ә": "a", "б": "b", "в": "v", "г": "g", "ғ": "g", "д": "d", "е": "e", "ё": "e",
        "ж": "j", "з": "z", "и": "i", "й": "i", "к": "k", "қ": "k", "л": "l", "м": "m", "н": "n",
        "ң": "n", "о": "o", "ө": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ұ": "u",
        "ү": "u", "ф": "f", "х": "h", "һ": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sh",
        "ъ": "", "ы": "i", "і": "i", "ь": "", "э": "e", "ю": "iu", "я": "ia",
        # The Latin alphabets' letters to the same spelling (ы is y, ı or i; қ is q or k).
        "ä": "a", "á": "a", "ğ": "g", "ǵ": "g", "ı": "i", "y": "i", "ý": "i", "ñ": "n", "ń": "n",
        "ö": "o", "ó": "o", "ū": "u", "ü": "u", "ú": "u", "ş": "sh", "ś": "sh", "ç": "ch",
        "q": "k", "\u0307": "",
    }
)  # fmt: skip

# Frequent English words: a Latin text is English unless more of its words look Kazakh than these.
_ENGLISH_WORDS = frozenset(
    """
    a an the is are was were be been am in on at of to for from with by and or but not no yes i you he
    she it we they me my your our their his her its this that these those there here what when where
    who why how which please thank thanks hello hi dear near again any some all can could would will
    do does did done have has had about up out down new good bad very so just still already after
    before because if then than ok okay sorry help report appeal status answer update reply water air
    river lake tree trees park smoke smog dump garbage trash waste illegal logging factory permit
    city street yard night day week case complaint fish dead inspector inspection someone nobody
    every cut burning polluted pollution photo photos video here check quickly come saw live name
    """.split()
)


def detect_language(text: str, *, hint: str | None = None) -> Language:
    """The language of the citizen's own words in `text`; `hint` only when it has no letters."""
    words = _citizens_words(text[:_MAX_CHARS])[:_MAX_WORDS]
    if not words:
        return language_from_hint(hint)
    if len(words) == 1 and (reply := _REPLIES.get(words[0].lower())) is not None:
        return reply
    cyrillic = [w for w in words if _is_cyrillic(w)]
    latin = [w for w in words if not _is_cyrillic(w) and _is_latin(w)]
    if not cyrillic and not latin:
        # Letters of other scripts only (Arabic, Chinese...): nothing the office answers in.
        return language_from_hint(hint)
    if len(latin) > len(cyrillic):
        return Language.KK if _kazakh_latin_score(latin) > _english_score(latin) else Language.EN
    return _kazakh_or_russian(cyrillic)


def language_from_hint(hint: str | None) -> Language:
    if hint:
        code = hint.split("-")[0].lower()
        if code in Language._value2member_map_:
            return Language(code)
    return Language.KK


def preload_models() -> None:
    """Load lingua's models now (about a second), so the first citizen does not wait for them.

    Optional: a process that never calls it loads them on its first Cyrillic text instead."""
    _kazakh_russian_detector().detect_language_of("проверка")


def _citizens_words(text: str) -> list[str]:
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if not _NOT_A_WORD.match(token.strip(_EDGE_PUNCTUATION)):
            words += _WORD.findall(_LINK_INSIDE.sub(" ", token))
    return words


def _is_cyrillic(word: str) -> bool:
    return _CYRILLIC_LETTER.search(word) is not None


def _is_latin(word: str) -> bool:
    return _LATIN_LETTER.search(word) is not None


def _kazakh_or_russian(words: list[str]) -> Language:
    # Names of people and places keep their Kazakh letters inside Russian text: leave them out while
    # anything else is left to judge.
    common = [w for w in words if not (w[0].isupper() and any(ch in _KAZAKH_CYRILLIC for ch in w))]
    text = " ".join(common or words)
    found = _kazakh_russian_detector().detect_language_of(text)
    if found is None:
        return Language.KK if any(ch in _KAZAKH_CYRILLIC for ch in text) else Language.RU
    return Language.KK if found.name == "KAZAKH" else Language.RU


@functools.cache
def _kazakh_russian_detector() -> LanguageDetector:
    """Lingua restricted to Kazakh and Russian: built on first use, its models ship in the wheel."""
    from lingua import Language as LinguaLanguage
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(LinguaLanguage.KAZAKH, LinguaLanguage.RUSSIAN).build()


def _fold(word: str) -> str:
    folded = word.lower().translate(_FOLD)
    return folded.replace("kh", "h")


@functools.cache
def _kazakh_vocabulary() -> tuple[frozenset[str], tuple[str, ...]]:
    folded = {_fold(w) for w in _KAZAKH_VOCABULARY.split()}
    return frozenset(folded), tuple(sorted(w for w in folded if len(w) >= 4))


def _kazakh_latin_weight(word: str) -> int:
    """2 for a Kazakh letter (or a q not before u) in a word that is not a name, 1 in a name or for a
    known Kazakh word or stem, else 0: a place name such as Qaragandy is no sign of the language."""
    lower = word.lower()
    if any(ch in _KAZAKH_LATIN for ch in word) or _Q_NOT_U.search(lower):
        return 1 if word[0].isupper() else 2
    exact, stems = _kazakh_vocabulary()
    folded = _fold(lower)
    return 1 if folded in exact or folded.startswith(stems) else 0


def _kazakh_latin_score(words: list[str]) -> int:
    return sum(_kazakh_latin_weight(w) for w in words)


def _english_score(words: list[str]) -> int:
    return sum(1 for w in words if w.lower() in _ENGLISH_WORDS)
