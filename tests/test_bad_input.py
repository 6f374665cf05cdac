"""Bad input through the real webhooks, on the real database: kept (quarantined) or refused, never 500.

The cases measured by hand in issue 6: a 5000-digit update_id or chat.id, a 100,000-deep VK body, a
5000-digit VK integer, a NUL in a citizen's text (quarantined on PostgreSQL before), bodies of any
size (no limit before).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal, ChannelIdentity, Contact, Message, RawEvent
from adaldyk_bots.storage.types import REPLACEMENT
from connectors.vk.fake import FakeVK
from tests.conftest import TOKEN
from tests.support import ServiceThread, free_port, wait_processed

TG_SECRET = "webhook-secret_0123456789"
VK_SECRET = "callback-secret_0123456789"
VK_GROUP = 227_000_001
VK_TOKEN = "vk1.a.fake-community-token-for-tests-only_0123456789"
LIMIT = 256 * 1024  # above the 200 KB of a 100,000-deep body


def _update(update_id: int, text: str, *, chat: int = 3001, **extra: Any) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": chat, "is_bot": False, "first_name": "Дана"},
            "chat": {"id": chat, "type": "private"},
            "date": 1795760000,
            "text": text,
            **extra,
        },
    }


def _named(update: dict[str, Any], first_name: str, username: str) -> dict[str, Any]:
    update["message"]["from"].update(first_name=first_name, username=username)
    return update


def _captioned(update: dict[str, Any]) -> dict[str, Any]:
    del update["message"]["text"]
    return update


@pytest.fixture
def fake_vk() -> Iterator[FakeVK]:
    server = FakeVK()
    server.start()
    server.add_group(VK_GROUP, VK_TOKEN)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def svc(make_settings: Any, fake_telegram: Any, fake_vk: FakeVK) -> Iterator[ServiceThread]:
    port = free_port()
    settings = make_settings(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_mode="webhook",
        telegram_webhook_secret=TG_SECRET,
        vk_token=VK_TOKEN,
        vk_group_id=VK_GROUP,
        vk_api_url=fake_vk.url,
        vk_mode="callback",
        vk_secret=VK_SECRET,
        vk_confirmation="5d7a1f3c",
        max_body_bytes=LIMIT,
        dispatch_interval_seconds=0.1,
    )
    with ServiceThread(settings) as service:
        yield service


def _telegram(svc: ServiceThread, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{svc.url}/webhooks/telegram",
        content=body,
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, **headers},
        timeout=30,
    )


def _vk(svc: ServiceThread, body: bytes) -> httpx.Response:
    return httpx.post(f"{svc.url}/webhooks/vk", content=body, timeout=30)


def _raw(svc: ServiceThread) -> list[RawEvent]:
    with Session(svc.runtime.engine) as s:
        return list(s.exec(select(RawEvent).order_by(RawEvent.id)))  # type: ignore[arg-type]


def test_hostile_telegram_bodies_are_kept_in_quarantine(svc: ServiceThread) -> None:
    bodies = [
        b'{"update_id": ' + b"7" * 5000 + b', "message": {}}',
        json.dumps(_update(11, "x"))
        .replace('"id": 3001, "type"', '"id": ' + "9" * 5000 + ', "type"')
        .encode(),
        b'{"update_id": 12, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        json.dumps(_update(2**64, "x")).encode(),
        b'{"update_id": 13, "message": {"x": NaN}}',
    ]
    for body in bodies:
        answer = _telegram(svc, body)
        assert answer.status_code == 200, answer.text
    rows = _raw(svc)
    assert [r.payload for r in rows] == bodies  # the exact bytes, every one
    assert {r.state for r in rows} == {"quarantined"}
    assert all(r.reason for r in rows)


def test_hostile_vk_bodies_with_the_secret_are_kept_without_it_refused(svc: ServiceThread) -> None:
    secret = json.dumps(VK_SECRET).encode()
    deep = (
        b'{"secret": '
        + secret
        + b', "type": "message_new", "object": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    huge = b'{"secret": ' + secret + b', "type": "message_new", "group_id": ' + b"1" * 5000 + b"}"
    for body in (deep, huge):
        answer = _vk(svc, body)
        assert (answer.status_code, answer.text) == (200, "ok")

    refused = [
        b'{"type": "message_new", "object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # no secret to read
        b'{"type": "message_new", "group_id": ' + b"1" * 5000 + b"}",
        b'{"type": "message_new", "secret": "\\ud800"}',  # a lone surrogate, once a 500
        b'{"type": "confirmation", "group_id": ' + b"[" * 500 + b"]" * 500 + b"}",
        b'{"type": "confirmation", "group_id": ' + b"1" * 4000 + b"}",
        b"\xff\xfe",
    ]
    for body in refused:
        assert _vk(svc, body).status_code == 403, body[:60]
    rows = _raw(svc)
    assert [r.payload for r in rows] == [deep, huge]
    assert [r.reason for r in rows] == [
        "vk.invalid_json: nesting too deep",
        "vk.invalid_json: integer longer than 4300 digits",
    ]


def test_nul_and_lone_surrogates_in_a_citizens_text_still_open_an_appeal(svc: ServiceThread) -> None:
    document = {"file_id": "F1", "file_unique_id": "U1", "file_name": "акт\u0000.pdf"}
    bodies = [
        json.dumps(
            _named(_update(21, "Өзен\u0000 ластанған", chat=4001), "Да\u0000на", "dana\udc00")
        ).encode(),
        json.dumps(_update(22, "Жалоба \ud83d на завод", chat=4002)).encode(),  # a lone high surrogate
        json.dumps(_captioned(_update(23, "", chat=4003, caption="скан\u0000", document=document))).encode(),
    ]
    for body in bodies:
        assert _telegram(svc, body).status_code == 200
    wait_processed(svc.runtime.engine)
    rows = _raw(svc)
    assert [r.payload for r in rows] == bodies  # the raw bytes keep the NUL and the surrogate
    assert [r.state for r in rows] == ["processed"] * 3, [r.reason for r in rows]
    with Session(svc.runtime.engine) as s:
        texts = [
            m.text for m in s.exec(select(Message).where(Message.direction == "in").order_by(Message.id))
        ]  # type: ignore[arg-type]
        attachments = s.exec(select(Message).where(Message.external_key == "23")).one().attachments
        appeals = len(s.exec(select(Appeal)).all())
        names = {c.display_name for c in s.exec(select(Contact))}
        usernames = {i.username for i in s.exec(select(ChannelIdentity))}
    assert texts == [f"Өзен{REPLACEMENT} ластанған", f"Жалоба {REPLACEMENT} на завод", f"скан{REPLACEMENT}"]
    assert attachments[0]["name"] == f"акт{REPLACEMENT}.pdf"
    assert appeals == 3
    assert f"Да{REPLACEMENT}на" in names and f"dana{REPLACEMENT}" in usernames  # VARCHAR columns too


def test_oversized_bodies_get_413_before_they_are_read(svc: ServiceThread) -> None:
    big = json.dumps(_update(31, "ы" * LIMIT)).encode()
    assert len(big) > LIMIT
    declared = _telegram(svc, big)
    assert declared.status_code == 413
    assert declared.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer, counted as it arrives
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = httpx.post(
        f"{svc.url}/webhooks/telegram",
        content=chunks(),
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
        timeout=30,
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "too_large"
    assert (
        _vk(svc, b'{"secret": "' + VK_SECRET.encode() + b'", "x": "' + b"a" * LIMIT + b'"}').status_code
        == 413
    )

    assert _raw(svc) == []  # nothing of them was stored
    fits = json.dumps(_update(32, "ы" * 1000)).encode()
    assert _telegram(svc, fits).status_code == 200
    assert [r.payload for r in _raw(svc)] == [fits]
