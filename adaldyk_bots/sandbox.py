"""`adaldyk sandbox`: fake platforms on loopback, simulated citizens and a simulated moderator, and the
real service between them, so a newcomer can watch the whole flow on one machine without any token."""

from __future__ import annotations

import asyncio
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from sqlmodel import select

from adaldyk_bots.runtime import Runtime, Service
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, Appeal
from adaldyk_bots.storage.schema import ensure_schema
from adaldyk_bots.web.api import token_digest

SANDBOX_TOKEN = "100000001:SANDBOX-not-a-real-telegram-token-000"  # noqa: S105 - the fake accepts it
SANDBOX_DB = Path("var/sandbox.sqlite3")

# What citizens really write to the ministry, in Kazakh and Russian.
CITIZENS: list[dict[str, Any]] = [
    {
        "name": "Айгүл",
        "lang": "kk",
        "texts": [
            "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр.",
            "Суреттерін кейін жіберемін, мекенжайы: Қарағанды облысы, Абай ауданы.",
        ],
    },
    {
        "name": "Иван",
        "lang": "ru",
        "texts": [
            "Здравствуйте! Рядом с нашим домом в Астане незаконная свалка строительного мусора.",
            "Свалка растёт каждую неделю, жители жалуются на запах.",
        ],
    },
    {
        "name": "Ерлан",
        "lang": "kk",
        "texts": [
            "Орман шаруашылығы инспекторы ағаш кесуге рұқсат беру үшін пара сұрады.",
        ],
    },
    {
        "name": "Мария",
        "lang": "ru",
        "texts": [
            "Предлагаю установить датчики качества воздуха в Шымкенте у промзоны.",
            "/status",
        ],
    },
    {
        "name": "Динара",
        "lang": "kk",
        "texts": [
            "Алматы қаласында көшедегі ағаштар заңсыз кесіліп жатыр, шара қолдануды сұраймын.",
        ],
    },
    {
        "name": "Сергей",
        "lang": "ru",
        "texts": [
            "В Павлодаре снова выбросы с ТЭЦ, чёрный дым над городом с утра.",
        ],
    },
]


def run_sandbox(settings: Settings, *, citizens: int, duration: float) -> int:
    from connectors.telegram.fake import FakeTelegramServer

    fake = FakeTelegramServer()
    fake.start()
    fake.add_bot(SANDBOX_TOKEN, username="adaldyk_sandbox_bot", first_name="Адалдық алаңы")
    SANDBOX_DB.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SANDBOX_DB}{suffix}").unlink(missing_ok=True)
    sandbox_settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{SANDBOX_DB}",
            "telegram_token": _secret(SANDBOX_TOKEN),
            "telegram_api_url": fake.url,
            "telegram_mode": "polling",
            "telegram_poll_timeout": 2,
        }
    )
    engine = make_engine(sandbox_settings.database_url)
    ensure_schema(engine, auto_migrate=True)
    runtime = Runtime.build(sandbox_settings, engine=engine)
    api_token = "adk_sandbox_" + secrets.token_urlsafe(16)
    with unit_of_work(engine) as s:
        s.add(ApiToken(name="sandbox", token_sha256=token_digest(api_token), created_at=utcnow()))

    base = f"http://{settings.host}:{settings.port}"
    _say(f"Sandbox: fake Telegram Bot API at {fake.url}, database {SANDBOX_DB}")
    _say(f"Workspace API: {base}/api/v1/appeals  (Authorization: Bearer {api_token})")
    _say(f"Health: {base}/healthz   OpenAPI: {base}/docs\n")
    try:
        asyncio.run(_play(runtime, fake, citizens=min(citizens, len(CITIZENS)), duration=duration))
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        engine.dispose()
    return 0


async def _play(runtime: Runtime, fake: Any, *, citizens: int, duration: float) -> None:
    service = Service(runtime, web=True, worker=True)
    served = asyncio.create_task(service.run())
    people = CITIZENS[:citizens]
    rng = random.Random()
    started = time.monotonic()
    shown = 0
    next_write = 0.0
    queue = [(i, text) for i, person in enumerate(people) for text in person["texts"]]
    rng.shuffle(queue)
    moderated: set[str] = set()
    try:
        while not served.done() and (duration <= 0 or time.monotonic() - started < duration):
            now = time.monotonic() - started
            if queue and now >= next_write:
                index, text = queue.pop(0)
                person = people[index]
                fake.citizen_message(
                    SANDBOX_TOKEN,
                    chat_id=900_000 + index,
                    text=text,
                    first_name=person["name"],
                    language_code=person["lang"],
                )
                _say(f"👤 {person['name']} ({person['lang']}) → бот: {text}")
                next_write = now + rng.uniform(1.0, 2.5)
            sent = fake.sent_messages(SANDBOX_TOKEN)
            for message in sent[shown:]:
                name = people[message["chat_id"] - 900_000]["name"]
                _say(f"🤖 бот → {name}: " + message["text"].replace("\n", "\n      "))
            shown = len(sent)
            await asyncio.to_thread(_moderate, runtime, moderated)
            await asyncio.sleep(0.2)
    finally:
        service.stop()
        await served


def _moderate(runtime: Runtime, done: set[str]) -> None:
    """A simulated moderator: takes each new appeal into work, as a person would in the workspace."""
    with unit_of_work(runtime.engine) as s:
        for appeal in s.exec(select(Appeal).where(Appeal.status == "received")):
            if appeal.number in done or (utcnow() - appeal.created_at).total_seconds() < 3:
                continue
            runtime.workflow.change_status(s, appeal, "in_progress", actor="sandbox-moderator")
            done.add(appeal.number)
            _say(f"🧑‍💼 модератор: {appeal.number} → in_progress")


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def _say(line: str) -> None:
    print(line, flush=True, file=sys.stdout)
