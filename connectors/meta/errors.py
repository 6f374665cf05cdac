"""Graph API errors of a send, classified into the dispatcher's results by numeric code and subcode only.

Never by message text (Meta localizes it: platforms.md §4b notes a Chinese variant of the window error)
and never by HTTP status (one code comes with several: Instagram's window error with 403, code 2 often
with 500). Sources: platforms.md §3d, §4b, §5b, §7b-c; developers.facebook.com/docs/graph-api/guides/
error-handling, /docs/messenger-platform/error-codes, WhatsApp Cloud API error codes.

    GraphError ─┬─ rate limit (4 17 32 341 613 130429 131056) ── RetryLater(rate_limited): the scope pauses
                ├─ temporary (1 2 1200, timeouts, network)    ── RetryLater: an attempt, with backoff
                ├─ window closed (10/2018278 2018065 2534022, 131047) ── Failed(meta.window_closed, elsewhere)
                ├─ 10900 on a private reply                   ── Delivered: the one reply is already there
                ├─ 190 token                                  ── Held(meta.token_expired): the channel waits
                └─ 200-299, 551, 368, 10, 100, 131026, ...   ── Failed, in words a moderator understands
"""

from __future__ import annotations

from adaldyk_bots.domain import Delivered, Failed, Held, RetryLater, SendResult
from connectors.meta.graph import GraphError

__all__ = [
    "PRIVATE_REPLY_ALREADY_SENT",
    "RATE_LIMIT_CODES",
    "WINDOW_CLOSED_DETAIL",
    "classify",
    "window_closed",
]

# "Too many calls" in its forms: the app (4), the user/token (17), the Page (32), the app's limit (341),
# the Send API (613), a WhatsApp number's throughput (130429), a WhatsApp business/user pair (131056).
# 131056 concerns one recipient, the others the whole token: the dispatcher pauses accordingly.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613, 130429, 131056})
_TARGET_SCOPED = frozenset({131056})
# Meta gives no retry-after for these (usage comes in X-Business-Use-Case-Usage headers); a minute is
# Messenger's own advice for 613 ("pause requests until the current requests finish") rounded up.
RATE_LIMIT_PAUSE_SECONDS = 60.0
PAIR_RATE_PAUSE_SECONDS = 6.0  # ~1 message every 6 s to one WhatsApp user (platforms.md §7c)

_TEMPORARY = {
    1: "Meta: unknown error, possibly downtime",
    2: "Meta: temporary service problem",
    1200: "Meta: temporary send failure",
}
# (code, subcode) and WhatsApp's own code: the reply window is closed.
_WINDOW_SUBCODES = frozenset({2018278, 2018065, 2534022})
_WHATSAPP_REENGAGEMENT = 131047
# (#10900) "Activity already replied to": a second private reply to one comment (one is allowed).
# [S] public client code and Meta's private-replies page ("Only one message can be sent"); the code
# number itself is not in Meta's current public error table (UNCONFIRMED-primary).
PRIVATE_REPLY_ALREADY_SENT = 10900

WINDOW_CLOSED_DETAIL = "cannot reach the citizen: reply window closed"

_FAILED = {
    10: "Meta refused the send: the app lacks the permission for it (error 10)",
    100: "Meta refused the request as invalid (error 100): the message or its recipient is malformed",
    190: "",  # Held, below
    368: "Meta has temporarily blocked the Page from sending for a policy violation (error 368)",
    551: "this person isn't available right now: they cannot receive messages from the Page (error 551)",
    131026: "WhatsApp could not deliver: the number is not on WhatsApp or cannot receive (error 131026)",
    131051: "WhatsApp does not support this message type (error 131051)",
    132000: "the WhatsApp template's parameters do not match the approved template (error 132000)",
    132001: "the WhatsApp template does not exist in that language (error 132001)",
}


def window_closed(detail: str = WINDOW_CLOSED_DETAIL) -> Failed:
    return Failed("meta.window_closed", detail, elsewhere=True)


def classify(error: GraphError, *, private_reply_to: str | None = None) -> SendResult:
    """The dispatcher's result for a send that answered `error`. `private_reply_to`: the comment id when
    the send was a private reply (there, 10900 means our earlier attempt did arrive)."""
    code, sub = error.code, error.subcode
    trace = f" [fbtrace_id {error.fbtrace_id}]" if error.fbtrace_id else ""
    if code in RATE_LIMIT_CODES:
        target = code in _TARGET_SCOPED
        return RetryLater(
            f"meta.{code}",
            f"Meta: too many requests (error {code}); sends through this "
            f"{'recipient' if target else 'account'} pause{trace}",
            PAIR_RATE_PAUSE_SECONDS if target else RATE_LIMIT_PAUSE_SECONDS,
            rate_limited=True,
            scope="target" if target else "account",
        )
    if code in _TEMPORARY:
        return RetryLater(f"meta.{code}", f"{_TEMPORARY[code]} (error {code}){trace}")
    if (code == 10 and sub in _WINDOW_SUBCODES) or code == _WHATSAPP_REENGAGEMENT:
        return window_closed(f"{WINDOW_CLOSED_DETAIL} (Meta error {code}{f'/{sub}' if sub else ''})")
    if code == PRIVATE_REPLY_ALREADY_SENT and private_reply_to is not None:
        # Only one private reply per comment exists, and the dispatcher lets a second one be tried only
        # when none was recorded sent: so this is our own earlier attempt whose answer was lost.
        return Delivered(f"private-reply:{private_reply_to}")
    if code == 190:
        return Held(
            "meta.token_expired",
            f"Meta refused the access token (error 190{f'/{sub}' if sub else ''}): it expired or was "
            "revoked; set a new token",
        )
    if 200 <= code <= 299:
        return Failed(
            f"meta.{code}",
            f"Meta refused the send for lack of permission (error {code}): the app or Page is missing "
            "a permission, or the person does not accept messages from the Page",
        )
    if code in _FAILED:
        return Failed(f"meta.{code}", _FAILED[code] + trace)
    if code == GraphError.TIMEOUT:
        return RetryLater("meta.timeout", error.message)
    if code in (GraphError.NETWORK, GraphError.BAD_RESPONSE):
        return RetryLater("meta.network", error.message)
    return Failed(f"meta.{code}", f"Meta error {code}{f'/{sub}' if sub else ''}: {error.message}{trace}")
