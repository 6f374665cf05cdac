"""Meta's part of `adaldyk sandbox`: one fake Graph API for Facebook, Instagram and WhatsApp, its signed
webhooks pushed to the service's /webhooks/meta, and citizens writing in Kazakh and Russian (a Facebook
and an Instagram citizen write a comment first, which gets the one private reply).

Three entry points (`facebook`, `instagram`, `whatsapp`) share one fake, since the three products share
the app (its secret, the webhook) and the Graph URL: the first to start starts it, the last to stop
stops it."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from adaldyk_bots.sandbox import Citizen, ScriptedSandbox
from adaldyk_bots.settings import DEFAULT_CONFIG_DIR
from connectors.meta.connector import TEMPLATES_FILE
from connectors.meta.fake import FakeGraph
from connectors.meta.send import WhatsAppTemplates

__all__ = ["FacebookSandbox", "InstagramSandbox", "WhatsAppSandbox"]

APP_SECRET = "sandbox-meta-app-secret"  # noqa: S105 - the fake signs with it, the service checks it
VERIFY_TOKEN = "sandbox-meta-verify-token"  # noqa: S105
ACCOUNTS = {
    "facebook": ("104857600000001", "EAA-SANDBOX-page-token"),
    "instagram": ("17841400000000001", "IGQ-SANDBOX-instagram-token"),
    "whatsapp": ("106540352242922", "EAA-SANDBOX-whatsapp-token"),
}


class _SharedFake:
    """The one FakeGraph of a sandbox run, started by the first Meta channel and stopped by the last."""

    def __init__(self) -> None:
        self.fake: FakeGraph | None = None
        self.users = 0
        self.lock = threading.Lock()

    def acquire(self) -> FakeGraph:
        with self.lock:
            if self.fake is None:
                self.fake = FakeGraph(app_secret=APP_SECRET)
                self.fake.start()
                # The fake approves what the shipped config names, as WhatsApp Manager would have.
                for name in WhatsAppTemplates.load(DEFAULT_CONFIG_DIR / TEMPLATES_FILE).names():
                    self.fake.approve_template(name)
            self.users += 1
            return self.fake

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users <= 0 and self.fake is not None:
                self.fake.stop()
                self.fake = None


_SHARED = _SharedFake()


class _MetaSandbox(ScriptedSandbox):
    channel: ClassVar[str]
    citizens: ClassVar[tuple[Citizen, ...]]
    first_address: ClassVar[int]
    commenter: ClassVar[str | None] = None  # this citizen's first text is a comment under a post

    def __init__(self, *, citizens: int) -> None:
        super().__init__(self.citizens[: max(0, citizens)], first_address=self.first_address)
        self.fake: FakeGraph | None = None
        self.account, self.token = ACCOUNTS[self.channel]
        self._commented: set[str] = set()

    def start(self) -> dict[str, Any]:
        fake = self.fake = _SHARED.acquire()
        if self.channel == "facebook":
            fake.add_page(self.account, self.token)
        elif self.channel == "instagram":
            fake.add_instagram(self.account, self.token)
        else:
            fake.add_whatsapp(self.account, self.token)
        id_field, token_field = _FIELDS[self.channel]
        return {
            "meta_app_secret": APP_SECRET,
            "meta_verify_token": VERIFY_TOKEN,
            "graph_api_url": fake.api_url,
            "instagram_api_url": None,  # through the Page's Graph URL, like the default deployment
            id_field: self.account,
            token_field: self.token,
        }

    def connect(self, service_url: str) -> None:
        assert self.fake is not None
        self.fake.webhook_url = f"{service_url}/webhooks/meta"

    def stop(self) -> None:
        if self.fake is not None:
            self.fake = None
            _SHARED.release()

    def _write(self, address: int, citizen: Citizen, text: str) -> None:
        assert self.fake is not None
        if citizen.name == self.commenter and citizen.name not in self._commented:
            self._commented.add(citizen.name)
            self.fake.citizen_comment(self.account, str(address), text, name=citizen.name)
        else:
            self.fake.citizen_message(self.account, str(address), text, name=citizen.name)

    def _sent(self) -> list[tuple[int, str]]:
        if self.fake is None:
            return []
        shown = []
        for m in self.fake.sent:
            if m["channel"] != self.channel or not m["to"].isdigit():
                continue
            text = m["text"]
            if m["kind"] == "template":
                params = [p["text"] for c in m["template"].get("components", []) for p in c["parameters"]]
                text = f"[шаблон {m['template']['name']}: {', '.join(params)}]"
            elif m["kind"] == "private_reply":
                text = f"[личный ответ на комментарий] {text}"
            shown.append((int(m["to"]), text))
        return shown


_FIELDS = {
    "facebook": ("facebook_page_id", "facebook_page_token"),
    "instagram": ("instagram_account_id", "instagram_token"),
    "whatsapp": ("whatsapp_phone_number_id", "whatsapp_token"),
}


class FacebookSandbox(_MetaSandbox):
    """Entry point `facebook` of the `adaldyk.sandboxes` group: Messenger and Page comments."""

    channel = "facebook"
    first_address = 7_100_000_000
    commenter = "Гүлнар"
    citizens = (
        Citizen(
            "Гүлнар",
            "kk",
            (
                "Министрліктің постына: Балқаш көлінің жағасы қоқысқа толы.",
                "Жеке хатқа жауап: иә, Балқаш қаласының жағажайы, солтүстік бөлігі.",
            ),
        ),
        Citizen(
            "Андрей",
            "ru",
            (
                "Здравствуйте! В Караганде свалка горит третий день, дым по всему району.",
                "Это возле улицы Бухар-Жырау, за гаражами.",
            ),
        ),
        Citizen("Ерлан", "kk", ("Шымкентте өзенге ағынды су тастап жатыр, тексеріңіздер.",)),
    )


class InstagramSandbox(_MetaSandbox):
    """Entry point `instagram`: Direct messages and comments under the ministry's posts."""

    channel = "instagram"
    first_address = 7_200_000_000
    commenter = "Марина"
    citizens = (
        Citizen(
            "Марина",
            "ru",
            (
                "Под вашим постом: в Алматы снова вырубают деревья на Абая!",
                "Отвечаю в личке: это проспект Абая, угол Байтурсынова.",
            ),
        ),
        Citizen(
            "Айбек",
            "kk",
            (
                "Сәлеметсіз бе! Алакөл жағасында заңсыз құрылыс жүріп жатыр.",
                "Суреттерін кейін жіберемін.",
            ),
        ),
    )


class WhatsAppSandbox(_MetaSandbox):
    """Entry point `whatsapp`: messages to the ministry's WhatsApp number."""

    channel = "whatsapp"
    first_address = 77_010_000_000
    citizens = (
        Citizen(
            "Жанар",
            "kk",
            (
                "Сәлеметсіз бе! Ақтөбеде зауыттан шыққан түтін ауаны ластап жатыр.",
                "Әсіресе кешке қатты сезіледі.",
            ),
        ),
        Citizen("Виктор", "ru", ("Добрый день. В Костанае из крана идёт ржавая вода уже неделю.",)),
    )
