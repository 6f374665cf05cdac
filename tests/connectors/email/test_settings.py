"""ADALDYK_IMAP_URL, _SMTP_URL, _MAIL_FROM, _MAIL_CA_FILE: parsed once; a wrong one stops start-up with
one line naming the variable and why, never echoing a password."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.settings import SettingsError, load_settings
from connectors.email import EmailConnector
from connectors.email.settings import EmailSettings

SMTP = "smtps://appeals%40ecogeo.gov.kz:AppPass123@smtp.mail.ru:465"


def _load(**values: Any) -> Any:
    return load_settings(_env_file=None, database_url="sqlite:///:memory:", **values)


def test_mail_ru_urls_are_parsed_with_percent_decoded_credentials() -> None:
    own = _load(
        imap_url="imaps://appeals%40ecogeo.gov.kz:p%2Fa%3As%40s@imap.mail.ru/INBOX",
        smtp_url=SMTP,
        mail_from="Министрлік <appeals@ecogeo.gov.kz>",
        imap_processed_folder="Processed",
    ).channel(EmailSettings)
    imap, smtp = own.imap, own.smtp
    assert (imap.scheme, imap.host, imap.port, imap.security) == ("imaps", "imap.mail.ru", 993, "tls")
    assert (imap.user, imap.password, imap.mailbox) == ("appeals@ecogeo.gov.kz", "p/a:s@s", "INBOX")
    assert (smtp.scheme, smtp.host, smtp.port, smtp.security) == ("smtps", "smtp.mail.ru", 465, "tls")
    assert (smtp.user, smtp.password) == ("appeals@ecogeo.gov.kz", "AppPass123")
    assert own.mail_from_address == "appeals@ecogeo.gov.kz" and own.mail_from_domain == "ecogeo.gov.kz"
    assert {"p/a:s@s", "p%2Fa%3As%40s", "AppPass123"} <= set(own.secret_values())
    assert "p/a:s@s" not in repr(imap)
    assert isinstance(own.ssl_context(), ssl.SSLContext)


def test_smtp_without_tls_only_on_loopback() -> None:
    own = _load(smtp_url="smtp://u:p@127.0.0.1:2525", mail_from="a@b.kz").channel(EmailSettings)
    assert own.smtp is not None and own.smtp.security == "starttls" and own.smtp.plain_allowed
    own = _load(smtp_url="smtp://u:p@smtp.example.kz", mail_from="a@b.kz").channel(EmailSettings)
    assert own.smtp is not None and own.smtp.port == 587 and not own.smtp.plain_allowed
    assert own.imap is None  # the channel is off without IMAP_URL


@pytest.mark.parametrize(
    ("values", "variable", "why"),
    [
        ({"imap_url": "https://u:p@imap.mail.ru"}, "ADALDYK_IMAP_URL", "must start with imaps:// or imap://"),
        (
            {"imap_url": "imaps://imap.mail.ru/INBOX"},
            "ADALDYK_IMAP_URL",
            "must carry the user and the password",
        ),
        ({"imap_url": "imaps://u:p@imap.mail.ru:99999"}, "ADALDYK_IMAP_URL", "is not a valid address"),
        ({"imap_url": "imaps://u:s3cr3t@imap.mail.ru"}, "ADALDYK_SMTP_URL", "is required"),
        ({"smtp_url": "ftp://u:p@x"}, "ADALDYK_SMTP_URL", "must start with smtps:// or smtp://"),
        (
            {"smtp_url": "smtps://u:p@x/folder", "mail_from": "a@b.kz"},
            "ADALDYK_SMTP_URL",
            "must not have a path",
        ),
        ({"smtp_url": SMTP}, "ADALDYK_MAIL_FROM", "is required"),
        ({"smtp_url": SMTP, "mail_from": "not an address"}, "ADALDYK_MAIL_FROM", "must be an e-mail address"),
        (
            {
                "imap_url": "imaps://u:p@x/INBOX",
                "smtp_url": SMTP,
                "mail_from": "a@b.kz",
                "imap_processed_folder": "INBOX",
            },
            "ADALDYK_IMAP_PROCESSED_FOLDER",
            "must differ from the mailbox",
        ),
        ({"mail_ca_file": "/nonexistent/ca.pem"}, "ADALDYK_MAIL_CA_FILE", "no such file"),
    ],
)
def test_a_wrong_setting_names_the_variable_and_why(values: dict[str, str], variable: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(**values)
    message = str(caught.value)
    assert variable in message and why in message, message
    assert "s3cr3t" not in message and "AppPass123" not in message


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(SettingsError, match="ADALDYK_MAIL_CA_FILE: is not a PEM bundle"):
        _load(mail_ca_file=str(bad))


def test_plain_imap_to_another_host_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    settings = _load(imap_url="imap://u:p@imap.example.kz/INBOX", smtp_url=SMTP, mail_from="a@b.kz")
    connector = EmailConnector.from_settings(settings)
    assert connector is not None and connector.account == "u"
    with caplog.at_level(logging.WARNING):
        asyncio.run(connector.start(None, receive=False))  # type: ignore[arg-type]
    assert "unencrypted" in caplog.text
    assert connector.health.extra["warning"] == "IMAP without TLS"
    loopback = EmailConnector.from_settings(
        _load(imap_url="imap://u:p@127.0.0.1/INBOX", smtp_url=SMTP, mail_from="a@b.kz")
    )
    assert loopback is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        asyncio.run(loopback.start(None, receive=False))  # type: ignore[arg-type]
    assert "unencrypted" not in caplog.text
