"""The inbox: `GET /` (the page), `GET /inbox/results` (its list and counts, refreshed live),
`GET /events/inbox` (the live updates, text/event-stream) and `GET /appeals.csv` (the export).

Every read goes through appeal_query with `access.appeal_scope(viewer)`: the list, the counts, the
search, the event stream and the export show a user exactly the appeals they may see, nothing else.
The query string is the filter (`InboxFilter.from_query`), so a filtered inbox is a link one can send to
a colleague — who sees what their own scope allows of it; `after` is the keyset cursor of a page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import Engine
from sqlmodel import Session, select

from adaldyk_bots.access import Viewer, appeal_scope
from adaldyk_bots.appeal_query import (
    DEFAULT_DUE_SOON_DAYS,
    OPEN_STATUSES,
    AppealPage,
    InboxFilter,
    InboxItem,
    facet_counts,
    iter_export,
    list_appeals,
)
from adaldyk_bots.audit import record
from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import InvalidFilter
from adaldyk_bots.storage.db import read_session, unit_of_work, utcnow
from adaldyk_bots.storage.models import StaffUser, Unit
from adaldyk_bots.web.deps import Db, PageViewer, client_address
from adaldyk_bots.web.inbox_events import InboxChanges, event_stream
from adaldyk_bots.web.labels import CATEGORIES, CHANNELS, LANGUAGES, STATUSES, label
from adaldyk_bots.web.ui import gettext_for, render, render_error, request_language

__all__ = ["PAGE_SIZE", "csv_cell", "inbox_router"]

PAGE_SIZE = 50
FIRST_LINE = 160  # characters of the citizen's first message shown in a row
# Query keys that are the page's own, not the filter's: kept out of filter links and the export.
_PAGE_KEYS = ("after", "lang")
# Excel and LibreOffice run a cell that starts with one of these as a formula (CSV injection, OWASP):
# such a cell is written with a leading apostrophe, which they show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Gettext = Callable[[str], str]


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True)
class Row:
    """One line of the inbox, as the template shows it (every value a plain string: escaped there)."""

    number: str
    channel: str
    language: str
    category: str
    status: str
    status_code: str
    unit: str
    assignee: str
    contact: str
    received: str
    due_date: str
    due_text: str
    overdue: bool
    first_line: str
    too_many_transfers: bool = False  # passed between units more than config/terms.toml allows


@dataclass(frozen=True)
class Option:
    label: str
    count: int | None  # None: not counted (a search too wide to count, or "all")
    url: str
    active: bool


def _option(label: str, count: int | None, url: str, active: bool) -> Option:
    return Option(label, count, url, active)


@dataclass(frozen=True)
class Facet:
    key: str
    title: str
    options: list[Option]


class _Names:
    """Units' and staff members' names for the rows: both tables are small (hundreds), read once."""

    def __init__(self, s: Session, lang: str) -> None:
        self.units: dict[str, str] = {}
        for code, name_ru, name_kk in s.exec(select(Unit.code, Unit.name_ru, Unit.name_kk)):
            self.units[code] = (name_kk if lang == "kk" else name_ru) or code
        self.staff: dict[int, str] = {
            user_id: full_name or username
            for user_id, full_name, username in s.exec(
                select(StaffUser.id, StaffUser.full_name, StaffUser.username)
            )
            if user_id is not None
        }

    def unit(self, code: str | None) -> str:
        return self.units.get(code, code) if code else ""

    def assignee(self, user_id: int | None) -> str:
        return self.staff.get(user_id, "") if user_id is not None else ""


class _Urls:
    """Links to this inbox with one filter changed (the cursor and the language left out)."""

    def __init__(self, request: Request) -> None:
        self.items = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGE_KEYS]

    def query(self, **changes: object) -> str:
        kept = [(k, v) for k, v in self.items if k not in changes]
        kept += [(k, str(v)) for k, v in changes.items() if v is not None and v != ""]
        return urlencode(kept)

    def inbox(self, **changes: object) -> str:
        query = self.query(**changes)
        return f"/?{query}" if query else "/"

    def hidden(self, *leave_out: str) -> list[tuple[str, str]]:
        """The current filter as hidden fields of a form that sets the keys in `leave_out` itself."""
        return [(k, v) for k, v in self.items if k not in leave_out]


def _calendar(request: Request) -> WorkingCalendar:
    calendar: WorkingCalendar = request.app.state.runtime.workflow.calendar
    return calendar


def _inbox_filter(request: Request, viewer: Viewer) -> InboxFilter:
    return InboxFilter.from_query(request.query_params, user_id=viewer.user_id, calendar=_calendar(request))


def _due(
    _: Gettext, calendar: WorkingCalendar, now: datetime, item: InboxItem
) -> tuple[str, str]:  # (the due date, how long is left)
    appeal = item.appeal
    date = appeal.due_at.astimezone(calendar.tz).strftime("%d.%m.%Y")
    if appeal.status not in OPEN_STATUSES:
        return date, ""
    left = calendar.working_days_left(now, appeal.due_at)
    if item.overdue:
        return date, (_("Overdue today") if left == 0 else _("Overdue, working days: %(n)s") % {"n": -left})
    if left == 0:
        return date, _("Due today")
    return date, _("Working days left: %(n)s") % {"n": left}


def _rows(
    _: Gettext,
    calendar: WorkingCalendar,
    names: _Names,
    f: InboxFilter,
    page: AppealPage,
    *,
    flag_transfers_after: int,
) -> list[Row]:
    rows = []
    for item in page.items:
        a = item.appeal
        due_date, due_text = _due(_, calendar, f.now, item)
        first = (a.summary.strip().splitlines() or [""])[0]
        rows.append(
            Row(
                number=a.number,
                channel=label(_, "channel", a.channel),
                language=label(_, "language", a.language),
                category=label(_, "category", a.category),
                status=label(_, "status", a.status),
                status_code=a.status,
                unit=names.unit(item.unit_code),
                assignee=names.assignee(a.assignee_id),
                contact=item.contact_name or "",
                received=a.received_at.astimezone(calendar.tz).strftime("%d.%m.%Y %H:%M"),
                due_date=due_date,
                due_text=due_text,
                overdue=item.overdue,
                first_line=first[:FIRST_LINE] + ("…" if len(first) > FIRST_LINE else ""),
                too_many_transfers=a.transfers > flag_transfers_after,
            )
        )
    return rows


def _status_facet(_: Gettext, urls: _Urls, request: Request, raw: dict[str, Any]) -> Facet:
    asked = ",".join(request.query_params.getlist("status")) or "open"
    known = raw.get("total") is not None
    counts: dict[str, int] = raw.get("status", {})

    def n(value: int) -> int | None:
        return value if known else None

    options = [
        _option(
            _("Open"),
            n(sum(counts.get(s, 0) for s in OPEN_STATUSES)),
            urls.inbox(status=None),
            asked == "open",
        )
    ]
    for status in AppealStatus:
        count, url = n(counts.get(status, 0)), urls.inbox(status=status.value)
        options.append(_option(_(STATUSES[status]), count, url, asked == status))
    every = n(sum(counts.values()))
    options.append(_option(_("All"), every, urls.inbox(status="all"), asked == "all"))
    return Facet("status", _("Status"), options)


def _value_facet(
    _: Gettext,
    urls: _Urls,
    key: str,
    title: str,
    counts: dict[str, int] | None,
    current: str | None,
    show: Callable[[str], str],
    every: list[str] | None = None,
) -> Facet:
    """A facet of one value at a time: "all" first, then each value with its count (most first);
    `counts` None: not counted (the values of `every` and the current one are offered, without counts)."""
    known = counts is not None
    counts = counts or {}
    values = sorted(counts, key=lambda v: (-counts[v], show(v)))
    for value in every or []:
        if value not in counts:
            values.append(value)
    if current and current not in values:
        values.append(current)
    options = [Option(_("All"), None, urls.inbox(**{key: None}), current is None)]
    for value in values:
        if value == "":
            continue  # appeals not routed to any unit: counted, but not a filter of its own
        url = urls.inbox(**{key: None if value == current else value})
        options.append(_option(show(value), counts.get(value, 0) if known else None, url, value == current))
    return Facet(key, title, options)


def _toggle_facets(_: Gettext, urls: _Urls, f: InboxFilter, counts: dict[str, Any]) -> list[Facet]:
    """Deadline (overdue | due within N) and assignment (mine | unassigned): within a group one choice
    replaces the other, the groups combine (as facet_counts counts them)."""
    days = f.due_within_working_days if f.due_within_working_days is not None else DEFAULT_DUE_SOON_DAYS
    deadline = Facet(
        "deadline",
        _("Deadline"),
        [
            Option(
                _("Overdue"),
                counts.get("overdue"),
                urls.inbox(overdue=None if f.overdue else "1", due_within=None),
                f.overdue,
            ),
            Option(
                _("Due within %(n)s working days") % {"n": days},
                counts.get("due_soon"),
                urls.inbox(due_within=None if f.due_by is not None else days, overdue=None),
                f.due_by is not None,
            ),
        ],
    )
    mine = f.assigned_to is not None
    assignment = Facet(
        "assignment",
        _("Assignment"),
        [
            Option(
                _("Assigned to me"),
                counts.get("assigned_to_me"),
                urls.inbox(assigned=None if mine else "me", unassigned=None),
                mine,
            ),
            Option(
                _("Unassigned"),
                counts.get("unassigned"),
                urls.inbox(unassigned=None if f.unassigned else "1", assigned=None),
                f.unassigned,
            ),
        ],
    )
    return [deadline, assignment]


def _facets(
    _: Gettext, request: Request, urls: _Urls, names: _Names, f: InboxFilter, counts: dict[str, Any]
) -> list[Facet]:
    return [
        _status_facet(_, urls, request, counts),
        *_toggle_facets(_, urls, f, counts),
        _value_facet(
            _,
            urls,
            "channel",
            _("Channel"),
            counts.get("channel"),
            f.channel,
            lambda c: label(_, "channel", c),
            None if "channel" in counts else list(CHANNELS),  # not counted: offer the known channels
        ),
        _value_facet(_, urls, "unit", _("Unit"), counts.get("unit"), f.unit, names.unit),
        _value_facet(
            _,
            urls,
            "category",
            _("Category"),
            counts.get("category"),
            f.category,
            lambda c: label(_, "category", c),
            list(CATEGORIES),
        ),
        _value_facet(
            _,
            urls,
            "language",
            _("Language of the appeal"),
            counts.get("language"),
            f.language,
            lambda c: label(_, "language", c),
            list(LANGUAGES),
        ),
    ]


def _results(request: Request, viewer: Viewer, s: Session) -> dict[str, Any]:
    """What the list and the counts need; a filter that means nothing shows the default inbox and says so."""
    _ = gettext_for(request)
    scope = appeal_scope(viewer)
    calendar = _calendar(request)
    invalid = False
    urls = _Urls(request)
    try:
        f = _inbox_filter(request, viewer)
        page = list_appeals(s, scope, f, limit=PAGE_SIZE, after=request.query_params.get("after") or None)
        counts = facet_counts(s, scope, f, user_id=viewer.user_id, calendar=calendar)
    except InvalidFilter:
        invalid, urls.items = True, []
        f = InboxFilter()
        page = list_appeals(s, scope, f, limit=PAGE_SIZE)
        counts = facet_counts(s, scope, f, user_id=viewer.user_id, calendar=calendar)
    names = _Names(s, request_language(request))
    query = urls.query()
    return {
        "invalid_filter": invalid,
        "rows": _rows(
            _,
            calendar,
            names,
            f,
            page,
            flag_transfers_after=request.app.state.runtime.workflow.terms.transfers.flag_after,
        ),
        "total": counts["total"],
        "facets": _facets(_, request, urls, names, f, counts),
        "filter": f,
        "filtered": bool(query),
        "next_url": urls.inbox(after=page.next_cursor) if page.next_cursor else None,
        "first_url": urls.inbox() if request.query_params.get("after") else None,
        "sort_urls": {"activity": urls.inbox(sort=None), "due": urls.inbox(sort="due")},
        "results_url": "/inbox/results?"
        + urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "lang"]),
        "export_url": "/appeals.csv" + (f"?{query}" if query else ""),
        "clear_url": "/",
        "hidden_for_search": urls.hidden("q"),
        "hidden_for_due": urls.hidden("due_within"),
    }


def _changes(request: Request) -> InboxChanges:
    changes: InboxChanges | None = getattr(request.app.state, "inbox_changes", None)
    if changes is None:
        settings = request.app.state.runtime.settings
        changes = request.app.state.inbox_changes = InboxChanges(
            request.app.state.runtime.engine, interval=settings.inbox_poll_seconds
        )
        request.app.state.before_shutdown.append(changes.close)
    return changes


def _export_rows(
    engine: Engine, viewer: Viewer, f: InboxFilter, _: Gettext, calendar: WorkingCalendar, lang: str
) -> Iterator[str]:
    """The CSV, a line at a time, read in keyset batches on its own session (the request's is closed by
    then). UTF-8 with a byte-order mark, which is how Excel knows the file is not in the ANSI code page."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(v) for v in values])
        return buffer.getvalue()

    yield "\ufeff" + line(
        [
            _("Number"),
            _("Channel"),
            _("Language"),
            _("Category"),
            _("Status"),
            _("Unit"),
            _("Assignee"),
            _("Citizen"),
            _("Received"),
            _("Due"),
            _("Overdue"),
            _("Text"),
        ]
    )
    with read_session(engine) as s:
        names = _Names(s, lang)
        for item in iter_export(s, appeal_scope(viewer), f):
            a = item.appeal
            yield line(
                [
                    a.number,
                    label(_, "channel", a.channel),
                    label(_, "language", a.language),
                    label(_, "category", a.category),
                    label(_, "status", a.status),
                    names.unit(item.unit_code),
                    names.assignee(a.assignee_id),
                    item.contact_name or "",
                    a.received_at.astimezone(calendar.tz).strftime("%Y-%m-%d %H:%M"),
                    a.due_at.astimezone(calendar.tz).strftime("%Y-%m-%d %H:%M"),
                    _("yes") if item.overdue else "",
                    a.summary,
                ]
            )


def inbox_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def inbox(request: Request, viewer: PageViewer, s: Db) -> HTMLResponse:
        context = _results(request, viewer, s)
        return render(request, "inbox.html", context, status_code=400 if context["invalid_filter"] else 200)

    @router.get("/inbox/results", response_class=HTMLResponse)
    def results(request: Request, viewer: PageViewer, s: Db) -> HTMLResponse:
        return render(request, "inbox_results.html", _results(request, viewer, s))

    @router.get("/events/inbox")
    async def events(request: Request, viewer: PageViewer, s: Db) -> StreamingResponse:
        # The session checked the login; a stream lasts minutes, so its connection goes back to the pool
        # now instead of being held until the stream ends.
        s.close()
        settings = request.app.state.runtime.settings
        stream = event_stream(
            _changes(request),
            viewer,
            lifetime=settings.inbox_stream_seconds,
            keepalive=settings.inbox_keepalive_seconds,
        )
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx: do not buffer the stream
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @router.get("/appeals.csv")
    def export(request: Request, viewer: PageViewer, s: Db) -> Response:
        s.close()
        try:
            f = _inbox_filter(request, viewer)
        except InvalidFilter:  # never a different export than the one asked for
            _ = gettext_for(request)
            return render_error(request, 400, _("Some filters in the address are not valid."))
        runtime = request.app.state.runtime
        filters = [[k, v] for k, v in request.query_params.multi_items() if k not in _PAGE_KEYS]
        with unit_of_work(runtime.engine) as w:
            record(
                w,
                actor=viewer.actor,
                action="appeal.export",
                detail={"filters": filters, "format": "csv"},
                address=client_address(request, runtime.settings),
            )
        lang = request_language(request)
        body = _export_rows(runtime.engine, viewer, f, gettext_for(request), _calendar(request), lang)
        stamp = utcnow().astimezone(_calendar(request).tz).strftime("%Y-%m-%d-%H%M")
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="appeals-{stamp}.csv"',
                "Cache-Control": "no-store",
            },
        )

    return router
