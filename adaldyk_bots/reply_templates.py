"""Ready answers for moderators (config/reply_templates.toml), each in Kazakh, Russian and English."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from adaldyk_bots.domain import Language

FILE = "reply_templates.toml"
__all__ = ["FILE", "ReplyTemplate", "load_reply_templates"]


@dataclass(frozen=True)
class ReplyTemplate:
    id: str
    titles: dict[str, str]
    texts: dict[str, str]

    def title(self, language: str) -> str:
        return self.titles.get(language) or self.titles.get("ru") or self.id

    def text(self, language: str) -> str:
        return self.texts[language]


def load_reply_templates(config_dir: Path) -> list[ReplyTemplate]:
    """The templates of `config_dir`, or none when the file is absent. A template without a text in
    every language is an error at start, not a surprise in front of a citizen."""
    path = config_dir / FILE
    if not path.exists():
        return []
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    found: list[ReplyTemplate] = []
    for i, item in enumerate(data.get("template", [])):
        ident = item.get("id")
        texts = item.get("text", {})
        titles = item.get("title", {})
        if not isinstance(ident, str) or not isinstance(texts, dict) or not isinstance(titles, dict):
            raise ValueError(f"{path}: template #{i + 1} needs an id, a title table and a text table")
        missing = [lang.value for lang in Language if not isinstance(texts.get(lang.value), str)]
        if missing:
            raise ValueError(f"{path}: template {ident!r} has no text in {', '.join(missing)}")
        found.append(ReplyTemplate(ident, {str(k): str(v) for k, v in titles.items()}, dict(texts)))
    return found
