"""Secrets never reach the log, even when a library logs a URL that contains the bot token."""

from __future__ import annotations

import logging

from adaldyk_bots.logs import LogThrottle, RedactingFormatter

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"


def test_token_in_a_logged_url_is_redacted():
    formatter = RedactingFormatter("%(message)s", [TOKEN, "short"])
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: POST https://api.telegram.org/bot%s/getUpdates",
        (TOKEN,),
        None,
    )
    line = formatter.format(record)
    assert TOKEN not in line and "bot***/getUpdates" in line


def test_a_repeated_failure_is_one_line_a_minute_with_a_count(caplog):
    now = [1000.0]
    throttle = LogThrottle(every=60.0, clock=lambda: now[0])
    log = logging.getLogger("tests.throttle")
    caplog.set_level(logging.ERROR, logger="tests.throttle")
    results = [throttle(log, "database:OperationalError", "database unavailable") for _ in range(500)]
    assert results.count(True) == 1
    throttle(log, "database:InterfaceError", "another kind")  # its own window
    now[0] += 61
    assert throttle(log, "database:OperationalError", "database unavailable")
    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable",
        "another kind",
        "database unavailable (499 more like this in the last 60 s)",
    ]
