"""Group commit of `Intake.store`: concurrent callers share a transaction, each answers only after it
committed, a failed commit fails exactly the callers in it, and one caller's bad row fails nobody else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, func, select

from adaldyk_bots.intake import Intake, IntakeResult
from adaldyk_bots.ports import RawEvent
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.models import ChannelCursor
from adaldyk_bots.storage.models import RawEvent as RawEventRow
from tests.support import wait_until

CHANNEL, ACCOUNT = "telegram", "123456789"


@pytest.fixture
def intake(make_settings: Any) -> Iterator[Intake]:
    runtime = Runtime.build(make_settings())  # no channel configured: only the store is used
    yield runtime.intake
    runtime.engine.dispose()


def event(key: str, payload: bytes | None = None) -> RawEvent:
    return RawEvent(dedup_key=key, payload=payload if payload is not None else key.encode(), outcomes=[])


def stored_keys(intake: Intake) -> list[str]:
    with Session(intake.engine) as s:
        return sorted(s.exec(select(RawEventRow.dedup_key)).all())


class Caller(threading.Thread):
    """One webhook request's thread: stores its events and keeps what happened."""

    def __init__(self, intake: Intake, *events: RawEvent, cursor: str | None = None) -> None:
        super().__init__(daemon=True)
        self.intake, self.events, self.cursor = intake, events, cursor
        self.result: IntakeResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.intake.store(
                channel=CHANNEL, account=ACCOUNT, events=self.events, cursor=self.cursor
            )
        except BaseException as exc:
            self.error = exc


def in_one_group(intake: Intake, callers: list[Caller], before_release: Any = None) -> None:
    """Start `callers` while the committer is paused, so that all of them share the next transaction."""
    with intake.committer.paused():
        for caller in callers:
            caller.start()
        wait_until(lambda: intake.committer.waiting == len(callers), timeout=10, what="callers queued")
        if before_release is not None:
            before_release()
    for caller in callers:
        caller.join(30)
        assert not caller.is_alive()


def test_many_concurrent_stores_are_all_durable_and_share_transactions(intake: Intake) -> None:
    threads, per_thread = 32, 20
    results: list[IntakeResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def webhook_requests(t: int) -> None:
        for i in range(per_thread):
            try:
                # Every fifth request is a redelivery of the one before it (Telegram retries).
                key = f"update:{t}:{i - 1 if i % 5 == 4 else i}"
                result = intake.store(channel=CHANNEL, account=ACCOUNT, events=[event(key)])
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    results.append(result)

    workers = [threading.Thread(target=webhook_requests, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    distinct = {f"update:{t}:{i - 1 if i % 5 == 4 else i}" for t in range(threads) for i in range(per_thread)}
    assert stored_keys(intake) == sorted(distinct)
    assert sum(r.stored for r in results) == len(distinct)
    assert sum(r.duplicates for r in results) == threads * per_thread - len(distinct)
    # Fewer transactions than calls: callers that arrived during a commit shared the next one.
    assert intake.committer.largest_group > 1
    assert intake.committer.committed_items == threads * per_thread
    assert intake.committer.committed_groups < threads * per_thread


def test_callers_of_one_group_get_their_own_results_and_a_duplicate_fails_nobody(intake: Intake) -> None:
    intake.store(channel=CHANNEL, account=ACCOUNT, events=[event("update:1")])
    callers = [
        Caller(intake, event("update:1")),  # already stored
        Caller(intake, event("update:2"), event("update:3")),
        Caller(intake, event("update:3")),  # the same key as a caller of the same transaction
        Caller(intake, event("update:4"), cursor="5"),
    ]
    in_one_group(intake, callers)
    assert [c.error for c in callers] == [None] * 4
    assert [(c.result.stored, c.result.duplicates) for c in callers if c.result] == [
        (0, 1),
        (2, 0),
        (0, 1),
        (1, 0),
    ]
    assert stored_keys(intake) == ["update:1", "update:2", "update:3", "update:4"]
    assert intake.cursor(CHANNEL, ACCOUNT) == "5"  # the cursor landed with its batch


def test_a_failed_commit_fails_exactly_the_callers_in_it(intake: Intake) -> None:
    before = Caller(intake, event("update:before"))
    before.start()
    before.join(30)

    def table_goes_away() -> None:
        with intake.engine.begin() as conn:
            conn.execute(text("ALTER TABLE raw_event RENAME TO raw_event_away"))

    group = [Caller(intake, event(f"update:g{i}")) for i in range(5)]
    group.append(Caller(intake, event("update:g-cursor"), cursor="77"))
    try:
        in_one_group(intake, group, before_release=table_goes_away)
    finally:
        with intake.engine.begin() as conn:
            conn.execute(text("ALTER TABLE raw_event_away RENAME TO raw_event"))
    after = Caller(intake, event("update:after"))
    after.start()
    after.join(30)

    assert before.error is None and after.error is None
    assert all(isinstance(c.error, SQLAlchemyError) for c in group), [c.error for c in group]
    assert len({type(c.error) for c in group}) == 1  # each caller raises the same kind of error
    assert all(c.result is None for c in group)
    assert stored_keys(intake) == ["update:after", "update:before"]
    assert intake.cursor(CHANNEL, ACCOUNT) is None  # the cursor went down with its batch


def test_one_callers_bad_row_does_not_fail_the_others_in_its_group(intake: Intake) -> None:
    good = [Caller(intake, event(f"update:ok{i}")) for i in range(4)]
    # A NOT NULL column left empty: an error that only this caller's values cause.
    bad = Caller(intake, event("update:ok0"), RawEvent(dedup_key="update:bad", payload=None, outcomes=[]))  # type: ignore[arg-type]
    in_one_group(intake, [good[0], good[1], bad, good[2], good[3]])
    assert isinstance(bad.error, IntegrityError)
    assert [c.error for c in good] == [None] * 4
    assert stored_keys(intake) == [f"update:ok{i}" for i in range(4)]
    with Session(intake.engine) as s:
        assert s.exec(select(func.count()).select_from(ChannelCursor)).one() == 0
