"""The appeal page's tests: the real service (web + worker) polling the fake Telegram, with the org tree
loaded and staff users, and helpers to wait for appeals and deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlmodel import Session, col, func, select

from adaldyk_bots.org import ORG_FILE, sync_units
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, Conversation, Message, OutboxItem
from connectors.telegram.fake import FakeTelegramServer
from tests.conftest import TOKEN
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import create_user, login

UNIT_A = "cerc_astana"
UNIT_B = "cerc_almaty_city"


@dataclass
class Workspace:
    svc: ServiceThread
    fake: FakeTelegramServer

    @property
    def url(self) -> str:
        return self.svc.url

    @property
    def engine(self) -> Any:
        return self.svc.runtime.engine

    def client(self, username: str | None = None) -> tuple[httpx.Client, str]:
        """A client logged in as `username` (through the real login form) and its CSRF token."""
        client = httpx.Client(base_url=self.url, timeout=20)
        csrf = login(client, username) if username else ""
        return client, csrf

    def citizen_writes(self, chat_id: int, text: str | None = None, **kwargs: Any) -> str:
        """A citizen's Telegram message; waits until it is stored and returns its appeal's number."""
        self.fake.citizen_message(TOKEN, chat_id=chat_id, text=text, **kwargs)

        before = self.inbound_count(chat_id)

        def stored() -> str | None:
            if self.inbound_count(chat_id) <= before:
                return None
            with Session(self.engine) as s:
                return s.exec(
                    select(Appeal.number)
                    .join(Conversation, col(Conversation.id) == Appeal.conversation_id)
                    .where(Conversation.chat_id == str(chat_id))
                    .order_by(col(Appeal.id).desc())
                ).first()

        return wait_until(stored, what=f"the message of chat {chat_id}")

    def inbound_count(self, chat_id: int) -> int:
        with Session(self.engine) as s:
            return s.exec(
                select(func.count())
                .select_from(Message)
                .join(Conversation, col(Conversation.id) == Message.conversation_id)
                .where(Conversation.chat_id == str(chat_id), Message.direction == "in")
            ).one()

    def assign(self, number: str, unit_code: str) -> None:
        with unit_of_work(self.engine) as s:
            appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
            self.svc.runtime.workflow.assign_unit(s, appeal, unit_code, actor="system")

    def deliveries(self, number: str) -> list[OutboxItem]:
        with Session(self.engine) as s:
            return list(
                s.exec(
                    select(OutboxItem)
                    .join(Appeal, col(Appeal.id) == OutboxItem.appeal_id)
                    .where(Appeal.number == number)
                    .order_by(col(OutboxItem.id))
                )
            )

    def wait_delivery(self, number: str, purpose: str, state: str, *, index: int = -1) -> OutboxItem:
        def check() -> OutboxItem | None:
            rows = [r for r in self.deliveries(number) if r.purpose == purpose]
            return rows[index] if rows and rows[index].state == state else None

        return wait_until(check, what=f"{purpose} of {number} to be {state}")


def start_workspace(make_settings: Any, fake_telegram: FakeTelegramServer) -> Iterator[Workspace]:
    """The body of each test module's `workspace` fixture (`yield from start_workspace(...)`)."""
    settings = make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        dispatch_interval_seconds=0.1,
    )
    with ServiceThread(settings) as svc:
        with unit_of_work(svc.runtime.engine) as s:
            sync_units(s, settings.config_dir / ORG_FILE)
        engine = svc.runtime.engine
        create_user(engine, "moder", "moderator", full_name="Мира Модератор")
        create_user(engine, "audit", "auditor")
        create_user(engine, "astana", "officer", UNIT_A, full_name="Асель Астанаева")
        create_user(engine, "almaty", "officer", UNIT_B)
        yield Workspace(svc, fake_telegram)
