"""JSON from untrusted bytes: `loads` either returns the document or raises `NotJson`, nothing else.

`json.loads` alone can raise four unrelated things on a hostile body: JSONDecodeError, a plain
ValueError (an integer longer than Python's int-string limit, 4300 digits), RecursionError (a body
nested 100,000 deep) and UnicodeDecodeError. It also accepts what is not JSON at all (NaN, Infinity)
and turns 1e400 into inf, which no database JSON column will store. Webhooks and parsers read bodies
with this instead, so a bad body is a reason to quarantine or refuse, never a 500.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

__all__ = ["NotJson", "loads"]


class NotJson(ValueError):
    """The bytes are not a JSON document we can hold; `reason` says why, e.g. `invalid_json: ...`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Refused(ValueError):
    """Raised from inside the decoder's hooks, so it can be told apart from the decoder's own errors."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:20]} is out of range")
    return value


def loads(payload: bytes) -> Any:
    """Decode UTF-8 JSON; raises only NotJson."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJson(f"invalid_utf8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise NotJson(f"invalid_json: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _Refused as exc:
        raise NotJson(f"invalid_json: {exc}") from None
    except RecursionError:
        raise NotJson("invalid_json: nesting too deep") from None
    except ValueError:
        # int() refusing a literal longer than the interpreter's limit (CVE-2020-10735 mitigation).
        limit = sys.get_int_max_str_digits()
        raise NotJson(f"invalid_json: integer longer than {limit} digits") from None
