"""SIGKILL in both modes while citizens keep writing: every message stored once, every appeal acknowledged
once (random_id lets VK drop the repeats a crash can cause), nothing sent beyond VK's rate limit."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, Message, RawEvent
from connectors.vk.fake import FakeVK
from tests.connectors.vk import CONFIRMATION, GROUP_ID, SECRET, TOKEN
from tests.support import adaldyk_process, free_port, wait_until

CITIZENS = 120
MESSAGES_PER_CITIZEN = 2
KILLS = 4


def _count(engine: Any, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _cursor(engine: Any) -> str | None:
    from adaldyk_bots.storage.models import ChannelCursor

    with Session(engine) as s:
        row = s.get(ChannelCursor, ("vk", str(GROUP_ID)))
        return row.value if row else None


def _citizens_write(fake: FakeVK) -> None:
    """Citizens write at about 80 messages/s, all through the kills and restarts."""
    for n in range(MESSAGES_PER_CITIZEN):
        for c in range(CITIZENS):
            lang = 97 if c % 2 else 0
            text = (
                f"Өтініш {c}, хабарлама {n}: өзен ластанған" if lang == 97 else f"Обращение {c}.{n}: свалка"
            )
            fake.citizen_message(20_000 + c, text, lang_id=lang)
            time.sleep(1 / 80)


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)  # drains the pipe too


@pytest.mark.parametrize("mode", ["longpoll", "callback"])
def test_sigkill_loses_nothing_and_duplicates_nothing(mode: str, database_url: str, fake_vk: FakeVK) -> None:
    engine = make_engine(database_url)
    port = free_port()
    env = {
        "ADALDYK_DATABASE_URL": database_url,
        "ADALDYK_SECRET_KEY": "crash-test-secret-key-0123456789",
        "ADALDYK_VK_TOKEN": TOKEN,
        "ADALDYK_VK_GROUP_ID": str(GROUP_ID),
        "ADALDYK_VK_API_URL": fake_vk.url,
        "ADALDYK_VK_LONGPOLL_WAIT": "1",
        "ADALDYK_DISPATCH_INTERVAL_SECONDS": "0.1",
        "ADALDYK_OUTBOX_LEASE_SECONDS": "2",
        "ADALDYK_LOG_LEVEL": "WARNING",
        "ADALDYK_HOST": "127.0.0.1",
        "ADALDYK_PORT": str(port),
    }
    command = ["worker"]
    if mode == "callback":
        env.update(ADALDYK_VK_MODE="callback", ADALDYK_VK_SECRET=SECRET, ADALDYK_VK_CONFIRMATION=CONFIRMATION)
        command = ["serve"]  # the web process takes the callbacks, the worker part sends
        fake_vk.callback_retry_delay = 0.05
        fake_vk.set_callback_server(
            f"http://127.0.0.1:{port}/webhooks/vk", secret=SECRET, confirmation=CONFIRMATION
        )

    feeder = threading.Thread(target=_citizens_write, args=(fake_vk,), daemon=True)
    rng = random.Random(20261127)
    for round_no in range(KILLS):
        process = adaldyk_process(command, env)
        try:
            if round_no == 0:
                if mode == "longpoll":
                    # A first start begins at VK's current position; citizens write after that.
                    wait_until(
                        lambda: _cursor(engine) or process.poll() is not None, timeout=30, what="session"
                    )
                feeder.start()
            before = _count(engine, RawEvent)
            wait_until(
                # Under load the citizens may have finished already: then kill wherever it is.
                lambda: (
                    _count(engine, RawEvent) > before or process.poll() is not None or not feeder.is_alive()
                ),
                timeout=30,
                interval=0.01,
                what="events being stored",
            )
            time.sleep(rng.uniform(0.0, 0.3))  # mid-batch, mid-send, or between: wherever it lands
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        finally:
            _kill(process)

    process = adaldyk_process(command, env)
    try:
        feeder.join(timeout=60)
        total = CITIZENS * MESSAGES_PER_CITIZEN
        wait_until(
            lambda: _count(engine, Message, Message.direction == "in") == total,
            timeout=60,
            what="every message stored",
        )
        wait_until(
            lambda: len({m["peer_id"] for m in fake_vk.sent_messages()}) == CITIZENS,
            timeout=60,
            what="every appeal acknowledged",
        )
        time.sleep(0.5)  # room for a duplicate to show up, if there were one
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()

    assert _count(engine, Message, Message.direction == "in") == CITIZENS * MESSAGES_PER_CITIZEN, output[
        -3000:
    ]
    assert _count(engine, Appeal) == CITIZENS  # each second message joined its citizen's open appeal
    assert _count(engine, RawEvent, RawEvent.state == "processed") == CITIZENS * MESSAGES_PER_CITIZEN
    assert _count(engine, RawEvent, RawEvent.state == "quarantined") == 0
    for c in range(CITIZENS):
        acks = fake_vk.sent_messages(20_000 + c)
        assert len(acks) == 1, acks  # re-sends after a crash carried the same random_id
    assert fake_vk.violations == []
