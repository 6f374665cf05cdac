"""Citizen-facing texts in kk, ru and en, loaded from config/templates/<lang>.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adaldyk_bots.domain import AppealStatus, Language

TRIAGE_KEYS = (
    "triage_informational",
    "triage_formal",
    "triage_formal_registered",
    "collect_consent",
    "collect_consent_unclear",
    "collect_declined",
    "collect_cancelled",
    *(f"collect_name{suffix}" for suffix in ("", "_empty", "_short", "_letters", "_long")),
    *(f"collect_iin{suffix}" for suffix in ("", "_length", "_digits", "_date", "_century", "_checksum")),
    *(f"collect_address{suffix}" for suffix in ("", "_short", "_long")),
)
REQUIRED_KEYS = (
    "welcome",
    "ack",
    "status_query",
    "status_query_signal",
    "status_none",
    "status_not_found",
    "lang_set",
    "lang_unknown",
    "status_changed",
    "status_changed_note",
    "reply",
    "public_invite",
    # The notices the law requires (notice_texts.py) and the "was it solved?" question (feedback.py).
    "notice_registration",
    "how_to_ask_bot",
    "how_to_ask_web",
    "how_to_ask_email",
    "accepted_by_office",
    "position_moderator",
    "notice_forwarding",
    "notice_hearing",
    "notice_answer",
    "feedback_question",
    "feedback_yes",
    "feedback_no",
    "feedback_reopen_note",
    "feedback_closed_note",
    "extension",
    # Triage of a signal and the R12 data dialogue (triage.py, data_collection.py)
    *TRIAGE_KEYS,
)


class TemplateError(Exception):
    pass


@dataclass(frozen=True)
class Texts:
    by_language: dict[Language, dict[str, Any]]
    tz: ZoneInfo

    @classmethod
    def load(cls, directory: Path, tz: ZoneInfo) -> Texts:
        by_language: dict[Language, dict[str, Any]] = {}
        for language in Language:
            path = directory / f"{language.value}.toml"
            try:
                with path.open("rb") as fh:
                    data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise TemplateError(f"{path}: {exc}") from exc
            missing = [k for k in REQUIRED_KEYS if k not in data]
            missing += [f"status.{s}" for s in AppealStatus if s.value not in data.get("status", {})]
            if missing:
                raise TemplateError(f"{path}: missing {', '.join(missing)}")
            by_language[language] = data
        return cls(by_language=by_language, tz=tz)

    def render(self, language: Language | str, key: str, **fields: Any) -> str:
        template: str = self.by_language[Language(language)][key]
        return template.format(**{k: self._show(v) for k, v in fields.items()})

    def status_name(self, language: Language | str, status: AppealStatus | str) -> str:
        return str(self.by_language[Language(language)]["status"][str(status)])

    def _show(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(self.tz).strftime("%d.%m.%Y")
        return value
