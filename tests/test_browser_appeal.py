"""The appeal page in a real browser (Debian's Chromium through Playwright), on the real service polling
the fake Telegram: log in, reply and watch it delivered, a blocked citizen's reply failed with its code,
retry after unblocking, hostile citizen text that never runs, the page in Kazakh."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.telegram.fake import FakeTelegramServer
from tests.appeal_support import Workspace, start_workspace
from tests.conftest import TOKEN
from tests.web_support import PASSWORD

HOSTILE = '<script>alert("script")</script><img src=x onerror="alert(\'img\')"> &amp; &lt;b&gt;'


@pytest.fixture
def workspace(make_settings: Any, fake_telegram: FakeTelegramServer) -> Iterator[Workspace]:
    yield from start_workspace(make_settings, fake_telegram)


def _png(width: int = 160, height: int = 100) -> bytes:
    """A real (decodable) PNG: a green field with a darker band, written with zlib alone."""
    import struct
    import zlib

    rows = b"".join(
        b"\x00" + (bytes((20, 110, 80)) if 40 <= y < 60 else bytes((120, 190, 150))) * width
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _photo(workspace: Workspace) -> list[dict[str, Any]]:
    """A Telegram `photo` array (PhotoSize objects, Bot API) whose file the fake serves."""
    workspace.fake.add_file(TOKEN, "AgACAgIAAxkBAAIphoto0001", _png(), file_path="photos/file_real.jpg")
    return [
        {
            "file_id": "AgACAgIAAxkBAAIphoto0001",
            "file_unique_id": "AQADphoto0001",
            "width": 160,
            "height": 100,
        }
    ]


def _log_in(page: Any, workspace: Workspace, path: str) -> None:
    page.goto(f"{workspace.url}{path}")  # not logged in: the login form, back here afterwards
    page.fill("input[name=username]", "moder")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path.split('?')[0]}*")


def _reply(page: Any, text: str) -> None:
    page.fill("#reply-text", text)
    page.click("#reply button[type=submit]:not(.secondary)")
    page.wait_for_selector(".notice")


def test_reply_is_delivered_and_a_blocked_citizen_is_retried_after_unblocking(
    workspace: Workspace, page: Any
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    number = workspace.citizen_writes(4001, HOSTILE, first_name="Дана")
    workspace.wait_delivery(number, "ack", "sent")
    _log_in(page, workspace, f"/appeals/{number}?lang=ru")
    assert page.locator("html").get_attribute("lang") == "ru"
    # The citizen's text is shown exactly as written, and none of it runs.
    assert page.locator(".message.in .text").first.inner_text() == HOSTILE
    assert page.locator(".message.in img").count() == 0

    _reply(page, "Проверка назначена, инспекторы выедут завтра.")
    reply = workspace.deliveries(number)[-1]
    assert reply.purpose == "reply"
    article = page.locator(f"#delivery-{reply.id}")
    # The page follows the delivery by itself (htmx) until it settles.
    page.wait_for_selector(f'#delivery-{reply.id}[data-delivery-state="sent"]', timeout=20_000)
    assert "доставлено" in article.inner_text()

    workspace.fake.block_chat(TOKEN, 4001)
    _reply(page, "Второй ответ: результаты проверки.")
    blocked = workspace.deliveries(number)[-1]
    page.wait_for_selector(f'#delivery-{blocked.id}[data-delivery-state="failed"]', timeout=20_000)
    text = page.locator(f"#delivery-{blocked.id}").inner_text()
    assert "telegram.blocked" in text and "заблокировал бота" in text

    workspace.fake.unblock_chat(TOKEN, 4001)
    page.click(f"#delivery-{blocked.id} button.retry")
    page.wait_for_selector(".notice")
    page.wait_for_selector(f'#delivery-{blocked.id}[data-delivery-state="sent"]', timeout=20_000)
    text = page.locator(f"#delivery-{blocked.id}").inner_text()
    assert "Мира Модератор" in text and "Попыток: 2" in text
    sent = [m["text"] for m in workspace.fake.sent_messages(TOKEN, 4001)]
    assert any("Второй ответ" in t for t in sent)
    assert not dialogs, f"citizen text ran as script: {dialogs}"


def test_the_page_in_kazakh(workspace: Workspace, page: Any) -> None:
    number = workspace.citizen_writes(
        4002,
        None,
        first_name="Айгүл",
        extra={"photo": _photo(workspace), "caption": "Ауладағы ағаштар кесілді"},
    )
    workspace.wait_delivery(number, "ack", "sent")
    _log_in(page, workspace, f"/appeals/{number}")
    page.click("a[hreflang=kk]")
    assert page.locator("html").get_attribute("lang") == "kk"
    body = page.locator("main").inner_text()
    for english in (
        "Messages",
        "Reply to the citizen",
        "Internal notes",
        "working days",
        "delivered",
        "Citizen",
    ):
        assert english not in body, english
    assert "Хабарламалар" in body and "жеткізілді" in body
    # The photo is shown: the browser fetched and decoded it through the session-authenticated route.
    page.wait_for_function("document.querySelector('img.attachment-image').naturalWidth === 160")
    # For the screenshots: a reply to a citizen who has since blocked the bot, and an internal note.
    workspace.fake.block_chat(TOKEN, 4002)
    _reply(page, "Инспекторлар ертең барады.")
    failed = workspace.deliveries(number)[-1]
    page.wait_for_selector(f'#delivery-{failed.id}[data-delivery-state="failed"]', timeout=20_000)
    page.fill("#note-text", "Әкімдікке хабарласу керек.")
    page.click("#notes button[type=submit]")
    page.wait_for_selector(".notice")
    assert "telegram.blocked" in page.locator(f"#delivery-{failed.id}").inner_text()
    _screenshot(page, "appeal-kk.png")
    page.click("a[hreflang=ru]")
    assert "заблокировал бота" in page.locator(f"#delivery-{failed.id}").inner_text()
    _screenshot(page, "appeal-ru.png")


def _screenshot(page: Any, name: str) -> None:
    """With ADALDYK_TEST_SCREENSHOTS=<dir> the README's screenshots are taken from the real page."""
    folder = os.environ.get("ADALDYK_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_the_legal_clock_is_red_when_overdue(workspace: Workspace, page: Any) -> None:
    from datetime import timedelta

    from sqlalchemy import update
    from sqlmodel import col

    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.storage.models import Appeal

    late = workspace.citizen_writes(4003, "Мерзімі өтіп кетті")
    on_time = workspace.citizen_writes(4004, "Мерзімі әлі бар")
    with unit_of_work(workspace.engine) as s:
        s.execute(
            update(Appeal).where(col(Appeal.number) == late).values(due_at=utcnow() - timedelta(days=7))
        )
    _log_in(page, workspace, f"/appeals/{late}?lang=ru")
    clock = page.locator("p.clock")
    assert clock.get_attribute("class") == "clock overdue" and int(clock.get_attribute("data-days-left")) < 0
    assert "Просрочено" in clock.inner_text()
    red = "rgb(179, 38, 30)"  # --danger in app.css
    assert clock.evaluate("e => getComputedStyle(e).color") == red
    page.goto(f"{workspace.url}/appeals/{on_time}")
    clock = page.locator("p.clock")
    assert (
        "overdue" not in (clock.get_attribute("class") or "")
        and int(clock.get_attribute("data-days-left")) > 0
    )
    assert clock.evaluate("e => getComputedStyle(e).color") != red
