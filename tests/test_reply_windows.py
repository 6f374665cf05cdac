"""Reply windows in the core, with stand-in connectors of our own port (no Meta code): the dispatcher asks
a connector that has `reply_window` before each send, passes its decision to send(), fails a closed window
visibly and owes the message on the citizen's other conversation (Failed.elsewhere), parks a `wait` in
state `waiting` with the notice it asks for, and the citizen's next message releases it. A connector
without the hook is always open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlmodel import Session, col, select, update

from adaldyk_bots.domain import (
    InboundMessage,
    ReplyTarget,
    SendContext,
    WindowDecision,
)
from adaldyk_bots.ports import ReplyWindows
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import AppealEvent, Conversation
from tests.standin_connector import StandInConnector
from tests.support import outbox_rows


class Plain(StandInConnector):
    """A channel without reply windows (like Telegram or VK)."""


class Windowed(Plain):
    """Free text within 2 hours of the citizen's last message; later: status notices as a template,
    a person's reply waits for the citizen (with a notice), anything else is closed."""

    name: ClassVar[str] = "windowed"
    contexts: list[SendContext]

    def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision:
        self.contexts.append(context)
        assert context.last_inbound_at is not None
        if context.purpose == "ready" or context.now - context.last_inbound_at > timedelta(hours=2):
            if context.purpose in ("status", "ready"):
                return WindowDecision(
                    "template", template=f"tpl_{context.purpose}", params=(context.fields["number"],)
                )
            if context.written_by_person:
                return WindowDecision(
                    "wait", code="windowed.waiting", detail="waits for the citizen", notice="ready"
                )
            return WindowDecision.closed("windowed.closed", "cannot reach the citizen: reply window closed")
        return WindowDecision.open("IN_WINDOW")


def _message(
    channel: str, chat: str, key: str, at: datetime, text: str = "Свалка у реки Урал."
) -> InboundMessage:
    return InboundMessage(
        channel=channel, account="acc", chat_id=chat, message_key=key, sender_id=chat, sent_at=at, text=text
    )


def _runtime(make_settings: Any) -> tuple[Runtime, Windowed, Plain]:
    runtime = Runtime.build(make_settings())
    windowed, plain = Windowed(), Plain()
    windowed.contexts = []
    runtime.connectors = {"windowed": windowed, "plain": plain}
    return runtime, windowed, plain


def _age(runtime: Runtime, chat: str, hours: float) -> None:
    with unit_of_work(runtime.engine) as s:
        conversation = s.exec(select(Conversation).where(Conversation.chat_id == chat)).one()
        conversation.last_inbound_at -= timedelta(hours=hours)
        s.add(conversation)


def test_the_hook_is_optional_and_its_decision_reaches_send(make_settings: Any) -> None:
    runtime, windowed, plain = _runtime(make_settings)
    assert isinstance(windowed, ReplyWindows) and not isinstance(plain, ReplyWindows)
    now = utcnow()
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message("windowed", "w-1", "m-1", now), raw_event_id=None)
        runtime.workflow.accept_message(s, _message("plain", "p-1", "m-1", now), raw_event_id=None)
    asyncio.run(runtime.dispatcher().dispatch_due())
    ((target, _),) = windowed.sent
    assert target.window == WindowDecision.open("IN_WINDOW")
    ((plain_target, _),) = plain.sent
    assert plain_target.window is None
    (context,) = windowed.contexts
    assert context.purpose == "ack" and not context.written_by_person and context.language == "ru"
    assert context.last_inbound_at is not None and context.sent_since_inbound == 0
    runtime.engine.dispose()


def test_closed_window_fails_visibly_and_goes_to_the_citizens_other_channel(make_settings: Any) -> None:
    runtime, windowed, plain = _runtime(make_settings)
    now = utcnow()
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message("windowed", "w-1", "m-1", now), raw_event_id=None)
        runtime.workflow.accept_message(s, _message("windowed", "w-2", "m-1", now), raw_event_id=None)
        runtime.workflow.accept_message(s, _message("plain", "p-1", "m-1", now, "/start"), raw_event_id=None)
    dispatcher = runtime.dispatcher()
    asyncio.run(dispatcher.dispatch_due())
    with unit_of_work(runtime.engine) as s:  # a moderator linked w-1 and p-1: the same citizen
        contact = s.exec(select(Conversation.contact_id).where(Conversation.chat_id == "w-1")).one()
        s.execute(update(Conversation).where(col(Conversation.chat_id) == "p-1").values(contact_id=contact))
    _age(runtime, "w-1", 3)
    _age(runtime, "w-2", 3)
    with unit_of_work(runtime.engine) as s:
        for number in ("ADL-2026-000001", "ADL-2026-000002"):
            appeal = runtime.workflow.appeal_by_number(s, number)
            runtime.workflow.change_status(s, appeal, "in_progress", actor="test")  # -> template
    asyncio.run(dispatcher.dispatch_due())
    templates = [t.window.template for t, _ in windowed.sent if t.window and t.window.kind == "template"]
    assert templates == ["tpl_status", "tpl_status"]

    # An automated notice that no template covers: closed -> owed on the other channel, or failed.
    with unit_of_work(runtime.engine) as s:
        for appeal_id, chat in ((1, "w-1"), (2, "w-2")):
            runtime.workflow.enqueue(
                s,
                key=f"info:{appeal_id}",
                target=_target(chat),
                purpose="info",
                appeal_id=appeal_id,
                text="Сообщение",
                now=utcnow(),
            )
    asyncio.run(dispatcher.dispatch_due())
    asyncio.run(dispatcher.dispatch_due())
    rows = outbox_rows(runtime.engine)
    first, second = rows["info:1"], rows["info:2"]
    assert first.state == second.state == "failed"
    assert first.last_error_code == second.last_error_code == "windowed.closed"
    assert "owed on another channel instead (elsewhere:info:1 (plain))" in (first.last_error_detail or "")
    assert second.last_error_detail == "cannot reach the citizen: reply window closed"
    assert rows["elsewhere:info:1"].state == "sent" and rows["elsewhere:info:1"].chat_id == "p-1"
    assert (plain.sent[-1][0].chat_id, plain.sent[-1][1]) == ("p-1", "Сообщение")
    with Session(runtime.engine) as s:
        failed = s.exec(select(AppealEvent).where(AppealEvent.kind == "delivery_failed")).all()
    assert {e.detail["outbox"] for e in failed} == {"info:1", "info:2"}
    runtime.engine.dispose()


def _target(chat: str) -> Any:
    from adaldyk_bots.workflow import Target

    return Target("windowed", "acc", chat)


def test_a_waiting_reply_owes_its_notice_and_goes_when_the_citizen_writes(make_settings: Any) -> None:
    runtime, windowed, _ = _runtime(make_settings)
    start = datetime.now(UTC) - timedelta(hours=3)
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(s, _message("windowed", "w-1", "m-1", start), raw_event_id=None)
    dispatcher = runtime.dispatcher()
    asyncio.run(dispatcher.dispatch_due())  # the ack: closed, failed (no other channel)
    with unit_of_work(runtime.engine) as s:
        appeal = runtime.workflow.appeal_by_number(s, "ADL-2026-000001")
        runtime.workflow.reply(s, appeal, "Ответ готов.", actor="moderator")
    asyncio.run(dispatcher.dispatch_due())
    asyncio.run(dispatcher.dispatch_due())
    rows = outbox_rows(runtime.engine)
    (reply,) = [r for r in rows.values() if r.purpose == "reply"]
    assert (reply.state, reply.last_error_code) == ("waiting", "windowed.waiting")
    notice = rows[f"ready:{reply.key}"]
    assert notice.state == "sent"
    assert [t.window.template for t, _ in windowed.sent if t.window] == ["tpl_ready"]
    with Session(runtime.engine) as s:
        assert s.exec(select(AppealEvent).where(AppealEvent.kind == "delivery_waiting")).one()

    # The citizen writes: the window opens, the answer goes as text.
    with unit_of_work(runtime.engine) as s:
        runtime.workflow.accept_message(
            s, _message("windowed", "w-1", "m-2", datetime.now(UTC), "Жду ответа"), raw_event_id=None
        )
    asyncio.run(dispatcher.dispatch_due())
    assert outbox_rows(runtime.engine)[reply.key].state == "sent"
    target, text = windowed.sent[-1]
    assert "Ответ готов." in text and target.window == WindowDecision.open("IN_WINDOW")
    runtime.engine.dispose()


def test_the_reply_form_says_what_the_dispatcher_would_decide() -> None:
    # The appeal page asks the same hook as the dispatcher (ports.reply_window) for a moderator's reply.
    from adaldyk_bots.domain import WindowDecision
    from adaldyk_bots.storage.models import Appeal, Conversation
    from adaldyk_bots.web.appeal_pages import _reply_window

    asked: list[SendContext] = []

    class Windowed(Plain):
        def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision:
            asked.append(context)
            return WindowDecision(kind="closed", code="meta.window_closed", detail="over 7 days")

    now = utcnow()
    conversation = Conversation(
        contact_id=1, channel="plain", account="acc", chat_id="c1", last_inbound_at=now, created_at=now
    )
    appeal = Appeal(
        number="ADL-2026-000001", contact_id=1, conversation_id=1, channel="plain", language="kk",
        received_at=now, registered_at=now, due_at=now, created_at=now, updated_at=now,
        last_activity_at=now,
    )  # fmt: skip
    closed = _reply_window(Windowed(), conversation, appeal)
    assert (closed.known, closed.open, closed.code) == (True, False, "meta.window_closed")
    assert asked[0].purpose == "reply" and asked[0].written_by_person and asked[0].language == "kk"
    assert _reply_window(Plain(), conversation, appeal).open  # no windows on this platform: open
    assert not _reply_window(None, conversation, appeal).known  # the channel is off in this process


def test_the_appeal_page_says_whether_the_reply_window_is_open(make_settings: Any) -> None:
    # Over real HTTP: the reply form of an appeal on a windowed channel whose window has closed, beside one
    # on a channel without windows and one on a channel that is off in this process.
    from adaldyk_bots.storage.models import Appeal
    from tests.web_support import WebApp, create_user, login

    class Closing(Plain):
        name: ClassVar[str] = "closing"

        def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision:
            return WindowDecision.closed("closing.window_closed", "over 7 days since the citizen wrote")

    with WebApp(make_settings()) as web:
        web.runtime.connectors = {"closing": Closing(), "plain": Plain()}
        at = utcnow() - timedelta(days=8)
        for channel in ("closing", "plain", "gone"):
            with unit_of_work(web.runtime.engine) as s:
                web.runtime.workflow.accept_message(
                    s, _message(channel, "c1", f"{channel}-1", at), raw_event_id=None
                )
        create_user(web.runtime.engine, "moder", "moderator")
        login(web.client, "moder")
        with Session(web.runtime.engine) as s:
            numbers = {a.channel: a.number for a in s.exec(select(Appeal))}

        def window(channel: str) -> str:
            page = web.client.get(f"/appeals/{numbers[channel]}?lang=ru").text
            start = page.index('<p class="window')
            return page[start : page.index("</p>", start)]

        closed = window("closing")
        assert closed.startswith('<p class="window overdue">') and "Окно ответа: закрыто." in closed
        assert "<code>closing.window_closed</code>" in closed and "over 7 days" in closed
        assert "Окно ответа: открыто." in window("plain") and "overdue" not in window("plain")
        assert "для этого канала неизвестно" in window("gone")
