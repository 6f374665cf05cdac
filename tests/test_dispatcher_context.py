"""The dispatcher hands a ContextualSend connector (e-mail) the row's SendContext at send time: the
purpose, whether a person wrote it, the appeal's language and number (Workflow.notice_fields), and the id
of the citizen's last message in the conversation; a connector without the flag is called as before."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlmodel import Session

from adaldyk_bots.domain import Delivered, InboundMessage, ReplyTarget, SendContext, SendResult
from adaldyk_bots.ports import ContextualSend
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import Appeal
from adaldyk_bots.workflow import Target, Workflow
from tests.standin_connector import StandInConnector
from tests.support import outbox_rows


class ContextConnector(StandInConnector):
    name: ClassVar[str] = "ctx"
    send_takes_context: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[tuple[str, SendContext | None]] = []

    async def send(
        self, target: ReplyTarget, text: str, *, idempotency_key: str, context: SendContext | None = None
    ) -> SendResult:
        self.sent.append((target, text))
        self.contexts.append((idempotency_key, context))
        return Delivered(f"ctx-{len(self.sent)}")


def _message(key: str, text: str, minute: int) -> InboundMessage:
    return InboundMessage(
        channel="ctx",
        account="acc",
        chat_id="aigul@mail.ru",
        message_key=key,
        sender_id="aigul@mail.ru",
        sent_at=datetime(2026, 11, 27, 6, minute, tzinfo=UTC),
        text=text,
    )


def test_a_contextual_connector_gets_the_number_language_and_the_last_inbound_id(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings())
    connector = ContextConnector()
    assert isinstance(connector, ContextualSend) and not isinstance(StandInConnector(), ContextualSend)
    runtime.connectors = {"ctx": connector}
    dispatcher = runtime.dispatcher()
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(
            s,
            _message("<first@mail.ru>", "Өзен жағасында қоқыс үйіндісі бар, шара қолданыңыздар.", 0),
            raw_event_id=None,
        )
    asyncio.run(dispatcher.dispatch_due())
    [(key, context)] = connector.contexts
    [ack] = [r for r in outbox_rows(runtime.engine).values() if r.purpose == "ack"]
    assert key == ack.key and ack.state == "sent" and ack.platform_message_ids == ["ctx-1"]
    assert context is not None
    assert (context.purpose, context.written_by_person, context.language) == ("ack", False, "kk")
    with Session(runtime.engine) as s:
        appeal = s.get(Appeal, ack.appeal_id)
    assert appeal is not None and context.fields["number"] == appeal.number
    assert context.last_inbound_key == "<first@mail.ru>"
    [(target, _text)] = connector.sent
    assert target.reply_to_key == "<first@mail.ru>"  # the acknowledgement answers the mail that opened it

    # The citizen writes again; a later notice (no reply_to_key of its own) is told their last mail.
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(
            s, _message("<second@mail.ru>", "Фото қосамын.", 5), raw_event_id=None
        )
        Workflow.enqueue(
            s,
            key="status:test",
            target=Target("ctx", "acc", "aigul@mail.ru"),
            purpose="status",
            appeal_id=ack.appeal_id,
            text="Мәртебе өзгерді.",
            now=utcnow(),
        )
    asyncio.run(dispatcher.dispatch_due())
    [(_key, later)] = [(k, c) for k, c in connector.contexts if k == "status:test"]
    assert later is not None and later.purpose == "status"
    assert later.fields["number"] == appeal.number and later.last_inbound_key == "<second@mail.ru>"
    assert connector.sent[-1][0].reply_to_key is None


def test_a_connector_without_the_flag_is_called_as_before(make_settings: Any) -> None:
    runtime = Runtime.build(make_settings())
    plain = StandInConnector()  # its send() takes no context: a context= would raise TypeError
    runtime.connectors = {"plain": plain}
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(
            s, replace(_message("m-1", "Сәлеметсіз бе", 0), channel="plain"), raw_event_id=None
        )
    asyncio.run(runtime.dispatcher().dispatch_due())
    assert {r.state for r in outbox_rows(runtime.engine).values()} == {"sent"}
