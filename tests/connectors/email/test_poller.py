"""The IMAP poller's other paths on a real Dovecot: a server without IDLE and MOVE (polling, COPY and
\\Seen), no processed folder, a refused login shown on /healthz, and the server going away and back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.storage.models import Appeal, RawEvent
from tests.connectors.email import MAILBOX_PASSWORD, MAILBOX_USER, fixture
from tests.connectors.email.conftest import REQUIRE, Mailbox, email_settings
from tests.dovecot import PrivateDovecot, dovecot_available
from tests.support import ServiceThread, free_port, wait_processed, wait_until


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _email_health(svc: ServiceThread) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{svc.url}/healthz", timeout=10).json()
    return dict(body["channels"]["email"])


@pytest.fixture
def plain_dovecot() -> Iterator[PrivateDovecot]:
    """A server that offers neither IDLE (RFC 2177) nor MOVE (RFC 6851), as some hosted ones do."""
    if not dovecot_available():
        if REQUIRE:
            pytest.fail("Dovecot is not installed; ADALDYK_TEST_REQUIRE_DOVECOT=1 requires it")
        pytest.skip("Dovecot is not installed")
    server = PrivateDovecot(
        {MAILBOX_USER: MAILBOX_PASSWORD}, capability="IMAP4rev1 LITERAL+ SASL-IR UIDPLUS NAMESPACE"
    )
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def test_without_idle_and_move_it_polls_copies_and_marks_seen(
    make_settings: Any, plain_dovecot: PrivateDovecot
) -> None:
    box = Mailbox(plain_dovecot)
    try:
        settings = make_settings(
            port=free_port(), **email_settings(plain_dovecot, imap_processed_folder="Processed")
        )
        with ServiceThread(settings) as svc:
            engine = svc.runtime.engine
            wait_until(lambda: _email_health(svc)["state"] == "ok", what="the poller connected")
            assert "polling every 0.5 s" in _email_health(svc)["detail"]
            box.deliver(fixture("koi8r.eml"))
            box.deliver(fixture("windows1251.eml"))
            wait_until(lambda: _count(engine, Appeal) == 2, timeout=30, what="both mails, by polling")
            wait_until(lambda: box.count("Processed") == 2, what="copied to the processed folder")
            # Copied, not moved (no MOVE) and nothing expunged: the originals stay, marked read.
            assert box.count("INBOX") == 2 and box.unseen("INBOX") == 0
            box.deliver(fixture("html_only.eml"))
            wait_until(lambda: _count(engine, Appeal) == 3, timeout=30, what="the next mail")
            wait_until(lambda: box.count("Processed") == 3, what="copied once each")
    finally:
        box.close()


def test_without_a_processed_folder_mail_stays_and_is_marked_read(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    mailbox.deliver(fixture("utf8_kazakh.eml"))
    with ServiceThread(make_settings(port=free_port(), **email_settings(dovecot))) as svc:
        wait_until(lambda: _count(svc.runtime.engine, Appeal) == 1, timeout=30, what="the unread mail")
        wait_until(lambda: mailbox.unseen("INBOX") == 0, what="marked read")
        assert mailbox.client.list_folders() == [((b"\\HasNoChildren",), b"/", "INBOX")]
        mailbox.deliver(fixture("html_only.eml"))
        wait_until(lambda: _count(svc.runtime.engine, Appeal) == 2, timeout=30, what="a new mail, by IDLE")
        assert mailbox.count("INBOX") == 2


def test_first_start_reads_from_the_oldest_unread_mail(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    # Mail read by a person before the channel was connected is the ministry's past, not new appeals.
    mailbox.deliver(fixture("koi8r.eml"))
    mailbox.client.select_folder("INBOX")
    mailbox.client.add_flags(mailbox.client.search(["ALL"]), [b"\\Seen"])
    mailbox.deliver(fixture("windows1251.eml"))
    with ServiceThread(make_settings(port=free_port(), **email_settings(dovecot))) as svc:
        wait_until(lambda: _count(svc.runtime.engine, Appeal) == 1, timeout=30, what="the unread mail")
        wait_processed(svc.runtime.engine)
        assert _count(svc.runtime.engine, RawEvent) == 1


def test_a_refused_login_shows_broken_and_the_rest_runs(make_settings: Any, dovecot: PrivateDovecot) -> None:
    values = email_settings(dovecot)
    values["imap_url"] = values["imap_url"].replace("app%2Fpass", "wrong")
    with ServiceThread(make_settings(port=free_port(), **values)) as svc:
        wait_until(lambda: _email_health(svc)["state"] == "broken", timeout=30, what="broken on /healthz")
        health = _email_health(svc)
        assert "refused the login" in health["detail"] and "application password" in health["detail"]
        assert health["credentials"] == "refused"
        assert httpx.get(f"{svc.url}/healthz", timeout=10).status_code == 200  # the service runs on


def test_the_server_going_away_and_back_loses_nothing(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    # The server stops with its connections (PrivateDovecot.stop): the poller in IDLE sees the socket
    # close at once, shows degraded, and reconnects with the supervisor's backoff once it is back.
    with ServiceThread(make_settings(port=free_port(), **email_settings(dovecot))) as svc:
        engine = svc.runtime.engine
        wait_until(lambda: _email_health(svc)["state"] == "ok", timeout=30, what="connected")
        mailbox.close()
        dovecot.stop()
        wait_until(lambda: _email_health(svc)["state"] == "degraded", timeout=30, what="degraded while down")
        dovecot.start()
        back = Mailbox(dovecot)
        try:
            back.deliver(fixture("windows1251.eml"))
            wait_until(lambda: _count(engine, Appeal) == 1, timeout=45, what="the mail after the restart")
            wait_until(lambda: _email_health(svc)["state"] == "ok", timeout=30, what="ok again")
        finally:
            back.close()


def test_a_batch_stays_within_its_byte_budget(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    names = ["attachments.eml", "utf8_kazakh.eml", "html_only.eml"]
    for name in names:
        mailbox.deliver(fixture(name))
    assert all(len(fixture(name)) > 512 for name in names)  # any two are over the budget
    settings = make_settings(port=free_port(), **email_settings(dovecot, imap_batch_bytes=1024))
    with caplog.at_level(logging.INFO, logger="connectors.email.imap"):
        with ServiceThread(settings) as svc:
            wait_until(lambda: _count(svc.runtime.engine, Appeal) == 3, timeout=30, what="all three")
    batches = [r.getMessage() for r in caplog.records if "stored (" in r.getMessage()]
    assert len(batches) == 3 and all(": 1 mail(s) up to UID" in line for line in batches), batches


def test_two_workers_read_the_mailbox_one_at_a_time(
    make_settings: Any, database_url: str, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("not applicable to SQLite: two workers share a database only on PostgreSQL")
    first = ServiceThread(make_settings(port=free_port(), **email_settings(dovecot)), web=False)
    second = ServiceThread(make_settings(port=free_port(), **email_settings(dovecot)), web=False)

    def states() -> list[bool]:
        return sorted(
            svc.runtime.connectors["email"].health.detail.startswith("standby") for svc in (first, second)
        )

    with first, second:
        wait_until(lambda: states() == [False, True], timeout=30, what="one reader and one standby")
        for name in ["utf8_kazakh.eml", "koi8r.eml", "windows1251.eml", "html_only.eml"]:
            mailbox.deliver(fixture(name))
        wait_until(lambda: _count(first.runtime.engine, Appeal) == 4, timeout=30, what="every mail")
        wait_processed(first.runtime.engine)
        assert _count(first.runtime.engine, RawEvent) == 4
        assert states() == [False, True]
