"""The workspace's account pages: login and logout, the owner's password change, the admin's users page.

GET  /login                         the form (username, password, hidden csrf_token, next)
POST /login                         303 to `next` (a local path) or /; wrong -> the form again;
                                    10 failures of one (account, address) in 15 min -> 429 for 15 min
POST /logout                        ends the session (CSRF)
GET|POST /account/password          current password + the new one twice
GET  /admin/users                   admins only (others 403)
POST /admin/users                   create
POST /admin/users/{id}              role, unit, full name, position, disabled
POST /admin/users/{id}/password     reset (the user's sessions end)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from adaldyk_bots import accounts, org
from adaldyk_bots.access import ROLES, Viewer
from adaldyk_bots.errors import AdaldykError, Conflict, UnknownUnit
from adaldyk_bots.i18n import N_
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import read_session, unit_of_work
from adaldyk_bots.storage.models import StaffUser, Unit
from adaldyk_bots.web import ui
from adaldyk_bots.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    AdminViewer,
    Csrf,
    Db,
    LoginCsrf,
    Now,
    PageLogin,
    PageViewer,
    client_address,
    login_csrf_pair,
    safe_next,
    set_cookie,
)

__all__ = ["build_auth_router", "save_language"]

Text = Annotated[str, Form(max_length=4096)]

# What a person is told, by refusal code (accounts.PasswordRejected.reason and the pages' own).
_MESSAGES = {
    "bad_login": N_("Wrong user name or password."),
    "throttled": N_("Too many failed attempts for this account from your address. Try again in 15 minutes."),
    "too_short": N_("The password must have at least 10 characters."),
    "too_long": N_("The password is too long."),
    "same_as_username": N_("The password must not be the user name."),
    "mismatch": N_("The two new passwords differ."),
    "wrong_current": N_("The current password is wrong."),
    "password_changed": N_("Your password has been changed. Your other sessions have been ended."),
    "user_created": N_("The user has been created."),
    "user_updated": N_("The user has been updated."),
    "password_reset": N_("The password has been reset. The user's sessions have been ended."),
    "user_exists": N_("A user with this name already exists."),
    "bad_username": N_("A user name has 1 to 100 characters and no spaces."),
    "officer_unit": N_("An officer needs a unit."),
    "unknown_unit": N_("Unknown unit."),
    "unknown_role": N_("Unknown role."),
    "own_account": N_("You cannot disable your own account or remove your own administrator role."),
}
_ROLE_NAMES = {
    "admin": N_("Administrator"),
    "moderator": N_("Moderator"),
    "officer": N_("Officer"),
    "auditor": N_("Auditor"),
}
LOGIN_CSRF_SECONDS = 12 * 3600


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.runtime.engine
    return engine


def save_language(request: Request, lang: str) -> None:
    """ui.LANGUAGE_HOOKS: `?lang=` on a page is remembered as the logged-in user's preference."""
    viewer = getattr(request.state, "viewer", None)
    if not isinstance(viewer, Viewer) or viewer.language == lang:
        return
    with unit_of_work(_engine(request)) as s:
        user = s.get(StaffUser, viewer.user_id)
        if user is not None:
            user.language = lang
            s.add(user)


def _refusal_code(exc: AdaldykError) -> str:
    if isinstance(exc, accounts.AccountRefused):
        return exc.reason
    if isinstance(exc, Conflict):
        return "user_exists"
    return "unknown_unit"


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    # Pages with password fields: never cached, never framed (ui.PRIVATE_HEADERS, on every page).
    return ui.render(request, template, context, status_code=status_code, headers=headers)


def build_auth_router() -> APIRouter:
    if save_language not in ui.LANGUAGE_HOOKS:
        ui.LANGUAGE_HOOKS.append(save_language)
    router = APIRouter(include_in_schema=False)

    def login_form(
        request: Request,
        *,
        next_path: str,
        username: str = "",
        error: str | None = None,
        status_code: int = 200,
        retry_after: int = 0,
    ) -> Response:
        settings = _settings(request)
        nonce, token = login_csrf_pair(settings, request.cookies.get(LOGIN_CSRF_COOKIE))
        request.state.csrf_token = token
        headers = {}
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        response = _page(
            request,
            "auth/login.html",
            {"next": next_path, "username": username, "error": _MESSAGES[error] if error else None},
            status_code=status_code,
            headers=headers,
        )
        set_cookie(response, settings, LOGIN_CSRF_COOKIE, nonce, max_age=LOGIN_CSRF_SECONDS)
        return response

    @router.get("/login")
    def login_page(request: Request, s: Db, at: Now, next: str | None = None) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        idle = timedelta(hours=_settings(request).session_idle_hours)
        if cookie and isinstance(accounts.resolve_session(s, cookie, now=at, idle=idle), accounts.Login):
            return RedirectResponse(safe_next(next), status_code=303)
        return login_form(request, next_path=safe_next(next))

    @router.post("/login")
    def login(
        request: Request,
        _csrf: LoginCsrf,
        at: Now,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=4096)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        settings = _settings(request)
        address = client_address(request, settings)
        target = safe_next(next)
        user: StaffUser | None = None
        with unit_of_work(_engine(request)) as s:
            # Checked before the password: a locked pair learns nothing, whatever it sends.
            until = accounts.locked_until(s, username=username, address=address, now=at)
            if until is None:
                user = accounts.authenticate(s, username=username, password=password)
                accounts.record_attempt(s, username=username, address=address, ok=user is not None, now=at)
                if user is not None:
                    previous = request.cookies.get(SESSION_COOKIE)
                    if previous:  # a new login replaces the browser's old session, never keeps both
                        accounts.end_session(s, accounts.digest(previous), reason="replaced", now=at)
                    cookie, _row = accounts.start_session(
                        s, user, address=address, user_agent=request.headers.get("user-agent", ""), now=at
                    )
                    accounts.audit(
                        s,
                        actor=f"user:{user.username}",
                        action="login",
                        subject=user.username,
                        detail={},
                        address=address,
                    )
                else:
                    accounts.audit(
                        s,
                        actor="anonymous",
                        action="login_failed",
                        subject=username.strip()[:100],
                        detail={},
                        address=address,
                    )
            else:
                accounts.audit(
                    s,
                    actor="anonymous",
                    action="login_throttled",
                    subject=username.strip()[:100],
                    detail={},
                    address=address,
                )
        if until is not None:
            wait = max(1, int((until - at).total_seconds()))
            return login_form(
                request,
                next_path=target,
                username=username,
                error="throttled",
                status_code=429,
                retry_after=wait,
            )
        if user is None:
            return login_form(request, next_path=target, username=username, error="bad_login")
        response = RedirectResponse(target, status_code=303)
        # A session cookie (no Max-Age): it goes with the browser; the server ends it after the idle time.
        set_cookie(response, settings, SESSION_COOKIE, cookie, max_age=None)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @router.post("/logout")
    def logout(request: Request, login: PageLogin, _csrf: Csrf, at: Now) -> Response:
        with unit_of_work(_engine(request)) as s:
            accounts.end_session(s, login.session_id, reason="logout", now=at)
            name = login.user.username
            accounts.audit(
                s,
                actor=f"user:{name}",
                action="logout",
                subject=name,
                detail={},
                address=client_address(request, _settings(request)),
            )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/account/password")
    def password_page(request: Request, viewer: PageViewer) -> Response:
        return _page(request, "auth/password.html", {"error": None, "notice": None})

    @router.post("/account/password")
    def change_password(
        request: Request,
        login: PageLogin,
        viewer: PageViewer,
        _csrf: Csrf,
        at: Now,
        current: Text = "",
        new: Text = "",
        repeated: Text = "",
    ) -> Response:
        try:
            with unit_of_work(_engine(request)) as s:
                user = accounts.user_by_id(s, viewer.user_id)
                accounts.change_password(
                    s,
                    user,
                    current=current,
                    new=new,
                    repeated=repeated,
                    now=at,
                    keep_session=login.session_id,
                )
                accounts.audit(
                    s,
                    actor=viewer.actor,
                    action="password.change",
                    subject=viewer.username,
                    detail={},
                    address=client_address(request, _settings(request)),
                )
        except accounts.PasswordRejected as exc:
            context = {"error": _MESSAGES[exc.reason], "notice": None}
            return _page(request, "auth/password.html", context, status_code=422)
        return _page(request, "auth/password.html", {"error": None, "notice": _MESSAGES["password_changed"]})

    # --- administration -----------------------------------------------------------------------------

    def users_page(
        request: Request,
        s: Session,
        *,
        error: str | None = None,
        notice: str | None = None,
        status_code: int = 200,
    ) -> Response:
        users = s.exec(select(StaffUser).order_by(col(StaffUser.username))).all()
        units = s.exec(select(Unit).order_by(col(Unit.code))).all()
        codes = {u.id: u.code for u in units}
        lang = ui.request_language(request)
        return _page(
            request,
            "auth/users.html",
            {
                "users": users,
                "units": [(u.code, u.name_ru if lang == "ru" else u.name_kk) for u in units],
                "unit_code": lambda unit_id: codes.get(unit_id, ""),
                "roles": ROLES,
                "role_names": _ROLE_NAMES,
                "error": _MESSAGES.get(error) if error else None,
                "notice": _MESSAGES.get(notice) if notice else None,
            },
            status_code=status_code,
        )

    @router.get("/admin/users")
    def admin_users(request: Request, _admin: AdminViewer, s: Db, done: str | None = None) -> Response:
        notice = done if done in ("user_created", "user_updated", "password_reset") else None
        return users_page(request, s, notice=notice)

    def admin_change(request: Request, change: Callable[[Session], str]) -> Response:
        """Runs an admin's change; a refusal shows the page again with the reason, translated."""
        try:
            with unit_of_work(_engine(request)) as s:
                done: str = change(s)
        except AdaldykError as exc:
            if not isinstance(exc, accounts.AccountRefused | Conflict | UnknownUnit):
                raise
            with read_session(_engine(request)) as s:
                return users_page(request, s, error=_refusal_code(exc), status_code=422)
        return RedirectResponse(f"/admin/users?done={done}", status_code=303)

    @router.post("/admin/users")
    def admin_create_user(
        request: Request,
        admin: AdminViewer,
        _csrf: Csrf,
        at: Now,
        username: Annotated[str, Form(max_length=200)] = "",
        role: Annotated[str, Form(max_length=32)] = "moderator",
        unit: Annotated[str, Form(max_length=64)] = "",
        full_name: Annotated[str, Form(max_length=200)] = "",
        position: Annotated[str, Form(max_length=200)] = "",
        password: Text = "",
    ) -> Response:
        def create(s: Session) -> str:
            user = accounts.create_user(
                s,
                username=username,
                role=role,
                unit_code=unit or None,
                full_name=full_name,
                position=position,
                password=password,
                now=at,
            )
            org.link_new_account(s, _settings(request).config_dir)  # a head or deputy named in org.toml
            accounts.audit(
                s,
                actor=admin.actor,
                action="user.create",
                subject=user.username,
                address=client_address(request, _settings(request)),
                detail={"role": role, "unit": unit or None},
            )
            return "user_created"

        return admin_change(request, create)

    @router.post("/admin/users/{user_id}")
    def admin_update_user(
        request: Request,
        admin: AdminViewer,
        _csrf: Csrf,
        at: Now,
        user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
        role: Annotated[str, Form(max_length=32)] = "",
        unit: Annotated[str, Form(max_length=64)] = "",
        full_name: Annotated[str, Form(max_length=200)] = "",
        position: Annotated[str | None, Form(max_length=200)] = None,
        disabled: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        def update(s: Session) -> str:
            user = accounts.user_by_id(s, user_id)
            off = disabled in ("1", "on", "true")
            if user.id == admin.user_id and (off or role != "admin"):
                raise accounts.AccountRefused(
                    "own_account", "an administrator cannot disable or demote their own account"
                )
            changes = accounts.update_user(
                s,
                user,
                role=role,
                unit_code=unit or None,
                full_name=full_name,
                position=position,
                disabled=off,
                now=at,
            )
            if changes:
                accounts.audit(
                    s,
                    actor=admin.actor,
                    action="user.update",
                    subject=user.username,
                    address=client_address(request, _settings(request)),
                    detail=changes,
                )
            return "user_updated"

        return admin_change(request, update)

    @router.post("/admin/users/{user_id}/password")
    def admin_reset_password(
        request: Request,
        admin: AdminViewer,
        _csrf: Csrf,
        at: Now,
        user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
        password: Text = "",
    ) -> Response:
        def reset(s: Session) -> str:
            user = accounts.user_by_id(s, user_id)
            accounts.set_password(s, user, password, now=at)
            accounts.audit(
                s,
                actor=admin.actor,
                action="user.password_reset",
                subject=user.username,
                detail={},
                address=client_address(request, _settings(request)),
            )
            return "password_reset"

        return admin_change(request, reset)

    return router
