"""Playwright driving Debian's Chromium (`/usr/bin/chromium`, package `chromium`): Playwright's own
browser download cannot work on this network, so the browser is the system's, named by path.

`.ci/run` installs the package and sets ADALDYK_TEST_REQUIRE_BROWSER=1: there a missing browser fails
the run. Elsewhere (a laptop without Chromium) the browser tests are skipped with the reason."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

# The browser talks to loopback only (the network is closed): every host name but 127.0.0.1 fails to
# resolve, and Chromium's own background traffic (updates, safe browsing, sync) is switched off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    explicit = os.environ.get("ADALDYK_TEST_CHROMIUM")
    if explicit:
        return explicit
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium")


# Per module, not per session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and a later test calling asyncio.run() there would fail ("cannot be called from a
# running event loop"). Closing it after each browser module keeps the rest of the suite unaffected.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        message = "no Chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("ADALDYK_TEST_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies) per test; page errors (uncaught script exceptions) fail it."""
    context = browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"
