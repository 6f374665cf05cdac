"""Only one poller per channel account: exclusive on PostgreSQL, always granted on SQLite."""

from __future__ import annotations

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.locks import PollerLock
from tests.faults import terminate_lock_holder


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


def test_the_holder_notices_a_terminated_connection_and_the_lock_is_free_again(database_url):
    engine_a, engine_b = make_engine(database_url), make_engine(database_url)
    holder, standby = PollerLock(engine_a, "poller:telegram:7"), PollerLock(engine_b, "poller:telegram:7")
    try:
        assert holder.try_acquire() and holder.check()
        if engine_a.dialect.name != "postgresql":
            assert standby.try_acquire()  # SQLite: one worker; nothing can be lost
            return
        assert not standby.try_acquire()
        assert terminate_lock_holder(database_url, "poller:telegram:7") == holder.backend_pid
        # The attribute alone would still say "held"; the check asks the server, on the lock's session.
        assert not holder.check()
        assert standby.try_acquire() and standby.check()
        assert not holder.try_acquire()  # the old holder is a standby now
        holder.release()  # nothing to release, and no error for the dead connection
        standby.release()
        assert not standby.check()
        assert holder.try_acquire()
    finally:
        holder.release()
        standby.release()
        engine_a.dispose()
        engine_b.dispose()
