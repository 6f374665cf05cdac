"""A running service with the three Meta channels on, against the loopback fake Graph API
(connectors/meta/fake.py), which also delivers signed webhooks to the service."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest

from adaldyk_bots.settings import DEFAULT_CONFIG_DIR
from connectors.meta.connector import TEMPLATES_FILE
from connectors.meta.fake import FakeGraph
from connectors.meta.send import WhatsAppTemplates
from tests.connectors.meta import APP_SECRET as OUT_APP_SECRET
from tests.connectors.meta import IG_ID, IG_TOKEN, PAGE_TOKEN, WA_ID, WA_TOKEN
from tests.connectors.meta import PAGE_ID as OUT_PAGE_ID
from tests.support import ServiceThread, free_port

APP_SECRET = "meta-app-secret-0123456789abcdef"
IG_APP_SECRET = "instagram-app-secret-fedcba9876543210"
VERIFY_TOKEN = "meta-verify-token-4242"
PAGE, IG, WABA, WA_NUMBER = "1234567890123", "17841400000000001", "102290129340398", "106540352242922"
TOKENS = {"facebook": "EAAfakePageToken", "instagram": "IGfakeToken", "whatsapp": "EAAfakeWhatsAppToken"}
ACCOUNTS = {"facebook": PAGE, "instagram": IG, "whatsapp": WA_NUMBER}
# The templates of config/whatsapp_templates.toml, approved at the fake as WhatsApp Manager would have.
SHIPPED_TEMPLATES = WhatsAppTemplates.load(DEFAULT_CONFIG_DIR / TEMPLATES_FILE)


def sign_body(body: bytes, secret: str) -> dict[str, str]:
    """Meta's two signature headers over the exact bytes sent."""
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


def messaging_item(sender: str, account: str, mid: str, text: str, at_ms: int) -> dict[str, Any]:
    """One Messenger `messages` item (developers.facebook.com/docs/messenger-platform/reference/
    webhook-events/messages)."""
    return {
        "sender": {"id": sender},
        "recipient": {"id": account},
        "timestamp": at_ms,
        "message": {"mid": mid, "text": text},
    }


@pytest.fixture
def fake_meta() -> Iterator[FakeGraph]:
    with FakeGraph(app_secret=APP_SECRET) as fake:
        fake.add_page(PAGE, TOKENS["facebook"])
        fake.add_instagram(IG, TOKENS["instagram"])
        fake.add_whatsapp(WA_NUMBER, TOKENS["whatsapp"], waba_id=WABA)
        # Recorded payloads carry old timestamps: outside 24 h WhatsApp notices go as approved templates.
        for name in SHIPPED_TEMPLATES.names():
            fake.approve_template(name)
        yield fake


def meta_settings(make_settings: Any, fake: FakeGraph, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "port": free_port(),
        "dispatch_interval_seconds": 0.1,
        "meta_app_secret": APP_SECRET,
        "instagram_app_secret": IG_APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "graph_api_url": fake.api_url,
        "facebook_page_id": PAGE,
        "facebook_page_token": TOKENS["facebook"],
        "instagram_account_id": IG,
        "instagram_token": TOKENS["instagram"],
        "whatsapp_phone_number_id": WA_NUMBER,
        "whatsapp_token": TOKENS["whatsapp"],
        "meta_reconcile_seconds": 3600,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def meta_service(make_settings: Any, fake_meta: FakeGraph) -> Iterator[ServiceThread]:
    with ServiceThread(meta_settings(make_settings, fake_meta)) as service:
        fake_meta.webhook_url = f"{service.url}/webhooks/meta"
        yield service


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    """The fake Graph API of the outbound tests (connectors/meta/fake.py): a Page, an Instagram account
    and a WhatsApp number with its approved templates, started fresh for each test."""
    server = FakeGraph(lost_answer_delay=1.5, app_secret=OUT_APP_SECRET)
    server.start()
    server.add_page(OUT_PAGE_ID, PAGE_TOKEN)
    server.add_instagram(IG_ID, IG_TOKEN)
    server.add_whatsapp(WA_ID, WA_TOKEN)
    for name in SHIPPED_TEMPLATES.names():
        server.approve_template(name)
    try:
        yield server
    finally:
        server.stop()
