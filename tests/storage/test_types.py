"""Storable text: whatever a citizen sends can be written to either database, and only what cannot be
stored (NUL, lone surrogates) is replaced."""

from __future__ import annotations

import json

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from adaldyk_bots.storage.types import REPLACEMENT, dumps_storable, storable

_any_text = st.text(alphabet=st.characters(codec=None), max_size=200)


@seed(20261201)
@settings(max_examples=500, derandomize=True, deadline=None)
@given(text=_any_text)
def test_storable_text_encodes_and_changes_only_what_cannot_be_stored(text: str) -> None:
    kept = storable(text)
    assert "\x00" not in kept
    kept.encode("utf-8")  # no lone surrogate left: raises otherwise
    assert len(kept) == len(text)
    for before, after in zip(text, kept, strict=True):
        unstorable = before == "\x00" or "\ud800" <= before <= "\udfff"
        assert after == (REPLACEMENT if unstorable else before)


@seed(20261201)
@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    value=st.recursive(
        _any_text | st.integers() | st.none(), lambda c: st.lists(c) | st.dictionaries(_any_text, c)
    )
)
def test_json_values_are_cleaned_the_same_way(value: object) -> None:
    dumped = dumps_storable(value)
    assert "\\u0000" not in dumped
    # What the database reads back holds no lone surrogate (escaped pairs of real characters are fine).
    json.dumps(json.loads(dumped), ensure_ascii=False).encode("utf-8")
