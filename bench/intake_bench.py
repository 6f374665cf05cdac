#!/usr/bin/env python
"""Intake benchmark: how many citizens' updates the service stores per second, and how fast they are
acknowledged.

    python bench/intake_bench.py [--updates N] [--rate R] [--seconds S] [--database-url URL]

One run measures, on a fresh database (a temporary SQLite file by default):

1. raw insert rate: plain sqlite3 (or psycopg) INSERTs of a raw_event row, one per transaction and 100 per
   transaction, with the service's own pragmas (WAL, synchronous=FULL): the ceiling of this machine;
2. webhook path: the real service (`adaldyk web`: Runtime + Service, web only) in its own process on a
   loopback port; N real HTTP POSTs of distinct private-chat updates over 64 keep-alive connections;
   once with one update per chat (each opens an appeal) and once with 10 updates per chat (follow-ups);
2b. Meta webhook path (`--only meta`): the same service with the Facebook channel on; N Messenger
   messages as signed /webhooks/meta deliveries (escaped unicode, X-Hub-Signature-256), once 100 entries
   per POST and once one entry per POST, beside the Telegram webhook figure of the same run;
3. polling path: the fake Telegram preloaded with N pending updates, the connector's own `poll_once` loop
   (what the worker's poller runs) in its own process until all are stored; where the intake has a
   second step (Intake.process_received: the workflow after the durable store), it is then timed over
   the same events;
4. acknowledgement latency: the full service (web + worker, polling mode) against the fake Telegram;
   citizens write at a steady R messages/s from distinct chats; latency = time the fake accepted the
   sendMessage of the acknowledgement minus the time the message was put into the fake.

The service runs in a separate process (spawned), so it has its own interpreter lock and the load
generator and the fake Telegram (in this process) do not steal it. Every loop is bounded; the whole run
takes two to three minutes with the defaults. Nothing outside the temporary directory (or the bench
database on PostgreSQL, which is dropped at the end) is touched. bench/README.md explains the columns
and holds the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOKEN = "123456789:AAHfakeTokenForBenchOnly_abcdefghijk"  # the shape tests/conftest.py uses
BOT_ID = TOKEN.split(":")[0]
SECRET = "adaldyk-bench-webhook-secret"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CHANNEL = "telegram"

TARGET_WEBHOOK_PER_S = 1_000
TARGET_POLLING_PER_S = 5_000
TARGET_ACK_P99_S = 1.0

# Telegram's documented limits as the fake enforces them by default (and tests/conftest.py sets them).
TELEGRAM_LIMITS = {"chat_burst": 3, "chat_rate_per_s": 1.0, "bot_burst": 30, "bot_rate_per_s": 30.0}
# "lifted": the bot-wide budget opened (fake and dispatcher) to see the pipeline's own latency.
LIFTED_BOT_RATE = 1_000

# --------------------------------------------------------------------------------------------------------
# Realistic citizens' messages.

NAMES = [
    ("Айгүл", "Серікқызы", "kk"),
    ("Иван", "Петров", "ru"),
    ("Дәурен", "Омаров", "kk"),
    ("Наталья", "Ким", "ru"),
    ("Ерлан", "Жақсылықов", "kk"),
    ("Гульнара", "Ахметова", "ru"),
]
FIRST_TEXTS = [
    "Здравствуйте! Во дворе дома №{n} по улице Абая третью неделю не вывозят мусор, контейнеры "
    "переполнены, вокруг бегают бродячие собаки. Прошу принять меры и сообщить о результатах.",
    "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр, судан жағымсыз иіс "
    "шығады. Тексеру жүргізуді сұраймын. Мекенжай: Бейбітшілік көшесі, {n}.",
    "Добрый день. На перекрёстке Толе би и Ауэзова {n}-й день не работает светофор, дети переходят "
    "дорогу в школу с риском для жизни. Просим срочно починить.",
    "Құрметті әкім! Мектеп жанындағы көшеде жарық бір аптадан бері жанбайды, балалар қараңғыда үйге "
    "қайтады. Үй нөмірі {n}. Шара қабылдауыңызды сұраймыз.",
    "Прошу разобраться: в нашем доме ({n}) с прошлого месяца нет горячей воды, управляющая компания "
    "на звонки не отвечает, заявки не принимает.",
    "Біздің үйдің ({n}) шатыры ағып тұр, жоғарғы қабаттағы пәтерлерге су кіреді. Басқарушы компания "
    "ешқандай шара қабылдамай отыр. Көмектесуіңізді өтінеміз.",
]
FOLLOW_UP_TEXTS = [
    "Дополнение к обращению: подъезд 2, фото могу прислать. Вопрос {n} всё ещё не решён.",
    "Қосымша ақпарат: бұл мәселе әлі шешілген жоқ, көршілер де шағымданып жатыр ({n}).",
    "Уточняю: проблема повторяется каждый вечер после 20:00. Номер дома {n}.",
    "Тағы бір рет жазып отырмын, жауап күтемін. Мекенжай {n}.",
]


@dataclass(frozen=True)
class Msg:
    chat_id: int
    message_id: int
    text: str
    first_name: str
    last_name: str
    language_code: str


def plan_messages(n: int, per_chat: int, chat_base: int) -> list[Msg]:
    """n private-chat messages over ceil(n/per_chat) distinct chats, sent round-robin (message 1 of every
    chat, then message 2 ...), so that two messages of one chat are never in flight together."""
    chats = max(1, math.ceil(n / per_chat))
    out: list[Msg] = []
    for round_no in range(per_chat):
        for c in range(chats):
            if len(out) >= n:
                return out
            chat_id = chat_base + c
            first, last, lang = NAMES[c % len(NAMES)]
            pool = FIRST_TEXTS if round_no == 0 else FOLLOW_UP_TEXTS
            text = pool[(c + round_no) % len(pool)].format(n=c % 997 + 1)
            out.append(Msg(chat_id, round_no + 1, text, first, last, lang))
    return out


def make_update(update_id: int, m: Msg, date: int) -> dict[str, Any]:
    user = {
        "id": m.chat_id,
        "is_bot": False,
        "first_name": m.first_name,
        "last_name": m.last_name,
        "language_code": m.language_code,
    }
    chat = {"id": m.chat_id, "first_name": m.first_name, "last_name": m.last_name, "type": "private"}
    message = {"message_id": m.message_id, "from": user, "chat": chat, "date": date, "text": m.text}
    return {"update_id": update_id, "message": message}


def update_bodies(msgs: Sequence[Msg], first_update_id: int) -> list[bytes]:
    date = int(time.time())
    return [
        json.dumps(make_update(first_update_id + i, m, date), ensure_ascii=False).encode()
        for i, m in enumerate(msgs)
    ]


# --------------------------------------------------------------------------------------------------------
# Small utilities.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads) from /proc; NaN where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat); NaN without /proc."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return float("nan")


def postgres_cpu_seconds() -> float:
    """CPU of the local PostgreSQL server: every `postgres` process, with the reaped backends that the
    postmaster's cutime/cstime hold. Part of the system under test, not background load."""
    total = 0.0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        name, _, rest = data.partition("(")[2].rpartition(")")
        if name != "postgres":
            continue
        fields = rest.split()
        total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    """This process and its reaped children (the service processes are joined after every run)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; values may end in +inf (messages never acknowledged)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def make_fake(**limits: Any) -> Any:
    from connectors.telegram.fake import FakeTelegramServer

    fake = FakeTelegramServer(**limits).start()
    fake.add_bot(TOKEN)
    return fake


# --------------------------------------------------------------------------------------------------------
# Databases: a fresh, migrated one per measured run.


class BenchDatabases:
    def __init__(self, url: str | None, keep: bool = False) -> None:
        from sqlalchemy.engine import make_url

        from adaldyk_bots.storage.db import normalize_url

        self.keep = keep
        self.tag = uuid.uuid4().hex[:8]
        self._files: list[Path] = []
        self._made_dir: Path | None = None
        self.pg_name: str | None = None
        if url is None or url.startswith("sqlite:"):
            self.kind = "sqlite"
            if url is None:
                self.dir = self._made_dir = Path(tempfile.mkdtemp(prefix="adaldyk-bench-"))
                self.stem = "bench"
            else:
                database = make_url(url).database
                if not database or database == ":memory:":
                    raise SystemExit("--database-url: give a SQLite file path (sqlite:////path/file.sqlite3)")
                self.dir = Path(database).resolve().parent
                self.dir.mkdir(parents=True, exist_ok=True)
                self.stem = Path(database).stem
            # Service logs and files go to a directory of our own, never next to the user's file.
            self.workdir = self._made_dir or Path(tempfile.mkdtemp(prefix="adaldyk-bench-"))
            self._made_dir = self.workdir
            self._template = self.dir / f"{self.stem}-{self.tag}-template.sqlite3"
        elif url.startswith(("postgresql:", "postgresql+psycopg:")):
            self.kind = "postgresql"
            self.admin_url = make_url(normalize_url(url))
            self.workdir = self._made_dir = Path(tempfile.mkdtemp(prefix="adaldyk-bench-"))
        else:
            raise SystemExit("--database-url must be sqlite:///… or postgresql://…")

    # -- set-up and tear-down ----------------------------------------------------------------------------

    def setup(self) -> None:
        from adaldyk_bots.storage.db import make_engine
        from adaldyk_bots.storage.migrate import upgrade

        if self.kind == "sqlite":
            engine = make_engine(f"sqlite:///{self._template}")
            self._files.append(self._template)
            upgrade(engine)
            engine.dispose()
            return
        from adaldyk_bots.storage.scratch import ScratchDatabase

        try:
            self._scratch = ScratchDatabase(self.admin_url.render_as_string(False), prefix="adaldyk_bench")
        except ConnectionError as exc:
            raise SystemExit(str(exc)) from None
        self._admin = self._scratch.admin
        self.pg_name = self._scratch.name
        self.url = self._scratch.url

    def cleanup(self) -> None:
        if self.kind == "postgresql" and self.pg_name and not self.keep:
            self._scratch.drop()
        if not self.keep:
            for path in self._files:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            if self._made_dir is not None:
                shutil.rmtree(self._made_dir, ignore_errors=True)

    # -- per run -----------------------------------------------------------------------------------------

    def fresh(self, label: str) -> str:
        """An empty, migrated database for one measured run; returns its URL."""
        if self.kind == "sqlite":
            path = self.dir / f"{self.stem}-{self.tag}-{label}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self._template}{suffix}")
                if src.exists():
                    shutil.copy(src, f"{path}{suffix}")
            self._files.append(path)
            return f"sqlite:///{path}"
        from adaldyk_bots.storage.scratch import truncate_all

        truncate_all(self.url)
        return self.url

    @staticmethod
    def _sa_url(url: str) -> str:
        from adaldyk_bots.storage.db import normalize_url

        return normalize_url(url)

    def scalar(self, url: str, sql: str) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(self._sa_url(url))
        try:
            with engine.connect() as conn:
                return int(conn.execute(text(sql)).scalar_one())
        finally:
            engine.dispose()

    def describe(self) -> str:
        if self.kind == "sqlite":
            return (
                f"SQLite, a fresh migrated file per run in {self.dir} ({filesystem_of(self.dir)}); "
                "journal_mode=WAL, synchronous=FULL (adaldyk_bots/storage/db.py)"
            )
        return f"PostgreSQL {self.server_version()}, database {self.pg_name} (truncated between runs)"

    def server_version(self) -> str:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def settings_note(self) -> str:
        if self.kind != "postgresql":
            return ""
        from sqlalchemy import text

        with self._admin.connect() as conn:
            values = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("fsync", "synchronous_commit", "wal_sync_method")
            }
        return ", ".join(f"{k}={v}" for k, v in values.items())


# --------------------------------------------------------------------------------------------------------
# Result rows and printing.


@dataclass
class ThroughputRow:
    name: str
    updates: int
    seconds: float
    cpu_seconds: float = float("nan")
    check: str = ""
    target: float | None = None
    notes: list[str] = field(default_factory=list)
    verdict: str = "ceiling"  # shown when there is no target

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class LatencyRow:
    name: str
    offered: int
    offered_rate: float
    acked: int
    latencies: list[float]  # sorted; +inf for messages never acknowledged
    ack_rate: float
    violations: int
    backlog_at_end: int
    service_cpu: float  # share of one core the service used while citizens were writing
    skipped_ticks: int
    notes: list[str] = field(default_factory=list)


def _fmt_s(value: float, bound: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return f"> {bound:.0f} s"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def print_table(headers: list[str], rows: list[list[str]], align: str) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def print_throughput(rows: list[ThroughputRow], ceiling: float | None) -> None:
    table = []
    for r in rows:
        if r.target is None:
            verdict = r.verdict
        else:
            verdict = f"{'PASS' if r.rate >= r.target else 'MISS'} (>= {r.target:,})"
        ms_per = r.cpu_seconds / r.updates * 1000 if r.updates and not math.isnan(r.cpu_seconds) else None
        table.append(
            [
                r.name,
                f"{r.updates:,}",
                f"{r.seconds:.2f}",
                f"{r.rate:,.0f}",
                f"{r.rate / ceiling:.0%}" if ceiling else "-",
                f"{ms_per:.2f}" if ms_per is not None else "-",
                r.check,
                verdict,
            ]
        )
    print_table(
        ["run", "updates", "seconds", "updates/s", "of raw 1/txn", "server CPU ms/upd", "stored", "target"],
        table,
        "lrrrrrll",
    )


def print_latency(rows: list[LatencyRow], bound: float) -> None:
    table = []
    for r in rows:
        p99 = percentile(r.latencies, 0.99)
        verdict = f"{'PASS' if p99 < TARGET_ACK_P99_S else 'MISS'} (p99 < {TARGET_ACK_P99_S:.0f} s)"
        table.append(
            [
                r.name,
                f"{r.offered} @ {r.offered_rate:.0f}/s",
                f"{r.acked}",
                _fmt_s(percentile(r.latencies, 0.50), bound),
                _fmt_s(percentile(r.latencies, 0.95), bound),
                _fmt_s(p99, bound),
                _fmt_s(r.latencies[-1] if r.latencies else float("nan"), bound),
                f"{r.ack_rate:.0f}",
                str(r.violations),
                str(r.backlog_at_end),
                f"{r.service_cpu:.0%}",
                str(r.skipped_ticks),
                verdict,
            ]
        )
    print_table(
        [
            "run",
            "offered",
            "acked",
            "p50",
            "p95",
            "p99",
            "max",
            "acks/s",
            "429s",
            "backlog",
            "service CPU",
            "ticks skipped",
            "target",
        ],
        table,
        "lrrrrrrrrrrrl",
    )


# --------------------------------------------------------------------------------------------------------
# The service in its own (spawned) process.


def _child_logging(log_path: str) -> None:
    logging.basicConfig(
        filename=log_path,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _child_service(
    settings_kw: dict[str, Any], web: bool, worker: bool, lift_bot_limit: int, conn: Any, log_path: str
) -> None:
    """`adaldyk web` / `adaldyk serve` as the CLI runs them; stops when the parent sends "stop"."""
    _child_logging(log_path)
    if lift_bot_limit:
        # Only in this bench process's memory: opens the dispatcher's bot-wide budget (the chat one stays).
        import connectors.telegram.connector as telegram_connector

        telegram_connector.BOT_SENDS_PER_SECOND = lift_bot_limit
    from adaldyk_bots.runtime import Runtime, Service
    from adaldyk_bots.settings import Settings

    settings = Settings(_env_file=None, **settings_kw)
    runtime = Runtime.build(settings)
    service = Service(runtime, web=web, worker=worker)

    def wait_stop() -> None:
        try:
            conn.recv()
        except EOFError:
            pass
        while service._loop is None:  # noqa: SLF001 - started but not yet running
            time.sleep(0.01)
        service.stop()

    threading.Thread(target=wait_stop, daemon=True).start()
    try:
        asyncio.run(service.run())
    finally:
        runtime.engine.dispose()
    committer = getattr(runtime.intake, "committer", None)  # group commit, where the code has it
    if committer is None:
        conn.send(("stopped",))
    else:
        conn.send(("stopped", committer.committed_items, committer.committed_groups, committer.largest_group))


def _child_poll(
    settings_kw: dict[str, Any], n_warm: int, n: int, timeout: float, conn: Any, log_path: str
) -> None:
    """The worker's receive loop (TelegramConnector.poll_once, as its supervised loop calls it), timed."""
    _child_logging(log_path)
    from adaldyk_bots.runtime import Runtime
    from adaldyk_bots.settings import Settings

    settings = Settings(_env_file=None, **settings_kw)
    runtime = Runtime.build(settings)
    connector = runtime.connectors[CHANNEL]
    intake = runtime.intake

    async def main() -> None:
        await connector.start(intake, receive=False)  # getMe only; the loop below is the receiver
        stored, deadline = 0, time.monotonic() + timeout
        while stored < n_warm and time.monotonic() < deadline:
            stored += await connector.poll_once(intake) or 0  # type: ignore[attr-defined]
        conn.send(("ready", stored))
        if await asyncio.to_thread(conn.recv) != "go":  # the parent gave up ("stop")
            await connector.stop()
            return
        stored, polls = 0, 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while stored < n and time.monotonic() < deadline:
            stored += await connector.poll_once(intake) or 0  # type: ignore[attr-defined]
            polls += 1
        elapsed = time.perf_counter() - t0
        await connector.stop()
        conn.send(("done", stored, elapsed, polls))

    try:
        asyncio.run(main())
    finally:
        runtime.engine.dispose()


def _child_process(settings_kw: dict[str, Any], timeout: float, conn: Any, log_path: str) -> None:
    """Intake's second step, where the code has one (Intake.process_received: stored events become
    messages, appeals and acknowledgements), run until nothing is left; sends ("absent",) otherwise."""
    _child_logging(log_path)
    from adaldyk_bots.runtime import Runtime
    from adaldyk_bots.settings import Settings

    runtime = Runtime.build(Settings(_env_file=None, **settings_kw))
    process = getattr(runtime.intake, "process_received", None)
    try:
        if process is None:
            conn.send(("absent",))
            return
        # As the service's processor does before its first round (Service._process_round), where the code
        # has it: lingua's models are a start-up cost, not a per-appeal one.
        with contextlib.suppress(ImportError):
            from adaldyk_bots.language import preload_models

            preload_models()
        conn.send(("ready",))
        if conn.recv() != "go":
            return
        handled = 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            step = process()
            if not step:
                break
            handled += step
        conn.send(("done", handled, time.perf_counter() - t0))
    finally:
        runtime.engine.dispose()


class Child:
    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], log_path: Path) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.log_path = log_path
        self.proc = ctx.Process(target=target, args=(*args, child_conn, str(log_path)), daemon=True)

    def start(self) -> Child:
        self.proc.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def recv(self, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.05):
            if not self.proc.is_alive():
                raise RuntimeError(f"the service process died while waiting for {what}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        return self.conn.recv()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send("stop")
            except (OSError, BrokenPipeError):
                pass
            self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def skipped_ticks(self) -> int:
        """APScheduler's warnings that a dispatch tick was skipped because the previous one still ran."""
        return sum(1 for ln in self.log_lines() if "skipped: maximum number of running instances" in ln)

    def log_notes(self) -> list[str]:
        entries = [
            ln
            for ln in self.log_lines()
            if (" WARNING " in ln or " ERROR " in ln or " CRITICAL " in ln)
            and "skipped: maximum number of running instances" not in ln
        ]
        if not entries:
            return []
        first = entries[0].split(": ", 1)[-1][:160]
        return [f"service log: {len(entries)} warning/error lines, first: {first}"]


# --------------------------------------------------------------------------------------------------------
# 1. Raw insert ceiling.


def raw_rows(n: int, start: int) -> list[tuple[Any, ...]]:
    msgs = plan_messages(n, 1, chat_base=50_000_000 + start)
    bodies = update_bodies(msgs, first_update_id=10_000_000 + start)
    now = datetime.now(UTC)
    return [
        (CHANNEL, BOT_ID, f"update:{10_000_000 + start + i}", body, now, "processed", None, now)
        for i, body in enumerate(bodies)
    ]


RAW_INSERT = (
    "INSERT INTO raw_event (channel, account, dedup_key, payload, received_at, state, reason, processed_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)


def raw_sqlite(path: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    sql = RAW_INSERT.format(p="?")
    rows = [(*r[:4], r[4].isoformat(), r[5], r[6], r[7].isoformat()) for r in rows]
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        for row in rows[i : i + batch]:
            conn.execute(sql, row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def raw_postgres(url: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conninfo = {"host": u.host, "port": u.port or 5432, "user": u.username, "dbname": u.database}
    if u.password:
        conninfo["password"] = u.password
    sql = RAW_INSERT.format(p="%s")
    with psycopg.connect(**conninfo) as conn:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            with conn.cursor() as cur:
                for row in rows[i : i + batch]:
                    cur.execute(sql, row)
            conn.commit()
        return time.perf_counter() - t0


def run_raw(dbs: BenchDatabases, n: int) -> list[ThroughputRow]:
    out: list[ThroughputRow] = []
    # SQLite always: the issue asks for the machine's SQLite ceiling next to the service figures.
    sqlite_dir = dbs.dir if dbs.kind == "sqlite" else dbs.workdir
    for batch in (1, 100):
        if dbs.kind == "sqlite":
            url = dbs.fresh(f"raw{batch}")
            path = url.removeprefix("sqlite:///")
        else:
            path = str(sqlite_dir / f"raw-{batch}.sqlite3")
            _make_raw_sqlite_schema(path)
        rows = raw_rows(n, start=batch * 1_000_000)
        elapsed = raw_sqlite(path, rows, batch)
        stored = _sqlite_count(path)
        out.append(
            ThroughputRow(
                f"raw sqlite3 INSERT raw_event, {batch} row{'s' if batch > 1 else ''}/txn",
                n,
                elapsed,
                check=f"{stored}/{n}",
            )
        )
    if dbs.kind == "postgresql":
        for batch in (1, 100):
            url = dbs.fresh(f"rawpg{batch}")
            rows = raw_rows(n, start=batch * 2_000_000)
            elapsed = raw_postgres(dbs._sa_url(url), rows, batch)
            stored = dbs.scalar(url, "SELECT count(*) FROM raw_event")
            out.append(
                ThroughputRow(
                    f"raw psycopg INSERT raw_event, {batch} row{'s' if batch > 1 else ''}/txn",
                    n,
                    elapsed,
                    check=f"{stored}/{n}",
                )
            )
    return out


def _make_raw_sqlite_schema(path: str) -> None:
    from adaldyk_bots.storage.db import make_engine
    from adaldyk_bots.storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()


def _sqlite_count(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM raw_event").fetchone()[0])
    finally:
        conn.close()


def two_step_intake() -> bool:
    """Does this version store first and run the workflow later (Intake.process_received)?"""
    from adaldyk_bots.intake import Intake

    return hasattr(Intake, "process_received")


def run_processing(
    dbs: BenchDatabases,
    url: str,
    settings_kw: dict[str, Any],
    log_label: str,
    expected: int,
    timeout: float,
) -> ThroughputRow | None:
    """Time intake's second step over everything the run before stored (None where the code stores and
    runs the workflow in one transaction, so there is no second step)."""
    child = Child(_child_process, (settings_kw, timeout), dbs.workdir / f"{log_label}.log").start()
    try:
        first = child.recv(60, "the processor to start")
        if first[0] == "absent":
            return None
        cpu0 = proc_cpu_seconds(child.pid)
        child.conn.send("go")
        _tag, handled, elapsed = child.recv(timeout + 30, "the processor to handle every stored event")
        cpu = proc_cpu_seconds(child.pid) - cpu0
    finally:
        child.stop()
    left = dbs.scalar(url, "SELECT count(*) FROM raw_event WHERE state = 'received'")
    row = ThroughputRow(
        "  -> intake step two (workflow) on them",
        handled,
        elapsed,
        cpu_seconds=cpu,
        check=f"{handled}/{expected}, {left} left",
        verdict="(not in the targets)",
    )
    row.notes += [f"{row.name.strip()}: {note}" for note in child.log_notes()]
    return row


# --------------------------------------------------------------------------------------------------------
# 2. Webhook path.


class _HttpError(Exception):
    pass


async def _post_stream(
    port: int,
    path: str,
    items: Any,
    concurrency: int,
    counters: dict[str, int],
    sign: Callable[[bytes], bytes] | None = None,
) -> None:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: `concurrency` connections, each sending
    the next body as soon as the previous answer arrived. About 10x cheaper per request than httpx, so
    the load generator (sharing a 2-core machine with the service) is not what is measured. `sign` gives
    a body's own header line (Meta's X-Hub-Signature-256); default Telegram's secret-token header."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n").encode()
    telegram_header = f"{SECRET_HEADER}: {SECRET}\r\n".encode()

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            for body in items:
                signed = sign(body) if sign is not None else telegram_header
                request = head + signed + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                for _attempt in range(20):
                    try:
                        if writer is None:
                            reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        assert reader is not None
                        writer.write(request)
                        response = await reader.readuntil(b"\r\n\r\n")
                        status = int(response[9:12])
                        lowered = response.lower()
                        at = lowered.find(b"\r\ncontent-length:")
                        if at >= 0:
                            length = int(lowered[at + 17 : lowered.index(b"\r\n", at + 2)])
                            if length:
                                await reader.readexactly(length)
                        elif b"transfer-encoding: chunked" in lowered:
                            raise _HttpError("chunked answers are not expected from the webhook")
                        if b"\r\nconnection: close" in lowered:
                            writer.close()
                            reader = writer = None
                        if status == 200:
                            break
                        counters["retries"] += 1
                    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                        counters["retries"] += 1
                        if writer is not None:
                            writer.close()
                        reader = writer = None
                    await asyncio.sleep(0.05)  # Telegram too waits before it redelivers
                else:
                    counters["failed"] += 1
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))


async def post_all(
    port: int,
    warm: list[bytes],
    bodies: list[bytes],
    concurrency: int,
    limit_s: float,
    pid: int,
    path: str = "/webhooks/telegram",
    sign: Callable[[bytes], bytes] | None = None,
) -> tuple[float, float, float, int, int]:
    """POST every body, retrying non-2xx answers like Telegram does.

    Returns (seconds, server CPU seconds, client CPU seconds, retries, given up)."""
    counters = {"retries": 0, "failed": 0}
    await asyncio.wait_for(_post_stream(port, path, iter(warm), concurrency, counters, sign), limit_s)
    counters = {"retries": 0, "failed": 0}
    cpu0, own0 = proc_cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    await asyncio.wait_for(_post_stream(port, path, iter(bodies), concurrency, counters, sign), limit_s)
    elapsed = time.perf_counter() - t0
    cpu, own = proc_cpu_seconds(pid) - cpu0, time.process_time() - own0
    return elapsed, cpu, own, counters["retries"], counters["failed"]


def run_webhook(
    dbs: BenchDatabases, fake: Any, n: int, per_chat: int, concurrency: int, timeout: float
) -> list[ThroughputRow]:
    label = f"webhook{per_chat}"
    url = dbs.fresh(label)
    port = free_port()
    kw = {
        "database_url": url,
        "telegram_token": TOKEN,
        "telegram_api_url": fake.url,
        "telegram_mode": "webhook",
        "telegram_webhook_secret": SECRET,
        "public_url": f"http://127.0.0.1:{port}",
        "port": port,
        "log_level": "WARNING",
        "files_dir": str(dbs.workdir / "files"),
    }
    n_warm = max(concurrency, min(200, n // 10))
    # Warm-up: distinct chats (two first messages of one chat in flight together would collide on
    # uq_identity on PostgreSQL, a documented 503-and-redeliver, which is noise here).
    warm = update_bodies(plan_messages(n_warm, 1, chat_base=90_000_000), first_update_id=1_000_000)
    bodies = update_bodies(plan_messages(n, per_chat, chat_base=20_000_000), first_update_id=2_000_000)
    child = Child(_child_service, (kw, True, False, 0), dbs.workdir / f"{label}.log").start()
    try:
        wait_for(lambda: listening(port), 60, "the web server to listen")
        elapsed, cpu, client_cpu, retries, failed = asyncio.run(
            post_all(port, warm, bodies, concurrency, timeout, child.pid)
        )
    finally:
        child.stop()
    stopped = child.conn.recv() if child.conn.poll(1) else ()
    stored = dbs.scalar(url, "SELECT count(*) FROM raw_event") - n_warm
    if two_step_intake():
        # Step two does the same work whichever way an event came in: it is timed after polling.
        check = f"{stored}/{n}"
    else:
        check = f"{stored}/{n}, {dbs.scalar(url, 'SELECT count(*) FROM appeal') - n_warm} appeals"
    kind = "1 update/chat (each a new appeal)" if per_chat == 1 else f"{per_chat} updates/chat (follow-ups)"
    row = ThroughputRow(
        f"webhook, {kind}",
        n,
        elapsed,
        cpu_seconds=cpu,
        check=check,
        target=TARGET_WEBHOOK_PER_S,
    )
    row.notes.append(
        f"{row.name}: load generator used {client_cpu / elapsed:.0%} of a core "
        f"({client_cpu / n * 1000:.2f} ms/request), the service {cpu / elapsed:.0%}"
    )
    if retries or failed:
        row.notes.append(
            f"{row.name}: {retries} non-2xx answers or broken connections retried, {failed} given up"
        )
    if len(stopped) == 4:
        _tag, items, groups, largest = stopped
        row.notes.append(
            f"{row.name}: group commit: {items} stores (warm-up included) in {groups} transactions, "
            f"{items / max(1, groups):.1f} on average, at most {largest}"
        )
    row.notes += [f"{row.name}: {note}" for note in child.log_notes()]
    return [row]


# --------------------------------------------------------------------------------------------------------
# 2b. Meta webhook path (/webhooks/meta, Facebook Page messages): signed bodies of N entries each.

META_APP_SECRET = "adaldyk-bench-meta-app-secret"
META_PAGE = "1234567890123"
META_TOKEN = "EAAbenchPageToken"


def meta_bodies(msgs: Sequence[Msg], per_post: int, tag: str) -> list[bytes]:
    """Messenger `messages` deliveries as Meta sends them: escaped unicode, `per_post` entries a body."""
    now_ms = int(time.time() * 1000)
    entries = [
        {
            "id": META_PAGE,
            "time": now_ms,
            "messaging": [
                {
                    "sender": {"id": str(m.chat_id)},
                    "recipient": {"id": META_PAGE},
                    "timestamp": now_ms + i,
                    "message": {"mid": f"m_{tag}_{i}", "text": m.text},
                }
            ],
        }
        for i, m in enumerate(msgs)
    ]
    return [
        json.dumps({"object": "page", "entry": entries[at : at + per_post]}).encode("ascii")
        for at in range(0, len(entries), per_post)
    ]


def meta_signature(body: bytes) -> bytes:
    import hashlib
    import hmac

    digest = hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return f"X-Hub-Signature-256: sha256={digest}\r\n".encode()


def run_meta_webhook(
    dbs: BenchDatabases, n: int, per_post: int, concurrency: int, timeout: float
) -> list[ThroughputRow]:
    from connectors.meta.fake import FakeGraph

    label = f"meta{per_post}"
    url = dbs.fresh(label)
    port = free_port()
    fake = FakeGraph(app_secret=META_APP_SECRET).start()  # the token check at start
    fake.add_page(META_PAGE, META_TOKEN)
    kw = {
        "database_url": url,
        "meta_app_secret": META_APP_SECRET,
        "meta_verify_token": "bench-verify-token",
        "graph_api_url": fake.api_url,
        "facebook_page_id": META_PAGE,
        "facebook_page_token": META_TOKEN,
        "port": port,
        "log_level": "WARNING",
        "files_dir": str(dbs.workdir / "files"),
    }
    n_warm = max(concurrency, min(200, n // 10))
    warm = meta_bodies(plan_messages(n_warm, 1, chat_base=90_000_000), 1, tag="warm")
    bodies = meta_bodies(plan_messages(n, 1, chat_base=30_000_000), per_post, tag=label)
    child = Child(_child_service, (kw, True, False, 0), dbs.workdir / f"{label}.log").start()
    try:
        wait_for(lambda: listening(port), 60, "the web server to listen")
        elapsed, cpu, client_cpu, retries, failed = asyncio.run(
            post_all(
                port,
                warm,
                bodies,
                min(concurrency, len(bodies)),
                timeout,
                child.pid,
                path="/webhooks/meta",
                sign=meta_signature,
            )
        )
    finally:
        child.stop()
        fake.stop()
    stored = dbs.scalar(url, "SELECT count(*) FROM raw_event") - n_warm
    kind = "1 entry/POST" if per_post == 1 else f"{per_post}-entry signed batch/POST"
    row = ThroughputRow(
        f"meta webhook, {kind}",
        n,
        elapsed,
        cpu_seconds=cpu,
        check=f"{stored}/{n}",
        target=TARGET_WEBHOOK_PER_S,
    )
    row.notes.append(
        f"{row.name}: {len(bodies)} POSTs; load generator used {client_cpu / elapsed:.0%} of a core, "
        f"the service {cpu / elapsed:.0%}"
    )
    if retries or failed:
        row.notes.append(
            f"{row.name}: {retries} non-2xx answers or broken connections retried, {failed} given up"
        )
    row.notes += [f"{row.name}: {note}" for note in child.log_notes()]
    return [row]


# --------------------------------------------------------------------------------------------------------
# 3. Polling path.


def inject_all(fake: Any, msgs: Sequence[Msg], first_update_id: int) -> None:
    date = int(time.time())
    for i, m in enumerate(msgs):
        fake.inject_update(TOKEN, make_update(first_update_id + i, m, date))


def run_polling(
    dbs: BenchDatabases, n: int, per_chat: int, timeout: float, step_two: bool = True
) -> list[ThroughputRow]:
    label = f"polling{per_chat}"
    url = dbs.fresh(label)
    fake = make_fake(**TELEGRAM_LIMITS)
    kw = {
        "database_url": url,
        "telegram_token": TOKEN,
        "telegram_api_url": fake.url,
        "telegram_mode": "polling",
        "telegram_poll_timeout": 1,
        "log_level": "WARNING",
        "files_dir": str(dbs.workdir / "files"),
    }
    n_warm = 100
    inject_all(fake, plan_messages(n_warm, per_chat, chat_base=91_000_000), first_update_id=1_000_000)
    child = Child(_child_poll, (kw, n_warm, n, timeout), dbs.workdir / f"{label}.log").start()
    try:
        child.recv(60, "the poller to start and store the warm-up batch")
        t_inject = time.perf_counter()
        inject_all(fake, plan_messages(n, per_chat, chat_base=30_000_000), first_update_id=2_000_000)
        t_inject = time.perf_counter() - t_inject
        cpu0 = proc_cpu_seconds(child.pid)
        child.conn.send("go")
        _tag, stored_seen, elapsed, polls = child.recv(timeout + 30, "the poller to store every update")
        cpu = proc_cpu_seconds(child.pid) - cpu0
    finally:
        child.stop()
        fake.stop()
    stored = dbs.scalar(url, "SELECT count(*) FROM raw_event") - n_warm
    step_two_row = (
        run_processing(dbs, url, kw, f"{label}-step-two", n + n_warm, timeout) if step_two else None
    )
    check = f"{stored}/{n}"
    if step_two_row is not None:
        appeals = dbs.scalar(url, "SELECT count(*) FROM appeal") - math.ceil(n_warm / per_chat)
        check += f", {appeals} appeals"
    kind = "1 update/chat (each a new appeal)" if per_chat == 1 else f"{per_chat} updates/chat (follow-ups)"
    row = ThroughputRow(
        f"polling, {kind}",
        n,
        elapsed,
        cpu_seconds=cpu,
        check=check,
        target=TARGET_POLLING_PER_S,
    )
    row.notes.append(
        f"{row.name}: {polls} getUpdates rounds of <= 100; "
        f"preloading the fake took {t_inject:.1f} s (untimed)"
    )
    if stored_seen != n:
        row.notes.append(f"{row.name}: the poller reported {stored_seen} stored before its deadline")
    row.notes += [f"{row.name}: {note}" for note in child.log_notes()]
    return [row] if step_two_row is None else [row, step_two_row]


# --------------------------------------------------------------------------------------------------------
# 4. Acknowledgement latency.


def run_latency(
    dbs: BenchDatabases, limits: str, interval: float, rate: float, seconds: float, drain: float
) -> LatencyRow:
    label = f"latency-{limits}-{interval}"
    url = dbs.fresh(label.replace(".", "_"))
    fake_limits = dict(TELEGRAM_LIMITS)
    lift = 0
    if limits == "lifted":
        fake_limits.update(bot_burst=LIFTED_BOT_RATE, bot_rate_per_s=float(LIFTED_BOT_RATE))
        lift = LIFTED_BOT_RATE
    fake = make_fake(**fake_limits)
    port = free_port()
    kw = {
        "database_url": url,
        "telegram_token": TOKEN,
        "telegram_api_url": fake.url,
        "telegram_mode": "polling",
        "port": port,
        "dispatch_interval_seconds": interval,
        "log_level": "WARNING",
        "files_dir": str(dbs.workdir / "files"),
    }
    child = Child(_child_service, (kw, True, True, lift), dbs.workdir / f"{label}.log").start()
    total = int(rate * seconds)
    inject_at: dict[int, float] = {}
    try:
        wait_for(lambda: listening(port), 60, "the web server to listen")
        wait_for(lambda: fake.get_updates_calls >= 1, 30, "the poller's first getUpdates")
        # Warm-up: three citizens, wait for their acknowledgements (not measured).
        for i in range(3):
            m = plan_messages(1, 1, chat_base=92_000_000 + i)[0]
            fake.citizen_message(TOKEN, chat_id=m.chat_id, text=m.text, first_name=m.first_name)
        wait_for(lambda: len(fake.sent_messages(TOKEN)) >= 3, 30, "the warm-up acknowledgements", 0.05)

        msgs = plan_messages(total, 1, chat_base=40_000_000)
        cpu0 = proc_cpu_seconds(child.pid)
        t0 = time.monotonic()
        for i, m in enumerate(msgs):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            inject_at[m.chat_id] = time.monotonic()
            fake.citizen_message(
                TOKEN,
                chat_id=m.chat_id,
                text=m.text,
                first_name=m.first_name,
                last_name=m.last_name,
                language_code=m.language_code,
            )
        t_last = time.monotonic()
        service_cpu = (proc_cpu_seconds(child.pid) - cpu0) / max(t_last - t0, 1e-9)

        delivered: list[dict[str, Any]] = []

        def acked() -> dict[int, float]:
            delivered[:] = [sent for sent in fake.sent_messages(TOKEN) if sent["chat_id"] in inject_at]
            first: dict[int, float] = {}
            for sent in delivered:
                first.setdefault(sent["chat_id"], sent["at"])
            return first

        deadline = t_last + drain
        acks = acked()
        rate_so_far = len(acks) / max(t_last - t0, 1e-9)
        drain_skipped = total - len(acks) > 2 * rate_so_far * drain
        if drain_skipped:
            deadline = t_last  # the backlog cannot clear in the drain window: waiting changes nothing
        while len(acks) < total and time.monotonic() < deadline:
            time.sleep(0.1)
            acks = acked()
        failed_attempts = sum(
            1 for a in list(fake.send_attempts) if a.get("chat_id") in inject_at and not a.get("ok")
        )
        # Rows not yet handed to the platform (pending or waiting for a retry/limit) when we stopped.
        backlog = dbs.scalar(url, "SELECT count(*) FROM outbox WHERE state IN ('pending', 'retrying')")
    finally:
        child.stop()
        fake.stop()
    latencies = sorted(acks[c] - t for c, t in inject_at.items() if c in acks)
    latencies += [math.inf] * (total - len(latencies))
    window = (max(acks.values()) - t0) if acks else 0.0
    name = (
        f"dispatch {interval:g} s, Telegram limits (bot 30/s, dispatcher 25/s)"
        if limits == "telegram"
        else f"dispatch {interval:g} s, bot-wide limit lifted to {LIFTED_BOT_RATE}/s"
    )
    row = LatencyRow(
        name=name,
        offered=total,
        offered_rate=(total - 1) / (t_last - t0) if total > 1 and t_last > t0 else rate,
        acked=len(acks),
        latencies=latencies,
        ack_rate=len(acks) / window if window > 0 else 0.0,
        violations=len(fake.violations),
        backlog_at_end=backlog,
        service_cpu=service_cpu,
        skipped_ticks=child.skipped_ticks(),
    )
    if len(delivered) != len(acks):
        row.notes.append(
            f"{name}: {len(delivered)} messages delivered to these {len(acks)} chats: "
            "duplicate acknowledgements or extra messages"
        )
    if failed_attempts:
        row.notes.append(f"{name}: {failed_attempts} sendMessage attempts refused by the fake")
    if drain_skipped:
        row.notes.append(
            f"{name}: drain skipped, {total - len(acks)} unacknowledged at {rate_so_far:.0f} acks/s "
            f"could not clear in {drain:g} s"
        )
    row.notes += [f"{name}: {note}" for note in child.log_notes()]
    return row


# --------------------------------------------------------------------------------------------------------
# Main.


def machine_lines(dbs: BenchDatabases, args: argparse.Namespace) -> list[str]:
    import fastapi
    import sqlalchemy
    import uvicorn

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        f"machine:  {os.cpu_count()} cores ({affinity} usable), {cpu_model}; {platform.system()} "
        f"{platform.release()} {platform.machine()}",
        f"software: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, SQLAlchemy "
        f"{sqlalchemy.__version__}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}",
        f"database: {dbs.describe()}",
    ]
    if dbs.kind == "postgresql":
        lines.append(f"          {dbs.settings_note()}")
    lines.append(
        f"settings: N={args.updates:,} updates per throughput run, webhook client {args.concurrency} "
        f"keep-alive connections (asyncio streams client); latency {args.rate:g} msg/s for "
        f"{args.seconds:g} s, drain {args.drain:g} s; runs: {', '.join(args.latency_runs)}"
    )
    lines.append(
        "          service in its own spawned process (web only for webhooks, poll_once loop for "
        "polling, web+worker for latency); client and fake Telegram in this process"
    )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--updates", type=int, default=5000, help="updates per throughput run (default 5000)")
    p.add_argument("--rate", type=float, default=100.0, help="citizens' messages/s for latency (100)")
    p.add_argument("--seconds", type=float, default=20.0, help="latency run length in seconds (20)")
    p.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="seconds to wait for outstanding acks after a latency run (5)",
    )
    p.add_argument(
        "--database-url", default=None, help="sqlite:///FILE or postgresql://… (default: temp SQLite)"
    )
    p.add_argument("--concurrency", type=int, default=64, help="concurrent webhook requests (64)")
    p.add_argument(
        "--latency-runs",
        default="telegram@0.25,lifted@0.25,lifted@0.05",
        help="comma list of LIMITS@DISPATCH_INTERVAL, LIMITS being telegram (the fake's and dispatcher's "
        "real limits) or lifted (bot-wide limit opened to 1000/s); default %(default)s",
    )
    p.add_argument(
        "--only",
        default="raw,webhook,meta,polling,steptwo,latency",
        help="sections to run (default: all six; meta is /webhooks/meta with signed Messenger bodies; "
        "steptwo times the workflow on what polling stored)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="upper bound for one throughput run (120 s)")
    p.add_argument("--keep", action="store_true", help="keep the databases and service logs")
    args = p.parse_args(argv)
    args.latency_runs = [r.strip() for r in args.latency_runs.split(",") if r.strip()]
    for run in args.latency_runs:
        limits, _, interval = run.partition("@")
        if limits not in ("telegram", "lifted") or not interval:
            p.error(f"--latency-runs: bad item {run!r}")
    args.only = {s.strip() for s in args.only.split(",")}
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    busy0, own0, pg0 = system_busy_seconds(), own_cpu_seconds(), postgres_cpu_seconds()
    dbs = BenchDatabases(args.database_url, keep=args.keep)
    dbs.setup()
    notes: list[str] = []
    try:
        print("Adaldyk intake benchmark,", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        for line in machine_lines(dbs, args):
            print(line)
        print(flush=True)

        rows: list[ThroughputRow] = []
        if "raw" in args.only:
            rows += run_raw(dbs, args.updates)
        if "webhook" in args.only:
            fake = make_fake(**TELEGRAM_LIMITS)  # the web process asks getMe at start
            try:
                for per_chat in (1, 10):
                    rows += run_webhook(dbs, fake, args.updates, per_chat, args.concurrency, args.timeout)
            finally:
                fake.stop()
        if "meta" in args.only:
            for per_post in (100, 1):
                rows += run_meta_webhook(dbs, args.updates, per_post, args.concurrency, args.timeout)
        if "polling" in args.only:
            for per_chat in (1, 10):
                rows += run_polling(dbs, args.updates, per_chat, args.timeout, "steptwo" in args.only)
        if rows:
            ceiling = next(
                (r.rate for r in rows if r.name.startswith("raw sqlite3") and "1 row/" in r.name), None
            )
            if dbs.kind == "postgresql":
                ceiling = next(
                    (r.rate for r in rows if r.name.startswith("raw psycopg") and "1 row/" in r.name), ceiling
                )
            print("Updates stored durably per second")
            print_throughput(rows, ceiling)
            print(flush=True)
            for r in rows:
                notes += r.notes

        if "latency" in args.only:
            lrows: list[LatencyRow] = []
            for run in args.latency_runs:
                limits, _, interval = run.partition("@")
                lrows.append(run_latency(dbs, limits, float(interval), args.rate, args.seconds, args.drain))
            print(
                "Acknowledgement latency: citizen's message into the fake -> the fake accepts sendMessage "
                "of the ack (unacknowledged count as infinite)"
            )
            print_latency(lrows, args.seconds + args.drain)
            print()
            for lr in lrows:
                notes += lr.notes
        if notes:
            print("notes:")
            for note in notes:
                print(f"  - {note}")
        wall = time.monotonic() - started
        pg = postgres_cpu_seconds() - pg0 if dbs.kind == "postgresql" else 0.0
        others = (system_busy_seconds() - busy0 - (own_cpu_seconds() - own0) - pg) / wall
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        server = f"the PostgreSQL server used {pg / wall:.2f} cores on average; " if pg else ""
        print(
            f"total run time {wall:.0f} s; {server}other processes used {max(others, 0.0):.2f} of "
            f"{cores} cores meanwhile (load average now {os.getloadavg()[0]:.2f})"
        )
        if others > 0.1 * cores:
            print("WARNING: the machine was not quiet during the run; the figures above are pessimistic")
    finally:
        dbs.cleanup()
        if args.keep:
            print(
                f"kept databases and logs in {dbs.workdir}"
                + (f" and database {dbs.pg_name}" if dbs.pg_name else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
