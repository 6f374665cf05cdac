"""A message that names the appeal it continues (InboundMessage.appeal_number: an e-mail answering one of
ours) joins that appeal when it is the sender's own and open; otherwise the usual rule applies."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, Message

_keys = count(1)


@pytest.fixture
def runtime(make_settings: Any) -> Any:
    settings = make_settings()
    rt = Runtime.build(settings, engine=make_engine(settings.database_url))
    yield rt
    rt.engine.dispose()


def _write(rt: Runtime, sender: str, text: str, *, appeal_number: str | None = None) -> Appeal:
    msg = InboundMessage(
        channel="mailtest",
        account="box",
        chat_id=sender,
        message_key=f"m{next(_keys)}",
        sender_id=sender,
        sent_at=datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        text=text,
        appeal_number=appeal_number,
    )
    with unit_of_work(rt.engine) as s:
        rt.workflow.accept_message(s, msg, raw_event_id=None)
    with Session(rt.engine) as s:
        message = s.exec(select(Message).where(Message.external_key == msg.message_key)).one()
        appeal = s.get(Appeal, message.appeal_id)
        assert appeal is not None
        return appeal


def _set_status(rt: Runtime, appeal: Appeal, status: str) -> None:
    with unit_of_work(rt.engine) as s:
        row = s.get(Appeal, appeal.id)
        assert row is not None
        rt.workflow.change_status(s, row, status, actor="user:test")


def test_a_message_joins_the_open_appeal_it_names_even_when_a_newer_one_is_open(runtime: Runtime) -> None:
    first = _write(runtime, "a@example.kz", "Свалка у реки")
    _set_status(runtime, first, "answered")
    second = _write(runtime, "a@example.kz", "Вырубка деревьев в парке")
    assert second.id != first.id
    _set_status(runtime, first, "reopened")  # taken back into work (lifecycle.py): both are open now
    joined = _write(runtime, "a@example.kz", "По свалке: фото", appeal_number=first.number.lower())
    assert joined.id == first.id
    plain = _write(runtime, "a@example.kz", "Ещё о деревьях")
    assert plain.id == second.id  # without a number: the latest open appeal, as on every channel


def test_a_finished_appeal_is_not_reopened_the_new_one_names_it(runtime: Runtime) -> None:
    first = _write(runtime, "b@example.kz", "Мёртвая рыба в озере")
    _set_status(runtime, first, "answered")
    new = _write(runtime, "b@example.kz", "Не согласна с ответом", appeal_number=first.number)
    assert new.id != first.id
    with Session(runtime.engine) as s:
        status = s.get(Appeal, first.id)
        created = s.exec(
            select(AppealEvent).where(AppealEvent.appeal_id == new.id, col(AppealEvent.kind) == "created")
        ).one()
    assert status is not None and status.status == "answered"
    assert created.detail["continues"] == first.number


def test_someone_elses_number_is_ignored(runtime: Runtime) -> None:
    hers = _write(runtime, "c@example.kz", "Шум от завода ночью")
    mine = _write(runtime, "d@example.kz", "Пишу по обращению", appeal_number=hers.number)
    assert mine.id != hers.id
    with Session(runtime.engine) as s:
        created = s.exec(
            select(AppealEvent).where(AppealEvent.appeal_id == mine.id, col(AppealEvent.kind) == "created")
        ).one()
    assert "continues" not in created.detail
