"""Tests for the fake Telegram Bot API server, driven by httpx and by the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
import telegram
from telegram.error import BadRequest, Conflict, Forbidden, RetryAfter

from connectors.telegram.fake import FakeTelegramServer

TOKEN = "123456:ABC-def_ghi-JKL"
OTHER_TOKEN = "654321:XYZ-other"
CHAT = 777001

T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeTelegramServer]:
    server = FakeTelegramServer(webhook_retry_delay=0.05)
    server.add_bot(TOKEN)
    with server:
        yield server


@pytest.fixture
def client(fake: FakeTelegramServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, trust_env=False, timeout=10) as http:
        yield http


def api(client: httpx.Client, method: str, token: str = TOKEN, **params: Any) -> httpx.Response:
    return client.post(f"/bot{token}/{method}", json=params)


def with_bot(fake: FakeTelegramServer, body: Callable[[telegram.Bot], Coroutine[Any, Any, T]]) -> T:
    """Run `body(bot)` with a real PTB Bot pointed at the fake (PTB's initialize() calls getMe)."""

    async def main() -> T:
        bot = telegram.Bot(TOKEN, base_url=f"{fake.url}/bot", base_file_url=f"{fake.url}/file/bot")
        async with bot:
            return await body(bot)

    return asyncio.run(main())


def seconds(value: int | float | timedelta) -> float:
    # PTB 22 returns int or timedelta for retry_after depending on its PTB_TIMEDELTA setting.
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- lifecycle, routing, envelopes -------------------------------------------------------------------------


def test_start_is_fast_and_many_servers_start_and_stop() -> None:
    for _ in range(3):
        server = FakeTelegramServer()
        server.add_bot(TOKEN)
        began = time.monotonic()
        server.start()
        assert time.monotonic() - began < 0.5
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        assert httpx.get(f"{server.url}/bot{TOKEN}/getMe", trust_env=False).json()["ok"] is True
        server.stop()
    server.stop()  # stopping twice is harmless


def test_restart_keeps_port_and_state() -> None:
    server = FakeTelegramServer()
    server.add_bot(TOKEN)
    with server:
        url = server.url
        server.citizen_message(TOKEN, chat_id=CHAT, text="бір")
    with server:
        assert server.url == url
        body = httpx.post(f"{url}/bot{TOKEN}/getUpdates", trust_env=False).json()
        assert [u["message"]["text"] for u in body["result"]] == ["бір"]


def test_get_me_httpx_and_ptb(fake: FakeTelegramServer, client: httpx.Client) -> None:
    body = client.get(f"/bot{TOKEN}/getMe").json()
    assert body == {
        "ok": True,
        "result": {
            "id": 123456,
            "is_bot": True,
            "first_name": "Adaldyk",
            "username": "adaldyk_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        },
    }

    async def body_(bot: telegram.Bot) -> telegram.User:
        return await bot.get_me()

    me = with_bot(fake, body_)
    assert isinstance(me, telegram.User)
    assert (me.id, me.username, me.is_bot) == (123456, "adaldyk_test_bot", True)


def test_unknown_token_unknown_method_and_case_insensitive_methods(client: httpx.Client) -> None:
    response = api(client, "getMe", token="999:nope")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    response = api(client, "getMeNow")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert api(client, "GETME").json()["ok"] is True
    assert api(client, "getme").json()["result"]["id"] == 123456


# --- getUpdates ---------------------------------------------------------------------------------------------


def test_get_updates_offset_semantics(fake: FakeTelegramServer, client: httpx.Client) -> None:
    ids = [fake.citizen_message(TOKEN, chat_id=CHAT, text=f"m{i}") for i in range(4)]
    assert ids == sorted(ids) and ids[0] > 1000 and ids == list(range(ids[0], ids[0] + 4))

    # Without an offset nothing is confirmed: the same updates come back.
    first = api(client, "getUpdates").json()["result"]
    assert [u["update_id"] for u in first] == ids
    assert [u["update_id"] for u in api(client, "getUpdates", limit=2).json()["result"]] == ids[:2]
    assert fake.pending_count(TOKEN) == 4

    # offset = last seen + 1 confirms everything below it.
    rest = client.post(f"/bot{TOKEN}/getUpdates", data={"offset": str(ids[1] + 1)}).json()["result"]
    assert [u["update_id"] for u in rest] == ids[2:]
    assert fake.pending_count(TOKEN) == 2

    # A negative offset keeps the last -offset updates and forgets the older ones.
    newest = api(client, "getUpdates", offset=-1).json()["result"]
    assert [u["update_id"] for u in newest] == [ids[3]]
    assert fake.pending_count(TOKEN) == 1
    assert api(client, "getUpdates", offset=ids[3] + 1).json()["result"] == []
    assert fake.pending_count(TOKEN) == 0
    assert fake.get_updates_calls == 5

    message = first[0]["message"]
    assert message["chat"] == {"id": CHAT, "first_name": "Айгүл", "type": "private"}
    assert message["from"] == {"id": CHAT, "is_bot": False, "first_name": "Айгүл", "language_code": "kk"}
    assert isinstance(message["date"], int) and message["message_id"] == 1
    assert first[1]["message"]["message_id"] == 2


def test_get_updates_with_ptb_and_allowed_updates(fake: FakeTelegramServer) -> None:
    fake.citizen_message(TOKEN, chat_id=CHAT, text="салем", username="aigul", last_name="Н")

    async def body(bot: telegram.Bot) -> tuple[list[telegram.Update], list[telegram.Update]]:
        updates = await bot.get_updates(allowed_updates=["message"], timeout=0)
        fake.citizen_edit(TOKEN, chat_id=CHAT, message_id=1, text="сәлем")  # filtered: not allowed
        fake.citizen_message(TOKEN, chat_id=CHAT, text="екінші")
        later = await bot.get_updates(offset=updates[-1].update_id + 1)  # keeps the previous filter
        return list(updates), list(later)

    updates, later = with_bot(fake, body)
    assert updates[0].message is not None and updates[0].message.text == "салем"
    assert updates[0].message.from_user is not None and updates[0].message.from_user.username == "aigul"
    assert [u.message.text for u in later if u.message] == ["екінші"]
    assert all(u.edited_message is None for u in later)

    # An empty list restores the default types, so edits arrive again.
    httpx.post(f"{fake.url}/bot{TOKEN}/getUpdates", data={"allowed_updates": "[]"}, trust_env=False)
    fake.citizen_edit(TOKEN, chat_id=CHAT, message_id=1, text="түзету")
    result = httpx.post(f"{fake.url}/bot{TOKEN}/getUpdates", trust_env=False).json()["result"]
    edited = result[-1]["edited_message"]
    assert edited["text"] == "түзету" and edited["message_id"] == 1 and edited["edit_date"] >= edited["date"]


def test_long_poll_returns_early_on_inject(fake: FakeTelegramServer, client: httpx.Client) -> None:
    timer = threading.Timer(0.2, lambda: fake.citizen_message(TOKEN, chat_id=CHAT, text="кеш"))
    timer.start()
    began = time.monotonic()
    result = api(client, "getUpdates", timeout=5).json()["result"]
    elapsed = time.monotonic() - began
    timer.join()
    assert [u["message"]["text"] for u in result] == ["кеш"]
    assert 0.15 < elapsed < 1.5

    # With nothing arriving, the poll lasts about `timeout` seconds and returns an empty list.
    began = time.monotonic()
    assert api(client, "getUpdates", offset=result[0]["update_id"] + 1, timeout=0.3).json()["result"] == []
    assert 0.25 < time.monotonic() - began < 1.5


def test_second_get_updates_terminates_the_first(fake: FakeTelegramServer, client: httpx.Client) -> None:
    outcome: dict[str, httpx.Response] = {}

    def long_poll() -> None:
        with httpx.Client(base_url=fake.url, trust_env=False, timeout=10) as other:
            outcome["first"] = api(other, "getUpdates", timeout=5)

    thread = threading.Thread(target=long_poll)
    thread.start()
    deadline = time.monotonic() + 2
    while fake.get_updates_calls < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    second = api(client, "getUpdates", timeout=0)
    thread.join(timeout=3)
    assert second.json() == {"ok": True, "result": []}
    assert outcome["first"].status_code == 409
    assert outcome["first"].json() == {
        "ok": False,
        "error_code": 409,
        "description": "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
    }


def test_stop_ends_a_pending_long_poll_quickly() -> None:
    server = FakeTelegramServer()
    server.add_bot(TOKEN)
    server.start()
    results: list[int] = []

    def long_poll() -> None:
        try:
            results.append(
                httpx.post(f"{server.url}/bot{TOKEN}/getUpdates?timeout=30", trust_env=False).status_code
            )
        except httpx.HTTPError:
            results.append(-1)

    thread = threading.Thread(target=long_poll)
    thread.start()
    while server.get_updates_calls < 1:
        time.sleep(0.01)
    began = time.monotonic()
    server.stop()
    thread.join(timeout=3)
    assert time.monotonic() - began < 1.0
    assert results and results[0] in (200, -1)


# --- webhook ------------------------------------------------------------------------------------------------


class Receiver:
    """A plain http.server webhook receiver answering with scripted statuses (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    {
                        "headers": dict(self.headers),
                        "body": json.loads(body),
                        "status": status,
                        "at": time.monotonic(),
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_webhook_delivery_secret_header_order_and_retry(
    fake: FakeTelegramServer, client: httpx.Client
) -> None:
    receiver = Receiver([500, 502])
    try:
        first = fake.citizen_message(TOKEN, chat_id=CHAT, text="алдымен")  # pending before the webhook
        response = client.post(
            f"/bot{TOKEN}/setWebhook", data={"url": receiver.url, "secret_token": "s3cr-et_"}
        )
        assert response.json() == {"ok": True, "result": True, "description": "Webhook was set"}
        second = fake.citizen_message(TOKEN, chat_id=CHAT, text="кейін")

        wait_for(lambda: len(receiver.requests) >= 4 and fake.pending_count(TOKEN) == 0)
        delivered = [(r["body"]["update_id"], r["status"]) for r in receiver.requests]
        assert delivered == [(first, 500), (first, 502), (first, 200), (second, 200)]
        assert all(r["headers"]["X-Telegram-Bot-Api-Secret-Token"] == "s3cr-et_" for r in receiver.requests)
        assert receiver.requests[1]["at"] - receiver.requests[0]["at"] >= 0.04  # the retry delay was honoured
        assert receiver.requests[3]["body"]["message"]["text"] == "кейін"

        info = api(client, "getWebhookInfo").json()["result"]
        assert info["url"] == receiver.url and info["pending_update_count"] == 0
        assert info["has_custom_certificate"] is False and info["max_connections"] == 40
        assert "502" in info["last_error_message"] and isinstance(info["last_error_date"], int)

        conflict = api(client, "getUpdates")
        assert conflict.status_code == 409
        assert conflict.json()["description"] == (
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first"
        )

        async def poll(bot: telegram.Bot) -> object:
            return await bot.get_updates()

        with pytest.raises(Conflict):
            with_bot(fake, poll)

        assert api(client, "deleteWebhook").json()["result"] is True
        fake.citizen_message(TOKEN, chat_id=CHAT, text="поллингке")
        time.sleep(0.1)
        assert len(receiver.requests) == 4  # no deliveries after deleteWebhook
        assert [u["message"]["text"] for u in api(client, "getUpdates").json()["result"]] == ["поллингке"]
    finally:
        receiver.close()


def test_webhook_without_secret_and_drop_pending(fake: FakeTelegramServer, client: httpx.Client) -> None:
    receiver = Receiver([])
    try:
        fake.citizen_message(TOKEN, chat_id=CHAT, text="тасталады")
        assert api(client, "setWebhook", url=receiver.url, drop_pending_updates=True).json()["ok"] is True
        kept = fake.citizen_message(TOKEN, chat_id=CHAT, text="жетеді")
        wait_for(lambda: len(receiver.requests) == 1)
        assert receiver.requests[0]["body"]["update_id"] == kept
        assert "X-Telegram-Bot-Api-Secret-Token" not in receiver.requests[0]["headers"]
    finally:
        receiver.close()


def test_set_webhook_rejects_a_bad_secret(client: httpx.Client) -> None:
    response = api(client, "setWebhook", url="http://127.0.0.1:9/hook", secret_token="bad secret!")
    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: secret token contains unallowed characters",
    }
    assert api(client, "getWebhookInfo").json()["result"]["url"] == ""


# --- sendMessage --------------------------------------------------------------------------------------------


def test_send_message_with_ptb(fake: FakeTelegramServer) -> None:
    fake.citizen_message(TOKEN, chat_id=CHAT, text="өтініш")

    async def body(bot: telegram.Bot) -> tuple[telegram.Message, telegram.Message]:
        one = await bot.send_message(CHAT, "Өтінішіңіз қабылданды №1", reply_to_message_id=1)
        two = await bot.send_message(CHAT, "Екінші хабар")
        return one, two

    one, two = with_bot(fake, body)
    assert isinstance(one, telegram.Message)
    assert one.text == "Өтінішіңіз қабылданды №1" and one.chat.id == CHAT
    assert one.from_user is not None and one.from_user.id == 123456 and one.from_user.is_bot
    assert (one.message_id, two.message_id) == (2, 3)  # the citizen's message was 1 in this chat
    sent = fake.sent_messages(TOKEN, chat_id=CHAT)
    assert [s["text"] for s in sent] == ["Өтінішіңіз қабылданды №1", "Екінші хабар"]
    assert sent[0]["message_id"] == 2 and sent[0]["at"] <= sent[1]["at"] and sent[0]["wall"] > 1e9
    assert json.loads(sent[0]["params"]["reply_parameters"])["message_id"] == 1
    assert fake.sent_messages(OTHER_TOKEN) == [] and len(fake.sent_messages()) == 2


def test_send_message_errors_with_ptb(fake: FakeTelegramServer, client: httpx.Client) -> None:
    fake.add_chat(TOKEN, CHAT)

    async def expect(bot: telegram.Bot, chat_id: int, text: str, error: type[Exception]) -> str:
        with pytest.raises(error) as caught:
            await bot.send_message(chat_id, text)
        return str(caught.value)

    async def body(bot: telegram.Bot) -> list[str]:
        return [
            await expect(bot, 31337, "кім?", BadRequest),
            await expect(bot, CHAT, "ы" * 4097, BadRequest),
        ]

    not_found, too_long = with_bot(fake, body)
    assert "chat not found" in not_found.lower() and "too long" in too_long.lower()

    assert api(client, "sendMessage", chat_id=CHAT, text="ы" * 4096).json()["ok"] is True
    empty = api(client, "sendMessage", chat_id=CHAT, text="")
    assert empty.status_code == 400
    assert empty.json()["description"] == "Bad Request: message text is empty"

    fake.block_chat(TOKEN, CHAT)

    async def blocked(bot: telegram.Bot) -> str:
        return await expect(bot, CHAT, "сәлем", Forbidden)

    assert "blocked" in with_bot(fake, blocked)
    response = api(client, "sendMessage", chat_id=CHAT, text="сәлем")
    assert response.status_code == 403
    assert response.json() == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    fake.unblock_chat(TOKEN, CHAT)
    assert api(client, "sendMessage", chat_id=CHAT, text="сәлем").json()["ok"] is True


# PTB 22 warns that retry_after will become a timedelta; `seconds()` already copes with both.
@pytest.mark.filterwarnings("ignore:Deprecated since version v22.2")
def test_forced_429_surfaces_as_retry_after_and_is_not_a_violation(fake: FakeTelegramServer) -> None:
    fake.add_chat(TOKEN, CHAT)
    fake.force_status(
        TOKEN, CHAT, error_code=429, description="Too Many Requests: retry after 1", retry_after=1
    )
    fake.force_status(TOKEN, CHAT, error_code=500, description="Internal Server Error")

    async def body(bot: telegram.Bot) -> tuple[float, telegram.Message]:
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(CHAT, "бірінші")
        with pytest.raises(telegram.error.NetworkError):  # PTB maps a 5xx answer to NetworkError
            await bot.send_message(CHAT, "бірінші")
        await asyncio.sleep(seconds(caught.value.retry_after))
        return seconds(caught.value.retry_after), await bot.send_message(CHAT, "бірінші")

    retry_after, message = with_bot(fake, body)
    assert retry_after == 1 and message.text == "бірінші"
    assert [f["error_code"] for f in fake.forced] == [429, 500] and fake.violations == []
    attempts = [(a["ok"], a["error_code"]) for a in fake.send_attempts]
    assert attempts == [(False, 429), (False, 500), (True, None)]
    assert fake.send_attempts[2]["at"] - fake.send_attempts[0]["at"] >= 1.0


def test_rate_limit_violations_per_chat_and_per_bot(client: httpx.Client, fake: FakeTelegramServer) -> None:
    fake.add_chat(TOKEN, CHAT)
    answers = [api(client, "sendMessage", chat_id=CHAT, text=f"№{i}") for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3].json()
    assert refused == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert [(v["chat_id"], v["scope"], v["token"]) for v in fake.violations] == [(CHAT, "chat", TOKEN)] * 2
    assert len(fake.sent_messages()) == 3

    server = FakeTelegramServer(bot_burst=2, bot_rate_per_s=0.5)
    server.add_bot(TOKEN)
    with server:
        for chat in (1, 2, 3):
            server.add_chat(TOKEN, chat)
        codes = [
            httpx.post(
                f"{server.url}/bot{TOKEN}/sendMessage", data={"chat_id": str(c), "text": "x"}, trust_env=False
            )
            for c in (1, 2, 3)
        ]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert codes[2].json()["parameters"]["retry_after"] == 2
        assert [v["scope"] for v in server.violations] == ["bot"]


# --- files, other methods, request encodings, HTTP control -------------------------------------------------


def test_get_file_and_download_with_ptb(fake: FakeTelegramServer, client: httpx.Client) -> None:
    fake.add_file(TOKEN, "BQACAgIAAxkBAAIB", b"%PDF-1.7 shagym", file_path="documents/file_7.pdf")

    async def body(bot: telegram.Bot) -> tuple[telegram.File, bytearray]:
        file = await bot.get_file("BQACAgIAAxkBAAIB")
        with pytest.raises(BadRequest, match="(?i)invalid file_id"):  # PTB capitalises
            await bot.get_file("nope")
        return file, await file.download_as_bytearray()

    file, content = with_bot(fake, body)
    assert file.file_size == len(b"%PDF-1.7 shagym") and file.file_unique_id
    assert file.file_path == f"{fake.url}/file/bot{TOKEN}/documents/file_7.pdf"
    assert bytes(content) == b"%PDF-1.7 shagym"
    assert client.get(f"/file/bot{TOKEN}/documents/missing").status_code == 404

    # A citizen's photo comes with downloadable sizes.
    fake.citizen_message(TOKEN, chat_id=CHAT, photo=True, caption="шұңқыр")
    message = api(client, "getUpdates").json()["result"][-1]["message"]
    assert message["caption"] == "шұңқыр" and "text" not in message
    path = api(client, "getFile", file_id=message["photo"][-1]["file_id"]).json()["result"]["file_path"]
    assert client.get(f"/file/bot{TOKEN}/{path}").content.startswith(b"\xff\xd8")


def test_commands_and_chat_action_with_ptb(fake: FakeTelegramServer) -> None:
    fake.add_chat(TOKEN, CHAT)

    async def body(bot: telegram.Bot) -> tuple[bool, list[str], list[str]]:
        typing = await bot.send_chat_action(CHAT, "typing")
        await bot.set_my_commands([("start", "Бастау"), ("status", "Өтініш күйі")])
        commands = [c.command for c in await bot.get_my_commands()]
        await bot.delete_my_commands()
        return typing, commands, [c.command for c in await bot.get_my_commands()]

    assert with_bot(fake, body) == (True, ["start", "status"], [])


def test_form_multipart_and_get_query_encodings(fake: FakeTelegramServer, client: httpx.Client) -> None:
    fake.add_chat(TOKEN, CHAT)
    form = client.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": str(CHAT), "text": "форма"})
    multipart = client.post(
        f"/bot{TOKEN}/sendMessage",
        data={"chat_id": str(CHAT), "text": "мультипарт"},
        files={"document": ("a.txt", b"\x00\x01bytes\r\n", "text/plain")},
    )
    query = client.get(f"/bot{TOKEN}/sendMessage", params={"chat_id": CHAT, "text": "сұраныс"})
    assert [r.json()["result"]["text"] for r in (form, multipart, query)] == [
        "форма",
        "мультипарт",
        "сұраныс",
    ]
    bad_json = client.post(
        f"/bot{TOKEN}/sendMessage", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["ok"] is False


def test_inject_update_and_http_control_api(fake: FakeTelegramServer, client: httpx.Client) -> None:
    group = {"id": -100123, "type": "supergroup", "title": "Әкімдік"}
    fixed = fake.inject_update(
        TOKEN, {"update_id": 500_000_000, "message": {"message_id": 9, "date": 1, "chat": group}}
    )
    assert fixed == 500_000_000
    # Automatic ids continue after the highest id seen; the group chat now counts as seen.
    assert fake.inject_update(TOKEN, {"callback_query": {"id": "1", "data": "x"}}) == 500_000_001
    assert api(client, "sendMessage", chat_id=-100123, text="топқа").json()["result"]["message_id"] == 10

    response = client.post(
        f"/_fake/{TOKEN}/citizen_message", json={"chat_id": 5, "text": "демо", "first_name": "Ерлан"}
    )
    assert response.json()["update_id"] == 500_000_002
    assert client.post(f"/_fake/{TOKEN}/citizen_message", json={"chat": 5}).status_code == 400
    assert api(client, "sendMessage", chat_id=5, text="жауап").json()["ok"] is True
    sent = client.get(f"/_fake/{TOKEN}/sent").json()
    assert [(s["chat_id"], s["text"]) for s in sent] == [(-100123, "топқа"), (5, "жауап")]
    assert client.post(f"/_fake/{TOKEN}/block", json={"chat_id": 5}).json() == {"ok": True}
    assert api(client, "sendMessage", chat_id=5, text="жауап").status_code == 403
    assert client.get(f"/_fake/{OTHER_TOKEN}/sent").status_code == 404
