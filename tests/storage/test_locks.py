"""Only one poller per channel account: exclusive on PostgreSQL, always granted on SQLite."""

from __future__ import annotations

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.locks import PollerLock


def test_poller_lock_is_exclusive_where_workers_can_share_a_database(database_url):
    engine_a, engine_b = make_engine(database_url), make_engine(database_url)
    first, second = PollerLock(engine_a, "telegram:1"), PollerLock(engine_b, "telegram:1")
    other = PollerLock(engine_b, "telegram:2")
    assert first.try_acquire()
    if engine_a.dialect.name == "postgresql":
        assert not second.try_acquire()  # another worker polls this bot already
        assert other.try_acquire()  # a different account is free
        first.release()
        assert second.try_acquire()  # released (or its worker died): the standby takes over
    else:
        assert second.try_acquire()  # SQLite: one machine, one worker; nothing to coordinate
    for lock in (first, second, other):
        lock.release()
    engine_a.dispose()
    engine_b.dispose()
