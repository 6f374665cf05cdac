"""The inbox's reads: filters, full-text search, keyset pages, counts and the export, always inside a scope.

Every function takes the caller's scope as a SQL predicate on the appeal table (access.appeal_scope
gives it for a user) and applies it to every statement it runs, so nothing outside the scope is ever
listed, counted, found or exported. No web type lives here: the inbox page, the JSON API and the CSV
export all parse their query string with `InboxFilter.from_query` and call these functions.

Filter meanings:
- statuses: default the open ones (domain.AppealStatus.is_open); `status=all` for every status;
- unit: a unit code, and its sub-units with it (an officer's department sees the same tree);
- overdue: open and past due_at now (computed, so it is exact between the sweeps that set the flag);
- due_within=N: open and due by the end of the N-th working day from today (calendar.py), not overdue;
- assigned=me|<staff id>, unassigned (no person yet);
- q: the appeal's number (ADL-2026-000123, exactly) or words (search_text.py: case and diacritics
  folded the same on both databases, prefix matching for words of 3 letters or more, all words must
  occur somewhere in the appeal's number, names or any version of any citizen message).
Sorts: "activity" (default: newest last activity first) or "due" (soonest due first); both are keyset
orders ending in the id, so a page's cursor stays right while appeals arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    literal_column,
    not_,
    text,
    true,
    tuple_,
)
from sqlalchemy import select as sa_select
from sqlalchemy.sql import visitors
from sqlmodel import Session, col, select

from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.domain import AppealStatus, Category, Language
from adaldyk_bots.errors import InvalidFilter
from adaldyk_bots.search_text import PREFIX_MIN, query_tokens
from adaldyk_bots.storage import tally
from adaldyk_bots.storage.db import utcnow
from adaldyk_bots.storage.models import Appeal, AppealSearch, AppealTally, Contact, Unit

__all__ = [
    "DEFAULT_DUE_SOON_DAYS",
    "OPEN_STATUSES",
    "AppealPage",
    "InboxFilter",
    "InboxItem",
    "facet_counts",
    "iter_export",
    "list_appeals",
    "text_condition",
]

OPEN_STATUSES: tuple[str, ...] = tuple(s.value for s in AppealStatus if s.is_open)
ALL_STATUSES: tuple[str, ...] = tuple(s.value for s in AppealStatus)
DEFAULT_DUE_SOON_DAYS = 3
MAX_DUE_WITHIN = 60
MAX_QUERY = 200
MAX_LIMIT = 500
FINISHED_STATUSES: tuple[str, ...] = tally.FINISHED  # what the tally counts: one definition
FEW_MATCHES = 2000  # a search matching up to this many appeals is read by their ids (and counted)
EXPORT_BATCH = 500

Sort = Literal["activity", "due"]
_CODE = re.compile(r"^[a-z0-9_.-]{1,64}$")
_NUMBER = re.compile(r"^[^\W\d_]{1,16}-\d{4}-\d{1,9}$")
_APPEAL: Table = Appeal.__table__  # type: ignore[attr-defined]
_TALLY: Table = AppealTally.__table__  # type: ignore[attr-defined]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DEFAULT_TZ = ZoneInfo("Asia/Almaty")


@dataclass(frozen=True)
class InboxFilter:
    """What the inbox shows. `now` is the moment the filter was made: overdue and due soon count from it."""

    statuses: tuple[str, ...] = OPEN_STATUSES
    channel: str | None = None
    unit: str | None = None  # a unit code: that unit and all its sub-units
    category: str | None = None
    language: str | None = None
    overdue: bool = False
    due_within_working_days: int | None = None
    due_by: datetime | None = None  # the end of that working day (UTC), resolved from the calendar
    assigned_to: int | None = None
    unassigned: bool = False
    q: str | None = None
    sort: Sort = "activity"
    now: datetime = field(default_factory=utcnow)

    @classmethod
    def from_query(
        cls,
        params: Mapping[str, Any],
        *,
        user_id: int | None = None,
        calendar: WorkingCalendar | None = None,
        now: datetime | None = None,
    ) -> InboxFilter:
        """The filter a query string asks for. Unknown keys are left to the caller (a page has its own,
        such as `lang` or `cursor`); a known key with a value that means nothing raises InvalidFilter.

        status=received&status=in_progress or status=received,in_progress or status=all; channel, unit,
        category, language; overdue=1; due_within=N (working days); assigned=me|<id>; unassigned=1;
        q=words or a number; sort=activity|due. `user_id` is who "me" is."""
        moment = now or utcnow()
        statuses = _statuses(_values(params, "status"))
        due_within = _int(params, "due_within", 0, MAX_DUE_WITHIN)
        due_by = None
        if due_within is not None:
            due_by = _due_by(calendar, moment, due_within)
        assigned_to = None
        assigned = _one(params, "assigned")
        if assigned:
            if assigned == "me":
                if user_id is None:
                    raise InvalidFilter("assigned=me needs a signed-in user")
                assigned_to = user_id
            elif assigned.isdecimal() and 0 < int(assigned) < 2**31:
                assigned_to = int(assigned)
            else:
                raise InvalidFilter(f"assigned must be 'me' or a user id, not {assigned!r}")
        unassigned = _bool(params, "unassigned")
        if unassigned and assigned_to is not None:
            raise InvalidFilter("assigned and unassigned cannot both be asked for")
        q = (_one(params, "q") or "").strip() or None
        if q is not None and len(q) > MAX_QUERY:
            raise InvalidFilter(f"q is longer than {MAX_QUERY} characters")
        sort = _one(params, "sort") or "activity"
        if sort not in ("activity", "due"):
            raise InvalidFilter(f"sort must be 'activity' or 'due', not {sort!r}")
        return cls(
            statuses=statuses,
            channel=_code(params, "channel"),
            unit=_code(params, "unit"),
            category=_member(params, "category", Category),
            language=_member(params, "language", Language),
            overdue=_bool(params, "overdue"),
            due_within_working_days=due_within,
            due_by=due_by,
            assigned_to=assigned_to,
            unassigned=unassigned,
            q=q,
            sort="due" if sort == "due" else "activity",
            now=moment,
        )


@dataclass(frozen=True)
class InboxItem:
    """One row of the inbox: the appeal and what the list shows beside it."""

    appeal: Appeal
    contact_name: str | None
    unit_code: str | None
    overdue: bool  # open and past due at the filter's `now`


@dataclass(frozen=True)
class AppealPage:
    items: list[InboxItem]
    next_cursor: str | None  # pass as `after` for the next page; None: this was the last


# --- parsing ---------------------------------------------------------------------------------------


def _values(params: Mapping[str, Any], key: str) -> list[str]:
    getlist = getattr(params, "getlist", None)
    raw = getlist(key) if getlist is not None else params.get(key)
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else [str(v) for v in raw]
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _one(params: Mapping[str, Any], key: str) -> str | None:
    values = _values(params, key)
    if len(values) > 1:
        raise InvalidFilter(f"{key} is given more than once")
    return values[0] if values else None


def _statuses(values: list[str]) -> tuple[str, ...]:
    if not values:
        return OPEN_STATUSES
    if values == ["all"]:
        return ALL_STATUSES
    if values == ["open"]:
        return OPEN_STATUSES
    unknown = [v for v in values if v not in ALL_STATUSES]
    if unknown:
        raise InvalidFilter(f"unknown status {unknown[0]!r}; one of: all, open, {', '.join(ALL_STATUSES)}")
    return tuple(dict.fromkeys(values))


def _code(params: Mapping[str, Any], key: str) -> str | None:
    value = _one(params, key)
    if value is not None and not _CODE.match(value):
        raise InvalidFilter(f"{key} {value!r} is not a code (lower-case letters, digits, '_', '-', '.')")
    return value


def _member(params: Mapping[str, Any], key: str, kind: type[Category] | type[Language]) -> str | None:
    value = _one(params, key)
    if value is not None and value not in kind._value2member_map_:
        raise InvalidFilter(f"unknown {key} {value!r}; one of: {', '.join(m.value for m in kind)}")
    return value


def _bool(params: Mapping[str, Any], key: str) -> bool:
    value = _one(params, key)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise InvalidFilter(f"{key} must be 1 or 0, not {value!r}")


def _int(params: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = _one(params, key)
    if value is None:
        return None
    if not value.isdecimal() or not low <= int(value) <= high:
        raise InvalidFilter(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _due_by(calendar: WorkingCalendar | None, now: datetime, days: int) -> datetime:
    cal = calendar or WorkingCalendar(_DEFAULT_TZ)
    today = now.astimezone(cal.tz).date()
    last = cal.add_working_days(today, days) if days else today
    if days == 0 and not cal.is_working_day(today):
        last = cal.next_working_day(today)
    return cal._at(last, cal.work_end)  # noqa: SLF001 - the calendar's own "end of that working day"


# --- predicates ------------------------------------------------------------------------------------


def _unit_tree(s: Session) -> tuple[dict[str, int], dict[int, list[int]], dict[int, str]]:
    by_code: dict[str, int] = {}
    children: dict[int, list[int]] = defaultdict(list)
    codes: dict[int, str] = {}
    for unit_id, code, parent_id in s.exec(select(Unit.id, Unit.code, Unit.parent_id)):
        assert unit_id is not None
        by_code[code], codes[unit_id] = unit_id, code
        if parent_id is not None:
            children[parent_id].append(unit_id)
    return by_code, children, codes


def _subtree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        unit_id = todo.pop()
        out.append(unit_id)
        todo.extend(children.get(unit_id, ()))
    return out


class _Search:
    """A text search's condition on the appeal table, and whether it matches few enough appeals (at
    most FEW_MATCHES, before scope and filters) to be counted."""

    def __init__(self, s: Session, q: str) -> None:
        self.s = s
        self._few: bool | None = True
        self._ids: list[int] = []
        if _NUMBER.match(q):
            self.condition: ColumnElement[bool] = col(Appeal.number) == q.upper()
            return
        tokens = query_tokens(q)
        if not tokens:
            self.condition = true()  # nothing searchable in it (punctuation only): no text condition
            self._few = False
            return
        if s.get_bind().dialect.name == "postgresql":
            expr = " & ".join(f"{t}:*" if len(t) >= PREFIX_MIN else t for t in tokens)
            document = func.to_tsvector(literal_column("'simple'::regconfig"), AppealSearch.document)
            match = document.op("@@")(func.to_tsquery(literal_column("'simple'::regconfig"), expr))
            self._matches: Any = select(AppealSearch.appeal_id).where(match)
            self._few = None
            if self.few:
                # Few (the planner's estimate for a prefix is rough: "004567:*" is guessed at 4,000 rows
                # and walking the whole order to find 4 took 17 s): read the page by their ids.
                self.condition = col(Appeal.id).in_(self._ids) if self._ids else false()
            else:
                # Many: the planner has statistics on the indexed expression and walks the inbox's order
                # checking each appeal's document rather than reading every match.
                self.condition = col(Appeal.id).in_(self._matches)
            return
        expr = " AND ".join(f'"{t}"*' if len(t) >= PREFIX_MIN else f'"{t}"' for t in tokens)
        # FTS5 stops reading at the limit: knowing "few or many" costs at most FEW_MATCHES row ids.
        probe = s.execute(_FTS_IDS, {"fts_query": expr, "few": FEW_MATCHES + 1}).scalars().all()
        self._few = len(probe) <= FEW_MATCHES
        if self._few:
            self.condition = col(Appeal.id).in_(probe) if probe else false()
        else:
            # SQLite's planner cannot tell a rare word from a common one inside FTS5 and always starts
            # from the matches: for a word in 100,000 appeals, 100,000 row reads and a sort for one page.
            # `+appeal.id` (the unary plus keeps it off the primary key) makes it walk the inbox's own
            # order instead and test each appeal against the matches, which it holds in memory.
            self.condition = literal_column("+appeal.id").in_(_FTS_ALL.bindparams(fts_query=expr))

    @property
    def few(self) -> bool:
        if self._few is None:
            # PostgreSQL: the planner's estimate first (a GIN bitmap for a common word reads all of it),
            # then, when it says few, the exact answer.
            sql = self._matches.compile(
                dialect=self.s.get_bind().dialect, compile_kwargs={"literal_binds": True}
            )
            plan = self.s.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
            estimate = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"]
            if estimate > 4 * FEW_MATCHES:
                self._few = False
            else:
                self._ids = list(self.s.execute(self._matches.limit(FEW_MATCHES + 1)).scalars().all())
                self._few = len(self._ids) <= FEW_MATCHES
        return self._few


def text_condition(s: Session, q: str) -> ColumnElement[bool]:
    """The full-text condition on `appeal` for `q`, the same on both databases and in every list that
    searches (the inbox, the export, the JSON API): words in any case, prefixes from PREFIX_MIN letters,
    a full appeal number exactly."""
    return _Search(s, q).condition


_FTS_ALL = text("SELECT rowid FROM appeal_fts WHERE appeal_fts MATCH :fts_query")
_FTS_IDS = text("SELECT rowid FROM appeal_fts WHERE appeal_fts MATCH :fts_query LIMIT :few")


# Rendered with the values inline, the same text as the WHERE of the partial indexes of open appeals
# (models.py, ix_appeal_open_*): SQLite uses a partial index only for a query whose WHERE contains its
# WHERE, and a bound parameter is not the same expression.
_OPEN = col(Appeal.status).in_(
    bindparam("open_statuses", list(OPEN_STATUSES), expanding=True, literal_execute=True)
)


# Not `IS NULL`: SQLite's planner takes "IS NULL" on ix_appeal_assignee_id for a rare value (its
# statistics average over the ids) and then sorts hundreds of thousands of rows; as an expression the
# term is read from the open appeals' covering index instead, on both databases (ids start at 1).
_UNASSIGNED = func.coalesce(col(Appeal.assignee_id), 0) == 0


class _Where:
    """The WHERE of a filter inside a scope, built once per call (the unit tree and the text search's
    condition are read once even when the counts need the WHERE eight times)."""

    def __init__(self, s: Session, scope: ColumnElement[bool], f: InboxFilter) -> None:
        self.s, self.scope, self.f = s, scope, f
        self._tree: tuple[dict[str, int], dict[int, list[int]], dict[int, str]] | None = None
        self._search: _Search | None = None

    @property
    def search(self) -> _Search | None:
        if self._search is None and self.f.q:
            self._search = _Search(self.s, self.f.q)
        return self._search

    @property
    def tree(self) -> tuple[dict[str, int], dict[int, list[int]], dict[int, str]]:
        if self._tree is None:
            self._tree = _unit_tree(self.s)
        return self._tree

    def page(self) -> list[ColumnElement[bool]]:
        """The conditions of a page of the list.

        On SQLite, when only open appeals are asked for, the filters' terms are made opaque to the
        planner (coalesce(term, 0): same truth, no index): it then walks the open appeals' covering
        index in the page's order and stops after one page, at most the open appeals' count of index
        entries. Left to itself it seeks a counted dimension's index (language = 'kk': a fifth of the
        open appeals) and sorts all of them for one page: 300 ms at 1M appeals instead of 10."""
        f = self.f
        opaque = self.s.get_bind().dialect.name == "sqlite" and set(f.statuses) <= set(OPEN_STATUSES)
        return self.but(opaque=opaque)

    def dimensions(self, skip: tuple[str, ...], table: Table) -> list[ColumnElement[bool]]:
        """The conditions of the value filters (channel, category, language, unit) but `skip`, over
        `table`'s columns: `appeal`, or appeal_tally (which keeps the same columns)."""
        f, c = self.f, table.c
        where: list[ColumnElement[bool]] = []
        if "channel" not in skip and f.channel:
            where.append(c.channel == f.channel)
        if "category" not in skip and f.category:
            where.append(c.category == f.category)
        if "language" not in skip and f.language:
            where.append(c.language == f.language)
        if "unit" not in skip and f.unit:
            by_code, children, _ = self.tree
            root = by_code.get(f.unit)
            if root is None:
                raise InvalidFilter(f"unknown unit {f.unit!r}")
            where.append(c.unit_id.in_(_subtree(root, children)))
        return where

    def but(self, *skip: str, opaque: bool = False) -> list[ColumnElement[bool]]:
        """The conditions without the named dimensions (for their own counts)."""
        f = self.f
        where: list[ColumnElement[bool]] = [self.scope]
        if "status" not in skip and set(f.statuses) != set(ALL_STATUSES):
            if set(f.statuses) <= set(OPEN_STATUSES):
                where.append(_OPEN)  # the open appeals' own indexes serve the inbox's working set
            if set(f.statuses) != set(OPEN_STATUSES):
                where.append(col(Appeal.status).in_(f.statuses))
        where += self.dimensions(skip, _APPEAL)
        if "toggles" not in skip:
            if f.overdue:
                where += [_OPEN, col(Appeal.due_at) < f.now]
            if f.due_by is not None:
                where += [_OPEN, col(Appeal.due_at) >= f.now, col(Appeal.due_at) <= f.due_by]
            if f.assigned_to is not None:
                where.append(col(Appeal.assignee_id) == f.assigned_to)
            if f.unassigned:
                where.append(_UNASSIGNED)
        if opaque:
            where = [func.coalesce(term, 0) for term in where if term is not _OPEN]
            where.append(_OPEN)
        if self.search is not None:
            where.append(self.search.condition)
        return where


# --- lists -----------------------------------------------------------------------------------------


def _order(f: InboxFilter) -> tuple[Any, ...]:
    if f.sort == "due":
        return (col(Appeal.due_at).asc(), col(Appeal.id).asc())
    return (col(Appeal.last_activity_at).desc(), col(Appeal.id).desc())


def _key(f: InboxFilter, appeal: Appeal) -> tuple[datetime, int]:
    assert appeal.id is not None
    return (appeal.due_at if f.sort == "due" else appeal.last_activity_at), appeal.id


def _encode_cursor(f: InboxFilter, key: tuple[datetime, int]) -> str:
    raw = json.dumps([f.sort, key[0].isoformat(), key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(f: InboxFilter, cursor: str) -> tuple[datetime, int]:
    try:
        sort, moment, appeal_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = (datetime.fromisoformat(moment), int(appeal_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidFilter("cursor is not one this inbox gave out") from None
    if sort != f.sort or key[0].utcoffset() is None:
        raise InvalidFilter("cursor belongs to another sort order: start again from the first page")
    return key


def _after(f: InboxFilter, key: tuple[datetime, int]) -> ColumnElement[bool]:
    if f.sort == "due":
        return tuple_(col(Appeal.due_at), col(Appeal.id)) > tuple_(key[0], key[1])
    return tuple_(col(Appeal.last_activity_at), col(Appeal.id)) < tuple_(key[0], key[1])


def _rows(where: list[ColumnElement[bool]], f: InboxFilter, limit: int) -> Any:
    return (
        select(Appeal, Contact.display_name, Unit.code)
        .join(Contact, col(Contact.id) == Appeal.contact_id)
        .outerjoin(Unit, col(Unit.id) == Appeal.unit_id)
        .where(*where)
        .order_by(*_order(f))
        .limit(limit)
    )


def list_appeals(
    s: Session, scope: ColumnElement[bool], f: InboxFilter, *, limit: int, after: str | None = None
) -> AppealPage:
    """One page of the inbox in `f.sort` order; `after` is the previous page's `next_cursor`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidFilter(f"limit must be from 1 to {MAX_LIMIT}")
    where = _Where(s, scope, f).page()
    if after:
        where.append(_after(f, _decode_cursor(f, after)))
    rows = s.exec(_rows(where, f, limit + 1)).all()
    items = [_item(f, appeal, name, code) for appeal, name, code in rows[:limit]]
    more = len(rows) > limit
    return AppealPage(items=items, next_cursor=_encode_cursor(f, _key(f, items[-1].appeal)) if more else None)


def _item(f: InboxFilter, appeal: Appeal, name: str | None, code: str | None) -> InboxItem:
    late = appeal.status in OPEN_STATUSES and appeal.due_at < f.now
    return InboxItem(appeal=appeal, contact_name=name, unit_code=code, overdue=late)


def iter_export(s: Session, scope: ColumnElement[bool], f: InboxFilter) -> Iterator[InboxItem]:
    """Every appeal of `f` inside `scope`, in `f.sort` order, read in keyset batches so that memory stays
    flat however many there are. The session's identity map is cleared after each batch."""
    cursor: str | None = None
    while True:
        page = list_appeals(s, scope, f, limit=EXPORT_BATCH, after=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
        s.expunge_all()


# --- counts ----------------------------------------------------------------------------------------


class _NotOnTally(Exception):
    """A condition names an appeal column the tally does not keep: count that part on `appeal`."""


def _on_tally(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    """`expr` (a scope: access.appeal_scope) over appeal_tally's columns instead of appeal's. The tally
    keeps NULL for "none" as `appeal` does, so the same SQL means the same: one scope rule for both."""

    def swap(element: Any) -> Any:
        table = getattr(element, "table", None)
        if isinstance(element, ColumnClause) and getattr(table, "name", None) == "appeal":
            if element.name not in _TALLY.c:
                raise _NotOnTally(element.name)
            return _TALLY.c[element.name]
        return None

    swapped: ColumnElement[bool] = visitors.replacement_traverse(expr, {}, swap)  # type: ignore[call-overload]
    return swapped


def _grain(terms: list[ColumnElement[bool]], group: str | None) -> str:
    """The smallest grain of the tally that keeps every column these conditions and the grouping read."""
    used = {group} if group else set()
    for term in terms:
        used |= {e.name for e in visitors.iterate(term) if isinstance(e, ColumnClause) and e.table is _TALLY}
    for grain, kept in tally.GRAINS.items():
        if used <= {*kept, "assigned"}:
            return grain
    raise AssertionError(f"no grain keeps {sorted(used)}")  # "u" keeps every column


def _at_grain(terms: list[ColumnElement[bool]], group: str | None) -> ColumnElement[bool]:
    # Inline, not bound: a prepared statement's generic plan guesses a third of the table per grain
    # and scans all 140,000 rows for the 1,300 of grain "n" (40 ms instead of 0.5 on PostgreSQL).
    grain = _grain(terms, group)
    return _TALLY.c.grain == bindparam(f"grain_{grain}", grain, literal_execute=True)


@dataclass(frozen=True)
class _Part:
    """Appeals counted one way: on `appeal` (the open ones, through their partial indexes; or few search
    matches) or on the tally (the finished ones). `terms` are over that table's columns."""

    on_tally: bool
    terms: list[ColumnElement[bool]]
    statuses: tuple[str, ...]


def _parts(where: _Where, *skip: str) -> list[_Part]:
    """How to count the filter's appeals but the `skip`ped dimensions: open and finished apart."""
    f = where.f
    if where.search is not None:
        return [_Part(False, where.but(*skip), f.statuses)]  # at most FEW_MATCHES appeals: count them
    statuses = ALL_STATUSES if "status" in skip else f.statuses
    opened = tuple(st for st in statuses if st in OPEN_STATUSES)
    finished = tuple(st for st in statuses if st in FINISHED_STATUSES)
    base = where.but(*skip, "status")
    parts = []
    if opened:
        only = [] if set(opened) == set(OPEN_STATUSES) else [col(Appeal.status).in_(opened)]
        # Not made opaque as a page's terms are (_Where.page): a count reads every matching entry anyway,
        # and SQLite's own choice (a unit's index for a department) was 2-8 times faster, measured.
        terms = [*base, *only]
        parts.append(_Part(False, [*terms, _OPEN], opened))
    deadline = "toggles" not in skip and (f.overdue or f.due_by is not None)
    if finished and not deadline:  # overdue and due soon are open appeals only
        try:
            if "toggles" not in skip and f.assigned_to is not None:
                raise _NotOnTally("assignee_id")  # one person's appeals: few, read by ix_appeal_assignee_id
            terms = [_on_tally(where.scope), *where.dimensions(skip, _TALLY)]
            if set(finished) != set(FINISHED_STATUSES):
                terms.append(_TALLY.c.status.in_(finished))
            if "toggles" not in skip and f.unassigned:
                terms.append(not_(_TALLY.c.assigned))
            parts.append(_Part(True, terms, finished))
        except _NotOnTally:
            parts.append(_Part(False, [*base, col(Appeal.status).in_(finished)], finished))
    return parts


def _grouped(s: Session, where: _Where, skip: str, column: str) -> dict[Any, int]:
    """Counts by `column` under every filter but `skip`, open and finished added up."""
    out: dict[Any, int] = defaultdict(int)
    for part in _parts(where, skip):
        if part.on_tally:
            by = _TALLY.c[column]
            grain = _at_grain(part.terms, column)
            stmt = sa_select(by, func.sum(_TALLY.c.n)).where(grain, *part.terms).group_by(by)
        else:
            by = _APPEAL.c[column]
            stmt = sa_select(by, func.count()).where(*part.terms).group_by(by)
        for value, n in s.execute(stmt):
            out[value] += int(n or 0)
    return {value: n for value, n in out.items() if n}


def facet_counts(
    s: Session,
    scope: ColumnElement[bool],
    f: InboxFilter,
    *,
    user_id: int | None = None,
    calendar: WorkingCalendar | None = None,
) -> dict[str, Any]:
    """How many appeals each filter value would show, inside `scope`.

    {"total": n, "status": {value: n}, "channel": {...}, "unit": {code: n}, "category": {...},
    "language": {...}, "overdue": n, "due_soon": n, "unassigned": n, "assigned_to_me": n,
    "capped": [keys]}.

    Each dimension is counted under every other filter but its own (so the alternatives show); a unit's
    count includes its sub-units ("" is: no unit yet); the four toggles are counted under the other
    filters and the active toggle of the other group (deadline: overdue, due soon; assignment: mine,
    unassigned), so the count beside each is what choosing it shows; `due_soon` uses
    f.due_within_working_days or DEFAULT_DUE_SOON_DAYS. Every count is exact: the open appeals are
    counted through their partial indexes, the finished ones (years of history) from appeal_tally,
    which triggers keep (storage/tally.py). A search matching more than FEW_MATCHES appeals (before scope
    and filters) is not counted at all: the answer is {"total": None, "capped": ["search"]}, and the page
    says "many"; otherwise "capped" is empty (the key stays for the callers that read it)."""
    where = _Where(s, scope, f)
    if where.search is not None and not where.search.few:
        # Counting 100,000 matches of a common word under eight groupings takes seconds on either
        # database and tells the moderator nothing a narrower search would not: they are not counted.
        return {"total": None, "capped": ["search"]}
    out: dict[str, Any] = {"capped": []}
    out["status"] = {str(k): n for k, n in _grouped(s, where, "status", "status").items()}
    out["total"] = sum(out["status"].get(st, 0) for st in f.statuses)
    for name in ("channel", "category", "language"):
        out[name] = {str(k): n for k, n in _grouped(s, where, name, name).items()}
    out["unit"] = _unit_counts(where, _grouped(s, where, "unit", "unit_id"))
    due_by = f.due_by or _due_by(calendar, f.now, DEFAULT_DUE_SOON_DAYS)
    # The toggles come in two groups, deadline (overdue | due soon) and assignment (mine | unassigned):
    # one of a group replaces the other, while the groups combine. So each toggle is counted under the
    # active toggle of the other group — the count beside it is what choosing it shows.
    deadline: list[ColumnElement[bool]] = []
    if f.overdue:
        deadline = [_OPEN, col(Appeal.due_at) < f.now]
    elif f.due_by is not None:
        deadline = [_OPEN, col(Appeal.due_at) >= f.now, col(Appeal.due_at) <= f.due_by]
    assignment: list[ColumnElement[bool]] = []
    if f.assigned_to is not None:
        assignment = [col(Appeal.assignee_id) == f.assigned_to]
    elif f.unassigned:
        assignment = [_UNASSIGNED]
    mine = col(Appeal.assignee_id) == user_id if user_id is not None else false()
    totals = [0, 0, 0, 0]  # overdue, due soon, unassigned, assigned to me
    for part in _parts(where, "toggles"):
        if part.on_tally:
            # Finished: never overdue nor due soon, nor counted beside "mine" or "unassigned" while a
            # deadline toggle is chosen (those two are counted under it).
            if deadline:
                continue
            stmt: Any = sa_select(func.sum(_TALLY.c.n)).where(not_(_TALLY.c.assigned), *part.terms)
            totals[2] += int(s.execute(stmt.where(_at_grain(part.terms, None))).scalar() or 0)
            if user_id is not None:  # the tally does not keep who: one person's appeals, by their index
                finished = [*where.but("toggles", "status"), col(Appeal.status).in_(part.statuses)]
                stmt = sa_select(func.count()).select_from(Appeal).where(mine, *finished)
                totals[3] += int(s.execute(stmt).scalar_one())
            continue
        # An open part's rows are all open: its WHEREs need not test it again on every row.
        live = [] if set(part.statuses) <= set(OPEN_STATUSES) else [_OPEN]
        within = [*live, *(term for term in deadline if term is not _OPEN)]
        due = col(Appeal.due_at)
        toggles = sa_select(
            func.count(case((and_(*live, due < f.now, *assignment), 1))),
            func.count(case((and_(*live, due >= f.now, due <= due_by, *assignment), 1))),
            func.count(case((and_(_UNASSIGNED, *within), 1))),
            func.count(case((and_(mine, *within), 1))),
        ).where(*part.terms)
        for i, n in enumerate(s.execute(toggles).one()):
            totals[i] += int(n)
    out.update(overdue=totals[0], due_soon=totals[1], unassigned=totals[2], assigned_to_me=totals[3])
    return out


def _unit_counts(where: _Where, direct: dict[Any, int]) -> dict[str, int]:
    _, children, codes = where.tree
    out: dict[str, int] = {}
    for unit_id, code in codes.items():
        total = sum(direct.get(u, 0) for u in _subtree(unit_id, children))
        if total:
            out[code] = total
    if direct.get(None):
        out[""] = direct[None]  # not routed to any unit yet
    return out
