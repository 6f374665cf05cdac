"""Every text a person reads is in the catalogs, translated into Kazakh and Russian (English: the msgid)."""

from __future__ import annotations

import pytest

from adaldyk_bots.i18n import LANGUAGES, extract, negotiate, translations, untranslated


def test_the_code_has_msgids() -> None:
    assert len(list(extract())) > 10


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_msgid_is_translated(lang: str) -> None:
    missing = untranslated(lang)
    assert not missing, (
        f"{lang}: {len(missing)} untranslated (python -m adaldyk_bots.i18n --part ...): {missing[:20]}"
    )


def test_translations_differ_from_english() -> None:
    assert translations("kk").gettext("Inbox") == "Кіріс"
    assert translations("ru").gettext("Inbox") == "Входящие"
    assert translations("en").gettext("Inbox") == "Inbox"


def test_accept_language_negotiation() -> None:
    assert negotiate("ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert negotiate("en;q=0.2, kk;q=0.9") == "kk"
    assert negotiate("de") is None
    assert negotiate("ru;q=abc, en") == "en"
    assert negotiate(None) is None
