"""The VK API through vk-api, wrapped: our host, a request-time rate cap, no silent retries, typed errors.

vk-api (python273/vk_api 11.10, `VkApi.method`) posts to the hard-coded `https://api.vk.ru/method/<m>`, with
no timeout, under one lock, and on error 6 sleeps half a second and tries again by itself. We keep its
request building and error envelope handling and change the rest by composition, not subclassing:
a requests adapter mounted on that prefix sends to ADALDYK_VK_API_URL with a timeout and spaces the
requests as they leave (our cap per community token); the error-6 handler is removed so the dispatcher
sees every "too many requests" and pauses the whole community.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
import vk_api
from jconfig.memory import MemoryConfig
from requests.adapters import BaseAdapter, HTTPAdapter
from vk_api.exceptions import TOO_MANY_RPS_CODE, ApiError, ApiHttpError, Captcha

__all__ = ["VKClient", "VKError", "derive_random_id"]

# The host vk-api 11.10 posts every method call to (vk_api/vk_api.py, VkApi.method).
LIBRARY_API_PREFIX = "https://api.vk.ru/"


class VKError(Exception):
    """A VK API error answer ({"error": {"error_code", "error_msg", ...}}) or a transport failure.

    `code` is VK's error_code; transport problems use negative codes: -1 timeout, -2 network, -3 a non-2xx
    HTTP status, -4 an answer that is not the JSON envelope."""

    TIMEOUT, NETWORK, HTTP, BAD_RESPONSE = -1, -2, -3, -4

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


def derive_random_id(idempotency_key: str, *, salt: str = "") -> int:
    """messages.send `random_id` from the outbox key: the same key always gives the same id, so VK itself
    drops a repeated send ("проверка уникальности за всю историю сообщений", platforms.md §2b).

    63 bits (VK: "используйте большой диапазон (до int64)"): with 31 bits, a ministry's yearly volume
    would already make two keys collide, and VK would silently swallow the second message. The salt is
    the installation's secret, so two databases writing to one community never share ids."""
    digest = hashlib.blake2b(f"{salt}\x00{idempotency_key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1  # positive, never 0 (0 asks VK not to check)


class _Spacing:
    """At most `per_second` request starts in any second: each start waits for its slot, 1/per_second
    after the previous one (a token bucket of one token). Measured where VK measures, as requests leave."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:  # slots are handed out in order; sleeping inside keeps them so
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
            if start > now:
                time.sleep(start - now)


class _RoutedAdapter(BaseAdapter):
    """Sends what vk-api addresses to api.vk.ru to the configured API base, spaced, always with a timeout."""

    def __init__(self, base_url: str, timeout: float, spacing: _Spacing) -> None:
        super().__init__()
        self._base = base_url.rstrip("/") + "/"
        self._timeout = timeout
        self._spacing = spacing
        self._inner = HTTPAdapter(pool_maxsize=4)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert request.url is not None
        request.url = self._base + request.url[len(LIBRARY_API_PREFIX) :]
        self._spacing.wait()
        if not kwargs.get("timeout"):
            kwargs["timeout"] = self._timeout
        return self._inner.send(request, **kwargs)

    def close(self) -> None:
        self._inner.close()


class VKClient:
    """Blocking calls under vk-api's own lock; `call` runs them in a worker thread for the event loop."""

    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        api_version: str,
        requests_per_second: float,
        timeout: float = 10.0,
    ) -> None:
        self.session = requests.Session()
        self.session.mount(
            LIBRARY_API_PREFIX, _RoutedAdapter(api_url, timeout, _Spacing(requests_per_second))
        )
        self._vk = vk_api.VkApiGroup(
            token=token,
            api_version=api_version,
            session=self.session,
            config=MemoryConfig,  # the default reads ./vk_config.v2.json at start; a group token needs none
        )
        # vk-api's own spacing counts from the previous *answer*, which wastes the round trip; the
        # adapter's spacing above counts from the previous start, for every method alike.
        self._vk.RPS_DELAY = 0.0
        # Its error-6 handler sleeps and retries inside the call; we want the answer, so the dispatcher
        # pauses the community and the row shows why it waited.
        self._vk.error_handlers.pop(TOO_MANY_RPS_CODE, None)

    def call_blocking(self, method: str, params: Mapping[str, Any]) -> Any:
        try:
            return self._vk.method(method, dict(params))
        except Captcha as exc:
            raise VKError(14, f"Captcha needed ({exc.get_url()})") from None
        except ApiError as exc:
            error = exc.error if isinstance(exc.error, dict) else {}
            raise VKError(int(exc.code), str(error.get("error_msg", "unknown error"))) from None
        except ApiHttpError as exc:
            raise VKError(VKError.HTTP, f"HTTP {exc.response.status_code} from the VK API") from None
        except requests.Timeout:
            raise VKError(VKError.TIMEOUT, "no answer from the VK API in time") from None
        except requests.RequestException as exc:
            raise VKError(VKError.NETWORK, f"{type(exc).__name__}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            # Not the {"response": ...} / {"error": ...} envelope (a proxy's HTML page, a cut answer).
            raise VKError(VKError.BAD_RESPONSE, f"unexpected answer: {type(exc).__name__}: {exc}") from None

    async def call(self, method: str, **params: Any) -> Any:
        # vk-api blocks (requests, time.sleep, a lock): never on the event loop.
        return await asyncio.to_thread(self.call_blocking, method, params)

    def close(self) -> None:
        self.session.close()
