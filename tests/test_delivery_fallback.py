"""Core hooks added with the VK channel, tested with a stand-in connector of our own port: a send that
fails for good may name a fallback target (Failed.fallback), the workflow then owes one neutral invitation
there per appeal; a citizen who writes again after a failed acknowledgement is acknowledged once more; and
the intake_gap migration (0002) matches the models and goes down and up again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, ClassVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from adaldyk_bots.domain import Delivered, Failed, InboundMessage, ReplyTarget, SendResult
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import make_engine, unit_of_work
from adaldyk_bots.storage.migrate import alembic_config, upgrade
from adaldyk_bots.storage.models import AppealEvent
from tests.standin_connector import StandInConnector
from tests.support import outbox_rows

PUBLIC = ReplyTarget("stub", "acc", "post-7", reply_to_key="42", kind="public")


class StubConnector(StandInConnector):
    """Private sends fail for good, naming a public place; public sends go through."""

    name: ClassVar[str] = "stub"

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        if target.kind == "public":
            self.sent.append((target, text))
            return Delivered(f"public-{len(self.sent)}")
        return Failed("stub.unreachable", "the citizen cannot be written to privately", PUBLIC)


def _message(text: str, key: str, kind: str = "comment") -> InboundMessage:
    return InboundMessage(
        channel="stub",
        account="acc",
        chat_id="citizen-1",
        message_key=key,
        sender_id="citizen-1",
        sent_at=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        text=text,
        kind=kind,
    )


_rows = outbox_rows


def test_a_fallback_target_gets_one_neutral_invitation_per_appeal(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings())
    stub = StubConnector()
    runtime.connectors = {"stub": stub}
    dispatcher = runtime.dispatcher()
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(
            s, _message("Здравствуйте, свалка у реки Урал.", "c-1"), raw_event_id=None
        )

    asyncio.run(dispatcher.dispatch_due())
    rows = _rows(runtime.engine)
    (ack,) = [r for r in rows.values() if r.purpose == "ack"]
    (invite,) = [r for r in rows.values() if r.purpose == "invite"]
    assert (ack.state, ack.last_error_code) == ("failed", "stub.unreachable")
    assert invite.key == f"invite:{ack.appeal_id}" and invite.chat_id == "post-7"
    assert (invite.target_kind, invite.reply_to_key) == ("public", "42")
    assert invite.text == runtime.workflow.texts.render("ru", "public_invite")
    with Session(runtime.engine) as s:
        (event,) = s.exec(select(AppealEvent).where(AppealEvent.kind == "delivery_failed")).all()
    assert event.detail["fallback"] == invite.key

    asyncio.run(dispatcher.dispatch_due())
    assert [(t, text) for t, text in stub.sent] == [(PUBLIC, invite.text)]

    # A status change that also fails adds no second invitation under the same comment.
    with unit_of_work(runtime.engine) as s:
        appeal = runtime.workflow.appeal_by_number(s, "ADL-2026-000001")
        runtime.workflow.change_status(s, appeal, "in_progress", actor="test")
    asyncio.run(dispatcher.dispatch_due())
    assert len([r for r in _rows(runtime.engine).values() if r.purpose == "invite"]) == 1
    assert len(stub.sent) == 1
    runtime.engine.dispose()


def test_without_a_writer_the_fallback_is_only_a_failure(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings())
    runtime.connectors = {"stub": StubConnector()}
    dispatcher = runtime.dispatcher()
    dispatcher.fallback_writer = None
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message("Жалоба", "c-1"), raw_event_id=None)
    asyncio.run(dispatcher.dispatch_due())
    assert [r.purpose for r in _rows(runtime.engine).values()] == ["ack"]
    runtime.engine.dispose()


def test_writing_again_after_a_failed_acknowledgement_is_acknowledged_once_more(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings())
    runtime.connectors = {"stub": StubConnector()}
    dispatcher = runtime.dispatcher()
    dispatcher.fallback_writer = None
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message("Жалоба", "c-1"), raw_event_id=None)
    asyncio.run(dispatcher.dispatch_due())
    for n in (2, 3):  # the citizen writes privately, twice
        with unit_of_work(runtime.engine) as s:
            runtime.workflow.accept_message(
                s, _message(f"Пишу лично {n}", f"m-{n}", "message"), raw_event_id=None
            )
    rows = _rows(runtime.engine)
    again = [r for r in rows.values() if r.key.endswith(":again")]
    assert len(again) == 1 and again[0].purpose == "ack" and "ADL-2026-000001" in again[0].text
    assert again[0].target_kind == "message" and again[0].reply_to_key == "m-2"
    runtime.engine.dispose()


def test_migration_0002_matches_the_models_and_goes_down_and_up(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert [d for d in diffs if "intake_gap" in repr(d)] == []
        config = alembic_config(database_url)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0001"
    finally:
        upgrade(engine)
        engine.dispose()
