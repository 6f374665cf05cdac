"""The inbox in a real browser (Playwright on Debian's Chromium, tests/browser.py): logging in through the
form, appeals arriving on Telegram and VK through the fakes and appearing without a reload, keyboard
navigation, citizens' hostile text shown as text, and the Kazakh inbox without an English string."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from adaldyk_bots.i18n import extract, translations
from adaldyk_bots.storage.db import utcnow
from connectors.telegram.fake import FakeTelegramServer
from connectors.vk.fake import FakeVK
from tests.conftest import TOKEN
from tests.connectors.vk import GROUP_ID, vk_settings, wait_for_long_poll
from tests.connectors.vk import TOKEN as VK_TOKEN
from tests.support import ServiceThread, free_port
from tests.test_inbox_pages import ALMATY, ASTANA, HOSTILE, add_appeal
from tests.web_support import PASSWORD, create_user, load_units

KK_TEXT = "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр."
RU_TEXT = "Здравствуйте! Рядом с нашим домом незаконная свалка мусора, прошу принять меры."
WAIT_MS = 15_000  # how long the browser may wait for something to appear; the live path takes ~1 s


@pytest.fixture
def fake_vk() -> Iterator[FakeVK]:
    server = FakeVK()
    server.start()
    server.add_group(GROUP_ID, VK_TOKEN)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service(
    make_settings: Any, fake_telegram: FakeTelegramServer, fake_vk: FakeVK
) -> Iterator[ServiceThread]:
    """The whole service (web and worker) with both fake platforms; a moderator and an officer."""
    settings = vk_settings(
        make_settings,
        fake_vk,
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        inbox_poll_seconds=0.3,
    )
    with ServiceThread(settings) as svc:
        load_units(svc.runtime.engine)
        create_user(svc.runtime.engine, "maria", "moderator", full_name="Мария Ким")
        create_user(svc.runtime.engine, "aset", "officer", ASTANA, full_name="Асет Нурланов")
        yield svc


def log_in(page: Any, svc: ServiceThread, username: str, *, lang: str = "ru") -> None:
    page.goto(f"{svc.url}/login?lang={lang}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{svc.url}/")
    expect(page.locator("h1")).to_have_count(1)


def test_appeals_from_telegram_and_vk_appear_in_the_open_inbox_without_a_reload(
    service: ServiceThread, page: Any, fake_telegram: FakeTelegramServer, fake_vk: FakeVK
) -> None:
    wait_for_long_poll(service)
    log_in(page, service, "maria")
    rows = page.locator("#inbox-results tr.appeal-row")
    expect(rows).to_have_count(0)
    page.evaluate("window.stillTheSamePage = true")  # gone if the page were reloaded

    fake_telegram.citizen_message(TOKEN, chat_id=1001, text=KK_TEXT, first_name="Айгүл", language_code="kk")
    fake_vk.citizen_message(8001, RU_TEXT, lang_id=0)
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    texts = rows.all_inner_texts()
    assert any("Telegram" in t and "Сәлеметсіз бе!" in t and "Казахский" in t for t in texts), texts
    assert any("ВКонтакте" in t and "Здравствуйте!" in t and "Русский" in t for t in texts), texts

    # A new Telegram message, with the inbox open: it appears on top, the page never reloaded.
    fake_telegram.citizen_message(
        TOKEN, chat_id=1002, text="Жаңа хабарлама: ағаштар кесілуде", first_name="Дана"
    )
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    expect(rows.first).to_contain_text("Жаңа хабарлама", timeout=WAIT_MS)
    # The first citizen writes again: their appeal moves to the top (newest activity first).
    fake_telegram.citizen_message(TOKEN, chat_id=1001, text="Фото жіберемін", first_name="Айгүл")
    expect(rows.first).to_contain_text("Сәлеметсіз бе!", timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage") is True


def test_an_officer_sees_only_their_departments_appeals_arrive(service: ServiceThread, page: Any) -> None:
    log_in(page, service, "aset")
    page.evaluate("window.stillTheSamePage = true")
    add_appeal(service.runtime, "Алматыдағы қоқыс үйіндісі", unit=ALMATY)
    mine = add_appeal(service.runtime, "Астанадағы ағаштар", unit=ASTANA)
    rows = page.locator("#inbox-results tr.appeal-row")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    assert rows.first.get_attribute("data-number") == mine
    assert "Алматыдағы" not in page.locator("body").inner_text()
    assert page.evaluate("window.stillTheSamePage") is True


def test_keyboard_moves_the_selection_and_opens_an_appeal(service: ServiceThread, page: Any) -> None:
    numbers = [add_appeal(service.runtime, f"Обращение {i}: мусор во дворе") for i in range(3)][::-1]
    log_in(page, service, "maria")
    rows = page.locator("#inbox-results tr.appeal-row")
    expect(rows).to_have_count(3)
    page.keyboard.press("j")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("tr.selected")).to_have_count(1)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "inbox-search"
    page.keyboard.type("j")  # typed into the search box, not a move
    expect(rows.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{service.url}/appeals/{numbers[1]}")


def test_hostile_citizen_text_is_shown_literally_and_runs_nothing(service: ServiceThread, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    add_appeal(service.runtime, HOSTILE, name="<img src=x onerror=alert(3)>")
    log_in(page, service, "maria")
    cell = page.locator("#inbox-results td.first-line").first
    expect(cell).to_contain_text(
        '<script>alert(1)</script><img src=x onerror="alert(2)"> &amp; &lt;b&gt; Свалка'
    )
    expect(cell).to_contain_text("<img src=x onerror=alert(3)>")
    assert page.locator("#inbox-results img, #inbox-results script").count() == 0
    # Again after a live refresh of the list (htmx swaps the rows in).
    add_appeal(service.runtime, "<svg onload=alert(4)>")
    expect(page.locator("#inbox-results tr.appeal-row")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("#inbox-results td.first-line").first).to_contain_text("<svg onload=alert(4)>")
    assert page.locator("#inbox-results svg").count() == 0
    assert dialogs == []


# What a Kazakh reader sees: the text of the page and of the attributes a browser shows (placeholder,
# title, aria-label), without the language switcher's names, which are each in their own language.
_VISIBLE = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('[lang], script, style').forEach((e) => e.remove());
  const attrs = Array.from(body.querySelectorAll('[placeholder], [title], [aria-label]'))
    .flatMap((e) => ['placeholder', 'title', 'aria-label'].map((a) => e.getAttribute(a) || ''));
  return [document.title, body.innerText || body.textContent, ...attrs].join('\\n');
}"""


def english_left_in(text: str, lang: str) -> list[str]:
    """The catalogs' English msgids (those the language translates differently) found in `text`."""
    tr = translations(lang)
    found = []
    for message in extract():
        msgid = str(message.id) if message.id and isinstance(message.id, str) else ""
        if not re.search("[A-Za-z]{2}", msgid) or tr.gettext(msgid) == msgid:
            continue  # no English words in it, or the same in Kazakh (Telegram, WhatsApp)
        for fragment in re.split(r"%\(\w+\)s", msgid):
            fragment = fragment.strip(" :,.")
            if re.search("[A-Za-z]{2}", fragment) and re.search(
                rf"(?<![A-Za-z]){re.escape(fragment)}(?![A-Za-z])", text
            ):
                found.append(msgid)
                break
    return found


def test_the_kazakh_inbox_has_no_untranslated_string(service: ServiceThread, page: Any) -> None:
    rt = service.runtime
    # Something in every column and as many labels as can show: states, channels, categories, languages.
    add_appeal(
        rt, "Өзенге қалдықтар төгілуде", channel="vk", language="kk", unit=ASTANA, category="complaint"
    )
    add_appeal(rt, "Свалка у дороги", due_at=utcnow() - timedelta(days=5), category="request")
    add_appeal(rt, "Рахмет!", status="answered", category="gratitude")
    log_in(page, service, "maria", lang="kk")
    for path in ("/?lang=kk", "/?status=all", "/?status=all&sort=due&overdue=1", "/?q=жоқсөз"):
        page.goto(f"{service.url}{path}")
        assert page.locator("html").get_attribute("lang") == "kk"
        text = page.evaluate(_VISIBLE)
        assert "Кіріс" in text
        assert english_left_in(text, "kk") == [], path
    # The check itself finds English where there is some.
    page.goto(f"{service.url}/?lang=en")
    assert "Inbox" in english_left_in(page.evaluate(_VISIBLE), "kk")


def test_triage_and_answer_telegram_and_vk_appeals_from_the_inbox(
    service: ServiceThread, page: Any, fake_telegram: FakeTelegramServer, fake_vk: FakeVK
) -> None:
    # Issue 7's walk through: appeals arrive on both fakes, the moderator opens each from the inbox, gives it
    # a unit and a status, replies, and watches the reply delivered in the citizen's channel.
    wait_for_long_poll(service)
    log_in(page, service, "maria")
    fake_telegram.citizen_message(TOKEN, chat_id=1201, text=KK_TEXT, first_name="Айгүл", language_code="kk")
    fake_vk.citizen_message(8201, RU_TEXT, lang_id=0)
    rows = page.locator("#inbox-results tr.appeal-row")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    for channel, unit, answer in (
        ("Telegram", ASTANA, "Инспекторлар ертең барады."),
        ("ВКонтакте", ALMATY, "Инспекторы выедут завтра."),
    ):
        page.goto(f"{service.url}/")
        rows.filter(has_text=channel).locator("a").first.click()
        page.wait_for_url(re.compile(r"/appeals/ADL-\d{4}-\d+"))
        number = page.url.rsplit("/", 1)[1].split("?")[0]
        page.select_option("#unit-select", unit)
        page.click("form[action$='/unit'] button[type=submit]")
        page.wait_for_url(re.compile(r"done=unit"))
        page.select_option("#status-select", "in_progress")
        page.click("form[action$='/status'] button[type=submit]")
        page.wait_for_url(re.compile(r"done=status"))
        page.fill("#reply-text", answer)
        page.click("#reply button[type=submit]:not(.secondary)")
        page.wait_for_url(re.compile(r"done=reply"))
        delivered = page.locator('article.message.out[data-delivery-state="sent"]', has_text=answer)
        expect(delivered).to_have_count(1, timeout=WAIT_MS)  # the page follows the delivery by itself
        expect(delivered).to_contain_text("доставлено")
        expect(page.locator("#unit")).not_to_contain_text("не назначено")
        page.goto(f"{service.url}/?status=in_progress")
        expect(rows.filter(has_text=number)).to_have_count(1, timeout=WAIT_MS)
    assert any("Инспекторлар ертең барады." in m["text"] for m in fake_telegram.sent_messages(TOKEN, 1201))
    assert any("Инспекторы выедут завтра." in m["text"] for m in fake_vk.sent_messages(8201))
