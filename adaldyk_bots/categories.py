"""A first guess of an appeal's category (APPC Art. 4 kinds) from word stems in config/categories.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from adaldyk_bots.domain import Category

CATEGORIES_FILE = "categories.toml"


@dataclass(frozen=True)
class CategoryRules:
    rules: tuple[tuple[Category, re.Pattern[str]], ...] = ()

    @classmethod
    def load(cls, path: Path) -> CategoryRules:
        if not path.exists():
            return cls()
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        rules = []
        for name, table in data.items():
            try:
                category = Category(name)
            except ValueError:
                raise ValueError(f"{path}: [{name}] is not a category ({', '.join(Category)})") from None
            stems = [re.escape(stem.lower()) for stem in table.get("stems", [])]
            if stems:
                # A stem must start a word: "пара сұра" must not match inside "запара".
                rules.append((category, re.compile(r"(?<!\w)(?:" + "|".join(stems) + ")")))
        return cls(tuple(rules))

    def classify(self, text: str) -> Category:
        lowered = text.lower()
        for category, pattern in self.rules:
            if pattern.search(lowered):
                return category
        return Category.OTHER
