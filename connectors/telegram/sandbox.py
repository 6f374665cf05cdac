"""Telegram's part of `adaldyk sandbox`: the fake Bot API and citizens writing to the bot in private chats."""

from __future__ import annotations

from typing import Any

from adaldyk_bots.sandbox import Citizen, ScriptedSandbox
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


class TelegramSandbox(ScriptedSandbox):
    """Entry point `telegram` of the `adaldyk.sandboxes` group."""

    def __init__(self, *, citizens: int) -> None:
        super().__init__(CITIZENS[: max(0, citizens)], first_address=FIRST_CHAT_ID)
        self.fake = FakeTelegramServer()

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

    def stop(self) -> None:
        self.fake.stop()

    def _write(self, address: int, citizen: Citizen, text: str) -> None:
        self.fake.citizen_message(
            SANDBOX_TOKEN, chat_id=address, text=text, first_name=citizen.name, language_code=citizen.language
        )

    def _sent(self) -> list[tuple[int, str]]:
        return [(m["chat_id"], m["text"]) for m in self.fake.sent_messages(SANDBOX_TOKEN)]
