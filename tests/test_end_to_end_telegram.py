"""End to end over loopback: citizens write to the fake Telegram, the real service answers them."""

from __future__ import annotations

import re

import httpx
from sqlmodel import Session, select

from adaldyk_bots.storage.models import Appeal
from tests.conftest import TOKEN
from tests.support import ServiceThread, assert_signal_ack, create_api_token, free_port, wait_until

NUMBER = re.compile(r"ADL-\d{4}-\d{6}")
KK_TEXT = "Сәлеметсіз бе! Біздің ауылдың жанындағы өзенге зауыт қалдықтарын төгіп жатыр."
RU_TEXT = "Здравствуйте! Рядом с нашим домом незаконная свалка мусора, прошу принять меры."


def _texts(fake, chat_id: int) -> list[str]:
    return [m["text"] for m in fake.sent_messages(TOKEN, chat_id)]


def test_polling_two_citizens_get_acknowledgements_status_and_reply(make_settings, fake_telegram):
    settings = make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        dispatch_interval_seconds=0.1,
    )
    token = create_api_token(settings)
    with ServiceThread(settings) as svc:
        fake_telegram.citizen_message(
            TOKEN, chat_id=1001, text=KK_TEXT, first_name="Айгүл", language_code="kk"
        )
        fake_telegram.citizen_message(
            TOKEN, chat_id=1002, text=RU_TEXT, first_name="Иван", language_code="ru"
        )

        kk_ack = wait_until(lambda: _texts(fake_telegram, 1001), what="the Kazakh acknowledgement")[0]
        ru_ack = wait_until(lambda: _texts(fake_telegram, 1002), what="the Russian acknowledgement")[0]
        kk_number, ru_number = NUMBER.search(kk_ack).group(0), NUMBER.search(ru_ack).group(0)
        assert kk_number != ru_number
        # A messenger's message is a signal (R13): received under its number, in the citizen's language,
        # a moderator to review it, /status to follow it; neither "registered" nor a due date.
        assert_signal_ack(kk_ack, "kk", number=kk_number)
        assert_signal_ack(ru_ack, "ru", number=ru_number)

        with Session(svc.runtime.engine) as s:
            appeals = {a.number: a for a in s.exec(select(Appeal))}
        assert set(appeals) == {kk_number, ru_number}
        assert appeals[kk_number].language == "kk" and appeals[ru_number].language == "ru"
        for appeal in appeals.values():
            assert (appeal.status, appeal.formal) == ("received", False)
            due = appeal.due_at.astimezone(svc.runtime.workflow.calendar.tz).strftime("%d.%m.%Y")
            assert due not in kk_ack + ru_ack

        api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
        listing = api.get("/appeals", params={"status": "received"}).json()
        assert listing["total"] == 2

        changed = api.post(f"/appeals/{ru_number}/status", json={"status": "in_progress"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["appeal"]["status"] == "in_progress"
        wait_until(lambda: len(_texts(fake_telegram, 1002)) >= 2, what="the status message")
        assert "на рассмотрении" in _texts(fake_telegram, 1002)[1]

        replied = api.post(
            f"/appeals/{kk_number}/reply",
            json={"text": "Инспекторлар тексеру жүргізді, айыппұл салынды.", "status": "answered"},
        )
        assert replied.status_code == 200, replied.text
        wait_until(
            lambda: len(_texts(fake_telegram, 1001)) >= 4, what="the reply, the answer notice, the question"
        )
        kk_texts = _texts(fake_telegram, 1001)
        assert any("Инспекторлар тексеру жүргізді" in t and kk_number in t for t in kk_texts)
        assert any("жауап берілді" in t for t in kk_texts)

        # The fake has the last message before our row says so: wait for every delivery to be recorded.
        detail = wait_until(
            lambda: (
                (d := api.get(f"/appeals/{kk_number}").json())
                and all(x["state"] == "sent" for x in d["deliveries"])
                and d
            ),
            what="every delivery recorded as sent",
        )
        assert detail["status"] == "answered"
        assert [m["text"] for m in detail["messages"] if m["direction"] == "in"] == [KK_TEXT]
        # The step to "answered" owes the answer notice (notices.py) and the "was it solved?" question.
        assert {d["purpose"]: d["state"] for d in detail["deliveries"]} == {
            "ack": "sent",
            "reply": "sent",
            "answer": "sent",
            "feedback": "sent",
        }
        assert [e["kind"] for e in detail["history"]] == ["created", "reply", "status"]

        # After the answer, a new message opens a new appeal.
        fake_telegram.citizen_message(TOKEN, chat_id=1001, text="Тағы бір мәселе: ағаштарды кесіп жатыр.")
        wait_until(lambda: len(_texts(fake_telegram, 1001)) >= 5, what="the second acknowledgement")
        second = NUMBER.search(_texts(fake_telegram, 1001)[4]).group(0)
        assert second not in (kk_number, ru_number)


def test_follow_up_joins_open_appeal_and_status_command(make_settings, fake_telegram):
    settings = make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        dispatch_interval_seconds=0.1,
    )
    with ServiceThread(settings) as svc:
        fake_telegram.citizen_message(TOKEN, chat_id=2001, text=RU_TEXT, language_code="ru")
        ack = wait_until(lambda: _texts(fake_telegram, 2001), what="ack")[0]
        number = NUMBER.search(ack).group(0)
        fake_telegram.citizen_message(TOKEN, chat_id=2001, text="Вот ещё фото и адрес: ул. Абая 10.")
        fake_telegram.citizen_message(TOKEN, chat_id=2001, text="/status")
        wait_until(lambda: len(_texts(fake_telegram, 2001)) >= 2, what="status answer")
        # The look-up of a signal gives its number, date and status, and no legal term (none runs yet).
        looked_up = _texts(fake_telegram, 2001)[1]
        assert f"Ваше сообщение {number} от" in looked_up and "Срок ответа" not in looked_up
        fake_telegram.citizen_message(TOKEN, chat_id=2001, text=number)
        wait_until(lambda: len(_texts(fake_telegram, 2001)) >= 3, what="number look-up answer")
        assert "принято, ожидает рассмотрения" in _texts(fake_telegram, 2001)[2]

        with Session(svc.runtime.engine) as s:
            appeals = s.exec(select(Appeal)).all()
        assert [a.number for a in appeals] == [number]  # the follow-up joined; commands opened nothing


def test_moderator_fetches_a_citizens_photo_through_the_api(make_settings, fake_telegram, tmp_path):
    settings = make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        files_dir=tmp_path / "files",
    )
    token = create_api_token(settings)
    with ServiceThread(settings) as svc:
        fake_telegram.citizen_message(TOKEN, chat_id=4001, caption="Свалка у реки, фото", photo=True)
        ack = wait_until(lambda: _texts(fake_telegram, 4001), what="ack")[0]
        number = NUMBER.search(ack).group(0)
        api = httpx.Client(base_url=f"{svc.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
        message = api.get(f"/appeals/{number}").json()["messages"][0]
        assert message["text"] == "Свалка у реки, фото"
        assert message["attachments"][0]["kind"] == "photo"
        photo = api.get(f"/appeals/{number}/messages/{message['id']}/attachments/0")
        assert photo.status_code == 200
        assert photo.content.startswith(b"\xff\xd8")  # a JPEG, as the platform stored it
        assert list((tmp_path / "files" / "telegram").iterdir())  # kept locally for next time
        missing = api.get(f"/appeals/{number}/messages/{message['id']}/attachments/5")
        assert missing.status_code == 404
        assert api.get("/appeals", headers={"Authorization": "Bearer wrong"}).status_code == 401
