"""The core's webhook pipeline (handshake → verify → route → store → 2xx), through a test-only
connector whose two channels share one endpoint, as Facebook, Instagram and WhatsApp share Meta's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from adaldyk_bots.ports import WebhookRoute
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.models import Appeal, RawEvent
from adaldyk_bots.web.app import create_app
from adaldyk_bots.webhooks import WebhookConfigError, hub_signature_valid, same_secret
from tests.support import ServiceThread, free_port, wait_processed, wait_until
from tests.twin_connector import SIGNATURE_HEADER, TWIN_PATH, TWINS, sign

APP_SECRET = "twin-app-secret-0123456789"
VERIFY_TOKEN = "twin-verify-token"


def _body(kind: str, *messages: tuple[str, str, str]) -> bytes:
    entry = {
        "id": "page-1",
        "time": 1795760000,
        "messaging": [
            {"mid": mid, "from": sender, "text": words, "time": 1795760000} for mid, sender, words in messages
        ],
    }
    return json.dumps({"object": kind, "entry": [entry]}, ensure_ascii=False).encode()


def _post(svc: Any, body: bytes, *, secret: str = APP_SECRET, signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature or sign(body, secret)}
    return httpx.post(f"{svc.url}{TWIN_PATH}", content=body, headers=headers)


def _rows(engine: Any) -> list[RawEvent]:
    with Session(engine) as s:
        return list(s.exec(select(RawEvent).order_by(RawEvent.id)))  # type: ignore[arg-type]


@pytest.fixture
def svc(make_settings: Any) -> Any:
    settings = make_settings(
        port=free_port(),
        twin_app_secret=APP_SECRET,
        twin_verify_token=VERIFY_TOKEN,
        dispatch_interval_seconds=0.1,
    )
    with ServiceThread(settings, factories=TWINS) as service:
        yield service


def test_one_endpoint_feeds_two_channels_through_to_their_acknowledgements(svc: Any) -> None:
    alpha = _post(svc, _body("alpha", ("m-1", "u-1", "Жалоба на свалку у реки")))
    beta = _post(
        svc, _body("beta", ("m-1", "u-2", "Өзен жағасында қоқыс"), ("m-2", "u-3", "Вырубка в парке"))
    )
    assert (alpha.status_code, alpha.content) == (200, b"")
    assert (beta.status_code, beta.content) == (200, b"")
    engine = svc.runtime.engine
    rows = _rows(engine)
    # The same message id in two channels is two items: the dedup key is per (channel, account).
    assert [(r.channel, r.account, r.dedup_key) for r in rows] == [
        ("alpha", "page-1", "mid:m-1"),
        ("beta", "page-1", "mid:m-1"),
        ("beta", "page-1", "mid:m-2"),
    ]
    wait_processed(engine)
    with Session(engine) as s:
        channels = sorted(a.channel for a in s.exec(select(Appeal)))
    assert channels == ["alpha", "beta", "beta"]
    alpha_c, beta_c = svc.runtime.connectors["alpha"], svc.runtime.connectors["beta"]
    wait_until(lambda: len(alpha_c.sent) == 1 and len(beta_c.sent) == 2, what="both channels' acks")
    assert {t.chat_id for t, _ in beta_c.sent} == {"u-2", "u-3"}
    assert [d.channel for d in alpha_c.stored] == ["alpha"]  # on_stored: after the commit


def test_a_redelivered_body_is_stored_once(svc: Any) -> None:
    body = _body("alpha", ("m-9", "u-9", "Дым над городом"))
    for _ in range(3):
        assert _post(svc, body).status_code == 200
    assert len(_rows(svc.runtime.engine)) == 1


def test_handshake_answers_the_challenge_only_to_the_right_verify_token(svc: Any) -> None:
    url = f"{svc.url}{TWIN_PATH}"
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = httpx.get(url, params=good)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert httpx.get(url, params={**good, "hub.verify_token": "guess"}).status_code == 403
    assert httpx.get(url).status_code == 403
    assert _rows(svc.runtime.engine) == []


def test_forged_bodies_are_refused_and_nothing_is_stored(svc: Any) -> None:
    body = _body("alpha", ("m-1", "u-1", "text"))
    other = _body("alpha", ("m-2", "u-1", "other text"))
    assert _post(svc, body, secret="not-the-app-secret").status_code == 403
    assert _post(svc, body, signature=sign(other, APP_SECRET)).status_code == 403  # signed another body
    assert _post(svc, body, signature="sha1=" + sign(body, APP_SECRET)[7:]).status_code == 403
    assert httpx.post(f"{svc.url}{TWIN_PATH}", content=body).status_code == 403  # no signature
    # A body no route recognizes is refused too when it is not signed.
    assert _post(svc, b"not json", secret="nope").status_code == 403
    assert _rows(svc.runtime.engine) == []


@pytest.mark.parametrize(
    ("body", "channel", "reason"),
    [
        (b'{"object": "beta", "entry": "boom"}', "beta", "webhook.route_error: TypeError"),  # route raises
        (b'{"object": "gamma", "entry": []}', "alpha", "webhook.unknown_kind"),  # no route has that key
        (b'{"object": "beta", "entr', "alpha", "webhook.unknown_kind"),  # cut short: no key to read
        (b"[" * 100_000 + b"]" * 100_000, "alpha", "webhook.unknown_kind"),  # deeper than parsers go
    ],
)
def test_an_authentic_body_nobody_can_read_is_kept_quarantined_once(
    svc: Any, body: bytes, channel: str, reason: str
) -> None:
    for _ in range(2):
        assert _post(svc, body).status_code == 200  # authentic: the platform must not send it forever
    (row,) = _rows(svc.runtime.engine)
    assert row.state == "quarantined" and row.reason.startswith(reason)
    assert row.dedup_key == f"body:{hashlib.sha256(body).hexdigest()}" and row.payload == body
    # The chosen route's channel; with no key, the first route whose verify accepts the body.
    assert (row.channel, row.account) == (channel, "page-1")


def test_a_body_for_several_accounts_is_stored_under_each(svc: Any) -> None:
    doc = json.loads(_body("alpha", ("m-1", "u-1", "first page")))
    doc["entry"].append(
        {"id": "page-2", "messaging": [{"mid": "m-1", "from": "u-1", "text": "second", "time": 1}]}
    )
    assert _post(svc, json.dumps(doc).encode()).status_code == 200
    assert [(r.channel, r.account) for r in _rows(svc.runtime.engine)] == [
        ("alpha", "page-1"),
        ("alpha", "page-2"),
    ]


def test_database_refusing_the_write_is_503_then_the_redelivery_is_stored(svc: Any) -> None:
    body = _body("beta", ("m-5", "u-5", "Шум от завода ночью"))
    other = make_engine(svc.settings.database_url)
    try:
        with other.begin() as conn:
            conn.execute(text("ALTER TABLE raw_event RENAME TO raw_event_away"))
        try:
            answer = _post(svc, body)
            assert answer.status_code == 503 and answer.content == b""  # the platform sends it again
        finally:
            with other.begin() as conn:
                conn.execute(text("ALTER TABLE raw_event_away RENAME TO raw_event"))
    finally:
        other.dispose()
    assert _post(svc, body).status_code == 200
    assert [r.dedup_key for r in _rows(svc.runtime.engine)] == ["mid:m-5"]


def test_routes_that_cannot_share_a_path_stop_start_up(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings(), factories={})

    def route(key: str | None, dispatch: Any = None) -> WebhookRoute:
        return WebhookRoute(
            path="/webhooks/shared",
            verify=lambda _request: True,
            route=lambda _body: [],
            quarantine_as=(key or "x", "acc"),
            dispatch=dispatch,
            key=key,
        )

    def kind(_body: bytes) -> str | None:
        return None

    class Declares:
        def __init__(self, *routes: WebhookRoute) -> None:
            self.routes = routes

        def webhooks(self) -> list[WebhookRoute]:
            return list(self.routes)

    for routes in (
        (route("a"), route("b")),  # no dispatch function
        (route("a", kind), route("b", lambda body: None)),  # two different dispatch functions
        (route("a", kind), route("a", kind)),  # the same key twice
    ):
        runtime.connectors = {"one": Declares(routes[0]), "two": Declares(routes[1])}  # type: ignore[dict-item]
        with pytest.raises(WebhookConfigError, match="/webhooks/shared"):
            create_app(runtime)
    runtime.connectors = {"one": Declares(route("a", kind)), "two": Declares(route("b", kind))}  # type: ignore[dict-item]
    create_app(runtime)
    runtime.engine.dispose()


def test_signature_and_secret_helpers() -> None:
    body = b'{"object": "page"}'
    good = sign(body, APP_SECRET)
    assert hub_signature_valid(body, good, APP_SECRET)
    assert hub_signature_valid(body, good.upper().replace("SHA256=", "sha256="), APP_SECRET)
    assert not hub_signature_valid(body + b" ", good, APP_SECRET)
    assert not hub_signature_valid(body, None, APP_SECRET)
    assert not hub_signature_valid(body, good[7:], APP_SECRET)  # without "sha256="
    assert same_secret("abc", "abc") and same_secret(b"abc", "abc")
    assert not same_secret(None, "abc") and not same_secret("abd", "abc") and not same_secret("", "abc")
