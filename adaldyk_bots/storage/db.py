"""Engines and the unit of work: the one place that begins and commits transactions."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from adaldyk_bots.storage.types import dumps_storable

log = logging.getLogger(__name__)

# WAL lets readers run beside the single writer; FULL makes every commit durable across power loss,
# which is what "2xx only after commit" promises the platforms.
_WRITER_WAIT_SECONDS = 30.0
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000")


def utcnow() -> datetime:
    """Aware UTC: SQLModel's UTCDateTime refuses naive values, which keeps time zones honest."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time, aware: SQLite hands back naive datetimes (and aggregates lose the column's type on
    any database), but every time we store is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def normalize_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask SQLAlchemy for psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _sqlite_engine(url, **kwargs)
        _configure_sqlite_writer(engine)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=dumps_storable, **kwargs
    )


def read_only(engine: Engine) -> Engine:
    """The engine to use for transactions that only read (health, API lists and look-ups).

    On SQLite it is a second engine on the same file with its own pool: its transactions begin
    DEFERRED, never take the writer hand-off and never queue for a connection that a waiting writer
    holds, so in WAL mode they read the last commit beside the writer; `PRAGMA query_only` makes a
    write attempted through it fail at once. On PostgreSQL readers never wait (MVCC): the same engine.
    The reader is made on first use and disposed with `engine`."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    with _readers_lock:
        reader = _readers.get(engine)
        if reader is None:
            reader = _readers[engine] = _sqlite_engine(
                engine.url.render_as_string(hide_password=False), pool_size=10, max_overflow=30
            )
            _configure_sqlite_reader(reader)
            event.listen(engine, "engine_disposed", lambda _engine: reader.dispose())
    return reader


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading only, on `read_only(engine)`; it never commits."""
    with Session(read_only(engine), expire_on_commit=False) as session:
        yield session


_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=dumps_storable,
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module so we can say BEGIN IMMEDIATE:
        # a deferred transaction that reads and then writes can fail with SQLITE_BUSY at once
        # instead of waiting for the other writer.
        dbapi_conn.isolation_level = None
        for pragma in _SQLITE_PRAGMAS:
            dbapi_conn.execute(f"PRAGMA {pragma}")

    return engine


def _configure_sqlite_reader(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # DEFERRED: a read transaction takes no lock a writer needs; WAL gives it a stable snapshot.
        conn.exec_driver_sql("BEGIN")


def _configure_sqlite_writer(engine: Engine) -> None:
    # Hand the single write lock over in turn inside the process. SQLite's own busy handler sleeps
    # 1, 2, 5 ... 100 ms between tries, so a waiting writer wakes late and in random order; under load
    # that, not the work, made up most of an acknowledgement's latency (bench/README.md). A plain Lock
    # (not an RLock) because FastAPI may close a request's session on another thread than opened it.
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Bounded wait: if a transaction were ever left open without commit or rollback, we fall back to
        # SQLite's busy handler instead of stopping every writer for good.
        if writer.acquire(timeout=_WRITER_WAIT_SECONDS):
            conn.info["holds_writer"] = True
        else:
            log.warning("sqlite writer hand-off timed out; falling back to SQLite's busy wait")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _on_end(conn)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Any) -> None:
        if conn.info.pop("holds_writer", False):
            writer.release()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends normally, rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _insert(session: Session, model: type[SQLModel]) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL have it)."""
    table = model.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_conflict(session: Session, model: type[SQLModel], values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING; returns the new row's id, or None if it already existed."""
    stmt = _insert(session, model).values(**values).on_conflict_do_nothing()
    row_id = session.execute(stmt.returning(stmt.table.c.id)).scalar_one_or_none()
    return None if row_id is None else int(row_id)


def insert_many_ignoring_conflict(
    session: Session, model: type[SQLModel], rows: list[dict[str, Any]]
) -> list[tuple[int, str]]:
    """One multi-row INSERT ... ON CONFLICT DO NOTHING; returns (id, state) of the rows it inserted."""
    if not rows:
        return []
    stmt = _insert(session, model).values(rows).on_conflict_do_nothing()
    returned = session.execute(stmt.returning(stmt.table.c.id, stmt.table.c.state))
    return [(int(row_id), str(state)) for row_id, state in returned]


def upsert_increment(session: Session, model: type[SQLModel], *, key: dict[str, Any], column: str) -> int:
    """Atomically add one to `column` of the row at `key` (creating it at 1) and return the new value."""
    stmt = _insert(session, model).values(**key, **{column: 1})
    counter = stmt.table.c[column]
    stmt = stmt.on_conflict_do_update(index_elements=list(key), set_={column: counter + 1})
    return int(session.execute(stmt.returning(counter)).scalar_one())


def require_id(row: SQLModel) -> int:
    """The primary key of a row that has been flushed (SQLModel types ids as optional)."""
    row_id = getattr(row, "id", None)
    if row_id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: flush it first")
    return int(row_id)
