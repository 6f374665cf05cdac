"""LoopbackServer: the fakes' shared server starts fast, stops without waiting for long polls, and comes
back at the same address."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer


class _LongPoll(LoopbackServer):
    """GET /wait holds the request until woken or closing, like a platform's long poll."""

    def __init__(self) -> None:
        super().__init__(name="test-loopback")
        self.hooks: list[str] = []
        self._waiter: asyncio.Event | None = None
        self.app = Starlette(routes=[Route("/wait", self._wait), Route("/ping", self._ping)])

    async def _ping(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    async def _wait(self, request: Request) -> PlainTextResponse:
        self._waiter = asyncio.Event()
        if not self._closing:
            await asyncio.wait_for(self._waiter.wait(), 30)
        return PlainTextResponse("closing" if self._closing else "woken")

    def wake(self) -> None:
        self.call_in_loop(lambda: self._waiter.set() if self._waiter else None)

    async def _on_serving(self) -> None:
        self.hooks.append("serving")

    def _on_closing(self) -> None:
        self.hooks.append("closing")
        if self._waiter is not None:
            self._waiter.set()

    async def _on_stopped(self) -> None:
        self.hooks.append("stopped")


def test_serves_on_loopback_and_restarts_at_the_same_address() -> None:
    server = _LongPoll()
    server.call_in_loop(lambda: None)  # not running: nothing to do, no error
    with server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        url = server.url
        assert httpx.get(f"{url}/ping", trust_env=False).text == "pong"
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    assert not server.running
    assert server.hooks == ["serving", "closing", "stopped"]
    with server:
        assert server.url == url
        assert httpx.get(f"{url}/ping", trust_env=False).text == "pong"


def test_call_in_loop_reaches_waiters_and_stop_answers_them_at_once() -> None:
    with _LongPoll() as server:
        answers: list[str] = []
        client = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{server.url}/wait", trust_env=False, timeout=30).text)
        )
        client.start()
        time.sleep(0.3)
        server.wake()
        client.join(5)
        assert answers == ["woken"]

        client = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{server.url}/wait", trust_env=False, timeout=30).text)
        )
        client.start()
        time.sleep(0.3)
        started = time.monotonic()
        server.stop()
        client.join(5)
        assert time.monotonic() - started < 3, "stop waited for the long poll"
        assert answers == ["woken", "closing"]
