#!/usr/bin/env python
"""VK long-poll intake benchmark: how many community events per second the worker's receive loop stores.

    python bench/vk_longpoll.py [--updates N] [--per-citizen K] [--database-url URL]

The fake VK (connectors/vk/fake.py, in this process) is preloaded with N message_new events from N/K
citizens (K messages each, in rounds, so follow-ups join open appeals). A spawned process runs what
`adaldyk worker` runs for VK: the connector's own LongPoller.poll_once loop (batches of up to 100 events
as the fake serves them; each batch and its ts in one transaction, with the appeal workflow) against a
fresh SQLite file (or the given database) until all N are stored. It prints the figure; it asserts
nothing about time. `measure()` returns the same numbers for other scripts (bench/intake_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GROUP_ID = 227_000_777
TOKEN = "vk1.a.bench-community-token-not-real_0123456789"
TEXTS = [
    "Здравствуйте! Во дворе дома №{n} по улице Абая третью неделю не вывозят мусор, прошу принять меры.",
    "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр. Мекенжай: {n}.",
    "Добрый день. У реки в районе {n} незаконная свалка строительных отходов, пахнет на весь квартал.",
    "Құрметті министрлік! Саябақтағы ағаштар заңсыз кесіліп жатыр, үй нөмірі {n}. Шара қолдануды сұраймыз.",
]


def _child(settings_kw: dict[str, Any], n: int, timeout: float, conn: Any) -> None:
    """The worker's VK receive loop, timed from the first a_check to the last stored batch."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from adaldyk_bots.runtime import Runtime
    from adaldyk_bots.settings import Settings
    from connectors.vk.connector import VKConnector

    settings = Settings(_env_file=None, **settings_kw)  # type: ignore[call-arg]
    runtime = Runtime.build(settings)
    connector = runtime.connectors["vk"]
    assert isinstance(connector, VKConnector)

    async def main() -> None:
        stored, polls = 0, 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while stored < n and time.monotonic() < deadline:
            stored += await connector.poller.poll_once(runtime.intake) or 0
            polls += 1
        elapsed = time.perf_counter() - t0
        await connector.stop()
        conn.send((stored, elapsed, polls))

    try:
        asyncio.run(main())
    finally:
        runtime.engine.dispose()


def measure(*, updates: int = 5000, per_citizen: int = 1, database_url: str | None = None) -> dict[str, Any]:
    """Run one measurement; returns updates, seconds, updates_per_s, polls, database."""
    from adaldyk_bots.storage.db import make_engine
    from adaldyk_bots.storage.migrate import upgrade
    from connectors.vk.fake import FakeVK

    with tempfile.TemporaryDirectory(prefix="adaldyk-vk-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        fake = FakeVK(longpoll_batch=100).start()
        fake.add_group(GROUP_ID, TOKEN)
        try:
            # The poller's first session starts at VK's current position; a cursor just before it makes
            # the preloaded queue "what arrived while the worker was down", as after a restart.
            start_ts = fake.long_poll_position()
            _seed_cursor(url, str(start_ts))
            citizens = max(1, updates // per_citizen)
            for i in range(updates):
                round_no, c = divmod(i, citizens)
                text = TEXTS[(c + round_no) % len(TEXTS)].format(n=c % 997 + 1)
                fake.citizen_message(
                    3_000_000 + c, text, lang_id=97 if "Сәлем" in text or "Құрмет" in text else 0
                )
            settings_kw = {
                "database_url": url,
                "secret_key": "bench-secret-key-0123456789",
                "vk_token": TOKEN,
                "vk_group_id": GROUP_ID,
                "vk_api_url": fake.url,
                "vk_longpoll_wait": 1,
            }
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_child, args=(settings_kw, updates, 600.0, child), daemon=True)
            process.start()
            stored, elapsed, polls = parent.recv()
            process.join(30)
        finally:
            fake.stop()
    return {
        "updates": stored,
        "seconds": elapsed,
        "updates_per_s": stored / elapsed if elapsed else 0.0,
        "polls": polls,
        "database": "sqlite (WAL, synchronous=FULL)" if url.startswith("sqlite") else "postgresql",
    }


def _seed_cursor(url: str, ts: str) -> None:
    from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
    from adaldyk_bots.storage.models import ChannelCursor

    engine = make_engine(url)
    with unit_of_work(engine) as s:
        s.add(ChannelCursor(channel="vk", account=str(GROUP_ID), value=ts, updated_at=utcnow()))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=5000, help="events to store (default 5000)")
    parser.add_argument(
        "--per-citizen", type=int, default=1, help="messages per citizen (default 1: all new)"
    )
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args(argv)
    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    result = measure(updates=args.updates, per_citizen=args.per_citizen, database_url=args.database_url)
    kind = "new appeals" if args.per_citizen == 1 else f"{args.per_citizen} messages per citizen"
    print(
        f"VK long-poll intake ({kind}, {result['database']}): {result['updates']} updates in "
        f"{result['seconds']:.2f} s = {result['updates_per_s']:.0f} updates/s over {result['polls']} polls"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
