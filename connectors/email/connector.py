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
- Files: `file_id` is `imap:<mail reference>:<index>`; `download_file` finds the mail again by its
  Message-ID in the mailbox and the processed folder, and keeps the part under FILES_DIR/email.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import ClassVar

from imapclient import IMAPClient

from adaldyk_bots.domain import ReplyTarget, SendContext, SendResult
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
            extra={"mailbox": server.mailbox, "server": f"{server.host}:{server.port}", "resyncs": 0}
        )
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
            on_state=self._set_health,
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

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        async def fresh() -> None:
            self.poller.reset()

        return [
            LoopSpec(
                name=f"email:poller:{self._account}",
                run_round=lambda: self.poller.poll_round(intake),
                lock=poller_lock_name(self.name, self._account),
                on_acquire=fresh,
                on_standby=lambda: self._set_health("ok", "standby: another worker reads this mailbox"),
                period=self.settings.imap_idle_seconds + self.settings.imap_timeout_seconds,
            )
        ]

    async def stop(self) -> None:
        await asyncio.to_thread(self.poller.close)

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "email: %s (%s)", state, detail)
        self._health.state, self._health.detail = state, detail
        if state == "ok" and "standby" not in detail and "sending only" not in detail:
            self._health.extra["credentials"] = "accepted"
        elif "refused the login" in detail:
            self._health.extra["credentials"] = "refused"

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
        return await self.sender.send(target, text, idempotency_key=idempotency_key, context=context)


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
