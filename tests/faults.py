"""Fault injection for the supervisor and fault tests: take a test's database away and bring it back,
terminate a lock holder's connection. Real faults on real databases; nothing of ours is replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from adaldyk_bots.storage.db import normalize_url
from adaldyk_bots.storage.locks import key_oids


def _admin(url: str) -> tuple[Engine, str]:
    """An AUTOCOMMIT engine on the server's `postgres` database, and the name of the test's database."""
    parsed = make_url(normalize_url(url))
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, str(parsed.database)


@contextmanager
def database_away(url: str, engines: Iterable[Engine] = ()) -> Iterator[None]:
    """While the block runs, the database refuses every connection and the open ones are gone.

    PostgreSQL: the test's own database stops taking connections and its sessions are terminated (the
    shared server itself keeps running for everyone else). SQLite: the file is moved away and a
    directory put in its place, so no connection can open it; `engines` drop their pooled connections,
    as they would after a disk went away."""
    if url.startswith("sqlite"):
        path = Path(str(make_url(url).database))
        away = path.with_name(path.name + ".away")
        os.rename(path, away)
        path.mkdir()
        for engine in engines:
            engine.dispose()
        try:
            yield
        finally:
            path.rmdir()
            os.rename(away, path)
        return
    admin, name = _admin(url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
        try:
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


def lock_holder_pids(url: str, lock_name: str) -> list[int]:
    """Server pids of the sessions holding the advisory lock `lock_name` (PostgreSQL)."""
    hi, lo = key_oids(lock_name)
    admin, name = _admin(url)
    try:
        with admin.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = :n"
                    " AND l.classid = CAST(:hi AS oid) AND l.objid = CAST(:lo AS oid) AND l.objsubid = 1"
                ),
                {"n": name, "hi": hi, "lo": lo},
            )
            return [int(r[0]) for r in rows]
    finally:
        admin.dispose()


def terminate_lock_holder(url: str, lock_name: str) -> int:
    """pg_terminate_backend the session that holds `lock_name`; returns its pid."""
    pids = lock_holder_pids(url, lock_name)
    assert len(pids) == 1, f"expected one holder of {lock_name}, found {pids}"
    admin, _name = _admin(url)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]}).scalar()
    finally:
        admin.dispose()
    return pids[0]


def service_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`adaldyk <command>` as its own process, its output to a file: a pipe nobody reads would fill up
    during an outage and block the process, which is not the fault under test."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    full_env.update(env)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "adaldyk_bots", *command],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""
