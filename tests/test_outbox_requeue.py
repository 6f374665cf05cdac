"""`adaldyk outbox requeue`: failed (and held) sends go out again, filtered by channel, code or appeal,
each requeue in the appeal's history; the command prints what it requeued."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import Session, select

from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, OutboxItem
from tests.conftest import BOT_ID, TOKEN
from tests.support import ServiceThread, free_port

CITIZENS = (9101, 9102)


def _message(chat: int) -> InboundMessage:
    return InboundMessage(
        channel="telegram",
        account=BOT_ID,
        chat_id=str(chat),
        message_key="1",
        sender_id=str(chat),
        sent_at=datetime(2026, 11, 30, 6, 0, tzinfo=UTC),
        text="Здравствуйте, у нас во дворе вырубают деревья.",
    )


def _outbox(runtime: Runtime) -> dict[str, OutboxItem]:
    with Session(runtime.engine) as s:
        return {r.chat_id: r for r in s.exec(select(OutboxItem))}


def _adaldyk(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (it sets up logging for itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env.update(ADALDYK_DATABASE_URL=database_url, ADALDYK_SECRET_KEY="test-secret-key-0123456789")
    return subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _dispatch(settings: Any) -> None:
    """One dispatch round in a fresh runtime (a connector's HTTP client belongs to one event loop)."""
    runtime = Runtime.build(settings)
    dispatcher = runtime.dispatcher()
    # PostgreSQL without Redis: the previous round's dispatcher handed the election over on close,
    # and a successor takes it a moment later (dispatcher.ELECTION_HANDOVER_SECONDS).
    deadline = time.monotonic() + 10
    while not dispatcher.may_dispatch():
        assert time.monotonic() < deadline, "the dispatcher election was never handed over"
        time.sleep(0.1)

    async def run() -> None:
        await dispatcher.dispatch_due()
        for connector in runtime.connectors.values():
            await connector.stop()

    asyncio.run(run())
    dispatcher.close()
    runtime.engine.dispose()


def test_requeue_sends_failed_rows_again_and_records_it(
    make_settings: Any, database_url: str, fake_telegram: Any
) -> None:
    settings = make_settings(telegram_token=TOKEN, telegram_api_url=fake_telegram.url)
    for chat in CITIZENS:
        fake_telegram.block_chat(TOKEN, chat)
    runtime = Runtime.build(settings)
    with unit_of_work(runtime.engine) as s:
        for chat in CITIZENS:
            runtime.workflow.accept_message(s, _message(chat), raw_event_id=None)
    _dispatch(settings)
    assert {r.state for r in _outbox(runtime).values()} == {"failed"}
    with Session(runtime.engine) as s:
        numbers = {a.conversation_id: a.number for a in s.exec(select(Appeal))}
        first_number = s.exec(select(Appeal.number).order_by(Appeal.id)).first()
    assert len(numbers) == 2 and first_number

    # The citizens unblocked the bot; an operator sends the first appeal's acknowledgement again.
    for chat in CITIZENS:
        fake_telegram.unblock_chat(TOKEN, chat)
    done = _adaldyk(database_url, "outbox", "requeue", "--appeal", first_number)
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert f"appeal {first_number}" in printed and "was telegram.blocked" in printed
    assert "1 message(s) requeued" in printed
    rows = _outbox(runtime)
    first, second = rows[str(CITIZENS[0])], rows[str(CITIZENS[1])]
    assert (first.state, first.attempts) == ("pending", 0) and second.state == "failed"

    _dispatch(settings)
    assert _outbox(runtime)[str(CITIZENS[0])].state == "sent"
    assert len(fake_telegram.sent_messages(TOKEN, CITIZENS[0])) == 1
    with Session(runtime.engine) as s:
        (event,) = s.exec(select(AppealEvent).where(AppealEvent.kind == "requeued")).all()
    assert event.actor == "cli" and event.appeal_id == first.appeal_id
    assert event.detail == {
        "outbox": first.key,
        "outbox_id": first.id,
        "was": "failed",
        "code": "telegram.blocked",
        "attempts_before": 1,
    }

    # Filters: another channel's or another code's rows stay; the matching ones go.
    assert "nothing to requeue" in _adaldyk(database_url, "outbox", "requeue", "--channel", "vk").stdout
    done = _adaldyk(database_url, "outbox", "requeue", "--code", "telegram.chat_not_found")
    assert "nothing to requeue" in done.stdout
    done = _adaldyk(database_url, "outbox", "requeue", "--channel", "telegram", "--code", "telegram.blocked")
    assert "1 message(s) requeued" in done.stdout
    assert _outbox(runtime)[str(CITIZENS[1])].state == "pending"
    done = _adaldyk(database_url, "outbox", "requeue", "--appeal", "ADL-1999-000001")
    assert done.returncode == 1 and "no appeal ADL-1999-000001" in done.stderr
    runtime.engine.dispose()


def test_requeue_sends_held_rows_too(make_settings: Any, database_url: str, fake_telegram: Any) -> None:
    settings = make_settings(telegram_token=TOKEN, telegram_api_url=fake_telegram.url)
    fake_telegram.add_chat(TOKEN, CITIZENS[0])
    fake_telegram.revoke_token(TOKEN)
    runtime = Runtime.build(settings)
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message(CITIZENS[0]), raw_event_id=None)
    _dispatch(settings)
    (row,) = _outbox(runtime).values()
    assert (row.state, row.last_error_code, row.attempts) == ("held", "telegram.token_invalid", 0)
    with ServiceThread(make_settings(port=free_port()), worker=False) as web:
        database = httpx.get(f"{web.url}/healthz").json()["database"]
    assert (database["held_sends"], database["failed_sends"]) == (1, 0)

    fake_telegram.restore_token(TOKEN)
    done = _adaldyk(database_url, "outbox", "requeue", "--code", "telegram.token_invalid")
    assert "1 message(s) requeued" in done.stdout, done.stderr
    _dispatch(settings)
    assert [r.state for r in _outbox(runtime).values()] == ["sent"]
    runtime.engine.dispose()
