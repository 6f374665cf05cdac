"""VK's part of `adaldyk sandbox`: the fake VK API with Bots Long Poll, and citizens writing to the
community in private messages."""

from __future__ import annotations

from typing import Any

from adaldyk_bots.sandbox import Citizen, ScriptedSandbox
from connectors.vk.fake import FakeVK

__all__ = ["VKSandbox"]

SANDBOX_GROUP_ID = 200_000_001
SANDBOX_TOKEN = "vk1.a.SANDBOX-not-a-real-community-token"  # noqa: S105 - the fake accepts it
FIRST_USER_ID = 700_000
# client_info.lang_id as VK numbers it (connectors/vk/parser.py): the text decides the language anyway.
LANG_IDS = {"ru": 0, "kk": 97}

# VK's audience in Kazakhstan writes mostly in Russian; Kazakh too.
CITIZENS = (
    Citizen(
        "Асель",
        "kk",
        (
            "Сәлеметсіз бе! Ертіс өзенінің жағасында балық өліп жатыр, су лайланған.",
            "Бұл Павлодар облысы, Ақсу қаласының маңында.",
        ),
    ),
    Citizen(
        "Дмитрий",
        "ru",
        (
            "Добрый день! В Усть-Каменогорске опять смог, дышать невозможно, проверьте выбросы завода.",
            "Особенно сильно по ночам, с 23:00 до 5 утра.",
        ),
    ),
    Citizen("Нұрлан", "kk", ("Қостанай облысында қорықта заңсыз аң аулап жүр, шара қолданыңыздар.",)),
    Citizen("Ольга", "ru", ("Прошу проверить вырубку сосен в Бурабае возле озера Щучье.",)),
)


class VKSandbox(ScriptedSandbox):
    """Entry point `vk` of the `adaldyk.sandboxes` group."""

    def __init__(self, *, citizens: int) -> None:
        super().__init__(CITIZENS[: max(0, citizens)], first_address=FIRST_USER_ID)
        self.fake = FakeVK()

    def start(self) -> dict[str, Any]:
        self.fake.start()
        self.fake.add_group(SANDBOX_GROUP_ID, SANDBOX_TOKEN)
        return {
            "vk_token": SANDBOX_TOKEN,
            "vk_group_id": SANDBOX_GROUP_ID,
            "vk_api_url": self.fake.url,
            "vk_mode": "longpoll",
            "vk_confirmation": None,
            "vk_secret": None,
            "vk_longpoll_wait": 2,  # a short long poll, so Ctrl+C stops the sandbox at once
        }

    def stop(self) -> None:
        self.fake.stop()

    def _write(self, address: int, citizen: Citizen, text: str) -> None:
        self.fake.citizen_message(
            address, text, group_id=SANDBOX_GROUP_ID, lang_id=LANG_IDS[citizen.language]
        )

    def _sent(self) -> list[tuple[int, str]]:
        return [(m["peer_id"], m["text"]) for m in self.fake.sent_messages(group_id=SANDBOX_GROUP_ID)]
