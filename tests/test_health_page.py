"""The admins' channel health page: every channel state (off, ok, degraded, broken) from the real
connectors against their fake platforms, recorded gaps with their windows, failures of the last 24 h by
code, held sends and the token's state; admins only; translated; refreshed by htmx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from babel.messages.pofile import read_po

from adaldyk_bots.i18n import catalog_path
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import IntakeGap, OutboxItem
from connectors.telegram.fake import FakeTelegramServer
from connectors.vk.fake import FakeVK
from tests.conftest import TOKEN
from tests.connectors.vk import GROUP_ID
from tests.connectors.vk import TOKEN as VK_TOKEN
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import PASSWORD, create_user, login


@pytest.fixture
def fake_vk() -> Iterator[FakeVK]:
    server = FakeVK()
    server.start()
    server.add_group(GROUP_ID, VK_TOKEN)
    try:
        yield server
    finally:
        server.stop()


def _section(html: str, channel: str) -> str:
    found = re.search(rf'<section [^>]*data-channel="{channel}".*?</section>', html, re.S)
    assert found, f"no section for {channel}"
    return found.group(0)


def _outbox(channel: str, key: str, state: str, code: str | None, *, at: Any) -> OutboxItem:
    return OutboxItem(
        key=key,
        channel=channel,
        account="a",
        chat_id="1",
        purpose="reply",
        text="x",
        state=state,
        last_error_code=code,
        next_attempt_at=at,
        created_at=at - timedelta(days=3),
    )


def test_ok_and_degraded_channels_with_gaps_and_failures(
    make_settings: Any, fake_telegram: FakeTelegramServer, fake_vk: FakeVK
) -> None:
    # VK's long poll server cannot be had (VK error 10, internal): the channel is degraded, not broken.
    fake_vk.force_error(10, method="groups.getLongPollServer", times=10_000)
    settings = make_settings(
        port=free_port(),
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        vk_token=VK_TOKEN,
        vk_group_id=GROUP_ID,
        vk_api_url=fake_vk.url,
        vk_longpoll_wait=1,
    )
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        now = utcnow()
        with unit_of_work(engine) as s:
            # What a VK long poll `failed: 1` leaves (connectors/vk/longpoll.py), and sends that failed
            # for good: two today with one code, one today with another, one a week ago (outside 24 h).
            s.add(
                IntakeGap(
                    channel="vk",
                    account=str(GROUP_ID),
                    detected_at=now - timedelta(hours=2),
                    reason="vk.longpoll_failed_1",
                    cursor_before="1041",
                    cursor_after="1077",
                    detail="history lost between the two ts values",
                )
            )
            s.add(_outbox("telegram", "r1", "failed", "telegram.blocked", at=now - timedelta(hours=1)))
            s.add(_outbox("telegram", "r2", "failed", "telegram.blocked", at=now - timedelta(hours=3)))
            s.add(_outbox("telegram", "r3", "failed", "telegram.chat_not_found", at=now - timedelta(hours=5)))
            s.add(_outbox("telegram", "r4", "failed", "telegram.forbidden", at=now - timedelta(days=7)))
        create_user(engine, "root", "admin")
        wait_until(
            lambda: (
                svc.runtime.connectors["telegram"].health.state == "ok"
                and svc.runtime.connectors["vk"].health.state == "degraded"
            ),
            what="telegram polling and vk degraded",
        )
        with httpx.Client(base_url=svc.url) as web:
            login(web, "root")
            page = web.get("/admin/health?lang=en")
            ru = web.get("/admin/health?lang=ru").text
            partial = web.get("/admin/health", headers={"HX-Request": "true"})
    assert page.status_code == 200
    html = page.text
    assert 'data-status="degraded"' in html and "Something needs attention" in html
    assert 'hx-trigger="every 10s"' in html
    telegram = _section(html, "telegram")
    assert 'data-state="ok"' in telegram and "Working" in telegram and 'data-token="accepted"' in telegram
    assert "adaldyk_test_bot" in telegram  # the bot's account, from getMe
    failures = re.search(r'<dd class="failures">(.*?)</dd>', telegram, re.S)
    assert failures is not None
    assert "<code>telegram.blocked</code>: 2" in failures.group(1)
    assert "<code>telegram.chat_not_found</code>: 1" in failures.group(1)
    assert "telegram.forbidden" not in failures.group(1)  # a week old
    vk = _section(html, "vk")
    assert 'data-state="degraded"' in vk and "Degraded" in vk and "groups.getLongPollServer failed" in vk
    assert 'class="gap"' in vk and "vk.longpoll_failed_1" in vk
    assert "<code>1041</code> → <code>1077</code>" in vk
    assert 'data-loop="intake:processor"' in html
    # Russian: the states in words, the frame translated.
    assert '<html lang="ru">' in ru and "Состояние каналов" in ru and "С перебоями" in ru
    # htmx asks for the body alone: no second page frame inside the page.
    assert partial.status_code == 200 and "<html" not in partial.text and 'id="health"' in partial.text


def test_broken_and_off_channels_held_sends_and_admins_only(
    make_settings: Any, fake_telegram: FakeTelegramServer
) -> None:
    fake_telegram.revoke_token(TOKEN)  # getMe answers 401: the connector says the token was rejected
    settings = make_settings(
        port=free_port(), telegram_token=TOKEN, telegram_api_url=fake_telegram.url, telegram_poll_timeout=1
    )
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        with unit_of_work(engine) as s:
            s.add(_outbox("telegram", "h1", "held", "telegram.token_invalid", at=utcnow()))
        create_user(engine, "root", "admin")
        create_user(engine, "mod", "moderator")
        wait_until(
            lambda: svc.runtime.connectors["telegram"].health.state == "broken", what="telegram broken"
        )
        refused_by_connector = httpx.get(f"{svc.url}/healthz").json()["channels"]["telegram"]["credentials"]
        with httpx.Client(base_url=svc.url) as anonymous:
            redirect = anonymous.get("/admin/health", follow_redirects=False)
        with httpx.Client(base_url=svc.url) as moderator:
            login(moderator, "mod")
            refused = moderator.get("/admin/health")
        with httpx.Client(base_url=svc.url) as admin:
            login(admin, "root")
            kk = admin.get("/admin/health?lang=kk")
    assert refused_by_connector == "refused"  # the connector's own word, on /healthz too
    assert redirect.status_code == 303 and redirect.headers["location"].startswith("/login")
    assert refused.status_code == 403 and "telegram" not in refused.text
    assert kk.status_code == 200 and '<html lang="kk">' in kk.text
    telegram = _section(kk.text, "telegram")
    assert 'data-state="broken"' in telegram and "Істемейді" in telegram
    assert "the bot token was rejected" in telegram
    assert 'data-token="refused"' in telegram and "telegram.token_invalid" in telegram
    vk = _section(kk.text, "vk")
    assert 'data-state="off"' in vk and "Өшірулі" in vk and 'data-token="missing"' in vk
    # No English label left on the Kazakh page: no msgid of this page's catalog shows as a whole element.
    with catalog_path("kk", "ops").open("rb") as fh:
        labels = [m.id for m in read_po(fh) if m.id and "%(" not in m.id and m.string != m.id]
    left = [label for label in labels if f">{label}<" in kk.text]
    assert not left, left


def test_the_page_refreshes_itself_in_a_browser(make_settings: Any, page: Any) -> None:
    """A gap recorded while an admin looks at the page shows up without a reload (htmx every 10 s)."""
    with ServiceThread(make_settings(port=free_port()), worker=False) as svc:
        create_user(svc.runtime.engine, "root", "admin")
        page.goto(f"{svc.url}/login?lang=en")
        page.fill("#username", "root")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{svc.url}/")
        page.goto(f"{svc.url}/admin/health")
        assert page.locator("#channel-vk .gap").count() == 0
        page.evaluate("window.adaldykLoaded = true")  # gone if the page were loaded again
        with unit_of_work(svc.runtime.engine) as s:
            s.add(
                IntakeGap(
                    channel="vk",
                    account="1",
                    detected_at=utcnow(),
                    reason="vk.longpoll_failed_3",
                    cursor_before="7",
                    cursor_after="9",
                )
            )
        page.locator("#channel-vk .gap").wait_for(timeout=25_000)
        assert page.evaluate("window.adaldykLoaded") is True
        assert "vk.longpoll_failed_3" in page.locator("#channel-vk").inner_text()
        # Still refreshing after the first swap: the swapped-in body carries its own trigger.
        assert page.locator("#health[hx-trigger]").count() == 1
