"""The legal status table (lifecycle.py): it covers every status, allows every step it lists, refuses the
rest — in the table itself and through the workflow, the page's status form and the JSON API (409 with the
legal steps in the message), each step audited."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots import lifecycle
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import IllegalTransition
from adaldyk_bots.i18n import translations
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, AuditEvent
from adaldyk_bots.web.labels import STATUSES
from tests.web_support import WebApp, create_user, csrf_of, login, seed_appeal, token_for

ALL = list(AppealStatus)
LEGAL = [(a, b) for a, steps in lifecycle.TRANSITIONS.items() for b in steps]
ILLEGAL = [(a, b) for a, b in itertools.product(ALL, ALL) if b not in lifecycle.TRANSITIONS[a]]


def test_the_table_covers_every_status_and_every_step_leads_somewhere_known() -> None:
    assert set(lifecycle.TRANSITIONS) == set(ALL)
    for current, steps in lifecycle.TRANSITIONS.items():
        assert set(steps) <= set(ALL)
        assert current not in steps  # a step changes the status
        assert all(step.to == to for to, step in steps.items())
    # Every status but the signal's own can be reached, and every one can be left (reopened at worst).
    reached = {to for steps in lifecycle.TRANSITIONS.values() for to in steps}
    assert reached == set(ALL) - {AppealStatus.RECEIVED}
    assert all(lifecycle.next_statuses(s) for s in ALL)
    assert set(STATUSES) == set(ALL)  # every status has its label for the pages


@pytest.mark.parametrize(("current", "to"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_legal_step_is_allowed(current: AppealStatus, to: AppealStatus) -> None:
    assert lifecycle.allowed(current, to)
    step = lifecycle.check(current, to)
    assert step.to == to
    assert (to in lifecycle.REASON_REQUIRED) == step.reason
    assert lifecycle.next_statuses(current).count(to) == 1


SAMPLE = ILLEGAL[:: max(1, len(ILLEGAL) // 40)]  # about 40, spread over the whole product


@pytest.mark.parametrize(("current", "to"), SAMPLE, ids=[f"{a}->{b}" for a, b in SAMPLE])
def test_a_sample_of_illegal_steps_is_refused_with_the_legal_ones_named(
    current: AppealStatus, to: AppealStatus
) -> None:
    assert not lifecycle.allowed(current, to)
    with pytest.raises(IllegalTransition) as refused:
        lifecycle.check(current, to)
    message = str(refused.value)
    assert f"cannot become {to.value}" in message
    for legal in lifecycle.next_statuses(current):
        assert legal.value in message


def test_the_apis_status_schema_follows_the_table() -> None:
    from typing import get_args

    from adaldyk_bots.web.api import OWN_ACTIONS, PlainStatus, ReasonedStatus

    plain, reasoned = set(get_args(PlainStatus)), set(get_args(ReasonedStatus))
    assert reasoned == {s.value for s in lifecycle.REASON_REQUIRED} - set(OWN_ACTIONS)
    assert plain | reasoned == {s.value for s in ALL} - set(OWN_ACTIONS) and not plain & reasoned


def test_the_steps_the_law_names_are_where_it_puts_them() -> None:
    # R4, R5, R6: reasoned decisions; R2, R4, R5, R10: the notices owed.
    assert {AppealStatus.EXTENDED, AppealStatus.FORWARDED, AppealStatus.HEARING} <= lifecycle.REASON_REQUIRED
    assert {AppealStatus.REJECTED, AppealStatus.MERGED, AppealStatus.REOPENED} <= lifecycle.REASON_REQUIRED
    assert lifecycle.NOTICE_OF[AppealStatus.REGISTERED] == "registration"
    assert lifecycle.NOTICE_OF[AppealStatus.FORWARDED] == "forwarding"
    assert lifecycle.NOTICE_OF[AppealStatus.EXTENDED] == "extension"
    assert lifecycle.NOTICE_OF[AppealStatus.ANSWERED] == "answer"
    # Finished appeals only come back through "reopened".
    for finished in (AppealStatus.CLOSED, AppealStatus.REJECTED, AppealStatus.MERGED):
        assert lifecycle.next_statuses(finished) == (AppealStatus.REOPENED,)


# --- through the service ---------------------------------------------------------------------------------


@pytest.fixture
def web(make_settings: Any) -> Any:
    with WebApp(make_settings()) as app:
        create_user(app.runtime.engine, "moder", "moderator")
        yield app


def _status(engine: Any, number: str) -> str:
    with Session(engine) as s:
        return s.exec(select(Appeal.status).where(Appeal.number == number)).one()


def test_the_api_refuses_an_illegal_step_with_409_and_audits_every_legal_one(web: Any) -> None:
    engine = web.runtime.engine
    number = seed_appeal(web.runtime, chat=41)
    api = httpx.Client(
        base_url=f"{web.url}/api/v1", headers={"Authorization": f"Bearer {token_for(engine, 'moder')}"}
    )
    # received -> hearing is not a step of the table: 409, the message names the legal ones.
    refused = api.post(f"/appeals/{number}/status", json={"status": "hearing", "note": "надо"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "conflict" and "cannot become hearing" in body["detail"]
    assert "in_progress" in body["detail"]
    assert _status(engine, number) == "received"
    # A reasoned step without its reason is the schema's 422; a signal is not made "registered" by a status
    # change (409: triage does it), and "merged" is POST …/merge (the schema has no such status here).
    assert api.post(f"/appeals/{number}/status", json={"status": "rejected"}).status_code == 422
    assert api.post(f"/appeals/{number}/status", json={"status": "rejected", "note": " "}).status_code == 422
    registered = api.post(f"/appeals/{number}/status", json={"status": "registered"})
    assert registered.status_code == 409 and "triage" in registered.json()["detail"]
    assert api.post(f"/appeals/{number}/status", json={"status": "merged", "note": "x"}).status_code == 422
    # "extended" is POST …/extend (the head's decision, extension.py): not a status the schema takes here.
    assert api.post(f"/appeals/{number}/status", json={"status": "extended", "note": "x"}).status_code == 422
    walk = [("in_progress", None), ("hearing", "предварительное решение"), ("in_progress", None),
            ("answered", None), ("reopened", "гражданин не согласен"), ("in_progress", None)]  # fmt: skip
    for status, note in walk:
        answer = api.post(f"/appeals/{number}/status", json={"status": status, "note": note})
        assert answer.status_code == 200, (status, answer.text)
    assert api.post(f"/appeals/{number}/status", json={"status": "closed"}).status_code == 409
    with Session(engine) as s:
        steps = [
            (e.detail["from"], e.detail["to"])
            for e in s.exec(
                select(AppealEvent)
                .join(Appeal, col(Appeal.id) == AppealEvent.appeal_id)
                .where(Appeal.number == number, AppealEvent.kind == "status")
                .order_by(col(AppealEvent.id))
            )
        ]
        audited = s.exec(
            select(AuditEvent).where(AuditEvent.action == "appeal.status", AuditEvent.subject == number)
        ).all()
    assert steps == list(zip(["received", *[w[0] for w in walk[:-1]]], [w[0] for w in walk], strict=True))
    assert len(audited) == len(walk)
    assert [a.detail["to"] for a in audited] == [w[0] for w in walk]


def test_the_status_form_offers_only_the_legal_next_steps(web: Any) -> None:
    engine = web.runtime.engine
    number = seed_appeal(web.runtime, chat=42)
    client = web.new_client()
    login(client, "moder")

    def offered() -> list[str]:
        page = client.get(f"/appeals/{number}?lang=en").text
        form = re.search(r'<select id="status-select" name="status">(.*?)</select>', page, re.S)
        assert form is not None, "no status form"
        return re.findall(r'<option value="([a-z_]+)"', form.group(1))

    # A signal: the table's steps less those with their own action (triage registers, merge merges) or
    # form (a forwarding names the outside body: the forwarding form, forwarding.py).
    own = (AppealStatus.REGISTERED, AppealStatus.MERGED, AppealStatus.FORWARDED)
    assert offered() == [s.value for s in lifecycle.next_statuses("received") if s not in own]
    page = client.get(f"/appeals/{number}?lang=ru").text
    ru = translations("ru").gettext
    assert f'<option value="in_progress">{ru(STATUSES["in_progress"])}</option>' in page  # labels.py
    csrf = csrf_of(page)
    posted = client.post(
        f"/appeals/{number}/status",
        data={"status": "in_progress", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and "done=status" in posted.headers["location"]
    assert offered() == [s.value for s in lifecycle.next_statuses("in_progress") if s not in own]
    # A step the form does not offer, posted anyway, is refused with the page's message.
    illegal = client.post(
        f"/appeals/{number}/status", data={"status": "closed", "csrf_token": csrf}, follow_redirects=False
    )
    assert illegal.status_code == 303 and "error=illegal" in illegal.headers["location"]
    assert _status(engine, number) == "in_progress"
    with unit_of_work(engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        web.runtime.workflow.change_status(s, appeal, "answered", actor="system")
        web.runtime.workflow.change_status(s, appeal, "closed", actor="system")
    assert offered() == ["reopened"]
