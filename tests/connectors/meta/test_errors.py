"""Graph errors of a send -> the dispatcher's result, by numeric code and subcode only: the same code with
another HTTP status or another (localized) message is classified the same (platforms.md §3d, §4b, §7b)."""

from __future__ import annotations

import pytest

from adaldyk_bots.domain import Delivered, Failed, Held, RetryLater
from connectors.meta.errors import classify
from connectors.meta.graph import GraphError

# (code, subcode) -> (result class, stable code, rate_limited)
TABLE = [
    ((1, None), RetryLater, "meta.1", False),
    ((2, None), RetryLater, "meta.2", False),
    ((1200, None), RetryLater, "meta.1200", False),
    ((4, None), RetryLater, "meta.4", True),
    ((17, None), RetryLater, "meta.17", True),
    ((32, None), RetryLater, "meta.32", True),
    ((341, None), RetryLater, "meta.341", True),
    ((613, None), RetryLater, "meta.613", True),
    ((130429, None), RetryLater, "meta.130429", True),
    ((131056, None), RetryLater, "meta.131056", True),
    ((10, 2018278), Failed, "meta.window_closed", False),
    ((10, 2018065), Failed, "meta.window_closed", False),
    ((10, 2534022), Failed, "meta.window_closed", False),
    ((131047, None), Failed, "meta.window_closed", False),
    ((10, None), Failed, "meta.10", False),
    ((190, None), Held, "meta.token_expired", False),
    ((190, 463), Held, "meta.token_expired", False),
    ((200, None), Failed, "meta.200", False),
    ((230, None), Failed, "meta.230", False),
    ((299, None), Failed, "meta.299", False),
    ((551, None), Failed, "meta.551", False),
    ((368, None), Failed, "meta.368", False),
    ((GraphError.TIMEOUT, None), RetryLater, "meta.timeout", False),
    ((GraphError.NETWORK, None), RetryLater, "meta.network", False),
    ((GraphError.BAD_RESPONSE, None), RetryLater, "meta.network", False),
    ((99999, None), Failed, "meta.99999", False),
]


@pytest.mark.parametrize(("error", "kind", "code", "rate_limited"), TABLE)
@pytest.mark.parametrize(("status", "message"), [(400, "(#x) English"), (500, "内部错误"), (403, "")])
def test_classified_by_code_and_subcode_only(
    error: tuple[int, int | None], kind: type, code: str, rate_limited: bool, status: int, message: str
) -> None:
    result = classify(GraphError(error[0], error[1], "OAuthException", "Ab1", status, message))
    assert isinstance(result, kind)
    assert not isinstance(result, Delivered)
    assert result.code == code
    if isinstance(result, RetryLater):
        assert result.rate_limited is rate_limited
        if rate_limited:
            assert result.scope == ("target" if error[0] == 131056 else "account")
            assert result.after_seconds
    if isinstance(result, Failed):
        assert result.detail  # a moderator reads it
        assert result.elsewhere is (code == "meta.window_closed")
        if code == "meta.window_closed":
            assert result.detail.startswith("cannot reach the citizen: reply window closed")


def test_a_second_private_reply_means_the_first_is_there() -> None:
    error = GraphError(10900, None, "OAuthException", "Ab1", 400, "(#10900) Activity already replied to")
    assert classify(error, private_reply_to="123_456") == Delivered("private-reply:123_456")
    # Not a private reply: an unknown failure, never "sent".
    assert isinstance(classify(error), Failed)


def test_failures_speak_to_moderators() -> None:
    assert "isn't available" in classify(GraphError(551)).detail  # type: ignore[union-attr]
    assert "policy" in classify(GraphError(368)).detail  # type: ignore[union-attr]
    assert "permission" in classify(GraphError(200)).detail  # type: ignore[union-attr]
    assert "token" in classify(GraphError(190)).detail  # type: ignore[union-attr]
