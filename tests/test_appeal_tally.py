"""The finished appeals' counts come from appeal_tally (storage/tally.py, kept by triggers): after any
sequence of writes they must equal what the appeal table itself says, for every viewer's scope.

Hypothesis draws sequences of writes — new appeals in any status, status changes between open and
finished both ways, unit, assignee, category, language and concerned-unit changes, merges, deletes —
through the ORM and through Core UPDATEs (the two ways the code writes appeals). After each sequence
the inbox's counts (facet_counts, which reads the tally for the finished appeals) are compared with
the inbox's own list of the same filter (iter_export, which reads `appeal` straight) and with a plain
GROUP BY over `appeal`, for a moderator, an officer whose unit has a sub-unit, and an officer of a unit
a corruption report is about (the report must not show in any count of theirs). Same on both databases.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, text, true, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from adaldyk_bots.access import Viewer, appeal_scope, viewer_for
from adaldyk_bots.appeal_query import InboxFilter, facet_counts, iter_export
from adaldyk_bots.domain import AppealStatus, Category, Language
from adaldyk_bots.storage import tally
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, AppealTally, Contact, Conversation, StaffUser, Unit

STATUSES = [s.value for s in AppealStatus]
CHANNELS = ["telegram", "vk", "email"]
CATEGORIES = [Category.COMPLAINT.value, Category.CORRUPTION_REPORT.value, Category.REQUEST.value]
LANGUAGES = [Language.KK.value, Language.RU.value]
UNITS = [None, "ministry", "almaty", "almaty_city", "astana"]
FILTERS: list[dict[str, str]] = [
    {"status": "all"},
    {},
    {"status": "answered,received"},
    {"status": "all", "unit": "almaty", "channel": "vk"},
    {"status": "all", "unassigned": "1"},
    {"status": "all", "assigned": "me"},
    {"status": "all", "category": "corruption_report", "language": "kk"},
    {"status": "all", "overdue": "1"},
]


@pytest.fixture
def world(make_settings):
    settings = make_settings()
    engine = make_engine(settings.database_url)
    with unit_of_work(engine) as s:
        ministry = Unit(code="ministry", name_ru="М", name_kk="М")
        s.add(ministry)
        s.flush()
        almaty = Unit(code="almaty", parent_id=ministry.id, name_ru="А", name_kk="А")
        astana = Unit(code="astana", parent_id=ministry.id, name_ru="Н", name_kk="Н")
        s.add_all([almaty, astana])
        s.flush()
        city = Unit(code="almaty_city", parent_id=almaty.id, name_ru="Г", name_kk="Г")
        s.add(city)
        contact = Contact(display_name="Citizen", created_at=utcnow())
        s.add(contact)
        s.flush()
        conversation = Conversation(
            contact_id=contact.id,
            channel="telegram",
            account="1",
            chat_id="c",
            last_inbound_at=utcnow(),
            created_at=utcnow(),
        )
        s.add(conversation)
        users = {
            "moderator": StaffUser(username="mod", password_hash="x", role="moderator", created_at=utcnow()),
            "officer": StaffUser(
                username="alm", password_hash="x", role="officer", unit_id=almaty.id, created_at=utcnow()
            ),
            "concealed": StaffUser(
                username="ast", password_hash="x", role="officer", unit_id=astana.id, created_at=utcnow()
            ),
        }
        s.add_all(users.values())
        s.flush()
        ids = {u.code: u.id for u in (ministry, almaty, astana, city)}
        world = {
            "engine": engine,
            "units": ids,
            "users": {k: u.id for k, u in users.items()},
            "contact": contact.id,
            "conversation": conversation.id,
        }
    yield world
    engine.dispose()


# One write: (kind, appeal index, value); indexes wrap around the appeals that exist.
creates = st.tuples(
    st.just("create"),
    st.sampled_from(STATUSES),
    st.sampled_from(CHANNELS),
    st.sampled_from(CATEGORIES),
    st.sampled_from(LANGUAGES),
    st.sampled_from(UNITS),
    st.sampled_from([None, "moderator", "officer"]),
)
writes = st.one_of(
    creates,
    st.tuples(st.just("status"), st.integers(0, 50), st.sampled_from(STATUSES), st.booleans()),
    st.tuples(st.just("unit"), st.integers(0, 50), st.sampled_from(UNITS), st.booleans()),
    st.tuples(st.just("assignee"), st.integers(0, 50), st.sampled_from([None, "moderator", "officer"])),
    st.tuples(st.just("category"), st.integers(0, 50), st.sampled_from(CATEGORIES)),
    st.tuples(st.just("language"), st.integers(0, 50), st.sampled_from(LANGUAGES)),
    # A corruption report about astana: hidden from astana's chain (astana and the ministry above it).
    st.tuples(st.just("report"), st.integers(0, 50), st.sampled_from([None, "astana", "almaty_city"])),
    st.tuples(st.just("merge"), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
)


def _apply(world: dict[str, Any], s: Session, write: tuple[Any, ...], serial: list[int]) -> None:
    units, users = world["units"], world["users"]
    ids = list(s.exec(select(Appeal.id).order_by(col(Appeal.id))).all())
    kind = write[0]
    if kind == "create":
        _, status, channel, category, language, unit, assignee = write
        serial[0] += 1
        now = utcnow()
        s.add(
            Appeal(
                number=f"T-2026-{serial[0]:06d}",
                contact_id=world["contact"],
                conversation_id=world["conversation"],
                channel=channel,
                language=language,
                category=category,
                status=status,
                unit_id=units.get(unit) if unit else None,
                assignee_id=users[assignee] if assignee else None,
                received_at=now,
                registered_at=now,
                # Every third one overdue: overdue counts are of open appeals only, under status=all too.
                due_at=now + timedelta(days=-1 if serial[0] % 3 == 0 else 5),
                created_at=now,
                updated_at=now,
            )
        )
        s.flush()
        return
    if not ids:
        return
    appeal_id = ids[write[1] % len(ids)]
    if kind == "status" or kind == "unit":
        value = write[2] if kind == "status" else (units[write[2]] if write[2] else None)
        column = "status" if kind == "status" else "unit_id"
        if write[3]:  # the ORM's UPDATE (only changed columns) …
            appeal = s.get(Appeal, appeal_id)
            assert appeal is not None
            setattr(appeal, column, value)
            s.add(appeal)
        else:  # … or a Core UPDATE, as storage/inbound.py writes
            s.execute(update(Appeal).where(col(Appeal.id) == appeal_id).values({column: value}))
    elif kind == "assignee":
        value = users[write[2]] if write[2] else None
        s.execute(update(Appeal).where(col(Appeal.id) == appeal_id).values(assignee_id=value))
    elif kind in ("category", "language"):
        s.execute(update(Appeal).where(col(Appeal.id) == appeal_id).values({kind: write[2]}))
    elif kind == "report":
        concerned = units[write[2]] if write[2] else None
        s.execute(update(Appeal).where(col(Appeal.id) == appeal_id).values(concerned_unit_id=concerned))
    elif kind == "merge":
        into = ids[write[2] % len(ids)]
        if into != appeal_id:
            s.execute(
                update(Appeal)
                .where(col(Appeal.id) == appeal_id)
                .values(status=AppealStatus.MERGED.value, merged_into_id=into)
            )
    elif kind == "delete":
        s.execute(update(Appeal).where(col(Appeal.merged_into_id) == appeal_id).values(merged_into_id=None))
        s.execute(delete(Appeal).where(col(Appeal.id) == appeal_id))
    s.flush()


def _listed(s: Session, viewer: Viewer, params: dict[str, str]) -> int:
    f = InboxFilter.from_query(params, user_id=viewer.user_id)
    return sum(1 for _ in iter_export(s, appeal_scope(viewer), f))


def _with(params: dict[str, str], key: str, value: str) -> dict[str, str]:
    """`params` with one filter chosen instead of its own dimension (or of its toggle group)."""
    group = {
        "overdue": ("overdue", "due_within"),
        "due_within": ("overdue", "due_within"),
        "unassigned": ("unassigned", "assigned"),
        "assigned": ("unassigned", "assigned"),
    }.get(key, (key,))
    out = {k: v for k, v in params.items() if k not in group}
    out[key] = value
    return out


def _check(s: Session, world: dict[str, Any], who: str, params: dict[str, str]) -> None:
    user = s.get(StaffUser, world["users"][who])
    assert user is not None
    viewer = viewer_for(s, user)
    scope = appeal_scope(viewer)
    f = InboxFilter.from_query(params, user_id=viewer.user_id)
    counts = facet_counts(s, scope, f, user_id=viewer.user_id)
    assert counts["capped"] == []
    context = (who, params)
    assert counts["total"] == _listed(s, viewer, params), context
    for status in STATUSES:
        assert counts["status"].get(status, 0) == _listed(s, viewer, _with(params, "status", status)), context
    for key, values in (("channel", CHANNELS), ("category", CATEGORIES), ("language", LANGUAGES)):
        for value in values:
            assert counts[key].get(value, 0) == _listed(s, viewer, _with(params, key, value)), (context, key)
    for code in world["units"]:
        assert counts["unit"].get(code, 0) == _listed(s, viewer, _with(params, "unit", code)), (context, code)
    assert counts["overdue"] == _listed(s, viewer, _with(params, "overdue", "1")), context
    assert counts["unassigned"] == _listed(s, viewer, _with(params, "unassigned", "1")), context
    assert counts["assigned_to_me"] == _listed(s, viewer, _with(params, "assigned", "me")), context
    if params == {"status": "all"}:
        # A plain GROUP BY over `appeal` in the viewer's scope, and the scope rule in memory: a report
        # about a unit of the viewer's chain is in no count of theirs.
        direct = dict(
            s.execute(sa_select(Appeal.status, func.count()).where(scope).group_by(Appeal.status)).all()
        )
        assert counts["status"] == direct, context
        visible = [a for a in s.exec(select(Appeal)).all() if viewer.sees(a.unit_id, a.concerned_unit_id)]
        assert counts["total"] == len(visible), context


def _tally_rows(s: Session) -> dict[str, int]:
    return {r.key: r.n for r in s.exec(select(AppealTally)).all() if r.n}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.lists(creates, min_size=4, max_size=12), then=st.lists(writes, max_size=30))
def test_tally_counts_equal_the_appeals_after_any_writes(world, first, then):
    sequence = [*first, *then]
    engine = world["engine"]
    with unit_of_work(engine) as s:  # each example starts from no appeals (the delete trigger runs too)
        s.execute(update(Appeal).values(merged_into_id=None))
        s.execute(delete(Appeal))
    serial = [0]
    with unit_of_work(engine) as s:
        for write in sequence:
            _apply(world, s, write, serial)
    with Session(engine) as s:
        kept = _tally_rows(s)
        for who in ("moderator", "officer", "concealed"):
            for params in FILTERS:
                _check(s, world, who, params)
    with engine.begin() as conn:  # the triggers' rows are exactly what the migration's backfill makes
        tally.rebuild(conn)
    with Session(engine) as s:
        assert _tally_rows(s) == kept


def test_the_concealed_chain_counts_nothing_of_the_report(world):
    """A corruption report about astana, finished: the moderator counts it, astana's officer never."""
    engine, units = world["engine"], world["units"]
    serial = [0]
    with unit_of_work(engine) as s:
        _apply(world, s, ("create", "answered", "vk", "corruption_report", "kk", "astana", None), serial)
        _apply(world, s, ("report", 0, "astana"), serial)
        _apply(world, s, ("create", "closed", "vk", "complaint", "kk", "astana", None), serial)
    with Session(engine) as s:
        by = {who: s.get(StaffUser, world["users"][who]) for who in ("moderator", "concealed")}
        counts = {}
        for who, user in by.items():
            assert user is not None
            viewer = viewer_for(s, user)
            counts[who] = facet_counts(s, appeal_scope(viewer), InboxFilter.from_query({"status": "all"}))
        assert counts["moderator"]["category"] == {"corruption_report": 1, "complaint": 1}
        assert counts["concealed"]["category"] == {"complaint": 1}
        assert counts["concealed"]["unit"] == {"astana": 1, "ministry": 1}
        assert units["astana"] in viewer_for(s, by["concealed"]).concealed  # type: ignore[arg-type]
        # The tally holds the report (the moderator's counts need it); only the scope keeps it out.
        reports = text("SELECT count(*) FROM appeal_tally WHERE concerned_unit_id IS NOT NULL")
        assert s.execute(reports).scalar()
        assert facet_counts(s, true(), InboxFilter.from_query({"status": "all"}))["total"] == 2


def test_under_a_deadline_toggle_no_finished_appeal_counts(world):
    """Overdue and due soon are open appeals only: with one of them chosen, the assignment toggles'
    counts leave the finished appeals (counted from the tally otherwise) out."""
    engine = world["engine"]
    serial = [0]
    with unit_of_work(engine) as s:
        for status in ("answered", "closed", "received"):  # the third is overdue (serial 3)
            _apply(world, s, ("create", status, "vk", "complaint", "kk", None, None), serial)
    with Session(engine) as s:
        every = facet_counts(s, true(), InboxFilter.from_query({"status": "all"}))
        late = facet_counts(s, true(), InboxFilter.from_query({"status": "all", "overdue": "1"}))
    assert every["unassigned"] == 3 and every["overdue"] == 1
    assert late["unassigned"] == 1 and late["total"] == 1
