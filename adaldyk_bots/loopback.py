"""An ASGI app served on a loopback port from a thread of its own: the base of the platform fakes.

The fakes (connectors/*/fake.py) and the sandbox run a platform's HTTP side inside the test or sandbox
process, so it must start in milliseconds, stop without waiting for long polls, and come back at the
same address after a restart (clients reconnect to the URL they were given).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

__all__ = ["LoopbackServer"]

_START_TIMEOUT_SECONDS = 5.0
_STOP_TIMEOUT_SECONDS = 10.0


class _Uvicorn(uvicorn.Server):
    """uvicorn.Server that notices should_exit at once instead of on its 0.1 s tick (fast per-test stop)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_event: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self.exit_event = asyncio.Event()
        # on_tick(0) refreshes the Date header on every tick, which is now once a second.
        while not await self.on_tick(0):
            try:
                await asyncio.wait_for(self.exit_event.wait(), 1.0)
            except TimeoutError:
                pass  # the tick keeps uvicorn's Date header fresh


class LoopbackServer:
    """Serves `self.app` at `self.url` from a daemon thread; `start()`/`stop()` or a `with` block.

    A subclass sets `app` in its `__init__` and may override three hooks, all run on the server's loop:
    `_on_serving` before the first request (restart background senders), `_on_closing` when a stop is
    asked, `_on_stopped` after the last request (cancel tasks, see `_cancel_tasks`). Other threads reach
    the loop through `call_in_loop`.

    Wake-ups: a handler that waits for news about `key` (a long poll, a webhook sender) awaits
    `self._wakeup(key).wait()`; whoever changes that state calls `_wake(key)` on the loop or
    `_notify(key)` from any thread. A stop wakes every waiter, with `_closing` already set.
    """

    app: ASGIApp

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, name: str = "loopback-server") -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._thread_name = name
        self._thread: threading.Thread | None = None
        self._server: _Uvicorn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False  # set on the loop thread when a stop begins; long polls answer at once
        # Loop-thread-only: one "something changed" event per key, replaced each time it fires.
        self._wakeups: dict[Hashable, asyncio.Event] = {}

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
        # it every answer waits ~40 ms for delayed ACKs (found by bench/intake_bench.py).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(256)
        # Remember the bound port so a restarted server comes back at the same URL (clients reconnect).
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,  # don't let uvicorn reconfigure the host process's logging
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        server = self._server = _Uvicorn(config)
        self._closing = False
        thread = self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(server, sock)), name=self._thread_name, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._thread = self._server = None
                sock.close()
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        thread, server = self._thread, self._server
        if thread is None or server is None:
            return
        server.should_exit = True
        self.call_in_loop(self._begin_shutdown)
        thread.join(timeout=_STOP_TIMEOUT_SECONDS)
        self._thread = self._server = self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def call_in_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` on the server's loop soon; nothing when it is not running (then nobody
        can be waiting on it)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop closed between the check and the call: same as not running

    # --- wake-ups ---------------------------------------------------------------------------------------

    def _wakeup(self, key: Hashable) -> asyncio.Event:
        """(Loop thread) The event the next change of `key` sets."""
        event = self._wakeups.get(key)
        if event is None:
            event = self._wakeups[key] = asyncio.Event()
        return event

    def _wake(self, key: Hashable) -> None:
        """(Loop thread) Wake everyone waiting on `key`."""
        event = self._wakeups.pop(key, None)
        if event is not None:
            event.set()

    def _notify(self, key: Hashable) -> None:
        """(Any thread) Wake everyone waiting on `key`."""
        self.call_in_loop(self._wake, key)

    @staticmethod
    async def _cancel_tasks(tasks: Iterable[asyncio.Task[None] | None]) -> None:
        running = [task for task in tasks if task is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # --- hooks ------------------------------------------------------------------------------------------

    async def _on_serving(self) -> None:
        """On the loop, before the first request."""

    def _on_closing(self) -> None:
        """On the loop, when a stop is asked (after every wake-up was set): answer whatever else waits
        instead of holding the graceful shutdown for its whole timeout."""

    async def _on_stopped(self) -> None:
        """On the loop, after the server stopped taking requests."""

    # --- the loop thread --------------------------------------------------------------------------------

    async def _serve(self, server: _Uvicorn, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeups = {}
        await self._on_serving()
        try:
            await server.serve(sockets=[sock])
        finally:
            await self._on_stopped()

    def _begin_shutdown(self) -> None:
        self._closing = True
        for key in list(self._wakeups):
            self._wake(key)
        self._on_closing()
        server = self._server
        if server is not None and server.exit_event is not None:
            server.exit_event.set()
