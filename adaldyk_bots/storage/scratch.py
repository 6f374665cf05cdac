"""Throwaway PostgreSQL databases for the test suite and the benchmarks: create, empty, drop.

Never used by the service itself; it lives here so that tests/conftest.py and bench/ share one copy.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from adaldyk_bots.storage.db import make_engine, normalize_url
from adaldyk_bots.storage.migrate import upgrade

__all__ = ["ScratchDatabase", "truncate_all"]


class ScratchDatabase:
    """A new database `<prefix>_<random>` on the server of `admin_url`, migrated; `drop()` removes it.

    The admin connection is tried on `admin_url` and then on its server's `postgres` database, so a URL
    naming a database that does not exist yet (e.g. …/test) still works."""

    def __init__(self, admin_url: str, *, prefix: str) -> None:
        self.admin = _connect_admin(admin_url)
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = self.admin.url.set(database=self.name).render_as_string(hide_password=False)
        engine = make_engine(self.url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every table but Alembic's, identities restarted: a fresh database without migrating again."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables"
                        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ]
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def _connect_admin(admin_url: str) -> Engine:
    url = make_url(normalize_url(admin_url))
    last: Exception | None = None
    for candidate in (url, url.set(database="postgres")):
        engine = create_engine(candidate, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return engine
        except Exception as exc:  # noqa: BLE001 - try the maintenance database next
            engine.dispose()
            last = exc
    raise ConnectionError(f"cannot connect to PostgreSQL at {url.render_as_string()}: {last}")
