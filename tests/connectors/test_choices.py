"""Choices (domain.Choice: "was it solved?") in each connector: how a send carries them, as each platform's
reference shapes them, and how a press comes back as InboundMessage.choice. Payloads from the official
documentation (sources next to each), with our ids filled in."""

from __future__ import annotations

import json

from adaldyk_bots.domain import Choice, InboundMessage, ReplyTarget, WindowDecision, choices_as_text
from connectors.meta.graph import GraphClient
from connectors.meta.parser import parse_item_payload, split_body
from connectors.meta.send import MetaSender
from connectors.telegram.connector import _keyboard
from connectors.telegram.parser import parse_update
from connectors.vk.connector import keyboard_json
from connectors.vk.parser import parse_event_payload
from tests.connectors.meta.test_parser import fixture

CHOICES = (Choice("feedback:42:yes", "Да, решена"), Choice("feedback:42:no", "Нет, не решена"))


def _meta(channel: str, account: str) -> MetaSender:
    return MetaSender(
        channel=channel, account=account, token="t", client=GraphClient(api_url="http://127.0.0.1:9/v23.0")
    )


def test_telegram_inline_keyboard_and_its_callback_query() -> None:
    # core.telegram.org/bots/api#inlinekeyboardmarkup: rows of InlineKeyboardButton(text, callback_data).
    markup = _keyboard(ReplyTarget("telegram", "1", "1001", choices=CHOICES))
    assert markup is not None
    assert markup.to_dict() == {
        "inline_keyboard": [
            [{"text": "Да, решена", "callback_data": "feedback:42:yes"}],
            [{"text": "Нет, не решена", "callback_data": "feedback:42:no"}],
        ]
    }
    assert _keyboard(ReplyTarget("telegram", "1", "1001")) is None
    # core.telegram.org/bots/api#callbackquery: id, from, message (our message, with its reply_markup),
    # chat_instance, data. Shaped after the reference's field list; Telegram's own sample update
    # (fixtures/doc_callback_query.json) is an inline message without `message` and stays ignored.
    update = {
        "update_id": 10001,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": 1001, "is_bot": False, "first_name": "Айгүл", "language_code": "ru"},
            "message": {
                "message_id": 7,
                "from": {"id": 1, "is_bot": True, "first_name": "Adaldyk"},
                "chat": {"id": 1001, "first_name": "Айгүл", "type": "private"},
                "date": 1733040000,
                "text": "Решена ли ваша проблема по обращению ADL-2026-000042?",
                "reply_markup": markup.to_dict(),
            },
            "chat_instance": "-7777",
            "data": "feedback:42:no",
        },
    }
    msg = parse_update(update, account="1")
    assert isinstance(msg, InboundMessage)
    assert (msg.chat_id, msg.choice, msg.text) == ("1001", "feedback:42:no", "Нет, не решена")
    assert msg.message_key == "callback:4382bfdwdsb323b2d9"


def test_vk_keyboard_and_the_payload_of_a_press() -> None:
    # dev.vk.com/ru/api/bots/development/keyboard: {"inline": true, "buttons": [[{"action": {"type":
    # "text", "label", "payload"}}]]}, payload a JSON string.
    keyboard = json.loads(keyboard_json(ReplyTarget("vk", "1", "8001", choices=CHOICES)))
    assert keyboard["inline"] is True
    assert [b[0]["action"] for b in keyboard["buttons"]] == [
        {"type": "text", "label": "Да, решена", "payload": '{"choice": "feedback:42:yes"}'},
        {"type": "text", "label": "Нет, не решена", "payload": '{"choice": "feedback:42:no"}'},
    ]
    # message_new of a button press: the message object as in the docs' example (message.payload is
    # the button's payload string), ours filled in.
    event = {
        "type": "message_new",
        "group_id": 227000001,
        "event_id": "a1b2c3",
        "v": "5.199",
        "object": {
            "message": {
                "date": 1733040000, "from_id": 8001, "id": 12, "out": 0, "peer_id": 8001,
                "text": "Нет, не решена", "conversation_message_id": 12, "fwd_messages": [],
                "important": False, "random_id": 0, "attachments": [], "is_hidden": False,
                "payload": '{"choice": "feedback:42:no"}',
            },
            "client_info": {"button_actions": ["text"], "inline_keyboard": True, "lang_id": 0},
        },
    }  # fmt: skip
    raw = parse_event_payload(json.dumps(event, ensure_ascii=False).encode(), account="227000001")
    (msg,) = raw.outcomes
    assert isinstance(msg, InboundMessage) and msg.choice == "feedback:42:no"
    # The Start button's payload ({"command":"start"}, the docs' example) is no choice of ours.
    event["object"]["message"]["payload"] = '{"command":"start"}'  # type: ignore[index]
    (start,) = parse_event_payload(json.dumps(event).encode(), account="227000001").outcomes
    assert isinstance(start, InboundMessage) and start.choice is None


def test_messenger_and_instagram_quick_replies() -> None:
    for channel in ("facebook", "instagram"):
        target = ReplyTarget(
            channel, "104", "psid-1", window=WindowDecision.open("RESPONSE"), choices=CHOICES
        )
        _, data, _ = _meta(channel, "104").request(
            target, "Решена ли проблема?", idempotency_key="feedback:42"
        )
        # developers.facebook.com/docs/messenger-platform/send-messages/quick-replies
        assert data["message"]["quick_replies"] == [
            {"content_type": "text", "title": "Да, решена", "payload": "feedback:42:yes"},
            {"content_type": "text", "title": "Нет, не решена", "payload": "feedback:42:no"},
        ]
    # A private reply to a comment carries text only: the choices as numbered lines.
    comment = ReplyTarget(
        "facebook", "104", "555_777", reply_to_key="555_777", kind="comment", choices=CHOICES
    )
    _, data, _ = _meta("facebook", "104").request(comment, "Решена?", idempotency_key="feedback:42")
    assert (
        data["message"]["text"] == choices_as_text("Решена?", CHOICES)
        and "quick_replies" not in data["message"]
    )
    items, _ = split_body(fixture("messenger_quick_reply"))
    (msg,) = parse_item_payload(items[0].payload, channel="facebook", account="1234567890123").outcomes
    assert isinstance(msg, InboundMessage)
    assert (msg.choice, msg.text) == ("feedback:42:no", "Нет, не решена")


def test_whatsapp_reply_buttons_and_the_button_reply() -> None:
    target = ReplyTarget("whatsapp", "1065", "77011234567", window=WindowDecision.open(), choices=CHOICES)
    _, data, _ = _meta("whatsapp", "1065").request(
        target, "Решена ли проблема?", idempotency_key="feedback:42"
    )
    # developers.facebook.com/docs/whatsapp/cloud-api/messages/interactive-reply-buttons-messages
    assert data["type"] == "interactive"
    assert data["interactive"] == {
        "type": "button",
        "body": {"text": "Решена ли проблема?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "feedback:42:yes", "title": "Да, решена"}},
                {"type": "reply", "reply": {"id": "feedback:42:no", "title": "Нет, не решена"}},
            ]
        },
    }
    # Too long a body for an interactive message (1024): plain text with numbered choices.
    _, long, _ = _meta("whatsapp", "1065").request(target, "x" * 1100, idempotency_key="feedback:42")
    assert long["type"] == "text" and long["text"]["body"].endswith("2. Нет, не решена")
    # The docs' reply-button webhook (fixtures/whatsapp_interactive.json): its id is the choice.
    items, _ = split_body(fixture("whatsapp_interactive"))
    (msg,) = parse_item_payload(items[0].payload, channel="whatsapp", account="106540352242922").outcomes
    assert isinstance(msg, InboundMessage) and msg.choice == "status"


def test_numbered_lines_for_channels_without_buttons() -> None:
    assert choices_as_text("Решена?", CHOICES) == "Решена?\n\n1. Да, решена\n2. Нет, не решена"
    assert choices_as_text("Решена?", ()) == "Решена?"
