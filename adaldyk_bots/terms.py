"""The legal clocks' numbers from config/terms.toml: the term per kind of appeal (R3), forwarding (R5),
extension (R4), reminders, the transfer flag and the daily digest; checked when the service starts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adaldyk_bots.domain import Category

__all__ = ["TERMS_FILE", "Terms", "TermsError"]

TERMS_FILE = "terms.toml"


class TermsError(ValueError):
    """config/terms.toml is wrong; the message names the file, the key and its line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermSection(_Strict):
    default: int = Field(default=15, ge=1, le=60)
    kinds: dict[Category, int] = Field(default_factory=dict)


class ForwardingSection(_Strict):
    working_days: int = Field(default=3, ge=1, le=30)


class ExtensionSection(_Strict):
    cap_months: int = Field(default=2, ge=1, le=12)
    cap_from: Literal["registration", "original_due"] = "registration"
    notice_working_days: int = Field(default=3, ge=1, le=30)


class RemindersSection(_Strict):
    before_due: list[int] = Field(default_factory=lambda: [3, 1])
    hour: int = Field(default=9, ge=0, le=23)


class TransfersSection(_Strict):
    flag_after: int = Field(default=2, ge=0, le=100)


class DigestSection(_Strict):
    hour: int = Field(default=9, ge=0, le=23)


class Terms(_Strict):
    term: TermSection = TermSection()
    forwarding: ForwardingSection = ForwardingSection()
    extension: ExtensionSection = ExtensionSection()
    reminders: RemindersSection = RemindersSection()
    transfers: TransfersSection = TransfersSection()
    digest: DigestSection = DigestSection()

    def days_for(self, kind: Category | str) -> int:
        """R3: the working days to answer an appeal of `kind` (an unknown kind: the default)."""
        try:
            return self.term.kinds.get(Category(kind), self.term.default)
        except ValueError:
            return self.term.default

    @property
    def reminder_days(self) -> tuple[int, ...]:
        """The reminder offsets, furthest first (T-3 before T-1)."""
        return tuple(sorted(set(self.reminders.before_due), reverse=True))

    @classmethod
    def load(cls, path: Path, *, default_term: int | None = None) -> Terms:
        """The file's terms; a missing file is the defaults (`default_term`: ADALDYK_ANSWER_TERM_WORKING_DAYS
        when the file names no [term] default)."""
        if not path.exists():
            data: dict[str, object] = {}
        else:
            raw = path.read_text(encoding="utf-8")
            try:
                data = tomllib.loads(raw)
            except tomllib.TOMLDecodeError as exc:
                raise TermsError(f"{path}: {exc}") from None
        term = data.get("term")
        if default_term is not None and not (isinstance(term, dict) and "default" in term):
            data["term"] = {**(term if isinstance(term, dict) else {}), "default": default_term}
        try:
            terms = cls.model_validate(data)
        except ValidationError as exc:
            raise TermsError(_explain(path, exc, raw if path.exists() else "")) from None
        bad = [d for d in terms.reminders.before_due if not 0 <= d <= 30]
        if bad:
            line = _line_of(raw if path.exists() else "", "reminders", "before_due")
            raise TermsError(f"{path}{line}: [reminders] before_due: working days must be 0..30, got {bad}")
        return terms


def _explain(path: Path, exc: ValidationError, raw: str) -> str:
    problems = []
    for error in exc.errors():
        where = [str(p) for p in error["loc"] if p != "[key]"]  # a dict key's own error names the key
        table, key = (".".join(where[:-1]), where[-1]) if len(where) > 1 else ("", where[0] if where else "")
        line = _line_of(raw, table, key)
        value = error.get("input")
        problems.append(f"{path}{line}: [{table}] {key} = {value!r}: {error['msg']}")
    return "; ".join(problems)


def _line_of(raw: str, table: str, key: str) -> str:
    """':<line>' of `key` inside `[table]` in the file's text ('' when it cannot be found)."""
    current = ""
    for number, line in enumerate(raw.splitlines(), start=1):
        header = re.match(r"^\s*\[\s*([\w.]+)\s*\]", line)
        if header:
            current = header.group(1)
            if current == f"{table}.{key}".strip("."):
                return f":{number}"
            continue
        if current == table and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return f":{number}"
    return ""
