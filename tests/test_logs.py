"""Secrets never reach the log, even when a library logs a URL that contains the bot token."""

from __future__ import annotations

import logging

from adaldyk_bots.logs import RedactingFormatter

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
