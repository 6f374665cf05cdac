"""The inbox over real HTTP (`/`, `/inbox/results`, `/events/inbox`, `/appeals.csv`) on the real app:
filters and the count beside each, search, keyset pages, citizens' text escaped, the CSV export, the
live event stream — and department isolation in every one of them."""

from __future__ import annotations

import csv
import html
import io
import json
import queue
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.storage.db import read_only, unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, AuditEvent, Conversation, StaffUser
from adaldyk_bots.web.inbox_pages import PAGE_SIZE, csv_cell
from tests.faults import database_away
from tests.support import wait_until
from tests.web_support import WebApp, create_user, load_units, login

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> &amp; &lt;b&gt; Свалка'
ASTANA, ALMATY = "cerc_astana", "cerc_almaty_city"


def add_appeal(
    runtime: Any,
    text: str,
    *,
    channel: str = "telegram",
    name: str | None = None,
    language: str | None = "ru",
    unit: str | None = None,
    **columns: Any,
) -> str:
    """A citizen's first message through the real workflow (a new chat, so a new appeal); then its unit
    through the workflow and any other `columns` (category, due_at, assignee_id, status) set as a
    moderator's earlier work would have left them."""
    chat = secrets.token_hex(5)
    message = InboundMessage(
        channel=channel,
        account="1",
        chat_id=chat,
        message_key=secrets.token_hex(6),
        sender_id=chat,
        sent_at=utcnow(),
        text=text,
        sender_name=name,
        language_hint=language,
    )
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, message, raw_event_id=None)
    with unit_of_work(runtime.engine) as s:
        appeal = s.exec(
            select(Appeal)
            .join(Conversation, col(Conversation.id) == Appeal.conversation_id)
            .where(Conversation.chat_id == chat)
        ).one()
        if unit:
            runtime.workflow.assign_unit(s, appeal, unit, actor="system")
        if columns:
            s.execute(update(Appeal).where(col(Appeal.id) == appeal.id).values(**columns))
        return appeal.number


def user_id(engine: Any, username: str) -> int:
    with Session(engine) as s:
        found = s.exec(select(StaffUser.id).where(StaffUser.username == username)).one()
        assert found is not None
        return found


@pytest.fixture
def web(make_settings: Any) -> Iterator[WebApp]:
    with WebApp(make_settings(inbox_poll_seconds=0.2, inbox_keepalive_seconds=0.3)) as app:
        engine = app.runtime.engine
        load_units(engine)
        create_user(engine, "maria", "moderator", full_name="Мария Ким")
        create_user(engine, "aset", "officer", ASTANA, full_name="Асет Нурланов")
        create_user(engine, "alma", "officer", ALMATY, full_name="Алма Сейткали")
        yield app


def client_for(app: WebApp, username: str) -> httpx.Client:
    client = app.new_client()
    login(client, username)
    return client


_TOTAL = re.compile(r"(?:Найдено обращений|Appeals found|Табылған өтініштер): (\d+)")
_OPTION = re.compile(r'<li><a href="([^"]+)"([^>]*)>([^<]*)</a>\s*<span class="count">(\d+)</span>')


def total_of(page: str) -> int:
    found = _TOTAL.search(page)
    assert found, page[:2000]
    return int(found.group(1))


def numbers_of(page: str) -> list[str]:
    return re.findall(r'<tr class="appeal-row" data-number="([^"]+)"', page)


def options_of(page: str, *, active: bool = False) -> list[tuple[str, str, int]]:
    """(link, label, count) of each filter option; an active option's link takes the filter off, so it
    is left out unless `active`, and then only the active ones are given."""
    return [
        (html.unescape(url), html.unescape(text), int(n))
        for url, attributes, text, n in _OPTION.findall(page)
        if ('class="active"' in attributes) == active
    ]


@pytest.fixture
def ministry(web: WebApp) -> dict[str, str]:
    """Appeals of two departments, on two channels, in three states; one overdue, one assigned."""
    rt, maria = web.runtime, user_id(web.runtime.engine, "maria")
    return {
        "astana_tg": add_appeal(rt, "Незаконная вырубка тополей в парке", name="Айгүл Серікова", unit=ASTANA),
        "astana_vk": add_appeal(
            rt,
            "Өзенге қалдықтар төгіліп жатыр",
            channel="vk",
            language="kk",
            unit=ASTANA,
            category="complaint",
        ),
        "almaty_tg": add_appeal(
            rt,
            "Секретная свалка у реки Есентай",
            name="Ержан Досов",
            unit=ALMATY,
            assignee_id=maria,
            due_at=utcnow() - timedelta(days=3),
        ),
        "almaty_closed": add_appeal(
            rt, "Спасибо за помощь", unit=ALMATY, status="closed", category="gratitude"
        ),
        "unrouted": add_appeal(rt, "Дым от котельной", channel="vk"),
    }


def test_a_logged_out_visitor_is_sent_to_the_login_form(web: WebApp) -> None:
    for path in ("/", "/inbox/results", "/events/inbox", "/appeals.csv"):
        answer = web.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path


def test_the_default_inbox_is_every_open_appeal_in_scope_newest_first(
    web: WebApp, ministry: dict[str, str]
) -> None:
    page = client_for(web, "maria").get("/?lang=ru")
    assert page.status_code == 200
    expected = [ministry[k] for k in ("unrouted", "almaty_tg", "astana_vk", "astana_tg")]
    assert numbers_of(page.text) == expected  # newest activity first; closed left out; assigned or not
    assert total_of(page.text) == 4
    assert f'<a class="number" href="/appeals/{ministry["astana_tg"]}">' in page.text
    row = page.text.split(f'data-number="{ministry["almaty_tg"]}"')[1].split("</tr>")[0]
    for shown in ("Telegram", "Русский", "Поступило", "Мария Ким", "Ержан Досов", "Секретная свалка"):
        assert shown in row, shown
    assert 'data-overdue="true"' in row and "Просрочено" in row
    assert "Осталось рабочих дней" in page.text.split(f'data-number="{ministry["astana_tg"]}"')[1]
    for key in ("j", "k", "Enter", "/"):
        assert f"<kbd>{key}</kbd>" in page.text
    every = client_for(web, "maria").get("/?status=all")
    assert ministry["almaty_closed"] in numbers_of(every.text)


def test_the_count_beside_every_filter_is_what_the_filter_shows(
    web: WebApp, ministry: dict[str, str]
) -> None:
    client = client_for(web, "maria")
    page = client.get("/?lang=en")
    options = options_of(page.text)
    labels = {text for _, text, _ in options}
    for expected in ("Closed", "All", "Overdue", "Due within 3 working days", "Assigned to me"):
        assert expected in labels, expected
    assert {"Unassigned", "Telegram", "VK", "Complaint", "Kazakh", "Russian"} <= labels
    assert len(options) >= 15
    for url, text, count in options:
        shown = client.get(url)
        assert shown.status_code == 200, url
        assert total_of(shown.text) == count, (
            f"{text} ({url}): {count} beside it, {total_of(shown.text)} shown"
        )
        assert len(numbers_of(shown.text)) == min(count, PAGE_SIZE)
    assert [text for _, text, _ in options_of(page.text, active=True)] == ["Open"]
    # And under other filters: the counts are of those filters' appeals, the active ones of this page.
    for query in ("channel=vk", "overdue=1", "status=all&unit=cerc"):
        filtered = client.get(f"/?{query}&lang=en").text
        for url, text, count in options_of(filtered):
            assert total_of(client.get(url).text) == count, (query, text, url)
        for url, text, count in options_of(filtered, active=True):
            assert count == total_of(filtered), (query, text)


def test_filters_sort_and_search(web: WebApp, ministry: dict[str, str]) -> None:
    client = client_for(web, "maria")
    assert numbers_of(client.get("/?channel=vk").text) == [ministry["unrouted"], ministry["astana_vk"]]
    assert numbers_of(client.get(f"/?unit={ASTANA}").text) == [ministry["astana_vk"], ministry["astana_tg"]]
    assert numbers_of(client.get("/?overdue=1").text) == [ministry["almaty_tg"]]
    assert numbers_of(client.get("/?assigned=me").text) == [ministry["almaty_tg"]]
    assert ministry["almaty_tg"] not in numbers_of(client.get("/?unassigned=1").text)
    assert numbers_of(client.get("/?category=complaint&language=kk").text) == [ministry["astana_vk"]]
    assert numbers_of(client.get("/?sort=due").text)[0] == ministry["almaty_tg"]  # the overdue one first
    # Search: words in any case, a citizen's name, an appeal's number.
    assert numbers_of(client.get("/?q=ТОПОЛЕЙ").text) == [ministry["astana_tg"]]
    assert numbers_of(client.get("/?q=қалдықтар").text) == [ministry["astana_vk"]]
    assert numbers_of(client.get("/?q=Досов").text) == [ministry["almaty_tg"]]
    assert numbers_of(client.get(f"/?q={ministry['astana_tg'].lower()}").text) == [ministry["astana_tg"]]
    searched = client.get("/?q=вырубка&channel=telegram")
    assert 'value="вырубка"' in searched.text and 'name="channel" value="telegram"' in searched.text


def test_an_officer_lists_counts_searches_and_exports_only_their_department(
    web: WebApp, ministry: dict[str, str]
) -> None:
    aset = client_for(web, "aset")
    astana = {ministry["astana_tg"], ministry["astana_vk"]}
    hidden = [ministry[k] for k in ("almaty_tg", "almaty_closed", "unrouted")]
    for path in ("/", "/?status=all", "/inbox/results?status=all", f"/?unit={ALMATY}", "/?channel=vk"):
        page = aset.get(path)
        assert page.status_code == 200, path
        assert set(numbers_of(page.text)) <= astana, path
        assert not any(number in page.text for number in hidden), path
        assert "Есентай" not in page.text and "Досов" not in page.text
    page = aset.get("/?status=all&lang=en").text
    assert total_of(page) == 2
    counts = {text: n for _, text, n in options_of(page) + options_of(page, active=True)}
    assert counts["All"] == 2 and counts["Closed"] == 0 and counts["Overdue"] == 0
    assert "Assigned to me" in counts and counts["Unassigned"] == 2
    assert "Алматы" not in page  # no other department among the units to filter by
    for q in ("Есентай", "свалка", "Досов", ministry["almaty_tg"], "Спасибо"):
        found = aset.get("/", params={"q": q}).text
        assert numbers_of(found) == [] and total_of(found) == 0, q
    exported = aset.get("/appeals.csv?status=all")
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))[1:]
    assert {row[0] for row in rows} == astana
    # The other officer the other way round; the moderator sees everything.
    alma = client_for(web, "alma").get("/?status=all").text
    assert set(numbers_of(alma)) == {ministry["almaty_tg"], ministry["almaty_closed"]}
    assert len(numbers_of(client_for(web, "maria").get("/?status=all").text)) == 5


def test_citizens_text_is_shown_as_text(web: WebApp) -> None:
    number = add_appeal(web.runtime, HOSTILE + "\nвторая строка", name='<b onmouseover="x()">Имя</b>')
    page = client_for(web, "maria").get("/").text
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b onmouseover" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page
    assert "&amp;amp; &amp;lt;b&amp;gt; Свалка" in page  # entities as the citizen typed them
    assert "вторая строка" not in page  # the first line only
    assert number in numbers_of(page)


def test_keyset_pages(web: WebApp) -> None:
    made = [add_appeal(web.runtime, f"Обращение номер {i}") for i in range(PAGE_SIZE + 3)]
    client = client_for(web, "maria")
    first = client.get("/").text
    assert numbers_of(first) == made[::-1][:PAGE_SIZE]
    next_url = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', first).group(1))
    assert "after=" in next_url
    add_appeal(web.runtime, "Новое обращение, пока листали")  # arrives between the pages
    second = client.get(next_url).text
    assert numbers_of(second) == made[::-1][PAGE_SIZE:]
    assert 'rel="next"' not in second and 'rel="first"' in second
    assert total_of(second) == PAGE_SIZE + 4


def test_a_filter_that_means_nothing_shows_the_default_inbox_and_says_so(
    web: WebApp, ministry: dict[str, str]
) -> None:
    client = client_for(web, "maria")
    for query in ("status=nope", "due_within=abc", "after=garbage", "unit=no-such-unit", "sort=x"):
        page = client.get(f"/?{query}&lang=en")
        assert page.status_code == 400, query
        assert "Some filters in the address are not valid" in page.text
        assert total_of(page.text) == 4
    refused = client.get("/appeals.csv?status=nope&lang=en")
    assert refused.status_code == 400 and "Some filters in the address are not valid." in refused.text


def test_csv_export_is_excel_ready_guarded_against_formulas_and_audited(
    web: WebApp, ministry: dict[str, str]
) -> None:
    formula = add_appeal(
        web.runtime, '=HYPERLINK("http://evil.example","click")', name="+77010000000", channel="vk"
    )
    client = client_for(web, "maria")
    answer = client.get("/appeals.csv?channel=vk&lang=ru")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="appeals-')
    assert answer.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][:5] == ["Номер", "Канал", "Язык", "Категория", "Статус"]
    by_number = {row[0]: row for row in rows[1:]}
    assert set(by_number) == {formula, ministry["astana_vk"], ministry["unrouted"]}
    assert by_number[formula][7] == "'+77010000000"
    assert by_number[formula][11] == '\'=HYPERLINK("http://evil.example","click")'
    assert by_number[ministry["astana_vk"]][1] == "ВКонтакте"
    with Session(web.runtime.engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "appeal.export")).all()
    assert [e.actor for e in events] == ["user:maria"]
    assert ["channel", "vk"] in events[0].detail["filters"]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+7 701", "'+7 701"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
    ],
)
def test_formula_guard(value: str | None, written: str) -> None:
    assert csv_cell(value) == written


# --- the live stream -------------------------------------------------------------------------------


class EventReader:
    """An open `/events/inbox` stream read on a thread: each `event: appeals` lands in `events`."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[str] = []
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.stopping = threading.Event()
        self.status: int | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the event stream did not open"

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/events/inbox", timeout=httpx.Timeout(5, read=60)) as answer:
                self.status = answer.status_code
                self.content_type = answer.headers.get("content-type", "")
                self.opened.set()
                name = None
                for line in answer.iter_lines():
                    if self.stopping.is_set():
                        return  # leaving the block closes the connection: the server sees it go
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:") and name == "appeals":
                        data = json.loads(line[5:])
                        self.seen += data["numbers"]
                        self.events.put(data)
                    elif line == "":
                        name = None
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.opened.set()
            self.closed.set()

    def wait_for(self, number: str) -> None:
        wait_until(lambda: number in self.seen, timeout=15, what=f"the stream to tell of {number}")

    def close(self) -> None:
        self.stopping.set()  # seen at the next line (a keep-alive comes every 0.3 s in these tests)
        self.closed.wait(10)
        self.client.close()


def test_the_stream_tells_each_viewer_only_of_appeals_in_their_scope(web: WebApp) -> None:
    maria, aset = EventReader(client_for(web, "maria")), EventReader(client_for(web, "aset"))
    assert maria.status == 200 and maria.content_type.startswith("text/event-stream")
    try:
        wait_until(lambda: web.app.state.inbox_changes.polls >= 2, what="the poller to start")
        elsewhere = add_appeal(web.runtime, "Свалка в Алматы", unit=ALMATY)
        mine = add_appeal(web.runtime, "Свалка в Астане", unit=ASTANA)
        unrouted = add_appeal(web.runtime, "Ещё не распределено")
        maria.wait_for(unrouted)
        aset.wait_for(mine)
        assert {elsewhere, mine} <= set(maria.seen)
        # The Almaty appeal and the unrouted one were committed before or with the Astana one: had they
        # been sent to this stream they would have come first.
        assert elsewhere not in aset.seen and unrouted not in aset.seen
        # A follow-up message from the citizen is news too (the appeal's activity moved).
        follow = InboundMessage(
            channel="telegram",
            account="1",
            chat_id=_chat_of(web, mine),
            message_key="f1",
            sender_id="x",
            sent_at=utcnow(),
            text="Добавляю фото",
        )
        before = len(aset.seen)
        with unit_of_work(web.runtime.engine) as s:
            web.runtime.workflow.accept_message(s, follow, raw_event_id=None)
        wait_until(lambda: aset.seen[before:].count(mine) == 1, what="the follow-up to be announced")
    finally:
        maria.close()
        aset.close()


def _chat_of(web: WebApp, number: str) -> str:
    with Session(web.runtime.engine) as s:
        return s.exec(
            select(Conversation.chat_id)
            .join(Appeal, col(Appeal.conversation_id) == Conversation.id)
            .where(Appeal.number == number)
        ).one()


def test_open_streams_hold_no_database_connection_between_polls(web: WebApp) -> None:
    readers = [EventReader(client_for(web, "maria")) for _ in range(5)]
    try:
        changes = web.app.state.inbox_changes
        wait_until(lambda: changes.subscribers == 5 and changes.polls >= 2, what="five streams and polls")
        pool = read_only(web.runtime.engine).pool
        # Five streams open, the poller running: at rest between polls nothing is checked out.
        wait_until(lambda: pool.checkedout() == 0, what="no connection held while the streams wait")  # type: ignore[attr-defined]
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: web.app.state.inbox_changes.subscribers == 0, what="closed streams to unsubscribe")


def test_the_stream_keeps_going_through_a_database_outage(web: WebApp, database_url: str) -> None:
    reader = EventReader(client_for(web, "maria"))
    try:
        changes = web.app.state.inbox_changes
        wait_until(lambda: changes.polls >= 2, what="the poller to start")
        engines = [web.runtime.engine, read_only(web.runtime.engine)]
        with database_away(database_url, engines):
            failures = changes.failures
            wait_until(lambda: changes.failures >= failures + 2, what="polls to fail while it is away")
        number = add_appeal(web.runtime, "После перезапуска базы")
        reader.wait_for(number)
        assert not reader.closed.is_set()  # the same stream, not a reconnection
    finally:
        reader.close()
