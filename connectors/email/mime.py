"""What one stored mail (its exact RFC 822 bytes) is: a citizen's message, a robot's mail we ignore, or
a bounce about a mail we sent. Pure: no I/O, the same answer for the same bytes (intake and replay).

The standard library's `email` package with `policy.default` reads the MIME structure, the RFC 2047
encoded words of names and subjects and the charsets of the bodies (UTF-8, KOI8-R, Windows-1251 …).
HTML-only mail is turned into readable text by inscriptis (README: dependencies).

- Not appeals (Ignored, kept as raw events): `Auto-Submitted` other than `no` (RFC 3834),
  `X-Autoreply` / `X-Autorespond`, `Precedence: bulk|junk|list|auto_reply`, mailing lists (`List-Id`),
  and our own mail coming back.
- Bounces (RFC 3464 `multipart/report; report-type=delivery-status`) become a DeliveryReceipt naming
  the Message-ID of our mail they are about (from its `text/rfc822-headers` or `message/rfc822` part):
  `failed` with the DSN's status as the code (`email.5.1.1`) and its diagnostic as the detail.
- Threading: the appeal number the mail says it continues, from the Message-IDs of ours it answers
  (`In-Reply-To`, `References`: `<ADL-2026-000123.<hash>@domain>`) or from the subject
  (`[ADL-2026-000123]`); the workflow checks that the appeal is the sender's own.
- Quoted replies are trimmed from the text (the quoted part is our own mail, or the citizen's earlier
  words already on the appeal); the exact bytes stay in the raw event.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from adaldyk_bots.domain import (
    Attachment,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    ParseOutcome,
    Quarantined,
)
from adaldyk_bots.ports import RawEvent
from connectors.email.compose import thread_references

CHANNEL = "email"
# Column sizes: raw_event.dedup_key 200, message.external_key 100, conversation.chat_id 100.
_KEY_LIMIT = 100
_PRECEDENCE_IGNORED = {"bulk", "junk", "list", "auto_reply"}
_ID_LIMIT = 250  # RFC 5322 sets none; real Message-IDs are well under 100 characters
_MSGID = re.compile(r"<([^<>\s]+)>")
# A report without any date (never seen; RFC 5322 requires Date): a fixed time keeps parsing pure.
_NO_DATE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MailRules:
    """What the parser needs to know about our side."""

    account: str  # the mailbox (its IMAP user, lower case)
    number_prefix: str = "ADL"  # appeal numbers: ADL-2026-000123
    own_addresses: frozenset[str] = frozenset()  # our From address(es), lower case


def mail_reference(raw: bytes, message_id: str | None) -> str:
    """The mail's stable name across mailboxes and UIDVALIDITY changes: its Message-ID, else a hash of
    its bytes (a mail without one, fetched again, has the same bytes)."""
    if message_id and len(message_id) <= _KEY_LIMIT - 4:
        return f"mid:{message_id}"
    if message_id:
        return "midsha:" + hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def message_key(ref: str) -> str:
    """The message's key in its conversation (and the reply target's `reply_to_key`): the bare
    Message-ID, what a reply's In-Reply-To names; a hashed name only for a mail without a usable one."""
    return ref.removeprefix("mid:")


def parse_mail(raw: bytes, rules: MailRules) -> RawEvent:
    """The one raw event a mail is. Total: anything unexpected is Quarantined, never raised."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        message_id = _message_id(msg)
        ref = mail_reference(raw, message_id)
        outcome = _outcome(msg, raw, ref, message_id, rules)
    except Exception as exc:  # noqa: BLE001 - a mail our code cannot read is kept for replay
        return RawEvent(
            dedup_key="sha256:" + hashlib.sha256(raw).hexdigest(),
            payload=raw,
            outcomes=[Quarantined(f"email.unreadable: {type(exc).__name__}: {exc}"[:500])],
        )
    return RawEvent(dedup_key=ref, payload=raw, outcomes=[outcome])


def _outcome(
    msg: EmailMessage, raw: bytes, ref: str, message_id: str | None, rules: MailRules
) -> ParseOutcome:
    if _is_delivery_report(msg):
        return _bounce(msg, rules)
    if msg.get_content_type() == "multipart/report":
        return _other_report(msg, rules)
    robot = _robot_reason(msg)
    if robot is not None:
        return Ignored(robot)
    sender = _sender(msg)
    if sender is None:
        return Quarantined("email.no_sender: the mail has no From address")
    address, name = sender
    if address in rules.own_addresses:
        return Ignored("email.own_message: sent from our own address")
    sent_at = _sent_at(msg)
    if sent_at is None:
        return Quarantined("email.no_date: neither a Date nor a Received header with a time")
    subject = _header_text(msg, "Subject")
    body, attachments = _body_and_files(msg, ref)
    in_reply_to = _ids(msg, "In-Reply-To")
    # RFC 5322 §3.6.4: a parent without References but answering one message is a thread of that one.
    references = _ids(msg, "References") or (in_reply_to if len(in_reply_to) == 1 else [])
    return InboundMessage(
        channel=CHANNEL,
        account=rules.account,
        chat_id=address[:_KEY_LIMIT],
        message_key=message_key(ref),
        sender_id=address[:_KEY_LIMIT],
        sender_name=name[:200] or None,  # contact.display_name is 200 characters
        sent_at=sent_at,
        text=_with_subject(subject, trim_quoted(body), rules.number_prefix),
        attachments=tuple(attachments),
        reply_to_key=in_reply_to[0][:_KEY_LIMIT] if in_reply_to else None,
        appeal_number=_appeal_number(msg, subject, rules.number_prefix),
        # A cut id would name nothing: an absurdly long one is left out instead.
        thread=tuple(thread_references([mid for mid in references if len(mid) <= _ID_LIMIT])),
    )


# --- headers ---------------------------------------------------------------------------------------


def _header_text(msg: Message, name: str) -> str:
    """A header's decoded text (RFC 2047 words in any charset); a broken one as far as it decodes."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - a header the registry cannot parse: its raw text then
        value = None
        for key, raw in msg.raw_items():
            if key.lower() == name.lower():
                value = str(raw)
                break
    return " ".join(str(value).split()) if value is not None else ""


def _message_id(msg: Message) -> str | None:
    found = _ids(msg, "Message-ID")
    return found[0] if found else None


def _ids(msg: Message, name: str) -> list[str]:
    """Message-IDs in a header, without angle brackets (as email-out stores ours)."""
    values = []
    for key, raw in msg.raw_items():
        if key.lower() == name.lower():
            values.append(str(raw))
    found = _MSGID.findall(" ".join(values))
    if not found and values and values[0].strip() and name.lower() == "message-id":
        bare = values[0].strip()  # some robots write it without brackets
        return [bare] if " " not in bare else []
    return found


def _sender(msg: Message) -> tuple[str, str] | None:
    """(address in lower case, display name) of From (else Sender, Reply-To is the citizen's choice but
    not who wrote)."""
    for header in ("From", "Sender"):
        try:
            value = msg.get(header)
            addresses: tuple[Address, ...] = getattr(value, "addresses", ())
        except Exception:  # noqa: BLE001 - unparseable: fall back to the legacy parser
            addresses = ()
        for item in addresses:
            if item.addr_spec and "@" in item.addr_spec:
                return item.addr_spec.lower(), " ".join(item.display_name.split())
        raw = [str(v) for k, v in msg.raw_items() if k.lower() == header.lower()]
        for name, addr in getaddresses(raw):
            if "@" in addr:
                return addr.lower(), name.strip()
    return None


def _sent_at(msg: Message) -> datetime | None:
    """The Date header in UTC; without a usable one, the time of the last hop (the top Received)."""
    candidates = [_header_text(msg, "Date")]
    candidates += [str(v).rpartition(";")[2] for k, v in msg.raw_items() if k.lower() == "received"]
    for text in candidates:
        if not text.strip():
            continue
        try:
            when = parsedate_to_datetime(text.strip())
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is None:  # RFC 5322 "-0000": the zone is unknown; UTC is the honest guess
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)
    return None


def _robot_reason(msg: Message) -> str | None:
    auto = _header_text(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"email.auto_submitted: Auto-Submitted: {auto[:60]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = _header_text(msg, name)
        if value and (name != "X-Auto-Response-Suppress" or "all" in value.lower()):
            return f"email.auto_reply: {name}: {value[:60]}"
    precedence = _header_text(msg, "Precedence").lower()
    if precedence in _PRECEDENCE_IGNORED:
        return f"email.precedence: Precedence: {precedence}"
    list_id = _header_text(msg, "List-Id")
    if list_id:
        return f"email.mailing_list: List-Id: {list_id[:80]}"
    return None


def _appeal_number(msg: Message, subject: str, prefix: str) -> str | None:
    """The appeal number our Message-IDs carry (`<ADL-2026-000123.<hash>@domain>`) in the ids the mail
    answers, the latest first; else one in the subject."""
    number = re.compile(rf"(?<![A-Za-z0-9]){re.escape(prefix)}-\d{{4}}-\d{{6}}(?!\d)", re.IGNORECASE)
    for mid in [*_ids(msg, "In-Reply-To"), *reversed(_ids(msg, "References"))]:
        found = number.match(mid)
        if found and mid[found.end() : found.end() + 1] in (".", "@"):
            return found.group(0).upper()
    found = number.search(subject)
    return found.group(0).upper() if found else None


_REPLY_PREFIX = re.compile(r"^\s*(re|aw|ответ|отв|жауап)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*((fwd?|wg|пересл)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def _with_subject(subject: str, body: str, prefix: str) -> str:
    """The subject is often the citizen's first words ("Свалка у реки"): kept above the body, unless it
    only says this is a reply to one of our mails or repeats the body's beginning."""
    bare = re.sub(rf"\[?{re.escape(prefix)}-\d{{4}}-\d{{6}}\]?", " ", subject, flags=re.IGNORECASE)
    if _REPLY_PREFIX.match(bare):
        return body  # "Re: <our subject>": the subject is ours, the citizen's words are the body
    bare = " ".join(_FORWARD_PREFIX.sub("", bare).split())
    if not bare or body.startswith(bare):
        return body
    return f"{bare}\n\n{body}" if body else bare


# --- bodies ----------------------------------------------------------------------------------------


def _body_and_files(msg: EmailMessage, ref: str) -> tuple[str, list[Attachment]]:
    """The readable text (plain preferred, else HTML as text) and every file, in MIME order."""
    body_part = msg.get_body(preferencelist=("plain", "html"))
    text = ""
    if body_part is not None:
        content = decode_text(body_part)
        text = html_to_text(content) if body_part.get_content_type() == "text/html" else content
    files: list[Attachment] = []
    for part in mail_files(msg, body_part):
        files.append(_attachment(part, f"imap:{ref}:{len(files)}"))
    return normalize_text(text), files


def mail_files(msg: EmailMessage, body_part: Message | None = None) -> list[Message]:
    """Every part that is a file: attachments and inline images, not the body nor its alternatives.
    The order is the file's index in its `file_id` (connector.download_file reads it back)."""
    if body_part is None:
        body_part = msg.get_body(preferencelist=("plain", "html"))
    alternatives: set[int] = set()
    for part in msg.walk():
        if part.get_content_type() == "multipart/alternative":
            alternatives.update(id(p) for p in part.iter_parts() if p.get_content_maintype() == "text")
    files: list[Message] = []
    for part in msg.walk():
        if part.is_multipart() or part is body_part or id(part) in alternatives:
            continue
        if part.get_content_type() in ("message/delivery-status", "text/rfc822-headers"):
            continue
        # Everything else is kept, a second inline text part too (some clients split a body around an
        # image): the citizen's words must not vanish, so it is a file to read.
        files.append(part)
    return files


def _attachment(part: Message, file_id: str) -> Attachment:
    mime = part.get_content_type()
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else None
    name = _filename(part)
    data: dict[str, Any] = {}
    content_id = _header_text(part, "Content-ID").strip("<> ")
    if content_id:
        data["content_id"] = content_id
    if part.get_content_disposition() == "inline":
        data["inline"] = True
    kind = "photo" if mime.startswith("image/") else "document"
    if mime == "message/rfc822":
        kind = "message"
    return Attachment(kind=kind, file_id=file_id, name=name, mime_type=mime, size=size, data=data)


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - a broken RFC 2231 parameter
        name = None
    return " ".join(name.split()) if name else None


def decode_text(part: Message) -> str:
    """A text part's words: its declared charset, and when that is unknown or wrong, UTF-8 and then
    Windows-1251 (the commonest undeclared one in Russian-language mail), never an exception."""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return str(part.get_payload())
    declared = part.get_content_charset()
    for charset in (declared, "utf-8", "windows-1251"):
        if not charset:
            continue
        try:
            return raw.decode(_charset_alias(charset))
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("utf-8", "replace")


def _charset_alias(charset: str) -> str:
    # Labels seen in the wild that Python's codec registry does not know under that name.
    aliases = {"win-1251": "windows-1251", "cp-1251": "windows-1251", "x-mac-cyrillic": "mac-cyrillic"}
    return aliases.get(charset.lower(), charset)


def html_to_text(html: str) -> str:
    """HTML as readable text (paragraphs, lists and tables laid out), with quoted blocks removed first."""
    from inscriptis import get_text  # imported when needed: lxml costs start-up time

    return str(get_text(_drop_html_quotes(html)))


_HTML_QUOTE = re.compile(
    r"<blockquote\b.*?</blockquote>|<div[^>]*class=\"?[^\">]*gmail_quote.*?$|<div[^>]*id=\"?divRplyFwdMsg.*?$",
    re.IGNORECASE | re.DOTALL,
)


def _drop_html_quotes(html: str) -> str:
    """Gmail's `gmail_quote` and Outlook's `divRplyFwdMsg` run to the end; `<blockquote>` (Mail.Ru,
    Thunderbird, Apple Mail) is the quoted mail itself."""
    trimmed = _HTML_QUOTE.sub("", html)
    return trimmed if re.sub(r"<[^>]*>|\s|&nbsp;", "", trimmed) else html


def normalize_text(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# An attribution line before a quote: "On Mon, 1 Dec 2026 at 10:00, X <x@y> wrote:",
# "1 декабря 2026 г., в 10:00, X <x@y> написал(а):", Mail.Ru's "Понедельник, 1 декабря 2026, 10:00 +05:00
# от X <x@y>:", Kazakh "… жазды:".
_ATTRIBUTION = re.compile(
    r"(wrote|writes|написал|написала|написал\(а\)|пишет|жазды|жазған)\s*:\s*$|^.{0,200}\bот\s.+@.+>?\s*:\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(original message|исходное сообщение|бастапқы хабарлама)\s*-{2,}"
    r"|_{20,}|(from|от|кімнен)\s*:\s.+@.+)\s*$",
    re.IGNORECASE,
)


def trim_quoted(text: str) -> str:
    """The new words of a reply: the quoted tail ("> …" lines, an attribution line before them, an
    Outlook "Original Message" block) cut off. Quotes inside the text (answering point by point) and a
    mail that is only a quote are left whole."""
    lines = text.split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line) and i > 0:
            cut = i
            break
    # A trailing run of quoted lines (with blank lines between), and the attribution line above it.
    end = cut
    while end > 0 and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end < cut and any(line.startswith(">") for line in lines[end:cut]):
        cut = end
        if cut > 0 and _ATTRIBUTION.search(lines[cut - 1].strip()):
            cut -= 1
        elif cut > 1 and _ATTRIBUTION.search(" ".join(lines[cut - 2 : cut]).strip()):
            cut -= 2  # attribution wrapped over two lines
    new = normalize_text("\n".join(lines[:cut]))
    return new or normalize_text(text)


# --- bounces ---------------------------------------------------------------------------------------


def _is_delivery_report(msg: Message) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def _bounce(msg: EmailMessage, rules: MailRules) -> ParseOutcome:
    """RFC 3464: the per-recipient fields say what happened (Action, Status, Diagnostic-Code); the
    returned headers (or the whole returned mail) say which of our mails it was."""
    status_fields = _delivery_status_fields(msg)
    original = _returned_message_id(msg)
    if original is None:
        return Ignored("email.bounce_unmatched: the report names no Message-ID of the mail it returns")
    action = next((f.get("action", "") for f in status_fields if f.get("action")), "failed").lower()
    at = _sent_at(msg) or _NO_DATE
    if action in ("delayed",):
        return Ignored(f"email.dsn_delayed: delivery of {original} delayed, the server keeps trying")
    if action in ("delivered", "relayed", "expanded"):
        return DeliveryReceipt(CHANNEL, rules.account, (original,), "delivered", at)
    status_text = next((f["status"] for f in status_fields if f.get("status")), "")
    status = re.match(r"\d\.\d{1,3}\.\d{1,3}", status_text.strip())
    # One stable code (the appeal page explains codes by their last part); the DSN status leads the detail.
    code = "email.bounced"
    diagnostic = next((f["diagnostic-code"] for f in status_fields if f.get("diagnostic-code")), "")
    recipient = next((f.get("final-recipient", "") for f in status_fields if f.get("final-recipient")), "")
    detail = diagnostic.partition(";")[2].strip() or diagnostic or _report_text(msg)
    if recipient:
        detail = f"{recipient.partition(';')[2].strip() or recipient}: {detail}"
    if status:
        detail = f"{status.group(0)} {detail}"
    return DeliveryReceipt(
        CHANNEL,
        rules.account,
        (original,),
        "failed",
        at,
        code=code,
        detail=(detail or "the mail server returned the mail as undeliverable")[:1000],
    )


def _other_report(msg: EmailMessage, rules: MailRules) -> ParseOutcome:
    """A read receipt (RFC 8098 `disposition-notification`) says our mail was shown: a `read` receipt for
    its Original-Message-ID; any other machine report is not a citizen's words."""
    kind = str(msg.get_param("report-type", "")).lower()
    if kind == "disposition-notification":
        for part in msg.walk():
            if part.get_content_type() != "message/disposition-notification":
                continue
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            if not text:
                payload = part.get_payload()
                text = "\n".join(str(b) for b in payload) if isinstance(payload, list) else str(payload)
            found = _MSGID.findall(
                " ".join(line for line in text.splitlines() if line.lower().startswith("original-message-id"))
            )
            if found:
                at = _sent_at(msg) or _NO_DATE
                return DeliveryReceipt(CHANNEL, rules.account, (found[0],), "read", at)
    return Ignored(f"email.report: a machine report ({kind or 'no report-type'}), not an appeal")


def _delivery_status_fields(msg: Message) -> list[dict[str, str]]:
    """The message/delivery-status part's field groups, names in lower case, folded lines joined."""
    groups: list[dict[str, str]] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        if not blocks:  # some servers send it base64 or as one text block
            text = part.get_payload(decode=True)
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
            blocks = [HeaderParser().parsestr(b + "\n") for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
        for block in blocks:
            if not isinstance(block, Message):
                continue
            groups.append({str(k).lower(): " ".join(str(v).split()) for k, v in block.items()})
    return groups


def _returned_message_id(msg: Message) -> str | None:
    for part in msg.walk():
        kind = part.get_content_type()
        headers: Message | None = None
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            headers = HeaderParser().parsestr(text, headersonly=True)
        elif kind == "message/rfc822":
            inner = part.get_payload()
            headers = (
                inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
            )
        if headers is not None:
            found = _ids(headers, "Message-ID")
            if found:
                return found[0]
    return None


def _report_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return normalize_text(decode_text(part))[:500]
    return ""
