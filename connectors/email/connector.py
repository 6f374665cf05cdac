"""The e-mail channel: one IMAP mailbox in (connectors/email/imap.py), SMTP out (connectors/email/smtp.py).

- Channel `email`, on when ADALDYK_IMAP_URL is set; the account is the mailbox's IMAP user.
- A conversation is one correspondent: `chat_id` is the sender's address in lower case, so every mail
  of a citizen is one thread, and a reply joins their appeal by the number it carries (In-Reply-To /
  References naming our Message-ID `<ADL-…​.<hash>@domain>`, or `[ADL-…]` in the subject) when that
  appeal is theirs and open, else by the usual rule of the other channels.
- A message's key is its bare Message-ID (what `ReplyTarget.reply_to_key` carries to the sender for
  In-Reply-To); `sha256:<hex>` (the bytes' hash) for a mail without one, `midsha:<hex>` for one longer
  than the column.
- Bounces are delivery receipts (`delivery_receipts = True`): the dispatcher indexes every sent mail's
  Message-ID, and a bounce naming it fails that notice with the DSN's status and diagnostic.
- The SMTP side is checked without sending (connect, TLS, AUTH): at the worker's start (bounded by
  SMTP_START_CHECK_SECONDS, so start-up never waits long), every ADALDYK_SMTP_CHECK_SECONDS, within
  SMTP_RECHECK_SECONDS while it fails; every send's answer counts as a check too. `/healthz` shows it
  under `channels.email.smtp` ({state: unchecked|ok|refused|unreachable, code, detail, said,
  checked_at}); a refusal (a 535 holds the channel's sends) makes the channel `degraded` with the reason
  in its detail ("SMTP login refused: 535 …").
- Files: `file_id` is `imap:<mail reference>:<index>`; `download_file` finds the mail again by its
  Message-ID in the mailbox and the processed folder, and keeps the part under FILES_DIR/email.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import ClassVar

from imapclient import IMAPClient

from adaldyk_bots.domain import Delivered, Held, ReplyTarget, RetryLater, SendContext, SendResult
from adaldyk_bots.ports import (
    ChannelHealth,
    ConnectorFactory,
    IntakeSink,
    LoopSpec,
    RateScope,
    RawEvent,
    WebhookRoute,
    poller_lock_name,
)
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from connectors.email.imap import MailboxPoller, quietly
from connectors.email.mime import CHANNEL, MailRules, mail_files, parse_mail
from connectors.email.settings import EmailSettings
from connectors.email.smtp import MailSender

log = logging.getLogger(__name__)

# Mail has no message length limit worth splitting at; this only keeps one notice one mail.
EMAIL_TEXT_LIMIT = 100_000
# The start-up check waits at most this long (the rest of the service starts after it); a server that
# has not answered by then is checked again by the loop.
SMTP_START_CHECK_SECONDS = 5.0
SMTP_RECHECK_SECONDS = 300.0  # a failed check (or a held send) is repeated this soon
SMTP_TICK_SECONDS = 30.0  # the check loop's round: it checks only when a check is due
# What a refusal (Held) means, first in /healthz's detail; the server's own words follow.
SMTP_REFUSALS = {
    "email.auth_failed": "SMTP login refused",
    "email.auth_unsupported": "SMTP login impossible",
    "email.sender_refused": "SMTP server refuses our sender address",
    "email.tls_failed": "SMTP server certificate not trusted",
    "email.starttls_unavailable": "SMTP server offers no STARTTLS",
    "email.refused": "SMTP server refuses the connection",
}


class EmailConnector:
    name: ClassVar[str] = CHANNEL
    text_limit: ClassVar[int] = EMAIL_TEXT_LIMIT
    settings_model: ClassVar[type[EmailSettings]] = EmailSettings
    # Bounces name the Message-ID of the mail they return (receipts.py indexes our sent ids).
    delivery_receipts: ClassVar[bool] = True
    # The mail itself needs the SendContext (number, language, purpose, the citizen's last Message-ID).
    send_takes_context: ClassVar[bool] = True

    def __init__(self, settings: EmailSettings, *, number_prefix: str = "ADL", files_dir: Path) -> None:
        server = settings.imap
        assert server is not None
        self.settings = settings
        self._account = server.user.lower()[:64]
        self.files_dir = files_dir
        own = {server.user.lower()} | ({settings.mail_from_address.lower()} if settings.mail_from else set())
        self.rules = MailRules(
            account=self._account, number_prefix=number_prefix, own_addresses=frozenset(own)
        )
        self._health = ChannelHealth(
            extra={
                "mailbox": server.mailbox,
                "server": f"{server.host}:{server.port}",
                "resyncs": 0,
                "smtp": {"state": "unchecked", "code": None, "detail": "", "said": "", "checked_at": None},
            }
        )
        # The IMAP side's own state (the poller's), which the SMTP side's refusal may degrade (_publish).
        self._imap_state, self._imap_detail = self._health.state, self._health.detail
        self._imap_credentials: str | None = None
        self._smtp_due = 0.0  # time.monotonic() of the next SMTP check
        self.poller = MailboxPoller(
            server=server,
            ssl_context=settings.ssl_context,
            account=self._account,
            processed_folder=settings.imap_processed_folder,
            batch=settings.imap_batch,
            batch_bytes=settings.imap_batch_bytes,
            poll_seconds=settings.imap_poll_seconds,
            idle_seconds=settings.imap_idle_seconds,
            timeout=settings.imap_timeout_seconds,
            parse=self.parse_payload,
            on_state=self._poller_said,
            on_events=self._note_events,
            on_resync=self._note_resync,
        )
        self.sender = MailSender(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailConnector | None:
        own = settings.channel(EmailSettings)
        if own.imap is None:
            return None
        return cls(own, number_prefix=settings.appeal_number_prefix, files_dir=settings.files_dir / "email")

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return len(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return self.sender.rate_scopes(target)  # one budget for the sending account

    def parse_payload(self, payload: bytes) -> RawEvent:
        return parse_mail(payload, self.rules)

    def webhooks(self) -> list[WebhookRoute]:
        return []

    # --- receiving -------------------------------------------------------------------------------------

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        server = self.settings.imap
        assert server is not None
        if server.security == "none" and not server.loopback:
            log.warning(
                "email: ADALDYK_IMAP_URL is imap:// to %s: the password and every mail cross the network "
                "unencrypted; use imaps:// unless the server cannot do TLS",
                server.host,
            )
            self._health.extra["warning"] = "IMAP without TLS"
        if not receive:
            self._set_health("ok", "sending only")
            return
        await self.check_smtp(within=min(SMTP_START_CHECK_SECONDS, self.settings.smtp_timeout_seconds))

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        async def fresh() -> None:
            self.poller.reset()

        return [
            LoopSpec(
                name=f"email:smtp_check:{self._account}",
                run_round=self._smtp_round,
                # A check is a few SMTP steps, each bounded by ADALDYK_SMTP_TIMEOUT_SECONDS.
                period=SMTP_TICK_SECONDS + 5 * self.settings.smtp_timeout_seconds,
            ),
            LoopSpec(
                name=f"email:poller:{self._account}",
                run_round=lambda: self.poller.poll_round(intake),
                lock=poller_lock_name(self.name, self._account),
                on_acquire=fresh,
                on_standby=lambda: self._set_health("ok", "standby: another worker reads this mailbox"),
                period=self.settings.imap_idle_seconds + self.settings.imap_timeout_seconds,
            ),
        ]

    async def stop(self) -> None:
        await asyncio.to_thread(self.poller.close)

    def _poller_said(self, state: str, detail: str) -> None:
        """The poller's word: "ok" comes only after its login went through, "broken" only when the server
        refused the login (imap.py), so the credentials' state follows from the state itself."""
        if state == "ok":
            self._imap_credentials = "accepted"
        elif state == "broken":
            self._imap_credentials = "refused"
        self._set_health(state, detail)

    def _set_health(self, state: str, detail: str) -> None:
        """The IMAP side's state; published with the SMTP side's (_publish)."""
        self._imap_state, self._imap_detail = state, detail
        self._publish()

    def _publish(self) -> None:
        """One state for the channel: the IMAP side's, degraded while the SMTP server refuses us (sends
        are held: the channel receives but cannot answer), with the reason after the IMAP detail."""
        smtp = self._health.extra["smtp"]
        state, detail = self._imap_state, self._imap_detail
        if smtp["state"] == "refused":
            state = "degraded" if state in ("ok", "starting") else state
            detail = f"{detail}; {smtp['detail']}" if detail else smtp["detail"]
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "email: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail
        credentials = "refused" if smtp["state"] == "refused" else self._imap_credentials
        if credentials is not None:
            self._health.extra["credentials"] = credentials
        else:
            self._health.extra.pop("credentials", None)

    # --- the SMTP side's check ---------------------------------------------------------------------

    async def check_smtp(self, *, within: float | None = None) -> None:
        """Connect, secure and log in without sending, and show what came of it (at most `within` seconds)."""
        server = self.sender.server
        try:
            result = await asyncio.wait_for(self.sender.check(), within)
        except TimeoutError:
            # The check goes on in its thread until its own socket timeouts; the loop checks again.
            result = RetryLater(
                "email.timeout", f"{server.host}:{server.port}: no answer within {within:.0f} s"
            )
        self._note_smtp(result)

    async def _smtp_round(self) -> None:
        wait = self._smtp_due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, SMTP_TICK_SECONDS))
            return
        await self.check_smtp()

    def _note_smtp(self, result: SendResult | None) -> None:
        """What a check (None: the login went through) or a send's answer says about the account."""
        server = self.sender.server
        smtp = self._health.extra["smtp"]
        if result is None or isinstance(result, Delivered):
            values = {
                "state": "ok",
                "code": None,
                "said": "",
                "detail": f"SMTP login accepted by {server.host}:{server.port}",
            }
        elif isinstance(result, Held):
            reason = SMTP_REFUSALS.get(result.code, "SMTP server refuses to send")
            values = {
                "state": "refused",
                "code": result.code,
                "said": result.detail,
                "detail": f"{reason}: {result.detail}",
            }
        elif isinstance(result, RetryLater) and result.code in ("email.timeout", "email.network"):
            values = {
                "state": "unreachable",
                "code": result.code,
                "said": result.detail,
                "detail": f"SMTP server does not answer: {result.detail}",
            }
        else:  # a refusal of one recipient or one message says nothing about the account
            return
        smtp.update(values, checked_at=utcnow().isoformat())
        interval = self.settings.smtp_check_seconds if values["state"] == "ok" else SMTP_RECHECK_SECONDS
        self._smtp_due = time.monotonic() + min(interval, self.settings.smtp_check_seconds)
        self._publish()

    def _note_events(self, count: int) -> None:
        self._health.last_event_at = utcnow().isoformat()

    def _note_resync(self, old: int, new: int) -> None:
        self._health.extra["resyncs"] += 1
        self._health.extra["last_resync"] = {"from": old, "to": new, "at": utcnow().isoformat()}

    # --- files -----------------------------------------------------------------------------------------

    async def download_file(self, file_id: str) -> Path:
        """The part `file_id` names, fetched from the mailbox (or the processed folder) and kept."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / hashlib.sha256(file_id.encode()).hexdigest()
        if not path.exists():
            data = await asyncio.to_thread(self._fetch_part, file_id)
            path.with_suffix(".part").write_bytes(data)
            path.with_suffix(".part").rename(path)
        return path

    def _fetch_part(self, file_id: str) -> bytes:
        scheme, _, rest = file_id.partition(":")
        ref, _, index = rest.rpartition(":")
        if scheme != "imap" or not ref.startswith("mid:") or not index.isdigit():
            raise LookupError(f"{file_id}: only files of mails with a Message-ID can be fetched again")
        message_id = ref.removeprefix("mid:")
        server = self.settings.imap
        assert server is not None
        client = IMAPClient(
            server.host,
            port=server.port,
            ssl=server.security == "tls",
            ssl_context=self.settings.ssl_context() if server.security == "tls" else None,
            timeout=self.settings.imap_timeout_seconds,
        )
        try:
            client.login(server.user, server.password)
            for folder in filter(None, (server.mailbox, self.settings.imap_processed_folder)):
                if folder != server.mailbox and not client.folder_exists(folder):
                    continue
                client.select_folder(folder, readonly=True)
                for uid in client.search(["HEADER", "Message-ID", f"<{message_id}>"]):
                    raw = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
                    if not isinstance(raw, bytes):
                        continue
                    part = _part(raw, int(index))
                    if part is not None:
                        return part
        finally:
            quietly(client.logout)
        raise LookupError(f"{file_id}: the mail is no longer in {server.mailbox} or the processed folder")

    # --- sending ---------------------------------------------------------------------------------------

    async def send(
        self,
        target: ReplyTarget,
        text: str,
        *,
        idempotency_key: str,
        context: SendContext | None = None,
    ) -> SendResult:
        result = await self.sender.send(target, text, idempotency_key=idempotency_key, context=context)
        # A 535 on a send holds the channel's sends (the dispatcher); the health says why at once.
        self._note_smtp(result)
        return result


def _part(raw: bytes, index: int) -> bytes | None:
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    files = mail_files(msg)
    if index >= len(files):
        return None
    payload = files[index].get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


# mypy checks the class against the ports here (its from_settings returns a Connector), so a drift is a
# type error rather than a surprise at start-up.
_FACTORY: ConnectorFactory = EmailConnector
