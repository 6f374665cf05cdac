"""The e-mail channel against a real IMAP server (a private Dovecot over TLS): mails of every shape become
appeals, robots and bounces do not, replies join their appeal, a new UIDVALIDITY loses and duplicates
nothing. The service is the real one (web + worker, in a thread); mail is delivered by IMAP APPEND."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlmodel import Session, col, func, select

from adaldyk_bots.receipts import link_sent
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, ChannelCursor, Message, OutboxItem, RawEvent
from tests.connectors.email import MAILBOX_USER, fixture
from tests.connectors.email.conftest import Mailbox, email_settings
from tests.connectors.email.fixtures import make_fixtures
from tests.dovecot import PrivateDovecot
from tests.support import ServiceThread, free_port, wait_processed, wait_until

EVERY_SHAPE = [
    "utf8_kazakh.eml",
    "koi8r.eml",
    "windows1251.eml",
    "html_only.eml",
    "attachments.eml",
    "no_message_id.eml",
    "autoreply.eml",
    "mailing_list.eml",
]
CITIZEN_MAILS = 6  # the first six; the auto-reply and the list digest are not appeals


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _service(make_settings: Any, dovecot: PrivateDovecot, **extra: Any) -> ServiceThread:
    return ServiceThread(make_settings(port=free_port(), **email_settings(dovecot, **extra)))


def _messages_by_sender(engine: Any) -> dict[str, list[Message]]:
    from adaldyk_bots.storage.models import Conversation

    with Session(engine) as s:
        rows = s.exec(
            select(Conversation.chat_id, Message)
            .join(Message, col(Message.conversation_id) == Conversation.id)
            .where(Message.direction == "in")
            .order_by(col(Message.id))
        ).all()
    found: dict[str, list[Message]] = {}
    for chat_id, message in rows:
        found.setdefault(chat_id, []).append(message)
    return found


def test_mails_of_every_shape_become_appeals_and_robots_do_not(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    for name in EVERY_SHAPE:
        mailbox.deliver(fixture(name))
    with _service(make_settings, dovecot, imap_processed_folder="Processed") as svc:
        engine = svc.runtime.engine
        wait_until(lambda: _count(engine, RawEvent) == len(EVERY_SHAPE), timeout=30, what="every mail stored")
        wait_processed(engine)
        wait_until(lambda: mailbox.count("INBOX") == 0, what="the mails moved to the processed folder")
        assert mailbox.count("Processed") == len(EVERY_SHAPE)  # moved, never deleted

        by_sender = _messages_by_sender(engine)
        assert set(by_sender) == {
            "aigerim.s@mail.ru",
            "ivan.petrov@example.ru",
            "olga.kim@example.kz",
            "daniyar@example.kz",
            "serik.b@gmail.example",
            "robotless@example.kz",
        }
        text = {sender: messages[0].text for sender, messages in by_sender.items()}
        assert "Өзен жағасындағы қоқыс" in text["aigerim.s@mail.ru"]  # RFC 2047 subject, UTF-8
        assert "қоқыс үйіндісі пайда болды" in text["aigerim.s@mail.ru"]
        assert "Вырубка деревьев" in text["ivan.petrov@example.ru"]  # KOI8-R subject and body
        assert "вырубку деревьев в парке" in text["ivan.petrov@example.ru"]
        assert "Мёртвая рыба в озере" in text["olga.kim@example.kz"]  # Windows-1251, quoted-printable
        assert "мёртвая рыба, запах" in text["olga.kim@example.kz"]
        assert "контейнеры переполнены" in text["daniyar@example.kz"]  # HTML-only, as text
        assert "<" not in text["daniyar@example.kz"] and "color:red" not in text["daniyar@example.kz"]

        files = by_sender["serik.b@gmail.example"][0].attachments
        assert [(f["kind"], f["name"], f["mime_type"]) for f in files] == [
            ("photo", "свалка.png", "image/png"),
            ("document", "Акт проверки.pdf", "application/pdf"),
        ]
        # A file is fetched again from the mailbox (here: the processed folder) by its reference.
        connector: Any = svc.runtime.connectors["email"]
        path = asyncio.run(connector.download_file(files[0]["file_id"]))
        assert path.read_bytes() == make_fixtures.PNG

        with Session(engine) as s:
            appeals = s.exec(select(Appeal)).all()
            ignored = s.exec(select(RawEvent.reason).where(RawEvent.state == "ignored")).all()
            acks = s.exec(select(OutboxItem.key).where(col(OutboxItem.key).startswith("ack:"))).all()
            names = {a.number: a.contact_id for a in appeals}
        assert len(appeals) == CITIZEN_MAILS and {a.channel for a in appeals} == {"email"}
        assert len(acks) == CITIZEN_MAILS
        assert sorted(r.split(":")[0] for r in ignored if r) == ["email.auto_submitted", "email.mailing_list"]
        assert len(names) == CITIZEN_MAILS

        health = httpx.get(f"{svc.url}/healthz", timeout=10).json()
        email = health["channels"]["email"]
        assert email["state"] == "ok", email
        assert "IDLE" in email["detail"]


def _appeal_of(engine: Any, sender: str) -> Appeal:
    from adaldyk_bots.storage.models import Conversation

    with Session(engine) as s:
        found = s.exec(
            select(Appeal)
            .join(Conversation, col(Conversation.id) == Appeal.conversation_id)
            .where(Conversation.chat_id == sender)
            .order_by(col(Appeal.id))
        ).all()
        assert found, sender
        return found[0]


def _sent_notice(engine: Any, appeal: Appeal, message_id: str) -> int:
    """The outbox row as the dispatcher leaves it after SMTP accepted the mail: `sent`, its Message-ID
    (angle brackets stripped) recorded and indexed (receipts.link_sent, the dispatcher's own call)."""
    with unit_of_work(engine) as s:
        now = utcnow()
        row = OutboxItem(
            key=f"status:bounce-test:{appeal.id}",
            channel="email",
            account=MAILBOX_USER,
            chat_id="nobody@example.kz",
            appeal_id=appeal.id,
            purpose="status",
            text="Your appeal is in progress",
            state="sent",
            attempts=1,
            parts_sent=1,
            platform_message_ids=[message_id],
            next_attempt_at=now,
            created_at=now,
            sent_at=now,
        )
        s.add(row)
        s.flush()
        link_sent(s, row, message_id, now)
        assert row.id is not None
        return row.id


def test_reply_joins_its_appeal_and_a_bounce_fails_its_notice(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    mailbox.deliver(fixture("utf8_kazakh.eml"))
    with _service(make_settings, dovecot) as svc:
        engine = svc.runtime.engine
        wait_until(lambda: _count(engine, Appeal) == 1, timeout=30, what="the first appeal")
        first = _appeal_of(engine, "aigerim.s@mail.ru")
        ours = f"{first.number}.3f9a2c0d@ecogeo.gov.kz"  # how email-out names the mails it sends

        # A second appeal of hers is opened (another subject, after the first was answered) …
        with unit_of_work(engine) as s:
            appeal = s.get(Appeal, first.id)
            assert appeal is not None
            svc.runtime.workflow.change_status(s, appeal, "answered", actor="user:test")
        mailbox.deliver(make_fixtures.reply(number="ADL-2099-999999", our_id="unrelated@example.kz"))
        wait_until(lambda: _count(engine, Appeal) == 2, timeout=30, what="a new appeal after the answer")
        # … then the answered one is taken back into work and she answers our mail about it:
        # In-Reply-To names our Message-ID, so the reply joins the first appeal, not the newer one.
        with unit_of_work(engine) as s:
            appeal = s.get(Appeal, first.id)
            assert appeal is not None
            svc.runtime.workflow.change_status(s, appeal, "reopened", actor="user:test")
        reply = make_fixtures.reply(number=first.number, our_id=ours).replace(
            b"1764561600.987654321@f123", b"1764561601.000000001@f123"
        )
        mailbox.deliver(reply)
        wait_until(lambda: _count(engine, Message, Message.appeal_id == first.id) == 2, what="the reply")
        assert _count(engine, Appeal) == 2
        with Session(engine) as s:
            joined = s.exec(
                select(Message).where(Message.appeal_id == first.id).order_by(col(Message.id).desc())
            ).first()
        assert joined is not None
        assert joined.text.startswith("Спасибо. Уточняю")
        assert ">" not in joined.text and "Срок ответа" not in joined.text  # the quote is trimmed

        # Someone else quoting her number joins nothing of hers.
        stranger = make_fixtures.reply(number=first.number, our_id=ours).replace(
            b"aigerim.s@mail.ru", b"stranger@example.kz"
        )
        stranger = stranger.replace(b"1764561600.987654321@f123", b"stranger-0001@f123")
        mailbox.deliver(stranger)
        wait_until(lambda: _count(engine, Appeal) == 3, what="the stranger's own appeal")

        # A bounce of a notice we sent about the first appeal fails that notice, visibly; an
        # auto-reply opens nothing.
        notice = f"{first.number}.b0unce00@ecogeo.gov.kz"
        row_id = _sent_notice(engine, first, notice)
        before = _count(engine, RawEvent)
        mailbox.deliver(make_fixtures.bounce(original_id=notice))
        mailbox.deliver(fixture("autoreply.eml"))
        wait_until(lambda: _count(engine, RawEvent) == before + 2, what="the bounce and the auto-reply")
        wait_processed(engine)
        with Session(engine) as s:
            row = s.get(OutboxItem, row_id)
            assert row is not None
            assert (row.state, row.last_error_code) == ("failed", "email.bounced")
            assert (row.last_error_detail or "").startswith("5.1.1 nobody@example.kz: 550")
            failed = s.exec(
                select(AppealEvent).where(
                    AppealEvent.appeal_id == first.id, AppealEvent.kind == "delivery_failed"
                )
            ).all()
        assert len(failed) == 1 and failed[0].detail["code"] == "email.bounced"
        assert _count(engine, Appeal) == 3  # neither the bounce nor the auto-reply is an appeal


def _cursor(engine: Any) -> str | None:
    with Session(engine) as s:
        row = s.get(ChannelCursor, ("email", MAILBOX_USER))
        return row.value if row else None


def test_a_new_uidvalidity_loses_and_duplicates_nothing(
    make_settings: Any, dovecot: PrivateDovecot, mailbox: Mailbox
) -> None:
    folder = "Appeals"
    mailbox.client.create_folder(folder)
    old = ["utf8_kazakh.eml", "koi8r.eml", "no_message_id.eml"]
    for name in old:
        mailbox.deliver(fixture(name), folder)
    first_validity = mailbox.uidvalidity(folder)
    settings = make_settings(port=free_port(), **email_settings(dovecot, folder))
    with ServiceThread(settings) as svc:
        wait_until(lambda: _count(svc.runtime.engine, Appeal) == 3, timeout=30, what="the first three")

    # The mailbox is recreated (a restore, a move to another server): the same mails again, with new
    # UIDs under a new UIDVALIDITY, and two that are new.
    mailbox.client.delete_folder(folder)
    mailbox.client.create_folder(folder)
    for name in [*old, "windows1251.eml", "html_only.eml"]:
        mailbox.deliver(fixture(name), folder)
    assert mailbox.uidvalidity(folder) != first_validity

    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        wait_until(
            lambda: (
                (_cursor(engine) or "").startswith(f"{mailbox.uidvalidity(folder)}:")
                and _count(engine, RawEvent) == 5
            ),
            timeout=30,
            what="the mailbox read again under its new UIDVALIDITY",
        )
        end = f"{mailbox.uidvalidity(folder)}:5"
        wait_until(lambda: _cursor(engine) == end, what="the cursor at the end")
        wait_processed(engine)
        assert _count(engine, Appeal) == 5
        assert _count(engine, Message, Message.direction == "in") == 5
        assert _count(engine, OutboxItem, col(OutboxItem.key).startswith("ack:")) == 5
        health: Any = svc.runtime.connectors["email"].health
        assert health.extra["resyncs"] == 1
        assert health.extra["last_resync"]["from"] == first_validity
