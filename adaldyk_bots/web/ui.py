"""Server-rendered pages: the Jinja2 environment, the request's language, and `render()`.

Every page extends `templates/base.html` and gets in its context: `_` / `gettext` / `ngettext` in the
request's language, `lang`, `languages`, `viewer` (the staff user, or None), `csrf_token`, `request`,
`lang_url(code)` (this page in another language) and `static(path)`. Autoescaping is on for every
template: citizens' text is always shown as text.

The language of a request: `?lang=kk|ru|en` (remembered in a cookie, and for a logged-in user by
`remember_language` hooks — see `LANGUAGE_HOOKS`), else the cookie, else the user's saved preference,
else Accept-Language, else Kazakh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import URL

from adaldyk_bots import __version__
from adaldyk_bots.i18n import DEFAULT_LANGUAGE, LANGUAGE_NAMES, LANGUAGES, negotiate, translations

__all__ = [
    "LANGUAGE_COOKIE",
    "LANGUAGE_HOOKS",
    "PRIVATE_HEADERS",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "gettext_for",
    "is_page_request",
    "render",
    "render_error",
    "same_site_url",
    "request_language",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LANGUAGE_COOKIE = "adaldyk_lang"
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600
# Paths that answer programs, not people: their errors stay JSON.
MACHINE_PREFIXES = ("/api/", "/webhooks/", "/healthz", "/openapi.json", "/docs", "/redoc", "/static/")

# Every workspace page shows citizens' personal data or buttons that act: never cached, never framed by
# another site (clickjacking). A page meant to be embedded (the public form's iframe) passes its own.
PRIVATE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# Called as hook(request, lang) when a request switches the language with ?lang=: the accounts code
# registers one that saves it as the logged-in user's preference. Kept as hooks so that this module
# knows nothing of accounts.
LANGUAGE_HOOKS: list[Callable[[Request, str], None]] = []


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,  # a misspelt variable is an error in tests, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["app_version"] = __version__
    env.globals["language_names"] = LANGUAGE_NAMES
    return env


_ENV = _environment()


def request_language(request: Request) -> str:
    """The language this request is answered in (see the module docstring)."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANGUAGE_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    viewer = getattr(request.state, "viewer", None)
    preferred = getattr(viewer, "language", None)
    if preferred in LANGUAGES:
        return str(preferred)
    return negotiate(request.headers.get("accept-language")) or DEFAULT_LANGUAGE


def gettext_for(request: Request) -> Callable[[str], str]:
    """`_` for Python code that builds text for a page (flash messages, form errors)."""
    return translations(request_language(request)).gettext


def lang_url(request: Request, code: str) -> str:
    """This page in another language: the same path and query with `lang` replaced."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    query.append(("lang", code))
    return f"{request.url.path}?{urlencode(query)}"


def is_page_request(request: Request) -> bool:
    """True for the workspace and public pages (people); False for the API, webhooks and health."""
    path = request.url.path
    return not any(path == p.rstrip("/") or path.startswith(p) for p in MACHINE_PREFIXES)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    lang = request_language(request)
    tr = translations(lang)
    viewer = getattr(request.state, "viewer", None)
    full: dict[str, Any] = {
        "request": request,
        "lang": lang,
        "languages": LANGUAGES,
        "viewer": viewer,
        "unread_notices": getattr(request.state, "unread_notices", 0),
        "csrf_token": getattr(request.state, "csrf_token", "") or "",
        "_": tr.gettext,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
        "lang_url": lambda code: lang_url(request, code),
        "static": lambda path: f"/static/{path}",
        "current_path": request.url.path,
    }
    full.update(context or {})
    body = _ENV.get_template(template).render(full)
    response = HTMLResponse(body, status_code=status_code, headers={**PRIVATE_HEADERS, **(headers or {})})
    remember_language(request, response)
    return response


def remember_language(request: Request, response: Response) -> None:
    """`?lang=` on any page is remembered: a cookie for everyone, the hooks for a logged-in user."""
    asked = request.query_params.get("lang")
    if asked not in LANGUAGES or request.cookies.get(LANGUAGE_COOKIE) == asked:
        return
    response.set_cookie(
        LANGUAGE_COOKIE, asked, max_age=LANGUAGE_COOKIE_SECONDS, httponly=True, samesite="lax", path="/"
    )
    for hook in LANGUAGE_HOOKS:
        hook(request, asked)


def render_error(
    request: Request, status_code: int, detail: str, *, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """The HTML answer for an error on a page: the same page for the same status, so a hidden appeal
    and a missing one cannot be told apart (the detail is shown only for statuses that carry no secret)."""
    return render(
        request,
        "error.html",
        {"status_code": status_code, "detail": detail},
        status_code=status_code,
        headers=headers,
    )


def same_site_url(request: Request, target: str | None, default: str = "/") -> str:
    """A redirect target from a form or query (`next`): only a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return str(URL(target).path) + (f"?{URL(target).query}" if URL(target).query else "")
