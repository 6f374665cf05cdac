"""The mail parser (connectors/email/mime.py) on the fixtures beside it and on hostile input: pure, total."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import SMTP

from hypothesis import given, settings
from hypothesis import strategies as st

from adaldyk_bots.domain import DeliveryReceipt, Ignored, InboundMessage, Quarantined
from connectors.email.mime import MailRules, parse_mail, trim_quoted
from tests.connectors.email import MAILBOX_USER, fixture
from tests.connectors.email.fixtures import make_fixtures

RULES = MailRules(account=MAILBOX_USER, number_prefix="ADL", own_addresses=frozenset({MAILBOX_USER}))


def _message(raw: bytes, rules: MailRules = RULES) -> InboundMessage:
    (outcome,) = parse_mail(raw, rules).outcomes
    assert isinstance(outcome, InboundMessage), outcome
    return outcome


def test_utf8_mail_with_encoded_name_and_subject() -> None:
    event = parse_mail(fixture("utf8_kazakh.eml"), RULES)
    msg = _message(fixture("utf8_kazakh.eml"))
    assert event.dedup_key == "mid:1764479700.123456789@f123.i.mail.ru"
    assert event.payload == fixture("utf8_kazakh.eml")  # the exact bytes are what is stored
    assert msg.chat_id == msg.sender_id == "aigerim.s@mail.ru"  # lower case: one thread per address
    assert msg.sender_name == "Әйгерім Сейтқали"
    assert msg.message_key == "1764479700.123456789@f123.i.mail.ru"
    assert msg.sent_at == datetime(2026, 11, 30, 5, 15, tzinfo=UTC)
    assert msg.text.startswith("Өзен жағасындағы қоқыс\n\nСәлеметсіз бе!")
    assert msg.language_hint is None and msg.kind == "message" and msg.appeal_number is None


def test_koi8r_and_windows1251_mail() -> None:
    koi = _message(fixture("koi8r.eml"))
    assert koi.sender_name == "Иван Петров"
    assert koi.text == (
        "Вырубка деревьев\n\nЗдравствуйте.\nПрошу проверить вырубку деревьев в парке у дома 12.\nИван Петров"
    )
    cp = _message(fixture("windows1251.eml"))
    assert cp.sender_name == "Ольга Ким"
    assert cp.text == "Мёртвая рыба в озере\n\nДобрый день!\nНа озере мёртвая рыба, запах по всему посёлку."


def test_undeclared_or_unknown_charset_falls_back_without_loss() -> None:
    body = "Свалка у реки".encode("windows-1251")
    raw = (
        b"From: a@example.kz\r\nDate: Mon, 30 Nov 2026 10:00:00 +0500\r\nMessage-ID: <u1@example.kz>\r\n"
        b"Content-Type: text/plain; charset=x-unknown-8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    assert _message(raw).text == "Свалка у реки"


def test_html_only_mail_is_readable_text() -> None:
    msg = _message(fixture("html_only.eml"))
    assert "На улице Абая не вывозят мусор" in msg.text
    assert "* контейнеры переполнены" in msg.text
    assert "Абая, 10" in msg.text
    assert "<" not in msg.text and "color" not in msg.text


def test_attachments_and_inline_images_are_files_with_a_reference() -> None:
    msg = _message(fixture("attachments.eml"))
    assert msg.text == "Свалка: фото и акт\n\nФото свалки и акт во вложении."  # the plain alternative
    photo, pdf = msg.attachments
    assert (photo.kind, photo.name, photo.mime_type, photo.size) == (
        "photo",
        "свалка.png",
        "image/png",
        len(make_fixtures.PNG),
    )
    assert photo.data == {"content_id": "ii_photo1", "inline": True}
    assert (pdf.kind, pdf.name, pdf.mime_type, pdf.size) == (
        "document",
        "Акт проверки.pdf",
        "application/pdf",
        len(make_fixtures.PDF),
    )
    assert photo.file_id == "imap:mid:CAGmail-attach-0001@mail.gmail.example:0"
    assert pdf.file_id == "imap:mid:CAGmail-attach-0001@mail.gmail.example:1"


def test_robots_are_ignored() -> None:
    (auto,) = parse_mail(fixture("autoreply.eml"), RULES).outcomes
    assert isinstance(auto, Ignored) and auto.reason.startswith("email.auto_submitted")
    (digest,) = parse_mail(fixture("mailing_list.eml"), RULES).outcomes
    assert isinstance(digest, Ignored) and digest.reason.startswith("email.mailing_list")
    base = fixture("koi8r.eml")
    for header, code in [
        (b"X-Autoreply: yes\r\n", "email.auto_reply"),
        (b"Precedence: junk\r\n", "email.precedence"),
        (b"Auto-Submitted: auto-generated\r\n", "email.auto_submitted"),
    ]:
        (outcome,) = parse_mail(header + base, RULES).outcomes
        assert isinstance(outcome, Ignored) and outcome.reason.startswith(code), header
    # Auto-Submitted: no is a person's mail (RFC 3834 §5).
    assert _message(b"Auto-Submitted: no\r\n" + base).sender_id == "ivan.petrov@example.ru"
    own = base.replace(b"ivan.petrov@example.ru", MAILBOX_USER.encode())
    (outcome,) = parse_mail(own, RULES).outcomes
    assert isinstance(outcome, Ignored) and outcome.reason.startswith("email.own_message")


def test_a_bounce_is_a_failed_receipt_for_our_message_id() -> None:
    (receipt,) = parse_mail(fixture("bounce.eml"), RULES).outcomes
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.platform_message_ids == ("ADL-2026-000001.3f9a2c@ecogeo.gov.kz",)
    assert (receipt.channel, receipt.account, receipt.state) == ("email", MAILBOX_USER, "failed")
    assert receipt.code == "email.bounced"
    assert receipt.detail == (
        "5.1.1 nobody@example.kz: 550 5.1.1 <nobody@example.kz>: Recipient address rejected: User unknown"
    )


def test_a_bounce_returning_the_whole_message_and_a_delay() -> None:
    raw = fixture("bounce.eml").replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822")
    (receipt,) = parse_mail(raw, RULES).outcomes
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.platform_message_ids == ("ADL-2026-000001.3f9a2c@ecogeo.gov.kz",)
    delayed = fixture("bounce.eml").replace(b"Action: failed", b"Action: delayed")
    (outcome,) = parse_mail(delayed, RULES).outcomes
    assert isinstance(outcome, Ignored) and outcome.reason.startswith("email.dsn_delayed")
    blind = fixture("bounce.eml").replace(b"Message-ID: <ADL-2026-000001.3f9a2c@ecogeo.gov.kz>\r\n", b"")
    (outcome,) = parse_mail(blind, RULES).outcomes
    assert isinstance(outcome, Ignored) and outcome.reason.startswith("email.bounce_unmatched")


def test_a_reply_names_its_appeal_and_its_quote_is_trimmed() -> None:
    msg = _message(fixture("reply.eml"))
    assert msg.appeal_number == "ADL-2026-000001"  # from In-Reply-To (our Message-ID)
    assert msg.reply_to_key == "ADL-2026-000001.3f9a2c@ecogeo.gov.kz"
    # Its References, kept for our answer to carry the chain on (RFC 5322 §3.6.4).
    assert msg.thread == ("1764479700.123456789@f123.i.mail.ru", "ADL-2026-000001.3f9a2c@ecogeo.gov.kz")
    # "Re: <our subject>" is ours, not the citizen's words; the quote and its attribution go.
    assert msg.text == "Спасибо. Уточняю: свалка в 200 метрах от моста, фото пришлю позже."
    by_subject = make_fixtures.reply(our_id="someone@else.example").replace(
        b"ADL-2026-000001", b"ADL-2026-000042"
    )
    assert _message(by_subject).appeal_number == "ADL-2026-000042"  # from "[ADL-2026-000042]"
    other_prefix = MailRules(account=MAILBOX_USER, number_prefix="MIN")
    assert _message(fixture("reply.eml"), other_prefix).appeal_number is None


def test_a_mail_answering_one_message_without_references_threads_on_that_one() -> None:
    parsed = email.message_from_bytes(make_fixtures.reply(), policy=SMTP)
    del parsed["References"]
    raw = parsed.as_bytes()
    assert b"References" not in raw
    assert _message(raw).thread == ("ADL-2026-000001.3f9a2c@ecogeo.gov.kz",)
    assert _message(fixture("utf8_kazakh.eml")).thread == ()  # a first mail answers nothing


def test_trim_quoted_keeps_what_is_not_a_trailing_quote() -> None:
    assert trim_quoted("Да.\n\nOn Mon, 30 Nov 2026, X <x@y.kz> wrote:\n> вопрос\n> ещё") == "Да."
    assert trim_quoted("Ответ\n\n-----Original Message-----\nFrom: x@y.kz\nтекст") == "Ответ"
    inline = "> ваш вопрос 1\nмой ответ 1\n> ваш вопрос 2\nмой ответ 2"
    assert trim_quoted(inline) == inline  # answering point by point: nothing trailing to cut
    assert trim_quoted("> only a quote\n> nothing new") == "> only a quote\n> nothing new"


def test_a_mail_without_message_id_is_keyed_by_its_bytes() -> None:
    raw = fixture("no_message_id.eml")
    first, again = parse_mail(raw, RULES), parse_mail(raw, RULES)
    assert first.dedup_key == again.dedup_key and first.dedup_key.startswith("sha256:")
    assert _message(raw).message_key == first.dedup_key
    assert parse_mail(raw + b"\r\nP.S.", RULES).dedup_key != first.dedup_key


def test_mail_without_sender_or_date_is_quarantined_not_lost() -> None:
    (no_from,) = parse_mail(b"Subject: x\r\nDate: Mon, 30 Nov 2026 10:00:00 +0500\r\n\r\nhi", RULES).outcomes
    assert isinstance(no_from, Quarantined) and no_from.reason.startswith("email.no_sender")
    (no_date,) = parse_mail(b"From: a@example.kz\r\n\r\nhi", RULES).outcomes
    assert isinstance(no_date, Quarantined) and no_date.reason.startswith("email.no_date")
    received = b"Received: from mx by imap; Tue, 01 Dec 2026 10:00:00 +0500\r\nFrom: a@example.kz\r\n\r\nhi"
    assert _message(received).sent_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_one_outcome_and_never_raise(raw: bytes) -> None:
    event = parse_mail(raw, RULES)
    assert event.payload == raw and len(event.outcomes) == 1 and len(event.dedup_key) <= 200


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400), st.sampled_from([b"\r\n", b"\n"]))
def test_hostile_headers_and_bodies_never_raise(text: str, eol: bytes) -> None:
    raw = eol.join(
        [
            b"From: =?utf-8?q?" + text.encode("utf-8", "surrogatepass")[:80] + b"?= <x@example.kz>",
            b"Subject: " + text.encode("utf-8", "surrogatepass")[:200],
            b"Date: " + text[:40].encode("utf-8", "surrogatepass"),
            b"Content-Type: multipart/mixed; boundary=" + text[:20].encode("utf-8", "surrogatepass"),
            b"",
            text.encode("utf-8", "surrogatepass"),
        ]
    )
    event = parse_mail(raw, RULES)
    assert len(event.outcomes) == 1


def test_a_read_receipt_is_a_read_receipt_and_other_reports_are_ignored() -> None:
    # RFC 8098 §9 example shape: human part, message/disposition-notification with Original-Message-ID.
    mdn = (
        b"From: aigerim.s@mail.ru\r\nTo: appeals@ecogeo.gov.kz\r\nSubject: Read: [ADL-2026-000001]\r\n"
        b"Date: Tue, 01 Dec 2026 09:30:00 +0500\r\nMessage-ID: <mdn-1@mail.ru>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\r\n\r\n'
        b"--M\r\nContent-Type: text/plain\r\n\r\nThe message was displayed.\r\n"
        b"--M\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Reporting-UA: mail.ru; Mail.Ru\r\nOriginal-Recipient: rfc822;aigerim.s@mail.ru\r\n"
        b"Final-Recipient: rfc822;aigerim.s@mail.ru\r\n"
        b"Original-Message-ID: <ADL-2026-000001.3f9a2c@ecogeo.gov.kz>\r\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--M--\r\n"
    )
    (receipt,) = parse_mail(mdn, RULES).outcomes
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.state, receipt.platform_message_ids) == (
        "read",
        ("ADL-2026-000001.3f9a2c@ecogeo.gov.kz",),
    )
    other = mdn.replace(b"report-type=disposition-notification", b"report-type=feedback-report")
    (outcome,) = parse_mail(other, RULES).outcomes
    assert isinstance(outcome, Ignored) and outcome.reason.startswith("email.report")
