"""One holder per named loop across worker processes: a PostgreSQL advisory lock, checked every round.

Two pollers on one Telegram token make each other fail with 409, and two VK long-poll loops would
fight over `ts`. On PostgreSQL the lock lives as long as the session holding it, so a worker that dies
releases it with its connection. That is also how a holder loses it without being told: its connection
is terminated (`pg_terminate_backend`, a failover, a server restart) and a standby takes the lock at
once. So the holder never trusts a Python attribute: `check()` asks the server, on the connection that
holds the lock, whether this session still holds it, and the supervisor calls it before every round.

SQLite is the single-machine default with one worker; there the lock is always granted.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# pg_locks shows a bigint advisory key as two oids (high and low 32 bits) with objsubid 1.
_STILL_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
    " AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid) AND objsubid = 1"
)


def advisory_key(name: str) -> int:
    """The bigint key of a lock name: a stable hash, not Python's salted hash()."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def key_oids(name: str) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows the lock `name` (for checks and for tests)."""
    unsigned = advisory_key(name) & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PollerLock:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._key = advisory_key(name)
        self._hi, self._lo = key_oids(name)
        self._connection: Connection | None = None
        self.backend_pid: int | None = None  # the server process of the holding session (PostgreSQL)

    @property
    def _shared(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def held(self) -> bool:
        """Whether this session holds the lock now: asks the server (see check())."""
        return self.check()

    def check(self) -> bool:
        """Ask the server whether the session that took the lock still has it. A dead or terminated
        connection means the lock is gone (the server released it with the session): the connection
        is discarded, and the caller must stop acting and try to take the lock again."""
        if not self._shared:
            return True
        connection = self._connection
        if connection is None:
            return False
        try:
            still = bool(connection.execute(_STILL_HELD, {"hi": self._hi, "lo": self._lo}).scalar())
            connection.commit()
        except SQLAlchemyError as exc:
            log.warning("lock %s: its connection is gone (%s); lock lost", self.name, type(exc).__name__)
            still = False
        if not still:
            self._discard()
        return still

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this session holds it (checked, not remembered)."""
        if not self._shared:
            return True
        if self._connection is not None:
            return self.check()
        connection = self.engine.connect()
        try:
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar() if got else None
            connection.commit()
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        if got:
            self._connection = connection
            self.backend_pid = int(pid) if pid is not None else None
        else:
            connection.close()
        return got

    def release(self) -> None:
        """Give the lock up. Never raises for a connection that already died: the lock died with it."""
        connection = self._connection
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            connection.commit()
        except SQLAlchemyError:
            self._discard()
            return
        self._connection = None
        self.backend_pid = None
        connection.close()

    def _discard(self) -> None:
        connection, self._connection, self.backend_pid = self._connection, None, None
        if connection is None:
            return
        # Invalidate, never return to the pool: the session may be dead, or may still hold the lock
        # after a false alarm, and a pooled connection holding it would keep the lock from everyone.
        try:
            connection.invalidate()
            connection.close()
        except SQLAlchemyError:  # noqa: S110 - the connection is being thrown away anyway
            pass
