"""Is the database at the code's schema revision? Bring it there."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from adaldyk_bots.storage.migrate import alembic_config, upgrade


def current_and_head(engine: Engine) -> tuple[str | None, str | None]:
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, script.get_current_head()


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """SQLite (the embedded default) is migrated on start; PostgreSQL only by `adaldyk migrate`, the
    release step, so that several web processes never race to change the schema."""
    current, head = current_and_head(engine)
    if current == head:
        return
    if auto_migrate:
        upgrade(engine)
        return
    raise RuntimeError(
        f"the database schema is at {current or 'nothing'}, the code needs {head}: run `adaldyk migrate`"
    )
