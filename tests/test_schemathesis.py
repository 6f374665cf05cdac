"""A bounded schemathesis run over /openapi.json against the real service on loopback: no 5xx, and
every answer (errors included) matches the schema the API publishes. Deterministic (derandomized,
fixed seed), a fixed number of examples per operation; on whichever database the suite runs on."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

# Imported while the test modules are collected, not lazily inside the test: schemathesis is a pytest
# plugin, so pytest compiles (assertion-rewrites) its modules on first import, and on CPython 3.11 that
# compile fails with "AST constructor recursion depth mismatch" once Playwright's greenlets (the browser
# tests, earlier in the run) have switched stacks on this thread.
import schemathesis.specs.openapi.schemas  # noqa: F401
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal
from connectors.telegram.parser import parse_update_payload
from tests.conftest import BOT_ID, TOKEN
from tests.support import ServiceThread, create_api_token, free_port, wait_processed

EXAMPLES_PER_OPERATION = 50


@pytest.fixture
def service(make_settings: Any, fake_telegram: Any) -> Iterator[tuple[ServiceThread, str]]:
    settings = make_settings(
        telegram_token=TOKEN, telegram_api_url=fake_telegram.url, telegram_poll_timeout=1, port=free_port()
    )
    token = create_api_token(settings)
    with ServiceThread(settings) as svc:
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "from": {"id": 7001, "is_bot": False, "first_name": "Әсел"},
                "chat": {"id": 7001, "type": "private"},
                "date": 1795760000,
                "text": "Көлде балық қырылып жатыр",
            },
        }
        event = parse_update_payload(json.dumps(update).encode(), account=BOT_ID)
        svc.runtime.intake.store(channel="telegram", account=BOT_ID, events=[event])
        wait_processed(svc.runtime.engine)
        yield svc, token


def test_api_answers_match_its_schema(service: tuple[ServiceThread, str]) -> None:
    # Driven from here rather than through schemathesis' pytest plugin, which does not run on pytest 9.
    svc, token = service
    with Session(svc.runtime.engine) as s:
        number = s.exec(select(Appeal.number)).one()
    api = schemathesis.openapi.from_url(f"{svc.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 7
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        # Schema-valid and schema-violating requests, each also aimed at the appeal that exists.
        variants = [operation.as_strategy(mode) for mode in GenerationMode]
        if "{number}" in operation.path:
            variants += [
                operation.as_strategy(mode, path_parameters={"number": number}) for mode in GenerationMode
            ]

        @seed(20261201)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(variants))
        def call(case: Any) -> None:
            answer = case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
            seen[(operation.path, answer.status_code)] += 1

        call()
    assert not [key for key in seen if key[1] >= 500], seen
    # The run reached past the refusals: real answers and schema refusals both happened.
    assert seen[("/api/v1/appeals", 200)] and seen[("/api/v1/appeals", 422)], seen
    assert seen[("/api/v1/appeals/{number}", 200)] and seen[("/api/v1/appeals/{number}/reply", 200)], seen
