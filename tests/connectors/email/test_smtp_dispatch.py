"""E-mail through the one dispatcher path (the real EmailConnector, a real SMTP server on loopback): a 450
is retried and then delivered, a 550 fails with the server's words, a refused password holds the channel
(no message used up) until the login works again, then everything goes out."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import OutboxItem
from adaldyk_bots.workflow import Target, Workflow
from connectors.email.connector import EmailConnector
from connectors.email.settings import EmailSettings
from tests.smtp_server import MailServers, mail_servers
from tests.support import free_port, outbox_rows

OURS = "appeals@ecogeo.gov.kz"


class Clock:
    """The dispatcher's clock, moved by the test instead of waiting out backoffs and probes."""

    def __init__(self) -> None:
        self.at = utcnow() + timedelta(seconds=5)  # rows enqueued from now on are due at once

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[MailServers]:
    with mail_servers(tmp_path) as found:
        yield found


def _setup(database_url: str, servers: MailServers) -> tuple[Any, EmailConnector, Dispatcher, Clock]:
    settings = EmailSettings(
        _env_file=None,
        # The mailbox is never read here (no poller runs); the connector needs one to exist.
        imap_url=f"imaps://{OURS}:pw@127.0.0.1:{free_port()}/INBOX",
        smtp_url=servers.url("starttls"),
        mail_from=OURS,
        mail_ca_file=servers.ca_file,
        smtp_per_minute=600,
    )
    connector = EmailConnector(settings, files_dir=Path("unused"))
    engine = make_engine(database_url)
    clock = Clock()
    dispatcher = Dispatcher(
        engine=engine, connectors={"email": connector}, lease_seconds=30, hold_probe_seconds=30, now=clock
    )
    return engine, connector, dispatcher, clock


def _owe(engine: Any, connector: EmailConnector, *items: tuple[str, str]) -> None:
    with unit_of_work(engine) as s:
        for key, to in items:
            Workflow.enqueue(
                s,
                key=key,
                target=Target("email", connector.account, to),
                purpose="status",
                appeal_id=None,
                text=f"Өтінішіңіздің мәртебесі өзгерді ({key}).",
                now=utcnow(),
            )


def _round(dispatcher: Dispatcher) -> dict[str, OutboxItem]:
    asyncio.run(dispatcher.dispatch_due())
    return outbox_rows(dispatcher.engine)


def test_a_450_is_retried_then_delivered(database_url: str, servers: MailServers) -> None:
    engine, connector, dispatcher, clock = _setup(database_url, servers)
    servers.handler.refuse("busy@mail.ru", "450 4.2.1 Mailbox busy, try again later")
    _owe(engine, connector, ("status:1", "busy@mail.ru"))
    row = _round(dispatcher)["status:1"]
    assert (row.state, row.attempts, row.last_error_code) == ("retrying", 1, "email.4xx")
    assert row.last_error_detail == "450 4.2.1 Mailbox busy, try again later"
    clock.advance(60)  # past the backoff
    row = _round(dispatcher)["status:1"]
    assert (row.state, row.last_error_code) == ("sent", None)
    [got] = servers.handler.received
    sent_id = email.message_from_bytes(got.data, policy=default)["Message-ID"]
    assert row.platform_message_ids == [sent_id.strip("<>")]


def test_a_550_fails_with_the_servers_words(database_url: str, servers: MailServers) -> None:
    engine, connector, dispatcher, _clock = _setup(database_url, servers)
    servers.handler.refuse(
        "gone@mail.ru", "550 5.1.1 <gone@mail.ru>: Recipient address rejected: User unknown"
    )
    _owe(engine, connector, ("status:2", "gone@mail.ru"))
    row = _round(dispatcher)["status:2"]
    assert (row.state, row.last_error_code) == ("failed", "email.550")
    assert row.last_error_detail == "550 5.1.1 <gone@mail.ru>: Recipient address rejected: User unknown"
    assert servers.handler.received == []


def test_a_refused_password_holds_the_channel_until_it_works_again(
    database_url: str, servers: MailServers
) -> None:
    engine, connector, dispatcher, clock = _setup(database_url, servers)
    servers.auth.refuse_all = True
    _owe(engine, connector, ("status:3", "a@mail.ru"), ("status:4", "b@mail.ru"), ("status:5", "c@mail.ru"))
    rows = _round(dispatcher)
    assert {r.state for r in rows.values()} == {"held"}
    assert {r.last_error_code for r in rows.values()} == {"email.auth_failed"}
    assert {r.attempts for r in rows.values()} == {0}  # waiting is not failing
    clock.advance(31)  # the probe is due, the password still refused: still held
    assert {r.state for r in _round(dispatcher).values()} == {"held"}

    servers.auth.refuse_all = False  # the operator put the right application password in
    clock.advance(31)
    for _ in range(4):  # the probe goes through, then the released rows
        rows = _round(dispatcher)
    assert {r.state for r in rows.values()} == {"sent"}
    assert sorted(got.rcpt_tos[0] for got in servers.handler.received) == [
        "a@mail.ru",
        "b@mail.ru",
        "c@mail.ru",
    ]
