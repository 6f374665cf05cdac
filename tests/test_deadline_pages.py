"""Deadlines in the workspace, through the real service over loopback: the extend action (page and API),
`/notices` with its header count, the transfers flag in the inbox and on the appeal page, and /healthz
when the overdue sweep is behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from adaldyk_bots import staff_work
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal, StaffNotice, StaffUser, Unit
from connectors.telegram.fake import FakeTelegramServer
from tests.appeal_support import UNIT_A, Workspace, start_workspace
from tests.support import create_api_token


@pytest.fixture
def workspace(make_settings: Any, fake_telegram: FakeTelegramServer) -> Iterator[Workspace]:
    yield from start_workspace(make_settings, fake_telegram)


def _assigned(workspace: Workspace, chat: int) -> str:
    """An appeal of UNIT_A whose head is the officer `astana`, registered and assigned."""
    number = workspace.citizen_writes(chat, "Жалоба: вырубка деревьев в парке")
    workspace.assign(number, UNIT_A)
    workflow = workspace.svc.runtime.workflow
    with unit_of_work(workspace.engine) as s:
        head = s.exec(select(StaffUser).where(StaffUser.username == "astana")).one()
        unit = s.exec(select(Unit).where(Unit.code == UNIT_A)).one()
        unit.head_user_id = head.id
        s.add(unit)
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        workflow.change_status(s, appeal, "registered", actor="system")
        workflow.change_status(s, appeal, "assigned", actor="system")
    return number


def _appeal(workspace: Workspace, number: str) -> Appeal:
    with Session(workspace.engine) as s:
        return s.exec(select(Appeal).where(Appeal.number == number)).one()


def test_the_head_extends_on_the_page_others_may_not(workspace: Workspace) -> None:
    number = _assigned(workspace, 7001)
    before = _appeal(workspace, number)
    moder, moder_csrf = workspace.client("moder")
    page = moder.get(f"/appeals/{number}").text
    assert 'action="/appeals/' + number + '/extend"' not in page  # not the head: no form
    refused = moder.post(
        f"/appeals/{number}/extend", data={"days": "5", "reason": "проверка", "csrf_token": moder_csrf}
    )
    assert refused.status_code == 303 and "error=extend_forbidden" in refused.headers["location"]
    bare = moder.post(
        f"/appeals/{number}/status", data={"status": "extended", "reason": "x", "csrf_token": moder_csrf}
    )
    assert "error=extend_use" in bare.headers["location"]
    head, csrf = workspace.client("astana")
    assert f'action="/appeals/{number}/extend"' in head.get(f"/appeals/{number}").text
    no_reason = head.post(f"/appeals/{number}/extend", data={"days": "5", "reason": " ", "csrf_token": csrf})
    assert "error=extend" in no_reason.headers["location"]
    done = head.post(
        f"/appeals/{number}/extend", data={"days": "5", "reason": "Выездная проверка", "csrf_token": csrf}
    )
    assert done.status_code == 303 and "done=extend" in done.headers["location"]
    after = _appeal(workspace, number)
    assert after.status == "extended" and after.extensions == 1
    assert after.original_due_at == before.due_at and after.due_at > before.due_at
    notice = workspace.wait_delivery(number, "extension", "sent")
    assert "Выездная проверка" in notice.text
    assert head.get(f"/appeals/{number}").status_code == 200


def test_the_api_extends_for_the_head_and_refuses_others(workspace: Workspace) -> None:
    number = _assigned(workspace, 7002)
    settings = workspace.svc.runtime.settings
    other = create_api_token(settings, "moder", username="moder")
    api = httpx.Client(base_url=workspace.url, timeout=20)
    body = {"reason": "Нужна экспертиза", "working_days": 3}
    refused = api.post(
        f"/api/v1/appeals/{number}/extend", json=body, headers={"Authorization": f"Bearer {other}"}
    )
    assert refused.status_code == 403
    token = create_api_token(settings, "astana", username="astana")
    done = api.post(
        f"/api/v1/appeals/{number}/extend", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["appeal"]["status"] == "extended"
    empty = api.post(
        f"/api/v1/appeals/{number}/extend",
        json={"reason": "", "working_days": 3},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert empty.status_code == 422
    capped = api.post(
        f"/api/v1/appeals/{number}/extend",
        json={"reason": "ещё", "working_days": 200},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert capped.status_code == 422 and "at the latest" in capped.text


def test_notices_page_header_count_and_mark_read(workspace: Workspace) -> None:
    number = _assigned(workspace, 7003)
    with unit_of_work(workspace.engine) as s:
        ids = {u.username: u.id for u in s.exec(select(StaffUser))}
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        for key, user in (("r1", "astana"), ("r2", "astana"), ("m1", "moder")):
            staff_work.notify_staff(
                s,
                key=key,
                kind="reminder",
                text=f"Напоминание {key}",
                now=utcnow(),
                user_id=ids[user],
                appeal_id=appeal.id,
            )
    head, csrf = workspace.client("astana")
    page = head.get("/notices?lang=ru").text
    assert "Напоминание r2" in page and "Напоминание r1" in page and "Напоминание m1" not in page
    assert page.index("Напоминание r2") < page.index("Напоминание r1")  # newest first
    assert '<span class="notice-count"' in page and ">2</span>" in page
    assert f'href="/appeals/{number}"' in page
    with Session(workspace.engine) as s:
        mine = s.exec(select(StaffNotice).where(StaffNotice.key == "r1")).one()
        theirs = s.exec(select(StaffNotice).where(StaffNotice.key == "m1")).one()
    assert head.post(f"/notices/{theirs.id}/read", data={"csrf_token": csrf}).status_code == 404
    assert head.post(f"/notices/{mine.id}/read", data={"csrf_token": csrf}).status_code == 303
    assert ">1</span>" in head.get("/notices").text
    assert head.post("/notices/read-all", data={"csrf_token": csrf}).status_code == 303
    assert '<span class="notice-count"' not in head.get("/").text
    assert head.post("/notices/read-all", data={}).status_code == 403  # CSRF


def test_transfers_flag_in_the_inbox_and_on_the_page(workspace: Workspace) -> None:
    number = workspace.citizen_writes(7004, "Свалка у реки")
    for code in (UNIT_A, "cerc_almaty_city", UNIT_A, "cerc_almaty_city"):
        workspace.assign(number, code)
    assert _appeal(workspace, number).transfers == 3
    moder, _csrf = workspace.client("moder")
    assert 'data-flag="transfers"' in moder.get(f"/appeals/{number}").text
    assert 'data-flag="transfers"' in moder.get("/").text


def test_healthz_degraded_when_the_overdue_sweep_is_behind(make_settings: Any, tmp_path: Any) -> None:
    from types import SimpleNamespace

    from adaldyk_bots.health import health_report
    from adaldyk_bots.storage.db import make_engine
    from tests.deadline_support import build_workflow, config_copy, local, register

    settings = make_settings(backlog_degraded_seconds=300)
    engine = make_engine(settings.database_url)
    parts = SimpleNamespace(settings=settings, engine=engine, connectors={}, off=[], unavailable={})
    body, _code = health_report(parts)
    assert body["backlog"]["oldest_unmarked_overdue_seconds"] is None
    created = register(engine, build_workflow(config_copy(tmp_path)), at=local(2026, 3, 2, 10, 0))
    with unit_of_work(engine) as s:
        appeal = s.get(Appeal, created.id)
        assert appeal is not None
        appeal.due_at = utcnow() - timedelta(hours=2)  # past due and, as if no sweep ran, not marked
        s.add(appeal)
    body, _code = health_report(parts)
    assert body["status"] == "degraded" and body["backlog"]["oldest_unmarked_overdue_seconds"] > 3600
    engine.dispose()
