"""The outbound mail as composed (pure): Message-ID from the outbox key, threading headers, the number
in a localized subject, RFC 3834 Auto-Submitted per purpose, both parts, UTF-8 headers under policy SMTP."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default

import pytest

from connectors.email.compose import (
    REFERENCES_CHARS,
    REFERENCES_LIMIT,
    AddressError,
    Notice,
    compose,
    message_id,
    one_address,
    thread_references,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
KAZAKH = "Хабарламаңыз қабылданды, нөмірі: ADL-2026-000123.\n\nОны модератор қарайды. Әңгіме «ұңғыма» туралы."


def _notice(**overrides: object) -> Notice:
    values: dict[str, object] = {
        "mail_from": "appeals@ecogeo.gov.kz",
        "to": "citizen@mail.ru",
        "text": KAZAKH,
        "idempotency_key": "ack:42",
        "sent_at": NOW,
        "number": "ADL-2026-000123",
        "language": "kk",
        "purpose": "ack",
        "in_reply_to": "<CAF1+citizen.first@mail.ru>",
    }
    values.update(overrides)
    return Notice(**values)  # type: ignore[arg-type]


def _wire(notice: Notice) -> EmailMessage:
    """Serialized as smtplib sends it, then read back the way a mail program reads it."""
    raw = compose(notice).as_bytes()
    assert raw.isascii(), "headers and bodies go 7-bit-clean (RFC 2047 words, base64/QP bodies)"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_an_acknowledgement_carries_every_header() -> None:
    msg = _wire(_notice())
    expected_id = message_id(idempotency_key="ack:42", number="ADL-2026-000123", domain="ecogeo.gov.kz")
    assert expected_id.startswith("ADL-2026-000123.") and expected_id.endswith("@ecogeo.gov.kz")
    assert len(expected_id.split(".")[1].split("@")[0]) == 16  # sha256(key)[:16]
    assert msg["Message-ID"] == f"<{expected_id}>"
    assert msg["In-Reply-To"] == "<CAF1+citizen.first@mail.ru>"
    assert msg["References"] == "<CAF1+citizen.first@mail.ru>"
    # A message by e-mail is a signal like any channel's: received, not registered (R13).
    assert msg["Subject"] == "[ADL-2026-000123] Хабарламаңыз қабылданды"
    assert msg["To"] == "citizen@mail.ru"
    assert msg["From"].addresses[0].addr_spec == "appeals@ecogeo.gov.kz"
    assert "Экология министрлігі" in msg["From"].addresses[0].display_name
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Date"] is not None and msg["Content-Language"] == "kk"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = (part for part in msg.iter_parts())
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == KAZAKH
    body = html.get_content().replace("\r\n", "\n")
    assert "<p>Хабарламаңыз қабылданды, нөмірі: ADL-2026-000123.</p>" in body
    assert "«ұңғыма»" in body and '<html lang="kk">' in body


def test_the_message_id_is_the_same_for_the_same_outbox_key_and_differs_otherwise() -> None:
    first = _wire(_notice())["Message-ID"]
    again = _wire(_notice(sent_at=datetime(2026, 3, 3, tzinfo=UTC)))["Message-ID"]
    other = _wire(_notice(idempotency_key="status:7"))["Message-ID"]
    assert first == again != other


def test_without_a_number_or_a_parent_the_mail_still_has_an_id_and_no_threading_headers() -> None:
    msg = _wire(_notice(number=None, in_reply_to=None, purpose="info", language="ru"))
    assert msg["Message-ID"].startswith("<adaldyk.") and msg["Message-ID"].endswith("@ecogeo.gov.kz>")
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["Subject"] == "О вашем обращении"
    assert msg["Auto-Submitted"] == "auto-replied"  # the answer to a status look-up answers a message


@pytest.mark.parametrize(
    ("purpose", "by_person", "expected"),
    [
        ("ack", False, "auto-replied"),
        ("info", False, "auto-replied"),
        ("status", False, "auto-generated"),
        ("answer_ready", False, "auto-generated"),
        ("reply", True, None),
    ],
)
def test_auto_submitted_follows_rfc_3834(purpose: str, by_person: bool, expected: str | None) -> None:
    msg = _wire(_notice(purpose=purpose, written_by_person=by_person))
    assert msg["Auto-Submitted"] == expected
    assert (msg["X-Auto-Response-Suppress"] is None) == (expected is None)


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("kk", "[ADL-2026-000123] Өтінішіңізге жауап"),
        ("ru", "[ADL-2026-000123] Ответ на ваше обращение"),
        ("en", "[ADL-2026-000123] The answer to your appeal"),
    ],
)
def test_the_subject_is_in_the_appeals_language(language: str, subject: str) -> None:
    assert _wire(_notice(purpose="reply", written_by_person=True, language=language))["Subject"] == subject


def test_a_display_name_in_mail_from_is_kept_and_encoded() -> None:
    raw = compose(_notice(mail_from="Министерство экологии РК <appeals@ecogeo.gov.kz>")).as_bytes()
    head = email.message_from_bytes(raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    folded = head["From"]
    assert folded.startswith("=?utf-8?")
    # Decoded as RFC 2047 §6.2 says (white space between adjacent encoded words is dropped). The email
    # package's address parser (policy default) puts a space there when a fold splits a word, so it is
    # not the reference here; mail programs follow the RFC.
    assert str(make_header(decode_header(folded))) == "Министерство экологии РК <appeals@ecogeo.gov.kz>"


def test_the_html_part_is_escaped_and_in_paragraphs() -> None:
    text = 'Жауап <script>alert("x")</script> & т.б.\nекінші жол\n\n\nСоңғы абзац'
    html = _wire(_notice(text=text)).get_body(preferencelist=("html",))
    assert html is not None
    body = html.get_content().replace("\r\n", "\n")
    assert "<script>" not in body
    assert "<p>Жауап &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; т.б.<br>\nекінші жол</p>" in body
    assert "<p>Соңғы абзац</p>" in body


@pytest.mark.parametrize("value", ["", "not an address", "a@b.kz, c@d.kz", "a@b.kz c@d.kz", "@b.kz", "a@"])
def test_one_citizen_per_mail(value: str) -> None:
    with pytest.raises(AddressError):
        one_address(value)
    with pytest.raises(AddressError):
        compose(_notice(to=value))


def test_a_citizens_named_address_is_one_address() -> None:
    assert one_address("Айгүл Серікқызы <aigul@mail.ru>").addr_spec == "aigul@mail.ru"


def test_references_carry_the_threads_chain() -> None:
    # RFC 5322 §3.6.4: the parent's References, then the parent's Message-ID.
    msg = _wire(
        _notice(
            in_reply_to="<her.second@mail.ru>",
            references=("her.first@mail.ru", "<ADL-2026-000123.ours@ecogeo.gov.kz>"),
        )
    )
    assert msg["In-Reply-To"] == "<her.second@mail.ru>"
    assert msg["References"].split() == [
        "<her.first@mail.ru>",
        "<ADL-2026-000123.ours@ecogeo.gov.kz>",
        "<her.second@mail.ru>",
    ]


def test_a_long_chain_keeps_its_root_and_its_latest_ids() -> None:
    chain = tuple(f"message.{i:03d}@mail.ru" for i in range(60))
    msg = _wire(_notice(in_reply_to="<parent@mail.ru>", references=chain))
    ids = [mid.strip("<>") for mid in msg["References"].split()]
    assert ids[0] == "message.000@mail.ru" and ids[-1] == "parent@mail.ru"
    assert ids[-2] == "message.059@mail.ru" and len(ids) == REFERENCES_LIMIT
    assert ids[1:] == [*chain[-(REFERENCES_LIMIT - 2) :], "parent@mail.ru"]  # the latest, in order
    # Long ids: cut by length too, each header line stays within RFC 5322's 998.
    wide = tuple(f"{'x' * 180}.{i}@mail.ru" for i in range(10))
    raw = compose(_notice(in_reply_to="<parent@mail.ru>", references=wide)).as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    header = _wire(_notice(in_reply_to="<parent@mail.ru>", references=wide))["References"].split()
    assert header[0].startswith("<xxx") and header[0].endswith(".0@mail.ru>") and 2 < len(header) < 8
    assert len(" ".join(header)) <= REFERENCES_CHARS + 200
    # Repeated ids (a program that copied In-Reply-To into References too) are named once.
    assert thread_references(["a@x", "b@x", "a@x", "<b@x>", "c@x"]) == ["a@x", "b@x", "c@x"]
