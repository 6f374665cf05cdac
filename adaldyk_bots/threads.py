"""Blocking database writes called from async code run on threads of their own, never the shared pool.

The web server runs every sync handler (health, API reads) on one pool of 40 threads. Webhooks used to
store through that pool too: on SQLite, with one writer at a time, a burst of large bodies left all
40 threads waiting for the write lock, and /healthz and API reads waited 14-30 s for a thread (measured,
issue 6). `run_write` gives writes their own, smaller set of threads: past it, a waiting write is a
suspended coroutine, which costs nothing, and the shared pool stays free for reads.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

__all__ = ["WRITE_THREADS", "run_write"]

P = ParamSpec("P")
T = TypeVar("T")

# How many stores may wait for the group committer at once, and so how large one commit's group can
# grow: only a group's leader holds a database connection, the others wait for its commit. With 10 the
# groups stopped at 10 and the webhook bench at 907 new appeals/s; with 32, 9.5 stores per commit on
# average and 1,261/s (bench/README.md). Still below the shared pool's 40 threads, which reads keep.
WRITE_THREADS = 32

# A limiter belongs to the event loop it was first used on; tests and the sandbox run several loops.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = weakref.WeakKeyDictionary()


async def run_write(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the blocking `func(*args, **kwargs)` (e.g. `intake.store`) on a write thread; return its result."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(WRITE_THREADS)
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs), limiter=limiter)
