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
from typing import Any

from sqlalchemy import Engine

from adaldyk_bots.accounts import create_user as _create_user
from adaldyk_bots.accounts import digest
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, StaffUser

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
    from sqlmodel import select

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
