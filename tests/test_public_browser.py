"""The web form in a real browser (Debian's Chromium through Playwright) against the real app on loopback:
an appeal sent in Kazakh with JavaScript switched off, its number and code looked up on /public/status;
a wrong IIN's message next to its field; a bot filling the honeypot refused; an oversized file refused
with a message; a phone-sized screen without sideways scrolling; and axe-core (vendored, see README)
finding no serious or critical violation on the form, its error state, the answer and the status pages."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from adaldyk_bots.i18n import translations
from adaldyk_bots.iin import check_digit
from adaldyk_bots.web.ui import STATIC_DIR
from tests.support import free_port
from tests.web_support import WebApp

AXE = STATIC_DIR / "vendor" / "axe-core-4.14.1" / "axe.min.js"
KK_TEXT = "Қаланың шетінде заңсыз қоқыс үйіндісі пайда болды, шара қолдануыңызды сұраймын."
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _iin() -> str:
    first = "850615400127"[:11]
    digit = check_digit(first)
    assert digit is not None
    return first + str(digit)


def _kk(message: str) -> str:
    return translations("kk").gettext(message)


@pytest.fixture
def web(make_settings: Any) -> Iterator[WebApp]:
    with WebApp(make_settings(public_max_file_bytes=32 * 1024, public_max_files_bytes=64 * 1024)) as app:
        yield app


@pytest.fixture
def no_script_page(browser: Any) -> Iterator[Any]:
    """A tab with JavaScript switched off: the form must work as plain HTML."""
    context = browser.new_context(java_script_enabled=False, locale="kk-KZ")
    yield context.new_page()
    context.close()


def _fill(page: Any, *, iin: str = "", text: str = KK_TEXT) -> None:
    page.check("#kind-complaint")
    page.fill("#text", text)
    page.check("#answer_by-email")
    page.fill("#email", "asem@example.kz")
    page.fill("#name", "Әсем Нұрланқызы")
    if iin:
        page.fill("#iin", iin)
    page.check("#consent")


def _send(web: WebApp, page: Any) -> None:
    web.clock.advance(seconds=30)  # a person takes a while to write
    with page.expect_navigation():
        page.click("button[type=submit]")


def _axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def test_a_kazakh_appeal_without_javascript_gets_a_number_and_a_code_that_open_its_status(
    web: WebApp, no_script_page: Any
) -> None:
    page = no_script_page
    page.goto(f"{web.url}/public/appeal?lang=kk")
    assert page.get_attribute("html", "lang") == "kk"
    _fill(page, iin=_iin())
    page.set_input_files(
        "#attachment", files=[{"name": "акт.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    _send(web, page)
    assert page.inner_text("h1") == _kk("Your appeal has been received")
    number = page.inner_text("#appeal-number").strip()
    code = page.inner_text("#appeal-code").strip()
    assert number.startswith("ADL-") and len(code) == 14

    with page.expect_navigation():
        page.click(f"text={_kk('Check the progress of an appeal')}")
    assert page.input_value("#number") == number
    page.fill("#code", code)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.inner_text("#appeal-status") == _kk("Registered")
    assert page.inner_text("#appeal-answered") == _kk("Not yet")
    assert KK_TEXT not in page.content()


def test_a_wrong_iin_is_explained_next_to_its_field_and_in_the_summary(web: WebApp, page: Any) -> None:
    page.goto(f"{web.url}/public/appeal?lang=kk")
    good = _iin()
    _fill(page, iin=good[:11] + str((int(good[11]) + 1) % 10))
    _send(web, page)
    message = _kk("The last digit of this IIN does not match the others: check it for a typo.")
    assert page.evaluate("document.activeElement.id") == "error-summary"  # read out first
    field = page.locator(".field", has=page.locator("#iin"))
    assert field.locator("#iin-error").inner_text() == message
    assert "iin-error" in (page.get_attribute("#iin", "aria-describedby") or "")
    assert page.get_attribute("#iin", "aria-invalid") == "true"
    page.click(f"#error-summary a:has-text('{message[:20]}')")  # the summary's link leads to the field
    assert page.evaluate("location.hash") == "#iin"
    assert page.input_value("#text") == KK_TEXT  # nothing the citizen wrote is lost


def test_a_bot_filling_the_honeypot_is_refused_with_a_message(web: WebApp, page: Any) -> None:
    page.goto(f"{web.url}/public/appeal?lang=kk")
    _fill(page)
    box = page.locator("#website").bounding_box()  # out of sight, yet not type=hidden
    assert box is None or box["x"] + box["width"] <= 0
    assert page.get_attribute("#website", "type") == "text"
    page.evaluate("document.getElementById('website').value = 'http://cheap-pills.example'")
    _send(web, page)
    assert page.is_visible("#refusal")
    assert _kk(
        "The form was refused because a field meant to stay empty was filled in (programs that send "
        "spam do this). If you are a person, send the form again."
    ) in page.inner_text("#refusal")
    assert page.input_value("#text") == KK_TEXT
    assert page.input_value("#website") == ""
    _send(web, page)  # a person who sends it again gets through
    assert page.is_visible("#appeal-number")


def test_an_attachment_over_the_limit_is_refused_with_a_message(web: WebApp, page: Any) -> None:
    page.goto(f"{web.url}/public/appeal?lang=kk")
    _fill(page)
    big = PDF + b"0" * (40 * 1024)
    page.set_input_files(
        "#attachment", files=[{"name": "scan.pdf", "mimeType": "application/pdf", "buffer": big}]
    )
    _send(web, page)
    limit = _kk("{n} KB").format(n=32)
    assert _kk("The file {name} is larger than {limit}.").format(
        name="scan.pdf", limit=limit
    ) in page.inner_text("#attachment-error")
    assert page.input_value("#text") == KK_TEXT


def test_the_form_fits_a_phone_screen(web: WebApp, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{web.url}/public/appeal?lang=kk")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        box = page.locator("#text").bounding_box()
        assert box is not None and box["width"] > 300
    finally:
        context.close()


def test_axe_finds_no_serious_violation_on_the_form_answer_and_status_pages_in_kazakh(
    web: WebApp, page: Any
) -> None:
    page.goto(f"{web.url}/public/appeal?lang=kk")
    assert _axe(page) == []
    _fill(page, iin="123")
    page.fill("#email", "not-an-address")
    _send(web, page)
    assert page.is_visible("#error-summary")
    assert _axe(page) == []  # the error state: summary, messages, aria-invalid
    page.fill("#iin", "")
    page.fill("#email", "asem@example.kz")
    page.check("#consent")
    _send(web, page)
    number = page.inner_text("#appeal-number").strip()
    code = page.inner_text("#appeal-code").strip()
    assert _axe(page) == []
    page.goto(f"{web.url}/public/status?lang=kk&number={number}&code={code}")
    assert page.is_visible("#appeal-status")
    assert _axe(page) == []
    page.goto(f"{web.url}/public/status?lang=kk&number={number}&code=WRONG")
    assert page.is_visible("#not-found")
    assert _axe(page) == []
    page.goto(f"{web.url}/public/appeal?lang=kk&embed=1")
    assert _axe(page) == []


def test_the_form_is_filled_and_sent_with_the_keyboard_alone(web: WebApp, page: Any) -> None:
    page.goto(f"{web.url}/public/appeal?lang=kk")
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if reached[-1] == "BUTTON":
            break
    assert reached[-1] == "BUTTON"
    assert "website" not in reached  # the honeypot is never in the way
    for needed in ("kind-application", "text", "answer_by-email", "email", "iin", "attachment", "consent"):
        assert needed in reached, reached
    page.focus("#kind-application")
    page.keyboard.press("ArrowRight")  # radio groups move with the arrows
    assert page.is_checked("#kind-complaint")
    page.focus("#text")
    page.keyboard.type(KK_TEXT)
    page.focus("#answer_by-email")
    page.keyboard.press("Space")
    page.focus("#email")
    page.keyboard.type("asem@example.kz")
    page.focus("#consent")
    page.keyboard.press("Space")
    web.clock.advance(seconds=30)
    page.focus("button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.is_visible("#appeal-number"), page.inner_text("main")


class _MinistrySite:
    """Another origin on loopback (another port) that embeds the form, as the ministry's site would."""

    def __init__(self, app_url: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        page = (
            "<!doctype html><html lang='kk'><head><title>Ministry</title></head><body>"
            f"<iframe id='embedded' title='form' src='{app_url}/public/appeal?embed=1&amp;lang=kk'"
            " style='width:100%;height:1400px'></iframe>"
            f"<iframe id='plain' title='plain' src='{app_url}/public/appeal?lang=kk'></iframe>"
            "</body></html>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _MinistrySite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_ministry_site_frames_the_embed_variant_only_and_an_appeal_goes_through_it(
    make_settings: Any, browser: Any
) -> None:
    ministry_port = free_port()
    settings = make_settings(public_embed_origins=f"http://127.0.0.1:{ministry_port}")
    with WebApp(settings) as web, _MinistrySite(web.url, ministry_port) as site:
        # page.goto waits for the load event, which waits for both frames (shown or refused).
        context = browser.new_context(locale="kk-KZ")
        page = context.new_page()
        try:
            page.goto(site.url)
            embedded = page.frame_locator("#embedded")
            embedded.locator("#text").wait_for()
            assert embedded.locator(".public-top").count() == 0  # no page chrome inside the frame
            plain = page.frame(url=lambda u: "embed=1" not in u and "/public/appeal" in u)
            # frame-ancestors 'none': the browser refuses to show the plain page inside the frame.
            assert plain is None or plain.query_selector("#text") is None
            frame = page.frame(url=lambda u: "embed=1" in u)
            assert frame is not None
            frame.check("#kind-proposal")
            frame.fill("#text", KK_TEXT)
            frame.check("#answer_by-email")
            frame.fill("#email", "asem@example.kz")
            frame.check("#consent")
            web.clock.advance(seconds=30)
            with frame.expect_navigation():
                frame.click("button[type=submit]")
            assert frame.query_selector("#appeal-number") is not None, frame.inner_text("main")
            assert frame.inner_text("#appeal-number").startswith("ADL-")
        finally:
            context.close()
