#!/usr/bin/env python
"""Audit log benchmark: appends per second (one event per transaction, as a page view or a status change
writes it), alone and from several processes at once, and how fast `audit verify` walks the chain.

    python bench/audit_bench.py [--events N] [--writers W] [--database-url URL]

A fresh database each run: a temporary SQLite file by default, or a scratch database on the PostgreSQL
server of --database-url (dropped at the end). Prints figures; asserts nothing about time. The chain is
verified at the end (it must be intact with every writer's events in it).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from adaldyk_bots import audit
from adaldyk_bots.storage.db import make_engine, read_session, unit_of_work
from adaldyk_bots.storage.migrate import upgrade
from adaldyk_bots.storage.scratch import ScratchDatabase


def _append(url: str, n: int, actor: str) -> None:
    engine = make_engine(url)
    try:
        for i in range(n):
            with unit_of_work(engine) as s:
                audit.record(
                    s, actor=actor, action="appeal.view", subject=f"ADL-2026-{i:06d}", address="10.0.0.1"
                )
    finally:
        engine.dispose()


def _plain_writes(url: str, n: int) -> None:
    """The baseline: the same number of one-row write transactions without the audit log."""
    from adaldyk_bots.storage.db import utcnow
    from adaldyk_bots.storage.models import ChannelCursor

    engine = make_engine(url)
    try:
        for i in range(n):
            with unit_of_work(engine) as s:
                s.merge(ChannelCursor(channel="bench", account="bench", value=str(i), updated_at=utcnow()))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per writer (default 2000)")
    parser.add_argument("--writers", type=int, default=3, help="concurrent writer processes (default 3)")
    parser.add_argument("--database-url", default=None, help="postgresql://… for a scratch database there")
    args = parser.parse_args()
    scratch = None
    tmp = tempfile.TemporaryDirectory()
    if args.database_url:
        scratch = ScratchDatabase(args.database_url, prefix="adaldyk_audit_bench")
        url = scratch.url
    else:
        url = f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    try:
        started = time.perf_counter()
        _plain_writes(url, args.events)
        plain = time.perf_counter() - started
        print(f"baseline:     {args.events} one-row write transactions = {args.events / plain:,.0f}/s")
        started = time.perf_counter()
        _append(url, args.events, "user:alone")
        alone = time.perf_counter() - started
        print(f"one writer:   {args.events} appends in {alone:.2f} s = {args.events / alone:,.0f} appends/s")

        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_append, args=(url, args.events, f"user:w{i}")) for i in range(args.writers)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        together = time.perf_counter() - started
        total = args.events * args.writers
        print(
            f"{args.writers} writers:    {total} appends in {together:.2f} s ="
            f" {total / together:,.0f} appends/s (processes' start-up included)"
        )

        engine = make_engine(url)
        started = time.perf_counter()
        with read_session(engine) as s:
            result = audit.verify(s)
        walked = time.perf_counter() - started
        engine.dispose()
        print(
            f"verify:       {result.count} events in {walked:.2f} s = {result.count / walked:,.0f} events/s;"
            f" {'OK' if result.ok else f'BROKEN at {result.broken}'}"
        )
        if not result.ok or result.count != args.events * (args.writers + 1):
            raise SystemExit("the chain is not intact: the benchmark found a bug")
    finally:
        if scratch is not None:
            scratch.drop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
