"""The instaloader monitor end to end with the real instaloader against a loopback fake of the Instagram
web endpoints it calls (connectors/instagram_monitor/fake.py), on a real database: comments become
appeals once, a 429 and a login wall stop the round and show on health without any waiting, and the
appeals it opens are visibly "answer by hand"."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, func, select

from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.models import Appeal, Message, OutboxItem, RawEvent
from connectors.instagram_monitor import InstagramMonitorConnector
from connectors.instagram_monitor.connector import CANNOT_REPLY
from connectors.instagram_monitor.fake import FakeInstagram
from connectors.instagram_monitor.parser import CHANNEL
from connectors.instagram_monitor.reader import LONGEST_WAIT_SECONDS, _NoLongSleep

ACCOUNT = "ecogovkz"
LOGIN = "adaldyk_monitor"


@pytest.fixture
def fake() -> Iterator[FakeInstagram]:
    server = FakeInstagram()
    server.start()
    server.set_account(ACCOUNT)
    post = server.add_post("Өзендерді тазалау акциясы / Акция по очистке рек", taken_at=1764480000)
    first = server.add_comment(
        post,
        "Сәлеметсіз бе! Есіл жағасында қоқыс жиналып қалды, шара қолданыңыздар.",
        user_id="4410001",
        username="aidana.k",
        created_at=1764481000,
    )
    server.add_comment(
        post,
        "Поддерживаю, на набережной у моста тоже свалка.",
        user_id="4410002",
        username="ivan_petrov",
        created_at=1764482000,
        reply_to=first,
    )
    server.add_comment(post, "Рахмет!", user_id="1", username=ACCOUNT, created_at=1764483000)  # our own
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def session_file(fake: FakeInstagram, tmp_path: Path) -> Path:
    path = tmp_path / f"session-{LOGIN}"
    path.write_bytes(pickle.dumps(fake.session_cookies(LOGIN)))  # what `instaloader --login` saves
    return path


@pytest.fixture
def runtime(make_settings: Any, fake: FakeInstagram, session_file: Path) -> Iterator[Runtime]:
    settings = make_settings(
        instaloader_account=ACCOUNT,
        instaloader_session_file=str(session_file),
        instaloader_login=LOGIN,
        instaloader_base_url=fake.url,
        instaloader_interval_seconds=60,
    )
    rt = Runtime.build(settings)
    yield rt
    rt.engine.dispose()


def _monitor(rt: Runtime) -> InstagramMonitorConnector:
    connector = rt.connectors[CHANNEL]
    assert isinstance(connector, InstagramMonitorConnector)
    return connector


def _round(rt: Runtime) -> int:
    stored = asyncio.run(_monitor(rt).read_round(rt.intake))
    while rt.intake.process_received():
        pass
    return stored


def _count(rt: Runtime, model: Any, *where: Any) -> int:
    with Session(rt.engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_comments_become_appeals_once(runtime: Runtime, fake: FakeInstagram) -> None:
    assert _round(runtime) == 2  # the ministry's own comment is not an appeal
    assert _round(runtime) == 0  # read again: the same comments, nothing new
    assert _count(runtime, RawEvent) == 2
    with Session(runtime.engine) as s:
        appeals = s.exec(select(Appeal).order_by(Appeal.id)).all()
        texts = [
            m.text for m in s.exec(select(Message).where(Message.direction == "in").order_by(Message.id))
        ]
    assert [a.channel for a in appeals] == [CHANNEL, CHANNEL]
    assert [a.language for a in appeals] == ["kk", "ru"]
    assert texts[0].startswith("Сәлеметсіз бе!") and texts[1].startswith("Поддерживаю")
    # A new comment later: one more appeal, the old ones untouched.
    post = fake.add_post("Жаңа пост", taken_at=1764490000)
    fake.add_comment(
        post, "Когда уберут мусор во дворе?", user_id="4410003", username="a.s", created_at=1764491000
    )
    assert _round(runtime) == 1
    assert _count(runtime, Appeal) == 3
    health = _monitor(runtime).health
    assert health.state == "ok" and "1 new" in health.detail


def test_after_a_restart_the_same_comments_are_not_stored_again(
    make_settings: Any, runtime: Runtime, fake: FakeInstagram, session_file: Path
) -> None:
    assert _round(runtime) == 2
    again = Runtime.build(runtime.settings)  # a new process: nothing remembered but the database
    try:
        assert _round(again) == 0
        assert _count(again, RawEvent) == 2 and _count(again, Appeal) == 2
    finally:
        again.engine.dispose()


def test_many_comments_come_through_the_iphone_endpoint(runtime: Runtime, fake: FakeInstagram) -> None:
    post = fake.add_post("Көп пікір", taken_at=1764495000)
    for i in range(20):  # more than instaloader's 12 per GraphQL page: it switches to the iPhone API
        fake.add_comment(
            post,
            f"Пікір нөмірі {i}: ағаштарды кеспеңіздер",
            user_id=f"55{i:03d}",
            username=f"u{i}",
            created_at=1764495000 + i,
        )
    assert _round(runtime) == 22
    assert fake.calls("iphone_comments") == 2  # two pages of 15
    assert _round(runtime) == 0


def test_an_appeal_from_the_monitor_is_marked_answer_by_hand(runtime: Runtime) -> None:
    _round(runtime)
    asyncio.run(runtime.dispatcher().dispatch_due())
    with Session(runtime.engine) as s:
        acks = s.exec(select(OutboxItem).where(OutboxItem.purpose == "ack")).all()
    assert len(acks) == 2
    assert {(a.state, a.last_error_code) for a in acks} == {("failed", CANNOT_REPLY)}
    assert all("answer by hand" in (a.last_error_detail or "") for a in acks)


def test_429_stops_the_round_and_says_so_without_waiting(runtime: Runtime, fake: FakeInstagram) -> None:
    fake.force_status(429)
    assert _round(runtime) == 0
    health = _monitor(runtime).health
    assert health.state == "degraded" and "instagram_monitor.rate_limited" in health.detail
    assert "429" in health.detail
    # One request answered 429 and none after it: instaloader neither retried nor waited for a retry.
    assert len(fake.requests) == 1
    assert _count(runtime, RawEvent) == 0
    assert _round(runtime) == 2  # the next round reads normally
    assert _monitor(runtime).health.state == "ok"


def test_a_429_in_the_middle_of_a_round_stores_nothing_of_it(runtime: Runtime, fake: FakeInstagram) -> None:
    assert _round(runtime) == 2
    fake.add_comment(
        fake.post_codes()[0], "Тағы бір пікір", user_id="4410009", username="z", created_at=1764489000
    )
    before_comments = 4  # profile page, profile query, start page, timeline; then the post's metadata
    start = len(fake.requests)
    fake.force_status(429, after=before_comments)
    assert _round(runtime) == 0
    assert _monitor(runtime).health.state == "degraded"
    assert len(fake.requests) - start == before_comments + 1  # stopped at the 429, no retry
    assert _count(runtime, RawEvent) == 2
    assert _round(runtime) == 1


def test_the_rate_controller_never_sleeps_long() -> None:
    class Context:
        def log(self, *a: Any, **k: Any) -> None: ...
        def error(self, *a: Any, **k: Any) -> None: ...

    controller = _NoLongSleep(Context())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="wanted to wait"):
        controller.sleep(LONGEST_WAIT_SECONDS + 1)
    with pytest.raises(Exception, match="429"):
        controller.handle_429("other")


def test_a_login_wall_stops_the_round_and_says_what_to_do(runtime: Runtime, fake: FakeInstagram) -> None:
    fake.login_wall = True
    assert _round(runtime) == 0
    health = _monitor(runtime).health
    assert health.state == "broken" and "instagram_monitor.login_required" in health.detail
    assert "instaloader --login" in health.detail
    assert len(fake.requests) == 1
    fake.login_wall = False
    fake.expire_sessions()  # the saved session is no longer accepted: redirected to the login page
    assert _round(runtime) == 0
    assert _monitor(runtime).health.state == "broken"
    assert _count(runtime, RawEvent) == 0


def test_without_a_session_it_says_so_at_once(make_settings: Any, fake: FakeInstagram) -> None:
    rt = Runtime.build(make_settings(instaloader_account=ACCOUNT, instaloader_base_url=fake.url))
    try:
        assert _round(rt) == 0
        assert _monitor(rt).health.state == "broken" and "logged-in" in _monitor(rt).health.detail
        assert fake.requests == []
    finally:
        rt.engine.dispose()


def test_off_by_default(make_settings: Any) -> None:
    rt = Runtime.build(make_settings())
    try:
        assert CHANNEL not in rt.connectors and CHANNEL in rt.off
    finally:
        rt.engine.dispose()


def test_the_worker_loop_reads_and_healthz_shows_a_stop(
    make_settings: Any, fake: FakeInstagram, session_file: Path
) -> None:
    import httpx

    from tests.support import ServiceThread, free_port, wait_until

    settings = make_settings(
        port=free_port(),
        instaloader_account=ACCOUNT,
        instaloader_session_file=str(session_file),
        instaloader_login=LOGIN,
        instaloader_base_url=fake.url,
        instaloader_interval_seconds=0.2,
    )
    with ServiceThread(settings) as svc, httpx.Client(base_url=svc.url) as client:

        def channel() -> dict[str, Any]:
            return client.get("/healthz").json()["channels"][CHANNEL]

        wait_until(lambda: _count(svc.runtime, Appeal) == 2, what="two appeals from the comments")
        wait_until(lambda: channel()["state"] == "ok", what="the monitor healthy")
        fake.force_status(429, times=1000)  # every request from now on
        shown = wait_until(lambda: (c := channel())["state"] == "degraded" and c, what="the 429 on /healthz")
        assert "instagram_monitor.rate_limited" in shown["detail"]
        loops = client.get("/healthz").json()["loops"]
        assert loops[f"{CHANNEL}:poller:{ACCOUNT}"]["state"] == "running"  # not backing off, not asleep
        assert _count(svc.runtime, Appeal) == 2
