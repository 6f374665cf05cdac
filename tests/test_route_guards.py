"""Every route of the app, walked from `app.routes` instead of listed by hand, so that a route added by a
later issue is held to the same rules (issue 7): a staff route needs a login; a state-changing page
refuses a request without the CSRF token (403); an auditor is refused every change (403), on pages and in
the JSON API; and an appeal outside the user's scope answers exactly as a number that does not exist,
on every route that names an appeal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlmodel import Session, col, func, select

from adaldyk_bots.storage.models import Appeal, AppealEvent, AppealNote, Message, OutboxItem, StaffUser
from tests.web_support import WebApp, create_user, load_units, login, seed_appeal, token_for

MISSING = "ADL-2020-999999"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Not staff routes: platforms sign their webhooks (tests/test_webhooks.py), citizens have no account.
NOT_STAFF = ("/webhooks/", "/public/", "/static/")
# Open to anyone: the login form itself, liveness, and the API's description.
OPEN = frozenset({"/login", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# An auditor still ends their own session and changes their own password.
OWN_ACCOUNT = frozenset({"/logout", "/account/password"})
# Every form field any workspace action reads, with a value it accepts: a page route ignores the others,
# so one form reaches every handler past its validation (a new field only needs adding here).
FORM = {
    "text": "Жауап",
    "status": "in_progress",
    "reason": "себеп",
    "unit": "cerc_astana",
    "assignee": "",
    "comment": "қайта қараңыз",
    "days": "5",
    "decision": "spam",
    "into": MISSING,
    "outcome": "орындалды",
}
# The JSON API forbids unknown fields: a body per write route that names an appeal.
API_BODIES: dict[str, dict[str, Any] | None] = {
    "/api/v1/appeals/{number}/status": {"status": "in_progress"},
    "/api/v1/appeals/{number}/reply": {"text": "Ответ"},
    "/api/v1/appeals/{number}/answer/approve": None,
    "/api/v1/appeals/{number}/answer/return": {"comment": "Переделать"},
    "/api/v1/appeals/{number}/extend": {"reason": "Нужна экспертиза", "working_days": 5},
    "/api/v1/appeals/{number}/unit": {"unit": "cerc_astana"},
    "/api/v1/appeals/{number}/triage": {"decision": "spam", "reason": "реклама"},
    "/api/v1/appeals/{number}/merge": {"into": MISSING, "reason": "дубликат"},
    "/api/v1/appeals/{number}/forward": {"body": {"code": "agriculture"}, "reason": "не наша компетенция"},
}


@dataclass
class World:
    web: WebApp
    mine: str  # olga's department's appeal
    hidden: str  # another department's
    ids: dict[str, str]  # path parameters other than the number: rows of the hidden appeal

    def routes(self) -> list[tuple[str, str]]:
        """(method, path template) of every route of the app, with its routers' prefixes. Since FastAPI
        0.137 `app.routes` holds an included router as one opaque entry: `iter_route_contexts` walks into
        them (a loop over `app.routes` alone would see /healthz and check nothing)."""
        return sorted(
            (method, context.path)
            for context in iter_route_contexts(self.web.app.routes)
            if isinstance(context.original_route, APIRoute) and context.path
            for method in context.methods or ()
        )

    def path(self, template: str, number: str) -> str:
        return re.sub(
            r"\{(\w+)(?::\w+)?\}",
            lambda m: number if m.group(1) == "number" else self.ids.get(m.group(1), "1"),
            template,
        )

    def api(self, username: str) -> httpx.Client:
        token = token_for(self.web.runtime.engine, username)
        return self.web.new_client(headers={"Authorization": f"Bearer {token}"})

    def changes(self) -> tuple[int, ...]:
        """What a refused request must leave as it was."""
        with Session(self.web.runtime.engine) as s:
            return (
                s.exec(select(func.count()).select_from(AppealEvent)).one(),
                s.exec(select(func.count()).select_from(AppealNote)).one(),
                s.exec(select(func.count()).select_from(OutboxItem)).one(),
                s.exec(select(func.count()).select_from(Appeal)).one(),
                s.exec(select(func.count()).select_from(StaffUser)).one(),
            )


def _staff(template: str) -> bool:
    return template not in OPEN and not template.startswith(NOT_STAFF)


def _api(template: str) -> bool:
    return template.startswith("/api/")


@pytest.fixture
def world(make_settings: Any) -> Iterator[World]:
    with WebApp(make_settings()) as web:
        engine = web.runtime.engine
        load_units(engine)
        mine = seed_appeal(web.runtime, chat=1, text="Астанада ағаштар кесілуде", unit_code="cerc_astana")
        hidden = seed_appeal(
            web.runtime, chat=2, text="В Алматы вырубают деревья", unit_code="cerc_almaty_city"
        )
        for username, role, unit in (
            ("admin", "admin", None),
            ("aida", "auditor", None),
            ("olga", "officer", "cerc_astana"),
        ):
            create_user(engine, username, role, unit_code=unit)
        with Session(engine) as s:
            appeal_id = s.exec(select(Appeal.id).where(Appeal.number == hidden)).one()
            message = s.exec(select(Message.id).where(Message.appeal_id == appeal_id)).first()
            outbox = s.exec(
                select(OutboxItem.id).where(OutboxItem.appeal_id == appeal_id).order_by(col(OutboxItem.id))
            ).first()
        assert message is not None and outbox is not None
        yield World(web, mine, hidden, {"message_id": str(message), "outbox_id": str(outbox), "index": "0"})


def test_the_walk_sees_the_routes_of_later_issues(world: World) -> None:
    # Guards the walk itself: were routes missing (a router not included), it would prove nothing.
    paths = {path for _, path in world.routes()}
    for expected in (
        "/appeals/{number}/reply",
        "/appeals/{number}/triage",
        "/appeals/{number}/answer/approve",
        "/appeals/{number}/corruption",
        "/appeals/new",
        "/tasks/{task_id}/done",
        "/notices/read-all",
        "/admin/users/{user_id}",
        "/api/v1/appeals/{number}/unit",
    ):
        assert expected in paths, expected


def test_every_staff_route_needs_a_login(world: World) -> None:
    with world.web.new_client() as anonymous:
        for method, template in world.routes():
            if not _staff(template):
                continue
            path = world.path(template, world.mine)
            form = FORM if method in WRITE_METHODS and not _api(template) else None
            answer = anonymous.request(method, path, data=form, follow_redirects=False)
            if _api(template):
                assert answer.status_code == 401, (method, path, answer.status_code)
            else:
                assert answer.status_code == 303, (method, path, answer.status_code)
                assert answer.headers["location"].startswith("/login"), (method, path)


def test_every_state_changing_page_refuses_a_missing_or_wrong_csrf_token(world: World) -> None:
    csrf = login(world.web.client, "admin")  # an admin may do everything: only the token is missing
    before = world.changes()
    checked = []
    for method, template in world.routes():
        if method not in WRITE_METHODS or not _staff(template) or _api(template):
            continue
        path = world.path(template, world.mine)
        for token in (None, "wrong-" + csrf[6:]):
            sent = FORM | ({"csrf_token": token} if token else {})
            answer = world.web.client.request(method, path, data=sent, follow_redirects=False)
            assert answer.status_code == 403, (method, path, token, answer.status_code, answer.text[:200])
        checked.append(path)
    # The login form has no session yet: its own signed token (tests/test_auth.py), refused the same.
    with world.web.new_client() as stranger:
        answer = stranger.post("/login", data={"username": "admin", "password": "x"})
        assert answer.status_code == 403
    assert world.changes() == before
    assert len(checked) >= 20, checked


def test_an_auditor_is_refused_every_change_on_pages_and_in_the_api(world: World) -> None:
    csrf = login(world.web.client, "aida")
    before = world.changes()
    pages, api_routes = [], []
    with world.api("aida") as api:
        for method, template in world.routes():
            if method not in WRITE_METHODS or not _staff(template) or template in OWN_ACCOUNT:
                continue
            path = world.path(template, world.mine)
            if _api(template):
                body = API_BODIES.get(template, {})
                answer = api.request(method, path, json=body)
                assert answer.status_code == 403 and answer.json()["code"] == "forbidden", (
                    method,
                    path,
                    answer.status_code,
                    answer.text[:200],
                )
                api_routes.append(path)
            else:
                answer = world.web.client.request(
                    method, path, data=FORM | {"csrf_token": csrf}, follow_redirects=False
                )
                assert answer.status_code == 403, (method, path, answer.status_code, answer.text[:200])
                pages.append(path)
    assert world.changes() == before
    assert len(pages) >= 20 and len(api_routes) >= 8, (pages, api_routes)


def _same(hidden: httpx.Response, missing: httpx.Response, number: str, what: str) -> None:
    assert hidden.status_code == missing.status_code, (what, hidden.status_code, missing.status_code)
    assert hidden.text.replace(number, "N") == missing.text.replace(MISSING, "N"), what
    ignore = ("date", "content-length", "location")
    assert {k: v for k, v in hidden.headers.items() if k not in ignore} == {
        k: v for k, v in missing.headers.items() if k not in ignore
    }, what
    assert hidden.headers.get("location", "").replace(number, "N") == missing.headers.get(
        "location", ""
    ).replace(MISSING, "N"), what


def test_another_departments_appeal_is_a_missing_number_on_every_route_that_names_one(world: World) -> None:
    csrf = login(world.web.client, "olga")
    before = world.changes()
    statuses: dict[str, int] = {}
    with world.api("olga") as api:
        for method, template in world.routes():
            if "{number}" not in template or not _staff(template):
                continue
            hidden_path, missing_path = world.path(template, world.hidden), world.path(template, MISSING)
            if _api(template):
                if method in WRITE_METHODS:
                    assert template in API_BODIES, f"give {template} a valid body in API_BODIES"
                body = API_BODIES.get(template)
                hidden = api.request(method, hidden_path, json=body)
                missing = api.request(method, missing_path, json=body)
            else:
                data = FORM | {"csrf_token": csrf} if method in WRITE_METHODS else None
                hidden = world.web.client.request(method, hidden_path, data=data, follow_redirects=False)
                missing = world.web.client.request(method, missing_path, data=data, follow_redirects=False)
            _same(hidden, missing, world.hidden, f"{method} {template}")
            statuses[f"{method} {template}"] = hidden.status_code
    # Only a refusal by role, the same whichever the appeal (triage and corruption reports are the project
    # office's), may differ from 404; nothing was done to the hidden appeal.
    by_role = {
        "POST /appeals/{number}/triage": 303,  # back to the page with error=t_role
        "POST /api/v1/appeals/{number}/triage": 403,
        "POST /appeals/{number}/corruption": 403,
    }
    assert {k: v for k, v in statuses.items() if v != 404} == by_role, statuses
    assert world.changes() == before
