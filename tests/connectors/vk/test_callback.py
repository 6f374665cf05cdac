"""Callback API mode: confirmation, the secret in the body, "ok" only after commit, repeats, broken bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select

from adaldyk_bots.storage.models import Appeal, Message, OutboxItem, RawEvent
from connectors.vk.fake import FakeVK
from tests.connectors.vk import CONFIRMATION, GROUP_ID, SECRET, vk_settings
from tests.support import ServiceThread, free_port, wait_processed, wait_until

FIXTURE = Path(__file__).parent / "fixtures" / "message_new_private_cyrillic.json"


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["event"]
    event["group_id"] = GROUP_ID
    event["secret"] = SECRET
    event.update(changes)
    return event


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


@pytest.fixture
def svc(make_settings: Any, fake_vk: FakeVK) -> Any:
    settings = vk_settings(
        make_settings,
        fake_vk,
        vk_mode="callback",
        vk_secret=SECRET,
        vk_confirmation=CONFIRMATION,
        port=free_port(),
    )
    with ServiceThread(settings) as service:
        yield service


def test_confirmation_answers_the_configured_string_for_our_community_only(svc: Any) -> None:
    url = f"{svc.url}/webhooks/vk"
    for body in (
        {"type": "confirmation", "group_id": GROUP_ID, "secret": SECRET},
        {"type": "confirmation", "group_id": GROUP_ID},  # some setups report it without the secret
    ):
        answer = httpx.post(url, json=body)
        assert (answer.status_code, answer.text) == (200, CONFIRMATION)
    assert (
        httpx.post(url, json={"type": "confirmation", "group_id": GROUP_ID, "secret": "nope"}).status_code
        == 403
    )
    assert httpx.post(url, json={"type": "confirmation", "group_id": 1, "secret": SECRET}).status_code == 403


def test_the_same_callback_three_times_is_one_message(svc: Any, fake_vk: FakeVK) -> None:
    event = _event()
    user = event["object"]["message"]["from_id"]
    fake_vk.set_messages_allowed(user, True)  # the citizen wrote to the community (outside the fake)
    body = json.dumps(event, ensure_ascii=False).encode()
    for _ in range(3):
        answer = httpx.post(
            f"{svc.url}/webhooks/vk", content=body, headers={"Content-Type": "application/json"}
        )
        assert (answer.status_code, answer.text) == (200, "ok")
    engine = svc.runtime.engine
    wait_processed(engine)
    assert _count(engine, RawEvent) == 1
    assert _count(engine, Message, Message.direction == "in") == 1
    assert _count(engine, Appeal) == 1
    assert _count(engine, OutboxItem, OutboxItem.purpose == "ack") == 1
    wait_until(lambda: fake_vk.sent_messages(user), what="the acknowledgement")
    assert len(fake_vk.sent_messages(user)) == 1


def test_the_same_message_under_a_new_event_id_is_still_one_message(svc: Any) -> None:
    # A re-sent event may carry a new event_id; the (dialog, conversation_message_id) key still holds.
    for event_id in ("a" * 40, "b" * 40):
        assert httpx.post(f"{svc.url}/webhooks/vk", json=_event(event_id=event_id)).text == "ok"
    wait_processed(svc.runtime.engine)
    assert _count(svc.runtime.engine, RawEvent) == 2
    assert _count(svc.runtime.engine, Message, Message.direction == "in") == 1


def test_forged_or_missing_secret_is_refused_and_nothing_is_stored(svc: Any) -> None:
    url = f"{svc.url}/webhooks/vk"
    for secret in (None, "", "wrong", SECRET + "x", 12345):
        event = _event()
        if secret is None:
            del event["secret"]
        else:
            event["secret"] = secret
        assert httpx.post(url, json=event).status_code == 403
    assert httpx.post(url, content=b'{"type": "message_new", "obj').status_code == 403  # no secret in it
    assert _count(svc.runtime.engine, RawEvent) == 0


def test_an_authentic_body_that_cannot_be_read_is_kept_as_quarantined(svc: Any) -> None:
    # The secret is found in the bytes even though the JSON is cut: authentic, so stored and "ok".
    body = json.dumps({"secret": SECRET, **_event()}, ensure_ascii=False).encode()[:-30]
    answer = httpx.post(f"{svc.url}/webhooks/vk", content=body)
    assert (answer.status_code, answer.text) == (200, "ok")
    with Session(svc.runtime.engine) as s:
        raw = s.exec(select(RawEvent)).one()
    assert raw.state == "quarantined" and raw.reason.startswith("vk.invalid_json") and raw.payload == body
    assert httpx.get(f"{svc.url}/healthz").json()["database"]["quarantined_events"] == 1


def test_no_ok_before_the_commit(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def database_down(**_kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(svc.runtime.intake, "store", database_down)
    answer = httpx.post(f"{svc.url}/webhooks/vk", json=_event())
    assert answer.status_code == 503 and answer.text != "ok"  # VK will deliver it again
