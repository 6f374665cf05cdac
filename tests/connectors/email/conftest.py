"""A private Dovecot per test, and an IMAP client on it for the test to deliver and look with."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.connectors.email import MAILBOX_PASSWORD, MAILBOX_USER
from tests.dovecot import PrivateDovecot, dovecot_available

# CI installs Dovecot (.ci/run) and sets this, so a missing Dovecot fails instead of skipping.
REQUIRE = os.environ.get("ADALDYK_TEST_REQUIRE_DOVECOT") == "1"


@pytest.fixture
def dovecot() -> Iterator[PrivateDovecot]:
    if not dovecot_available():
        message = "Dovecot is not installed (apt-get install dovecot-imapd dovecot-core)"
        if REQUIRE:
            pytest.fail(message + "; ADALDYK_TEST_REQUIRE_DOVECOT=1 requires it")
        pytest.skip(message)
    server = PrivateDovecot({MAILBOX_USER: MAILBOX_PASSWORD})
    try:
        server.start()
        yield server
    finally:
        server.destroy()


class Mailbox:
    """The test's own IMAP session on the private server: deliver by APPEND, look at folders."""

    def __init__(self, server: PrivateDovecot) -> None:
        self.server = server
        context = ssl.create_default_context(cafile=str(server.cert))
        self.client = IMAPClient("127.0.0.1", port=server.port, ssl=True, ssl_context=context, timeout=10)
        self.client.login(MAILBOX_USER, MAILBOX_PASSWORD)

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        self.client.append(folder, raw)

    def count(self, folder: str) -> int:
        if not self.client.folder_exists(folder):
            return 0
        return int(self.client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def unseen(self, folder: str) -> int:
        return int(self.client.folder_status(folder, [b"UNSEEN"])[b"UNSEEN"])

    def uidvalidity(self, folder: str) -> int:
        return int(self.client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def mailbox(dovecot: PrivateDovecot) -> Iterator[Mailbox]:
    box = Mailbox(dovecot)
    try:
        yield box
    finally:
        box.close()


def email_settings(dovecot: PrivateDovecot, folder: str = "INBOX", **extra: Any) -> dict[str, Any]:
    """The settings that point the service at the private server (its certificate as the CA bundle)."""
    values: dict[str, Any] = {
        "imap_url": dovecot.url(MAILBOX_USER, folder),
        "smtp_url": "smtp://robot:secret@127.0.0.1:2525",
        "mail_from": "Министрлік <appeals@ecogeo.gov.kz>",
        "mail_ca_file": str(dovecot.cert),
        "imap_idle_seconds": 2,
        "imap_poll_seconds": 0.5,
    }
    values.update(extra)
    return values
