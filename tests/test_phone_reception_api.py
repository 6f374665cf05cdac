"""The JSON API twin of the phone/reception form (POST /api/v1/appeals), and where these appeals' notices
go when the citizen gave an e-mail and a mail channel runs: to that address through the outbox, and — when
the mail server refuses it for good — a task for staff instead of a silent gap.

The mail channel here is a stand-in of our own connector port (tests/standin_connector.py), registered as
`email` through Runtime.build(factories=…): the real e-mail connector is another part of issue 9, and what
is tested is the core's routing, not SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.domain import Failed, ReplyTarget, SendResult
from adaldyk_bots.org import ORG_FILE, sync_units
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, OutboxItem, StaffTask
from tests.appeal_support import UNIT_A, UNIT_B
from tests.standin_connector import StandInConnector
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import create_user, token_for

REFUSED = "gone@example.kz"


class Mailbox(StandInConnector):
    """Accepts every mail except to REFUSED, which the server refuses for good (an SMTP 550)."""

    name: ClassVar[str] = "email"
    boxes: ClassVar[list[Mailbox]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailbox:
        box = cls()
        cls.boxes.append(box)
        return box

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        if target.chat_id == REFUSED:
            return Failed("email.550", "550 5.1.1 mailbox unavailable")
        return await super().send(target, text, idempotency_key=idempotency_key)


@pytest.fixture
def service(make_settings: Any) -> Iterator[ServiceThread]:
    settings = make_settings(port=free_port(), dispatch_interval_seconds=0.1)
    with ServiceThread(settings, factories={"email": Mailbox}) as svc:
        with unit_of_work(svc.runtime.engine) as s:
            sync_units(s, settings.config_dir / ORG_FILE)
        create_user(svc.runtime.engine, "moder", "moderator", full_name="Мира Модератор")
        create_user(svc.runtime.engine, "astana", "officer", UNIT_A)
        create_user(svc.runtime.engine, "audit", "auditor")
        yield svc


def _api(svc: ServiceThread, username: str) -> httpx.Client:
    token = token_for(svc.runtime.engine, username)
    return httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


BODY = {
    "channel": "reception",
    "text": "Зауыт түнде түтін шығарады, тыныс алу қиын.",
    "kind": "complaint",
    "name": "Оспанова Гүлжан Ерболқызы",
    "email": "Gulzhan@Example.kz",
    "unit": UNIT_A,
    "consent": True,
}


def test_the_api_registers_with_the_same_checks_and_the_notice_goes_to_the_given_address(
    service: ServiceThread,
) -> None:
    api = _api(service, "astana")
    # The unit's refusals as for the other unit actions; a wrong field names itself.
    assert api.post("/api/v1/appeals", json={**BODY, "unit": UNIT_B}).status_code == 403
    assert api.post("/api/v1/appeals", json={**BODY, "unit": "atlantis"}).status_code == 404
    nowhere = api.post("/api/v1/appeals", json={k: v for k, v in BODY.items() if k != "email"})
    assert nowhere.status_code == 422
    assert [tuple(e["loc"]) for e in nowhere.json()["errors"]] == [("body", "answer")]
    bad = api.post("/api/v1/appeals", json={**BODY, "email": "not-an-address", "consent": False})
    assert bad.status_code == 422
    assert {e["loc"][-1] for e in bad.json()["errors"]} == {"email", "consent"}
    assert _api(service, "audit").post("/api/v1/appeals", json=BODY).status_code == 403

    made = api.post("/api/v1/appeals", json=BODY)
    assert made.status_code == 201, made.text
    number = made.json()["appeal"]["number"]
    assert made.json()["receipt"] == f"/appeals/{number}/receipt"
    assert made.json()["appeal"]["channel"] == "reception" and made.json()["appeal"]["unit"] == UNIT_A

    def sent() -> OutboxItem | None:
        with Session(service.runtime.engine) as s:
            row = s.exec(
                select(OutboxItem)
                .join(Appeal, col(Appeal.id) == OutboxItem.appeal_id)
                .where(Appeal.number == number, OutboxItem.purpose == "registration")
            ).first()
            return row if row is not None and row.state == "sent" else None

    row = wait_until(sent, what="the registration notice by e-mail")
    assert (row.channel, row.chat_id) == ("email", "gulzhan@example.kz")
    assert any(
        t.chat_id == "gulzhan@example.kz" and number in text for box in Mailbox.boxes for t, text in box.sent
    )
    with Session(service.runtime.engine) as s:
        assert not s.exec(select(StaffTask).where(StaffTask.outbox_id == row.id)).all()
    receipt = api.get(f"/appeals/{number}/receipt")  # the receipt is a workspace page, not the API
    assert receipt.status_code == 303 and receipt.headers["location"].startswith("/login")


def test_a_mail_refused_for_good_becomes_a_task(service: ServiceThread) -> None:
    made = _api(service, "moder").post("/api/v1/appeals", json={**BODY, "email": REFUSED, "unit": ""})
    assert made.status_code == 201, made.text
    number = made.json()["appeal"]["number"]

    def task() -> StaffTask | None:
        with Session(service.runtime.engine) as s:
            return s.exec(
                select(StaffTask)
                .join(Appeal, col(Appeal.id) == StaffTask.appeal_id)
                .where(Appeal.number == number, StaffTask.kind == "undelivered_notice")
            ).first()

    found = wait_until(task, what="the task for the refused mail")
    with Session(service.runtime.engine) as s:
        row = s.get(OutboxItem, found.outbox_id)
    assert row is not None and row.state == "failed" and row.last_error_code == "email.550"
    assert found.key == f"undelivered:{row.id}" and found.text == row.text
