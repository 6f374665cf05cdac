"""Per-scope send budgets (chat, bot, community token), so the dispatcher never exceeds a platform limit."""

from __future__ import annotations

import time
from collections.abc import Sequence

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from adaldyk_bots.ports import RateScope


class ScopeLimiter:
    """A moving window per scope (the `limits` library), plus pauses the platform asked for (retry_after).

    In-process memory: one dispatcher process owns sending. Running several workers needs a shared
    storage (limits supports Redis) and is future work."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._paused_until: dict[str, float] = {}

    def try_acquire(self, scopes: Sequence[RateScope]) -> float | None:
        """Take one send from every scope, or none of them; returns None on success, else seconds to wait."""
        now = time.time()
        wait = max((self._paused_until.get(s.key, 0.0) - now for s in scopes), default=0.0)
        if wait > 0:
            return wait
        items = [(RateLimitItemPerSecond(s.limit, s.per_seconds), s.key) for s in scopes]
        for item, key in items:
            if not self._limiter.test(item, key):
                reset_at, _remaining = self._limiter.get_window_stats(item, key)
                return max(reset_at - now, 0.05)
        for item, key in items:
            self._limiter.hit(item, key)
        return None

    def pause(self, scope_key: str, seconds: float) -> None:
        until = time.time() + seconds
        self._paused_until[scope_key] = max(self._paused_until.get(scope_key, 0.0), until)
