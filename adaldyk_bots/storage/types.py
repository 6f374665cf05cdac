"""Column types that hold any Python string, including what the databases cannot store as text.

PostgreSQL text cannot contain NUL (U+0000), and neither database's driver can encode a lone UTF-16
surrogate (JSON allows "\\ud800" on its own) as UTF-8. A citizen who typed either would otherwise get
no appeal: the event was quarantined when its message was written. So every text column and every JSON
value replaces them with U+FFFD REPLACEMENT CHARACTER on the way in. The exact bytes the platform sent
stay untouched in `raw_event.payload` (binary), so nothing is lost: the replacement is only in the
readable copy. Our JSON columns are PostgreSQL `json`, which would accept an escaped NUL but not a lone
surrogate escape; JSON values are cleaned the same way, so text reads alike wherever it is stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import MetaData, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["REPLACEMENT", "StorableString", "StorableText", "dumps_storable", "storable", "use_storable_text"]

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD; everything else as it was."""
    # Every bound string passes here (keys, states, texts): the common case must cost next to nothing,
    # so the scans are C ones (`in`, isascii, encode) and the regular expression runs only on a hit.
    if "\x00" not in value and (value.isascii() or _encodes(value)):
        return value
    return _UNSTORABLE.sub(REPLACEMENT, value)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {_storable_json(k): _storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_json(v) for v in value]
    return value


def dumps_storable(value: Any) -> str:
    """The engines' JSON serializer: standard JSON of the cleaned value (NaN is refused, not written)."""
    return json.dumps(_storable_json(value), allow_nan=False)


class StorableString(TypeDecorator[str]):
    """VARCHAR(n) that takes any string (see the module docstring)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return storable(value) if isinstance(value, str) else value


class StorableText(TypeDecorator[str]):
    """TEXT that takes any string (see the module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return storable(value) if isinstance(value, str) else value


def use_storable_text(metadata: MetaData) -> None:
    """Make every string column of `metadata` storable. Applied once to the models' metadata, so a
    column added later is covered without anyone having to remember a special type."""
    for table in metadata.tables.values():
        for column in table.columns:
            current = column.type
            if isinstance(current, StorableString | StorableText):
                continue
            # SQLModel's str columns are AutoString, a TypeDecorator over String: look at what it wraps.
            inner = current.impl_instance if isinstance(current, TypeDecorator) else current
            if isinstance(inner, Text):
                column.type = StorableText()
            elif isinstance(inner, String):
                column.type = StorableString(inner.length)
