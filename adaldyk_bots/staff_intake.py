"""What a staff member types when registering an appeal taken on the phone line or at the reception: the
fields as sent, checked into a `direct_intake.DirectAppeal` or into errors per field (msgids, translated
where shown), so the workspace form and the JSON API refuse the same things with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlmodel import Session, select

from adaldyk_bots.access import Viewer
from adaldyk_bots.direct_intake import DirectAppeal
from adaldyk_bots.domain import Category
from adaldyk_bots.i18n import N_
from adaldyk_bots.iin import check_iin
from adaldyk_bots.storage.models import Unit
from adaldyk_bots.workflow import Target

__all__ = [
    "EMAIL_PATTERN",
    "ERRORS",
    "NAME_LIMIT",
    "PHONE_PATTERN",
    "STAFF_CHANNELS",
    "TEXT_LIMIT",
    "StaffAppealForm",
    "check_form",
]

STAFF_CHANNELS = ("phone", "reception")
TEXT_LIMIT = 20_000
NAME_LIMIT = 200  # contact.display_name
# Enough to catch a typo (no @, no domain); the mail server is the real judge, and a bounce becomes a task.
# No `\s`: Python's re, pydantic's Rust regex and the schema's generators disagree on which characters it
# holds (U+0085 …), and the API's schema must accept exactly what the check accepts. Spelled out instead.
_MAIL_CHAR = r"[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
EMAIL_PATTERN = rf"^{_MAIL_CHAR}+@{_MAIL_CHAR}+\.{_MAIL_CHAR}+$"
# 5 to 15 digits (E.164 has at most 15), grouped with spaces, brackets or dashes, an optional leading +.
PHONE_PATTERN = r"^\+?[ ()\-]*([0-9][ ()\-]*){5,15}$"
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)

IIN_ERRORS = {
    "digits": N_("The IIN has digits only."),
    "length": N_("The IIN has 12 digits."),
    "century": N_("The 7th digit of an IIN is 1 to 6: this one cannot be right."),
    "date": N_("The first six digits of an IIN are a birth date (YYMMDD): this one is not a date."),
    "checksum": N_("The check digit does not match: a digit is mistyped."),
}
ERRORS = {
    "channel": N_("Choose how the appeal was received: phone or reception."),
    "text": N_("Write down the citizen's words."),
    "text_long": N_("The text is too long."),
    "kind": N_("Choose the kind of appeal."),
    "name": N_("The citizen's name is required (anonymous appeals are not considered)."),
    "name_long": N_("The name is too long."),
    "email": N_("This is not an e-mail address."),
    "phone": N_("A phone number has digits, spaces, brackets, dashes and an optional leading +."),
    "answer": N_("Give at least one way to answer: e-mail, phone or postal address."),
    "unit": N_("That unit is unknown or outside your unit."),
    "unit_unknown": N_("That unit is unknown."),
    "unit_required": N_("Choose the unit: you may register appeals only for your unit and its sub-units."),
    "consent": N_("The citizen must agree to the processing of their personal data."),
}


@dataclass(frozen=True)
class StaffAppealForm:
    """The fields as sent (strings, untrusted); the page shows them again when something is wrong."""

    channel: str = "phone"
    text: str = ""
    kind: str = Category.OTHER.value
    name: str = ""
    iin: str = ""
    address: str = ""
    email: str = ""
    phone: str = ""
    unit: str = ""  # a unit code
    consent: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> StaffAppealForm:
        def text(key: str, default: str = "") -> str:
            value = values.get(key, default)
            return value.strip() if isinstance(value, str) else default

        consent = values.get("consent")
        return cls(
            channel=text("channel", "phone"),
            text=text("text"),
            kind=text("kind", Category.OTHER.value),
            name=text("name"),
            iin=text("iin"),
            address=text("address"),
            email=text("email"),
            phone=text("phone"),
            unit=text("unit"),
            consent=consent is True or consent in ("1", "on", "true", "yes"),
        )


def check_form(
    s: Session, viewer: Viewer, form: StaffAppealForm, *, email_target: Target | None
) -> tuple[DirectAppeal | None, dict[str, str]]:
    """The appeal to register, or None and {field: msgid}. `email_target`: where notices go for the
    e-mail given (direct_intake.reply_target), None when there is none or e-mail is off here."""
    errors: dict[str, str] = {}
    if form.channel not in STAFF_CHANNELS:
        errors["channel"] = ERRORS["channel"]
    if not form.text:
        errors["text"] = ERRORS["text"]
    elif len(form.text) > TEXT_LIMIT:
        errors["text"] = ERRORS["text_long"]
    try:
        kind = Category(form.kind)
    except ValueError:
        errors["kind"] = ERRORS["kind"]
        kind = Category.OTHER
    if not form.name:
        errors["name"] = ERRORS["name"]
    elif len(form.name) > NAME_LIMIT:
        errors["name"] = ERRORS["name_long"]
    iin: str | None = None
    if form.iin:
        checked = check_iin(form.iin)
        if checked.ok:
            iin = checked.iin
        else:
            errors["iin"] = IIN_ERRORS.get(checked.reason or "", IIN_ERRORS["checksum"])
    if form.email and not _EMAIL.match(form.email):
        errors["email"] = ERRORS["email"]
    if form.phone and not _PHONE.match(form.phone):
        errors["phone"] = ERRORS["phone"]
    if not (form.email or form.phone or form.address):
        errors["answer"] = ERRORS["answer"]
    unit_id = _unit_id(s, viewer, form.unit, errors)
    if not form.consent:
        errors["consent"] = ERRORS["consent"]
    if errors:
        return None, errors
    return (
        DirectAppeal(
            channel=form.channel,
            text=form.text,
            kind=kind,
            name=form.name,
            email=form.email.lower() or None,
            phone=form.phone or None,
            iin=iin,
            address=form.address or None,
            consent=form.consent,
            unit_id=unit_id,
            reply_to=email_target if form.email else None,
        ),
        {},
    )


def _unit_id(s: Session, viewer: Viewer, code: str, errors: dict[str, str]) -> int | None:
    if not code:
        if viewer.unit_ids is not None:  # an officer's appeal without a unit would vanish from their sight
            errors["unit"] = ERRORS["unit_required"]
        return None
    unit_id = s.exec(select(Unit.id).where(Unit.code == code)).first()
    if unit_id is None:
        errors["unit"] = ERRORS["unit_unknown"]
        return None
    if not viewer.sees_unit(unit_id):
        errors["unit"] = ERRORS["unit"]
        return None
    return unit_id
