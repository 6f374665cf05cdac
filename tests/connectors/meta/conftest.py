"""The fake Graph API for the Meta tests: a Page, an Instagram account (Instagram Login) and a WhatsApp
number, started fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.meta.fake import FakeGraph
from tests.connectors.meta import APP_SECRET, IG_ID, IG_TOKEN, PAGE_ID, PAGE_TOKEN, WA_ID, WA_TOKEN


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    server = FakeGraph(lost_answer_delay=1.5, app_secret=APP_SECRET)
    server.start()
    server.add_page(PAGE_ID, PAGE_TOKEN)
    server.add_instagram(IG_ID, IG_TOKEN)
    server.add_whatsapp(WA_ID, WA_TOKEN)
    for name in ("adaldyk_appeal_registered", "adaldyk_status_changed", "adaldyk_answer_ready"):
        server.approve_template(name)
    try:
        yield server
    finally:
        server.stop()
