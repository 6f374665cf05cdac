"""Per-scope send budgets (chat, bot, community token), so that no dispatcher ever exceeds a platform limit.

The budgets are moving windows of the `limits` library. Without ADALDYK_REDIS_URL they live in this
process's memory, and one dispatcher per database sends (dispatcher.py elects it on PostgreSQL). With it
they live in Redis, and every dispatcher of the deployment draws on the same windows and the same pauses.
Redis that cannot be reached makes a send wait (BudgetUnavailable), never go out unmetered.

Windows are stamped with this machine's clock (`limits` does so): several machines need NTP.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from adaldyk_bots.ports import RateScope

# Two different chats of one bot answered 429 within this many seconds: the limit hit is the bot's, not
# the chats' (Telegram never says which, platforms.md §1c), so the whole bot pauses.
ACCOUNT_WIDE_WINDOW_SECONDS = 1.0
DEFAULT_RATE_LIMIT_PAUSE_SECONDS = 1.0  # a 429 without retry_after (older Bot API servers)
_REDIS_TIMEOUT_SECONDS = 1.0

# Keep the later of two pauses: another worker may have been told to wait longer.
_PAUSE_SCRIPT = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class BudgetUnavailable(Exception):
    """The shared budget store (Redis) cannot be reached; the message says why. Sends wait; nothing fails."""


class ScopeLimiter:
    """Moving windows per scope, plus the pauses a platform asked for (retry_after)."""

    def __init__(self, redis_url: str | None = None, *, key_prefix: str = "adaldyk") -> None:
        self.redis_url = redis_url
        self._prefix = key_prefix
        self._redis: Any = None
        storage: Storage
        if redis_url:
            options: dict[str, Any] = {
                "socket_timeout": _REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": _REDIS_TIMEOUT_SECONDS,
            }
            storage = RedisStorage(
                redis_url, key_prefix=f"{key_prefix}:limits", wrap_exceptions=True, **options
            )
            self._redis = storage.get_connection()
            self._pause_script = self._redis.register_script(_PAUSE_SCRIPT)
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        self._paused_until: dict[str, float] = {}
        self._limited_at: dict[str, dict[str, float]] = {}  # account scope -> target scope -> last 429

    @property
    def shared(self) -> bool:
        """True when every dispatcher of the deployment sees these budgets (Redis)."""
        return self._redis is not None

    @property
    def blocking(self) -> bool:
        """True when a call may wait on the network: run it off the event loop."""
        return self._redis is not None

    def check(self) -> None:
        """Raise BudgetUnavailable unless the budgets can be read and taken."""
        if self._redis is not None:
            self._guard(self._redis.ping)

    def try_acquire(self, scopes: Sequence[RateScope]) -> float | None:
        """Take one send from every scope, or none; None on success, else seconds to wait. Call it only
        when the send can leave at once: a budget taken early lets a burst out later."""
        wait: float | None = self._guard(self._try_acquire, scopes)
        return wait

    def pause(self, scope_key: str, seconds: float) -> None:
        self._guard(self._pause, scope_key, seconds)

    def paused_for(self, scope_key: str) -> float:
        """Seconds the scope is still paused (0 when it is not)."""
        until: float = self._guard(self._pauses, [scope_key])[0]
        return max(until - time.time(), 0.0)

    def rate_limited(self, scopes: Sequence[RateScope], seconds: float | None, scope: str | None) -> str:
        """The platform answered "too fast" for a send drawing on `scopes` (broadest first); pause what it
        is about and return that scope's key. `scope` is the connector's hint ("account" / "target").

        The rule when the connector cannot tell: the chat pauses; if another chat of the same account was
        rate-limited within ACCOUNT_WIDE_WINDOW_SECONDS, the limit is the account's and it pauses too."""
        if not scopes:
            return ""
        wait = seconds or DEFAULT_RATE_LIMIT_PAUSE_SECONDS
        broad, narrow = scopes[0], scopes[-1]
        if scope == "account" or len(scopes) == 1:
            self.pause(broad.key, wait)
            return broad.key
        self.pause(narrow.key, wait)
        if scope == "target":
            return narrow.key
        if self._guard(self._other_targets_limited, broad.key, narrow.key):
            self.pause(broad.key, wait)
            return broad.key
        return narrow.key

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    # --- implementation --------------------------------------------------------------------------------

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except StorageError as exc:
            raise BudgetUnavailable(f"Redis (ADALDYK_REDIS_URL) unreachable: {exc.storage_error}") from exc
        except Exception as exc:
            if self._redis is not None and _is_redis_error(exc):
                raise BudgetUnavailable(f"Redis (ADALDYK_REDIS_URL) unreachable: {exc}") from exc
            raise

    def _try_acquire(self, scopes: Sequence[RateScope]) -> float | None:
        now = time.time()
        wait = max((until - now for until in self._pauses([s.key for s in scopes])), default=0.0)
        if wait > 0:
            return wait
        items = [(RateLimitItemPerSecond(s.limit, s.per_seconds), s.key) for s in scopes]
        # Test the narrow scopes first, then hit broadest first: between workers each hit is atomic (a Lua
        # script in Redis), so a race can only waste a send of a narrower scope, never overdraw one.
        for item, key in items[1:]:
            if not self._limiter.test(item, key):
                return self._reset_in(item, key, now)
        for item, key in items:
            if not self._limiter.hit(item, key):
                return self._reset_in(item, key, now)
        return None

    def _reset_in(self, item: RateLimitItemPerSecond, key: str, now: float) -> float:
        reset_at, _remaining = self._limiter.get_window_stats(item, key)
        return max(reset_at - now, 0.05)

    def _pauses(self, keys: list[str]) -> list[float]:
        if self._redis is None:
            return [self._paused_until.get(key, 0.0) for key in keys]
        values = self._redis.mget([f"{self._prefix}:pause:{key}" for key in keys])
        return [float(value) if value else 0.0 for value in values]

    def _pause(self, scope_key: str, seconds: float) -> None:
        until = time.time() + seconds
        if self._redis is None:
            self._paused_until[scope_key] = max(self._paused_until.get(scope_key, 0.0), until)
            return
        key = f"{self._prefix}:pause:{scope_key}"
        self._pause_script(keys=[key], args=[repr(until), int(seconds * 1000) + 1000])

    def _other_targets_limited(self, broad_key: str, narrow_key: str) -> bool:
        now = time.time()
        since = now - ACCOUNT_WIDE_WINDOW_SECONDS
        if self._redis is None:
            recent = self._limited_at.setdefault(broad_key, {})
            recent[narrow_key] = now
            for key in [k for k, at in recent.items() if at < since]:
                del recent[key]
            return len(recent) > 1
        key = f"{self._prefix}:limited:{broad_key}"
        pipe = self._redis.pipeline()
        pipe.zadd(key, {narrow_key: now})
        pipe.zremrangebyscore(key, "-inf", since)
        pipe.zcard(key)
        pipe.expire(key, int(ACCOUNT_WIDE_WINDOW_SECONDS) + 10)
        return int(pipe.execute()[2]) > 1


def _is_redis_error(exc: Exception) -> bool:
    import redis  # present whenever a Redis URL is configured

    return isinstance(exc, redis.RedisError)
