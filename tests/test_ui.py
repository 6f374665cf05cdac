"""The pages' frame: HTML errors for people and JSON for programs, the language switch that is
remembered, <html lang>, vendored static files, and citizens' text always escaped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from adaldyk_bots.web.ui import LANGUAGE_COOKIE, lang_url, render_error, request_language, same_site_url
from tests.support import ServiceThread, free_port


@pytest.fixture
def web(make_settings: Any) -> Iterator[httpx.Client]:
    with ServiceThread(make_settings(port=free_port()), worker=False) as svc:
        with httpx.Client(base_url=svc.url) as client:
            yield client


def _request(path: str = "/", *, query: str = "", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": raw}
    return Request(scope)


def test_a_missing_page_is_an_html_404_and_the_api_keeps_json(web: httpx.Client) -> None:
    page = web.get("/no-such-page", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="ru">' in page.text and "ничего не найдено" in page.text
    api = web.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_lang_switch_is_remembered_in_a_cookie(web: httpx.Client) -> None:
    first = web.get("/no-such-page?lang=kk")
    assert '<html lang="kk">' in first.text and "Бұл мекенжай бойынша ештеңе табылмады" in first.text
    assert first.cookies.get(LANGUAGE_COOKIE) == "kk"
    again = web.get("/another-missing-page")  # the client keeps the cookie
    assert '<html lang="kk">' in again.text
    english = web.get("/x?lang=en")
    assert '<html lang="en">' in english.text and "Nothing was found at this address." in english.text


def test_language_order_query_then_cookie_then_accept_language() -> None:
    assert request_language(_request(headers={"Accept-Language": "en-GB, ru;q=0.8"})) == "en"
    assert request_language(_request(headers={"Accept-Language": "de, fr;q=0.5"})) == "kk"
    assert (
        request_language(_request(headers={"Cookie": f"{LANGUAGE_COOKIE}=ru", "Accept-Language": "en"}))
        == "ru"
    )
    assert request_language(_request(query="lang=en", headers={"Cookie": f"{LANGUAGE_COOKIE}=ru"})) == "en"
    assert request_language(_request(query="lang=xx")) == "kk"
    assert lang_url(_request("/appeals/ADL-1", query="tab=a&lang=ru"), "kk") == "/appeals/ADL-1?tab=a&lang=kk"


def test_vendored_htmx_is_served(web: httpx.Client) -> None:
    js = web.get("/static/vendor/htmx-2.0.11/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:2000]
    assert web.get("/static/vendor/htmx-ext-sse-2.2.4/sse.min.js").status_code == 200
    assert web.get("/static/../pyproject.toml").status_code == 404


def test_text_is_escaped_in_pages() -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> &amp; &lt;b&gt;'
    body = bytes(render_error(_request("/x"), 400, hostile).body).decode()
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&amp;amp; &amp;lt;b&amp;gt;" in body  # entities shown as written, not decoded


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/appeals/ADL-2026-000001", "/appeals/ADL-2026-000001"),
        ("/?status=open", "/?status=open"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
    ],
)
def test_redirect_targets_stay_on_this_site(target: str | None, expected: str) -> None:
    assert same_site_url(_request(), target) == expected


def test_a_real_browser_renders_the_frame(web: httpx.Client, page: Any) -> None:
    page.goto(f"{web.base_url}/missing?lang=ru")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.locator("h1").inner_text() == "404"
    page.click("a[hreflang=kk]")
    assert page.locator("html").get_attribute("lang") == "kk"
    assert page.evaluate("typeof htmx") == "object"
