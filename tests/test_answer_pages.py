"""The four eyes in the workspace: the officer's draft form, the head's pending-approval box and
/approvals, a wrong person's approval refused with 403, the head's approval sending the answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal, OutboxItem
from tests.answers_support import make_formal, seed_org
from tests.appeal_support import Workspace, start_workspace
from tests.support import wait_until


@pytest.fixture
def workspace(make_settings: Any, fake_telegram: Any) -> Any:
    yield from start_workspace(make_settings, fake_telegram)


def _keys(ws: Workspace, number: str) -> set[str]:
    with Session(ws.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        return {o.key for o in s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal.id))}


def test_draft_approval_box_and_approval_on_the_pages(workspace: Workspace) -> None:
    ws = workspace
    number = ws.citizen_writes(9101, "Здравствуйте! Завод сбрасывает отходы в реку, прошу принять меры.")
    org = seed_org(ws.engine)
    with Session(ws.engine) as s:
        appeal_id = s.exec(select(Appeal.id).where(Appeal.number == number)).one()
    make_formal(ws.engine, appeal_id, org.department)

    officer, officer_csrf = ws.client("t_officer")
    page = officer.get(f"/appeals/{number}")
    assert page.status_code == 200
    assert (
        f'action="/appeals/{number}/answer"' in page.text
        and "/reply" not in page.text.split('id="answer"')[1][:2000]
    )
    # The old reply form on a formal appeal saves a draft too: it never bypasses the head.
    sent = officer.post(
        f"/appeals/{number}/reply",
        data={"text": "Проверка проведена, наложен штраф.", "csrf_token": officer_csrf},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and "done=draft" in sent.headers["location"]
    assert not any(k.startswith(("reply:", "notice:answer")) for k in _keys(ws, number))
    approve_form = f'action="/appeals/{number}/answer/approve"'
    assert approve_form not in officer.get(f"/appeals/{number}").text  # not the officer's to decide

    committee, committee_csrf = ws.client("t_chead")
    refused = committee.post(
        f"/appeals/{number}/answer/approve", data={"csrf_token": committee_csrf}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert not any(k.startswith("notice:answer") for k in _keys(ws, number))

    head, head_csrf = ws.client("t_dhead")
    listing = head.get("/approvals")
    assert listing.status_code == 200 and number in listing.text
    box = head.get(f"/appeals/{number}")
    assert "Проверка проведена, наложен штраф." in box.text and approve_form in box.text
    approved = head.post(
        f"/appeals/{number}/answer/approve", data={"csrf_token": head_csrf}, follow_redirects=False
    )
    assert approved.status_code == 303 and "done=approved" in approved.headers["location"]
    again = head.post(
        f"/appeals/{number}/answer/approve", data={"csrf_token": head_csrf}, follow_redirects=False
    )
    assert again.status_code == 404  # nothing waits any more
    wait_until(lambda: ws.wait_delivery(number, "answer", "sent"), what="the approved answer")
    assert {f"notice:answer:{appeal_id}", f"feedback:{appeal_id}"} <= _keys(ws, number)


def test_returning_an_answer_on_the_page_sends_nothing(workspace: Workspace) -> None:
    ws = workspace
    number = ws.citizen_writes(9102, "Здравствуйте! Вырубка деревьев в парке без разрешения.")
    org = seed_org(ws.engine)
    with Session(ws.engine) as s:
        appeal_id = s.exec(select(Appeal.id).where(Appeal.number == number)).one()
    make_formal(ws.engine, appeal_id, org.department)
    officer, officer_csrf = ws.client("t_officer")
    officer.post(f"/appeals/{number}/answer", data={"text": "Черновик ответа.", "csrf_token": officer_csrf})
    before = _keys(ws, number)
    head, head_csrf = ws.client("t_dhead")
    empty = head.post(
        f"/appeals/{number}/answer/return",
        data={"comment": " ", "csrf_token": head_csrf},
        follow_redirects=False,
    )
    assert "error=comment" in empty.headers["location"]
    returned = head.post(
        f"/appeals/{number}/answer/return",
        data={"comment": "Укажите сумму штрафа", "csrf_token": head_csrf},
        follow_redirects=False,
    )
    assert "done=returned" in returned.headers["location"]
    assert _keys(ws, number) == before
    assert "Укажите сумму штрафа" in head.get(f"/appeals/{number}").text
