"""Which final answers need the four eyes (config/approval.toml): formal appeals of the listed kinds."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from adaldyk_bots.domain import Category

__all__ = ["APPROVAL_FILE", "ApprovalRules"]

APPROVAL_FILE = "approval.toml"


@dataclass(frozen=True)
class ApprovalRules:
    """`kinds`: the appeal categories whose final answer to a formal appeal waits for the unit head's (or
    the acting deputy's) approval; by default every kind. A signal's informational answer never waits."""

    kinds: frozenset[str] = field(default_factory=lambda: frozenset(c.value for c in Category))

    @classmethod
    def load(cls, path: Path) -> ApprovalRules:
        if not path.exists():
            return cls()
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        kinds = data.get("approval", {}).get("kinds", ["*"])
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise ValueError(f'{path}: approval.kinds must be a list of appeal kinds or ["*"]')
        if "*" in kinds:
            return cls()
        known = {c.value for c in Category}
        unknown = sorted(set(kinds) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown appeal kinds {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(frozenset(kinds))

    def needs_approval(self, *, formal: bool, category: str) -> bool:
        return formal and category in self.kinds
