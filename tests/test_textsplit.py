"""Splitting long texts at each channel's limit."""

from __future__ import annotations

from adaldyk_bots.textsplit import split_text, utf16_units


def test_short_text_is_one_part():
    assert split_text("Сәлем", 10) == ["Сәлем"]


def test_splits_at_paragraphs_then_words():
    text = "Первый абзац ответа.\n\nВторой абзац ответа, подлиннее."
    assert split_text(text, 30) == ["Первый абзац ответа.", "Второй абзац ответа,", "подлиннее."]


def test_word_longer_than_the_limit_is_cut():
    assert split_text("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]


def test_measure_in_utf8_bytes_for_byte_limited_channels():
    text = "ә" * 700  # 2 bytes each in UTF-8: 1,400 bytes
    parts = split_text(text, 1000, lambda t: len(t.encode()))
    assert [len(p.encode()) for p in parts] == [1000, 400]


def test_utf16_units_count_emoji_twice():
    text = "😀" * 3000
    parts = split_text(text, 4096, utf16_units)
    assert [len(p) for p in parts] == [2048, 952]
