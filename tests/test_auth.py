"""Workspace accounts over real HTTP: login and logout, throttled failures, CSRF on every form, cookie
flags, idle expiry, password changes and the admin's users page. Time moves by the app's clock
(deps.now), never by sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.accounts import FAILURE_LIMIT
from adaldyk_bots.storage.models import LoginAttempt, StaffUser, WebSession
from adaldyk_bots.web.deps import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from tests.support import wait_until
from tests.web_support import PASSWORD, WebApp, create_user, csrf_of, load_units, login


@pytest.fixture
def web(make_settings: Any) -> Iterator[WebApp]:
    with WebApp(make_settings()) as app:
        load_units(app.runtime.engine)
        create_user(app.runtime.engine, "maria", "moderator", full_name="Мария Ким")
        yield app


def _session_cookie_header(answer: httpx.Response) -> str:
    found = [v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}=")]
    assert found, answer.headers
    return found[0]


def _post_login(client: httpx.Client, username: str, password: str, **extra: str) -> httpx.Response:
    form = client.get("/login")
    data = {"username": username, "password": password, "csrf_token": csrf_of(form.text), **extra}
    return client.post("/login", data=data, follow_redirects=False)


def test_login_form_has_the_contract_fields(web: WebApp) -> None:
    page = web.client.get("/login", headers={"Accept-Language": "ru"})
    assert page.status_code == 200
    for field in ('name="username"', 'name="password"', 'name="csrf_token"'):
        assert field in page.text
    assert '<html lang="ru">' in page.text and "Войти" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"


def test_login_then_logout_ends_the_session_on_the_server(web: WebApp) -> None:
    answer = _post_login(web.client, "maria", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = web.client.cookies[SESSION_COOKIE]
    page = web.client.get("/account/password")
    assert page.status_code == 200 and "Мария Ким" in page.text
    csrf = csrf_of(page.text)
    out = web.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # The old cookie, sent again by someone who kept it, no longer opens anything.
    with web.new_client(cookies={SESSION_COOKIE: cookie}) as stolen:
        again = stolen.get("/account/password", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/login?next=%2Faccount%2Fpassword"
    with Session(web.runtime.engine) as s:
        row = s.exec(select(WebSession)).one()
        assert row.end_reason == "logout" and row.ended_at is not None
        assert len(row.id) == 64 and row.id != cookie  # only the digest is stored


def test_wrong_password_shows_the_form_again_in_the_users_language(web: WebApp) -> None:
    web.client.get("/login?lang=kk")
    answer = _post_login(web.client, "maria", "not-the-password")
    assert answer.status_code == 200 and SESSION_COOKIE not in answer.cookies
    assert "Пайдаланушы аты немесе құпиясөз қате." in answer.text
    unknown = _post_login(web.client, "nobody", "whatever-it-is")
    assert "Пайдаланушы аты немесе құпиясөз қате." in unknown.text  # the same words: no user oracle


def test_next_is_followed_only_to_a_local_path(web: WebApp) -> None:
    local = _post_login(web.client, "maria", PASSWORD, next="/appeals/ADL-2026-000001?tab=history")
    assert local.headers["location"] == "/appeals/ADL-2026-000001?tab=history"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        with web.new_client() as other:
            answer = _post_login(other, "maria", PASSWORD, next=evil)
            assert answer.headers["location"] == "/", evil


def test_a_page_without_a_session_redirects_to_login_and_htmx_gets_hx_redirect(web: WebApp) -> None:
    answer = web.client.get("/admin/users?x=1", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fadmin%2Fusers%3Fx%3D1"
    htmx = web.client.get("/admin/users", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login")


def test_cookie_flags_http_only_same_site_lax_path_and_no_secure_over_http(web: WebApp) -> None:
    header = _session_cookie_header(_post_login(web.client, "maria", PASSWORD)).lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "secure" not in header.replace("samesite", "")
    assert "max-age" not in header and "expires" not in header  # ends with the browser (and idle)


def test_cookies_are_secure_when_the_public_url_is_https(make_settings: Any) -> None:
    with WebApp(make_settings(public_url="https://appeals.example.kz")) as web:
        create_user(web.runtime.engine, "maria", "moderator")
        form = web.client.get("/login")
        login_cookie = [v for v in form.headers.get_list("set-cookie") if v.startswith(LOGIN_CSRF_COOKIE)]
        assert "secure" in login_cookie[0].lower().replace("samesite", "")
        # httpx does not send Secure cookies over http: hand it back as a browser on https would.
        data = {"username": "maria", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
        answer = httpx.post(
            f"{web.url}/login",
            data=data,
            cookies={LOGIN_CSRF_COOKIE: form.cookies[LOGIN_CSRF_COOKIE]},
            follow_redirects=False,
        )
        header = _session_cookie_header(answer).lower()
        assert "; secure" in header and "httponly" in header and "samesite=lax" in header


def test_login_without_or_with_a_forged_csrf_token_is_403(web: WebApp) -> None:
    web.client.get("/login")
    bare = web.client.post("/login", data={"username": "maria", "password": PASSWORD}, follow_redirects=False)
    assert bare.status_code == 403 and SESSION_COOKIE not in bare.cookies
    forged = web.client.post(
        "/login",
        data={"username": "maria", "password": PASSWORD, "csrf_token": "x" * 64},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    # A token from someone else's form does not go with this browser's cookie either.
    with web.new_client() as attacker:
        theirs = csrf_of(attacker.get("/login").text)
    web.client.cookies.delete(LOGIN_CSRF_COOKIE)
    web.client.cookies.set(LOGIN_CSRF_COOKIE, "a" * 32)
    mismatched = web.client.post(
        "/login",
        data={"username": "maria", "password": PASSWORD, "csrf_token": theirs},
        follow_redirects=False,
    )
    assert mismatched.status_code == 403


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(web: WebApp) -> None:
    create_user(web.runtime.engine, "admin", "admin")
    csrf = login(web.client, "admin")
    with Session(web.runtime.engine) as s:
        maria = s.exec(select(StaffUser).where(StaffUser.username == "maria")).one()
    routes = {
        "/logout": {},
        "/account/password": {
            "current": PASSWORD,
            "new": "another-password-1",
            "repeated": "another-password-1",
        },
        "/admin/users": {"username": "newbie", "role": "moderator", "password": "a-long-password-1"},
        f"/admin/users/{maria.id}": {"role": "auditor", "full_name": "x"},
        f"/admin/users/{maria.id}/password": {"password": "a-long-password-2"},
    }
    for path, data in routes.items():
        for token in (None, "wrong-" + csrf[6:]):
            sent = dict(data) | ({"csrf_token": token} if token else {})
            answer = web.client.post(path, data=sent, follow_redirects=False)
            assert answer.status_code == 403, (path, token, answer.status_code)
    # Scripts: JSON, and the header works in place of the field.
    js = web.client.post(
        "/admin/users/999999/password", headers={"HX-Request": "true"}, data={"password": "x"}
    )
    assert js.status_code == 403 and js.json()["code"] == "csrf"
    with Session(web.runtime.engine) as s:
        assert s.exec(select(StaffUser).where(StaffUser.username == "newbie")).first() is None
        assert s.get(StaffUser, maria.id).role == "moderator"  # type: ignore[union-attr]
    ok = web.client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert ok.status_code == 303


def test_csrf_refusal_is_a_page_for_people(web: WebApp) -> None:
    login(web.client, "maria")
    answer = web.client.post("/logout?lang=ru", data={}, follow_redirects=False)
    assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")
    assert "Обновите страницу" in answer.text


def test_idle_sessions_end_after_the_configured_hours(make_settings: Any) -> None:
    with WebApp(make_settings(session_idle_hours=2)) as web:
        create_user(web.runtime.engine, "maria", "moderator")
        login(web.client, "maria")

        def last_seen_recorded() -> bool:
            # The use is written after the answer (a background task): wait for it, never sleep.
            with Session(web.runtime.engine) as s:
                seen = s.exec(select(WebSession)).one().last_seen_at
                return abs((seen.replace(tzinfo=web.clock.at.tzinfo) - web.clock.at).total_seconds()) < 1

        web.clock.advance(hours=1, minutes=50)
        assert web.client.get("/account/password").status_code == 200  # use renews it
        wait_until(last_seen_recorded, what="the session's use to be recorded")
        web.clock.advance(hours=1, minutes=50)
        assert web.client.get("/account/password", follow_redirects=False).status_code == 200
        wait_until(last_seen_recorded, what="the session's use to be recorded")
        web.clock.advance(hours=2, minutes=1)
        answer = web.client.get("/account/password", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        web.clock.advance(minutes=-30)  # ended on the server: going back in time does not revive it
        assert web.client.get("/account/password", follow_redirects=False).status_code == 303
        with Session(web.runtime.engine) as s:
            assert s.exec(select(WebSession)).one().end_reason == "idle"


def test_session_idle_hours_is_validated(make_settings: Any) -> None:
    from pydantic import ValidationError

    for wrong in (0, -1, "soon"):
        with pytest.raises(ValidationError):
            make_settings(session_idle_hours=wrong)
    assert make_settings().session_idle_hours == 12


# --- throttling ---------------------------------------------------------------------------------


def test_ten_failures_lock_that_account_from_that_address_only(make_settings: Any) -> None:
    settings = make_settings(trusted_proxies="127.0.0.1")
    with WebApp(settings) as web:
        create_user(web.runtime.engine, "maria", "moderator")
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        with web.new_client(headers=attacker) as bad:
            for _ in range(FAILURE_LIMIT):
                assert _post_login(bad, "maria", "guess-guess-guess").status_code == 200
            locked = _post_login(bad, "maria", PASSWORD)  # even the right password: 429
            assert locked.status_code == 429 and SESSION_COOKIE not in locked.cookies
            assert 0 < int(locked.headers["retry-after"]) <= 900
            # Another account from the same address is not locked.
            create_user(web.runtime.engine, "olzhas", "moderator")
            assert _post_login(bad, "olzhas", PASSWORD).status_code == 303
        # The real user, elsewhere, logs in at once.
        with web.new_client(headers={"X-Forwarded-For": "198.51.100.20"}) as real:
            assert _post_login(real, "maria", PASSWORD).status_code == 303
        web.clock.advance(minutes=14)
        with web.new_client(headers=attacker) as bad:
            assert _post_login(bad, "maria", PASSWORD).status_code == 429
            web.clock.advance(minutes=1, seconds=1)
            assert _post_login(bad, "maria", PASSWORD).status_code == 303
        with Session(web.runtime.engine) as s:
            attempts = s.exec(select(LoginAttempt).where(LoginAttempt.address == "203.0.113.7")).all()
            # Refused attempts never reached the password check and are not counted.
            assert sum(not a.ok for a in attempts) == FAILURE_LIMIT


def test_failures_spread_over_more_than_15_minutes_do_not_lock(make_settings: Any) -> None:
    with WebApp(make_settings()) as web:
        create_user(web.runtime.engine, "maria", "moderator")
        for _ in range(FAILURE_LIMIT - 1):
            _post_login(web.client, "maria", "guess-guess-guess")
        web.clock.advance(minutes=16)
        for _ in range(FAILURE_LIMIT - 1):
            assert _post_login(web.client, "maria", "guess-guess-guess").status_code == 200
        assert _post_login(web.client, "maria", PASSWORD).status_code == 303


def test_without_trusted_proxies_x_forwarded_for_is_ignored(web: WebApp) -> None:
    for i in range(FAILURE_LIMIT):
        with web.new_client(headers={"X-Forwarded-For": f"198.51.100.{i}"}) as client:
            _post_login(client, "maria", "guess-guess-guess")
    # Every attempt came from the TCP peer (127.0.0.1) whatever the header said: the pair is locked.
    with web.new_client(headers={"X-Forwarded-For": "198.51.100.99"}) as client:
        assert _post_login(client, "maria", PASSWORD).status_code == 429
    with Session(web.runtime.engine) as s:
        assert {a.address for a in s.exec(select(LoginAttempt))} == {"127.0.0.1"}


# --- passwords ----------------------------------------------------------------------------------


def test_the_owner_changes_their_password_and_other_sessions_end(web: WebApp) -> None:
    with web.new_client() as laptop:
        login(laptop, "maria")
        csrf = login(web.client, "maria")
        wrong = web.client.post(
            "/account/password?lang=en",
            data={
                "csrf_token": csrf,
                "current": "nope-nope-nope",
                "new": "brand-new-pass",
                "repeated": "brand-new-pass",
            },
        )
        assert wrong.status_code == 422 and "The current password is wrong." in wrong.text
        short = web.client.post(
            "/account/password",
            data={"csrf_token": csrf, "current": PASSWORD, "new": "short", "repeated": "short"},
        )
        assert short.status_code == 422
        differ = web.client.post(
            "/account/password",
            data={
                "csrf_token": csrf,
                "current": PASSWORD,
                "new": "brand-new-pass",
                "repeated": "brand-new-pasz",
            },
        )
        assert differ.status_code == 422
        done = web.client.post(
            "/account/password?lang=en",
            data={
                "csrf_token": csrf,
                "current": PASSWORD,
                "new": "brand-new-pass",
                "repeated": "brand-new-pass",
            },
        )
        assert done.status_code == 200 and "Your password has been changed." in done.text
        assert web.client.get("/account/password").status_code == 200  # this session goes on
        assert laptop.get("/account/password", follow_redirects=False).status_code == 303  # the other ended
    with web.new_client() as fresh:
        assert _post_login(fresh, "maria", PASSWORD).status_code == 200  # old one refused
        assert _post_login(fresh, "maria", "brand-new-pass").status_code == 303


# --- the admin's users page ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["moderator", "officer", "auditor"])
def test_admin_pages_are_forbidden_to_everyone_else(web: WebApp, role: str) -> None:
    create_user(web.runtime.engine, "someone", role, unit_code="cerc_astana" if role == "officer" else None)
    csrf = login(web.client, "someone")
    assert web.client.get("/admin/users").status_code == 403
    created = web.client.post(
        "/admin/users",
        data={"csrf_token": csrf, "username": "x1", "role": "admin", "password": "a-long-password-1"},
    )
    assert created.status_code == 403
    with Session(web.runtime.engine) as s:
        maria = s.exec(select(StaffUser).where(StaffUser.username == "maria")).one()
    assert (
        web.client.post(f"/admin/users/{maria.id}", data={"csrf_token": csrf, "role": "admin"}).status_code
        == 403
    )
    reset = web.client.post(
        f"/admin/users/{maria.id}/password", data={"csrf_token": csrf, "password": "x" * 12}
    )
    assert reset.status_code == 403
    with Session(web.runtime.engine) as s:
        assert s.exec(select(StaffUser).where(StaffUser.username == "x1")).first() is None
        assert s.get(StaffUser, maria.id).role == "moderator"  # type: ignore[union-attr]


def test_admin_creates_changes_disables_and_resets(web: WebApp) -> None:
    create_user(web.runtime.engine, "admin", "admin")
    csrf = login(web.client, "admin")
    page = web.client.get("/admin/users?lang=ru")
    assert page.status_code == 200 and "maria" in page.text and "Новый пользователь" in page.text
    no_unit = web.client.post(
        "/admin/users?lang=en",
        data={"csrf_token": csrf, "username": "aigul", "role": "officer", "password": "a-long-password-1"},
    )
    assert no_unit.status_code == 422 and "An officer needs a unit." in no_unit.text
    bad_unit = web.client.post(
        "/admin/users?lang=en",
        data={
            "csrf_token": csrf,
            "username": "aigul",
            "role": "officer",
            "unit": "nowhere",
            "password": "a-long-password-1",
        },
    )
    assert bad_unit.status_code == 422 and "Unknown unit." in bad_unit.text
    made = web.client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "aigul",
            "role": "officer",
            "unit": "cerc_astana",
            "full_name": "Айгүл Серікова",
            "password": "a-long-password-1",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == "/admin/users?done=user_created"
    again = web.client.post(
        "/admin/users?lang=en",
        data={"csrf_token": csrf, "username": "aigul", "role": "moderator", "password": "a-long-password-1"},
    )
    assert again.status_code == 422 and "already exists" in again.text
    with Session(web.runtime.engine) as s:
        aigul = s.exec(select(StaffUser).where(StaffUser.username == "aigul")).one()
        admin = s.exec(select(StaffUser).where(StaffUser.username == "admin")).one()
    with web.new_client() as hers:
        login(hers, "aigul", "a-long-password-1")
        disable = web.client.post(
            f"/admin/users/{aigul.id}",
            data={
                "csrf_token": csrf,
                "role": "officer",
                "unit": "cerc_almaty_city",
                "full_name": "Айгүл",
                "disabled": "1",
            },
            follow_redirects=False,
        )
        assert disable.status_code == 303
        assert hers.get("/account/password", follow_redirects=False).status_code == 303  # ended at once
        assert _post_login(hers, "aigul", "a-long-password-1").status_code == 200  # and cannot log in
    enable = web.client.post(
        f"/admin/users/{aigul.id}",
        data={"csrf_token": csrf, "role": "officer", "unit": "cerc_almaty_city", "full_name": "Айгүл"},
        follow_redirects=False,
    )
    assert enable.status_code == 303
    reset = web.client.post(
        f"/admin/users/{aigul.id}/password",
        data={"csrf_token": csrf, "password": "reset-password-9"},
        follow_redirects=False,
    )
    assert reset.status_code == 303
    with web.new_client() as hers:
        assert _post_login(hers, "aigul", "reset-password-9").status_code == 303
    own = web.client.post(
        f"/admin/users/{admin.id}?lang=en",
        data={"csrf_token": csrf, "role": "moderator", "full_name": ""},
    )
    assert own.status_code == 422 and "your own" in own.text
    missing = web.client.post("/admin/users/999999/password", data={"csrf_token": csrf, "password": "x" * 12})
    assert missing.status_code == 404
    with Session(web.runtime.engine) as s:
        aigul2 = s.get(StaffUser, aigul.id)
        assert aigul2 is not None and aigul2.disabled_at is None and aigul2.full_name == "Айгүл"


def test_the_language_chosen_is_remembered_for_the_user(web: WebApp) -> None:
    login(web.client, "maria")
    web.client.get("/account/password?lang=ru")
    with Session(web.runtime.engine) as s:
        assert s.exec(select(StaffUser.language).where(StaffUser.username == "maria")).one() == "ru"
    with web.new_client() as other:  # another browser, no language cookie: the preference applies
        login(other, "maria")
        assert '<html lang="ru">' in other.get("/account/password").text


def test_logins_logouts_and_failures_are_in_the_audit_log(make_settings: Any) -> None:
    from adaldyk_bots.storage.models import AuditEvent

    with WebApp(make_settings(trusted_proxies="127.0.0.1")) as web:
        create_user(web.runtime.engine, "maria", "moderator")
        with web.new_client(headers={"X-Forwarded-For": "198.51.100.20"}) as client:
            _post_login(client, "maria", "guess-guess-guess")
            csrf = login(client, "maria")
            client.post("/logout", data={"csrf_token": csrf})
        with Session(web.runtime.engine) as s:
            rows = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()  # type: ignore[arg-type]
        seen = [(r.actor, r.action, r.subject, r.address) for r in rows]
        assert ("anonymous", "login_failed", "maria", "198.51.100.20") in seen
        assert ("user:maria", "login", "maria", "198.51.100.20") in seen
        assert ("user:maria", "logout", "maria", "198.51.100.20") in seen


def test_a_new_login_replaces_the_browsers_old_session(web: WebApp) -> None:
    create_user(web.runtime.engine, "olzhas", "moderator")
    login(web.client, "maria")
    first = web.client.cookies[SESSION_COOKIE]
    skipped = web.client.get("/login?next=/account/password")  # a live session: no form, go on
    assert skipped.status_code == 303 and skipped.headers["location"] == "/account/password"
    with web.new_client() as other:  # a login form (and its nonce cookie) for this browser
        form = other.get("/login")
    web.client.cookies.set(LOGIN_CSRF_COOKIE, form.cookies[LOGIN_CSRF_COOKIE])
    data = {"username": "olzhas", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    assert web.client.post("/login", data=data).status_code == 303
    with web.new_client(cookies={SESSION_COOKIE: first}) as old:
        assert old.get("/account/password").status_code == 303
    with Session(web.runtime.engine) as s:
        assert sorted(str(r.end_reason) for r in s.exec(select(WebSession))) == ["None", "replaced"]
