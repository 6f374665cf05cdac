"""The web form's fields and their checks, and the signed tokens it carries (CSRF without a session,
and the time it was shown). Pure: no database, no request; web/public_pages.py wires it.

Errors are reason codes per field (`FormErrors`), turned into the citizen's language by the page, which
shows them at the top (with links to the fields) and next to each field.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from adaldyk_bots.domain import Category
from adaldyk_bots.iin import check_iin
from adaldyk_bots.settings import Settings

__all__ = [
    "ANSWER_WAYS",
    "KINDS",
    "MAX_TEXT",
    "FormErrors",
    "PublicForm",
    "check_form",
    "csrf_pair",
    "csrf_valid",
    "form_key",
    "issued_stamp",
    "issued_time",
]

# The R11 kinds (Administrative Procedural and Process Code, Art. 4), in the order the form offers them.
KINDS: tuple[Category, ...] = (
    Category.APPLICATION,
    Category.COMPLAINT,
    Category.REPORT,
    Category.RESPONSE,
    Category.PROPOSAL,
    Category.REQUEST,
)
ANSWER_WAYS = ("email", "phone", "messenger")
MAX_TEXT = 10_000
MIN_TEXT = 10
_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]+\.[^@\s<>\".]{2,}$")
_process_key = secrets.token_bytes(32)


@dataclass
class PublicForm:
    """What the citizen typed, kept as typed (so a refused form comes back whole)."""

    kind: str = ""
    text: str = ""
    answer_by: str = ""
    email: str = ""
    phone: str = ""
    messenger: str = ""
    name: str = ""
    iin: str = ""
    consent: bool = False

    @property
    def phone_digits(self) -> str:
        return "".join(ch for ch in self.phone if ch.isdigit())


@dataclass
class FormErrors:
    fields: dict[str, str] = field(default_factory=dict)  # field -> reason code

    def add(self, name: str, code: str) -> None:
        self.fields.setdefault(name, code)

    def __bool__(self) -> bool:
        return bool(self.fields)


def check_form(form: PublicForm) -> FormErrors:
    errors = FormErrors()
    if form.kind not in {k.value for k in KINDS}:
        errors.add("kind", "kind_missing")
    text = form.text.strip()
    if not text:
        errors.add("text", "text_missing")
    elif len(text) < MIN_TEXT:
        errors.add("text", "text_short")
    elif len(form.text) > MAX_TEXT:
        errors.add("text", "text_long")
    if form.answer_by not in ANSWER_WAYS:
        errors.add("answer_by", "answer_missing")
    email = form.email.strip()
    if form.answer_by == "email" and not email:
        errors.add("email", "email_missing")
    if email and (len(email) > 254 or not _EMAIL.match(email)):
        errors.add("email", "email_bad")
    digits = form.phone_digits
    if form.answer_by == "phone" and not form.phone.strip():
        errors.add("phone", "phone_missing")
    if form.phone.strip() and (not 10 <= len(digits) <= 15 or not re.fullmatch(r"[\d\s()+\-.]+", form.phone)):
        errors.add("phone", "phone_bad")
    if form.answer_by == "messenger" and not form.messenger.strip():
        errors.add("messenger", "messenger_missing")
    if len(form.messenger) > 200:
        errors.add("messenger", "messenger_long")
    if len(form.name) > 300:
        errors.add("name", "name_long")
    if form.iin.strip():
        found = check_iin(form.iin)
        if not found.ok:
            errors.add("iin", f"iin_{found.reason}")
    # Law 94-V Art. 7-8: collecting personal data needs the subject's consent. Every way of answering is
    # personal data (an address, a number, a handle), and so are a name and an IIN: the form always asks.
    if not form.consent:
        errors.add("consent", "consent_missing")
    return errors


# --- signed tokens ---------------------------------------------------------------------------------


def _key(settings: Settings, purpose: str) -> bytes:
    # As the login form's (web/deps.py): SECRET_KEY, or one process's own key when none is set.
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if secret:
        return hashlib.sha256(f"adaldyk-public-{purpose}:".encode() + secret.encode()).digest()
    return hashlib.sha256(purpose.encode() + _process_key).digest()


def csrf_pair(settings: Settings, nonce: str | None = None) -> tuple[str, str]:
    """(cookie nonce, form token "<nonce>.<hmac>"): a signed double submit, as the login form's; a valid
    nonce is kept. The token names its nonce, so it can be checked on its own too (`csrf_valid`)."""
    nonce = nonce if nonce and 20 <= len(nonce) <= 100 and "." not in nonce else secrets.token_urlsafe(24)
    mac = hmac.new(_key(settings, "csrf"), nonce.encode(), hashlib.sha256).hexdigest()
    return nonce, f"{nonce}.{mac}"


def csrf_valid(settings: Settings, cookie_nonce: str, sent: str, *, same_origin: bool) -> bool:
    """The token is ours and either matches the cookie (the double submit) or came with a same-origin
    `Origin` header. The second covers what the cookie cannot: a third-party iframe (the browser keeps
    our cookie from it) and two tabs opened at once (the later one's cookie replaced the earlier's).
    A cross-site forgery has neither: its browser sends the other site's origin and not our token."""
    nonce, _, mac = sent.partition(".")
    if not nonce or not mac or len(sent) > 300:
        return False
    expected = hmac.new(_key(settings, "csrf"), nonce.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return False
    return same_origin or (bool(cookie_nonce) and hmac.compare_digest(nonce.encode(), cookie_nonce.encode()))


def issued_stamp(settings: Settings, at: datetime) -> str:
    """When the form was shown, and which form it is, signed: "<unix seconds>.<random>.<hmac>". The random
    part makes the stamp the form's identity: the same form sent twice (a reload, a double click) is one
    appeal (public_receipt.form_key)."""
    body = f"{int(at.timestamp())}.{secrets.token_urlsafe(12)}"
    mac = hmac.new(_key(settings, "issued"), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{mac}"


def issued_time(settings: Settings, stamp: str) -> int | None:
    """The unix time in a stamp this server signed, or None (missing, altered, another key)."""
    body, _, mac = stamp.rpartition(".")
    seconds, _, nonce = body.partition(".")
    if not seconds.isdigit() or len(seconds) > 12 or not nonce or len(stamp) > 100:
        return None
    expected = hmac.new(_key(settings, "issued"), body.encode(), hashlib.sha256).hexdigest()[:32]
    return int(seconds) if hmac.compare_digest(mac.encode(), expected.encode()) else None


def form_key(stamp: str) -> str:
    """The identity of one shown form (of a stamp `issued_time` accepted), as stored."""
    return hashlib.sha256(stamp.encode()).hexdigest()
