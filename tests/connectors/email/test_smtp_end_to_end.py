"""The whole e-mail loop with the real service (web + worker in a thread): a citizen's mail arrives by
IMAP (a private Dovecot), becomes an appeal, its acknowledgement goes out through the one dispatcher path
to a real SMTP server (aiosmtpd over TLS) with the appeal's number, threading and Auto-Submitted, its
Message-ID is the row's platform id; the citizen's reply to it joins the appeal by that id, and a bounce
naming it fails the notice."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, Message, OutboxItem, RawEvent
from tests.connectors.email import fixture
from tests.connectors.email.conftest import Mailbox, email_settings
from tests.connectors.email.fixtures import make_fixtures
from tests.dovecot import PrivateDovecot
from tests.smtp_server import mail_servers
from tests.support import ServiceThread, assert_signal_ack, free_port, wait_processed, wait_until

CITIZEN = "aigerim.s@mail.ru"
HER_FIRST_MAIL = "<1764479700.123456789@f123.i.mail.ru>"  # utf8_kazakh.eml's Message-ID
HER_REPLY = "<1764561600.987654321@f123.i.mail.ru>"  # make_fixtures.reply's


def _rows(engine: Any, *where: Any) -> list[OutboxItem]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxItem).where(*where).order_by(col(OutboxItem.id))).all())


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_a_mail_is_acknowledged_by_mail_and_the_loop_closes(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox, tmp_path: Path
) -> None:
    with mail_servers(tmp_path) as smtp:
        bundle = tmp_path / "trusted.pem"  # ADALDYK_MAIL_CA_FILE: both test servers' certificates
        bundle.write_bytes(Path(dovecot.cert).read_bytes() + smtp.ca_file.read_bytes())
        settings = make_settings(
            port=free_port(),
            **email_settings(dovecot, smtp_url=smtp.url("smtps"), mail_ca_file=str(bundle)),
        )
        mailbox.deliver(fixture("utf8_kazakh.eml"))
        with ServiceThread(settings) as svc:
            engine = svc.runtime.engine
            wait_until(
                lambda: [r for r in _rows(engine, OutboxItem.purpose == "ack") if r.state == "sent"],
                timeout=30,
                what="the acknowledgement sent",
            )
            [ack] = _rows(engine, OutboxItem.purpose == "ack")
            with Session(engine) as s:
                appeal = s.get(Appeal, ack.appeal_id)
            assert appeal is not None and appeal.language == "kk"

            [got] = smtp.handler.received
            assert got.tls and got.rcpt_tos == [CITIZEN] and got.mail_from == "appeals@ecogeo.gov.kz"
            msg = email.message_from_bytes(got.data, policy=default)
            assert isinstance(msg, EmailMessage)
            assert ack.platform_message_ids == [msg["Message-ID"].strip("<>")]
            assert msg["Message-ID"].startswith(f"<{appeal.number}.")
            assert msg["In-Reply-To"] == msg["References"] == HER_FIRST_MAIL
            assert msg["Subject"] == f"[{appeal.number}] Хабарламаңыз қабылданды"
            assert msg["Auto-Submitted"] == "auto-replied"
            plain = msg.get_body(preferencelist=("plain",))
            assert plain is not None
            # The e-mail's signal: received under its number, followed by writing the number back.
            assert_signal_ack(
                plain.get_content().replace("\r\n", "\n").strip(),
                "kk",
                number=appeal.number,
                follow="хат жіберіңіз",
            )
            assert msg.get_body(preferencelist=("html",)) is not None
            ours = ack.platform_message_ids[0]

            # She answers our mail (In-Reply-To names it): the reply joins her appeal.
            mailbox.deliver(make_fixtures.reply(number=appeal.number, our_id=ours))
            wait_until(
                lambda: (
                    _count(engine, Message, Message.appeal_id == appeal.id, Message.direction == "in") == 2
                ),
                timeout=30,
                what="her reply joined to the appeal",
            )
            assert _count(engine, Appeal) == 1

            # A moderator answers: the mail continues the whole thread (her References, then her reply).
            with unit_of_work(engine) as s:
                current = s.get(Appeal, appeal.id)
                assert current is not None
                svc.runtime.workflow.reply(s, current, "Инспекция выехала на место.", actor="user:maria")
            wait_until(lambda: len(smtp.handler.received) == 2, timeout=30, what="the reply sent")
            answer = email.message_from_bytes(smtp.handler.received[1].data, policy=default)
            assert answer["In-Reply-To"] == HER_REPLY
            assert answer["References"].split() == [HER_FIRST_MAIL, f"<{ours}>", HER_REPLY]

            # A bounce that quotes our Message-ID fails the acknowledgement, with the reason.
            before = _count(engine, RawEvent)
            mailbox.deliver(make_fixtures.bounce(original_id=ours))
            wait_until(lambda: _count(engine, RawEvent) == before + 1, timeout=30, what="the bounce stored")
            wait_processed(engine)
            wait_until(
                lambda: _rows(engine, OutboxItem.id == ack.id)[0].state == "failed",
                what="the acknowledgement failed by the bounce",
            )
            [bounced] = _rows(engine, OutboxItem.id == ack.id)
            assert bounced.last_error_code == "email.bounced"
            assert (bounced.last_error_detail or "").startswith("5.1.1")
            assert "User unknown" in (bounced.last_error_detail or "")
            assert _count(engine, Appeal) == 1
