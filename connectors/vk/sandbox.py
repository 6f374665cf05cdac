"""VK's part of `adaldyk sandbox`: the fake VK API with Bots Long Poll, and citizens writing to the
community in private messages."""

from __future__ import annotations

from typing import Any

from adaldyk_bots.sandbox import Citizen, CitizenScript, SandboxLine
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


class VKSandbox:
    """Entry point `vk` of the `adaldyk.sandboxes` group."""

    def __init__(self, *, citizens: int) -> None:
        self.fake = FakeVK()
        self.script = CitizenScript(CITIZENS[: max(0, citizens)])
        self._users = {FIRST_USER_ID + i: c for i, c in enumerate(self.script.citizens)}
        self._ids = {c.name: user_id for user_id, c in self._users.items()}
        self._shown = 0

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

    def citizen_writes(self) -> SandboxLine | None:
        step = self.script.next()
        if step is None:
            return None
        citizen, text = step
        self.fake.citizen_message(
            self._ids[citizen.name], text, group_id=SANDBOX_GROUP_ID, lang_id=LANG_IDS[citizen.language]
        )
        return SandboxLine(citizen.name, citizen.language, text, from_bot=False)

    def answers(self) -> list[SandboxLine]:
        sent = self.fake.sent_messages(group_id=SANDBOX_GROUP_ID)
        new, self._shown = sent[self._shown :], len(sent)
        lines = []
        for message in new:
            citizen = self._users.get(message["peer_id"])
            if citizen is not None:
                lines.append(SandboxLine(citizen.name, citizen.language, message["text"], from_bot=True))
        return lines

    def stop(self) -> None:
        self.fake.stop()
