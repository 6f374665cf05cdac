"""First guess of the category from the shipped stems (config/categories.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaldyk_bots.categories import CategoryRules

RULES = CategoryRules.load(Path(__file__).resolve().parent.parent / "config" / "categories.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Орман шаруашылығы инспекторы рұқсат үшін пара сұрады", "corruption_report"),
        ("Инспектор требует взятку за разрешение", "corruption_report"),
        ("Незаконная свалка у реки", "complaint"),
        ("Өзенге зауыт қалдықтарын төгіп жатыр", "complaint"),
        ("Предлагаю установить датчики воздуха", "proposal"),
        ("Рахмет, мәселе шешілді", "gratitude"),
        ("Добрый день", "other"),
        ("Была запара на работе, пишу поздно", "other"),  # "пара" inside a word is not a bribe
    ],
)
def test_classify(text, expected):
    assert RULES.classify(text) == expected


def test_unknown_category_in_config_says_where(tmp_path):
    bad = tmp_path / "categories.toml"
    bad.write_text('[bribery]\nstems = ["x"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bribery"):
        CategoryRules.load(bad)
