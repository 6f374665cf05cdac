#!/usr/bin/env python
"""Inbox benchmark: how fast the moderator workspace's reads are at a ministry's size.

    python bench/inbox_bench.py [--sqlite PATH] [--postgres URL] [--reps N]

Reads a database made by bench/generate_appeals.py (1,000,000 appeals, ~3,000,000 messages by
default; generate once, this only reads) through adaldyk_bots/appeal_query.py, exactly as the inbox
page, the JSON API and the export call it: the service's own engines (on SQLite the read-only engine
of storage/db.py), one session per request. Each scenario runs N times after one warm-up run (the
parameters rotate where they can, e.g. a different channel or unit each time) and prints p50 / p95
beside the target (100 ms) and the previous baseline measured on this machine with the JSON API of
before (issue 7). The machine's own ceiling comes from the same run: the raw driver (sqlite3 /
psycopg, no SQLAlchemy, no filter) answering `SELECT 1` and fetching the 50 newest appeals by
primary key. Last, the process's peak RSS: this process did what a web process does for these pages.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import ColumnElement, true  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from adaldyk_bots.appeal_query import InboxFilter, facet_counts, list_appeals  # noqa: E402
from adaldyk_bots.storage.db import make_engine, normalize_url, read_session  # noqa: E402
from adaldyk_bots.storage.models import (  # noqa: E402
    Appeal,
    AppealEvent,
    ChannelIdentity,
    Message,
    MessageVersion,
    OutboxItem,
    Unit,
)
from bench.generate_appeals import streets  # noqa: E402

TARGET_MS = 100.0
PAGE = 50
# Issue 7, "Benchmark": today's JSON API at 1,000,000 appeals on this machine (SQLite / PostgreSQL).
BASELINE = {
    "category": ("292 ms", "147 ms"),
    "overdue": ("278 ms", "209 ms"),
    "deep page": ("99 ms", "209 ms"),
    "search": ("1.5-5.6 s", "1.5-7.0 s"),
}
COMMON_WORD = "мусор"  # ~13 % of the appeals (Russian)
KAZAKH_WORD = "қоқыс"  # ~10 %, Kazakh letters
KAZAKH_MEDIUM = "түтін"  # ~4 %
PREFIX = "экол"  # экология, экологиялық, экологическая …


@dataclass
class Result:
    name: str
    p50: float
    p95: float
    rows: int
    baseline: str = ""


def timed(reps: int, run: Callable[[int], int]) -> tuple[float, float, int]:
    run(0)  # warm-up: the first read of a cold page cache is not what a working inbox sees
    times, rows = [], 0
    for i in range(reps):
        started = time.perf_counter()
        rows = run(i + 1)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)], rows


def ceiling(url: str, reps: int) -> list[Result]:
    """The raw driver on the same database: the least any page can cost on this machine right now."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.split("///", 1)[1])
        execute = conn.execute
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        execute = conn.execute
    out = []
    for name, sql in (
        ("ceiling: raw SELECT 1", "SELECT 1"),
        ("ceiling: raw 50 newest by id", f"SELECT * FROM appeal ORDER BY id DESC LIMIT {PAGE}"),
    ):
        p50, p95, n = timed(reps, lambda _i, sql=sql: len(execute(sql).fetchall()))
        out.append(Result(name, p50, p95, n))
    conn.close()
    return out


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def scenarios(engine: Any, seed: int) -> list[tuple[str, str, Callable[[int], int]]]:
    """(name, baseline key, run(i) -> rows): each run is one request's reads in a session of its own."""
    with read_session(engine) as s:
        unit_codes = [u.code for u in s.exec(select(Unit).where(col(Unit.code).like("%dept%")))]
        committees = [u for u in s.exec(select(Unit).where(col(Unit.code).like("committee_%")))]
        committee_ids = [u.id for u in committees if "dept" not in u.code]
        children: dict[int | None, list[int]] = {}
        for u in s.exec(select(Unit)):
            children.setdefault(u.parent_id, []).append(u.id)  # type: ignore[arg-type]
        max_id = s.exec(select(Appeal.id).order_by(col(Appeal.id).desc()).limit(1)).one()
        deep_open = _cursor_at(s, InboxFilter.from_query({}), 10_000)
        deep_all = _cursor_at(s, InboxFilter.from_query({"status": "all"}), 100_000)
    rare = streets(random.Random(seed), 20_000)
    rng = random.Random(1)

    def subtree(root: int) -> list[int]:
        out, todo = [], [root]
        while todo:
            u = todo.pop()
            out.append(u)
            todo.extend(children.get(u, []))
        return out

    officer_scopes = [col(Appeal.unit_id).in_(subtree(c)) for c in committee_ids]  # type: ignore[arg-type]

    def page(params: Callable[[int], dict[str, str]], *, scope: Callable[[int], ColumnElement[bool]] | None = None,  # noqa: E501
             after: str | None = None, user: int | None = None) -> Callable[[int], int]:  # fmt: skip
        def run(i: int) -> int:
            f = InboxFilter.from_query(params(i), user_id=user)
            with read_session(engine) as s:
                where = true() if scope is None else scope(i)
                return len(list_appeals(s, where, f, limit=PAGE, after=after).items)

        return run

    def counts(params: Callable[[int], dict[str, str]], *, scope: Callable[[int], ColumnElement[bool]] | None = None  # noqa: E501
               ) -> Callable[[int], int]:  # fmt: skip
        def run(i: int) -> int:
            with read_session(engine) as s:
                where = true() if scope is None else scope(i)
                total = facet_counts(s, where, InboxFilter.from_query(params(i)), user_id=7)["total"]
                return -1 if total is None else int(total)  # -1: too many matches to count

        return run

    def appeal_page(i: int) -> int:
        appeal_id = rng.randint(1, max_id)
        with read_session(engine) as s:
            number = s.exec(select(Appeal.number).where(Appeal.id == appeal_id)).one()
            return _appeal_page_reads(s, number)

    def fixed(params: dict[str, str]) -> Callable[[int], dict[str, str]]:
        return lambda _i: params

    channels = ["telegram", "vk", "whatsapp", "email", "instagram", "web", "phone", "facebook"]
    categories = ["complaint", "request", "proposal", "application", "gratitude", "other"]
    return [
        ("first page (open, newest activity)", "", page(fixed({}))),
        ("first page, sort=due", "", page(fixed({"sort": "due"}))),
        ("status=answered", "", page(fixed({"status": "answered"}))),
        ("status=all", "", page(fixed({"status": "all"}))),
        ("channel=<each>", "", page(lambda i: {"channel": channels[i % len(channels)]})),
        ("channel=<each>&status=all", "", page(lambda i: {"channel": channels[i % 8], "status": "all"})),
        ("unit=<department> (+ sub-units)", "", page(lambda i: {"unit": unit_codes[i % len(unit_codes)]})),
        ("unit=<committee>&status=all", "", page(lambda i: {"unit": f"committee_{i % 5}", "status": "all"})),
        ("category=<each>", "category", page(lambda i: {"category": categories[i % 6]})),
        ("category=<each>&status=all", "category", page(lambda i: {"category": categories[i % 6], "status": "all"})),  # noqa: E501
        ("language=kk", "", page(fixed({"language": "kk"}))),
        ("overdue=1", "overdue", page(fixed({"overdue": "1"}))),
        ("due_within=3", "", page(fixed({"due_within": "3"}))),
        ("assigned=me", "", page(lambda i: {"assigned": "me"}, user=7)),
        ("unassigned=1", "", page(fixed({"unassigned": "1"}))),
        ("officer scope: first page", "", page(fixed({}), scope=lambda i: officer_scopes[i % 5])),
        ("deep page: open, after 10,000", "deep page", page(fixed({}), after=deep_open)),
        ("deep page: status=all, after 100,000", "deep page", page(fixed({"status": "all"}), after=deep_all)),
        (f"search common word «{COMMON_WORD}», all", "search", page(fixed({"q": COMMON_WORD, "status": "all"}))),  # noqa: E501
        (f"search common word «{COMMON_WORD}», open", "search", page(fixed({"q": COMMON_WORD}))),
        (f"search Kazakh word «{KAZAKH_WORD}», all", "search", page(fixed({"q": KAZAKH_WORD, "status": "all"}))),  # noqa: E501
        (f"search Kazakh word «{KAZAKH_MEDIUM.upper()}», all", "search",
         page(fixed({"q": KAZAKH_MEDIUM.upper(), "status": "all"}))),  # fmt: skip
        ("search rare word (a street), all", "search", page(lambda i: {"q": rare[i * 97 % len(rare)], "status": "all"})),  # noqa: E501
        (f"search prefix «{PREFIX}», all", "search", page(fixed({"q": PREFIX, "status": "all"}))),
        ("search two words, all", "search", page(fixed({"q": "мусор свалка", "status": "all"}))),
        ("search a number ADL-2025-…", "search", page(lambda i: {"q": f"ADL-2025-{rng.randint(1, 300000):06d}", "status": "all"})),  # noqa: E501
        ("search bare number 0…", "search", page(lambda i: {"q": f"{rng.randint(1, 300000):06d}", "status": "all"})),  # noqa: E501
        ("search common word, officer scope", "search",
         page(fixed({"q": COMMON_WORD}), scope=lambda i: officer_scopes[i % 5])),  # fmt: skip
        ("facet counts (open)", "", counts(fixed({}))),
        ("facet counts, officer's unit", "", counts(lambda i: {"unit": f"committee_{i % 5}"})),
        (f"facet counts, q={COMMON_WORD} (not counted)", "", counts(fixed({"q": COMMON_WORD}))),
        ("facet counts, q=<rare word>", "", counts(lambda i: {"q": rare[i * 97 % len(rare)]})),
        ("facet counts, status=all", "", counts(fixed({"status": "all"}))),
        # The finished appeals' part from appeal_tally at its other grains: by units, and every column.
        ("facet counts, status=all, officer scope", "",
         counts(fixed({"status": "all"}), scope=lambda i: officer_scopes[i % 5])),  # fmt: skip
        ("facet counts, status=all&channel=<each>", "", counts(lambda i: {"status": "all", "channel": channels[i % 8]})),  # noqa: E501
        ("facet counts, status=all&unit=<committee>", "", counts(lambda i: {"status": "all", "unit": f"committee_{i % 5}"})),  # noqa: E501
        ("facet counts, status=all&assigned=<officer>", "", counts(fixed({"status": "all", "assigned": "7"}))),  # noqa: E501
        ("appeal page (its reads)", "", appeal_page),
    ]  # fmt: skip


def _cursor_at(s: Session, f: InboxFilter, depth: int) -> str | None:
    cursor = None
    for _ in range(depth // 500):
        cursor = list_appeals(s, true(), f, limit=500, after=cursor).next_cursor
        s.expunge_all()
    return cursor


def _appeal_page_reads(s: Session, number: str) -> int:
    """What the appeal page reads: the appeal, its thread with versions, history, deliveries, the
    citizen's identities and other appeals (web/api.py get_appeal and the appeal page)."""
    appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
    messages = s.exec(select(Message).where(Message.appeal_id == appeal.id).order_by(col(Message.id))).all()
    versions = s.exec(
        select(MessageVersion).where(col(MessageVersion.message_id).in_([m.id for m in messages]))
    ).all()
    events = s.exec(select(AppealEvent).where(AppealEvent.appeal_id == appeal.id)).all()
    outbox = s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal.id)).all()
    identities = s.exec(select(ChannelIdentity).where(ChannelIdentity.contact_id == appeal.contact_id)).all()
    others = s.exec(
        select(Appeal.number, Appeal.status)
        .where(Appeal.contact_id == appeal.contact_id, Appeal.id != appeal.id)
        .order_by(col(Appeal.id).desc())
        .limit(20)
    ).all()
    return 1 + len(messages) + len(versions) + len(events) + len(outbox) + len(identities) + len(others)


def bench(url: str, reps: int, seed: int, column: int, only: list[str]) -> list[Result]:
    url = normalize_url(url)
    engine = make_engine(url)
    with read_session(engine) as s:
        size = s.exec(select(Appeal.id).order_by(col(Appeal.id).desc()).limit(1)).one()
    print(f"\n== {url.split('://')[0]}: {size:,} appeals ({reps} runs each, 1 warm-up) ==", flush=True)
    results = ceiling(url, reps)
    for name, key, run in scenarios(engine, seed):
        if only and not any(o in name for o in only):
            continue
        p50, p95, rows = timed(reps, run)
        results.append(Result(name, p50, p95, rows, BASELINE[key][column] if key else ""))
        print(f"  {name:<48} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms", flush=True)
    engine.dispose()
    return results


def print_table(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    print(
        f"| {'scenario':<48} | {'p50 ms':>8} | {'p95 ms':>8} | {'target':>7} | {'before (p95)':>12} | rows |"
    )
    print(f"|{'-' * 50}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 14}|------|")
    for r in results:
        verdict = "" if r.name.startswith("ceiling") else ("ok" if r.p95 < TARGET_MS else "MISSED")
        print(
            f"| {r.name:<48} | {r.p50:8.1f} | {r.p95:8.1f} | {verdict:>7} | {r.baseline:>12} | {r.rows:>4} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sqlite", default="/work/wt/search-data/inbox.sqlite3", help="'' to skip")
    p.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/adaldyk_bench_inbox", help="'' to skip"
    )
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--only", action="append", default=[], help="run the scenarios whose name has this")
    p.add_argument("--seed", type=int, default=7, help="the generator's seed (to pick its rare words)")
    args = p.parse_args(argv)
    tables = []
    if args.sqlite:
        tables.append(("SQLite", bench(f"sqlite:///{args.sqlite}", args.reps, args.seed, 0, args.only)))
    if args.postgres:
        tables.append(("PostgreSQL", bench(args.postgres, args.reps, args.seed, 1, args.only)))
    for title, results in tables:
        print_table(title, results)
    current, peak = rss_mb()
    print(f"\nRSS of this process: {current:.0f} MB now, {peak:.0f} MB peak (target: web process < 300 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
