"""The R12 checks of a formal appeal's applicant (applicant.py), as the bot and the page both use them."""

from __future__ import annotations

import pytest

from adaldyk_bots.applicant import check_address, check_iin_text, check_name, consent_answer, is_cancel

VALID_IIN = "900101300126"  # check digit 6 (iin.check_digit)


@pytest.mark.parametrize(
    ("text", "reason", "value"),
    [
        ("Сейтқали Айгерім Нұрланқызы", None, "Сейтқали Айгерім Нұрланқызы"),
        ("  Иванова   Мария Петровна ", None, "Иванова Мария Петровна"),
        ("Мұхаммед-Әли Жанұзақов", None, "Мұхаммед-Әли Жанұзақов"),
        ("O'Neil John", None, "O'Neil John"),
        ("Айгерим", "short", ""),
        ("", "empty", ""),
        ("Иванов 123", "letters", ""),
        ("Иванов, Иван", "letters", ""),
        ("А " * 6, "long", ""),
    ],
)
def test_name(text: str, reason: str | None, value: str) -> None:
    checked = check_name(text)
    assert checked.reason == reason
    assert checked.value == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (VALID_IIN, None),
        ("900 101 300 126", None),
        ("900101-300126", None),
        ("900101300127", "checksum"),
        ("90010130012", "length"),
        ("9001013001266", "length"),
        ("90010130012a", "digits"),
        ("９００１０１３００１２６", "digits"),  # full-width digits are not what the number is written in
        ("901301300126", "date"),
        ("900101900126", "century"),
    ],
)
def test_iin(text: str, reason: str | None) -> None:
    checked = check_iin_text(text)
    assert checked.reason == reason
    if reason is None:
        assert checked.value == VALID_IIN


def test_address() -> None:
    assert check_address("г. Астана, ул. Мангилик Ел, д. 8, кв. 12").ok
    assert check_address("Астана").reason == "short"
    assert check_address("ул. Абая").reason == "short"
    assert check_address("Астана " * 100).reason == "long"


@pytest.mark.parametrize("word", ["иә", "Иә!", "ия", "келісемін", "да", "Да.", "согласна", "yes", "YES"])
def test_consent_yes(word: str) -> None:
    assert consent_answer(word) is True


@pytest.mark.parametrize("word", ["жоқ", "Жоқ.", "нет", "не согласен", "no"])
def test_consent_no(word: str) -> None:
    assert consent_answer(word) is False


@pytest.mark.parametrize("word", ["может быть", "", "900101300126", "иәә", "ok"])
def test_consent_neither(word: str) -> None:
    assert consent_answer(word) is None


def test_cancel_words() -> None:
    assert all(is_cancel(w) for w in ("/cancel", "Отмена", "бас тарту", "Cancel!", "тоқтату"))
    assert not any(is_cancel(w) for w in ("отменить бы свалку", "Иванов Иван", ""))
