"""One poller per channel account across worker processes: a PostgreSQL advisory lock.

Two pollers on one Telegram token make each other fail with 409, and two VK long-poll loops would
fight over `ts`. On PostgreSQL the lock lives as long as the session holding it, so a worker that dies
releases it with its connection. SQLite is the single-machine default with one worker; there the
lock is always granted."""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, Engine, text


class PollerLock:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        # pg advisory locks take a bigint; a stable hash of the name, not Python's salted hash().
        self._key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self.engine.dialect.name != "postgresql"

    def try_acquire(self) -> bool:
        if self.held:
            return True
        connection = self.engine.connect()
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
        connection.commit()
        if got:
            self._connection = connection
        else:
            connection.close()
        return got

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._connection.commit()
            finally:
                self._connection.close()
                self._connection = None
