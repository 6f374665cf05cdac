"""Our own Bots Long Poll loop: ts committed with its batch; failed 1, 2, 3; bad answers never stop it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
from sqlmodel import Session, func, select

from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.storage.models import IntakeGap, Message, RawEvent
from adaldyk_bots.supervisor import Supervisor
from connectors.vk.connector import VKConnector
from connectors.vk.fake import FakeVK
from tests.connectors.vk import GROUP_ID, vk_settings, wait_for_long_poll
from tests.support import ServiceThread, create_api_token, free_port, wait_until

ACCOUNT = str(GROUP_ID)


def _texts_stored(engine: Any) -> list[str]:
    with Session(engine) as s:
        return [m.text for m in s.exec(select(Message).where(Message.direction == "in").order_by(Message.id))]


def _gaps(engine: Any) -> list[IntakeGap]:
    with Session(engine) as s:
        return list(s.exec(select(IntakeGap).order_by(IntakeGap.id)))


def test_each_failed_code_is_handled_as_vk_documents_it(make_settings: Any, fake_vk: FakeVK) -> None:
    runtime = Runtime.build(vk_settings(make_settings, fake_vk))
    connector = runtime.connectors["vk"]
    assert isinstance(connector, VKConnector)
    intake, poller, engine = runtime.intake, connector.poller, runtime.engine

    async def scenario() -> None:
        await poller.poll_once(intake)  # opens the session at VK's position and stores it
        start = intake.cursor("vk", ACCOUNT)
        assert start == str(fake_vk.long_poll_position())

        fake_vk.citizen_message(9101, "Бірінші хабарлама")
        assert await poller.poll_once(intake) == 1
        assert intake.cursor("vk", ACCOUNT) == str(int(start) + 1)  # moved with the stored batch

        # failed 2: the key expired. A new key, the same ts: what arrived meanwhile is not lost.
        keys_before = fake_vk.calls("groups.getLongPollServer")
        fake_vk.force_failed(2)
        fake_vk.citizen_message(9101, "Екінші хабарлама")
        assert await poller.poll_once(intake) is None
        assert fake_vk.calls("groups.getLongPollServer") == keys_before + 1
        assert intake.cursor("vk", ACCOUNT) == str(int(start) + 1)
        assert await poller.poll_once(intake) == 1
        assert _gaps(engine) == []

        # failed 1: history partly lost. Continue from the new ts, no new key, and record the gap.
        before = intake.cursor("vk", ACCOUNT)
        fake_vk.force_failed(1)
        fake_vk.citizen_message(9102, "Бұл жоғалады")
        assert await poller.poll_once(intake) is None
        after = str(fake_vk.long_poll_position())
        assert fake_vk.calls("groups.getLongPollServer") == keys_before + 1
        assert intake.cursor("vk", ACCOUNT) == after
        (gap,) = _gaps(engine)
        assert (gap.reason, gap.cursor_before, gap.cursor_after) == ("vk.longpoll_failed_1", before, after)
        assert "may never be delivered" in gap.detail

        # failed 3: key and ts lost. New key and ts, and a gap.
        fake_vk.force_failed(3)
        fake_vk.citizen_message(9103, "Бұл да жоғалады")
        assert await poller.poll_once(intake) is None
        assert fake_vk.calls("groups.getLongPollServer") == keys_before + 2
        assert [g.reason for g in _gaps(engine)] == ["vk.longpoll_failed_1", "vk.longpoll_failed_3"]
        assert intake.cursor("vk", ACCOUNT) == str(fake_vk.long_poll_position())

        fake_vk.citizen_message(9104, "Кейінгі хабарлама")
        assert await poller.poll_once(intake) == 1
        await connector.stop()

    asyncio.run(scenario())
    while intake.process_received():  # intake's second step; the Service runs it in the worker
        pass
    assert _texts_stored(engine) == ["Бірінші хабарлама", "Екінші хабарлама", "Кейінгі хабарлама"]
    assert connector.health.extra["recorded_gaps_since_start"] == 2
    assert connector.health.extra["last_gap"]["reason"] == "vk.longpoll_failed_3"
    runtime.engine.dispose()


def test_gaps_are_visible_on_healthz_and_to_moderators(make_settings: Any, fake_vk: FakeVK) -> None:
    with ServiceThread(vk_settings(make_settings, fake_vk, port=free_port())) as svc:
        wait_for_long_poll(svc)
        fake_vk.force_failed(1)
        wait_until(lambda: _gaps(svc.runtime.engine), what="the recorded gap")
        health = httpx.get(f"{svc.url}/healthz").json()
        assert health["channels"]["vk"]["recorded_gaps"] == 1
        assert datetime.fromisoformat(health["channels"]["vk"]["last_gap_at"]).tzinfo is not None
        assert health["channels"]["vk"]["last_gap"]["reason"] == "vk.longpoll_failed_1"
        token = create_api_token(svc.settings)
        gaps = httpx.get(f"{svc.url}/api/v1/intake-gaps", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(g["channel"], g["account"], g["reason"]) for g in gaps] == [
            ("vk", ACCOUNT, "vk.longpoll_failed_1")
        ]
        # The loop goes on after it.
        fake_vk.citizen_message(9201, "После пропуска")
        wait_until(lambda: fake_vk.sent_messages(9201), what="the acknowledgement after the gap")


def test_bad_answers_and_an_unreachable_server_never_stop_the_loop(
    make_settings: Any, fake_vk: FakeVK
) -> None:
    with ServiceThread(vk_settings(make_settings, fake_vk, port=free_port())) as svc:
        wait_for_long_poll(svc)
        cursor = svc.runtime.intake.cursor("vk", ACCOUNT)
        fake_vk.force_longpoll_answer(b"<html><body>502 Bad Gateway</body></html>", status=502)
        fake_vk.force_longpoll_answer(b'{"ts": "17", "updates": [{"type": "mess')
        connector = svc.runtime.connectors["vk"]
        wait_until(lambda: connector.health.state == "degraded", what="the degraded state")
        # The whole platform goes away for a moment (connection refused), then comes back.
        fake_vk.stop()
        fake_vk.start()
        fake_vk.citizen_message(9301, "Сервер қайта қосылды ма?")
        wait_until(lambda: fake_vk.sent_messages(9301), timeout=30, what="the acknowledgement after recovery")
        assert connector.health.state == "ok"
        assert svc.runtime.intake.cursor("vk", ACCOUNT) != cursor
        assert _gaps(svc.runtime.engine) == []


def test_a_restart_resumes_from_the_stored_ts_and_stores_nothing_twice(
    make_settings: Any, fake_vk: FakeVK
) -> None:
    settings = vk_settings(make_settings, fake_vk, port=free_port())
    with ServiceThread(settings) as svc:
        wait_for_long_poll(svc)
        fake_vk.citizen_message(9401, "Бірінші")
        wait_until(lambda: fake_vk.sent_messages(9401), what="the first acknowledgement")
    # Citizens go on writing while the service is down: VK keeps the queue.
    fake_vk.citizen_message(9402, "Екінші")
    fake_vk.citizen_message(9401, "Үшінші")
    with ServiceThread(settings) as svc:
        wait_until(lambda: fake_vk.sent_messages(9402), what="the acknowledgement written while down")
        wait_until(lambda: len(_texts_stored(svc.runtime.engine)) == 3, what="all three messages")
        with Session(svc.runtime.engine) as s:
            message_events = s.exec(
                select(func.count()).select_from(RawEvent).where(RawEvent.state == "processed")
            ).one()
        assert message_events == 3
        assert sorted(_texts_stored(svc.runtime.engine)) == sorted(["Бірінші", "Екінші", "Үшінші"])
        assert len(fake_vk.sent_messages(9401)) == 1  # the follow-up joined the open appeal


def test_one_long_poller_per_community_across_workers(make_settings: Any, fake_vk: FakeVK) -> None:
    settings = vk_settings(make_settings, fake_vk)
    first, second = Runtime.build(settings), Runtime.build(settings)
    a, b = first.connectors["vk"], second.connectors["vk"]

    # Polling is a loop the supervisor runs (and holds the community's lock for), one per process.
    supervisors = [Supervisor(lambda name, rt=rt: PollerLock(rt.engine, name)) for rt in (first, second)]

    async def scenario() -> None:
        await a.start(first.intake)
        for spec in a.background_loops(first.intake):
            supervisors[0].add(spec)
        supervisors[0].start()
        for _ in range(200):
            if a.health.detail == "long poll":
                break
            await asyncio.sleep(0.05)
        await b.start(second.intake)
        for spec in b.background_loops(second.intake):
            supervisors[1].add(spec)
        supervisors[1].start()
        await asyncio.sleep(0.5)
        if first.engine.dialect.name == "postgresql":
            assert b.health.detail.startswith("standby"), b.health.detail  # two loops would fight over ts
        fake_vk.citizen_message(9501, "Бір ғана рет")
        for _ in range(100):
            if _texts_stored(first.engine):
                break
            await asyncio.sleep(0.05)
        for supervisor in supervisors:
            await supervisor.stop()
        await a.stop()
        await b.stop()

    asyncio.run(scenario())
    while first.intake.process_received():
        pass
    assert _texts_stored(first.engine) == ["Бір ғана рет"]
    first.engine.dispose()
    second.engine.dispose()
