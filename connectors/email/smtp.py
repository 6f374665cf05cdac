"""Sending one notice by SMTP (the standard library's smtplib, off the event loop) and classifying the answer.

One connection per message: connect (`smtps://` TLS from the first byte; `smtp://` STARTTLS, required
unless the server is on loopback and offers none), log in, `MAIL FROM` our address (bounces come back
to our mailbox), `RCPT TO` the one citizen, `DATA`, `QUIT`. The server's answer becomes a SendResult:

    Delivered(the Message-ID, no <>)        250 after DATA
    RetryLater  email.4xx                   any other 4xx (greylisting, mailbox busy)
                email.rate_limited          a 4xx that says we send too fast: the account pauses a
                                            minute, no attempt used (waiting is not failing)
                email.timeout               no answer within ADALDYK_SMTP_TIMEOUT_SECONDS
                email.network               refused, reset, name not found, a TLS handshake cut
    Failed      email.<status>              5xx for the recipient or the message (email.550: no such
                                            user), with the server's words; email.bad_address before
                                            sending; email.address_unsupported (non-ASCII, no SMTPUTF8)
    Held        email.auth_failed           535/530/534: the application password was refused; the
                                            channel waits (probes) instead of failing every message
                email.sender_refused        5xx to MAIL FROM: no message can go from this account
                email.tls_failed            the certificate does not verify (ADALDYK_MAIL_CA_FILE?)
                email.starttls_unavailable  smtp:// to a server that offers no STARTTLS (not loopback)
                email.refused               5xx greeting: the server will not talk to us
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from adaldyk_bots.domain import Delivered, Failed, Held, ReplyTarget, RetryLater, SendContext, SendResult
from adaldyk_bots.ports import RateScope
from adaldyk_bots.storage.db import utcnow
from connectors.email.compose import AddressError, Notice, compose, one_address, sender_address
from connectors.email.settings import EmailSettings, MailServer

__all__ = ["MailSender"]

_AUTH_REFUSED = {530, 534, 535}
# A 4xx that says we send too fast (e.g. "451 4.7.1 Ratelimit exceeded", "421 4.7.0 Too many messages"):
# waiting, not failing — the whole account's budget pauses and no attempt is used up.
_TOO_FAST = re.compile(
    r"rate.?limit|too many (messages|mails|connections|recipients)|too fast", re.IGNORECASE
)
RATE_LIMIT_PAUSE_SECONDS = 60.0


class _Stop(Exception):
    """A result decided mid-session (no STARTTLS where it is required)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result)
        self.result = result


class MailSender:
    """Sends notices through ADALDYK_SMTP_URL as ADALDYK_MAIL_FROM; EmailConnector.send delegates here."""

    def __init__(self, settings: EmailSettings) -> None:
        server = settings.smtp
        if server is None or not settings.mail_from:
            raise ValueError("ADALDYK_SMTP_URL and ADALDYK_MAIL_FROM are required to send e-mail")
        self.server: MailServer = server
        self.mail_from = settings.mail_from
        self.envelope_from = sender_address(settings.mail_from)
        self.domain = settings.mail_from_domain
        self.timeout = settings.smtp_timeout_seconds
        self.per_minute = settings.smtp_per_minute
        self._tls = settings.ssl_context()

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        """One budget per sending account: the provider limits the mailbox, not each recipient."""
        return [RateScope(f"email:{target.account}", limit=self.per_minute, per_seconds=60)]

    async def send(
        self, target: ReplyTarget, text: str, *, idempotency_key: str, context: SendContext | None = None
    ) -> SendResult:
        fields = context.fields if context is not None else {}
        # The acknowledgement answers the citizen's mail (the outbox row's reply_to_key); later notices
        # answer their last message in the conversation.
        parent = target.reply_to_key or (context.last_inbound_key if context is not None else None)
        threaded = parent and "@" in parent  # a Message-ID, not another key
        notice = Notice(
            mail_from=self.mail_from,
            to=target.chat_id,
            text=text,
            idempotency_key=idempotency_key,
            sent_at=context.now if context is not None else utcnow(),
            number=fields.get("number") or None,
            language=context.language if context is not None else None,
            purpose=context.purpose if context is not None else "info",
            written_by_person=context.written_by_person if context is not None else False,
            in_reply_to=parent if threaded else None,
            # The dispatcher read the stored References of that same message (SendContext.reply_thread).
            references=context.reply_thread if threaded and context is not None else (),
        )
        try:
            recipient = one_address(target.chat_id).addr_spec
            message = compose(notice)
        except AddressError as exc:
            return Failed("email.bad_address", str(exc))
        return await asyncio.to_thread(self._deliver, message, recipient)

    async def check(self) -> SendResult | None:
        """Connect, secure and log in without sending (for the connector's start and health): None when
        the account can send, else what a send would get now (Held: a refused password or certificate;
        RetryLater: the server cannot be reached at the moment)."""
        return await asyncio.to_thread(self._check)

    # --- one SMTP session, in a thread -----------------------------------------------------------------

    def _check(self) -> SendResult | None:
        try:
            with self._session():
                pass
        except (_Stop, smtplib.SMTPException, OSError) as exc:
            return self._result_of(exc)
        return None

    def _deliver(self, message: EmailMessage, recipient: str) -> SendResult:
        our_id = str(message["Message-ID"]).strip("<>")
        accepted = False
        try:
            with self._session() as smtp:
                try:
                    smtp.send_message(message, from_addr=self.envelope_from, to_addrs=[recipient])
                except smtplib.SMTPNotSupportedError as exc:
                    return Failed("email.address_unsupported", f"{recipient}: {exc}")
                accepted = True
        except (_Stop, smtplib.SMTPException, OSError) as exc:
            if accepted:  # the server took the mail (250 after DATA); only its QUIT went wrong
                return Delivered(our_id)
            return self._result_of(exc)
        return Delivered(our_id)

    @contextmanager
    def _session(self) -> Iterator[smtplib.SMTP]:
        """Connected, secured and logged in; QUIT on the way out."""
        with self._connect() as smtp:
            self._secure(smtp)
            try:
                smtp.login(self.server.user, self.server.password)
            except smtplib.SMTPNotSupportedError:
                raise _Stop(
                    Held("email.auth_unsupported", "the server offers no AUTH method we can use")
                ) from None
            yield smtp

    def _result_of(self, exc: Exception) -> SendResult:
        """The table in the module's docstring. SMTPResponseException's subclasses first: each names the
        step that was refused."""
        where = f"{self.server.host}:{self.server.port}"
        if isinstance(exc, _Stop):
            return exc.result
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            status, reason = next(iter(exc.recipients.values()))  # one recipient, always
            return _classified(status, reason, permanent=Failed)
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return _classified(exc.smtp_code, exc.smtp_error, permanent=Held, code="email.sender_refused")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            if exc.smtp_code in _AUTH_REFUSED:
                return Held("email.auth_failed", _said(exc.smtp_code, exc.smtp_error))
            return _classified(exc.smtp_code, exc.smtp_error, permanent=Held, code="email.auth_failed")
        if isinstance(exc, smtplib.SMTPConnectError):
            return _classified(exc.smtp_code, exc.smtp_error, permanent=Held, code="email.refused")
        if isinstance(exc, smtplib.SMTPResponseException):  # DATA refused (spam, size), EHLO, STARTTLS …
            return _classified(exc.smtp_code, exc.smtp_error, permanent=Failed)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Held("email.tls_failed", f"{self.server.host}: {exc.verify_message or exc}")
        if isinstance(exc, TimeoutError):
            return RetryLater("email.timeout", f"{where}: no answer ({exc})")
        if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
            return RetryLater("email.timeout", f"{where}: {exc}")  # smtplib's name for a read timed out
        return RetryLater("email.network", f"{where}: {exc}")  # refused, reset, name not found, TLS cut

    def _connect(self) -> smtplib.SMTP:
        # local_hostname: our domain for EHLO, so smtplib does not ask DNS for this machine's name.
        if self.server.security == "tls":
            return smtplib.SMTP_SSL(
                self.server.host,
                self.server.port,
                local_hostname=self.domain,
                timeout=self.timeout,
                context=self._tls,
            )
        return smtplib.SMTP(
            self.server.host, self.server.port, local_hostname=self.domain, timeout=self.timeout
        )

    def _secure(self, smtp: smtplib.SMTP) -> None:
        if self.server.security != "starttls":
            return
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self._tls)
            smtp.ehlo()
        elif not self.server.plain_allowed:
            raise _Stop(
                Held(
                    "email.starttls_unavailable",
                    f"{self.server.host}:{self.server.port} offers no STARTTLS; use smtps:// or a server "
                    "that offers it (plain SMTP only on loopback)",
                )
            )


def _said(code: int, reason: bytes | str) -> str:
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
    return f"{code} {' '.join(text.split())}"


def _classified(
    status: int, reason: bytes | str, *, permanent: type[Failed] | type[Held], code: str | None = None
) -> SendResult:
    """4xx: try again later; 5xx: `permanent` (Failed for this message, Held for the whole account),
    coded email.<status> unless `code` names it; anything else is a broken conversation."""
    detail = _said(status, reason)
    if 400 <= status < 500 and _TOO_FAST.search(detail):
        return RetryLater(
            "email.rate_limited",
            detail,
            after_seconds=RATE_LIMIT_PAUSE_SECONDS,
            rate_limited=True,
            scope="account",
        )
    if 400 <= status < 500:
        return RetryLater("email.4xx", detail)
    if 500 <= status < 600:
        return permanent(code or f"email.{status}", detail)
    return RetryLater("email.network", detail)
