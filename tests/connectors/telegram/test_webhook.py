"""Webhook mode: the fake Telegram delivers over HTTP; forged, repeated and malformed deliveries."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
from sqlmodel import Session, func, select

from adaldyk_bots.storage.models import Appeal, Message, OutboxItem, RawEvent
from tests.conftest import TOKEN
from tests.support import ServiceThread, assert_signal_ack, free_port, wait_processed, wait_until

SECRET = "webhook-secret_0123456789"
UPDATE = {
    "update_id": 700001,
    "message": {
        "message_id": 5,
        "from": {"id": 3001, "is_bot": False, "first_name": "Дана", "language_code": "ru"},
        "chat": {"id": 3001, "first_name": "Дана", "type": "private"},
        "date": 1795760000,
        "text": "Жалоба на вырубку деревьев в парке",
    },
}


def _webhook_settings(make_settings, fake):
    port = free_port()
    return make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake.url,
        telegram_mode="webhook",
        telegram_webhook_secret=SECRET,
        public_url=f"http://127.0.0.1:{port}",
        port=port,
        dispatch_interval_seconds=0.1,
    )


def _count(engine, model, *where):
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def test_registers_webhook_and_receives_updates_from_the_platform(make_settings, fake_telegram):
    settings = _webhook_settings(make_settings, fake_telegram)
    with ServiceThread(settings) as svc:
        wait_until(lambda: fake_telegram.webhook_info(TOKEN)["url"], what="setWebhook")
        assert fake_telegram.webhook_info(TOKEN)["url"] == f"{settings.public_url}/webhooks/telegram"
        fake_telegram.citizen_message(TOKEN, chat_id=3002, text="Өзен ластанған", language_code="kk")
        ack = wait_until(lambda: fake_telegram.sent_messages(TOKEN, 3002), what="ack via webhook flow")
        assert_signal_ack(ack[0]["text"], "kk")
        assert _count(svc.runtime.engine, Appeal) == 1


def test_same_update_three_times_is_one_message(make_settings, fake_telegram):
    settings = _webhook_settings(make_settings, fake_telegram)
    with ServiceThread(settings) as svc:
        url = f"{svc.url}/webhooks/telegram"
        body = json.dumps(UPDATE, ensure_ascii=False).encode()
        for _ in range(3):
            r = httpx.post(
                url,
                content=body,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
            )
            assert r.status_code == 200
        engine = svc.runtime.engine
        wait_processed(engine)
        assert _count(engine, RawEvent) == 1
        assert _count(engine, Message, Message.direction == "in") == 1
        assert _count(engine, Appeal) == 1
        assert _count(engine, OutboxItem, OutboxItem.purpose == "ack") == 1


def test_forged_webhook_is_refused_and_nothing_is_stored(make_settings, fake_telegram):
    settings = _webhook_settings(make_settings, fake_telegram)
    with ServiceThread(settings) as svc:
        url = f"{svc.url}/webhooks/telegram"
        for headers in (
            {},
            {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret"},
            {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
        ):
            r = httpx.post(url, json=UPDATE, headers=headers)
            assert r.status_code == 403
        assert _count(svc.runtime.engine, RawEvent) == 0


def test_malformed_authentic_payload_is_quarantined_then_replayed_once(
    make_settings, fake_telegram, tmp_path
):
    settings = _webhook_settings(make_settings, fake_telegram)
    truncated = json.dumps(UPDATE, ensure_ascii=False)[:-20].encode()
    with ServiceThread(settings) as svc:
        r = httpx.post(
            f"{svc.url}/webhooks/telegram",
            content=truncated,
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert r.status_code == 200  # authentic: Telegram must not keep retrying a body we keep
        engine = svc.runtime.engine
        with Session(engine) as s:
            raw = s.exec(select(RawEvent)).one()
        assert raw.state == "quarantined" and raw.reason.startswith("telegram.invalid_json")
        assert raw.payload == truncated
        health = httpx.get(f"{svc.url}/healthz").json()
        assert health["database"]["quarantined_events"] == 1

    # The cause is fixed: an operator supplies the corrected body; the original bytes stay.
    corrected = tmp_path / "fixed.json"
    corrected.write_text(json.dumps(UPDATE, ensure_ascii=False), encoding="utf-8")
    env = {
        "ADALDYK_DATABASE_URL": settings.database_url,
        "ADALDYK_TELEGRAM_TOKEN": TOKEN,
        "ADALDYK_TELEGRAM_API_URL": fake_telegram.url,
    }
    first = _replay(env, "--id", str(raw.id), "--body-file", str(corrected))
    assert first.returncode == 0, first.stdout
    assert f"event {raw.id}: processed" in first.stdout
    again = _replay(env)
    assert "no quarantined events" in again.stdout
    with Session(engine) as s:
        raw = s.exec(select(RawEvent)).one()
        assert raw.state == "processed" and raw.payload == truncated and raw.corrected_payload
        assert s.exec(select(func.count()).select_from(Appeal)).one() == 1
        assert s.exec(select(Message)).one().text == UPDATE["message"]["text"]


def _replay(env, *args):
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")} | env
    return subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", "replay", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
