"""Migrations: they build exactly the tables the models describe, on SQLite and on PostgreSQL, and go
down and up again cleanly."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import create_engine, inspect, text

from adaldyk_bots.storage.db import make_engine, normalize_url
from adaldyk_bots.storage.migrate import alembic_config, upgrade
from tests.conftest import PG_URL


def _fresh_url(tmp_path):
    if not PG_URL:
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}", None
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"adaldyk_mig_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin.url.set(database=name).render_as_string(hide_password=False), (admin, name)


def test_models_and_migrations_agree_and_round_trip(tmp_path):
    url, cleanup = _fresh_url(tmp_path)
    try:
        engine = make_engine(url)
        upgrade(engine)
        config = alembic_config(url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.check(config)  # raises if autogenerate finds any difference
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert {"appeal", "outbox", "raw_event", "message_version"} <= set(inspect(engine).get_table_names())
        engine.dispose()
    finally:
        if cleanup:
            admin, name = cleanup
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
