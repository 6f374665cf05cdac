"""The JSON API's refusals: one error shape, declared in /openapi.json; bounded parameters; revoked
tokens; a database outage answered 503 with one log line, not a traceback per request."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.logs import throttled
from adaldyk_bots.storage.models import ApiToken, Appeal
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, TOKEN
from tests.support import ServiceThread, create_api_token, free_port, wait_processed, wait_until

UPDATE = {
    "update_id": 900001,
    "message": {
        "message_id": 1,
        "from": {"id": 5001, "is_bot": False, "first_name": "Айгүл"},
        "chat": {"id": 5001, "type": "private"},
        "date": 1795760000,
        "text": "Зауыттан түтін шығады, тексеріңізші",
    },
}


def _seed_appeal(svc: ServiceThread) -> str:
    event = parse_update_payload(json.dumps(UPDATE, ensure_ascii=False).encode(), account=BOT_ID)
    svc.runtime.intake.store(channel="telegram", account=BOT_ID, events=[event])
    wait_processed(svc.runtime.engine)
    with Session(svc.runtime.engine) as s:
        return s.exec(select(Appeal)).one().number


@pytest.fixture
def served(make_settings: Any, fake_telegram: Any) -> Iterator[tuple[ServiceThread, httpx.Client, str]]:
    settings = make_settings(
        telegram_token=TOKEN, telegram_api_url=fake_telegram.url, telegram_poll_timeout=1, port=free_port()
    )
    token = create_api_token(settings)
    with ServiceThread(settings) as svc:
        number = _seed_appeal(svc)
        with httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
            yield svc, api, number


def _is_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert set(body) == {"detail", "code", "errors"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code
    return body


def test_every_refusal_has_one_shape(served: tuple[ServiceThread, httpx.Client, str]) -> None:
    _svc, api, number = served
    _is_error(api.get("/appeals", headers={"Authorization": ""}), 401, "unauthorized")
    _is_error(api.get("/appeals", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    _is_error(api.get("/appeals/ADL-1999-000001"), 404, "not_found")
    _is_error(api.get(f"/appeals/{number}/messages/999/attachments/0"), 404, "not_found")
    _is_error(api.post(f"/appeals/{number}/status", json={"status": "received"}), 409, "conflict")
    _is_error(api.post(f"/appeals/{number}/status", json={"status": "lost"}), 422, "invalid_request")
    _is_error(api.post(f"/appeals/{number}/unit", json={"unit": "nowhere"}), 404, "not_found")
    _is_error(api.post(f"/appeals/{number}/reply", json={"text": "   "}), 422, "invalid_request")
    _is_error(api.post(f"/appeals/{number}/reply", json={"text": "ok", "sttus": "x"}), 422, "invalid_request")
    _is_error(api.get("/appeals?stauts=open"), 422, "invalid_request")
    _is_error(api.get("/no-such-route"), 404, "not_found")
    _is_error(api.delete("/appeals"), 405, "method_not_allowed")


OUT_OF_BOUNDS = [
    "offset=983423261871276556288",  # a 500 before: SQLite integers are 64-bit
    "offset=-1",
    "limit=0",
    "limit=100000",
    "overdue=perhaps",
    "q=" + "x" * 201,
    "status=" + "s" * 65,
]


def test_out_of_bounds_parameters_are_422_with_the_field(
    served: tuple[ServiceThread, httpx.Client, str],
) -> None:
    _svc, api, _number = served
    for query in OUT_OF_BOUNDS:
        body = _is_error(api.get(f"/appeals?{query}"), 422, "invalid_request")
        assert body["errors"][0]["loc"] == ["query", query.split("=")[0]]


def test_bounded_path_and_body_parameters(served: tuple[ServiceThread, httpx.Client, str]) -> None:
    _svc, api, number = served
    _is_error(api.get(f"/appeals/{number}/messages/{2**31}/attachments/0"), 422, "invalid_request")
    _is_error(api.get(f"/appeals/{'N' * 33}"), 422, "invalid_request")
    _is_error(api.post(f"/appeals/{number}/status", json={"status": "x" * 65}), 422, "invalid_request")
    _is_error(api.post(f"/appeals/{number}/reply", content=b"{not json"), 422, "invalid_request")
    # Text nobody could store on PostgreSQL before (NUL) is accepted and kept readable.
    answered = api.post(f"/appeals/{number}/reply", json={"text": "Жауап\u0000 берілді"})
    assert answered.status_code == 200, answered.text
    assert api.get("/appeals", params={"q": "a\u0000b"}).status_code == 200


def test_openapi_declares_the_error_answers(served: tuple[ServiceThread, httpx.Client, str]) -> None:
    svc, _api, _number = served
    schema = httpx.get(f"{svc.url}/openapi.json").json()
    listing = schema["paths"]["/api/v1/appeals"]["get"]["responses"]
    action = schema["paths"]["/api/v1/appeals/{number}/status"]["post"]["responses"]
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for status in ("401", "422", "503"):
        assert listing[status]["content"]["application/json"]["schema"] == error
    for status in ("404", "409"):
        assert action[status]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_last_used_at_is_written_at_most_once_a_minute(
    served: tuple[ServiceThread, httpx.Client, str],
) -> None:
    svc, api, _number = served

    def last_used() -> Any:
        with Session(svc.runtime.engine) as s:
            return s.exec(select(ApiToken.last_used_at)).one()

    assert api.get("/appeals").status_code == 200
    first = wait_until(last_used, what="the token's first use to be recorded")
    for _ in range(5):
        assert api.get("/appeals").status_code == 200
    assert last_used() == first


def test_token_revoke(make_settings: Any, fake_telegram: Any) -> None:
    settings = make_settings(port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env.update(
        {"ADALDYK_DATABASE_URL": settings.database_url, "ADALDYK_SECRET_KEY": "test-secret-key-0123456789"}
    )

    def adaldyk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adaldyk_bots", *args], env=env, capture_output=True, text=True, timeout=60
        )

    user = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaldyk_bots",
            "user",
            "create",
            "crm",
            "--role",
            "moderator",
            "--password-stdin",
        ],
        env=env,
        input="a-long-password-1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert user.returncode == 0, user.stderr
    created = adaldyk("token", "create", "crm-sync", "--user", "crm")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    with ServiceThread(settings, worker=False) as svc:
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{svc.url}/api/v1/appeals", headers=headers).status_code == 200
        revoked = adaldyk("token", "revoke", "crm-sync")
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked" in revoked.stdout
        _is_error(httpx.get(f"{svc.url}/api/v1/appeals", headers=headers), 401, "unauthorized")
    again = adaldyk("token", "revoke", "crm-sync")
    assert again.returncode == 1 and "no live token" in again.stderr


def test_a_database_outage_is_503_and_one_log_line(
    make_settings: Any, fake_telegram: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A PostgreSQL address where nothing listens: every request meets "connection refused".
    settings = make_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/gone",
        port=free_port(),
        public_url="http://127.0.0.1:9",
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_mode="webhook",
        telegram_webhook_secret="webhook-secret_0123456789",
    )
    throttled.reset()
    caplog.set_level(logging.INFO)
    with ServiceThread(settings, worker=False) as svc:
        for _ in range(20):
            answer = httpx.get(f"{svc.url}/api/v1/appeals", headers={"Authorization": "Bearer adk_x"})
            _is_error(answer, 503, "unavailable")
            assert answer.headers["Retry-After"]
            webhook = httpx.post(
                f"{svc.url}/webhooks/telegram",
                content=json.dumps(UPDATE).encode(),
                headers={"X-Telegram-Bot-Api-Secret-Token": "webhook-secret_0123456789"},
            )
            assert webhook.status_code == 503  # Telegram delivers it again later
            assert httpx.get(f"{svc.url}/healthz").status_code == 503
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    api_lines = [r for r in errors if "database unavailable" in r.getMessage()]
    webhook_lines = [r for r in errors if "webhook /webhooks/telegram" in r.getMessage()]
    assert len(api_lines) == 1 and len(webhook_lines) == 1, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in api_lines + webhook_lines)  # one line, not a traceback
    assert len(errors) == 2, [r.getMessage() for r in errors]


def test_text_search_is_the_inbox_search_in_any_case(served: tuple[ServiceThread, httpx.Client, str]) -> None:
    # The same full-text search as the inbox: Cyrillic in any case and word prefixes, on both databases
    # (a LIKE on SQLite was case-sensitive for Cyrillic and found fewer appeals than PostgreSQL).
    _svc, api, number = served
    for q in ("зауыттан", "ЗАУЫТТАН", "Зауыт", "түтін", number, number.lower()):
        body = api.get("/appeals", params={"q": q}).json()
        assert [item["number"] for item in body["items"]] == [number], q
        assert body["total"] == 1
    assert api.get("/appeals", params={"q": "орман"}).json()["total"] == 0


def test_a_parameter_given_twice_is_refused(served: tuple[ServiceThread, httpx.Client, str]) -> None:
    # Found by schemathesis: `?status=a&status=b` was answered as if only the last had been asked for.
    _svc, api, _number = served
    answer = api.get("/appeals?status=received&status=closed")
    body = _is_error(answer, 422, "invalid_request")
    assert body["errors"][0]["loc"] == ["query", "status"] and "more than once" in body["detail"]
