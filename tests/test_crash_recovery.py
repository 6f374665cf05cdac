"""The worker killed with SIGKILL mid-batch and between batches: nothing lost, nothing stored twice."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

from sqlmodel import Session, func, select

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, ChannelCursor, Message, OutboxItem, RawEvent
from tests.conftest import TOKEN
from tests.support import ACK_OPENING, adaldyk_process, wait_until

CHATS = 300
MESSAGES_PER_CHAT = 2
IN_FLIGHT = 4


def _count(engine, model, *where):
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def _cursor(engine):
    with Session(engine) as s:
        row = s.exec(select(ChannelCursor)).first()
        return row.value if row else None


def _citizens_write(fake):
    """Citizens keep writing while the worker is killed and restarted (about 60 messages/s)."""
    for n in range(MESSAGES_PER_CHAT):
        for chat in range(CHATS):
            fake.citizen_message(
                TOKEN,
                chat_id=10_000 + chat,
                text=f"Обращение {chat}, сообщение {n}: свалка у реки",
                language_code="ru",
            )
            time.sleep(1 / 60)


def test_sigkill_during_and_between_batches_loses_and_duplicates_nothing(database_url, fake_telegram):
    engine = make_engine(database_url)
    feeder = threading.Thread(target=_citizens_write, args=(fake_telegram,), daemon=True)
    feeder.start()
    env = {
        "ADALDYK_DATABASE_URL": database_url,
        "ADALDYK_TELEGRAM_TOKEN": TOKEN,
        "ADALDYK_TELEGRAM_API_URL": fake_telegram.url,
        "ADALDYK_TELEGRAM_POLL_TIMEOUT": "1",
        "ADALDYK_DISPATCH_INTERVAL_SECONDS": "0.1",
        "ADALDYK_OUTBOX_LEASE_SECONDS": "2",
        "ADALDYK_DISPATCH_CONCURRENCY": str(IN_FLIGHT),
        "ADALDYK_LOG_LEVEL": "WARNING",
    }
    rng = random.Random(20261127)
    kills = 0
    for round_no in range(6):
        worker = adaldyk_process(["worker"], env)
        try:
            if round_no % 2 == 0:
                # During a batch: right after a getUpdates answer, while the batch is being stored.
                calls = fake_telegram.get_updates_calls
                wait_until(
                    lambda: fake_telegram.get_updates_calls > calls + 1 or worker.poll() is not None,
                    timeout=30,
                    interval=0.002,
                    what="a getUpdates call",
                )
                time.sleep(rng.uniform(0.0, 0.05))
            else:
                # Between batches: right after a batch and its offset were committed.
                before = _cursor(engine)
                wait_until(
                    lambda: (
                        _cursor(engine) != before
                        or worker.poll() is not None
                        # Under load the citizens may have finished and every update been stored.
                        or (not feeder.is_alive() and fake_telegram.pending_count(TOKEN) == 0)
                    ),
                    timeout=30,
                    interval=0.002,
                    what="a committed batch",
                )
            assert worker.poll() is None, worker.stdout.read().decode()
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            kills += 1
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    feeder.join()
    worker = adaldyk_process(["worker"], env)
    try:
        # Both: every acknowledgement out is not yet every follow-up processed (a second message of a
        # chat may still wait in state `received` when its chat's ack has gone).
        wait_until(
            lambda: (
                _count(engine, OutboxItem, OutboxItem.purpose == "ack", OutboxItem.state == "sent") == CHATS
                and _count(engine, RawEvent) == CHATS * MESSAGES_PER_CHAT
                and _count(engine, RawEvent, RawEvent.state == "received") == 0
            ),
            timeout=120,
            interval=0.2,
            what="every acknowledgement sent and every stored message processed",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0  # a clean stop on SIGTERM
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert _count(engine, RawEvent) == CHATS * MESSAGES_PER_CHAT
    assert _count(engine, Message, Message.direction == "in") == CHATS * MESSAGES_PER_CHAT
    assert _count(engine, Appeal) == CHATS  # the second message of each chat joined the first's appeal
    assert fake_telegram.pending_count(TOKEN) == 0
    acks = Counter(m["chat_id"] for m in fake_telegram.sent_messages(TOKEN) if ACK_OPENING["ru"] in m["text"])
    assert set(acks) == {10_000 + chat for chat in range(CHATS)}
    # At-least-once: a kill can repeat only the sends in flight at that moment.
    assert sum(acks.values()) - CHATS <= kills * IN_FLIGHT
