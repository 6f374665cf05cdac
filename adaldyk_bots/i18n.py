"""The workspace's languages: gettext catalogs (Babel) in Kazakh, Russian and English.

The catalogs are the `.po` files under `adaldyk_bots/locale/<lang>/LC_MESSAGES/` — one file per part of
the workspace (`messages.po` for the shared frame, `inbox.po`, `appeal.po`, …), merged into one catalog
and compiled in memory the first time a language is asked for, so there is no build step and no binary
file to keep in step with its source. `python -m adaldyk_bots.i18n --part NAME` extracts every msgid from
the code and the templates and adds the ones no file has yet to `NAME.po` of each language
(translations are then written by hand; tests/test_i18n.py fails while any is missing).
"""

from __future__ import annotations

import argparse
import io
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import Translations

LANGUAGES: tuple[str, ...] = ("kk", "ru", "en")
DEFAULT_LANGUAGE = "kk"  # the state language; Russian and English one click away
LANGUAGE_NAMES = {"kk": "Қазақша", "ru": "Русский", "en": "English"}
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"

# What `extract` reads: Python calls of _ / gettext / ngettext / N_ and the Jinja2 templates.
METHOD_MAP = [
    ("**/templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]
OPTIONS_MAP = {"**/templates/**.html": {"trimmed": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def catalog_path(lang: str, part: str = DOMAIN) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{part}.po"


def read_catalog(lang: str) -> Catalog:
    """Every part's file of `lang`, merged (a msgid in two files: the first by file name wins)."""
    merged = Catalog(locale=lang, domain=DOMAIN)
    for path in sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as fh:
            for message in read_po(fh, locale=lang):
                if message.id and merged.get(message.id, context=message.context) is None:
                    merged[message.id] = message
    return merged


@cache
def translations(lang: str) -> Translations:
    """The compiled catalog of `lang` (one of LANGUAGES); English falls back to the msgid itself."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(lang), use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark for extraction only"
    """Marks a string for the catalogs where it is defined; it is translated where it is shown."""
    return message


def gettext(lang: str, message: str) -> str:
    return translations(lang).gettext(message)


def negotiate(accept_language: str | None) -> str | None:
    """The first of our languages in an Accept-Language header, by its q order; None if none."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
    for quality, _position, primary in sorted(ranked):
        if quality < 0 and primary in LANGUAGES:
            return primary
    return None


def extract() -> Catalog:
    """Every msgid in the code and the templates, with where it is used."""
    catalog = Catalog(domain=DOMAIN)
    root = Path(__file__).parent.parent
    for package in ("adaldyk_bots", "connectors"):
        for filename, lineno, message, comments, context in extract_from_dir(
            root / package, METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS, strip_comment_tags=True
        ):
            catalog.add(
                message, None, [(f"{package}/{filename}", lineno)], auto_comments=comments, context=context
            )
    return catalog


def update_catalogs(part: str = DOMAIN) -> dict[str, list[str]]:
    """Adds the msgids that no file of a language has yet to that language's `part.po` (English: the
    msgid itself, since msgids are written in English; others empty, to be translated). Returns, per
    language, the msgids that still have no translation anywhere."""
    template = extract()
    missing: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        known = read_catalog(lang)
        path = catalog_path(lang, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as fh:
                own = read_po(fh, locale=lang)
        else:
            own = Catalog(locale=lang, domain=DOMAIN)
        for message in template:
            if message.id and known.get(message.id, context=message.context) is None:
                string = message.id if lang == "en" else ""
                own.add(message.id, string, message.locations, context=message.context)
        if len(own) or path.exists():
            with path.open("wb") as fh:
                write_po(fh, own, width=110, sort_output=True, include_previous=False)
        missing[lang] = untranslated(lang)
    translations.cache_clear()
    return missing


def fill_from_tsv(part: str, tsv: Path) -> list[str]:
    """Writes translations into `part.po` of Russian and Kazakh from lines `msgid<TAB>ru<TAB>kk`;
    returns the msgids of the file that the part does not have (run the update first)."""
    rows = [line.rstrip("\n").split("\t") for line in tsv.read_text("utf-8").splitlines() if line.strip()]
    unknown: list[str] = []
    for lang, column in (("ru", 1), ("kk", 2)):
        path = catalog_path(lang, part)
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        for row in rows:
            message = catalog.get(row[0])
            if message is None or len(row) < 3:
                unknown.append(row[0])
                continue
            message.string = row[column]
        with path.open("wb") as fh:
            write_po(fh, catalog, width=110, sort_output=True, include_previous=False)
    translations.cache_clear()
    return sorted(set(unknown))


def untranslated(lang: str) -> list[str]:
    """The msgids used in the code that `lang`'s catalog lacks or leaves empty."""
    catalog = read_catalog(lang)
    out = []
    for message in extract():
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        if found is None or not found.string or (isinstance(found.string, tuple) and not all(found.string)):
            out.append(str(message.id))
    return out


if __name__ == "__main__":  # python -m adaldyk_bots.i18n --part NAME
    parser = argparse.ArgumentParser(description="Add new msgids to the catalogs; list what is untranslated.")
    parser.add_argument("--part", default=DOMAIN, help="the .po file (per language) new msgids go to")
    parser.add_argument("--fill", type=Path, help="a TSV of msgid<TAB>ru<TAB>kk to write into the part")
    args = parser.parse_args()
    left = update_catalogs(args.part)
    if args.fill:
        for msgid in fill_from_tsv(args.part, args.fill):
            print(f"not in {args.part}.po: {msgid}")
        left = {lang: untranslated(lang) for lang in LANGUAGES}
    for lang, ids in left.items():
        print(f"{lang}: {len(ids)} untranslated" + "".join(f"\n  {i}" for i in ids[:50]))
