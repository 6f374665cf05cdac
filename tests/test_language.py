"""Detecting the appeal's language (kk, ru, en)."""

from __future__ import annotations

import pytest

from adaldyk_bots.language import detect_language


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("Сәлеметсіз бе! Өзенге қалдық төгіп жатыр.", None, "kk"),
        ("Мен туралы емес, ауыл туралы жазып отырмын", None, "kk"),  # no Kazakh-only letters
        ("Здравствуйте, незаконная свалка у реки", "kk", "ru"),
        ("Illegal logging near Almaty", "ru", "en"),
        ("👍", "ru", "ru"),  # no letters: the client's language
        ("123", None, "kk"),  # nothing to go on: the state language
    ],
)
def test_detect_language(text, hint, expected):
    assert detect_language(text, hint=hint) == expected
