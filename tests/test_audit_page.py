"""The auditor's page /audit over real HTTP: auditors and admins only (others 404, no session -> login),
filters, newest first, keyset pages, Kazakh/Russian/English, and the log's text shown as text."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adaldyk_bots import accounts, audit
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import StaffUser
from adaldyk_bots.web.deps import SESSION_COOKIE
from tests.support import ServiceThread, free_port
from tests.web_support import create_user


@pytest.fixture
def svc(make_settings: Any) -> Iterator[ServiceThread]:
    with ServiceThread(make_settings(port=free_port()), worker=False) as service:
        yield service


def _client_for(svc: ServiceThread, username: str) -> httpx.Client:
    """A browser with a real workspace session of `username` (accounts.start_session, as POST /login does)."""
    from sqlmodel import select

    with unit_of_work(svc.runtime.engine) as s:
        user = s.exec(select(StaffUser).where(StaffUser.username == username)).one()
        cookie, _row = accounts.start_session(s, user, address="127.0.0.1", user_agent="test", now=utcnow())
    return httpx.Client(base_url=svc.url, cookies={SESSION_COOKIE: cookie})


def _log(engine: Any, *events: dict[str, Any]) -> None:
    for event in events:
        with unit_of_work(engine) as s:
            audit.record(s, **event)


def test_only_auditors_and_admins_see_the_log(svc: ServiceThread) -> None:
    engine = svc.runtime.engine
    for name, role in (("aigerim", "auditor"), ("boss", "admin"), ("marat", "moderator")):
        create_user(engine, name, role)
    _log(engine, {"actor": "user:marat", "action": "appeal.view", "subject": "ADL-2026-000001"})
    for name in ("aigerim", "boss"):
        with _client_for(svc, name) as client:
            page = client.get("/audit?lang=en")
            assert page.status_code == 200, page.text[:300]
            assert "ADL-2026-000001" in page.text and "Opened the appeal" in page.text
    with _client_for(svc, "marat") as client:
        refused = client.get("/audit")
        missing = client.get("/no-such-page")
        assert refused.status_code == 404 == missing.status_code
        assert "ADL-2026-000001" not in refused.text
    with httpx.Client(base_url=svc.url) as anonymous:
        answer = anonymous.get("/audit", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_filters_newest_first_and_pages(svc: ServiceThread) -> None:
    engine = svc.runtime.engine
    create_user(engine, "aigerim", "auditor")
    _log(
        engine,
        *[
            {
                "actor": "user:marat",
                "action": "appeal.view",
                "subject": f"ADL-2026-{i:06d}",
                "address": "10.0.0.7",
            }
            for i in range(1, 61)
        ],
        {
            "actor": "user:olga",
            "action": "appeal.status",
            "subject": "ADL-2026-000005",
            "detail": {"to": "answered"},
        },
        {"actor": "system", "action": "login_failed", "subject": "olga", "address": "10.9.9.9"},
    )
    with _client_for(svc, "aigerim") as client:
        first = client.get("/audit?lang=en")
        ids = [int(x) for x in _ids(first.text)]
        assert ids == sorted(ids, reverse=True) and ids[0] == 62 and len(ids) == 50
        older = client.get(_next_url(first.text))
        assert [int(x) for x in _ids(older.text)] == list(range(12, 0, -1))
        assert _next_url(older.text) is None
        # Filters: who, what, which appeal (any case), and dates in the service's zone.
        by_actor = client.get("/audit", params={"actor": "user:olga"})
        assert _ids(by_actor.text) == ["61"]
        by_action = client.get("/audit", params={"action": "login_failed"})
        assert _ids(by_action.text) == ["62"] and "10.9.9.9" in by_action.text
        by_subject = client.get("/audit", params={"subject": "adl-2026-000005"})
        assert _ids(by_subject.text) == ["61", "5"]
        today = utcnow().astimezone(svc.settings.tz).date()
        in_range = client.get(
            "/audit", params={"from": today.isoformat(), "to": today.isoformat(), "actor": "system"}
        )
        assert _ids(in_range.text) == ["62"]
        tomorrow = (today + timedelta(days=1)).isoformat()
        assert _ids(client.get("/audit", params={"from": tomorrow}).text) == []
        bad = client.get("/audit", params={"from": "31.12.2026", "lang": "en"})
        assert bad.status_code == 200 and "use the form YYYY-MM-DD" in bad.text


def test_the_page_speaks_kazakh_and_russian_and_shows_text_as_text(svc: ServiceThread) -> None:
    engine = svc.runtime.engine
    create_user(engine, "aigerim", "auditor")
    _log(
        engine,
        {
            "actor": "user:<script>alert(1)</script>",
            "action": "appeal.reply",
            "subject": "ADL-2026-000009",
            "detail": {"text": "<img src=x onerror=alert(2)>"},
        },
    )
    with _client_for(svc, "aigerim") as client:
        kk = client.get("/audit?lang=kk")
        assert (
            '<html lang="kk">' in kk.text and "Аудит журналы" in kk.text and "Азаматқа жауап берді" in kk.text
        )
        ru = client.get("/audit?lang=ru")
        assert "Ответил гражданину" in ru.text and "Кто" in ru.text
        assert "<script>alert(1)" not in ru.text and "<img src=x" not in ru.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ru.text


def _ids(html: str) -> list[str]:
    import re

    return re.findall(r'data-audit-id="(\d+)"', html)


def _next_url(html: str) -> str | None:
    import re

    found = re.search(r'<a href="([^"]+)" rel="next">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_a_real_login_is_on_the_page_with_its_address(svc: ServiceThread) -> None:
    from tests.web_support import login

    create_user(svc.runtime.engine, "aigerim", "auditor")
    with httpx.Client(base_url=svc.url) as client:
        login(client, "aigerim")
        page = client.get("/audit", params={"action": "login", "lang": "en"})
    assert page.status_code == 200
    assert "Logged in" in page.text and "127.0.0.1" in page.text and "user:aigerim" in page.text


def test_every_recorded_action_has_a_name_in_every_language() -> None:
    from adaldyk_bots.i18n import translations
    from adaldyk_bots.web.audit_pages import ACTION_NAMES
    from tests.support import literal_arguments

    # Every action the code writes to the log: a literal `action=` of audit.record / accounts.audit.
    recorded = literal_arguments({"record", "audit"}, "action")
    assert {"login", "appeal.view", "appeal.reply", "appeal.status", "task.done"} <= set(recorded)
    unnamed = {code: where for code, where in recorded.items() if code not in ACTION_NAMES}
    assert not unnamed, f"the audit page would show these as codes: {unnamed}"
    # A name for an action nobody records (a misspelt code) never shows.
    assert set(ACTION_NAMES) <= set(recorded), set(ACTION_NAMES) - set(recorded)
    for lang in ("kk", "ru"):
        for code, msgid in ACTION_NAMES.items():
            assert translations(lang).gettext(msgid) != msgid, (lang, code)
