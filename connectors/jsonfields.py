"""Reading platform JSON defensively: typed field access whose failures become quarantine reasons.

Shared by the channel parsers. A reason reads `<channel>.missing_field: <path>` or
`<channel>.bad_field: <path> (expected X, got Y)`, in JSON's vocabulary, because the people who read it
look at the raw payload, not at Python objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

from adaldyk_bots import safejson
from adaldyk_bots.domain import Quarantined
from adaldyk_bots.ports import RawEvent

MAX_NAME_IN_REASON = 64
# Every id and count the platforms send fits a signed 64-bit integer (Telegram documents ids as "at
# most 52 significant bits", VK as int64). A larger number is hostile or broken, and kept out of keys
# and columns: a 4000-digit chat id would make a 4000-character dedup key.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Unparseable(Exception):
    """The event is authentic but not understood; `reason` becomes Quarantined.reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: object) -> TypeGuard[int]:
    # bool is a subclass of int in Python, but JSON true/false is never a valid id or timestamp.
    return isinstance(value, int) and not isinstance(value, bool)


def is_int64(value: object) -> TypeGuard[int]:
    return is_int(value) and INT64_MIN <= value <= INT64_MAX


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def short(name: str) -> str:
    """A platform-supplied name cut for a reason line (an attacker could send a megabyte of key)."""
    return name if len(name) <= MAX_NAME_IN_REASON else name[:MAX_NAME_IN_REASON] + "..."


def body_key(payload: bytes) -> str:
    """The dedup key of a body whose platform id cannot be read: a repeated delivery still dedupes."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def payload_failure(payload: bytes, reason: str) -> RawEvent:
    return RawEvent(dedup_key=body_key(payload), payload=payload, outcomes=[Quarantined(reason)])


def loads(payload: bytes, channel: str) -> Any:
    """The body as JSON, or Unparseable with a reason such as `vk.invalid_json: nesting too deep`.

    Raises nothing else, whatever the bytes (see adaldyk_bots.safejson)."""
    try:
        return safejson.loads(payload)
    except safejson.NotJson as exc:
        raise Unparseable(f"{channel}.{exc.reason}") from None


class JsonFields:
    """Typed access to one channel's JSON; `channel` prefixes every reason."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def missing(self, path: str) -> Unparseable:
        return Unparseable(f"{self.channel}.missing_field: {path}")

    def bad(self, path: str, expected: str, value: object) -> Unparseable:
        return Unparseable(f"{self.channel}.bad_field: {path} (expected {expected}, got {type_name(value)})")

    def req_object(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        # A JSON null is treated as absent: platforms omit optional fields, so null means "not there".
        value = obj.get(key)
        if value is None:
            raise self.missing(path)
        if not isinstance(value, dict):
            raise self.bad(path, "object", value)
        return value

    def req_int(self, obj: Mapping[str, Any], key: str, path: str) -> int:
        value = obj.get(key)
        if value is None:
            raise self.missing(path)
        if not is_int(value):
            raise self.bad(path, "integer", value)
        if not is_int64(value):
            raise Unparseable(f"{self.channel}.bad_field: {path} (integer out of range)")
        return value

    def req_str(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = obj.get(key)
        if value is None:
            raise self.missing(path)
        if not isinstance(value, str):
            raise self.bad(path, "string", value)
        return value

    @staticmethod
    def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
        # Lenient on purpose: descriptive fields (names, usernames, mime types) are not worth losing a
        # citizen's message over. Telegram has been seen sending "first_name": null
        # (tdlib/telegram-bot-api#778).
        value = obj.get(key)
        return value if isinstance(value, str) else None

    @staticmethod
    def opt_int(obj: Mapping[str, Any], key: str) -> int | None:
        value = obj.get(key)
        return value if is_int64(value) else None

    def utc(self, timestamp: int, path: str) -> datetime:
        try:
            return datetime.fromtimestamp(timestamp, tz=UTC)
        except (OverflowError, OSError, ValueError):
            # Out-of-range Unix time: the value is an integer, but not a usable date.
            raise Unparseable(f"{self.channel}.bad_field: {path} (timestamp out of range)") from None
