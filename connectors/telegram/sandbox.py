"""Telegram's part of `adaldyk sandbox`: the fake Bot API and citizens writing to the bot in private chats."""

from __future__ import annotations

from typing import Any

from adaldyk_bots.sandbox import Citizen, CitizenScript, SandboxLine
from connectors.telegram.fake import FakeTelegramServer

__all__ = ["TelegramSandbox"]

SANDBOX_TOKEN = "100000001:SANDBOX-not-a-real-telegram-token-000"  # noqa: S105 - the fake accepts it
FIRST_CHAT_ID = 900_000

# What citizens really write to the ministry, in Kazakh and Russian.
CITIZENS = (
    Citizen(
        "Айгүл",
        "kk",
        (
            "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр.",
            "Суреттерін кейін жіберемін, мекенжайы: Қарағанды облысы, Абай ауданы.",
        ),
    ),
    Citizen(
        "Иван",
        "ru",
        (
            "Здравствуйте! Рядом с нашим домом в Астане незаконная свалка строительного мусора.",
            "Свалка растёт каждую неделю, жители жалуются на запах.",
        ),
    ),
    Citizen("Ерлан", "kk", ("Орман шаруашылығы инспекторы ағаш кесуге рұқсат беру үшін пара сұрады.",)),
    Citizen(
        "Мария",
        "ru",
        ("Предлагаю установить датчики качества воздуха в Шымкенте у промзоны.", "/status"),
    ),
    Citizen(
        "Динара",
        "kk",
        ("Алматы қаласында көшедегі ағаштар заңсыз кесіліп жатыр, шара қолдануды сұраймын.",),
    ),
    Citizen("Сергей", "ru", ("В Павлодаре снова выбросы с ТЭЦ, чёрный дым над городом с утра.",)),
)


class TelegramSandbox:
    """Entry point `telegram` of the `adaldyk.sandboxes` group."""

    def __init__(self, *, citizens: int) -> None:
        self.fake = FakeTelegramServer()
        self.script = CitizenScript(CITIZENS[: max(0, citizens)])
        self._chats = {FIRST_CHAT_ID + i: c for i, c in enumerate(self.script.citizens)}
        self._ids = {c.name: chat_id for chat_id, c in self._chats.items()}
        self._shown = 0

    def start(self) -> dict[str, Any]:
        self.fake.start()
        self.fake.add_bot(SANDBOX_TOKEN, username="adaldyk_sandbox_bot", first_name="Адалдық алаңы")
        return {
            "telegram_token": SANDBOX_TOKEN,
            "telegram_api_url": self.fake.url,
            "telegram_mode": "polling",
            "telegram_webhook_secret": None,
            "telegram_poll_timeout": 2,  # a short long poll, so Ctrl+C stops the sandbox at once
        }

    def citizen_writes(self) -> SandboxLine | None:
        step = self.script.next()
        if step is None:
            return None
        citizen, text = step
        self.fake.citizen_message(
            SANDBOX_TOKEN,
            chat_id=self._ids[citizen.name],
            text=text,
            first_name=citizen.name,
            language_code=citizen.language,
        )
        return SandboxLine(citizen.name, citizen.language, text, from_bot=False)

    def answers(self) -> list[SandboxLine]:
        sent = self.fake.sent_messages(SANDBOX_TOKEN)
        new, self._shown = sent[self._shown :], len(sent)
        lines = []
        for message in new:
            citizen = self._chats.get(message["chat_id"])
            if citizen is not None:
                lines.append(SandboxLine(citizen.name, citizen.language, message["text"], from_bot=True))
        return lines

    def stop(self) -> None:
        self.fake.stop()
