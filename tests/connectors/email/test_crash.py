"""SIGKILL of the worker while mail keeps arriving, mid-batch or between a commit and the filing, then a
restart: every mail is stored once, every appeal acknowledged once (one `ack:` outbox row each), and
every mail ends in the processed folder exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from typing import Any

from sqlmodel import Session, col, func, select

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, Message, OutboxItem, RawEvent
from tests.connectors.email import MAILBOX_USER
from tests.connectors.email.conftest import Mailbox, email_settings
from tests.dovecot import PrivateDovecot
from tests.support import adaldyk_process, free_port, wait_until

MAILS = 45
KILLS = 4
# Each worker's round gets its own share of the mail, delivered while it runs: a round never finds every
# mail already stored by an earlier one (how fast a worker starts and stores varies from run to run).
SHARE = MAILS // (KILLS + 1)


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _mail(n: int) -> bytes:
    # One citizen per mail (so each opens its own appeal), the shape of utf8_kazakh.eml.
    return (
        f"From: Citizen {n} <citizen{n}@example.kz>\r\n"
        f"To: {MAILBOX_USER}\r\n"
        f"Subject: =?utf-8?b?0J7QsdGA0LDRidC10L3QuNC1?= {n}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0500\r\n"
        f"Message-ID: <crash-{n}@example.kz>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"Өзенге қалдық төгіліп жатыр, өтініш {n}.\r\n"
    ).encode()


def _deliver(dovecot: PrivateDovecot, numbers: range) -> threading.Thread:
    def run() -> None:
        box = Mailbox(dovecot)  # its own IMAP session: the test's is not shared across threads
        try:
            for n in numbers:
                box.deliver(_mail(n))
                time.sleep(0.25)  # the kills fall while mail still arrives
        finally:
            box.close()

    feeder = threading.Thread(target=run, daemon=True)
    feeder.start()
    return feeder


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


def test_sigkill_mid_batch_stores_and_acknowledges_every_mail_once(
    database_url: str, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    engine = make_engine(database_url)
    settings = email_settings(dovecot, imap_processed_folder="Processed", imap_batch=2, imap_idle_seconds=1)
    env = {f"ADALDYK_{k.upper()}": str(v) for k, v in settings.items()}
    env.update(
        ADALDYK_DATABASE_URL=database_url,
        ADALDYK_SECRET_KEY="crash-test-secret-key-0123456789",
        ADALDYK_LOG_LEVEL="WARNING",
        ADALDYK_HOST="127.0.0.1",
        ADALDYK_PORT=str(free_port()),
        ADALDYK_DISPATCH_INTERVAL_SECONDS="0.2",
    )
    feeders: list[threading.Thread] = []
    rng = random.Random(20261201)
    stored_at_kill = []
    for round_no in range(KILLS):
        process = adaldyk_process(["worker"], env)
        try:
            feeders.append(_deliver(dovecot, range(round_no * SHARE, (round_no + 1) * SHARE)))
            before = _count(engine, RawEvent)
            wait_until(
                lambda: _count(engine, RawEvent) > before or process.poll() is not None,
                timeout=30,
                interval=0.01,
                what="mails being stored",
            )
            time.sleep(rng.uniform(0.0, 0.2))  # mid-batch, between commit and filing, or idle
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        finally:
            _kill(process)
            stored_at_kill.append(_count(engine, RawEvent))

    process = adaldyk_process(["worker"], env)
    try:
        feeders.append(_deliver(dovecot, range(KILLS * SHARE, MAILS)))
        for feeder in feeders:
            feeder.join(timeout=60)
        wait_until(
            lambda: _count(engine, Message, Message.direction == "in") == MAILS,
            timeout=60,
            what="every mail stored",
        )
        wait_until(lambda: mailbox.count("INBOX") == 0, timeout=30, what="every mail filed")
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()

    # Each worker was killed after storing something, at least two of them while mail still arrived.
    assert stored_at_kill == sorted(set(stored_at_kill)), stored_at_kill
    assert len([n for n in stored_at_kill if n < MAILS]) >= 2, stored_at_kill
    assert _count(engine, RawEvent) == MAILS, output[-3000:]
    assert _count(engine, RawEvent, RawEvent.state == "processed") == MAILS
    assert _count(engine, Message, Message.direction == "in") == MAILS
    assert _count(engine, Appeal) == MAILS
    with Session(engine) as s:
        acks = s.exec(select(OutboxItem.appeal_id).where(col(OutboxItem.key).startswith("ack:"))).all()
    assert len(acks) == MAILS and len(set(acks)) == MAILS  # one acknowledgement per appeal
    assert mailbox.count("Processed") == MAILS  # each filed once: moved, never copied twice
    engine.dispose()
