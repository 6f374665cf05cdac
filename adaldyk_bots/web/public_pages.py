"""The citizen-facing pages: the ministry web site's appeal form and the status look-up.

GET  /public/appeal[?lang=kk|ru|en][&embed=1]   the form (embed=1: without the page chrome, for an iframe)
POST /public/appeal                             registers the appeal; the answer shows number + code once
GET  /public/status[?number=…&code=…]           the progress of that appeal, or one "not found" answer

Refusals never drop an appeal silently: a missing CSRF token, a filled honeypot, a form sent too fast,
too many appeals from one address, a bad field or file — each comes back as the form with the citizen's
text in it and a message that says why (files must be chosen again: a browser never refills them).
CSRF without a session: a signed double submit (cookie nonce, its HMAC in the form) as on the login
form; a token of ours with a same-origin `Origin` header is accepted too (public_form.csrf_valid): in a
third-party iframe browsers withhold our cookie, and two tabs opened at once replace each other's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from limits import RateLimitItemPerHour
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from adaldyk_bots import audit, public_status, uploads
from adaldyk_bots.direct_intake import DirectAppeal, register_direct, reply_target
from adaldyk_bots.domain import Category
from adaldyk_bots.i18n import N_, translations
from adaldyk_bots.iin import normalize_iin
from adaldyk_bots.logs import describe, failure_kind, throttled
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import read_session, require_id, unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealNote, PublicReceipt, Upload
from adaldyk_bots.web import ui
from adaldyk_bots.web.deps import Now, client_address
from adaldyk_bots.web.labels import label
from adaldyk_bots.web.parts import AppParts
from adaldyk_bots.web.public_form import (
    ANSWER_WAYS,
    KINDS,
    MAX_TEXT,
    FormErrors,
    PublicForm,
    check_form,
    csrf_pair,
    csrf_valid,
    form_key,
    issued_stamp,
    issued_time,
)

__all__ = [
    "PUBLIC_CSRF_COOKIE",
    "build_public_router",
    "content_disposition",
    "public_headers",
    "too_large_page",
    "upload_for",
]

log = logging.getLogger(__name__)

PUBLIC_CSRF_COOKIE = "adaldyk_public_csrf"
HONEYPOT_FIELD = "website"
_COOKIE_SECONDS = 24 * 3600

# One line for each R11 kind, so a citizen can choose without knowing the Code.
KIND_HINTS = {
    Category.APPLICATION: N_("Ask for help in exercising your rights or lawful interests."),
    Category.COMPLAINT: N_("A decision, action or inaction of a body or an official violated your rights."),
    Category.REPORT: N_("Tell about a violation of the law, such as illegal felling or a dump."),
    Category.RESPONSE: N_("Give your opinion on a decision, a draft or the ministry's work."),
    Category.PROPOSAL: N_("Suggest how to improve laws, the ministry's work or its services."),
    Category.REQUEST: N_("Ask for information that the ministry holds."),
}
ANSWER_LABELS = {
    "email": N_("By e-mail"),
    "phone": N_("By phone"),
    "messenger": N_("In a messenger"),
}
# Field errors by reason code; {limit} and {name} are filled in where they appear.
MESSAGES = {
    "kind_missing": N_("Choose the kind of appeal."),
    "text_missing": N_("Write the text of the appeal."),
    "text_short": N_("The text is too short: describe the matter in at least 10 characters."),
    "text_long": N_("The text is too long: at most {limit} characters."),
    "answer_missing": N_("Choose how we should answer you."),
    "email_missing": N_("Give the e-mail address for the answer."),
    "email_bad": N_("This does not look like an e-mail address (example: name@mail.kz)."),
    "phone_missing": N_("Give the phone number for the answer."),
    "phone_bad": N_("A phone number has 10 to 15 digits (example: +7 701 234 56 78)."),
    "messenger_missing": N_("Give the messenger and your name or number in it (example: Telegram @name)."),
    "messenger_long": N_("At most 200 characters."),
    "name_long": N_("The name is too long: at most 300 characters."),
    "iin_length": N_("An IIN has exactly 12 digits."),
    "iin_digits": N_("An IIN consists of digits only."),
    "iin_date": N_("The first six digits of an IIN are a birth date (YYMMDD); this date does not exist."),
    "iin_century": N_("The seventh digit of an IIN is 1 to 6 (century and sex)."),
    "iin_checksum": N_("The last digit of this IIN does not match the others: check it for a typo."),
    "consent_missing": N_(
        "Without your consent to the processing of personal data we cannot accept the appeal."
    ),
    "file_empty": N_("The file {name} is empty."),
    "file_type": N_(
        "The file {name} is not of an accepted kind (PDF, JPEG, PNG, GIF, WebP, HEIC, DOC, DOCX, ODT, "
        "XLS, XLSX, RTF)."
    ),
    "file_mismatch": N_("The contents of {name} do not match its name's ending: rename it or save it again."),
    "file_large": N_("The file {name} is larger than {limit}."),
    "files_large": N_("The files together are larger than {limit}."),
    "files_many": N_("At most {limit} files."),
}
REFUSALS = {
    "csrf": N_(
        "The form has expired or did not come from this site. Nothing was sent: check the form and "
        "send it again."
    ),
    "honeypot": N_(
        "The form was refused because a field meant to stay empty was filled in (programs that send "
        "spam do this). If you are a person, send the form again."
    ),
    "too_fast": N_(
        "The form was sent too quickly after it was opened, as programs that send spam do. Wait a few "
        "seconds and send it again."
    ),
    "rate": N_(
        "Too many appeals have been sent from your address in the last hour. Nothing was sent: please "
        "try again later."
    ),
    "unreadable": N_("The form could not be read. Please send it again."),
    "storage": N_(
        "The appeal could not be saved because of a fault on our side. Nothing was lost from the form: "
        "please send it again in a few minutes."
    ),
    "files_again": N_("Please choose your files again: a browser never keeps them in a returned form."),
    "lookup_rate": N_("Too many look-ups from your address in the last hour. Please try again later."),
}


@dataclass
class Refusal:
    errors: FormErrors = field(default_factory=FormErrors)
    file_errors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    general: str | None = None  # a REFUSALS code
    status_code: int = 422
    files_chosen: bool = False  # the citizen must choose them again: say so


class PublicLimiter:
    """Per-address budgets of the `limits` library: in Redis when ADALDYK_REDIS_URL is set (every web
    process shares them), else in this process's memory. Redis that cannot be reached lets a citizen
    through (logged): an appeal refused because of our fault would be an appeal lost."""

    def __init__(self, redis_url: str | None, *, key_prefix: str = "adaldyk") -> None:
        storage: Storage
        if redis_url:
            storage = RedisStorage(
                redis_url,
                key_prefix=f"{key_prefix}:public",
                wrap_exceptions=True,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    def hit(self, what: str, address: str, per_hour: int) -> bool:
        try:
            return bool(self._limiter.hit(RateLimitItemPerHour(per_hour), "public", what, address))
        except StorageError as exc:
            throttled(
                log, failure_kind("public.rate_limit", exc), "rate limit store unreachable: %s", describe(exc)
            )
            return True


def public_headers(settings: Settings, *, embed: bool) -> dict[str, str]:
    """Never cached (personal data); framed by nobody, or (embed) by the ministry's configured origins."""
    origins = " ".join(settings.embed_origins) if embed and settings.embed_origins else "'none'"
    return {**ui.PRIVATE_HEADERS, "Content-Security-Policy": f"frame-ancestors {origins}"}


def _respond(
    request: Request, template: str, context: dict[str, Any], *, embed: bool, status_code: int = 200
) -> Response:
    settings: Settings = request.app.state.runtime.settings

    def lang_url(code: str) -> str:
        # This page in another language, without the secret code in the link (nor in a Referer).
        query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "code")]
        return f"{request.url.path}?{urlencode([*query, ('lang', code)])}"

    response = ui.render(
        request,
        template,
        {"embed": embed, "lang_url": lang_url, **context},
        status_code=status_code,
        headers=public_headers(settings, embed=embed),
    )
    if embed and settings.embed_origins:
        # frame-ancestors decides; an X-Frame-Options DENY beside it would still stop older browsers.
        del response.headers["X-Frame-Options"]
    return response


def _own_origin(request: Request, settings: Settings) -> str:
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value[: limit + 1] if isinstance(value, str) else ""


def build_public_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    settings = runtime.settings
    limiter = PublicLimiter(settings.redis_url)

    def form_page(
        request: Request,
        at: datetime,
        *,
        embed: bool,
        form: PublicForm | None = None,
        refusal: Refusal | None = None,
        issued: str | None = None,
    ) -> Response:
        nonce, token = csrf_pair(settings, request.cookies.get(PUBLIC_CSRF_COOKIE))
        tr = translations(ui.request_language(request))
        refusal = refusal or Refusal(status_code=200)
        errors = {
            name: tr.gettext(MESSAGES[code]).format(limit=MAX_TEXT)
            for name, code in refusal.errors.fields.items()
        }
        file_errors = [
            tr.gettext(MESSAGES[code]).format(
                **{
                    k: size_text(tr.gettext, v) if k == "limit" and code != "files_many" else v
                    for k, v in args.items()
                }
            )
            for code, args in refusal.file_errors
        ]
        if file_errors:
            errors["attachment"] = " ".join(file_errors)
        query = {"lang": ui.request_language(request), **({"embed": "1"} if embed else {})}
        context = {
            "form": form or PublicForm(),
            "errors": errors,
            "general": tr.gettext(REFUSALS[refusal.general]) if refusal.general else None,
            "files_again": refusal.files_chosen,
            "files_again_text": tr.gettext(REFUSALS["files_again"]),
            "kinds": [
                (k.value, label(tr.gettext, "category", k.value), tr.gettext(KIND_HINTS[k])) for k in KINDS
            ],
            "answer_ways": [(w, tr.gettext(ANSWER_LABELS[w])) for w in ANSWER_WAYS],
            "csrf_token": token,
            "issued": issued or issued_stamp(settings, at),
            "honeypot": HONEYPOT_FIELD,
            "action": f"/public/appeal?{urlencode(query)}",
            "max_text": MAX_TEXT,
            "max_file_size": size_text(tr.gettext, settings.public_max_file_bytes),
            "max_files_size": size_text(tr.gettext, settings.public_max_files_bytes),
            "max_files": settings.public_max_files,
            "accept": ",".join(sorted({ext for exts in uploads.ALLOWED.values() for ext in exts})),
            "email_on": "email" in runtime.connectors,
        }
        response = _respond(
            request, "public/appeal.html", context, embed=embed, status_code=refusal.status_code
        )
        response.set_cookie(
            PUBLIC_CSRF_COOKIE,
            nonce,
            max_age=_COOKIE_SECONDS,
            path="/public",
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
        )
        return response

    @router.get("/public/appeal")
    def appeal_form(request: Request, at: Now) -> Response:
        return form_page(request, at, embed=_embedded(request))

    @router.post("/public/appeal")
    async def appeal_submit(request: Request, at: Now) -> Response:
        embed = _embedded(request)
        try:
            data = await request.form(max_files=100, max_fields=100)
        except HTTPException as exc:
            if exc.status_code == 413:  # a chunked body that passed the limit while streaming in
                return _too_large(request, embed=embed)
            return form_page(request, at, embed=embed, refusal=Refusal(general="unreadable", status_code=400))
        form = PublicForm(
            kind=_text(data, "kind", 40),
            text=_text(data, "text", MAX_TEXT * 2),
            answer_by=_text(data, "answer_by", 20),
            email=_text(data, "email", 300),
            phone=_text(data, "phone", 100),
            messenger=_text(data, "messenger", 300),
            name=_text(data, "name", 400),
            iin=_text(data, "iin", 40),
            consent=_text(data, "consent", 10) in ("yes", "on", "1", "true"),
        )
        stamp = _text(data, "issued", 100)

        chosen = any(isinstance(f, UploadFile) and f.filename for f in data.getlist("attachment"))

        def refuse(refusal: Refusal, *, issued: str | None = None) -> Response:
            refusal.files_chosen = chosen
            return form_page(request, at, embed=embed, form=form, refusal=refusal, issued=issued)

        nonce = request.cookies.get(PUBLIC_CSRF_COOKIE, "")
        sent = _text(data, "csrf_token", 300)
        same_origin = request.headers.get("origin", "") == _own_origin(request, settings)
        if not csrf_valid(settings, nonce, sent, same_origin=same_origin):
            return refuse(Refusal(general="csrf", status_code=403))
        if _text(data, HONEYPOT_FIELD, 500).strip():
            log.info("public form: honeypot filled, refused")
            return refuse(Refusal(general="honeypot", status_code=422))
        shown = issued_time(settings, stamp)
        if shown is None:
            return refuse(Refusal(general="csrf", status_code=403))
        if at.timestamp() - shown < settings.public_min_seconds:
            # The same stamp goes back: a person who waits a moment and sends again gets through.
            return refuse(Refusal(general="too_fast", status_code=422), issued=stamp)
        key = form_key(stamp)
        sent_before = await run_in_threadpool(_number_of_form, runtime.engine, key, quiet=True)
        if sent_before is not None:  # a reload or a second click: the appeal exists once
            return _already_sent(request, sent_before, embed=embed)
        refusal = Refusal(errors=check_form(form))
        files = await _files(data, settings, refusal)
        if refusal.errors or refusal.file_errors:
            return refuse(refusal, issued=stamp)
        address = client_address(request, settings)
        allowed = await run_in_threadpool(limiter.hit, "appeal", address, settings.public_submits_per_hour)
        if not allowed:
            return refuse(Refusal(general="rate", status_code=429), issued=stamp)
        lang = ui.request_language(request)
        try:
            number, code = await run_in_threadpool(_register, runtime, form, files, lang, address, at, key)
        except IntegrityError:
            # The same form sent twice at once: the other request registered it.
            sent_before = await run_in_threadpool(_number_of_form, runtime.engine, key)
            if sent_before is None:
                return refuse(Refusal(general="storage", status_code=503), issued=stamp)
            return _already_sent(request, sent_before, embed=embed)
        except SQLAlchemyError as exc:
            throttled(
                log, failure_kind("public.register", exc), "web form appeal not saved: %s", describe(exc)
            )
            return refuse(Refusal(general="storage", status_code=503), issued=stamp)
        context = {
            "number": number,
            "code": public_status.format_code(code),
            "status_url": _status_url(number, lang),
        }
        return _respond(request, "public/done.html", context, embed=embed)

    @router.get("/public/status")
    def status_page(request: Request, number: str = "", code: str = "") -> Response:
        embed = _embedded(request)
        number, code = number.strip()[:40], code.strip()[:40]
        context: dict[str, Any] = {
            "number": number,
            "code": code,
            "view": None,
            "asked": bool(number or code),
            "general": None,
        }
        if not context["asked"]:
            return _respond(request, "public/status.html", context, embed=embed)
        if not limiter.hit("status", client_address(request, settings), settings.public_lookups_per_hour):
            tr = translations(ui.request_language(request))
            context["general"] = tr.gettext(REFUSALS["lookup_rate"])
            return _respond(request, "public/status.html", context, embed=embed, status_code=429)
        with read_session(runtime.engine) as s:
            view = public_status.look_up(s, number, code)
        if view is None:
            return _respond(request, "public/status.html", context, embed=embed, status_code=404)
        tr = translations(ui.request_language(request))
        tz = settings.tz
        context["view"] = {
            "number": view.number,
            "status": label(tr.gettext, "status", view.status),
            "registered": view.registered_at.astimezone(tz).strftime("%d.%m.%Y")
            if view.registered_at
            else "",
            "due": view.due_at.astimezone(tz).strftime("%d.%m.%Y") if view.due_at else "",
            "answered": view.answered,
        }
        return _respond(request, "public/status.html", context, embed=embed)

    return router


def _number_of_form(engine: Any, key: str, *, quiet: bool = False) -> str | None:
    """The appeal this form already registered, if any. `quiet`: a database fault reads as "none" (the
    registration that follows meets the same fault and says so on the form, with the text kept)."""
    try:
        with read_session(engine) as s:
            found = s.exec(
                select(Appeal.number)
                .join(PublicReceipt, col(PublicReceipt.appeal_id) == Appeal.id)
                .where(PublicReceipt.form_key == key)
            ).first()
    except SQLAlchemyError:
        if not quiet:
            raise
        return None
    return str(found) if found is not None else None


def _already_sent(request: Request, number: str, *, embed: bool) -> Response:
    lang = ui.request_language(request)
    context = {"number": number, "code": None, "status_url": _status_url(number, lang)}
    return _respond(request, "public/done.html", context, embed=embed)


def _embedded(request: Request) -> bool:
    return request.query_params.get("embed") == "1"


def size_text(gettext: Any, size: int) -> str:
    """A limit as a person reads it: "5 MB", "64 KB" (rounded down: never more than is taken)."""
    if size >= 1024 * 1024:
        return str(gettext("{n} MB")).format(n=f"{math.floor(size / 1024 / 1024 * 10) / 10:g}")
    return str(gettext("{n} KB")).format(n=size // 1024)


def _status_url(number: str, lang: str) -> str:
    return f"/public/status?{urlencode({'number': number, 'lang': lang})}"


async def _files(data: FormData, settings: Settings, refusal: Refusal) -> list[tuple[str, str, bytes]]:
    """The chosen files that pass the checks; each failure is added to `refusal` with the file's name."""
    chosen = [f for f in data.getlist("attachment") if isinstance(f, UploadFile) and (f.filename or f.size)]
    if len(chosen) > settings.public_max_files:
        refusal.file_errors.append(("files_many", {"limit": settings.public_max_files}))
        return []
    taken: list[tuple[str, str, bytes]] = []
    total = 0
    for upload in chosen:
        name = uploads.safe_name(upload.filename or "file")
        body = await upload.read(settings.public_max_file_bytes + 1)
        if len(body) > settings.public_max_file_bytes:
            refusal.file_errors.append(
                ("file_large", {"name": name, "limit": settings.public_max_file_bytes})
            )
            continue
        total += len(body)
        sniffed = uploads.sniff(name, body)
        if not sniffed.ok:
            refusal.file_errors.append((f"file_{sniffed.reason}", {"name": name}))
            continue
        taken.append((name, sniffed.mime_type, body))
    if total > settings.public_max_files_bytes:
        refusal.file_errors.append(("files_large", {"limit": settings.public_max_files_bytes}))
    return taken


def _register(
    runtime: AppParts,
    form: PublicForm,
    files: list[tuple[str, str, bytes]],
    lang: str,
    address: str,
    at: datetime,
    key: str,
) -> tuple[str, str]:
    """One transaction: the files, the appeal (direct_intake), the receipt's code hash, a note for staff
    when the citizen wants an answer where we cannot write (phone, messenger). Returns (number, code)."""
    code = public_status.new_code()
    email = form.email.strip() or None
    target = reply_target(runtime.connectors, "email", email) if form.answer_by == "email" and email else None
    with unit_of_work(runtime.engine) as s:
        rows = [uploads.store_upload(s, name=n, mime_type=m, data=b, now=at) for n, m, b in files]
        iin = normalize_iin(form.iin) if form.iin.strip() else None
        appeal = register_direct(
            s,
            runtime.workflow,
            DirectAppeal(
                channel="web",
                text=form.text.strip(),
                kind=Category(form.kind),
                language=None,
                name=form.name.strip() or None,
                email=email.lower() if email else None,
                phone=form.phone.strip() or None,
                iin=iin,
                consent=form.consent,
                reply_to=target,
                attachments=[uploads.attachment_of(row) for row in rows],
            ),
            actor="citizen",
            taken_by_id=None,
            now=at,
        )
        appeal_id = require_id(appeal)
        for row in rows:
            row.appeal_id = appeal_id
            s.add(row)
        messenger = form.messenger.strip()[:200] or None
        s.add(
            PublicReceipt(
                appeal_id=appeal_id,
                code_sha256=public_status.code_digest(code),
                form_key=key,
                answer_by=form.answer_by,
                messenger=messenger,
                created_at=at,
            )
        )
        if form.answer_by != "email":
            # Where the citizen asked to be answered, for the staff who call or write by hand
            # (notices.py makes every notice a "call the citizen" task for a web appeal without e-mail).
            tr = translations(appeal.language if appeal.language in ("kk", "ru", "en") else lang)
            way = tr.gettext(ANSWER_LABELS[form.answer_by])
            where = messenger if form.answer_by == "messenger" else form.phone.strip()
            s.add(
                AppealNote(
                    appeal_id=appeal_id,
                    author="system",
                    text=tr.gettext("The citizen asked to be answered: {way}: {where}").format(
                        way=way, where=where
                    ),
                    created_at=at,
                )
            )
        audit.record(
            s,
            actor="citizen",
            action="public.appeal",
            subject=appeal.number,
            detail={"answer_by": form.answer_by, "files": [require_id(r) for r in rows]},
            address=address,
        )
        return appeal.number, code


def upload_for(engine: Any, appeal_id: int, upload_id: int) -> Upload | None:
    """The stored file `upload_id` when it belongs to `appeal_id` (the caller checked the appeal's scope)."""
    with read_session(engine) as s:
        row = s.get(Upload, upload_id)
        if row is None or row.appeal_id != appeal_id:
            return None
        s.expunge(row)
        return row


def content_disposition(kind: str, name: str) -> str:
    """As Starlette's FileResponse writes it: a plain quoted name, or RFC 5987 for any other character."""
    quoted = quote(name)
    return f"{kind}; filename*=utf-8''{quoted}" if quoted != name else f'{kind}; filename="{name}"'


async def too_large_page(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """LimitBodySize's answer for a form body past PUBLIC_MAX_REQUEST_BYTES: it was never read, so the
    text cannot come back; the page says why and to go back (browsers keep a form's text on Back)."""
    request = Request(scope, receive)
    await _too_large(request, embed=_embedded(request))(scope, receive, send)


def _too_large(request: Request, *, embed: bool) -> Response:
    settings: Settings = request.app.state.runtime.settings
    tr = translations(ui.request_language(request))
    context = {
        "files_limit": size_text(tr.gettext, settings.public_max_files_bytes),
        "form_url": f"/public/appeal?{urlencode({'lang': ui.request_language(request)})}",
    }
    response = _respond(request, "public/too_large.html", context, embed=embed, status_code=413)
    response.headers["Connection"] = "close"  # the client may still be sending: tell it to stop
    return response
