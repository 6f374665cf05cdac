"""Alembic environment: uses the connection handed in by adaldyk_bots.storage.migrate when there is one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import adaldyk_bots.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from adaldyk_bots.storage.models import SEARCH_INDEX_OBJECTS

config = context.config
target_metadata = SQLModel.metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    # The full-text index's virtual table and expression index are the migration's, not the models'.
    return name not in SEARCH_INDEX_OBJECTS


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
