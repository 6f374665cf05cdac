"""Helpers for workspace tests: staff users, API tokens for them, and logging in through the real form.

create_user(engine, "olga", "officer", unit_code="almaty-dept") -> user id
token_for(engine, "olga") -> a bearer token acting with olga's rights
csrf = login(client, "olga")           # any httpx.Client / TestClient with base_url = the app
client.post("/appeals/ADL-…/reply", data={"text": "…", "csrf_token": csrf})
csrf_of(html) -> the hidden csrf_token of a page
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine
from sqlmodel import col, select

from adaldyk_bots.accounts import create_user as _create_user
from adaldyk_bots.accounts import digest
from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, Appeal, StaffUser
from adaldyk_bots.web import deps
from adaldyk_bots.web.app import create_app
from tests.support import free_port, wait_until

PASSWORD = "correct-horse-battery-staple"
_CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"|value="([^"]+)"\s+name="csrf_token"')
_META = re.compile(r'<meta\s+name="csrf-token"\s+content="([^"]+)"')


def create_user(
    engine: Engine,
    username: str,
    role: str = "moderator",
    unit_code: str | None = None,
    *,
    password: str = PASSWORD,
    full_name: str = "",
) -> int:
    """A staff user (the unit must exist: org.sync_units or a Unit row); returns its id."""
    with unit_of_work(engine) as s:
        user = _create_user(
            s,
            username=username,
            role=role,
            unit_code=unit_code,
            password=password,
            full_name=full_name,
            now=utcnow(),
        )
        assert user.id is not None
        return user.id


def token_for(engine: Engine, username: str, name: str | None = None) -> str:
    """A bearer token acting for an existing user."""
    token = "adk_test_" + secrets.token_urlsafe(24)
    with unit_of_work(engine) as s:
        user_id = s.exec(select(StaffUser.id).where(StaffUser.username == username)).one()
        s.add(
            ApiToken(name=name or username, token_sha256=digest(token), created_at=utcnow(), user_id=user_id)
        )
    return token


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (its hidden form field, or the meta tag scripts read)."""
    found = _CSRF.search(html) or _META.search(html)
    if found is None:
        raise AssertionError("the page carries no csrf_token")
    return next(g for g in found.groups() if g)


def login(client: Any, username: str, password: str = PASSWORD, *, next_path: str | None = None) -> str:
    """Log in through GET/POST /login as a browser does (the client keeps the cookies); returns the
    session's CSRF token for later POSTs (form field csrf_token or header X-CSRF-Token)."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    data = {"username": username, "password": password, "csrf_token": csrf_of(form.text)}
    if next_path:
        data["next"] = next_path
    answer = client.post("/login", data=data, follow_redirects=False)
    assert answer.status_code == 303, f"login as {username} failed: {answer.status_code} {answer.text[:300]}"
    page = client.get("/account/password")
    assert page.status_code == 200, page.text[:300]
    return csrf_of(page.text)


def load_units(engine: Engine, settings: Settings | None = None) -> None:
    """The org tree of config/org.toml, as `adaldyk migrate` loads it."""
    from adaldyk_bots.org import ORG_FILE, sync_units
    from adaldyk_bots.settings import DEFAULT_CONFIG_DIR

    config = settings.config_dir if settings is not None else DEFAULT_CONFIG_DIR
    with unit_of_work(engine) as s:
        sync_units(s, config / ORG_FILE)


def seed_appeal(
    runtime: Any, *, chat: int = 1, text: str = "Во дворе вырубают деревья.", unit_code: str | None = None
) -> str:
    """A new appeal from a Telegram citizen through the real workflow (and its unit, if given)."""
    message = InboundMessage(
        channel="telegram",
        account="1",
        chat_id=str(chat),
        message_key=secrets.token_hex(6),
        sender_id=str(chat),
        sent_at=utcnow(),
        text=text,
    )
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, message, raw_event_id=None)
    with unit_of_work(runtime.engine) as s:
        appeal = s.exec(select(Appeal).order_by(col(Appeal.id).desc())).first()
        assert appeal is not None
        if unit_code:
            runtime.workflow.assign_unit(s, appeal, unit_code, actor="system")
        return appeal.number


class Clock:
    """The app's `deps.now`, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class WebApp:
    """The real web app (create_app) served by uvicorn on loopback in a thread, its clock settable."""

    def __init__(self, settings: Settings, *, client_headers: dict[str, str] | None = None) -> None:
        port = settings.port if settings.port != 8080 else free_port()
        self.settings = settings.model_copy(update={"port": port})
        self.runtime = Runtime.build(self.settings, factories={})
        self.app = create_app(self.runtime)
        self.clock = Clock()
        self.app.dependency_overrides[deps.now] = self.clock
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, headers=client_headers or {})

    def new_client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **kwargs)

    def __enter__(self) -> WebApp:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=15, what="the web app to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.runtime.engine.dispose()
