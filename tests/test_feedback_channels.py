"""A "no" from the citizen in each channel, end to end over loopback: the citizen writes to the fake
platform, the head approves the answer through the JSON API (four eyes), the answer and the "was it
solved?" question reach the fake with the channel's own buttons (Telegram inline keyboard, VK keyboard,
Messenger / Instagram quick replies, WhatsApp reply buttons, each checked by the fake as the real API
checks it), the citizen presses "no", and the appeal is reopened, back with its unit and escalated."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal, StaffNotice
from connectors.meta.fake import FakeGraph
from connectors.telegram.fake import FakeTelegramServer
from connectors.vk.fake import FakeVK
from tests.answers_support import Org, make_formal, seed_org
from tests.conftest import TOKEN
from tests.connectors.meta import (
    APP_SECRET,
    IG_ID,
    IG_TOKEN,
    PAGE_ID,
    PAGE_TOKEN,
    WA_ID,
    WA_TOKEN,
    meta_settings,
)
from tests.connectors.vk import GROUP_ID, vk_settings, wait_for_long_poll
from tests.connectors.vk import TOKEN as VK_TOKEN
from tests.support import ServiceThread, create_api_token, free_port, wait_until

NUMBER = re.compile(r"ADL-\d{4}-\d{6}")
RU_TEXT = "Здравствуйте! Завод сбрасывает отходы в реку Нура возле посёлка, прошу принять меры."
CITIZEN = 880011


@dataclass
class Channel:
    """How one channel's fake is driven: what the citizen sends, what we sent them, a button press."""

    name: str
    svc: ServiceThread
    write: Callable[[str], object]
    sent: Callable[[], list[dict[str, Any]]]
    buttons: Callable[[dict[str, Any]], list[tuple[str, str]]]  # (id, label) the platform shows
    press: Callable[[str], object]
    # The platform's own follow-up to a press was made (Telegram: answerCallbackQuery).
    press_answered: Callable[[], bool] = lambda: True


@contextmanager
def telegram(make_settings: Any, fake: FakeTelegramServer) -> Iterator[Channel]:
    settings = make_settings(
        telegram_token=TOKEN, telegram_api_url=fake.url, telegram_poll_timeout=1, port=free_port(),
        dispatch_interval_seconds=0.1,
    )  # fmt: skip
    with ServiceThread(settings) as svc:
        yield Channel(
            "telegram",
            svc,
            write=lambda text: fake.citizen_message(TOKEN, chat_id=CITIZEN, text=text, language_code="ru"),
            sent=lambda: fake.sent_messages(TOKEN, CITIZEN),
            buttons=lambda m: [
                (b["callback_data"], b["text"])
                for row in (m.get("reply_markup") or {}).get("inline_keyboard", [])
                for b in row
            ],
            press=lambda choice: fake.press_button(TOKEN, chat_id=CITIZEN, callback_data=choice),
            press_answered=lambda: len(fake.callback_answers) == 1,
        )


@contextmanager
def vk(make_settings: Any) -> Iterator[Channel]:
    fake = FakeVK()
    fake.start()
    fake.add_group(GROUP_ID, VK_TOKEN)
    try:
        with ServiceThread(vk_settings(make_settings, fake, port=free_port())) as svc:
            wait_for_long_poll(svc)
            import json

            yield Channel(
                "vk",
                svc,
                write=lambda text: fake.citizen_message(CITIZEN, text),
                sent=lambda: fake.sent_messages(CITIZEN),
                buttons=lambda m: [
                    (json.loads(b["action"]["payload"])["choice"], b["action"]["label"])
                    for row in (m.get("keyboard") or {}).get("buttons", [])
                    for b in row
                ],
                press=lambda choice: fake.press_button(CITIZEN, choice),
            )
    finally:
        fake.stop()


@contextmanager
def meta(make_settings: Any, channel: str) -> Iterator[Channel]:
    fake = FakeGraph(app_secret=APP_SECRET)
    fake.start()
    fake.add_page(PAGE_ID, PAGE_TOKEN)
    fake.add_instagram(IG_ID, IG_TOKEN)
    fake.add_whatsapp(WA_ID, WA_TOKEN)
    account = {"facebook": PAGE_ID, "instagram": IG_ID, "whatsapp": WA_ID}[channel]
    user = str(CITIZEN)

    def buttons(m: dict[str, Any]) -> list[tuple[str, str]]:
        if m.get("interactive"):
            return [(b["reply"]["id"], b["reply"]["title"]) for b in m["interactive"]["action"]["buttons"]]
        return [(q["payload"], q["title"]) for q in m.get("quick_replies") or []]

    try:
        with ServiceThread(meta_settings(make_settings, fake, port=free_port())) as svc:  # type: ignore[arg-type]
            fake.webhook_url = f"{svc.url}/webhooks/meta"
            yield Channel(
                channel,
                svc,
                write=lambda text: fake.citizen_message(account, user, text, name="Айгүл"),
                sent=lambda: fake.messages_to(user),
                buttons=buttons,
                press=lambda choice: fake.tap_choice(account, user, choice),
            )
    finally:
        fake.stop()


@pytest.fixture(params=["telegram", "vk", "facebook", "instagram", "whatsapp"])
def channel(
    request: pytest.FixtureRequest, make_settings: Any, fake_telegram: FakeTelegramServer
) -> Iterator[Channel]:
    name = request.param
    if name == "telegram":
        with telegram(make_settings, fake_telegram) as c:
            yield c
    elif name == "vk":
        with vk(make_settings) as c:
            yield c
    else:
        with meta(make_settings, name) as c:
            yield c


def _api(svc: ServiceThread, username: str) -> httpx.Client:
    token = create_api_token(svc.settings, username, username=username)
    return httpx.Client(
        base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


def _appeal(svc: ServiceThread, number: str) -> Appeal:
    with Session(svc.runtime.engine) as s:
        return s.exec(select(Appeal).where(Appeal.number == number)).one()


def test_a_no_in_each_channel_reopens_and_escalates(channel: Channel) -> None:
    svc = channel.svc
    channel.write(RU_TEXT)
    ack = wait_until(channel.sent, what=f"the {channel.name} acknowledgement")[0]
    number = NUMBER.search(ack["text"]).group(0)  # type: ignore[union-attr]
    org: Org = seed_org(svc.runtime.engine)
    make_formal(svc.runtime.engine, _appeal(svc, number).id, org.department)

    officer, head, committee = _api(svc, "t_officer"), _api(svc, "t_dhead"), _api(svc, "t_chead")
    drafted = officer.post(f"/appeals/{number}/reply", json={"text": "Проверка проведена, наложен штраф."})
    assert drafted.status_code == 200, drafted.text
    assert drafted.json()["event"]["kind"] == "answer_draft"
    assert [a["number"] for a in head.get("/approvals").json()] == [number]
    # Not the head of the appeal's unit (the committee's head sees the appeal, but does not approve it).
    assert committee.post(f"/appeals/{number}/answer/approve").status_code == 403
    assert len(channel.sent()) == 1  # nothing left while the answer waits
    approved = head.post(f"/appeals/{number}/answer/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["appeal"]["status"] == "answered"

    sent = wait_until(lambda: channel.sent()[2:], what=f"the {channel.name} answer and question")
    answer, question = channel.sent()[1], sent[0]
    assert "Проверка проведена, наложен штраф." in answer["text"]
    appeal_id = _appeal(svc, number).id
    assert channel.buttons(question) == [
        (f"feedback:{appeal_id}:yes", "Да, решена"),
        (f"feedback:{appeal_id}:no", "Нет, не решена"),
    ]
    channel.press(f"feedback:{appeal_id}:no")

    reopened = wait_until(
        lambda: (a := _appeal(svc, number)).status == "reopened" and a, what="the reopening"
    )
    assert reopened.resolved is False and reopened.unit_id == org.department
    wait_until(channel.press_answered, what="the platform's answer to the press")
    with Session(svc.runtime.engine) as s:
        escalated = {
            (n.unit_id, n.user_id)
            for n in s.exec(select(StaffNotice).where(StaffNotice.kind == "escalation"))
        }
        returned = s.exec(select(StaffNotice).where(StaffNotice.kind == "reopened")).one()
    assert escalated == {(org.committee, org.committee_head), (org.office, org.office_head)}
    assert returned.user_id == org.department_head
    stats = head.get("/units/stats").json()
    assert {
        "unit": "t_department",
        "name": "Департамент",
        "rated": 1,
        "solved": 0,
        "share_solved": 0.0,
    } in stats
