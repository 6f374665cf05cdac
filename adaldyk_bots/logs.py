"""Logging: no secret is ever printed (bot tokens travel in Bot API URLs); a repeated failure is one line."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable


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


class LogThrottle:
    """At most one log line per `every` seconds for each kind of failure, with a count of the rest.

    A database outage fails every request the same way; a traceback per request (33,000 lines in
    12 s, measured) buries the one line an operator needs. The first occurrence is logged at once;
    later ones within the window are counted and reported with the next line of that kind."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def reset(self) -> None:
        """Forget what was logged (a test that counts lines starts from a clean window)."""
        with self._lock:
            self._last.clear()
            self._suppressed.clear()

    def __call__(
        self, logger: logging.Logger, kind: str, message: str, *args: object, level: int = logging.ERROR
    ) -> bool:
        """Log `message % args` unless `kind` was logged less than `every` seconds ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} more like this in the last {self.every:.0f} s)"
        logger.log(level, message, *args)
        return True


# One per process, shared by the web error handler and the webhooks: an outage is one kind wherever
# it is met. Created here, not at start-up, because it holds no settings and touches nothing outside.
throttled = LogThrottle()


def failure_kind(area: str, exc: BaseException) -> str:
    """The throttling key of a failure: where it happened and what it was, never its changing text."""
    return f"{area}:{type(exc).__module__}.{type(exc).__qualname__}"


def describe(exc: BaseException) -> str:
    """One line about an exception: its class and the first line of its message, cut short."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
