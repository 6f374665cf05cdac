"""Our IMAP poller: the cursor (UIDVALIDITY, last UID) is committed with the batch it confirms.

One round (run by the core's supervisor while this worker holds the mailbox's poller lock):

1. select the mailbox; read the cursor `"<uidvalidity>:<last uid>"` from the database (another worker
   may have moved it since this one last held the lock);
2. fetch the exact bytes (`BODY.PEEK[]`: reading sets no flag) of up to `batch` mails with a UID above
   the cursor and store them with the new cursor in ONE transaction (IntakeSink.store);
3. only then file them: moved (RFC 6851 MOVE; COPY where the server has no MOVE) to the processed folder
   and marked `\\Seen`, or only marked `\\Seen` without one. Nothing is ever deleted or expunged by us.
   A crash between 2 and 3 leaves stored mails unfiled; they are filed when the poller connects again
   (unseen mails at or below the cursor), never stored twice;
4. with nothing new: IDLE (RFC 2177) when the server offers it, up to `idle_seconds`, back as soon as
   the server reports a new mail; else wait `poll_seconds`.

- First start (no cursor): from the oldest unread mail on; mail read before the channel was connected
  stays where it is (a ministry mailbox may hold years of it).
- UIDVALIDITY changed (the mailbox was recreated, restored, or moved to another server): old UIDs name
  nothing any more, so the whole mailbox is read again from UID 1, and the dedup keys (Message-ID, else
  a hash of the bytes: connectors/email/mime.py) drop every mail already stored. Nothing is lost and
  nothing stored twice; /healthz counts the resynchronisations.

imapclient is synchronous: a round runs in a thread. IDLE waits in one-second slices so that stop()
ends it at once instead of after `idle_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from adaldyk_bots.ports import IntakeSink, RawEvent
from connectors.email.mime import CHANNEL
from connectors.email.settings import MailServer

log = logging.getLogger(__name__)

SEEN = b"\\Seen"


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int
    last_uid: int

    def __str__(self) -> str:
        return f"{self.uidvalidity}:{self.last_uid}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor | None:
        if not value:
            return None
        validity, _, uid = value.partition(":")
        try:
            return cls(int(validity), int(uid))
        except ValueError:
            log.warning("email: stored cursor %r is not <uidvalidity>:<uid>; starting afresh", value)
            return None


class MailboxLoginRefused(Exception):
    """The server refused the user and password of ADALDYK_IMAP_URL."""


class MailboxPoller:
    def __init__(
        self,
        *,
        server: MailServer,
        ssl_context: Callable[[], ssl.SSLContext],
        account: str,
        processed_folder: str | None,
        batch: int,
        batch_bytes: int,
        poll_seconds: float,
        idle_seconds: float,
        timeout: float,
        parse: Callable[[bytes], RawEvent],
        on_state: Callable[[str, str], None],
        on_events: Callable[[int], None],
        on_resync: Callable[[int, int], None],
    ) -> None:
        self.server = server
        self._ssl_context = ssl_context
        self.account = account
        self.processed_folder = processed_folder
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self.timeout = timeout
        self.parse = parse
        self.on_state = on_state
        self.on_events = on_events
        self.on_resync = on_resync
        self._client: IMAPClient | None = None
        self._idle_supported = False
        self._move_supported = False
        self._folder_ready = False
        self._needs_filing_check = True
        self._lock = threading.Lock()  # one thread at a time on the connection
        self._stopping = threading.Event()

    # --- the round -------------------------------------------------------------------------------------

    async def poll_round(self, intake: IntakeSink) -> None:
        """One round for the supervisor. An error says why on the channel's health and is raised (the
        supervisor logs it and backs off); the connection is dropped, so the next round starts afresh.
        Nothing was confirmed, so nothing is lost."""
        try:
            stored = await asyncio.to_thread(self._locked, self._fetch_and_store, intake)
            if stored:
                return  # more may be waiting: the next round comes at once
            if self._idle_supported:
                await asyncio.to_thread(self._locked, self._idle_wait)
            else:
                await asyncio.sleep(self.poll_seconds)
        except LoginError as exc:
            self._drop()
            self.on_state(
                "broken",
                f"the mail server refused the login of ADALDYK_IMAP_URL ({_text(exc)}); for Mail.Ru use "
                "an application password",
            )
            raise MailboxLoginRefused(_text(exc)) from None
        except Exception as exc:
            self._drop()
            self.on_state("degraded", f"IMAP: {type(exc).__name__}: {_text(exc)}")
            raise

    def reset(self) -> None:
        """The lock was (re)taken: read the cursor from the database again and check for unfiled mail."""
        self._needs_filing_check = True

    def _locked(self, work: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._stopping.is_set():
                return 0
            return work(*args)

    def _fetch_and_store(self, intake: IntakeSink) -> int:
        client = self._connect()
        selected = client.select_folder(self.server.mailbox)
        validity = int(selected[b"UIDVALIDITY"])
        cursor = Cursor.parse(intake.cursor(CHANNEL, self.account))
        if cursor is None:
            cursor = self._first_cursor(client, validity, int(selected.get(b"UIDNEXT", 1)))
            intake.store(channel=CHANNEL, account=self.account, events=[], cursor=str(cursor))
        elif cursor.uidvalidity != validity:
            log.warning(
                "email %s: UIDVALIDITY of %s changed %s -> %s; reading the whole mailbox again "
                "(mails already stored are dropped by their Message-ID)",
                self.account,
                self.server.mailbox,
                cursor.uidvalidity,
                validity,
            )
            self.on_resync(cursor.uidvalidity, validity)
            cursor = Cursor(validity, 0)
            intake.store(channel=CHANNEL, account=self.account, events=[], cursor=str(cursor))
        if self._needs_filing_check:
            self._file_leftovers(client, cursor)
        # "n:*" always matches the last mail, even one below n (RFC 3501 §6.4.8): filter.
        uids = sorted(u for u in client.search(["UID", f"{cursor.last_uid + 1}:*"]) if u > cursor.last_uid)
        state = "IDLE" if self._idle_supported else f"polling every {self.poll_seconds:g} s"
        self.on_state("ok", f"{self.server.mailbox} on {self.server.host} ({state})")
        if not uids:
            return 0
        uids = self._within_budget(client, uids[: self.batch])
        fetched = client.fetch(uids, ["BODY.PEEK[]"])
        events, present = [], []
        for uid in uids:
            data = fetched.get(uid)
            raw = data.get(b"BODY[]") if data else None
            if isinstance(raw, bytes):  # expunged meanwhile (by a person): nothing to store
                events.append(self.parse(raw))
                present.append(uid)
        new_cursor = Cursor(validity, uids[-1])
        result = intake.store(channel=CHANNEL, account=self.account, events=events, cursor=str(new_cursor))
        log.info(
            "email %s: %d mail(s) up to UID %s stored (%d new, %d already stored)",
            self.account,
            len(events),
            uids[-1],
            result.stored + result.ignored + result.quarantined,
            result.duplicates,
        )
        self.on_events(len(events))
        self._file(client, present)
        return len(uids)

    def _within_budget(self, client: IMAPClient, uids: list[int]) -> list[int]:
        """The first of `uids` whose sizes add up to at most `batch_bytes` (always at least one): a batch
        is held in memory and written in one transaction, and a mail may carry tens of megabytes."""
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        chosen: list[int] = []
        total = 0
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if chosen and total + size > self.batch_bytes:
                break
            chosen.append(uid)
            total += size
        return chosen

    def _first_cursor(self, client: IMAPClient, validity: int, uidnext: int) -> Cursor:
        unseen = client.search(["UNSEEN"])
        start = min(unseen) - 1 if unseen else uidnext - 1
        log.info(
            "email %s: first start on %s; reading from UID %d (%d unread mail(s))",
            self.account,
            self.server.mailbox,
            start + 1,
            len(unseen),
        )
        return Cursor(validity, max(start, 0))

    # --- filing, after the commit ----------------------------------------------------------------------

    def _file(self, client: IMAPClient, uids: list[int]) -> None:
        """Move (or copy) stored mails to the processed folder and mark them seen. A failure here loses
        nothing (they are stored): it is logged, and tried again at the next connection."""
        if not uids:
            return
        try:
            if self.processed_folder:
                self._ensure_folder(client)
                if self._move_supported:
                    client.move(uids, self.processed_folder)
                    return  # the moved copies keep their flags; set \Seen on them below would need a select
                client.copy(uids, self.processed_folder)
            client.add_flags(uids, [SEEN])
        except IMAPClientError as exc:
            self._needs_filing_check = True
            log.warning("email %s: stored mails %s not filed yet: %s", self.account, uids, _text(exc))

    def _file_leftovers(self, client: IMAPClient, cursor: Cursor) -> None:
        """Unseen mails at or below the cursor are stored but were not filed (a crash after the commit)."""
        self._needs_filing_check = False
        if cursor.last_uid < 1:
            return
        left = [u for u in client.search(["UID", f"1:{cursor.last_uid}", "UNSEEN"]) if u <= cursor.last_uid]
        if left:
            log.info("email %s: filing %d mail(s) stored before a restart", self.account, len(left))
            self._file(client, sorted(left))

    def _ensure_folder(self, client: IMAPClient) -> None:
        if self._folder_ready or not self.processed_folder:
            return
        if not client.folder_exists(self.processed_folder):
            client.create_folder(self.processed_folder)
        self._folder_ready = True

    # --- waiting -------------------------------------------------------------------------------------

    def _idle_wait(self) -> None:
        """IDLE until the server reports a new mail, `idle_seconds` pass, or stop() is called. A server
        that goes away says BYE (Dovecot: seconds after its master stopped), or just closes the socket,
        which imapclient's idle_check reports as an empty answer at once: either ends the round with an
        error, so the connection is made again (and the channel shows degraded until it is)."""
        client = self._client
        if client is None:
            return
        client.idle()
        deadline = time.monotonic() + self.idle_seconds
        instant_empty = 0
        while not self._stopping.is_set() and time.monotonic() < deadline:
            wait = min(1.0, max(0.05, deadline - time.monotonic()))
            asked = time.monotonic()
            answers = client.idle_check(timeout=wait)
            bye = [a for a in answers if isinstance(a, tuple) and a[:1] == (b"BYE",)]
            if bye:
                raise ConnectionError(f"the server closed the connection: {_words(bye[0][1:])}")
            if not answers and time.monotonic() - asked < wait / 10:
                instant_empty += 1
                if instant_empty >= 3:
                    raise ConnectionError("the server closed the connection during IDLE")
                continue
            instant_empty = 0
            if any(isinstance(a, tuple) and a[1:2] in ((b"EXISTS",), (b"RECENT",)) for a in answers):
                break
        client.idle_done()

    # --- the connection ------------------------------------------------------------------------------

    def _connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        server = self.server
        client = IMAPClient(
            server.host,
            port=server.port,
            ssl=server.security == "tls",
            ssl_context=self._ssl_context() if server.security == "tls" else None,
            timeout=self.timeout,
        )
        try:
            client.login(server.user, server.password)
            capabilities = set(client.capabilities())
        except Exception:
            quietly(client.shutdown)
            raise
        self._idle_supported = b"IDLE" in capabilities
        self._move_supported = b"MOVE" in capabilities
        self._folder_ready = False
        self._needs_filing_check = True
        self._client = client
        return client

    def _drop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            quietly(client.shutdown)

    def close(self) -> None:
        """Stop waiting (an IDLE ends within a second) and log out."""
        self._stopping.set()
        acquired = self._lock.acquire(timeout=5)
        try:
            client, self._client = self._client, None
            if client is not None:
                quietly(client.logout)
        finally:
            if acquired:
                self._lock.release()


def quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - closing a connection that is already broken
        log.debug("email: closing the IMAP connection: %s", exc)


def _words(parts: tuple[object, ...]) -> str:
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts)[:200]


def _text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text[:300]
