"""The e-mail channel's settings (ADALDYK_IMAP_URL, _SMTP_URL, _MAIL_FROM, _MAIL_CA_FILE, …).

The two server addresses are URLs with the credentials in them, kept as secrets (scrubbed from logs)
and parsed once into a `MailServer` (`EmailSettings.imap`, `EmailSettings.smtp`): scheme, host, port,
user and password percent-decoded (an application password may hold `@`, `/` or `:`), the mailbox
for IMAP, and how the connection is protected:

- `imaps://user:password@host:993/INBOX` — TLS from the first byte (port 993 by default);
- `imap://user:password@host:143/INBOX` — no TLS at all, for a server without it: the connector warns
  at start unless the host is a loopback address;
- `smtps://user:password@host:465` — TLS from the first byte;
- `smtp://user:password@host:587` — STARTTLS, required; on a loopback host a server that does not
  offer STARTTLS may be used in plain text (`MailServer.plain_allowed`).

`ssl_context()` is the one place that decides what a certificate must be signed by: the system's CA
store, or only the bundle in ADALDYK_MAIL_CA_FILE (a ministry's own mail server, a test server).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from adaldyk_bots.settings import ChannelSettings, FieldError

Security = Literal["tls", "starttls", "none"]

# scheme -> (default port, protection)
_SCHEMES: dict[str, dict[str, tuple[int, Security]]] = {
    "imap": {"imaps": (993, "tls"), "imap": (143, "none")},
    "smtp": {"smtps": (465, "tls"), "smtp": (587, "starttls")},
}


@dataclass(frozen=True)
class MailServer:
    """One mail server as its URL says: where, who, and how the connection is protected."""

    scheme: str  # imaps | imap | smtps | smtp
    host: str
    port: int
    user: str
    password: str  # never in repr (below)
    security: Security = "tls"
    mailbox: str = ""  # IMAP: the folder read (default INBOX); SMTP: empty

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def plain_allowed(self) -> bool:
        """May the connection go without TLS? imap:// always (the operator asked for it; warned at start
        unless on loopback); smtp:// only to a loopback server that offers no STARTTLS."""
        return self.security == "none" or (self.security == "starttls" and self.loopback)

    def __repr__(self) -> str:  # never the password
        return f"MailServer({self.scheme}://{self.user}@{self.host}:{self.port}/{self.mailbox})"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_server_url(value: str, kind: Literal["imap", "smtp"]) -> MailServer:
    """`imaps://user:password@host:993/INBOX` → MailServer; a ValueError says what is wrong (never
    echoing the password)."""
    schemes = _SCHEMES[kind]
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:  # a port that is not a number, a broken IPv6 literal
        raise ValueError(f"is not a valid address ({exc})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)}")
    default_port, security = schemes[parts.scheme]
    if not parts.hostname:
        raise ValueError(f"names no server (expected e.g. {parts.scheme}://user:password@host)")
    if parts.username is None or parts.password is None:
        raise ValueError(
            "must carry the user and the password (user:password@host; "
            "percent-encode @ / : in them, e.g. %40 for @)"
        )
    user, password = unquote(parts.username), unquote(parts.password)
    if not user or not password:
        raise ValueError("has an empty user or password")
    mailbox = unquote(parts.path.lstrip("/"))
    if kind == "imap":
        mailbox = mailbox or "INBOX"
    elif mailbox:
        raise ValueError("must not have a path (an SMTP server has no folders)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a ?query or #fragment")
    return MailServer(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        user=user,
        password=password,
        security=security,
        mailbox=mailbox,
    )


class EmailSettings(ChannelSettings):
    imap_url: SecretStr | None = None
    smtp_url: SecretStr | None = None
    mail_from: str | None = None  # "Министрлік <appeals@example.kz>" or a bare address
    mail_ca_file: Path | None = None
    # Where a mail goes after it is stored (copied, then flagged; nothing is ever deleted). Unset: mails
    # stay where they are, marked \Seen.
    imap_processed_folder: str | None = None
    # Without IDLE: how often the mailbox is read. With IDLE: how long one IDLE waits before the
    # mailbox is read anyway (RFC 2177 asks to re-issue IDLE at least every 29 minutes).
    imap_poll_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    imap_idle_seconds: float = Field(default=300.0, ge=0.1, le=1740)
    imap_batch: int = Field(default=50, ge=1, le=1000)  # mails fetched and stored per transaction
    # …and at most this many bytes of them (one larger mail still goes alone): a batch is held in memory.
    imap_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=2 * 1024**3)
    imap_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # One budget for the whole account: Mail.Ru (like most providers) limits how much one mailbox sends
    # and treats bursts as spam; 20 a minute is well under what a person's mailbox may send.
    smtp_per_minute: int = Field(default=20, ge=1, le=600)
    # Each SMTP step (connect, TLS, AUTH, each command) gives up after this long; below the dispatcher's
    # send timeout (15 s), so a dead server is a classified retry, not the dispatcher's cut-off.
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # How often the worker logs in to the SMTP server without sending, so that a refused password shows
    # on /healthz before a citizen's notice waits on it; a failed check is repeated within 5 minutes.
    smtp_check_seconds: float = Field(default=3600.0, ge=1, le=86400)

    @field_validator("imap_url", "smtp_url")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("mail_from", "imap_processed_folder")
    @classmethod
    def _blank_text_is_unset(cls, value: str | None) -> str | None:
        return value.strip() if value is not None and value.strip() else None

    @field_validator("mail_from")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _name, address = parseaddr(value)
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain:
            raise ValueError("must be an e-mail address, e.g. appeals@ecogeo.gov.kz or Name <a@b.kz>")
        return value

    @field_validator("mail_ca_file")
    @classmethod
    def _readable_bundle(cls, value: Path | None) -> Path | None:
        if value is None or not str(value).strip():
            return None
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        try:
            ssl.create_default_context(cafile=str(value))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"is not a PEM bundle of CA certificates ({exc})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        imap = self._parsed("imap_url", "imap")
        self._parsed("smtp_url", "smtp")
        if imap is not None and self.smtp_url is None:
            raise FieldError("smtp_url", "is required when ADALDYK_IMAP_URL is set (acknowledgements)")
        if self.smtp_url is not None and self.mail_from is None:
            raise FieldError("mail_from", "is required when ADALDYK_SMTP_URL is set (the From address)")
        if imap is not None and self.imap_processed_folder == imap.mailbox:
            raise FieldError("imap_processed_folder", f"must differ from the mailbox read ({imap.mailbox})")
        return self

    def _parsed(self, field: str, kind: Literal["imap", "smtp"]) -> MailServer | None:
        value: SecretStr | None = getattr(self, field)
        if value is None:
            return None
        try:
            return parse_server_url(value.get_secret_value(), kind)
        except ValueError as exc:
            raise FieldError(field, str(exc)) from None

    # --- what the connector and the sender read ------------------------------------------------------

    @property
    def imap(self) -> MailServer | None:
        """The mailbox read (ADALDYK_IMAP_URL), or None when the channel is off."""
        return self._parsed("imap_url", "imap")

    @property
    def smtp(self) -> MailServer | None:
        """The server mail is sent through (ADALDYK_SMTP_URL)."""
        return self._parsed("smtp_url", "smtp")

    @property
    def ca_file(self) -> Path | None:
        return self.mail_ca_file

    @property
    def mail_from_address(self) -> str:
        """The bare address of ADALDYK_MAIL_FROM ("" when unset)."""
        return parseaddr(self.mail_from or "")[1]

    @property
    def mail_from_domain(self) -> str:
        """Its domain: the right-hand side of our Message-IDs."""
        return self.mail_from_address.rpartition("@")[2].lower()

    def ssl_context(self) -> ssl.SSLContext:
        """Certificates verified and host names checked; against ADALDYK_MAIL_CA_FILE alone when it is
        set (create_default_context then loads only that bundle), else the system's CA store."""
        return ssl.create_default_context(cafile=str(self.mail_ca_file) if self.mail_ca_file else None)

    def secret_values(self) -> list[str]:
        values = super().secret_values()  # the whole URLs
        for url in (self.imap_url, self.smtp_url):
            if url is not None:
                raw = urlsplit(url.get_secret_value().strip()).password  # as written, percent-encoded
                values += [raw, unquote(raw)] if raw else []
        return values
