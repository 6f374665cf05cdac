"""The SMTP side's health: the worker logs in to the real SMTP server (tests/smtp_server.py, aiosmtpd over
TLS) at start and periodically without sending, and /healthz and the admins' health page say what came
of it — a wrong password as "SMTP login refused: 535 …" (the channel degraded, its sends held), the right
one as ok; a 535 on a send says so at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adaldyk_bots.domain import Held, ReplyTarget, SendContext
from connectors.email.connector import EmailConnector
from connectors.email.settings import EmailSettings
from tests.connectors.email.conftest import email_settings
from tests.dovecot import PrivateDovecot
from tests.smtp_server import MailServers, mail_servers
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import create_user, login


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServers]:
    with mail_servers(tmp_path) as servers:
        yield servers


def _settings(
    make_settings: Any, dovecot: PrivateDovecot, smtp: MailServers, tmp_path: Path, **extra: Any
) -> Any:
    bundle = tmp_path / "trusted.pem"  # ADALDYK_MAIL_CA_FILE: both test servers' certificates
    bundle.write_bytes(Path(dovecot.cert).read_bytes() + smtp.ca_file.read_bytes())
    extra.setdefault("smtp_url", smtp.url("smtps"))
    values = email_settings(dovecot, mail_ca_file=str(bundle), **extra)
    return make_settings(port=free_port(), **values)


def _health(svc: ServiceThread) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{svc.url}/healthz", timeout=10).json()
    return body


def _section(html: str) -> str:
    found = re.search(r'<section [^>]*data-channel="email".*?</section>', html, re.S)
    assert found, "no e-mail section"
    return found.group(0)


def test_a_wrong_smtp_password_shows_on_healthz_and_the_page(
    make_settings: Any, dovecot: PrivateDovecot, smtp: MailServers, tmp_path: Path
) -> None:
    settings = _settings(
        make_settings, dovecot, smtp, tmp_path, smtp_url=smtp.url("smtps", password="not-the-password")
    )
    with ServiceThread(settings) as svc:
        # Checked at start, before the first citizen's notice waits on it.
        wait_until(lambda: _health(svc)["channels"]["email"]["smtp"]["state"] == "refused", what="refused")
        body = _health(svc)
        email = body["channels"]["email"]
        assert email["smtp"]["code"] == "email.auth_failed"
        assert email["smtp"]["detail"].startswith("SMTP login refused: 535")
        assert email["state"] == "degraded" and "SMTP login refused: 535" in email["detail"]
        assert email["credentials"] == "refused" and body["status"] == "degraded"
        create_user(svc.runtime.engine, "root", "admin")
        with httpx.Client(base_url=svc.url) as admin:
            login(admin, "root")
            ru = _section(admin.get("/admin/health?lang=ru").text)
            kk = _section(admin.get("/admin/health?lang=kk").text)
    assert 'data-smtp="refused"' in ru and "535" in ru
    assert "Сервер отказал во входе" in ru
    assert "Сервер кіруден бас тартты" in kk
    assert smtp.handler.received == []  # a check never sends


def test_the_right_password_is_ok_and_a_revoked_one_shows_at_the_next_check(
    make_settings: Any, dovecot: PrivateDovecot, smtp: MailServers, tmp_path: Path
) -> None:
    with ServiceThread(_settings(make_settings, dovecot, smtp, tmp_path, smtp_check_seconds=1)) as svc:
        wait_until(lambda: _health(svc)["channels"]["email"]["smtp"]["state"] == "ok", what="smtp ok")
        wait_until(lambda: _health(svc)["channels"]["email"]["state"] == "ok", timeout=30, what="imap ok")
        email = _health(svc)["channels"]["email"]
        assert email["smtp"]["detail"].startswith("SMTP login accepted") and email["smtp"]["checked_at"]
        assert "SMTP" not in email["detail"]
        smtp.auth.refuse_all = True  # the provider revoked the application password meanwhile
        wait_until(
            lambda: _health(svc)["channels"]["email"]["smtp"]["state"] == "refused",
            timeout=20,
            what="revoked",
        )
        assert _health(svc)["channels"]["email"]["state"] == "degraded"
        smtp.auth.refuse_all = False
        wait_until(
            lambda: _health(svc)["channels"]["email"]["state"] == "ok", timeout=20, what="accepted again"
        )
    assert smtp.handler.received == []


def test_a_535_on_a_send_says_why_at_once(smtp: MailServers, tmp_path: Path) -> None:
    settings = EmailSettings(
        _env_file=None,
        imap_url="imaps://robot:secret@127.0.0.1:1/INBOX",  # never reached: only sending here
        smtp_url=smtp.url("smtps"),
        mail_from="appeals@ecogeo.gov.kz",
        mail_ca_file=smtp.ca_file,
    )
    connector = EmailConnector(settings, files_dir=tmp_path / "files")
    smtp.auth.refuse_all = True
    context = SendContext(
        purpose="status", written_by_person=False, last_inbound_at=None, now=datetime.now(UTC)
    )
    target = ReplyTarget("email", connector.account, "aigul@mail.ru")
    result = asyncio.run(
        connector.send(target, "Мәртебе өзгерді", idempotency_key="status:1", context=context)
    )
    assert isinstance(result, Held) and result.code == "email.auth_failed"
    health = connector.health
    assert health.extra["smtp"]["state"] == "refused"
    assert health.state == "degraded" and health.detail.startswith("SMTP login refused: 535")
    smtp.auth.refuse_all = False
    again = asyncio.run(
        connector.send(target, "Мәртебе өзгерді", idempotency_key="status:1", context=context)
    )
    assert not isinstance(again, Held)
    assert connector.health.extra["smtp"]["state"] == "ok" and "SMTP" not in connector.health.detail
