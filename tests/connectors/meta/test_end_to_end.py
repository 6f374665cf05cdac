"""End to end over loopback, one per product: citizens write to the fake Graph API, which delivers signed
webhooks to the real service; the service answers through the dispatcher, the reply windows and the
fake's own rules (24 h, HUMAN_AGENT, one private reply, WhatsApp templates)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select, update

from adaldyk_bots.storage.models import Conversation, OutboxItem, StaffTask
from connectors.meta.fake import FakeGraph
from tests.conftest import TOKEN as TELEGRAM_TOKEN
from tests.connectors.meta import IG_ID, PAGE_ID, WA_ID, meta_settings
from tests.support import ServiceThread, assert_signal_ack, create_api_token, free_port, wait_until

NUMBER = re.compile(r"ADL-\d{4}-\d{6}")
KK_TEXT = "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр."
RU_TEXT = "Здравствуйте! Рядом с нашим домом незаконная свалка мусора, прошу принять меры."
HOURS_25 = 25 * 3600.0
LIMIT = {"facebook": 2000, "whatsapp": 4096}


class Meta:
    """The service and the fake, connected: the fake's webhooks go to /webhooks/meta."""

    def __init__(self, svc: ServiceThread, fake: FakeGraph) -> None:
        self.svc, self.fake = svc, fake
        fake.webhook_url = f"{svc.url}/webhooks/meta"
        self.api = httpx.Client(
            base_url=f"{svc.url}/api/v1",
            headers={"Authorization": f"Bearer {create_api_token(svc.settings)}"},
            timeout=15,
        )

    def texts(self, user: str) -> list[str]:
        return [m["text"] for m in self.fake.messages_to(user)]

    def sent(self, user: str, n: int, what: str) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.fake.messages_to(user)) >= n, what=what)
        return self.fake.messages_to(user)

    def appeal_of(self, text: str) -> dict[str, Any]:
        number = NUMBER.search(text)
        assert number, text
        found: dict[str, Any] = self.api.get(f"/appeals/{number.group(0)}").json()
        return found

    def deliveries(self, number: str) -> dict[str, dict[str, Any]]:
        return {
            d["key"].split(":")[0] + ":" + d["purpose"]: d
            for d in self.api.get(f"/appeals/{number}").json()["deliveries"]
        }

    def backdate(self, channel: str, account: str, user: str, seconds: float) -> None:
        """25 hours pass for this conversation: on the platform and in our record of the citizen's last
        message (the platform's timestamp we stored)."""
        self.fake.backdate(account, user, seconds)
        with Session(self.svc.runtime.engine) as s:
            conversation = s.exec(
                select(Conversation).where(
                    Conversation.channel == channel,
                    Conversation.account == account,
                    Conversation.chat_id == user,
                )
            ).one()
            conversation.last_inbound_at -= timedelta(seconds=seconds)
            s.add(conversation)
            s.commit()


def _service(make_settings: Any, fake: FakeGraph, **overrides: Any) -> ServiceThread:
    return ServiceThread(meta_settings(make_settings, fake, port=free_port(), **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("channel", "account", "text", "language"),
    [
        ("facebook", PAGE_ID, KK_TEXT, "kk"),
        ("instagram", IG_ID, RU_TEXT, "ru"),
        ("whatsapp", WA_ID, KK_TEXT, "kk"),
    ],
)
def test_message_becomes_an_appeal_acknowledged_in_the_citizens_language_within_limits(
    channel: str,
    account: str,
    text: str,
    language: str,
    make_settings: Any,
    fake_graph: FakeGraph,
) -> None:
    with _service(make_settings, fake_graph) as svc:
        meta = Meta(svc, fake_graph)
        fake_graph.citizen_message(account, "7770001", text, name="Айгүл")
        (ack,) = meta.sent("7770001", 1, f"the {channel} acknowledgement")
        assert_signal_ack(ack["text"], language)  # a signal: received, not registered
        assert ack["channel"] == channel and ack["kind"] == ("text" if channel == "whatsapp" else "message")
        if channel == "instagram":
            assert len(ack["text"].encode()) <= 1000
        else:
            assert len(ack["text"]) <= LIMIT[channel]
        if channel != "whatsapp":
            assert ack["messaging_type"] == "RESPONSE" and ack["tag"] is None
        appeal = meta.appeal_of(ack["text"])
        assert appeal["language"] == language and appeal["channel"] == channel
        assert fake_graph.errors == [] and fake_graph.violations == []


@pytest.mark.parametrize(("channel", "account"), [("facebook", PAGE_ID), ("instagram", IG_ID)])
@pytest.mark.parametrize("answers_privately", [False, True])
def test_a_comment_gets_one_private_reply_and_later_notices_go_to_the_private_thread(
    channel: str, account: str, answers_privately: bool, make_settings: Any, fake_graph: FakeGraph
) -> None:
    with _service(make_settings, fake_graph) as svc:
        meta = Meta(svc, fake_graph)
        comment_id, body = fake_graph.citizen_comment(account, "7770002", RU_TEXT, name="ivan")
        (reply,) = meta.sent("7770002", 1, "the private reply")
        assert reply["kind"] == "private_reply" and reply["comment_id"] == comment_id
        assert_signal_ack(reply["text"], "ru")
        # Meta delivers the same comment again (a retry): still one appeal, one private reply.
        fake_graph.deliver(body)
        wait_until(lambda: fake_graph.pending_webhooks() == 0, what="the redelivery")
        number = NUMBER.search(reply["text"]).group(0)  # type: ignore[union-attr]
        if answers_privately:
            # The citizen answers the private reply in the thread it opened (their own new appeal).
            fake_graph.citizen_message(account, "7770002", "Спасибо, жду ответа по свалке.")
            meta.sent("7770002", 2, "the private thread's acknowledgement")
        changed = meta.api.post(f"/appeals/{number}/status", json={"status": "in_progress"})
        assert changed.status_code == 200, changed.text
        failed = wait_until(
            lambda: [
                d for d in meta.api.get(f"/appeals/{number}").json()["deliveries"] if d["state"] == "failed"
            ],
            what="the status notice's state",
        )
        # The one private reply is used: never a second one; the notice is failed here, visibly ...
        assert failed[0]["last_error_code"] == "meta.window_closed"
        assert "private reply" in failed[0]["last_error_detail"]
        assert len([m for m in fake_graph.sent if m["kind"] == "private_reply"]) == 1
        if answers_privately:
            # ... and goes to the private thread instead, where the citizen wrote.
            assert "owed on another channel instead" in failed[0]["last_error_detail"]
            notices = meta.sent("7770002", 3, "the status notice in the private thread")
            assert notices[-1]["kind"] == "message" and number in notices[-1]["text"]
            assert "на рассмотрении" in notices[-1]["text"]
        else:
            assert len(meta.texts("7770002")) == 1
            assert meta.api.get("/appeals").json()["total"] == 1


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_at_25_hours_a_moderators_reply_goes_by_human_agent_when_allowed(
    channel: str, make_settings: Any, fake_graph: FakeGraph
) -> None:
    account = PAGE_ID if channel == "facebook" else IG_ID
    with _service(make_settings, fake_graph, meta_human_agent=True) as svc:
        meta = Meta(svc, fake_graph)
        fake_graph.citizen_message(account, "7770003", KK_TEXT)
        (ack,) = meta.sent("7770003", 1, "the acknowledgement")
        number = NUMBER.search(ack["text"]).group(0)  # type: ignore[union-attr]
        meta.backdate(channel, account, "7770003", HOURS_25)
        # An automated status notice may not use the tag: visibly unreachable (no other channel known).
        assert meta.api.post(f"/appeals/{number}/status", json={"status": "in_progress"}).status_code == 200
        # A moderator's reply may: it goes with MESSAGE_TAG + HUMAN_AGENT.
        replied = meta.api.post(f"/appeals/{number}/reply", json={"text": "Тексеру жүргізілді."})
        assert replied.status_code == 200, replied.text
        _, answer = meta.sent("7770003", 2, "the moderator's reply")
        assert "Тексеру жүргізілді." in answer["text"]
        assert (answer["messaging_type"], answer["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
        deliveries = meta.api.get(f"/appeals/{number}").json()["deliveries"]
        status = next(d for d in deliveries if d["purpose"] == "status")
        assert status["state"] == "failed" and status["last_error_code"] == "meta.window_closed"
        assert status["last_error_detail"].startswith("cannot reach the citizen: reply window closed")
        assert len(meta.texts("7770003")) == 2  # never "sent" when it was not


def test_at_25_hours_without_human_agent_a_notice_goes_by_fallback_else_is_visibly_unreachable(
    make_settings: Any, fake_graph: FakeGraph, fake_telegram: Any
) -> None:
    overrides = {
        "telegram_token": TELEGRAM_TOKEN,
        "telegram_api_url": fake_telegram.url,
        "telegram_poll_timeout": 1,
    }
    with _service(make_settings, fake_graph, **overrides) as svc:
        meta = Meta(svc, fake_graph)
        # Two citizens on Messenger; the first also wrote to the Telegram bot.
        fake_graph.citizen_message(PAGE_ID, "7770004", RU_TEXT)
        fake_graph.citizen_message(PAGE_ID, "7770005", RU_TEXT)
        fake_telegram.citizen_message(TELEGRAM_TOKEN, chat_id=4004, text="/start", language_code="ru")
        (ack4,) = meta.sent("7770004", 1, "the first acknowledgement")
        (ack5,) = meta.sent("7770005", 1, "the second acknowledgement")
        wait_until(lambda: fake_telegram.sent_messages(TELEGRAM_TOKEN, 4004), what="the Telegram welcome")
        # A moderator links the first citizen's Telegram chat to them (the same person).
        with Session(svc.runtime.engine) as s:
            contact = s.exec(select(Conversation.contact_id).where(Conversation.chat_id == "7770004")).one()
            s.execute(
                update(Conversation).where(col(Conversation.chat_id) == "4004").values(contact_id=contact)
            )
            s.commit()
        for user in ("7770004", "7770005"):
            meta.backdate("facebook", PAGE_ID, user, HOURS_25)
        n4 = NUMBER.search(ack4["text"]).group(0)  # type: ignore[union-attr]
        n5 = NUMBER.search(ack5["text"]).group(0)  # type: ignore[union-attr]
        for number in (n4, n5):
            assert meta.api.post(f"/appeals/{number}/reply", json={"text": "Ответ готов."}).status_code == 200

        # The first citizen gets the answer on Telegram; the Messenger row says where it went.
        telegram = wait_until(
            lambda: [
                m for m in fake_telegram.sent_messages(TELEGRAM_TOKEN, 4004) if "Ответ готов." in m["text"]
            ],
            what="the answer through Telegram",
        )
        assert n4 in telegram[0]["text"]
        d4 = {d["key"]: d for d in meta.api.get(f"/appeals/{n4}").json()["deliveries"]}
        original = next(d for k, d in d4.items() if k.startswith("reply:"))
        assert original["state"] == "failed" and original["last_error_code"] == "meta.window_closed"
        assert "owed on another channel instead" in original["last_error_detail"]
        # The second is known nowhere else: visibly unreachable, never "sent".
        d5 = wait_until(
            lambda: [
                d for d in meta.api.get(f"/appeals/{n5}").json()["deliveries"] if d["state"] == "failed"
            ],
            what="the unreachable answer",
        )
        assert d5[0]["last_error_detail"].startswith("cannot reach the citizen: reply window closed")
        assert len(meta.texts("7770004")) == 1 and len(meta.texts("7770005")) == 1
        history = [e["kind"] for e in meta.api.get(f"/appeals/{n5}").json()["history"]]
        assert "delivery_failed" in history

        # A status change at 25 h (an automated notice, no HUMAN_AGENT) takes the same ways: the first
        # citizen reads it on Telegram, the second's is visibly unreachable; Messenger gets nothing more.
        for number in (n4, n5):
            changed = meta.api.post(f"/appeals/{number}/status", json={"status": "in_progress"})
            assert changed.status_code == 200, changed.text
        status = wait_until(
            lambda: [
                m
                for m in fake_telegram.sent_messages(TELEGRAM_TOKEN, 4004)
                if n4 in m["text"] and "на рассмотрении" in m["text"]
            ],
            what="the status notice through Telegram",
        )
        assert status
        unreachable = wait_until(
            lambda: [
                d
                for d in meta.api.get(f"/appeals/{n5}").json()["deliveries"]
                if d["purpose"] == "status" and d["state"] == "failed"
            ],
            what="the unreachable status notice",
        )
        assert unreachable[0]["last_error_detail"].startswith("cannot reach the citizen: reply window closed")
        assert len(meta.texts("7770004")) == 1 and len(meta.texts("7770005")) == 1
        assert all(m["tag"] is None for m in fake_graph.sent if m["kind"] == "message")


def test_whatsapp_after_24_hours_sends_templates_and_releases_the_waiting_answer_when_the_citizen_writes(
    make_settings: Any, fake_graph: FakeGraph
) -> None:
    with _service(make_settings, fake_graph) as svc:
        meta = Meta(svc, fake_graph)
        fake_graph.citizen_message(WA_ID, "77011234567", KK_TEXT, name="Айгүл")
        (ack,) = meta.sent("77011234567", 1, "the acknowledgement")
        assert ack["kind"] == "text"
        number = NUMBER.search(ack["text"]).group(0)  # type: ignore[union-attr]
        meta.backdate("whatsapp", WA_ID, "77011234567", HOURS_25)

        # A status notice goes as its approved template, in Kazakh, with the number and the status.
        assert meta.api.post(f"/appeals/{number}/status", json={"status": "in_progress"}).status_code == 200
        _, status = meta.sent("77011234567", 2, "the status template")
        assert status["kind"] == "template"
        template = status["template"]
        assert template["name"] == "adaldyk_status_changed" and template["language"] == {"code": "kk"}
        params = [p["text"] for p in template["components"][0]["parameters"]]
        assert params[0] == number and params[1] == "қаралуда"

        # A moderator's free text waits, visibly; a template tells the citizen an answer is ready.
        replied = meta.api.post(f"/appeals/{number}/reply", json={"text": "Айыппұл салынды."})
        assert replied.status_code == 200, replied.text
        _, _, ready = meta.sent("77011234567", 3, "the answer_ready template")
        assert ready["template"]["name"] == "adaldyk_answer_ready"
        detail = meta.api.get(f"/appeals/{number}").json()
        waiting = next(d for d in detail["deliveries"] if d["purpose"] == "reply")
        assert waiting["state"] == "waiting"
        assert waiting["last_error_code"] == "whatsapp.window_closed_waiting"
        assert "delivery_waiting" in [e["kind"] for e in detail["history"]]
        assert not any("Айыппұл салынды." in t for t in meta.texts("77011234567"))

        # The citizen replies: the window opens and the answer goes, as text.
        fake_graph.citizen_message(WA_ID, "77011234567", "Иә, жіберіңіз")
        answer = wait_until(
            lambda: [m for m in fake_graph.messages_to("77011234567") if "Айыппұл салынды." in m["text"]],
            what="the released answer",
        )
        assert answer[0]["kind"] == "text" and number in answer[0]["text"]
        wait_until(
            lambda: (
                next(
                    d
                    for d in meta.api.get(f"/appeals/{number}").json()["deliveries"]
                    if d["purpose"] == "reply"
                )["state"]
                == "sent"
            ),
            what="the answer recorded as sent",
        )
        assert fake_graph.errors == []


def test_whatsapp_reports_a_failure_later_and_the_sent_notice_leaves_sent(
    make_settings: Any, fake_graph: FakeGraph
) -> None:
    with _service(make_settings, fake_graph) as svc:
        meta = Meta(svc, fake_graph)
        fake_graph.fail_async_next(131026)  # accepted with a wamid, then a `failed` status webhook
        fake_graph.citizen_message(WA_ID, "77017654321", RU_TEXT)

        def ack_state() -> dict[str, Any] | None:
            listing = meta.api.get("/appeals").json()["items"]
            if not listing:
                return None
            deliveries = meta.api.get(f"/appeals/{listing[0]['number']}").json()["deliveries"]
            ack = next((d for d in deliveries if d["purpose"] == "ack"), None)
            return ack if ack and ack["state"] == "failed" else None

        ack = wait_until(ack_state, what="the acknowledgement failed by the statuses webhook")
        assert ack is not None
        assert "131026" in (ack["last_error_code"] or "") + (ack["last_error_detail"] or "")
        assert fake_graph.messages_to("77017654321") == []  # the fake never delivered it
        # Owed nowhere else: the undelivered notice is a task for staff, in the receipt's transaction.
        with Session(svc.runtime.engine) as s:
            row = s.exec(select(OutboxItem).where(OutboxItem.key == ack["key"])).one()
            task = s.exec(select(StaffTask).where(StaffTask.key == f"undelivered:{row.id}")).first()
        assert task is not None and task.kind == "undelivered_notice" and task.text == row.text
