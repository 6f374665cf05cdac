"""The one place that turns exceptions into HTTP answers, all with the same JSON body (`ErrorOut`).

- AdaldykError and its tree (adaldyk_bots/errors.py): its own status code and `code`.
- Starlette/FastAPI HTTPException (unknown route, wrong method, body too large): its status code.
- A request that does not match the schema: 422 with `code` "invalid_request" and the field errors.
- The database unreachable (connection refused, dropped, pool exhausted): 503, so platforms and
  clients retry; logged as one line a minute per kind of failure, not a traceback per request.
- Any other database error (a bug of ours): 500, its traceback at most once a minute per route and class.
- Anything else: 500 (the server logs its traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from adaldyk_bots.errors import AdaldykError
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.web.ui import is_page_request, render_error

__all__ = ["ErrorOut", "FieldErrorOut", "answer", "error_response", "install_error_handlers", "is_outage"]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
    500: "internal",
    502: "upstream_failed",
    503: "unavailable",
}


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description="where in the request: query, path, body, then the field")
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer of the API has this shape."""

    detail: str = Field(description="what went wrong, for a person")
    code: str = Field(description="a stable code for programs, e.g. not_found, invalid_request")
    errors: list[FieldErrorOut] = Field(default_factory=list, description="per field, for invalid_request")


def error_response(
    status_code: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[FieldErrorOut] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorOut(detail=detail, code=code or _CODES.get(status_code, "error"), errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def answer(
    request: Request,
    status_code: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[FieldErrorOut] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON for programs (API, webhooks, health); the HTML error page for a person on a page."""
    if is_page_request(request):
        try:
            return render_error(request, status_code, detail, headers=headers)
        except Exception:  # noqa: BLE001 - the error page itself failed: the JSON answer still goes out
            log.exception("the HTML error page failed; answering JSON")
    return error_response(status_code, detail, code=code, errors=errors, headers=headers)


def is_outage(exc: BaseException) -> bool:
    """True when a database error means "the database cannot be reached now", not a bug of ours."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _field_errors(exc: RequestValidationError) -> list[FieldErrorOut]:
    found = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        found.append(FieldErrorOut(loc=loc, msg=str(error.get("msg", "")), type=str(error.get("type", ""))))
    return found


def install_error_handlers(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdaldykError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return answer(request, exc.status_code, str(exc), code=exc.code, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers: dict[str, Any] | None = getattr(exc, "headers", None)
        return answer(request, exc.status_code, str(exc.detail), headers=headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        first = errors[0] if errors else None
        detail = f"{'.'.join(map(str, first.loc))}: {first.msg}" if first else "invalid request"
        return answer(request, 422, detail, errors=errors)

    async def database_error(request: Request, exc: Exception) -> Response:
        if is_outage(exc):
            throttled(
                log, failure_kind("database", exc), "database unavailable, answering 503: %s", describe(exc)
            )
            detail = "the database is unavailable; try again later"
            return answer(request, 503, detail, headers={"Retry-After": "5"})
        # A database error that is not an outage is a bug of ours: its traceback, once a minute per kind.
        route = getattr(request.scope.get("route"), "path", "?")
        if throttled(
            log, failure_kind(f"web:{route}", exc), "database error on %s: %s", route, describe(exc)
        ):
            log.error("traceback of the error above", exc_info=exc)
        return answer(request, 500, "internal error")

    async def unexpected(request: Request, _exc: Exception) -> Response:
        # Starlette logs the traceback of what reaches here (it re-raises after the answer is sent).
        return answer(request, 500, "internal error")

    app.add_exception_handler(AdaldykError, refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(Exception, unexpected)
