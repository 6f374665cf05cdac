"""The inbox's data layer on a real database: filters, counts, keyset pages, scope, full-text search.

Appeals are made by the real workflow from InboundMessage values (what a connector's parser gives), so
the search index is the one the workflow keeps; the expected results are written out by hand and are
the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import true, update
from sqlmodel import Session, col, select

from adaldyk_bots import appeal_query
from adaldyk_bots.appeal_query import InboxFilter, facet_counts, iter_export, list_appeals
from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.errors import InvalidFilter
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, Conversation, StaffUser, Unit

ALL = {"status": "all"}


@pytest.fixture
def rt(make_settings):
    settings = make_settings()
    runtime = Runtime.build(settings, engine=make_engine(settings.database_url))
    yield runtime
    runtime.engine.dispose()


def send(rt: Runtime, chat: str, text: str, *, key: str = "1", name: str | None = None, edited=None) -> None:
    msg = InboundMessage(
        channel="telegram" if not chat.startswith("vk") else "vk",
        account="1",
        chat_id=chat,
        message_key=key,
        sender_id=chat,
        sent_at=utcnow(),
        text=text,
        sender_name=name,
        edited_at=edited,
    )
    with unit_of_work(rt.engine) as s:
        rt.workflow.accept_message(s, msg, raw_event_id=None)


def number_of(rt: Runtime, chat: str) -> str:
    with Session(rt.engine) as s:
        query = select(Appeal.number).join(Conversation, col(Conversation.id) == Appeal.conversation_id)
        return s.exec(query.where(Conversation.chat_id == chat)).one()


def found(rt: Runtime, scope=None, **params) -> list[str]:
    """The numbers the inbox lists for `params`, every page, in order."""
    f = InboxFilter.from_query({"status": "all", **params}, user_id=params.pop("_me", None))
    with Session(rt.engine) as s:
        return [i.appeal.number for i in iter_export(s, true() if scope is None else scope, f)]


def units(rt: Runtime) -> dict[str, int]:
    with unit_of_work(rt.engine) as s:
        ministry = Unit(code="ministry", name_ru="Министерство", name_kk="Министрлік")
        s.add(ministry)
        s.flush()
        region = Unit(code="almaty", parent_id=ministry.id, name_ru="Алматы", name_kk="Алматы")
        other = Unit(code="astana", parent_id=ministry.id, name_ru="Астана", name_kk="Астана")
        s.add(region)
        s.add(other)
        s.flush()
        city = Unit(code="almaty_city", parent_id=region.id, name_ru="г. Алматы", name_kk="Алматы қ.")
        s.add(city)
        s.flush()
        return {u.code: u.id for u in (ministry, region, other, city)}  # type: ignore[misc]


def set_appeal(rt: Runtime, number: str, **values) -> None:
    with unit_of_work(rt.engine) as s:
        s.execute(update(Appeal).where(col(Appeal.number) == number).values(**values))


@pytest.fixture
def inbox(rt):
    """Five appeals over two channels and three units, one answered, one overdue, one assigned."""
    ids = units(rt)
    with unit_of_work(rt.engine) as s:
        user = StaffUser(username="aigerim", password_hash="x", role="officer", created_at=utcnow())
        s.add(user)
        s.flush()
        user_id = user.id
    texts = {
        "t1": ("Жолдағы шұңқырлар туралы шағым, ЭКОЛОГИЯ мәселесі", "Айгерім Сәтбаева"),
        "t2": ("Прошу отремонтировать дорогу во дворе, экологическая проблема", "Иван Петров"),
        "t3": ("Мектепке жаңа компьютерлер керек", "Ерлан Қасымов"),
        "vk4": ("Спасибо за быстрый ответ по Ёлке", "Ольга"),
        "vk5": ("Қоқыс шығарылмайды, АУЛАДА иіс бар", "Нұрлан"),
    }
    numbers = {}
    for chat, (text, name) in texts.items():
        send(rt, chat, text, name=name)
        numbers[chat] = number_of(rt, chat)
    now = utcnow()
    set_appeal(rt, numbers["t1"], unit_id=ids["almaty_city"], assignee_id=user_id, category="complaint")
    set_appeal(rt, numbers["t2"], unit_id=ids["almaty"], due_at=now - timedelta(days=1))
    set_appeal(rt, numbers["t3"], unit_id=ids["astana"], status="answered")
    set_appeal(rt, numbers["vk4"], category="gratitude", due_at=now + timedelta(hours=2))
    return {"n": numbers, "units": ids, "user": user_id}


def test_default_inbox_is_every_open_appeal_newest_activity_first(rt, inbox):
    n = inbox["n"]
    f = InboxFilter.from_query({})
    with Session(rt.engine) as s:
        page = list_appeals(s, true(), f, limit=50)
    assert [i.appeal.number for i in page.items] == [n["vk5"], n["vk4"], n["t2"], n["t1"]]
    assert page.next_cursor is None
    send(rt, "t1", "Ещё одно сообщение", key="2")  # a citizen's new message brings it to the top
    with Session(rt.engine) as s:
        assert list_appeals(s, true(), f, limit=50).items[0].appeal.number == n["t1"]


def test_every_filter(rt, inbox):
    n, user = inbox["n"], inbox["user"]
    assert found(rt, status="answered") == [n["t3"]]
    assert set(found(rt, status="received,answered")) == set(n.values())
    assert set(found(rt, channel="vk")) == {n["vk4"], n["vk5"]}
    assert set(found(rt, unit="almaty")) == {n["t1"], n["t2"]}  # with its sub-unit almaty_city
    assert found(rt, unit="almaty_city") == [n["t1"]]
    assert set(found(rt, unit="ministry")) == {n["t1"], n["t2"], n["t3"]}
    assert found(rt, category="gratitude") == [n["vk4"]]
    assert found(rt, overdue="1") == [n["t2"]]
    assert n["vk4"] in found(rt, due_within="0") or n["vk4"] in found(rt, due_within="1")
    assert found(rt, assigned="me", _me=user) == [n["t1"]]
    assert found(rt, assigned=str(user)) == [n["t1"]]
    assert n["t1"] not in found(rt, unassigned="1") and len(found(rt, unassigned="1")) == 4
    assert found(rt, language="kk", channel="vk") == [n["vk5"]]
    by_due = found(rt, sort="due")
    assert by_due[0] == n["t2"]  # overdue first


def test_counts_agree_with_the_lists(rt, inbox):
    user = inbox["user"]
    f = InboxFilter.from_query({}, user_id=user)
    with Session(rt.engine) as s:
        counts = facet_counts(s, true(), f, user_id=user)
    assert counts["total"] == len(found(rt, status="open"))
    for status, n in counts["status"].items():
        assert n == len(found(rt, status=status))
    for channel, n in counts["channel"].items():
        assert n == len(found(rt, channel=channel, status="open"))
    for code, n in counts["unit"].items():
        if code:
            assert n == len(found(rt, unit=code, status="open"))
    for category, n in counts["category"].items():
        assert n == len(found(rt, category=category, status="open"))
    assert counts["overdue"] == len(found(rt, overdue="1", status="open")) == 1
    assert counts["unassigned"] == len(found(rt, unassigned="1", status="open"))
    assert counts["assigned_to_me"] == len(found(rt, assigned="me", _me=user, status="open")) == 1
    assert counts["unit"]["ministry"] == 2  # almaty (t2) + almaty_city (t1); astana's is answered


def test_keyset_pages_are_stable_while_appeals_arrive(rt, inbox):
    f = InboxFilter.from_query(ALL)
    with Session(rt.engine) as s:
        everything = [i.appeal.number for i in list_appeals(s, true(), f, limit=50).items]
        first = list_appeals(s, true(), f, limit=2)
    send(rt, "t9", "Новое обращение пришло между страницами")
    seen = [i.appeal.number for i in first.items]
    cursor = first.next_cursor
    with Session(rt.engine) as s:
        while cursor:
            page = list_appeals(s, true(), f, limit=2, after=cursor)
            seen += [i.appeal.number for i in page.items]
            cursor = page.next_cursor
    assert seen == everything  # no repeat, no gap: the newcomer is on the first page, not in between


def test_scope_is_obeyed_in_lists_counts_search_and_export(rt, inbox):
    n, ids = inbox["n"], inbox["units"]
    not_almaty = col(Appeal.unit_id).is_(None) | col(Appeal.unit_id).notin_(
        [ids["almaty"], ids["almaty_city"]]
    )
    hidden = {n["t1"], n["t2"]}
    assert not hidden & set(found(rt, scope=not_almaty))
    assert not hidden & set(found(rt, scope=not_almaty, q="экол"))
    assert not hidden & set(found(rt, scope=not_almaty, q=n["t1"]))
    assert found(rt, scope=not_almaty, unit="almaty") == []
    with Session(rt.engine) as s:
        counts = facet_counts(s, not_almaty, InboxFilter.from_query(ALL))
    assert counts["total"] == 3
    assert "almaty" not in counts["unit"] and "almaty_city" not in counts["unit"]
    assert sum(counts["status"].values()) == 3 and sum(counts["channel"].values()) == 3


@pytest.mark.parametrize(
    ("query", "chats"),
    [
        ("экол", {"t1", "t2"}),  # prefix, across case: ЭКОЛОГИЯ and экологическая
        ("ЭКОЛОГИЧЕСКАЯ", {"t2"}),
        ("шұңқыр", {"t1"}),  # Kazakh letters, prefix of шұңқырлар
        ("ЖОЛДАҒЫ", {"t1"}),
        ("аулада", {"vk5"}),  # written in capitals
        ("мектеп", {"t3"}),  # Kazakh suffix: мектепке
        ("елке", {"vk4"}),  # ё folded to е
        ("сәтбаева", {"t1"}),  # the citizen's name
        ("дорогу двор", {"t2"}),  # every word must occur
        ("дорогу мектеп", set()),
        ("кала", set()),  # not қала: Kazakh letters are not folded to Russian ones
        ("!!!", {"t1", "t2", "t3", "vk4", "vk5"}),  # nothing searchable: no condition
    ],
)
@pytest.mark.parametrize("few", [appeal_query.FEW_MATCHES, 0], ids=["few-matches", "many-matches"])
def test_search_is_case_insensitive_for_cyrillic_and_kazakh(rt, inbox, query, chats, few, monkeypatch):
    # Both ways a search is run: by the matches' ids, and (what a common word takes at 1M appeals)
    # walking the inbox's order against the index; a threshold of 0 sends these few through the second.
    monkeypatch.setattr(appeal_query, "FEW_MATCHES", few)
    n = inbox["n"]
    assert set(found(rt, q=query)) == {n[c] for c in chats}


def test_search_by_number_whole_or_bare(rt, inbox):
    n = inbox["n"]
    number = n["t3"]
    assert found(rt, q=number) == [number]
    assert found(rt, q=number.lower()) == [number]
    assert found(rt, q=number.rsplit("-", 1)[1]) == [number]  # the bare 000003


def test_an_edit_is_searchable_and_the_original_still_is(rt, inbox):
    n = inbox["n"]
    send(rt, "t3", "Мектепке жаңа компьютерлер керек", key="1", edited=utcnow())  # same text: nothing new
    send(rt, "t3", "Мектепке жаңа ПРИНТЕРЛЕР керек", key="1", edited=utcnow() + timedelta(seconds=1))
    assert found(rt, q="принтер") == [n["t3"]]
    assert found(rt, q="компьютер") == [n["t3"]]


def test_a_new_name_is_searchable(rt, inbox):
    n = inbox["n"]
    send(rt, "vk5", "Тағы бір хабарлама", key="2", name="Нұрлан Әбілов")
    assert found(rt, q="әбілов") == [n["vk5"]]
    assert found(rt, q="хабарлама") == [n["vk5"]]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "opened"}, "unknown status 'opened'"),
        ({"category": "bad"}, "unknown category"),
        ({"language": "de"}, "unknown language"),
        ({"overdue": "maybe"}, "overdue must be 1 or 0"),
        ({"due_within": "-1"}, "due_within must be a whole number"),
        ({"due_within": "999"}, "due_within must be a whole number"),
        ({"assigned": "someone"}, "assigned must be 'me' or a user id"),
        ({"assigned": "me"}, "assigned=me needs a signed-in user"),
        ({"assigned": "3", "unassigned": "1"}, "cannot both"),
        ({"sort": "name"}, "sort must be"),
        ({"channel": "Tele gram"}, "is not a code"),
        ({"q": "x" * 201}, "longer than 200"),
    ],
)
def test_bad_filter_values_are_refused_clearly(params, words):
    with pytest.raises(InvalidFilter, match=words):
        InboxFilter.from_query(params)


def test_unknown_unit_and_forged_cursor_are_refused(rt, inbox):
    with Session(rt.engine) as s:
        with pytest.raises(InvalidFilter, match="unknown unit 'nowhere'"):
            list_appeals(s, true(), InboxFilter.from_query({"unit": "nowhere"}), limit=10)
        with pytest.raises(InvalidFilter, match="cursor"):
            list_appeals(s, true(), InboxFilter.from_query({}), limit=10, after="not-a-cursor")
        due = list_appeals(s, true(), InboxFilter.from_query({"sort": "due"}), limit=1).next_cursor
        with pytest.raises(InvalidFilter, match="another sort order"):
            list_appeals(s, true(), InboxFilter.from_query({}), limit=10, after=due)


def test_export_rows_make_a_csv(rt, inbox):
    f = InboxFilter.from_query(ALL)
    out = io.StringIO()
    writer = csv.writer(out)
    with Session(rt.engine) as s:
        for item in iter_export(s, true(), f):
            writer.writerow([item.appeal.number, item.contact_name, item.unit_code or ""])
    assert len(out.getvalue().splitlines()) == 5


def test_counts_of_a_search(rt, inbox, monkeypatch):
    n = inbox["n"]
    with Session(rt.engine) as s:
        counts = facet_counts(s, true(), InboxFilter.from_query({"q": "экол"}))
        assert counts["total"] == 2 and counts["channel"] == {"telegram": 2}
        monkeypatch.setattr(appeal_query, "FEW_MATCHES", 1)  # "экол" now matches "many"
        assert facet_counts(s, true(), InboxFilter.from_query({"q": "экол"})) == {
            "total": None,
            "capped": ["search"],
        }
        # ... while its page is still listed in full
    assert set(found(rt, q="экол")) == {n["t1"], n["t2"]}


def test_finished_statuses_are_counted_exactly(rt, inbox):
    with Session(rt.engine) as s:
        counts = facet_counts(s, true(), InboxFilter.from_query(ALL))
    assert counts["status"] == {"answered": 1, "received": 4} and counts["total"] == 5
    assert counts["capped"] == []  # the tally counts the finished ones exactly: nothing is capped
    assert counts["unit"]["astana"] == 1 and counts["unit"]["ministry"] == 3


def test_open_index_where_is_the_open_statuses():
    # The partial indexes' WHERE (models.py) must be the text appeal_query renders, or no planner uses them.
    from adaldyk_bots.storage.models import _OPEN_WHERE

    assert str(_OPEN_WHERE) == "status IN ({})".format(
        ", ".join(f"'{v}'" for v in appeal_query.OPEN_STATUSES)
    )
