"""A real SMTP server on loopback for the e-mail tests (aiosmtpd), the platform side of smtp.py.

`MailServers` runs one handler behind three listeners: SMTPS (TLS from the first byte, like
smtp.mail.ru:465), submission with STARTTLS required before anything else (like port 587), and plain
SMTP (loopback only); all ask for AUTH LOGIN/PLAIN with one user and password, over TLS where there is
TLS. The certificate is issued for 127.0.0.1 and localhost by a CA made for the test run (trustme),
whose bundle `ca_file` is what ADALDYK_MAIL_CA_FILE points at.

`MailHandler` keeps every accepted message's bytes exactly as they arrived after DATA (`received`), and
answers with what a test queued for a recipient (`refuse`: "450 4.2.1 …", "550 5.1.1 …") or for the next
DATA (`refuse_data`), in aiosmtpd's own way: the handler's return value is the reply line.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import free_port

USER = "adaldyk@example.kz"
PASSWORD = "app-pass:w0rd@1"  # an application password with the characters a URL must percent-encode


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message exactly as sent (headers and body, CRLF)
    tls: bool  # did it come over TLS (implicit or STARTTLS)
    login: str | None  # the AUTH user


class MailHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._refusals: dict[str, list[str]] = {}
        self._data_refusals: list[str] = []
        self.quit_reply: str | None = None  # e.g. "451 4.3.0 Bye after all": QUIT answered wrongly
        self._lock = threading.Lock()

    def refuse(self, address: str, *replies: str) -> None:
        """Answer RCPT TO `address` with these replies, one per attempt, then accept it."""
        with self._lock:
            self._refusals.setdefault(address.lower(), []).extend(replies)

    def refuse_data(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies (e.g. "554 5.7.1 spam")."""
        with self._lock:
            self._data_refusals.extend(replies)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            queued = self._refusals.get(address.lower())
            if queued:
                return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self._data_refusals:
                return self._data_refusals.pop(0)
            auth = session.auth_data
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=envelope.original_content,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                )
            )
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return self.quit_reply or "221 2.0.0 Bye"


class Authenticator:
    """Accepts USER / PASSWORD; `refuse_all` makes it refuse even those (a password revoked meanwhile)."""

    def __init__(self) -> None:
        self.refuse_all = False

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            not self.refuse_all
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        )
        # handled=False: aiosmtpd answers 235 or 535 5.7.8 itself, and keeps auth_data on the session.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class MailServers:
    def __init__(self, directory: Path) -> None:
        self.handler = MailHandler()
        self.auth = Authenticator()
        ca = trustme.CA()
        self.ca_file = directory / "test-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.other_ca_file = directory / "other-ca.pem"  # a CA that did not sign the server's certificate
        trustme.CA().cert_pem.write_to_path(str(self.other_ca_file))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_tls)
        self.smtps_port, self.starttls_port, self.plain_port = free_port(), free_port(), free_port()
        common: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "authenticator": self.auth,
            "auth_required": True,
            "server_hostname": "mx.test",
        }
        self._controllers = [
            # aiosmtpd counts only STARTTLS as TLS for AUTH; this listener is TLS from the first byte.
            Controller(
                self.handler,
                port=self.smtps_port,
                ssl_context=self._server_tls,
                auth_require_tls=False,
                **common,
            ),
            Controller(
                self.handler,
                port=self.starttls_port,
                tls_context=self._server_tls,
                require_starttls=True,
                **common,
            ),
            Controller(self.handler, port=self.plain_port, auth_require_tls=False, **common),  # loopback
        ]

    def url(self, kind: str, *, user: str = USER, password: str = PASSWORD) -> str:
        """smtps | starttls | plain → the ADALDYK_SMTP_URL of that listener (credentials percent-encoded)."""
        from urllib.parse import quote

        scheme, port = {
            "smtps": ("smtps", self.smtps_port),
            "starttls": ("smtp", self.starttls_port),
            "plain": ("smtp", self.plain_port),
        }[kind]
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}"

    def start(self) -> None:
        for controller in self._controllers:
            controller.start()

    def stop(self) -> None:
        for controller in self._controllers:
            controller.stop()


@contextmanager
def mail_servers(directory: Path) -> Iterator[MailServers]:
    servers = MailServers(directory)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
