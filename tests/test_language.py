"""Detecting the appeal's language (kk, ru, en)."""

from __future__ import annotations

import pytest

from adaldyk_bots.domain import Language
from adaldyk_bots.language import detect_language, language_from_hint


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("Сәлеметсіз бе! Өзенге қалдық төгіп жатыр.", None, "kk"),
        ("Мен туралы емес, ауыл туралы жазып отырмын", None, "kk"),  # no Kazakh-only letters
        ("Здравствуйте, незаконная свалка у реки", "kk", "ru"),
        ("Illegal logging near Almaty", "ru", "en"),
        ("👍", "ru", "ru"),  # no letters: the client's language
        ("123", None, "kk"),  # nothing to go on: the state language
        # The three cases of issue 6 item 9: the text decides, not a Kazakh name, a link or the alphabet.
        ("Здравствуйте, в Қарағанды возле ТЭЦ постоянно чёрный дым", "kk", "ru"),
        ("Вот видео https://youtu.be/Xk3pQ9zTt2c свалка за гаражами", None, "ru"),
        ("Видео:https://youtu.be/Xk3pQ9zTt2c, свалка за гаражами", "en", "ru"),  # no space before it
        ("Пишите на eco.almaty@mail.kz или @eco_almaty_bot, сайт ecogeo.gov.kz", "en", "ru"),
        ("Sälemetsiz be, özenge qoqys tögip jatyr", "en", "kk"),
        ("Salemetsiz be, ozenge qoqys togip jatyr", "en", "kk"),  # the same without diacritics
        ("Меня зовут Нұрлан, пишу из Ақтөбе по поводу свалки", None, "ru"),
        ("Illegal dump in Қарағанды near the bus station", "ru", "en"),
        ("Smog in Öskemen again", "kk", "en"),  # a Kazakh place name in Latin letters
        ("Shymkent qalasynda smog", "en", "kk"),
        # Only a link, an appeal number or a phone number: nothing of the citizen's to go on.
        ("https://t.me/eco_kz/1203", "ru", "ru"),
        ("ADL-2026-000123", "en", "en"),
        ("+7 701 555 12 34", None, "kk"),
        ("ADL-2026-000123 өтінішіме жауап қашан болады?", "ru", "kk"),
        ("Номер обращения ADL-2026-000123, когда будет ответ?", "kk", "ru"),
        ("Да", "kk", "ru"),
        ("Рахмет", "ru", "kk"),
        ("مرحبا", "ru", "ru"),  # a script the office does not answer in: the client's language
    ],
)
def test_detect_language(text, hint, expected):
    assert detect_language(text, hint=hint) == expected


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("ru", Language.RU),
        ("en-US", Language.EN),
        ("KK", Language.KK),
        ("fr", Language.KK),
        (None, Language.KK),
    ],
)
def test_language_from_hint(hint, expected):
    assert language_from_hint(hint) == expected


def test_a_long_text_costs_little():
    # Tokens are matched at their start (no quadratic regex) and only the start of a text is read.
    import time

    started = time.perf_counter()
    assert detect_language("x." * 100_000, hint="ru") == "en"
    assert detect_language("a" * 100_000 + " Здравствуйте", hint="kk") == "en"
    assert detect_language("1" * 100_000, hint="ru") == "ru"
    assert time.perf_counter() - started < 5.0  # a quadratic pattern took 71 s on 20,000 characters


def _lingua_loaded_after(code: str) -> bool:
    import subprocess
    import sys

    script = f"import sys, adaldyk_bots.language as language; {code}; print('lingua' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_models_are_loaded_on_first_use_not_at_import():
    assert not _lingua_loaded_after("pass")
    assert not _lingua_loaded_after("language.detect_language('Sälemetsiz be, özenge qoqys tögip jatyr')")
    assert _lingua_loaded_after("language.detect_language('Здравствуйте')")
    assert _lingua_loaded_after("language.preload_models()")
