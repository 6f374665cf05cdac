"""Corruption reports (corruption.py): the unit a report is about, its chain of command and its sub-units
never see it — not in the workspace's lists, counts, search or export, not through the JSON API, not on
the live stream, not in staff notices — and an appeal hidden so answers like one that does not exist.
The project office sees it; every view of it is audited as confidential."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots import staff_work
from adaldyk_bots.access import subunit_ids, viewer_for
from adaldyk_bots.corruption import concealed_reports, hidden_from
from adaldyk_bots.org import unit_by_code
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent, AuditEvent, StaffNotice, StaffUser, Unit
from adaldyk_bots.web.inbox_events import Change, Subscription
from tests.web_support import WebApp, create_user, csrf_of, load_units, login, seed_appeal, token_for

MISSING = "ADL-2020-999999"
REPORT_TEXT = "Инспектор департамента экологии Караганды требует взятку за разрешение"

# Who must not see a report about cerc_karaganda: the department, its committee, the ministry — by unit,
# whatever the role. Who must: the project office (by unit or with no unit), and units off the chain.
BLIND = ("karaganda", "cerc_chief", "minister", "cerc_mod", "karaganda_aud")
SIGHTED = ("maria", "office", "astana_mod", "forest_aud")


@dataclass
class World:
    web: WebApp
    report: str
    other: str  # an ordinary appeal of the same department, for contrast

    def api(self, username: str) -> httpx.Client:
        token = token_for(self.web.runtime.engine, username)
        return self.web.new_client(headers={"Authorization": f"Bearer {token}"})

    @contextmanager
    def page_client(self, username: str) -> Iterator[tuple[httpx.Client, str]]:
        """A browser-like client logged in as `username`, and the session's CSRF token."""
        client = self.web.new_client()
        try:
            yield client, login(client, username)
        finally:
            client.close()


@pytest.fixture
def world(make_settings: Any) -> Iterator[World]:
    with WebApp(make_settings()) as web:
        engine = web.runtime.engine
        load_units(engine)
        create_user(engine, "karaganda", "officer", "cerc_karaganda")
        create_user(engine, "cerc_chief", "officer", "cerc")
        create_user(engine, "minister", "officer", "ministry")
        create_user(engine, "cerc_mod", "moderator", "cerc")
        create_user(engine, "karaganda_aud", "auditor", "cerc_karaganda")
        create_user(engine, "maria", "moderator")
        create_user(engine, "office", "officer", "project_office")
        create_user(engine, "astana_mod", "moderator", "cerc_astana")
        create_user(engine, "forest_aud", "auditor", "forestry")
        report = seed_appeal(web.runtime, chat=1, text=REPORT_TEXT, unit_code="cerc_karaganda")
        other = seed_appeal(web.runtime, chat=2, text="Свалка у Темиртау", unit_code="cerc_karaganda")
        client, csrf = login_client(web, "maria")
        marked = client.post(
            f"/appeals/{report}/corruption",
            data={"unit": "cerc_karaganda", "csrf_token": csrf},
            follow_redirects=False,
        )
        assert marked.status_code == 303 and "done=corruption" in marked.headers["location"], marked.text
        client.close()
        yield World(web, report, other)


def login_client(web: WebApp, username: str) -> tuple[httpx.Client, str]:
    client = web.new_client()
    return client, login(client, username)


def _numbers(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {a["number"] for a in answer.json()["items"]}


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr class="appeal-row" data-number="([^"]+)"', page)


def _total(page: str) -> int:
    found = re.search(r"Appeals found: (\d+)", page)
    assert found, page[:1500]
    return int(found.group(1))


def test_marking_sets_the_report_and_moves_it_to_the_project_office(world: World) -> None:
    with Session(world.web.runtime.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == world.report)).one()
        office = unit_by_code(s, "project_office")
        concerned = unit_by_code(s, "cerc_karaganda")
        assert office is not None and concerned is not None
        assert appeal.category == "corruption_report" and appeal.confidential
        assert appeal.concerned_unit_id == concerned.id and appeal.unit_id == office.id
        kinds = [e.kind for e in s.exec(select(AppealEvent).where(AppealEvent.appeal_id == appeal.id))]
        assert "corruption_report" in kinds and "unit" in kinds
        audited = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "appeal.corruption_report", AuditEvent.subject == world.report
            )
        ).one()
        assert audited.actor == "user:maria" and audited.detail["concerned"] == "cerc_karaganda"


def test_the_chain_never_sees_it_through_the_api(world: World) -> None:
    for username in BLIND:
        with world.api(username) as api:
            listed = _numbers(api.get("/api/v1/appeals"))
            assert world.report not in listed, username
            assert world.report not in _numbers(api.get("/api/v1/appeals", params={"q": "взятку"})), username
            assert api.get("/api/v1/appeals", params={"q": world.report}).json()["total"] == 0, username
            assert world.report not in _numbers(
                api.get("/api/v1/appeals", params={"category": "corruption_report"})
            ), username
            hidden = api.get(f"/api/v1/appeals/{world.report}")
            missing = api.get(f"/api/v1/appeals/{MISSING}")
            assert hidden.status_code == missing.status_code == 404, username
            assert hidden.text.replace(world.report, "N") == missing.text.replace(MISSING, "N")
    # The department still sees its ordinary appeal: the rule hides the report, not the unit's work.
    with world.api("karaganda") as api:
        assert world.other in _numbers(api.get("/api/v1/appeals"))


def test_the_project_office_and_units_off_the_chain_see_it(world: World) -> None:
    for username in SIGHTED:
        with world.api(username) as api:
            assert world.report in _numbers(api.get("/api/v1/appeals")), username
            assert world.report in _numbers(api.get("/api/v1/appeals", params={"q": "взятку"})), username
            assert api.get(f"/api/v1/appeals/{world.report}").status_code == 200, username
    with Session(world.web.runtime.engine) as s:
        views = s.exec(
            select(AuditEvent).where(AuditEvent.action == "appeal.view", AuditEvent.subject == world.report)
        ).all()
    # Every view of the confidential case is in the log at once (not after the answer), marked so.
    assert sorted(v.actor for v in views) == sorted(f"user:{u}" for u in SIGHTED)
    assert all(v.detail.get("confidential") is True for v in views)


def test_the_chain_never_sees_it_in_the_workspace(world: World) -> None:
    for username in ("cerc_mod", "karaganda_aud", "karaganda", "cerc_chief"):
        with world.page_client(username) as (client, _csrf):
            for path in ("/?status=all&lang=en", "/inbox/results?status=all&lang=en", "/?q=взятку&lang=en"):
                page = client.get(path)
                assert page.status_code == 200, (username, path)
                assert world.report not in page.text and "требует" not in page.text, (username, path)
            exported = client.get("/appeals.csv?status=all")
            assert exported.status_code == 200
            rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))[1:]
            assert world.report not in {row[0] for row in rows}, username
            hidden = client.get(f"/appeals/{world.report}")
            missing = client.get(f"/appeals/{MISSING}")
            assert hidden.status_code == missing.status_code == 404, username
            assert hidden.text.replace(world.report, "N") == missing.text.replace(MISSING, "N")
    # The facet counts: the committee's moderator counts one appeal fewer than the project office's.
    with world.page_client("maria") as (office_client, _), world.page_client("cerc_mod") as (cerc_client, _):
        office_page = office_client.get("/?status=all&lang=en").text
        cerc_page = cerc_client.get("/?status=all&lang=en").text
        assert _total(office_page) == _total(cerc_page) + 1
        assert world.report in _rows(office_page) and world.report not in _rows(cerc_page)
        office_csv = office_client.get("/appeals.csv?status=all").content.decode("utf-8-sig")
        assert world.report in office_csv
        page = office_client.get(f"/appeals/{world.report}?lang=en")
        assert page.status_code == 200 and "corruption report" in page.text


def test_it_cannot_be_assigned_into_the_chain(world: World) -> None:
    with world.page_client("maria") as (client, csrf):
        for code in ("cerc_karaganda", "cerc", "ministry"):
            moved = client.post(
                f"/appeals/{world.report}/unit",
                data={"unit": code, "csrf_token": csrf},
                follow_redirects=False,
            )
            assert "error=unit" in moved.headers["location"], code
    with world.api("maria") as api:
        refused = api.post(f"/api/v1/appeals/{world.report}/unit", json={"unit": "cerc"})
        assert refused.status_code == 403 and "chain of command" in refused.json()["detail"]
        # Off the chain it may go (another committee's unit, say, if the office decides so).
        assert api.post(f"/api/v1/appeals/{world.report}/unit", json={"unit": "forestry"}).status_code == 200
    with world.api("cerc_chief") as api:
        assert world.report not in _numbers(api.get("/api/v1/appeals"))


def test_only_moderators_mark_reports(world: World) -> None:
    with world.page_client("office") as (client, csrf):
        refused = client.post(
            f"/appeals/{world.other}/corruption",
            data={"unit": "cerc_karaganda", "csrf_token": csrf},
            follow_redirects=False,
        )
        assert refused.status_code == 403
    with world.page_client("maria") as (moderator, csrf):
        again = moderator.post(
            f"/appeals/{world.report}/corruption",
            data={"unit": "cerc_karaganda", "csrf_token": csrf},
            follow_redirects=False,
        )
        assert "error=unchanged" in again.headers["location"]
        unknown = moderator.post(
            f"/appeals/{world.other}/corruption",
            data={"unit": "atlantis", "csrf_token": csrf},
            follow_redirects=False,
        )
        assert "error=unit" in unknown.headers["location"]
        page = moderator.get(f"/appeals/{world.other}?lang=ru")
        assert f'action="/appeals/{world.other}/corruption"' in page.text
        assert csrf_of(page.text)


def test_staff_notices_about_it_go_to_the_project_office(world: World) -> None:
    engine = world.web.runtime.engine
    with unit_of_work(engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == world.report)).one()
        other = s.exec(select(Appeal).where(Appeal.number == world.other)).one()
        units = {u.code: u.id or 0 for u in s.exec(select(Unit))}
        karaganda = s.exec(select(StaffUser).where(StaffUser.username == "karaganda")).one()
        for code in ("cerc_karaganda", "cerc", "ministry"):
            staff_work.notify_acting_head(
                s,
                units[code],
                key=f"remind:{appeal.id}:T-3",
                kind="reminder",
                text="Срок",
                on=date(2026, 12, 1),
                now=utcnow(),
                appeal_id=appeal.id,
            )
        staff_work.notify_staff(
            s,
            key=f"digest:{appeal.id}",
            kind="digest",
            text="…",
            now=utcnow(),
            user_id=karaganda.id,
            appeal_id=appeal.id,
        )
        staff_work.notify_staff(
            s,
            key=f"digest:{other.id}",
            kind="digest",
            text="…",
            now=utcnow(),
            user_id=karaganda.id,
            appeal_id=other.id,
        )
    with Session(engine) as s:
        about_report = s.exec(select(StaffNotice).where(StaffNotice.appeal_id == appeal.id)).all()
        assert about_report and {n.unit_id for n in about_report} == {units["project_office"]}
        assert all(n.user_id != karaganda.id for n in about_report)
        # Three units, one event: the office hears of it once.
        assert len([n for n in about_report if n.kind == "reminder"]) == 1
        ordinary = s.exec(select(StaffNotice).where(StaffNotice.appeal_id == other.id)).one()
        assert ordinary.user_id == karaganda.id


def test_the_live_stream_leaves_it_out(world: World) -> None:
    engine = world.web.runtime.engine
    with Session(engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == world.report)).one()
        users = {u.username: u for u in s.exec(select(StaffUser))}
        for username, expected in [(u, False) for u in BLIND] + [(u, True) for u in SIGHTED]:
            sub = Subscription(viewer_for(s, users[username]))
            sub.offer(
                [Change(appeal.id or 0, appeal.number, appeal.unit_id, utcnow(), appeal.concerned_unit_id)]
            )
            assert (appeal.number in sub.pending) is expected, username


def test_who_is_hidden_from_which_report(world: World) -> None:
    with Session(world.web.runtime.engine) as s:
        units = {u.code: u.id for u in s.exec(select(Unit))}
        assert all(v is not None for v in units.values())
        office = units["project_office"]
        assert office is not None

        def ids(*codes: str) -> set[int]:
            return {units[c] or 0 for c in codes}

        # A department: itself, its committee, the ministry.
        assert hidden_from(s, units["cerc_karaganda"] or 0) == ids("cerc_karaganda", "cerc", "ministry")
        # A committee: also every department below it.
        cerc = hidden_from(s, units["cerc"] or 0)
        assert cerc == set(subunit_ids(s, units["cerc"] or 0)) | ids("ministry") and len(cerc) == 22
        # The ministry root: every unit but the project office.
        root = hidden_from(s, units["ministry"] or 0)
        assert root == set(i for i in units.values() if i is not None) - {office}
        # The project office itself is never hidden from, nor hides anything from itself.
        assert office not in hidden_from(s, office) and concealed_reports(s, office) == frozenset()
        assert concealed_reports(s, None) == frozenset()
        ministry = concealed_reports(s, units["ministry"])
        assert units["cerc_karaganda"] in ministry and office in ministry  # the root sees no report at all
        forest = s.exec(select(Unit.id).where(col(Unit.code) == "forestry_karaganda")).one()
        assert units["cerc_karaganda"] not in concealed_reports(s, forest)


def test_the_audit_log_does_not_tell_the_chain_that_a_report_exists(world: World) -> None:
    with world.page_client("karaganda_aud") as (client, _csrf):
        page = client.get("/audit?lang=en")
        assert page.status_code == 200 and world.report not in page.text
        searched = client.get(f"/audit?subject={world.report}&lang=en").text
        nothing = client.get(f"/audit?subject={MISSING}&lang=en").text
        assert searched.replace(world.report, "N") == nothing.replace(MISSING, "N")
        assert world.other in client.get(f"/audit?subject={world.other}&lang=en").text
    with world.page_client("forest_aud") as (client, _csrf):
        page = client.get(f"/audit?subject={world.report}&lang=en").text
        assert world.report in page and "Marked a corruption report" in page
