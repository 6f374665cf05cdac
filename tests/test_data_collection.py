"""The R12 dialogue end to end (data_collection.py): citizens write to the fake Telegram (and the fake VK),
a moderator triages their signal as formal through the JSON API, and the real service asks them — in
Kazakh and in Russian — for consent, full name, IIN and postal address, refusing a wrong check digit with
its words, until the formal appeal is registered and its number reaches them. The last answer delivered
twice makes one formal appeal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, func, select

from adaldyk_bots.storage.models import Appeal, Conversation, DataRequest, Message, OutboxItem, RawEvent
from connectors.telegram.fake import FakeTelegramServer
from connectors.vk.fake import FakeVK
from tests.conftest import TOKEN
from tests.connectors.vk import GROUP_ID, vk_settings, wait_for_long_poll
from tests.connectors.vk import TOKEN as VK_TOKEN
from tests.support import ServiceThread, create_api_token, free_port, wait_processed, wait_until

NUMBER = re.compile(r"ADL-\d{4}-\d{6}")
VALID_IIN = "851231400567"  # check digit 7
WRONG_CHECK_DIGIT = "851231400568"
SECRET = "webhook-secret_0123456789"


class Citizen:
    """One citizen's chat with the bot on the fake Telegram: send a message, wait for the bot's answer."""

    def __init__(self, fake: FakeTelegramServer, chat_id: int, language_code: str) -> None:
        self.fake, self.chat_id, self.language_code = fake, chat_id, language_code

    def texts(self) -> list[str]:
        return [m["text"] for m in self.fake.sent_messages(TOKEN, self.chat_id)]

    def says(self, text: str) -> str:
        """Send `text`; the bot's one answer to it."""
        before = len(self.texts())
        self.fake.citizen_message(TOKEN, chat_id=self.chat_id, text=text, language_code=self.language_code)
        return wait_until(
            lambda: self.texts()[before] if len(self.texts()) > before else None,
            what=f"the bot's answer to {text!r} in chat {self.chat_id}",
        )

    def bot_says(self) -> str:
        """The bot's next message without a message of the citizen's (after a moderator's action)."""
        before = len(self.texts())
        return wait_until(
            lambda: self.texts()[before] if len(self.texts()) > before else None,
            what=f"a message of the bot in chat {self.chat_id}",
        )


def _settings(make_settings: Any, fake: FakeTelegramServer, **extra: Any) -> Any:
    return make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake.url,
        telegram_poll_timeout=1,
        port=extra.pop("port", free_port()),
        dispatch_interval_seconds=0.1,
        **extra,
    )


def _triage_formal(svc: ServiceThread, token: str, number: str) -> None:
    api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
    answer = api.post(
        f"/appeals/{number}/triage", json={"decision": "formal", "reason": "просит рассмотреть"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["collecting"] is True


def _formal_of(engine: Any, number: str) -> list[Appeal]:
    with Session(engine) as s:
        signal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        return list(s.exec(select(Appeal).where(Appeal.signal_id == signal.id)))


def _signal_thread(engine: Any, number: str) -> list[str]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(Message.text)
                .join(Appeal, col(Appeal.id) == Message.appeal_id)
                .where(Appeal.number == number, Message.direction == "in")
                .order_by(col(Message.id))
            )
        )


def test_the_dialogue_in_kazakh_and_in_russian(make_settings: Any, fake_telegram: FakeTelegramServer) -> None:
    settings = _settings(make_settings, fake_telegram)
    token = create_api_token(settings)
    kk = Citizen(fake_telegram, 5101, "kk")
    ru = Citizen(fake_telegram, 5102, "ru")
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        kk_ack = kk.says("Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр.")
        ru_ack = ru.says("Здравствуйте! У озера Балхаш незаконная свалка, прошу разобраться официально.")
        kk_signal, ru_signal = NUMBER.search(kk_ack).group(0), NUMBER.search(ru_ack).group(0)

        _triage_formal(svc, token, kk_signal)
        intro = kk.bot_says()
        assert (
            kk_signal in intro
            and "ресми өтініш" in intro
            and "№ 94-V" in intro
            and "«иә» немесе «жоқ»" in intro
        )
        _triage_formal(svc, token, ru_signal)
        intro = ru.bot_says()
        assert ru_signal in intro and "официальное обращение" in intro and "«да» или «нет»" in intro

        # Kazakh: an unclear answer, consent, a name too short, the name, a wrong check digit, the IIN, the
        # address; each answer refused with its own words until it is right.
        assert "«иә» немесе «жоқ» деп жауап беріңізші" in kk.says("Мүмкін")
        assert "Тегіңізді, атыңызды" in kk.says("Иә")
        assert "Кемінде тегіңіз бен атыңызды" in kk.says("Айгерім")
        assert "ЖСН-іңіз" in kk.says("Сейтқали Айгерім Нұрланқызы")
        assert "ЖСН-нің соңғы, бақылау цифры қалғандарына сәйкес келмейді" in kk.says(WRONG_CHECK_DIGIT)
        assert "ЖСН-де дәл 12 цифр болады, ал мұнда 11" in kk.says(VALID_IIN[:-1])
        assert "Пошталық мекенжайыңыз" in kk.says(VALID_IIN)
        assert "Пошталық мекенжай үшін бұл жеткіліксіз" in kk.says("Қарағанды")
        registered = kk.says("Қарағанды облысы, Теміртау қ., Республика даңғылы, 12-үй, 5-пәтер")

        # Russian, the same road with its own words.
        assert "Напишите, пожалуйста, фамилию, имя и отчество" in ru.says("да")
        assert "Имя пишется только буквами" in ru.says("Иванов Иван 1985")
        assert "Ваш ИИН" in ru.says("Иванов Иван Петрович")
        assert "контрольная цифра ИИН не сходится с остальными" in ru.says(WRONG_CHECK_DIGIT)
        assert "ИИН состоит только из цифр" in ru.says("85123140056X")
        assert "Ваш почтовый адрес" in ru.says("851 231 400 567")
        ru_registered = ru.says("г. Балхаш, ул. Ленина, д. 10, кв. 4")

        for signal, text, words, name in (
            (kk_signal, registered, "Сіздің өтінішіңіз тіркелді", "Сейтқали Айгерім Нұрланқызы"),
            (ru_signal, ru_registered, "Ваше обращение зарегистрировано", "Иванов Иван Петрович"),
        ):
            [formal] = _formal_of(engine, signal)
            assert words in text and formal.number in text and formal.number != signal
            assert formal.formal and formal.status == "registered"
            assert (formal.applicant_name, formal.applicant_iin) == (name, VALID_IIN)
            assert formal.consent_at is not None and formal.applicant_address
            with Session(engine) as s:
                closed = s.exec(select(Appeal).where(Appeal.number == signal)).one()
                request = s.exec(select(DataRequest).where(DataRequest.appeal_id == closed.id)).one()
                conversation = s.get(Conversation, closed.conversation_id)
            assert (closed.status, closed.triage) == ("closed", "formal")
            assert request.finished_at is not None and request.formal_appeal_id == formal.id
            assert request.answers == {}  # the data live in the appeal only
            assert conversation is not None and not conversation.collecting
        # Every answer is an inbound message of the signal, exactly as written (invariant 5).
        kk_thread = _signal_thread(engine, kk_signal)
        assert kk_thread[1:] == [
            "Мүмкін", "Иә", "Айгерім", "Сейтқали Айгерім Нұрланқызы", WRONG_CHECK_DIGIT, VALID_IIN[:-1],
            VALID_IIN, "Қарағанды", "Қарағанды облысы, Теміртау қ., Республика даңғылы, 12-үй, 5-пәтер",
        ]  # fmt: skip
        assert _signal_thread(engine, ru_signal)[-1] == "г. Балхаш, ул. Ленина, д. 10, кв. 4"

        # After the dialogue the chat is an ordinary one: a new message joins the formal appeal.
        [formal] = _formal_of(engine, ru_signal)
        fake_telegram.citizen_message(TOKEN, chat_id=5102, text="Прилагаю фото свалки.", language_code="ru")
        wait_until(lambda: "Прилагаю фото свалки." in _thread_of(engine, formal.number), what="the follow-up")


def _thread_of(engine: Any, number: str) -> list[str]:
    return _signal_thread(engine, number)


def test_decline_and_cancel_leave_a_signal(make_settings: Any, fake_telegram: FakeTelegramServer) -> None:
    settings = _settings(make_settings, fake_telegram)
    token = create_api_token(settings)
    declines = Citizen(fake_telegram, 5201, "ru")
    cancels = Citizen(fake_telegram, 5202, "kk")
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        first = NUMBER.search(declines.says("Жалоба на выбросы ТЭЦ по ночам.")).group(0)
        second = NUMBER.search(cancels.says("Орманда ағаш кесіп жатыр, шара қолданыңыздар.")).group(0)
        _triage_formal(svc, token, first)
        declines.bot_says()
        assert "Без вашего согласия мы не можем зарегистрировать" in declines.says("Нет")
        _triage_formal(svc, token, second)
        cancels.bot_says()
        assert "Тегіңізді" in cancels.says("иә")
        assert "Деректер жинау тоқтатылды" in cancels.says("бас тарту")
        with Session(engine) as s:
            for number, reason in ((first, "declined"), (second, "citizen")):
                signal = s.exec(select(Appeal).where(Appeal.number == number)).one()
                request = s.exec(select(DataRequest).where(DataRequest.appeal_id == signal.id)).one()
                assert (signal.status, signal.triage, signal.formal) == ("received", None, False)
                assert request.cancel_reason == reason and request.answers == {}
                assert s.exec(select(Appeal).where(Appeal.signal_id == signal.id)).first() is None
        # Not collecting any more: the next message is an ordinary follow-up of the signal, unanswered.
        told = len(declines.texts())
        fake_telegram.citizen_message(TOKEN, chat_id=5201, text="Иванов Иван Иванович", language_code="ru")
        wait_until(lambda: "Иванов Иван Иванович" in _signal_thread(engine, first), what="the follow-up")
        wait_processed(engine)
        with Session(engine) as s:
            owed = s.exec(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.chat_id == "5201")
            ).one()
        assert owed == told  # the acknowledgement, the intro and the answer to "Нет": nothing new


def _update(update_id: int, message_id: int, chat_id: int, text: str) -> dict[str, Any]:
    user = {"id": chat_id, "is_bot": False, "first_name": "Дана", "language_code": "ru"}
    chat = {"id": chat_id, "first_name": "Дана", "type": "private"}
    message = {"message_id": message_id, "from": user, "chat": chat, "date": int(time.time()), "text": text}
    return {"update_id": update_id, "message": message}


def test_the_last_answer_delivered_twice_makes_one_formal_appeal(
    make_settings: Any, fake_telegram: FakeTelegramServer
) -> None:
    port = free_port()
    settings = _settings(
        make_settings,
        fake_telegram,
        port=port,
        telegram_mode="webhook",
        telegram_webhook_secret=SECRET,
        public_url=f"http://127.0.0.1:{port}",
    )
    token = create_api_token(settings)
    citizen = Citizen(fake_telegram, 5301, "ru")
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        wait_until(lambda: fake_telegram.webhook_info(TOKEN)["url"], what="setWebhook")
        signal = NUMBER.search(citizen.says("Прошу официально рассмотреть загрязнение реки Или.")).group(0)
        _triage_formal(svc, token, signal)
        citizen.bot_says()
        citizen.says("да")
        citizen.says("Ахметова Дана Серикқызы")
        assert "почтовый адрес" in citizen.says(VALID_IIN)

        last = _update(880001, 880, 5301, "г. Алматы, пр. Абая, д. 1, кв. 1")
        before = len(citizen.texts())
        fake_telegram.inject_update(TOKEN, last)
        registered = citizen.bot_says()
        # Telegram delivers it again (no 2xx seen, say), and once more under a new update id.
        fake_telegram.inject_update(TOKEN, last)
        fake_telegram.inject_update(TOKEN, {**last, "update_id": 880002})
        wait_until(
            lambda: (
                sum(1 for d in fake_telegram.webhook_deliveries if d["update_id"] in (880001, 880002)) >= 3
                and fake_telegram.pending_count(TOKEN) == 0
            ),
            what="the three deliveries",
        )
        wait_processed(engine)
        time.sleep(0.5)  # a second registration notice, if one were owed, would be on its way by now

        [formal] = _formal_of(engine, signal)
        assert formal.number in registered and "Ваше обращение зарегистрировано" in registered
        assert len(citizen.texts()) == before + 1
        with Session(engine) as s:
            registrations = s.exec(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.purpose == "registration")
            ).one()
            addresses = s.exec(
                select(func.count())
                .select_from(Message)
                .where(Message.direction == "in", Message.text == last["message"]["text"])
            ).one()
            states = set(s.exec(select(RawEvent.state)))
        assert registrations == 1 and addresses == 1
        assert states <= {"processed", "ignored"}  # nothing broke on the repeats


@pytest.fixture
def fake_vk() -> Iterator[FakeVK]:
    server = FakeVK()  # as tests/connectors/vk/conftest.py makes it
    server.start()
    server.add_group(GROUP_ID, VK_TOKEN)
    try:
        yield server
    finally:
        server.stop()


def test_the_dialogue_on_vk(make_settings: Any, fake_vk: FakeVK) -> None:
    with ServiceThread(vk_settings(make_settings, fake_vk, port=free_port())) as svc:
        wait_for_long_poll(svc)
        token = create_api_token(svc.settings)
        engine = svc.runtime.engine

        def texts() -> list[str]:
            return [m["text"] for m in fake_vk.sent_messages(8101)]

        def says(text: str | None) -> str:
            before = len(texts())
            if text is not None:
                fake_vk.citizen_message(8101, text, lang_id=0)
            return wait_until(
                lambda: texts()[before] if len(texts()) > before else None, what=f"answer to {text}"
            )

        signal = NUMBER.search(says("Здравствуйте, в парке рубят деревья, прошу проверить.")).group(0)
        _triage_formal(svc, token, signal)
        assert "официальное обращение" in says(None)
        says("Да")
        says("Петров Пётр Петрович")
        assert "контрольная цифра ИИН не сходится" in says(WRONG_CHECK_DIGIT)
        says(VALID_IIN)
        registered = says("г. Астана, ул. Кенесары, д. 40, кв. 2")
        [formal] = _formal_of(engine, signal)
        assert formal.number in registered and formal.channel == "vk"


def test_a_signal_moved_on_by_staff_stops_the_dialogue(
    make_settings: Any, fake_telegram: FakeTelegramServer
) -> None:
    settings = _settings(make_settings, fake_telegram)
    token = create_api_token(settings)
    citizen = Citizen(fake_telegram, 5401, "ru")
    with ServiceThread(settings) as svc:
        engine = svc.runtime.engine
        signal = NUMBER.search(citizen.says("Прошу проверить карьер у реки Тобол.")).group(0)
        _triage_formal(svc, token, signal)
        citizen.bot_says()
        api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
        assert api.post(f"/appeals/{signal}/status", json={"status": "in_progress"}).status_code == 200
        citizen.bot_says()  # the status notice
        fake_telegram.citizen_message(TOKEN, chat_id=5401, text="да", language_code="ru")
        wait_until(lambda: "да" in _signal_thread(engine, signal), what="the answer stored on the signal")
        with Session(engine) as s:
            appeal = s.exec(select(Appeal).where(Appeal.number == signal)).one()
            request = s.exec(select(DataRequest).where(DataRequest.appeal_id == appeal.id)).one()
            conversation = s.get(Conversation, appeal.conversation_id)
        assert request.cancel_reason == "staff" and conversation is not None and not conversation.collecting
        assert _formal_of(engine, signal) == []
