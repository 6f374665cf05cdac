"""The web's dependencies, as `Annotated` aliases (STYLE habit 12): the database session, the staff user
behind a request (workspace cookie or API token), CSRF, the clock. Routes take these and filter every
appeal query with `access.appeal_scope` / `access.visible_appeal`.

    Db           a read-only database session (never waits for SQLite's writer)
    Now          the current time (tests override `now` through app.dependency_overrides)
    PageLogin    the live workspace session (accounts.Login); none -> 303 to /login?next=<path>
    PageViewer   its access.Viewer
    Csrf         checks `csrf_token` (form field) or `X-CSRF-Token` (header) against the session: 403
    PageWriter   PageViewer + Csrf + not an auditor (403): for every state-changing form POST
    AdminViewer  PageViewer of an admin, else 403
    ApiViewer    the Viewer of an `Authorization: Bearer` token (401 without a valid one)
    ApiWriter    ApiViewer that may change things (auditors: 403)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from adaldyk_bots import accounts
from adaldyk_bots.access import Viewer, require_admin, require_write, viewer_for
from adaldyk_bots.accounts import Login
from adaldyk_bots.errors import CsrfRefused, Unauthorized
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.settings import Settings
from adaldyk_bots.staff_notices import unread_notices
from adaldyk_bots.storage.db import as_utc, read_session, unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, StaffUser, WebSession
from adaldyk_bots.web import ui
from adaldyk_bots.web.errors import error_response

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "AdminViewer",
    "ApiViewer",
    "ApiWriter",
    "Csrf",
    "Db",
    "LoginRequired",
    "Now",
    "PageLogin",
    "PageViewer",
    "PageWriter",
    "client_address",
    "install_auth_handlers",
    "now",
    "safe_next",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "adaldyk_session"
LOGIN_CSRF_COOKIE = "adaldyk_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# last_used_at is for an operator asking "is this token still used?": minute precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_bearer = HTTPBearer(auto_error=False)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.runtime.engine
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


def database(request: Request) -> Iterator[Session]:
    # Reads only: on SQLite this never waits for the writer (storage/db.py read_only).
    with read_session(_engine(request)) as s:
        yield s


def now() -> datetime:
    """The clock of every time-dependent rule here (idle expiry, login throttling)."""
    return utcnow()


Db = Annotated[Session, Depends(database)]
Now = Annotated[datetime, Depends(now)]


# --- addresses -------------------------------------------------------------------------------------


def client_address(request: Request, settings: Settings) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy — then the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries left of it are the client's own
    claims and could be anything)."""
    peer = request.client.host if request.client else ""
    networks = settings.trusted_proxy_networks
    if not networks or not _in(peer, networks):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, networks):
            return hop if _is_ip(hop) else peer
    return peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks if net.version == ip.version)


# --- workspace sessions ----------------------------------------------------------------------------


class LoginRequired(Exception):
    """No live session: the answer is a redirect to the login form, back to `next` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another site, //host, a scheme) is `/`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return "/"
    return value


def _end_idle(engine: Engine, session_id: str, at: datetime) -> None:
    with unit_of_work(engine) as s:
        accounts.end_session(s, session_id, reason="idle", now=at)


def _touch(engine: Engine, session_id: str, at: datetime) -> None:
    try:
        with unit_of_work(engine) as s:
            accounts.touch_session(s, session_id, now=at)
    except SQLAlchemyError as exc:  # after the answer: nobody to tell but the log
        throttled(
            log, failure_kind("web.session_touch", exc), "could not record session use: %s", describe(exc)
        )


def page_login(request: Request, background: BackgroundTasks, s: Db, at: Now) -> Login:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    idle = timedelta(hours=_settings(request).session_idle_hours)
    found = accounts.resolve_session(s, cookie, now=at, idle=idle) if cookie else None
    if isinstance(found, WebSession):
        _end_idle(_engine(request), found.id, at)
        found = None
    if found is None:
        # Back to this page after login; a form POST cannot be replayed by a redirect, so it goes home.
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path if request.method in ("GET", "HEAD") else "/")
    if found.needs_touch(at):
        # After the answer: the write may wait for SQLite's writer, the page must not.
        background.add_task(_touch, _engine(request), found.session_id, at)
    request.state.csrf_token = found.csrf_token
    request.state.login = found
    return found


PageLogin = Annotated[Login, Depends(page_login)]


def page_viewer(request: Request, login: PageLogin, s: Db) -> Viewer:
    viewer = viewer_for(s, login.user)
    request.state.viewer = viewer  # for ui.render(): the page header, the language preference
    request.state.unread_notices = unread_notices(s, viewer.user_id)  # the header's count (/notices)
    return viewer


PageViewer = Annotated[Viewer, Depends(page_viewer)]


async def _sent_csrf(request: Request) -> str:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        form = await request.form()  # Starlette keeps it: the route's Form() fields read the same
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    return sent


async def csrf(request: Request, login: PageLogin) -> None:
    sent = await _sent_csrf(request)
    if not sent or not hmac.compare_digest(sent.encode(), login.csrf_token.encode()):
        raise CsrfRefused(
            "this form has expired or did not come from this site (CSRF token missing or wrong): "
            "reload the page and send it again"
        )


Csrf = Annotated[None, Depends(csrf)]


def page_writer(viewer: PageViewer, _csrf: Csrf) -> Viewer:
    require_write(viewer)
    return viewer


PageWriter = Annotated[Viewer, Depends(page_writer)]


def admin_viewer(viewer: PageViewer) -> Viewer:
    require_admin(viewer)
    return viewer


AdminViewer = Annotated[Viewer, Depends(admin_viewer)]


# --- the login form's CSRF (there is no session yet) -----------------------------------------------

_process_key = secrets.token_bytes(32)


def _login_key(settings: Settings) -> bytes:
    # Signed double submit: the cookie holds a random nonce, the form its HMAC under SECRET_KEY, so a
    # cookie planted by another site (or a sibling subdomain) is useless without the key. Without
    # SECRET_KEY a per-process key still works for one web process (dev.py run always sets one).
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return hashlib.sha256(
            b"adaldyk-login-csrf:" + settings.secret_key.get_secret_value().encode()
        ).digest()
    return _process_key


def login_csrf_pair(settings: Settings, nonce: str | None = None) -> tuple[str, str]:
    """(cookie nonce, form token) for the login form; a valid existing nonce is kept."""
    nonce = nonce if nonce and 20 <= len(nonce) <= 100 else secrets.token_urlsafe(24)
    token = hmac.new(_login_key(settings), nonce.encode(), hashlib.sha256).hexdigest()
    return nonce, token


async def login_csrf(request: Request) -> None:
    settings = _settings(request)
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = await _sent_csrf(request)
    expected = login_csrf_pair(settings, nonce)[1] if nonce else ""
    if not nonce or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused(
            "the login form has expired or did not come from this site (CSRF token missing or wrong): "
            "open the login page again"
        )


LoginCsrf = Annotated[None, Depends(login_csrf)]


def set_cookie(response: Response, settings: Settings, name: str, value: str, *, max_age: int | None) -> None:
    # HttpOnly: no script (not even an injected one) can read it. SameSite=Lax: a cross-site POST never
    # carries it (CSRF tokens guard the rest), while a link to an appeal in an e-mail or a messenger
    # still opens logged in — Strict would send every such click to the login form.
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )


# --- API tokens ------------------------------------------------------------------------------------


class _TokenUse:
    """Remembers when this process last wrote a token's last_used_at (at most once a minute each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.touched: dict[int, float] = {}

    def due(self, token_id: int) -> bool:
        with self.lock:
            if time.monotonic() - self.touched.get(token_id, -1e9) < LAST_USED_PRECISION.total_seconds():
                return False
            self.touched[token_id] = time.monotonic()
            return True


def _token_use(request: Request) -> _TokenUse:
    use = getattr(request.app.state, "token_use", None)
    if use is None:
        use = request.app.state.token_use = _TokenUse()
    return use


def _touch_token(engine: Engine, token_id: int) -> None:
    at = utcnow()
    try:
        with unit_of_work(engine) as s:
            s.execute(
                update(ApiToken)
                .where(
                    col(ApiToken.id) == token_id,
                    or_(
                        col(ApiToken.last_used_at).is_(None),
                        col(ApiToken.last_used_at) < at - LAST_USED_PRECISION,
                    ),
                )
                .values(last_used_at=at)
            )
    except SQLAlchemyError as exc:  # after the answer was sent: nobody to tell but the log
        throttled(log, failure_kind("api.last_used_at", exc), "could not record token use: %s", describe(exc))


def api_viewer(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    background: BackgroundTasks,
    s: Db,
) -> Viewer:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    found = s.exec(
        select(ApiToken, StaffUser)
        .join(StaffUser, col(StaffUser.id) == ApiToken.user_id, isouter=True)
        .where(ApiToken.token_sha256 == accounts.digest(credentials.credentials))
    ).first()
    if found is None or found[0].revoked_at is not None:
        raise Unauthorized("invalid or revoked token")
    token, user = found
    if user is None:
        raise Unauthorized(
            f"token {token.name!r} belongs to no staff user (it was made before accounts had rights): "
            "create a new one with `adaldyk token create NAME --user USERNAME` and revoke this one"
        )
    if user.disabled_at is not None:
        raise Unauthorized(f"the account {user.username} that token {token.name!r} acts for is disabled")
    last = token.last_used_at
    stale = last is None or utcnow() - as_utc(last) >= LAST_USED_PRECISION
    if stale and token.id is not None and _token_use(request).due(token.id):
        # After the answer: the write may wait for SQLite's writer, the reader must not.
        background.add_task(_touch_token, _engine(request), token.id)
    viewer = viewer_for(s, user)
    request.state.token_name = token.name
    return viewer


ApiViewer = Annotated[Viewer, Depends(api_viewer)]


def api_writer(viewer: ApiViewer) -> Viewer:
    require_write(viewer)
    return viewer


ApiWriter = Annotated[Viewer, Depends(api_writer)]


# --- answers ---------------------------------------------------------------------------------------


def install_auth_handlers(app: FastAPI) -> None:
    """A page without a live session goes to the login form (htmx requests: HX-Redirect); a refused
    CSRF token is a 403 page for a person, JSON for a script."""

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = "/login" + (
            f"?next={quote(exc.next_path, safe='')}" if exc.next_path not in ("", "/") else ""
        )
        if request.headers.get("hx-request"):
            return JSONResponse(
                {"detail": "the session has ended: log in again", "code": "login_required"},
                status_code=401,
                headers={"HX-Redirect": target},
            )
        return RedirectResponse(target, status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        # A person gets a page that says what to do (reload and resend); a script the usual JSON.
        assert isinstance(exc, CsrfRefused)
        if ui.is_page_request(request) and not request.headers.get("hx-request"):
            back = safe_next(urlsplit(request.headers.get("referer", "")).path or "/")
            return ui.render(request, "auth/refused.html", {"back": back}, status_code=403)
        return error_response(403, str(exc), code=exc.code)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
