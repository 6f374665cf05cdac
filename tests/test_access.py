"""Who sees what, through the JSON API with tokens that act for staff users: officers only their unit
and its sub-units (an appeal outside answers exactly as one that does not exist), auditors read only,
tokens without a user refused; and the CLI that makes users and tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots.access import Role, Viewer, appeal_scope, subunit_ids, viewer_for
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, Appeal, AppealEvent, StaffUser, Unit
from adaldyk_bots.web.api import token_digest
from tests.web_support import WebApp, create_user, load_units, seed_appeal, token_for

MISSING = "ADL-2020-999999"


@dataclass
class World:
    web: WebApp
    astana: str  # appeal numbers by unit
    almaty: str
    unassigned: str

    def api(self, username: str) -> httpx.Client:
        token = token_for(self.web.runtime.engine, username)
        return self.web.new_client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def world(make_settings: Any) -> Iterator[World]:
    with WebApp(make_settings()) as web:
        engine = web.runtime.engine
        load_units(engine)
        astana = seed_appeal(web.runtime, chat=1, text="Астанада ағаштар кесілуде", unit_code="cerc_astana")
        almaty = seed_appeal(
            web.runtime, chat=2, text="В Алматы вырубают деревья", unit_code="cerc_almaty_city"
        )
        unassigned = seed_appeal(web.runtime, chat=3, text="Свалка у реки, деревья тоже")
        create_user(engine, "olga", "officer", unit_code="cerc_astana")
        create_user(engine, "bolat", "officer", unit_code="cerc")  # the committee: its departments too
        create_user(engine, "aida", "auditor")
        create_user(engine, "maria", "moderator")
        yield World(web, astana, almaty, unassigned)


def _numbers(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {a["number"] for a in answer.json()["items"]}


def _same_as_missing(answer: httpx.Response, number: str, missing: httpx.Response) -> None:
    assert answer.status_code == missing.status_code == 404
    assert answer.text.replace(number, "N") == missing.text.replace(MISSING, "N")
    hidden = {k: v for k, v in answer.headers.items() if k not in ("date", "content-length")}
    shown = {k: v for k, v in missing.headers.items() if k not in ("date", "content-length")}
    assert hidden == shown


def test_an_officer_sees_only_their_units_appeals(world: World) -> None:
    with world.api("olga") as api:
        everything = api.get("/api/v1/appeals")
        assert _numbers(everything) == {world.astana} and everything.json()["total"] == 1
        # Filters, counts and search never reach another unit's appeal, nor an unassigned one.
        assert _numbers(api.get("/api/v1/appeals", params={"q": "деревья"})) == set()
        assert api.get("/api/v1/appeals", params={"q": "деревья"}).json()["total"] == 0
        assert _numbers(api.get("/api/v1/appeals", params={"unit": "cerc_almaty_city"})) == set()
        assert _numbers(api.get("/api/v1/appeals", params={"q": world.almaty})) == set()
        assert _numbers(api.get("/api/v1/appeals", params={"q": "ағаштар"})) == {world.astana}
        assert api.get(f"/api/v1/appeals/{world.astana}").status_code == 200


def test_out_of_scope_answers_exactly_like_a_number_that_does_not_exist(world: World) -> None:
    with world.api("olga") as api:
        for number in (world.almaty, world.unassigned):
            _same_as_missing(
                api.get(f"/api/v1/appeals/{number}"), number, api.get(f"/api/v1/appeals/{MISSING}")
            )
            _same_as_missing(
                api.get(f"/api/v1/appeals/{number}/messages/1/attachments/0"),
                number,
                api.get(f"/api/v1/appeals/{MISSING}/messages/1/attachments/0"),
            )
            for path, body in (
                ("status", {"status": "in_progress"}),
                ("reply", {"text": "Ответ"}),
                ("unit", {"unit": "cerc_astana"}),
            ):
                _same_as_missing(
                    api.post(f"/api/v1/appeals/{number}/{path}", json=body),
                    number,
                    api.post(f"/api/v1/appeals/{MISSING}/{path}", json=body),
                )
    with Session(world.web.runtime.engine) as s:
        assert not [e for e in s.exec(select(AppealEvent)) if e.actor.startswith("user:olga")]


def test_a_committee_officer_sees_its_departments_but_not_unassigned(world: World) -> None:
    with world.api("bolat") as api:
        assert _numbers(api.get("/api/v1/appeals")) == {world.astana, world.almaty}
        assert api.get(f"/api/v1/appeals/{world.unassigned}").status_code == 404


def test_moderators_and_auditors_see_every_appeal(world: World) -> None:
    everything = {world.astana, world.almaty, world.unassigned}
    for username in ("maria", "aida"):
        with world.api(username) as api:
            assert _numbers(api.get("/api/v1/appeals")) == everything
            assert api.get(f"/api/v1/appeals/{world.unassigned}").status_code == 200
            assert api.get("/api/v1/intake-gaps").status_code == 200


def test_an_auditor_changes_nothing(world: World) -> None:
    with world.api("aida") as api:
        for path, body in (
            ("status", {"status": "in_progress"}),
            ("reply", {"text": "Ответ"}),
            ("unit", {"unit": "cerc_astana"}),
        ):
            answer = api.post(f"/api/v1/appeals/{world.almaty}/{path}", json=body)
            assert answer.status_code == 403 and answer.json()["code"] == "forbidden", answer.text
    with Session(world.web.runtime.engine) as s:
        assert not [e for e in s.exec(select(AppealEvent)) if e.actor.startswith("user:aida")]


def test_an_officer_acts_within_their_unit_and_is_named_in_the_history(world: World) -> None:
    with world.api("olga") as api:
        done = api.post(f"/api/v1/appeals/{world.astana}/status", json={"status": "in_progress"})
        assert done.status_code == 200, done.text
        assert done.json()["event"]["actor"] == "user:olga"
        away = api.post(f"/api/v1/appeals/{world.astana}/unit", json={"unit": "cerc_almaty_city"})
        assert away.status_code == 403 and "project office" in away.json()["detail"]
        assert api.post(f"/api/v1/appeals/{world.astana}/unit", json={"unit": "nowhere"}).status_code == 404
        assert api.get("/api/v1/intake-gaps").status_code == 403
    with world.api("maria") as api:  # the project office forwards anywhere
        moved = api.post(f"/api/v1/appeals/{world.astana}/unit", json={"unit": "cerc_almaty_city"})
        assert moved.status_code == 200
    with world.api("olga") as api:  # and then it is out of olga's sight at once
        assert api.get(f"/api/v1/appeals/{world.astana}").status_code == 404


def test_tokens_without_a_user_or_of_a_disabled_user_are_refused(world: World) -> None:
    engine = world.web.runtime.engine
    with unit_of_work(engine) as s:
        s.add(
            ApiToken(
                name="legacy", token_sha256=token_digest("adk_legacy_token_0123456789"), created_at=utcnow()
            )
        )
    legacy = world.web.new_client(headers={"Authorization": "Bearer adk_legacy_token_0123456789"})
    answer = legacy.get("/api/v1/appeals")
    assert answer.status_code == 401 and "--user" in answer.json()["detail"]
    legacy.close()
    with world.api("maria") as api:
        assert api.get("/api/v1/appeals").status_code == 200
        with unit_of_work(engine) as s:
            maria = s.exec(select(StaffUser).where(StaffUser.username == "maria")).one()
            maria.disabled_at = utcnow()
            s.add(maria)
        refused = api.get("/api/v1/appeals")
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]


def test_scope_rules_in_the_core(world: World) -> None:
    engine = world.web.runtime.engine
    with unit_of_work(engine) as s:
        cerc = s.exec(select(Unit).where(Unit.code == "cerc")).one()
        ministry = s.exec(select(Unit).where(Unit.code == "ministry")).one()
        assert cerc.id is not None and ministry.id is not None
        astana = s.exec(select(Unit).where(Unit.code == "cerc_astana")).one()
        assert astana.id in subunit_ids(s, cerc.id) and ministry.id not in subunit_ids(s, cerc.id)
        ministry.parent_id = astana.id  # a cycle in a hand-edited tree must not hang the walk
        s.add(ministry)
        s.flush()
        assert ministry.id in subunit_ids(s, cerc.id)
        s.rollback()
    with Session(engine) as s:
        weird = StaffUser(id=999, username="x", password_hash="x", role="superuser", created_at=utcnow())
        viewer = viewer_for(s, weird)
        assert viewer.unit_ids == frozenset() and not viewer.can_write  # an unknown role: nothing
        assert s.exec(select(Appeal).where(appeal_scope(viewer))).all() == []
        no_unit = Viewer(1, "o", "", Role.OFFICER, None, frozenset())
        assert s.exec(select(Appeal).where(appeal_scope(no_unit))).all() == []


# --- the CLI ------------------------------------------------------------------------------------


def _adaldyk(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env.update(ADALDYK_DATABASE_URL=database_url, ADALDYK_SECRET_KEY="test-secret-key-0123456789")
    return subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_users_and_tokens_carry_the_users_rights(world: World) -> None:
    url = world.web.settings.database_url
    no_unit = _adaldyk(
        url, "user", "create", "dana", "--role", "officer", "--password-stdin", stdin="pw-pw-pw-pw-1\n"
    )
    assert no_unit.returncode != 0 and "--unit" in no_unit.stderr
    bad_unit = _adaldyk(
        url,
        "user",
        "create",
        "dana",
        "--role",
        "officer",
        "--unit",
        "atlantis",
        "--password-stdin",
        stdin="pw-pw-pw-pw-1\n",
    )
    assert bad_unit.returncode == 1 and "unknown unit 'atlantis'" in bad_unit.stderr
    short = _adaldyk(url, "user", "create", "dana", "--role", "auditor", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10" in short.stderr
    made = _adaldyk(
        url,
        "user",
        "create",
        "dana",
        "--role",
        "officer",
        "--unit",
        "cerc_almaty_city",
        "--full-name",
        "Дана",
        "--position",
        "Бөлім басшысы",
        "--password-stdin",
        stdin="pw-pw-pw-pw-1\n",
    )
    assert made.returncode == 0, made.stderr
    with Session(world.web.runtime.engine) as s:
        assert s.exec(select(StaffUser.position).where(StaffUser.username == "dana")).one() == "Бөлім басшысы"
    twice = _adaldyk(
        url, "user", "create", "dana", "--role", "auditor", "--password-stdin", stdin="pw-pw-pw-pw-1\n"
    )
    assert twice.returncode == 1 and "already exists" in twice.stderr
    nobody = _adaldyk(url, "token", "create", "crm", "--user", "ghost")
    assert nobody.returncode == 1 and "no user 'ghost'" in nobody.stderr
    missing_user = _adaldyk(url, "token", "create", "crm")
    assert missing_user.returncode == 2 and "--user" in missing_user.stderr
    created = _adaldyk(url, "token", "create", "crm", "--user", "dana")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("adk_")  # the token alone on stdout
    with world.web.new_client(headers={"Authorization": f"Bearer {token}"}) as api:
        assert _numbers(api.get("/api/v1/appeals")) == {world.almaty}
        assert api.get(f"/api/v1/appeals/{world.astana}").status_code == 404
        reply = api.post(f"/api/v1/appeals/{world.almaty}/reply", json={"text": "Проверка назначена."})
        assert reply.status_code == 200 and reply.json()["event"]["actor"] == "user:dana"


def test_api_views_are_in_the_audit_log_with_the_token(world: World) -> None:
    from adaldyk_bots.storage.models import AuditEvent
    from tests.support import wait_until

    with world.api("olga") as api:
        assert api.get(f"/api/v1/appeals/{world.astana}").status_code == 200
        assert api.get(f"/api/v1/appeals/{world.almaty}").status_code == 404  # not a view

    def views() -> list[AuditEvent]:
        with Session(world.web.runtime.engine) as s:
            return list(s.exec(select(AuditEvent).where(AuditEvent.action == "appeal.view")).all())

    found = wait_until(views, what="the view to be recorded")
    assert [(v.actor, v.subject, v.detail) for v in found] == [
        ("user:olga", world.astana, {"via": "api", "token": "olga"})
    ]


def test_assignable_staff_are_those_who_see_the_appeal_and_may_write(world: World) -> None:
    from adaldyk_bots.access import assignable_staff

    with Session(world.web.runtime.engine) as s:
        by_number = {a.number: a for a in s.exec(select(Appeal))}
        names = {n: {u.username for u in assignable_staff(s, a)} for n, a in by_number.items()}
    assert names[world.astana] == {"maria", "olga", "bolat"}
    assert names[world.almaty] == {"maria", "bolat"}
    assert names[world.unassigned] == {"maria"}  # officers see nothing unassigned; auditors never
