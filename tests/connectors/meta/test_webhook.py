"""/webhooks/meta on the shared pipeline: handshake, X-Hub-Signature-256 over the raw bytes, batches,
redeliveries, WhatsApp receipts — through the real service over loopback HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    Message,
    MessageVersion,
    OutboxItem,
    RawEvent,
)
from tests.connectors.meta.conftest import (
    APP_SECRET,
    IG_APP_SECRET,
    PAGE,
    VERIFY_TOKEN,
    WA_NUMBER,
    messaging_item,
    sign_body,
)
from tests.support import wait_processed, wait_until

FIXTURES = Path(__file__).parent / "fixtures"


def _post(svc: Any, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {
        "Content-Type": "application/json",
        **(headers if headers is not None else sign_body(body, APP_SECRET)),
    }
    return httpx.post(f"{svc.url}/webhooks/meta", content=body, headers=sent, timeout=30)


def _count(engine: Any, model: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _escaped(name: str) -> bytes:
    """A fixture as Meta sends it: escaped unicode (json.dumps' default ensure_ascii=True)."""
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    return json.dumps(doc).encode("ascii")


def webhook_body(items: list[dict[str, Any]], *, per_entry: int) -> bytes:
    """Messenger items batched `per_entry` to an entry, escaped unicode, as Meta delivers them."""
    entries = [
        {"id": PAGE, "time": 1795760000000, "messaging": items[at : at + per_entry]}
        for at in range(0, len(items), per_entry)
    ]
    return json.dumps({"object": "page", "entry": entries}).encode("ascii")


def test_handshake_answers_the_challenge_only_to_our_verify_token(meta_service: Any) -> None:
    url = f"{meta_service.url}/webhooks/meta"
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = httpx.get(url, params=good)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert answer.headers["content-type"].startswith("text/plain")
    assert httpx.get(url, params={**good, "hub.verify_token": "guess"}).status_code == 403
    assert httpx.get(url, params={**good, "hub.mode": "unsubscribe"}).status_code == 403
    assert httpx.get(url).status_code == 403


def test_an_escaped_unicode_body_signed_by_meta_passes_and_its_reserialization_does_not(
    meta_service: Any,
) -> None:
    body = _escaped("messenger_text")
    assert b"\\u0421" in body  # "С" of "Сәлеметсіз" escaped, as Meta sends it
    headers = sign_body(body, APP_SECRET)
    # The same JSON re-serialized (UTF-8 Cyrillic) under the signature of the bytes Meta signed: refused.
    reserialized = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert _post(meta_service, reserialized, headers).status_code == 403
    assert _count(meta_service.runtime.engine, RawEvent) == 0
    assert _post(meta_service, body, headers).status_code == 200
    engine = meta_service.runtime.engine
    wait_processed(engine)
    with Session(engine) as s:
        [message] = s.exec(select(Message)).all()
    assert message.text == "Сәлеметсіз бе! Жолды қашан жөндейсіздер?"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature
        {"X-Hub-Signature": "SHA1"},  # SHA-1 alone (filled in below)
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},  # wrong
        {"X-Hub-Signature-256": "SIGNED-WITH-ANOTHER-SECRET"},
    ],
)
def test_missing_sha1_only_and_wrong_signatures_are_refused_and_nothing_is_stored(
    meta_service: Any, headers: dict[str, str]
) -> None:
    body = _escaped("whatsapp_text")
    if headers.get("X-Hub-Signature") == "SHA1":
        headers = {"X-Hub-Signature": sign_body(body, APP_SECRET)["X-Hub-Signature"]}
    if headers.get("X-Hub-Signature-256") == "SIGNED-WITH-ANOTHER-SECRET":
        headers = {"X-Hub-Signature-256": sign_body(body, "not-our-secret")["X-Hub-Signature-256"]}
    assert _post(meta_service, body, headers).status_code == 403
    assert _count(meta_service.runtime.engine, RawEvent) == 0


def test_instagram_bodies_accept_the_instagram_app_secret_and_others_do_not(meta_service: Any) -> None:
    ig = _escaped("instagram_dm")
    assert _post(meta_service, ig, sign_body(ig, IG_APP_SECRET)).status_code == 200
    page = _escaped("messenger_image")
    assert _post(meta_service, page, sign_body(page, IG_APP_SECRET)).status_code == 403
    rows = _count(meta_service.runtime.engine, RawEvent)
    assert rows == 1


def test_every_fixture_is_accepted_and_none_is_quarantined(meta_service: Any) -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        assert _post(meta_service, _escaped(path.stem)).status_code == 200, path.name
    engine = meta_service.runtime.engine
    wait_processed(engine)
    with Session(engine) as s:
        states = {(r.channel, r.dedup_key): (r.state, r.reason) for r in s.exec(select(RawEvent))}
    assert not [k for k, (state, _) in states.items() if state == "quarantined"], states
    # The comment's three versions are one message, marked deleted, its words kept.
    with Session(engine) as s:
        comment = s.exec(select(Message).where(Message.external_key == "555000111222333_9876543210")).one()
        assert comment.text == "Аулада жарық жоқ, үш күн болды" and comment.deleted_at is not None
        kinds = [
            e.kind for e in s.exec(select(AppealEvent).where(AppealEvent.appeal_id == comment.appeal_id))
        ]
    assert "edited" in kinds and "deleted" in kinds
    # The Instagram DM, edited (message_edit) then unsent (is_deleted): one message, the edit a version,
    # the original words kept, marked deleted.
    with Session(engine) as s:
        dm = s.exec(
            select(Message).where(
                Message.external_key == "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAx"
            )
        ).one()
        versions = [v.text for v in s.exec(select(MessageVersion).where(MessageVersion.message_id == dm.id))]
    assert dm.text == "Здравствуйте, когда откроют поликлинику?" and dm.deleted_at is not None
    assert "Здравствуйте, когда откроют поликлинику на Абая?" in versions
    # Reactions and echoes are stored, ignored, never appeals; the citizens' messages are.
    ignored = {reason for state, reason in states.values() if state == "ignored"}
    for kind in ("meta.reaction", "meta.whatsapp_reaction", "meta.echo"):
        assert kind in ignored, ignored
    texts = {m.text for m in _inbound(engine)}
    assert "Қоқыс полигоны туралы шағым" in texts  # the standby item


def _inbound(engine: Any) -> list[Message]:
    with Session(engine) as s:
        return list(s.exec(select(Message).where(Message.direction == "in")))


def test_a_batch_of_1000_delivered_three_times_out_of_order_is_stored_once(meta_service: Any) -> None:
    senders = [f"77000000{i:04d}" for i in range(50)]
    items = [
        messaging_item(senders[i % 50], PAGE, f"m_batch_{i}", f"Өтініш нөмірі {i}", 1795760000000 + i)
        for i in range(1000)
    ]
    rng = random.Random(8)
    for attempt in range(3):
        order = items[:]
        if attempt:
            rng.shuffle(order)
        body = webhook_body(order, per_entry=(1, 10, 1000)[attempt])
        assert _post(meta_service, body).status_code == 200
    engine = meta_service.runtime.engine
    assert _count(engine, RawEvent) == 1000
    wait_processed(engine, timeout=120)
    assert _count(engine, Message) == 1000
    assert _count(engine, Appeal) == 50


def test_a_whatsapp_failed_status_turns_a_sent_notice_failed_visibly(
    meta_service: Any, fake_meta: Any
) -> None:
    # Written just now, through the fake (it knows the citizen): the acknowledgement goes as free text,
    # inside the 24-hour window.
    text = fake_meta.citizen_message(WA_NUMBER, "16315551181", "Сәлем! Субсидия туралы", deliver=False)
    assert _post(meta_service, json.dumps(text).encode()).status_code == 200
    engine = meta_service.runtime.engine

    def sent_ack() -> OutboxItem | None:
        with Session(engine) as s:
            return s.exec(select(OutboxItem).where(OutboxItem.state == "sent")).first()

    ack = wait_until(sent_ack, what="the acknowledgement to be sent")
    [wamid] = ack.platform_message_ids
    status = json.loads((FIXTURES / "whatsapp_status_failed.json").read_text())
    status["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = wamid
    body = json.dumps(status).encode()
    for _ in range(2):  # Meta redelivers: applied once
        assert _post(meta_service, body).status_code == 200
    wait_processed(engine)
    with Session(engine) as s:
        row = s.get(OutboxItem, ack.id)
        assert row is not None
        assert (row.state, row.last_error_code) == ("failed", "meta.window_closed")
        assert row.last_error_detail and "reply window closed" in row.last_error_detail
        events = s.exec(
            select(AppealEvent).where(
                AppealEvent.appeal_id == row.appeal_id, AppealEvent.kind == "delivery_failed"
            )
        ).all()
    assert len(events) == 1 and events[0].detail["platform_message_id"] == wamid
    assert WA_NUMBER in {r.account for r in [row]}
