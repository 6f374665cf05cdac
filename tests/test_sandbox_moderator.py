"""The sandbox's simulated moderator works through the workspace over HTTP: it logs in with the real
form and CSRF, finds new appeals in the inbox, takes them into work and answers the citizen; the history
names the moderator's account, and the citizen gets the answer on the (fake) platform."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from adaldyk_bots.sandbox_moderator import REPLIES, WorkspaceModerator
from adaldyk_bots.storage.models import Appeal, AppealEvent, WebSession
from connectors.telegram.fake import FakeTelegramServer
from tests.conftest import TOKEN
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import PASSWORD, create_user, token_for


def _events(engine: Any, kind: str) -> list[AppealEvent]:
    with Session(engine) as s:
        return list(s.exec(select(AppealEvent).where(AppealEvent.kind == kind).order_by(col(AppealEvent.id))))


def test_the_moderator_logs_in_through_the_form_and_answers_as_its_user(
    make_settings: Any, fake_telegram: FakeTelegramServer
) -> None:
    settings = make_settings(
        port=free_port(),
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        dispatch_interval_seconds=0.1,
    )
    lines: list[str] = []
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        create_user(engine, "aigerim", "moderator")
        moderator = WorkspaceModerator(
            svc.url, "aigerim", PASSWORD, token_for(engine, "aigerim"), say=lines.append, take_after=0.0
        )
        try:
            fake_telegram.citizen_message(
                TOKEN, chat_id=3001, text="Өзенге қалдық төгіп жатыр, шара қолданыңыз.", language_code="kk"
            )
            wait_until(lambda: _events(engine, "created"), what="the appeal")

            def answered() -> list[dict[str, Any]]:
                moderator.round()
                return [m for m in fake_telegram.sent_messages(TOKEN, 3001) if REPLIES["kk"] in m["text"]]

            wait_until(answered, timeout=30, interval=0.3, what="the moderator's answer on Telegram")
        finally:
            moderator.close()
        with Session(engine) as s:
            appeal = s.exec(select(Appeal)).one()
            sessions = s.exec(select(WebSession)).all()
        replies = _events(engine, "reply")
        statuses = _events(engine, "status")
    assert any("вошёл в рабочее место через форму входа" in line for line in lines), lines
    assert len(sessions) == 1  # one login through POST /login, kept for every later round
    assert appeal.status == "in_progress"
    # Through the appeal page's forms: the JSON API would name the token too ("user:… (token:…)").
    assert [e.actor for e in replies] == ["user:aigerim"]
    assert [e.actor for e in statuses] == ["user:aigerim"]
    assert any("inbox — через рабочее место" in line for line in lines), lines


def test_a_wrong_password_does_nothing(make_settings: Any) -> None:
    with ServiceThread(make_settings(port=free_port()), worker=False) as svc:
        create_user(svc.runtime.engine, "aigerim", "moderator")
        lines: list[str] = []
        moderator = WorkspaceModerator(
            svc.url, "aigerim", "not-the-password", "adk_none", say=lines.append, take_after=0.0
        )
        try:
            moderator.round()
        finally:
            moderator.close()
    assert moderator.csrf is None and not moderator.done
    assert any("вход не удался" in line for line in lines), lines
