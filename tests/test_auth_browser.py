"""Logging in and out in a real browser (Debian's Chromium through Playwright): the session cookie is
HttpOnly and SameSite=Lax — no script on the page can read it."""

from __future__ import annotations

from typing import Any

from tests.web_support import PASSWORD, WebApp, create_user


def test_log_in_and_out_in_a_browser(make_settings: Any, page: Any) -> None:
    with WebApp(make_settings()) as web:
        create_user(web.runtime.engine, "maria", "moderator", full_name="Мария Ким")
        page.goto(f"{web.url}/login?lang=kk&next=/account/password")
        assert page.locator("html").get_attribute("lang") == "kk"
        page.fill("input[name=username]", "maria")
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        assert "Пайдаланушы аты немесе құпиясөз қате." in page.content()
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{web.url}/account/password")
        assert "Мария Ким" in page.content()
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["adaldyk_session"]
        assert session["httpOnly"] is True and session["sameSite"] == "Lax" and session["path"] == "/"
        assert "adaldyk_session" not in page.evaluate("document.cookie")  # invisible to scripts
        page.click("form[action='/logout'] button")
        page.wait_for_url(f"{web.url}/login")
        page.goto(f"{web.url}/account/password")
        page.wait_for_url(f"{web.url}/login?next=%2Faccount%2Fpassword")
