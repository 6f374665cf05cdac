"""The outbound e-mail: one notice to one citizen as an `EmailMessage` (pure; smtp.py sends it).

Headers, and why:
- `Message-ID` is derived from the outbox key (`<{number}.{sha256(key)[:16]}@{our domain}>`), so a resend
  after a crash carries the same id and the citizen's mail program shows one message, and a bounce (which
  quotes it) finds its notice again.
- `In-Reply-To` names the citizen's own message when we know it, and `References` the thread's chain
  (RFC 5322 §3.6.4: that message's References, then its Message-ID; `thread_references`), so the notice
  sits in their thread in every mail program; the appeal number in the subject (`[ADL-2026-000123]`)
  threads their reply back to the appeal when their program drops those headers.
- `Auto-Submitted` (RFC 3834 §5): `auto-replied` on what answers a citizen's message by itself (the
  acknowledgement, a status look-up's answer), `auto-generated` on other automated notices (a status
  change, a deadline); none on a moderator's own reply, which a person wrote. Auto-responders (and our own
  inbound side) then never answer a robot's mail, so two robots never write each other forever.
  `X-Auto-Response-Suppress` asks Exchange-style servers for the same.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, parseaddr

from adaldyk_bots.i18n import LANGUAGES, N_, gettext

__all__ = [
    "AUTO_REPLIED_PURPOSES",
    "AddressError",
    "Notice",
    "auto_submitted",
    "compose",
    "message_id",
    "one_address",
    "sender_address",
    "subject",
    "thread_references",
]

# Outbox purposes that answer a citizen's message by itself (RFC 3834 "auto-replied"); every other
# automated purpose is "auto-generated".
AUTO_REPLIED_PURPOSES = frozenset({"ack", "info"})

_SUBJECTS = {
    # A channel's message is a signal until a moderator registers it: its acknowledgement claims no more.
    "ack": N_("Your message has been received"),
    "registration": N_("Your appeal is registered"),
    "status": N_("The status of your appeal has changed"),
    "reply": N_("The answer to your appeal"),
    "answer_ready": N_("The answer to your appeal is ready"),
    "info": N_("About your appeal"),
}
_DEFAULT_SUBJECT = N_("Your appeal")
_SENDER_NAME = N_("Ministry of Ecology of Kazakhstan, «Adaldyk alany» project office")
_PARAGRAPH = re.compile(r"\n\s*\n")
# A References chain is cut to this many ids and about this many characters (one header line must stay
# under 998, RFC 5322 §2.1.1), keeping the first — the thread's root — and the latest ones, as mail
# programs do (RFC 5537 §3.4.4 asks the same of news readers).
REFERENCES_LIMIT = 20
REFERENCES_CHARS = 900


class AddressError(ValueError):
    """The citizen's address is not exactly one usable mailbox."""


@dataclass(frozen=True)
class Notice:
    """What one outbound mail says and answers; everything `compose` needs, nothing it looks up."""

    mail_from: str  # ADALDYK_MAIL_FROM: "adaldyk@mail.ru" or "Name <adaldyk@mail.ru>"
    to: str  # the citizen's address (the conversation's chat id)
    text: str
    idempotency_key: str  # the outbox key: the Message-ID is derived from it
    sent_at: datetime
    number: str | None = None  # the appeal's public number, e.g. ADL-2026-000123
    language: str | None = None  # kk | ru | en; None: Kazakh, the state language
    purpose: str = "info"
    written_by_person: bool = False
    in_reply_to: str | None = None  # the citizen's message's Message-ID, with or without <>
    # That message's own References (oldest first, with or without <>): the chain our References continue.
    references: tuple[str, ...] = ()


def one_address(value: str) -> Address:
    """Exactly one mailbox (`a@b`, or `Name <a@b>`), else AddressError: one notice goes to one citizen,
    never to a list someone typed into a form."""
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1] or "@" not in found[0][1]:
        raise AddressError(f"not one e-mail address: {value!r}")
    name, address = found[0]
    local, _, domain = address.rpartition("@")
    if not local or not domain or any(c.isspace() for c in address):
        raise AddressError(f"not one e-mail address: {value!r}")
    return Address(display_name=name, username=local, domain=domain)


def message_id(*, idempotency_key: str, number: str | None, domain: str) -> str:
    """Our Message-ID for the outbox key, without the angle brackets (the id Delivered records)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:16]
    left = re.sub(r"[^A-Za-z0-9-]", "", number or "") or "adaldyk"
    return f"{left}.{digest}@{domain}"


def auto_submitted(purpose: str, *, written_by_person: bool) -> str | None:
    """The RFC 3834 keyword for a notice, or None for a person's own words."""
    if written_by_person:
        return None
    return "auto-replied" if purpose in AUTO_REPLIED_PURPOSES else "auto-generated"


def compose(notice: Notice) -> EmailMessage:
    """The message, plain text first and a simple HTML part after it (multipart/alternative), with
    headers that serialize under `email.policy.SMTP` (RFC 2047 for Cyrillic and Kazakh, CRLF)."""
    language = notice.language if notice.language in LANGUAGES else "kk"
    sender = one_address(notice.mail_from)
    if not sender.display_name:
        sender = Address(gettext(language, _SENDER_NAME), sender.username, sender.domain)
    recipient = one_address(notice.to)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = Address(username=recipient.username, domain=recipient.domain)
    msg["Subject"] = subject(notice.purpose, notice.number, language)
    msg["Date"] = format_datetime(notice.sent_at)
    our_id = message_id(idempotency_key=notice.idempotency_key, number=notice.number, domain=sender.domain)
    msg["Message-ID"] = f"<{our_id}>"
    if notice.in_reply_to:
        parent = _bracketed(notice.in_reply_to)
        msg["In-Reply-To"] = parent
        msg["References"] = " ".join(
            _bracketed(mid) for mid in thread_references([*notice.references, notice.in_reply_to])
        )
    keyword = auto_submitted(notice.purpose, written_by_person=notice.written_by_person)
    if keyword is not None:
        msg["Auto-Submitted"] = keyword
        msg["X-Auto-Response-Suppress"] = "All"
    # base64: 7-bit clean whatever the relay (no 8BITMIME needed), and shorter than quoted-printable for
    # Cyrillic and Kazakh text.
    msg.set_content(notice.text, subtype="plain", charset="utf-8", cte="base64")
    msg.add_alternative(html_body(notice.text, language), subtype="html", charset="utf-8", cte="base64")
    msg["Content-Language"] = language  # after the parts: making them moves Content-* headers into them
    return msg


def subject(purpose: str, number: str | None, language: str) -> str:
    """`[ADL-2026-000123] Your message has been received`, in the appeal's language."""
    words = gettext(language, _SUBJECTS.get(purpose, _DEFAULT_SUBJECT))
    return f"[{number}] {words}" if number else words


def html_body(text: str, language: str) -> str:
    """The text as HTML: escaped, blank lines make paragraphs, single line breaks stay."""
    paragraphs = [p.strip("\n") for p in _PARAGRAPH.split(text.strip()) if p.strip()]
    body = "\n".join(f"<p>{html.escape(p).replace(chr(10), '<br>' + chr(10))}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{language}">\n<head><meta charset="utf-8"></head>\n'
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def thread_references(ids: list[str] | tuple[str, ...]) -> list[str]:
    """Message-IDs (without <>) of a thread, oldest first, once each, cut to REFERENCES_LIMIT ids and
    about REFERENCES_CHARS characters: the first (the thread's root) and as many of the latest as fit."""
    chain = list(dict.fromkeys(mid.strip().strip("<>") for mid in ids if mid and mid.strip().strip("<>")))
    if len(chain) <= 2:
        return chain
    first, kept = chain[0], list[str]()
    size = len(first) + 2
    for mid in reversed(chain[1:]):
        if len(kept) + 1 >= REFERENCES_LIMIT or (kept and size + len(mid) + 3 > REFERENCES_CHARS):
            break
        kept.append(mid)
        size += len(mid) + 3  # "<" ">" and the space before it
    return [first, *reversed(kept)]


def _bracketed(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def sender_address(mail_from: str) -> str:
    """The bare address of MAIL_FROM, the envelope sender (bounces come back to it)."""
    return parseaddr(mail_from)[1]
