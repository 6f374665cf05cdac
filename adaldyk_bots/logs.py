"""Logging set-up that never prints a secret (bot tokens travel inside Bot API URLs)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, and a Bot API URL contains the token; the redaction
    # above would catch it, but there is no reason to produce those lines at all.
    # apscheduler.executors logs every run of the 0.25 s dispatch job at INFO; failures stay at ERROR.
    for noisy in ("httpx", "httpcore", "alembic", "apscheduler.executors"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the dispatcher working as intended
    # (a run took longer than the interval); job failures still come through at ERROR.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
