"""The appeal page in a real browser (Debian's Chromium through Playwright), on the real service polling
the fake Telegram: log in, reply and watch it delivered, a blocked citizen's reply failed with its code,
retry after unblocking, hostile citizen text that never runs, the page in Kazakh."""

from __future__ import annotations

from collections.abc import Iterator
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
    number = workspace.citizen_writes(4002, "Ауладағы ағаштар кесілді", photo=True)
    workspace.wait_delivery(number, "ack", "sent")
    _log_in(page, workspace, f"/appeals/{number}")
    page.click("a[hreflang=kk]")
    assert page.locator("html").get_attribute("lang") == "kk"
    body = page.locator("main").inner_text()
    for english in ("Messages", "Reply to the citizen", "Internal notes", "working days", "delivered", "Citizen"):
        assert english not in body, english
    assert "Хабарламалар" in body and "жеткізілді" in body
    # The photo is shown (the image loaded through the session-authenticated route).
    assert page.locator("img.attachment-image").evaluate("img => img.complete && img.naturalWidth >= 0")
