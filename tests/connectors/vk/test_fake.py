"""The fake VK speaks VK's wire protocol: envelopes, random_id, 901, error 6, failed codes, callbacks."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from connectors.vk.fake import FakeVK
from tests.connectors.vk import GROUP_ID, TOKEN
from tests.support import free_port, wait_until


def call(
    fake: FakeVK, method: str, token: str = TOKEN, client: httpx.Client | None = None, **params: Any
) -> dict[str, Any]:
    # VK takes form-encoded POSTs (application/json is refused, dev.vk.com/en/api/api-requests).
    data = {"access_token": token, "v": "5.199", **{k: str(v) for k, v in params.items()}}
    response = (client or httpx).post(f"{fake.url}/method/{method}", data=data)
    assert response.status_code == 200  # VK answers errors with 200 and the error envelope
    body: dict[str, Any] = response.json()
    return body


def test_answers_use_the_response_and_error_envelopes(fake_vk: FakeVK) -> None:
    server = call(fake_vk, "groups.getLongPollServer", group_id=GROUP_ID)["response"]
    assert set(server) == {"key", "server", "ts"} and isinstance(server["ts"], str)
    error = call(fake_vk, "groups.getById", token="wrong")["error"]
    assert error["error_code"] == 5
    assert {"key": "method", "value": "groups.getById"} in error["request_params"]
    assert all(p["key"] != "access_token" for p in error["request_params"])
    assert call(fake_vk, "no.suchMethod")["error"]["error_code"] == 3


def test_json_bodies_are_refused_like_the_real_api(fake_vk: FakeVK) -> None:
    body = httpx.post(
        f"{fake_vk.url}/method/groups.getById", json={"access_token": TOKEN, "v": "5.199"}
    ).json()
    assert body["error"]["error_code"] == 8


def test_random_id_makes_a_repeated_send_a_no_op(fake_vk: FakeVK) -> None:
    fake_vk.citizen_message(7001, "Сәлем")
    first = call(fake_vk, "messages.send", peer_id=7001, message="Жауап", random_id=424242)["response"]
    again = call(fake_vk, "messages.send", peer_id=7001, message="Жауап", random_id=424242)["response"]
    assert first == again
    assert len(fake_vk.sent_messages(7001)) == 1
    assert len([a for a in fake_vk.send_attempts if a["peer_id"] == 7001]) == 2


def test_the_community_may_write_only_to_whoever_allowed_it(fake_vk: FakeVK) -> None:
    assert (
        call(fake_vk, "messages.send", peer_id=7002, message="x", random_id=1)["error"]["error_code"] == 901
    )
    fake_vk.citizen_wall_comment(7002, "Комментарий под постом")  # a comment grants nothing
    assert (
        call(fake_vk, "messages.send", peer_id=7002, message="x", random_id=2)["error"]["error_code"] == 901
    )
    fake_vk.set_messages_allowed(7002, True)
    assert "response" in call(fake_vk, "messages.send", peer_id=7002, message="x", random_id=3)
    fake_vk.block_community(7002)
    assert (
        call(fake_vk, "messages.send", peer_id=7002, message="x", random_id=4)["error"]["error_code"] == 900
    )


def test_too_long_and_missing_random_id_are_refused(fake_vk: FakeVK) -> None:
    fake_vk.citizen_message(7003, "Привет")
    assert (
        call(fake_vk, "messages.send", peer_id=7003, message="я" * 9001, random_id=5)["error"]["error_code"]
        == 914
    )
    assert call(fake_vk, "messages.send", peer_id=7003, message="x")["error"]["error_code"] == 100


def test_more_than_20_requests_in_a_second_get_error_6(fake_vk: FakeVK) -> None:
    # One keep-alive client: a new httpx client per call (an SSL context each) can take more than 40 ms
    # on a busy machine, and then 25 calls no longer fall within one second.
    with httpx.Client() as client:
        codes = [
            call(fake_vk, "groups.getById", client=client).get("error", {}).get("error_code")
            for _ in range(25)
        ]
    assert codes.count(6) >= 1 and codes[:20] == [None] * 20
    assert fake_vk.violations


def test_forced_errors_and_delays(fake_vk: FakeVK) -> None:
    fake_vk.citizen_message(7004, "Привет")
    fake_vk.force_error(10, times=1, peer_id=7004)
    assert call(fake_vk, "messages.send", peer_id=7004, message="x", random_id=9)["error"]["error_code"] == 10
    fake_vk.force_delay(0.5)
    started = time.monotonic()
    assert "response" in call(fake_vk, "messages.send", peer_id=7004, message="x", random_id=9)
    assert time.monotonic() - started >= 0.5
    fake_vk.force_error(14, method="messages.send")
    error = call(fake_vk, "messages.send", peer_id=7004, message="y", random_id=10)["error"]
    assert error["error_code"] == 14 and error["captcha_sid"]


def test_wall_create_comment_dedupes_on_guid(fake_vk: FakeVK) -> None:
    event = fake_vk.citizen_wall_comment(7005, "Под постом", post_id=3)
    comment_id = event["object"]["id"]
    params = {"owner_id": -GROUP_ID, "post_id": 3, "message": "Напишите нам", "reply_to_comment": comment_id}
    first = call(fake_vk, "wall.createComment", guid="g-1", **params)["response"]
    again = call(fake_vk, "wall.createComment", guid="g-1", **params)["response"]
    assert first == again and len(fake_vk.wall_comments(3, by_community=True)) == 1
    assert call(fake_vk, "wall.createComment", **{**params, "owner_id": -1})["error"]["error_code"] == 15


def _lp(fake: FakeVK, key: str, ts: Any, wait: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(
        f"{fake.url}/lp/{GROUP_ID}", params={"act": "a_check", "key": key, "ts": ts, "wait": wait}
    ).json()
    return body


def test_long_poll_numbering_and_failed_codes(fake_vk: FakeVK) -> None:
    server = call(fake_vk, "groups.getLongPollServer", group_id=GROUP_ID)["response"]
    key, ts = server["key"], server["ts"]
    fake_vk.citizen_message(7006, "Бірінші")
    fake_vk.citizen_message(7006, "Екінші")
    answer = _lp(fake_vk, key, ts)
    assert [u["object"]["message"]["text"] for u in answer["updates"]] == ["Бірінші", "Екінші"]
    assert answer["ts"] == str(int(ts) + 2)
    assert _lp(fake_vk, key, answer["ts"]) == {"ts": answer["ts"], "updates": []}
    # Asking again from the old ts gets the same events: the queue is on VK's side.
    assert len(_lp(fake_vk, key, ts)["updates"]) == 2

    fake_vk.force_failed(1)
    assert _lp(fake_vk, key, ts) == {"failed": 1, "ts": int(answer["ts"])}
    assert _lp(fake_vk, key, int(ts) - 10)["failed"] == 1  # before the kept history
    fake_vk.force_failed(2)
    assert _lp(fake_vk, key, ts) == {"failed": 2}
    assert _lp(fake_vk, key, ts) == {"failed": 2}  # that key stays dead
    key = call(fake_vk, "groups.getLongPollServer", group_id=GROUP_ID)["response"]["key"]
    fake_vk.force_failed(3)
    assert _lp(fake_vk, key, ts) == {"failed": 3}


def test_long_poll_waits_for_an_event(fake_vk: FakeVK) -> None:
    server = call(fake_vk, "groups.getLongPollServer", group_id=GROUP_ID)["response"]
    threading.Timer(0.3, lambda: fake_vk.citizen_message(7007, "Позже")).start()
    started = time.monotonic()
    answer = _lp(fake_vk, server["key"], server["ts"], wait=5)
    assert 0.2 < time.monotonic() - started < 4
    assert answer["updates"][0]["object"]["message"]["text"] == "Позже"


@pytest.fixture
def receiver() -> Any:
    """A callback receiver on loopback that answers `ok` only from the third delivery on."""
    seen: list[dict[str, Any]] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(await request.json())
        return PlainTextResponse("ok" if len(seen) >= 3 else "not yet", status_code=200)

    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/cb", endpoint, methods=["POST"])]), port=port, log_level="error"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="receiver")
    yield f"http://127.0.0.1:{port}/cb", seen
    server.should_exit = True
    thread.join(5)


def test_callback_api_delivers_until_the_answer_is_ok(fake_vk: FakeVK, receiver: Any) -> None:
    url, seen = receiver
    fake_vk.callback_retry_delay = 0.05
    fake_vk.set_callback_server(url, secret="s3cret", confirmation="abc")
    event = fake_vk.citizen_message(7008, "Через callback")
    wait_until(lambda: fake_vk.callback_pending() == 0, what="delivery")
    assert len(seen) == 3 and {e["event_id"] for e in seen} == {event["event_id"]}
    assert all(e["secret"] == "s3cret" for e in seen)


def test_control_api_over_http_for_the_sandbox(fake_vk: FakeVK) -> None:
    base = f"{fake_vk.url}/_fake/{GROUP_ID}"
    result = httpx.post(
        f"{base}/citizen_message", json={"user_id": 7009, "text": "Из песочницы", "lang_id": 97}
    )
    assert result.json()["ok"] is True
    call(fake_vk, "messages.send", peer_id=7009, message="Жауап", random_id=77)
    assert [m["text"] for m in httpx.get(f"{base}/sent", params={"peer_id": 7009}).json()] == ["Жауап"]
    assert httpx.post(f"{base}/citizen_wall_comment", json={"user_id": 7010, "text": "Пікір"}).json()["ok"]
    assert httpx.post(f"{base}/force_failed", json={"code": 2}).json()["ok"]
