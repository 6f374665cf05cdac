"""The send requests per product and target kind (paths under the versioned URL, form fields), as Meta's
references give them (sources in connectors/meta/send.py)."""

from __future__ import annotations

import pytest

from adaldyk_bots.domain import ReplyTarget, WindowDecision
from connectors.meta.graph import GraphClient
from connectors.meta.send import MetaSender


def _sender(channel: str, account: str, *, instagram_login: bool = False) -> MetaSender:
    client = GraphClient(api_url="http://127.0.0.1:9/v23.0")  # never called here
    return MetaSender(
        channel=channel, account=account, token="t", client=client, instagram_login=instagram_login
    )


def test_messenger_message_with_and_without_tag() -> None:
    sender = _sender("facebook", "104")
    target = ReplyTarget("facebook", "104", "psid-1", window=WindowDecision.open("RESPONSE"))
    path, data, private = sender.request(target, "Сәлем", idempotency_key="ack:1")
    assert path == "104/messages" and private is None
    assert data == {
        "recipient": {"id": "psid-1"},
        "message": {"text": "Сәлем", "metadata": "ack:1"},
        "messaging_type": "RESPONSE",
    }
    tagged = ReplyTarget("facebook", "104", "psid-1", window=WindowDecision.open("HUMAN_AGENT"))
    _, data, _ = sender.request(tagged, "Жауап", idempotency_key="reply:9")
    assert (data["messaging_type"], data["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


@pytest.mark.parametrize(("login", "path"), [(False, "me/messages"), (True, "178/messages")])
def test_instagram_through_the_page_or_instagram_login(login: bool, path: str) -> None:
    sender = _sender("instagram", "178", instagram_login=login)
    target = ReplyTarget("instagram", "178", "igsid-1", window=WindowDecision.open("RESPONSE"))
    got, data, _ = sender.request(target, "Hi", idempotency_key="ack:2")
    assert got == path
    assert data["recipient"] == {"id": "igsid-1"} and data["message"] == {"text": "Hi"}  # no metadata on IG


@pytest.mark.parametrize(("channel", "edge"), [("facebook", "comments"), ("instagram", "replies")])
def test_private_and_public_replies_to_a_comment(channel: str, edge: str) -> None:
    sender = _sender(channel, "104")
    private = ReplyTarget(channel, "104", "555_777", reply_to_key="555_777", kind="comment")
    path, data, comment = sender.request(private, "Тіркелді", idempotency_key="ack:3")
    assert path == ("104/messages" if channel == "facebook" else "me/messages")
    assert data["recipient"] == {"comment_id": "555_777"} and "messaging_type" not in data
    assert comment == "555_777"
    public = ReplyTarget(channel, "104", "555_777", reply_to_key="555_777", kind="public_comment")
    assert sender.request(public, "Жазыңыз", idempotency_key="invite:3") == (
        f"555_777/{edge}",
        {"message": "Жазыңыз"},
        None,
    )


def test_whatsapp_text_and_template() -> None:
    sender = _sender("whatsapp", "1065")
    text = ReplyTarget("whatsapp", "1065", "77011234567", window=WindowDecision.open())
    path, data, _ = sender.request(text, "Сәлем", idempotency_key="ack:4")
    assert path == "1065/messages"
    assert data == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "77011234567",
        "biz_opaque_callback_data": "ack:4",
        "type": "text",
        "text": {"body": "Сәлем", "preview_url": False},
    }
    window = WindowDecision(
        "template", template="adaldyk_status_changed", template_language="kk", params=("ADL-1", "қаралуда")
    )
    _, data, _ = sender.request(
        ReplyTarget("whatsapp", "1065", "77011234567", window=window), "ignored", idempotency_key="status:5"
    )
    assert data["type"] == "template" and "text" not in data
    assert data["template"] == {
        "name": "adaldyk_status_changed",
        "language": {"code": "kk"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "ADL-1"}, {"type": "text", "text": "қаралуда"}],
            }
        ],
    }
