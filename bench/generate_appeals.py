#!/usr/bin/env python
"""Fill a database with a ministry's three years of appeals for bench/inbox_bench.py.

    python bench/generate_appeals.py --database-url sqlite:////work/wt/search-data/inbox.sqlite3
    python bench/generate_appeals.py --database-url postgresql://postgres@127.0.0.1:5432/adaldyk_bench_inbox

Default: 1,000,000 appeals with about 3,000,000 messages (1 to 6 each, 2 % of the citizens' messages
edited once), Kazakh, Russian and English sentences from bench/data/language_set.tsv with addresses on
~20,000 invented streets (the rare words), eight channels, a 206-unit tree (ministry → 5 committees →
100 departments → 100 subordinate organisations), 300 officers, statuses as they age (recent ones open,
older ones answered or closed, 2 % left open and overdue). Every appeal also has its `created` event
and its sent acknowledgement in the outbox, so the appeal page reads tables of a realistic size.

The database is made from scratch with the migrations (an existing SQLite file or PostgreSQL database
of that name is replaced), loaded in bulk — executemany in large transactions on SQLite, COPY on
PostgreSQL — with the secondary indexes, the search triggers and the full-text index built after the
load, then ANALYZEd; appeal_tally's triggers are off during the load and the tally is rebuilt after
it with the migration's own backfill (storage/tally.py). The rows are the same on both databases for
the same --seed. Generate once and reuse: the bench only reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from adaldyk_bots.domain import AppealStatus  # noqa: E402
from adaldyk_bots.storage import tally  # noqa: E402
from adaldyk_bots.storage.db import make_engine, normalize_url  # noqa: E402
from adaldyk_bots.storage.migrate import upgrade  # noqa: E402
from adaldyk_bots.storage.search_index import document  # noqa: E402

CORPUS = ROOT / "bench" / "data" / "language_set.tsv"
CHANNELS = [
    ("telegram", 35),
    ("vk", 15),
    ("whatsapp", 15),
    ("instagram", 10),
    ("facebook", 5),
    ("email", 10),
    ("web", 7),
    ("phone", 3),
]
LANGUAGES = [("kk", 45), ("ru", 50), ("en", 5)]
CATEGORIES = [
    ("complaint", 45),
    ("request", 20),
    ("proposal", 10),
    ("application", 10),
    ("corruption_report", 2),
    ("gratitude", 5),
    ("other", 8),
]
KK_FIRST = "Айгерім Ерлан Нұрлан Әсел Дәулет Ғалым Жанар Қайрат Мағжан Сәуле Төлеген Ұлжан Үміт Іңкәр Бауыржан Гүлнар Данияр Жансая Нұрсұлтан Әлия".split()  # noqa: E501
KK_LAST = "Сәтбаев Қасымов Әбілов Жұмабаев Нұрпейісов Төлеубаев Оспанов Ғабитов Құрманғалиев Серікбаев Мұқанов Бекмұханбетов Үсенов Ізбасаров Әлімжанов".split()  # noqa: E501
RU_FIRST = "Иван Ольга Сергей Наталья Алексей Елена Дмитрий Татьяна Андрей Марина Виктор Юлия".split()
RU_LAST = "Петров Иванов Смирнов Кузнецов Попов Соколов Лебедев Козлов Новиков Морозов Волков Фёдоров".split()
SYLLABLES = "ба бе ки ко ла лу ма мы на но са су та ты жа жо қа қо ға ғы ұл үр өз ән ір ең ан ар ас ат ай ық ім".split()  # noqa: E501
STREET_WORD = {"kk": "көшесі", "ru": "улица", "en": "street"}
OPEN = [s.value for s in AppealStatus if s.is_open]
YEARS = 3


@dataclass
class Sizes:
    appeals: int
    seed: int
    batch: int = 20_000


def weighted(rng: random.Random, items: list[tuple[str, int]], k: int) -> list[str]:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items], k=k)


def corpus() -> dict[str, list[str]]:
    by_language: dict[str, list[str]] = {"kk": [], "ru": [], "en": []}
    with CORPUS.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["expected"] in by_language and "no-letters" not in row["class"]:
                by_language[row["expected"]].append(row["text"])
    return by_language


def units() -> list[tuple[int, str, int | None, str, str]]:
    """(id, code, parent, name_ru, name_kk): the tree the appeals are routed in."""
    rows: list[tuple[int, str, int | None, str, str]] = [(1, "ministry", None, "Министерство", "Министрлік")]
    for c in range(5):
        committee = len(rows) + 1
        rows.append((committee, f"committee_{c}", 1, f"Комитет {c}", f"Комитет {c}"))
        for d in range(20):
            department = len(rows) + 1
            code = f"committee_{c}_dept_{d}"
            rows.append((department, code, committee, f"Департамент {c}.{d}", f"Департамент {c}.{d}"))
            rows.append((len(rows) + 1, f"{code}_org", department, f"Организация {c}.{d}", f"Ұйым {c}.{d}"))
    return rows


def streets(rng: random.Random, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))).capitalize())
    return sorted(out)


class Tables:
    """Column lists of the tables loaded, in the order the rows are built."""

    contact = ["id", "display_name", "language", "created_at"]
    channel_identity = ["id", "contact_id", "channel", "account", "external_id", "username"]
    conversation = [
        "id",
        "contact_id",
        "channel",
        "account",
        "chat_id",
        "kind",
        "last_inbound_at",
        "created_at",
    ]
    appeal = [
        "id", "number", "contact_id", "conversation_id", "channel", "language", "category", "status",
        "unit_id", "summary", "received_at", "registered_at", "due_at", "overdue", "answered_at",
        "created_at", "updated_at", "assignee_id", "last_activity_at",
    ]  # fmt: skip
    message = [
        "id", "conversation_id", "appeal_id", "raw_event_id", "direction", "external_key", "text",
        "attachments", "sent_at", "created_at", "stand_in_edited_at",
    ]  # fmt: skip
    message_version = ["id", "message_id", "raw_event_id", "text", "attachments", "edited_at", "created_at"]
    appeal_event = ["id", "appeal_id", "kind", "actor", "detail", "created_at"]
    outbox = [
        "id", "key", "channel", "account", "chat_id", "target_kind", "reply_to_key", "appeal_id", "purpose",
        "text", "state", "attempts", "parts_sent", "platform_message_ids", "next_attempt_at", "lease_until",
        "lease_owner", "last_error_code", "last_error_detail", "created_at", "sent_at",
    ]  # fmt: skip
    appeal_search = ["appeal_id", "document"]


def generate(sizes: Sizes, now: datetime) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """Batches of rows per table, deterministic for the seed."""
    rng = random.Random(sizes.seed)
    texts = corpus()
    street_names = streets(rng, 20_000)
    unit_rows = units()
    routable = [u[0] for u in unit_rows if "dept" in u[1]]
    start = now - timedelta(days=365 * YEARS)
    span = (now - start).total_seconds()
    seq_by_year: dict[int, int] = {}
    contacts: list[tuple[int, int, str, str, str]] = []  # (contact, conversation, channel, language, name)
    ids = {"contact": 0, "message": 0, "version": 0}
    n = sizes.appeals
    for first in range(1, n + 1, sizes.batch):
        out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in vars(Tables) if not t.startswith("_")}
        count = min(sizes.batch, n - first + 1)
        channels = weighted(rng, CHANNELS, count)
        languages = weighted(rng, LANGUAGES, count)
        categories = weighted(rng, CATEGORIES, count)
        for k in range(count):
            appeal_id = first + k
            received = start + timedelta(seconds=span * (appeal_id - 0.5) / n + rng.uniform(-30, 30))
            year = received.year
            seq_by_year[year] = seq = seq_by_year.get(year, 0) + 1
            number = f"ADL-{year}-{seq:06d}"
            if contacts and rng.random() < 0.3:
                contact_id, conversation_id, channel, language, name = rng.choice(contacts[-50_000:])
            else:
                channel, language = channels[k], languages[k]
                ids["contact"] += 1
                contact_id = conversation_id = ids["contact"]
                if language == "kk" or rng.random() < 0.3:
                    name = f"{rng.choice(KK_FIRST)} {rng.choice(KK_LAST)}"
                else:
                    name = f"{rng.choice(RU_FIRST)} {rng.choice(RU_LAST)}"
                username = f"user{contact_id}" if channel in ("telegram", "instagram") else None
                out["contact"].append((contact_id, name, None, received))
                out["channel_identity"].append(
                    (contact_id, contact_id, channel, "1", f"u{contact_id}", username)
                )
                out["conversation"].append(
                    (
                        conversation_id,
                        contact_id,
                        channel,
                        "1",
                        f"c{contact_id}",
                        "message",
                        received,
                        received,
                    )
                )
                contacts.append((contact_id, conversation_id, channel, language, name))
            age = (now - received).days
            status = _status(rng, age)
            due = received + timedelta(days=21)
            answered = status in ("answered", "closed")
            n_messages = rng.choices([1, 2, 3, 4, 5, 6], weights=[20, 25, 20, 15, 10, 10])[0]
            sent = received
            first_text = ""
            doc_parts: list[str | None] = [
                number,
                name,
                f"user{contact_id}" if channel in ("telegram", "instagram") else None,
            ]
            for m in range(n_messages):
                ids["message"] += 1
                outbound = answered and m == n_messages - 1 and n_messages > 1
                if outbound:
                    body = f"Ответ на обращение {number}: меры приняты."
                else:
                    body = " ".join(rng.choice(texts[language]) for _ in range(rng.randint(1, 2)))
                    if rng.random() < 0.3:
                        street = f"{rng.choice(street_names)} {STREET_WORD[language]}, {rng.randint(1, 200)}"
                        body = f"{body} {street}"
                    doc_parts.append(body)
                if m == 0:
                    first_text = body
                direction = "out" if outbound else "in"
                key = f"reply:{appeal_id}" if outbound else f"{appeal_id}-{m}"
                out["message"].append(
                    (
                        ids["message"],
                        conversation_id,
                        appeal_id,
                        None,
                        direction,
                        key,
                        body,
                        "[]",
                        sent,
                        sent,
                        None,
                    )
                )
                if not outbound and rng.random() < 0.02:
                    ids["version"] += 1
                    edit = f"{body} {rng.choice(texts[language])}"
                    out["message_version"].append(
                        (ids["version"], ids["message"], None, edit, "[]", sent + timedelta(minutes=5), sent)
                    )
                    doc_parts.append(edit)
                if m < n_messages - 1:
                    # Follow-ups come hours or days later, never after `now`.
                    sent = sent + min(timedelta(hours=rng.uniform(0.5, 72)), (now - sent) / 2)
            last_activity = min(sent, now)
            late = status in OPEN and due < now
            unit_id = rng.choice(routable) if (age > 2 or rng.random() < 0.5) else None
            if unit_id is not None and rng.random() < 0.5:
                unit_id += 1  # the department's subordinate organisation
            assignee = rng.randint(1, 300) if unit_id is not None and rng.random() < 0.6 else None
            out["appeal"].append(
                (
                    appeal_id, number, contact_id, conversation_id, channel, language, categories[k], status,
                    unit_id, first_text[:1000], received, received, due, late,
                    last_activity if answered else None, received, last_activity, assignee, last_activity,
                )
            )  # fmt: skip
            out["appeal_event"].append((appeal_id, appeal_id, "created", "citizen", "{}", received))
            out["outbox"].append(
                (
                    appeal_id, f"ack:{appeal_id}", channel, "1", f"c{conversation_id}", "message", None, appeal_id,  # noqa: E501
                    "ack", f"Ваше обращение зарегистрировано под номером {number}.", "sent", 1, 1,
                    json.dumps([str(appeal_id)]), received, None, None, None, None, received, received,
                )
            )  # fmt: skip
            out["appeal_search"].append((appeal_id, document(doc_parts)))
        out["_counters"] = [(y, s) for y, s in seq_by_year.items()]
        yield out


def _status(rng: random.Random, age_days: int) -> str:
    if age_days > 45:
        return rng.choices(
            ["answered", "closed", "rejected", "in_progress", "forwarded", "extended"],
            weights=[60, 30, 8, 1, 0.5, 0.5],
        )[0]
    return rng.choices(
        ["received", "in_progress", "forwarded", "extended", "answered", "closed"],
        weights=[25, 35, 5, 5, 25, 5],
    )[0]


# --- loading -----------------------------------------------------------------------------------------

BIG_TABLES = [t for t in vars(Tables) if not t.startswith("_")]


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, bool):
        return int(v)
    return v


class SqliteLoader:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-500000")
        names = ",".join(f"'{t}'" for t in BIG_TABLES)
        self.indexes = self.conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN ({names})"  # noqa: E501
        ).fetchall()
        self.triggers = self.conn.execute(
            # The search index's triggers and appeal_tally's (rebuilt after the load, as migration 0018 does).
            "SELECT name, sql FROM sqlite_master WHERE type='trigger'"
            " AND tbl_name IN ('appeal_search', 'appeal')"
        ).fetchall()
        for name, _ in self.indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        for name, _ in self.triggers:
            self.conn.execute(f'DROP TRIGGER "{name}"')

    def units(self, rows: list[tuple[Any, ...]], staff: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO unit (id, code, parent_id, name_ru, name_kk) VALUES (?,?,?,?,?)", rows
        )
        self.conn.executemany(
            "INSERT INTO staff_user (id, username, full_name, password_hash, role, unit_id, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            [tuple(_sqlite_value(v) for v in r) for r in staff],
        )
        self.conn.execute("COMMIT")

    def load(self, batch: dict[str, list[tuple[Any, ...]]]) -> None:
        self.conn.execute("BEGIN")
        for table in BIG_TABLES:
            columns = getattr(Tables, table)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            self.conn.executemany(sql, [tuple(_sqlite_value(v) for v in row) for row in batch[table]])
        self.conn.execute("COMMIT")

    def finish(self, counters: list[tuple[int, int]]) -> None:
        self.conn.executemany("INSERT INTO appeal_counter (year, last) VALUES (?, ?)", counters)
        for name, sql in self.indexes:
            step(f"index {name}")
            self.conn.execute(sql)
        step("full-text index (FTS5 rebuild)")
        self.conn.execute("INSERT INTO appeal_fts(appeal_fts) VALUES ('rebuild')")
        step("appeal_tally (the finished appeals' counts)")
        for sql in tally.rebuild_sql():
            self.conn.execute(sql)
        for _, sql in self.triggers:
            self.conn.execute(sql)
        step("ANALYZE")
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()


class PostgresLoader:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        # No FK triggers during the load, nor appeal_tally's (it is rebuilt in one pass at the end).
        self.conn.execute("SET session_replication_role = replica")
        self.conn.execute("SET maintenance_work_mem = '512MB'")
        self.indexes = self.conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public'"
            " AND i.tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
            " WHERE c.conname = i.indexname)",
            (BIG_TABLES,),
        ).fetchall()
        for name, _ in self.indexes:
            self.conn.execute(f'DROP INDEX "{name}"')

    def units(self, rows: list[tuple[Any, ...]], staff: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO unit (id, code, parent_id, name_ru, name_kk) VALUES (%s,%s,%s,%s,%s)", rows
            )
            cur.executemany(
                "INSERT INTO staff_user (id, username, full_name, password_hash, role, unit_id, created_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s)",
                staff,
            )

    def load(self, batch: dict[str, list[tuple[Any, ...]]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in BIG_TABLES:
                with cur.copy(f"COPY {table} ({', '.join(getattr(Tables, table))}) FROM STDIN") as copy:
                    for row in batch[table]:
                        copy.write_row(row)

    def finish(self, counters: list[tuple[int, int]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO appeal_counter (year, last) VALUES (%s, %s)", counters)
        step("appeal_tally (the finished appeals' counts)")
        with self.conn.transaction():
            for sql in tally.rebuild_sql():
                self.conn.execute(sql)
        for name, sql in self.indexes:
            step(f"index {name}")
            self.conn.execute(sql)
        for table in ("contact", "channel_identity", "conversation", "appeal", "message", "message_version",
                      "appeal_event", "outbox", "unit", "staff_user"):  # fmt: skip
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        step("VACUUM ANALYZE")
        self.conn.execute("VACUUM ANALYZE")
        self.conn.close()


_started = time.monotonic()


def step(what: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f} s] {what}", flush=True)


def fresh_database(url: str) -> str:
    """Create (or replace) the target and bring it to the schema; returns the normalised URL."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", required=True)
    p.add_argument("--appeals", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # fixed, so both databases hold the same rows
    url = fresh_database(args.database_url)
    step(f"schema ready: {make_url(url).render_as_string(hide_password=True)}")
    sqlite_path = make_url(url).database if url.startswith("sqlite") else None
    loader: SqliteLoader | PostgresLoader = SqliteLoader(sqlite_path) if sqlite_path else PostgresLoader(url)
    unit_rows = units()
    rng = random.Random(args.seed + 1)
    departments = [u[0] for u in unit_rows if "dept" in u[1]]
    staff = [
        (i, f"officer{i}", f"Officer {i}", "x", "officer", rng.choice(departments), now)
        for i in range(1, 301)
    ]
    loader.units(unit_rows, staff)
    counters: list[tuple[int, int]] = []
    total = {"appeals": 0, "messages": 0}
    for batch in generate(Sizes(args.appeals, args.seed), now):
        counters = batch.pop("_counters")  # type: ignore[assignment]
        loader.load(batch)
        total["appeals"] += len(batch["appeal"])
        total["messages"] += len(batch["message"])
        if total["appeals"] % 100_000 == 0 or total["appeals"] == args.appeals:
            step(f"{total['appeals']:,} appeals, {total['messages']:,} messages")
    loader.finish(counters)
    step("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
