"""MailSender against a real SMTP server on loopback (tests/smtp_server.py, aiosmtpd): SMTPS and STARTTLS
verified against the test CA (ADALDYK_MAIL_CA_FILE), AUTH, every header as received on the wire, and
each kind of server answer classified (4xx retried, 5xx failed with the server's words, 535 held)."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.domain import Delivered, Failed, Held, ReplyTarget, RetryLater, SendContext, SendResult
from adaldyk_bots.i18n import gettext
from adaldyk_bots.web.appeal_pages import UNKNOWN_CODE, explain_code
from connectors.email.settings import EmailSettings
from connectors.email.smtp import MailSender
from tests.smtp_server import USER, MailServers, mail_servers
from tests.support import free_port

FROM = "appeals@ecogeo.gov.kz"
CITIZEN = "aigul.serikkyzy@mail.ru"
NUMBER = "ADL-2026-000123"
# An acknowledgement as config/templates/kk.toml renders it, with the letters only Kazakh has.
ACK = (
    f"Хабарламаңыз қабылданды, нөмірі: {NUMBER}.\n\n"
    "Бұл әлі тіркелген өтініш емес: оны модератор қарайды. Ғ, Қ, Ң, Ө, Ұ, Ү, Һ, І — бәрі орнында."
)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[MailServers]:
    with mail_servers(tmp_path) as found:
        yield found


def _sender(servers: MailServers, kind: str = "smtps", **overrides: Any) -> MailSender:
    values: dict[str, Any] = {
        "smtp_url": servers.url(kind),
        "mail_from": FROM,
        "mail_ca_file": servers.ca_file,
        "smtp_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return MailSender(EmailSettings(_env_file=None, **values))


def _context(purpose: str = "ack", **overrides: Any) -> SendContext:
    values: dict[str, Any] = {
        "purpose": purpose,
        "written_by_person": purpose == "reply",
        "last_inbound_at": None,
        "now": datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        "language": "kk",
        "fields": {"number": NUMBER, "status": "тіркелді", "due": "23.03.2026"},
    }
    values.update(overrides)
    return SendContext(**values)


def _send(
    sender: MailSender,
    *,
    to: str = CITIZEN,
    text: str = ACK,
    key: str = "ack:1",
    reply_to: str | None = "<CAK7x+first.letter@mail.ru>",
    context: SendContext | None = None,
) -> SendResult:
    target = ReplyTarget("email", FROM, to, reply_to)
    return asyncio.run(sender.send(target, text, idempotency_key=key, context=context or _context()))


def _parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_an_acknowledgement_arrives_over_smtps_with_every_header(servers: MailServers) -> None:
    result = _send(_sender(servers))
    assert isinstance(result, Delivered), result
    [got] = servers.handler.received
    assert got.tls and got.login == USER
    assert (got.mail_from, got.rcpt_tos) == (FROM, [CITIZEN])  # bounces come back to our mailbox
    msg = _parsed(got.data)
    assert msg["Message-ID"] == f"<{result.platform_message_id}>"
    assert result.platform_message_id.startswith(f"{NUMBER}.") and result.platform_message_id.endswith(
        "@ecogeo.gov.kz"
    )
    assert msg["In-Reply-To"] == msg["References"] == "<CAK7x+first.letter@mail.ru>"
    assert msg["Subject"] == f"[{NUMBER}] Хабарламаңыз қабылданды"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"] == CITIZEN and msg["From"].addresses[0].addr_spec == FROM
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == ACK
    assert (
        "<p>Бұл әлі тіркелген өтініш емес: оны модератор қарайды. Ғ, Қ, Ң, Ө, Ұ, Ү, Һ, І — бәрі орнында.</p>"
        in (html.get_content())
    )


def test_starttls_is_used_on_the_submission_port(servers: MailServers) -> None:
    result = _send(_sender(servers, "starttls"), context=_context("status"))
    assert isinstance(result, Delivered), result
    [got] = servers.handler.received
    assert got.tls and got.login == USER
    assert _parsed(got.data)["Auto-Submitted"] == "auto-generated"


def test_plain_smtp_goes_only_to_a_loopback_server_that_offers_no_starttls(servers: MailServers) -> None:
    result = _send(_sender(servers, "plain"), context=_context("reply"))
    assert isinstance(result, Delivered), result
    [got] = servers.handler.received
    assert not got.tls
    assert _parsed(got.data)["Auto-Submitted"] is None  # a moderator wrote it
    # Anywhere else smtp:// means STARTTLS, required: plain text is never allowed off loopback.
    remote = EmailSettings(_env_file=None, smtp_url="smtp://u:p@smtp.example.kz:587", mail_from=FROM).smtp
    assert remote is not None and remote.security == "starttls" and not remote.plain_allowed


def test_a_resend_after_a_crash_carries_the_same_message_id(servers: MailServers) -> None:
    sender = _sender(servers)
    first, again = _send(sender, key="ack:7"), _send(sender, key="ack:7")
    other = _send(sender, key="status:9", context=_context("status"))
    assert isinstance(first, Delivered) and isinstance(again, Delivered) and isinstance(other, Delivered)
    ids = [_parsed(got.data)["Message-ID"] for got in servers.handler.received]
    assert ids[0] == ids[1] == f"<{first.platform_message_id}>" != ids[2]


def test_a_later_notice_answers_the_citizens_last_message(servers: MailServers) -> None:
    context = _context("status", last_inbound_key="<second.letter@mail.ru>")
    assert isinstance(_send(_sender(servers), reply_to=None, context=context), Delivered)
    msg = _parsed(servers.handler.received[0].data)
    assert msg["In-Reply-To"] == "<second.letter@mail.ru>"


def test_a_key_that_is_not_a_message_id_is_not_put_in_in_reply_to(servers: MailServers) -> None:
    assert isinstance(_send(_sender(servers), reply_to="uid:1717:42"), Delivered)
    assert _parsed(servers.handler.received[0].data)["In-Reply-To"] is None


def test_a_450_is_retried_and_the_retry_goes_through(servers: MailServers) -> None:
    sender = _sender(servers)
    servers.handler.refuse(CITIZEN, "450 4.2.1 Mailbox temporarily unavailable, try again later")
    first = _send(sender)
    assert first == RetryLater("email.4xx", "450 4.2.1 Mailbox temporarily unavailable, try again later")
    assert servers.handler.received == []
    second = _send(sender)
    assert isinstance(second, Delivered)
    assert len(servers.handler.received) == 1


def test_a_550_fails_with_the_servers_reason(servers: MailServers) -> None:
    servers.handler.refuse(CITIZEN, f"550 5.1.1 <{CITIZEN}>: Recipient address rejected: User unknown")
    result = _send(_sender(servers))
    assert result == Failed("email.550", f"550 5.1.1 <{CITIZEN}>: Recipient address rejected: User unknown")
    assert servers.handler.received == []


def test_a_message_refused_after_data_fails_with_the_servers_reason(servers: MailServers) -> None:
    servers.handler.refuse_data("554 5.7.1 Message rejected as spam")
    assert _send(_sender(servers)) == Failed("email.554", "554 5.7.1 Message rejected as spam")


def test_a_refused_password_holds_the_channel(servers: MailServers) -> None:
    sender = _sender(servers, smtp_url=servers.url("smtps", password="not-the-app-password"))
    result = _send(sender)
    assert isinstance(result, Held) and result.code == "email.auth_failed"
    assert result.detail.startswith("535 5.7.8")
    assert servers.handler.received == []


def test_a_certificate_from_another_ca_holds_the_channel(servers: MailServers) -> None:
    for kind in ("smtps", "starttls"):
        result = _send(_sender(servers, kind, mail_ca_file=servers.other_ca_file))
        assert isinstance(result, Held) and result.code == "email.tls_failed", (kind, result)
    assert servers.handler.received == []


def test_no_server_listening_is_a_network_retry() -> None:
    settings = EmailSettings(_env_file=None, smtp_url=f"smtps://u:p@127.0.0.1:{free_port()}", mail_from=FROM)
    result = _send(MailSender(settings))
    assert isinstance(result, RetryLater) and result.code == "email.network"


def test_a_server_that_never_greets_is_a_timeout_retry() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says 220
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        settings = EmailSettings(
            _env_file=None,
            smtp_url=f"smtp://u:p@127.0.0.1:{port}",
            mail_from=FROM,
            smtp_timeout_seconds=0.3,
        )
        result = _send(MailSender(settings))
    assert isinstance(result, RetryLater) and result.code == "email.timeout"


@pytest.mark.parametrize("to", ["a@mail.ru, b@mail.ru", "a@mail.ru b@mail.ru", "not an address", ""])
def test_only_one_recipient_ever(servers: MailServers, to: str) -> None:
    result = _send(_sender(servers), to=to)
    assert isinstance(result, Failed) and result.code == "email.bad_address"
    assert servers.handler.received == []


def test_one_budget_for_the_account() -> None:
    settings = EmailSettings(
        _env_file=None, smtp_url="smtps://u:p@smtp.mail.ru:465", mail_from=FROM, smtp_per_minute=12
    )
    [scope] = MailSender(settings).rate_scopes(ReplyTarget("email", FROM, CITIZEN))
    assert (scope.key, scope.limit, scope.per_seconds) == (f"email:{FROM}", 12, 60)


def test_a_4xx_that_says_too_fast_pauses_the_account_without_using_an_attempt(servers: MailServers) -> None:
    servers.handler.refuse(CITIZEN, "451 4.7.1 Ratelimit exceeded for mailbox appeals@ecogeo.gov.kz")
    result = _send(_sender(servers))
    assert result == RetryLater(
        "email.rate_limited",
        "451 4.7.1 Ratelimit exceeded for mailbox appeals@ecogeo.gov.kz",
        after_seconds=60.0,
        rate_limited=True,
        scope="account",
    )


def test_check_logs_in_without_sending(servers: MailServers) -> None:
    assert asyncio.run(_sender(servers).check()) is None
    assert asyncio.run(_sender(servers, "starttls").check()) is None
    refused = asyncio.run(_sender(servers, smtp_url=servers.url("smtps", password="wrong")).check())
    assert isinstance(refused, Held) and refused.code == "email.auth_failed"
    assert servers.handler.received == []


def test_a_mail_the_server_took_is_sent_even_if_its_goodbye_goes_wrong(servers: MailServers) -> None:
    servers.handler.quit_reply = "451 4.3.0 Local error in processing"
    result = _send(_sender(servers))
    assert isinstance(result, Delivered)  # 250 after DATA: it is the server's now; never resend it
    assert len(servers.handler.received) == 1


def test_an_address_in_kazakh_letters_goes_by_smtputf8(servers: MailServers) -> None:
    result = _send(_sender(servers), to="әйгерім@пошта.қаз")
    assert isinstance(result, Delivered), result
    [got] = servers.handler.received
    assert got.rcpt_tos == ["әйгерім@пошта.қаз"]
    assert _parsed(got.data)["To"] == "әйгерім@пошта.қаз"


@pytest.mark.parametrize(
    "code", ["email.4xx", "email.auth_failed", "email.tls_failed", "email.bad_address", "email.rate_limited"]
)
def test_each_sending_code_is_explained_to_a_moderator_in_every_language(code: str) -> None:
    msgid = explain_code(code)
    assert msgid is not None and msgid != UNKNOWN_CODE
    assert gettext("ru", msgid) != msgid and gettext("kk", msgid) != msgid
