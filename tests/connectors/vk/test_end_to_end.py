"""End to end over loopback, in both modes: citizens write to the fake VK, the real service answers them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal, OutboxItem
from connectors.vk.fake import FakeVK
from tests.connectors.vk import CONFIRMATION, SECRET, vk_settings, wait_for_long_poll
from tests.support import ServiceThread, assert_signal_ack, create_api_token, free_port, wait_until

NUMBER = re.compile(r"ADL-\d{4}-\d{6}")
KK_TEXT = "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр."
RU_TEXT = "Здравствуйте! Рядом с нашим домом незаконная свалка мусора, прошу принять меры."


def _texts(fake: FakeVK, peer_id: int) -> list[str]:
    return [m["text"] for m in fake.sent_messages(peer_id)]


def _service(make_settings: Any, fake: FakeVK, mode: str) -> ServiceThread:
    extra: dict[str, Any] = {"port": free_port()}
    if mode == "callback":
        extra.update(vk_mode="callback", vk_secret=SECRET, vk_confirmation=CONFIRMATION)
    return ServiceThread(vk_settings(make_settings, fake, **extra))


def _connect_callback(fake: FakeVK, svc: ServiceThread) -> None:
    # What the community admin does in "Manage community > API usage": address, secret, "Confirm".
    fake.callback_retry_delay = 0.05
    fake.set_callback_server(f"{svc.url}/webhooks/vk", secret=SECRET, confirmation=CONFIRMATION)
    assert fake.confirm_callback_server() == (200, CONFIRMATION)


@pytest.mark.parametrize("mode", ["longpoll", "callback"])
def test_appeal_acknowledgement_reply_status_and_edit_reach_the_citizen(
    mode: str, make_settings: Any, fake_vk: FakeVK
) -> None:
    with _service(make_settings, fake_vk, mode) as svc:
        if mode == "callback":
            _connect_callback(fake_vk, svc)
        else:
            wait_for_long_poll(svc)
        token = create_api_token(svc.settings)
        fake_vk.citizen_message(8001, KK_TEXT, lang_id=97)
        first = fake_vk.citizen_message(8002, RU_TEXT, lang_id=0)

        kk_ack = wait_until(lambda: _texts(fake_vk, 8001), what="the Kazakh acknowledgement")[0]
        ru_ack = wait_until(lambda: _texts(fake_vk, 8002), what="the Russian acknowledgement")[0]
        kk_number, ru_number = NUMBER.search(kk_ack).group(0), NUMBER.search(ru_ack).group(0)
        assert_signal_ack(kk_ack, "kk", number=kk_number)  # a signal: received, not registered
        assert_signal_ack(ru_ack, "ru", number=ru_number)
        with Session(svc.runtime.engine) as s:
            appeals = {a.number: a for a in s.exec(select(Appeal))}
        assert appeals[kk_number].language == "kk" and appeals[ru_number].language == "ru"
        assert {a.channel for a in appeals.values()} == {"vk"}

        api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
        changed = api.post(f"/appeals/{ru_number}/status", json={"status": "in_progress"})
        assert changed.status_code == 200, changed.text
        wait_until(lambda: len(_texts(fake_vk, 8002)) >= 2, what="the status message")
        assert "на рассмотрении" in _texts(fake_vk, 8002)[1]

        replied = api.post(
            f"/appeals/{kk_number}/reply",
            json={"text": "Инспекторлар тексеру жүргізді, айыппұл салынды.", "status": "answered"},
        )
        assert replied.status_code == 200, replied.text
        wait_until(lambda: len(_texts(fake_vk, 8001)) >= 3, what="the reply and the status message")
        kk_texts = _texts(fake_vk, 8001)
        assert any("Инспекторлар тексеру жүргізді" in t and kk_number in t for t in kk_texts)
        assert any("жауап берілді" in t for t in kk_texts)

        # An edit is a new version; the original words stay.
        cmid = first["object"]["message"]["conversation_message_id"]
        fake_vk.citizen_edit(8002, cmid, RU_TEXT + " Адрес: ул. Абая, 10.")

        def versions() -> list[Any]:
            detail = api.get(f"/appeals/{ru_number}").json()
            return [v for m in detail["messages"] for v in m["versions"]]

        wait_until(versions, what="the edit stored as a version")
        detail = api.get(f"/appeals/{ru_number}").json()
        inbound = [m for m in detail["messages"] if m["direction"] == "in"]
        assert [m["text"] for m in inbound] == [RU_TEXT]
        assert inbound[0]["versions"][0]["text"].endswith("ул. Абая, 10.")
        assert "edited" in [e["kind"] for e in detail["history"]]

        # Every send carried a distinct random_id and the fake never had to drop a repeat.
        assert len({m["random_id"] for m in fake_vk.sent_messages()}) == len(fake_vk.sent_messages())
        assert fake_vk.violations == []


def test_wall_comment_901_fails_visibly_then_invites_publicly_then_acknowledges_privately(
    make_settings: Any, fake_vk: FakeVK
) -> None:
    with _service(make_settings, fake_vk, "longpoll") as svc:
        wait_for_long_poll(svc)
        token = create_api_token(svc.settings)
        comment = fake_vk.citizen_wall_comment(
            8101, "Сәлеметсіз бе! Өзен жағасында қоқыс үйіліп жатыр.", post_id=12
        )

        invites = wait_until(
            lambda: fake_vk.wall_comments(12, by_community=True), what="the public invitation"
        )
        (invite,) = invites
        assert invite["reply_to_comment"] == comment["object"]["id"]
        assert invite["text"].startswith("Сәлеметсіз бе! Пікіріңізге рахмет.")
        assert not NUMBER.search(invite["text"])  # a public place: no appeal number, nothing personal

        api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
        (appeal,) = api.get("/appeals").json()["items"]
        detail = api.get(f"/appeals/{appeal['number']}").json()
        deliveries = {d["purpose"]: d for d in detail["deliveries"]}
        assert deliveries["ack"]["state"] == "failed"
        assert deliveries["ack"]["last_error_code"] == "vk.901"
        assert "not allowed the community to write" in deliveries["ack"]["last_error_detail"]
        assert deliveries["invite"]["state"] == "sent"
        (failure,) = [e for e in detail["history"] if e["kind"] == "delivery_failed"]
        assert (
            failure["detail"]["code"] == "vk.901"
            and failure["detail"]["fallback"] == deliveries["invite"]["key"]
        )
        assert _texts(fake_vk, 8101) == []

        # The citizen follows the invitation: the private message joins the appeal and is acknowledged.
        fake_vk.citizen_message(8101, "Жеке жазып отырмын, суреттерін жіберемін.", lang_id=97)
        ack = wait_until(lambda: _texts(fake_vk, 8101), what="the acknowledgement in the dialog")[0]
        assert_signal_ack(ack, "kk", number=appeal["number"])
        assert len(api.get("/appeals").json()["items"]) == 1
        # The failure stays on record; only one invitation was ever posted.
        with Session(svc.runtime.engine) as s:
            states = {o.key: o.state for o in s.exec(select(OutboxItem))}
        assert list(states.values()).count("failed") == 1
        assert len(fake_vk.wall_comments(12, by_community=True)) == 1
        health = httpx.get(f"{svc.url}/healthz").json()
        assert health["database"]["failed_sends"] == 1


def test_citizen_who_blocked_the_community_gets_no_public_invitation(
    make_settings: Any, fake_vk: FakeVK
) -> None:
    with _service(make_settings, fake_vk, "longpoll") as svc:
        wait_for_long_poll(svc)
        fake_vk.block_community(8201)  # error 900: the citizen said no; a public call to write would be pushy
        fake_vk.citizen_wall_comment(8201, "Жалоба под постом: вырубка в парке", post_id=13)

        def failed() -> list[OutboxItem]:
            with Session(svc.runtime.engine) as s:
                return list(s.exec(select(OutboxItem).where(OutboxItem.state == "failed")))

        (row,) = wait_until(failed, what="the failed acknowledgement")
        assert row.last_error_code == "vk.900" and "blocked" in (row.last_error_detail or "")
        with Session(svc.runtime.engine) as s:
            assert s.exec(select(OutboxItem).where(OutboxItem.purpose == "invite")).first() is None
        assert fake_vk.wall_comments(13, by_community=True) == []
