"""The pure VK event parser, driven by real events recorded from public sources (fixtures/*.json)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.domain import Attachment, Ignored, InboundMessage, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.vk.parser import (
    VK_TEXT_LIMIT,
    WallKey,
    parse_attachments,
    parse_event,
    parse_event_payload,
)

FIXTURES = Path(__file__).parent / "fixtures"
ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["event"]
    return event


def account_of(event: dict[str, Any]) -> str:
    return str(event["group_id"])


def as_bytes(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(event: dict[str, Any]) -> Any:
    return parse_event(event, account=account_of(event))


# --- fixture hygiene


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_names_a_public_source_and_carries_one_event(name: str) -> None:
    document = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert set(document) == {"source", "event"}
    assert document["source"].startswith("https://")
    assert {"type", "group_id", "event_id"} <= set(document["event"])


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_payload_and_dict_entry_points_agree_and_key_by_event_id(name: str) -> None:
    event = load(name)
    payload = as_bytes(event)
    raw = parse_event_payload(payload, account=account_of(event))
    assert raw == RawEvent(dedup_key=f"event:{event['event_id']}", payload=payload, outcomes=[parse(event)])
    assert raw.payload is payload  # the exact bytes are kept, never re-serialised


def test_text_limit_is_the_messages_send_limit() -> None:
    assert VK_TEXT_LIMIT == 9000


# --- private dialogs


def test_private_message_in_the_current_shape_with_cyrillic_text() -> None:
    assert parse(load("message_new_private_cyrillic")) == InboundMessage(
        channel="vk",
        account="202308925",
        chat_id="326596496",
        message_key="9",
        sender_id="326596496",
        sent_at=datetime.fromtimestamp(1612685621, tz=UTC),
        text="Добрый день!",
        language_hint="ru",  # client_info.lang_id 0
        kind="message",
    )


def test_dialog_message_is_keyed_by_conversation_message_id_not_by_message_id() -> None:
    event = load("message_new_private_doc")
    assert event["object"]["message"]["id"] == 578
    msg = parse(event)
    assert isinstance(msg, InboundMessage)
    assert msg.message_key == "554"  # conversation_message_id
    assert msg.text == ""
    assert msg.attachments == (
        Attachment(
            kind="document",
            file_id="doc789_456_5678",
            name="canvas.rar",
            size=2325,
            data={"ext": "rar", "url": "https://vk.com/doc1234"},
        ),
    )


def test_legacy_shape_below_5_103_is_still_read() -> None:
    # A callback server configured with an old version sends the message itself as the object.
    event = load("message_new_private_cyrillic")
    event["object"] = event["object"]["message"]
    msg = parse(event)
    assert isinstance(msg, InboundMessage)
    assert (msg.text, msg.message_key, msg.language_hint) == ("Добрый день!", "9", None)


@pytest.mark.parametrize(("lang_id", "hint"), [(0, "ru"), (3, "en"), (97, "kk"), (1, None)])
def test_client_language_becomes_the_hint(lang_id: int, hint: str | None) -> None:
    event = load("message_new_private_cyrillic")
    event["object"]["client_info"]["lang_id"] = lang_id
    assert parse(event).language_hint == hint


def test_reply_to_an_earlier_message_is_kept_by_its_conversation_message_id() -> None:
    event = load("message_new_private_cyrillic")
    event["object"]["message"]["reply_message"] = {"conversation_message_id": 7, "id": 0, "text": "..."}
    assert parse(event).reply_to_key == "7"


# --- chats: message.id is 0 there, and chats follow the Telegram-groups policy


@pytest.mark.parametrize(
    "name",
    ["message_new_chat_photo_id_zero", "message_new_chat_voice_id_zero", "message_new_chat_geo_id_zero"],
)
def test_chat_messages_have_id_zero_and_are_skipped_by_policy(name: str) -> None:
    event = load(name)
    assert event["object"]["message"]["id"] == 0
    assert event["object"]["message"]["peer_id"] >= 2_000_000_000
    assert parse(event) == Ignored("vk.group_chat")


def test_photo_attachment_keeps_the_largest_size_and_the_vk_reference() -> None:
    message = load("message_new_chat_photo_id_zero")["object"]["message"]
    (photo,) = parse_attachments(message)
    assert photo.kind == "photo"
    assert photo.file_id == "photo555644284_457239342_23a2cbe266f7bbf17c"
    assert (photo.data["width"], photo.data["height"]) == (945, 2048)
    assert photo.data["url"].startswith("https://sun9-3.userapi.com/")


def test_voice_message_is_kept_with_its_links() -> None:
    message = load("message_new_chat_voice_id_zero")["object"]["message"]
    (voice,) = parse_attachments(message)
    assert voice.kind == "voice"
    assert voice.file_id == "audio_message526252082_543180880_d811695893182efd91"
    assert voice.data["duration"] == 2
    assert voice.data["link_ogg"].endswith(".ogg")


def test_geo_is_kept_as_a_location() -> None:
    message = load("message_new_chat_geo_id_zero")["object"]["message"]
    assert parse_attachments(message) == (
        Attachment(kind="location", data={"latitude": 23.431881, "longitude": 7.031246}),
    )


def test_a_private_message_with_only_a_photo_is_an_appeal() -> None:
    event = load("message_new_private_cyrillic")
    photo_message = load("message_new_chat_photo_id_zero")["object"]["message"]
    event["object"]["message"].update(text="", attachments=photo_message["attachments"])
    msg = parse(event)
    assert isinstance(msg, InboundMessage) and msg.attachments[0].kind == "photo"


def test_forwarded_messages_are_kept_as_evidence() -> None:
    event = load("message_new_private_cyrillic")
    event["object"]["message"]["fwd_messages"] = [{"from_id": 1, "date": 1612685000, "text": "Фото свалки"}]
    (forwarded,) = parse(event).attachments
    assert forwarded == Attachment(
        kind="forwarded", data={"messages": [{"from_id": 1, "date": 1612685000, "text": "Фото свалки"}]}
    )


# --- edits


def test_the_communitys_own_edit_is_not_an_appeal() -> None:
    event = load("message_edit_by_community")
    assert event["object"]["out"] == 1
    assert parse(event) == Ignored("vk.own_message")


def test_a_citizens_edit_is_a_new_version_of_the_same_message() -> None:
    # The recorded edit, as the citizen's own (out 0, author = dialog), is how VK reports that case.
    event = load("message_edit_by_community")
    event["object"].update(out=0, from_id=381980625, update_time=1594282400, text="tests, исправлено")
    del event["object"]["admin_author_id"]
    msg = parse(event)
    assert isinstance(msg, InboundMessage)
    assert msg.message_key == "261"
    assert msg.edited_at == datetime.fromtimestamp(1594282400, tz=UTC)
    assert msg.sent_at == datetime.fromtimestamp(1594282377, tz=UTC)
    assert msg.text == "tests, исправлено"


def test_an_edit_without_update_time_is_quarantined_not_taken_for_a_new_message() -> None:
    event = load("message_edit_by_community")
    event["object"].update(out=0, from_id=381980625)
    del event["object"]["update_time"]
    assert parse(event) == Quarantined("vk.missing_field: object.update_time")


# --- wall comments


def test_wall_comment_is_an_appeal_answered_to_its_author() -> None:
    assert parse(load("wall_reply_new")) == InboundMessage(
        channel="vk",
        account="168975658",
        chat_id="381980625",
        message_key="wall-168975658_3_4",
        sender_id="381980625",
        sent_at=datetime.fromtimestamp(1594972082, tz=UTC),
        text="test",
        kind="comment",
    )


def test_wall_comment_with_only_the_older_post_owner_id_field() -> None:
    event = load("wall_reply_new")
    del event["object"]["owner_id"]
    assert parse(event).message_key == "wall-168975658_3_4"


def test_comments_by_a_community_including_our_own_invitations_are_skipped() -> None:
    event = load("wall_reply_new")
    event["object"]["from_id"] = -168975658
    assert parse(event) == Ignored("vk.comment_by_community")


def test_wall_keys_round_trip() -> None:
    assert WallKey.split(WallKey.make(-168975658, 3, 4)) == (-168975658, 3, 4)
    assert WallKey.split(WallKey.make(-1, 2)) == (-1, 2, None)
    assert WallKey.split("12345") is None
    assert WallKey.split("wallx_1") is None


# --- confirmation, other events, broken input


def test_confirmation_is_never_an_appeal() -> None:
    assert parse(load("confirmation")) == Ignored("vk.confirmation")


@pytest.mark.parametrize("kind", ["message_reply", "message_allow", "message_typing_state"])
def test_known_non_appeal_events_are_skipped(kind: str) -> None:
    event = load("message_new_private_cyrillic")
    event["type"] = kind
    assert parse(event) == Ignored(f"vk.{kind}")


def test_unknown_event_types_are_skipped_by_name() -> None:
    event = load("wall_reply_new")
    event["type"] = "wall_reply_edit"
    assert parse(event) == Ignored("vk.unsupported_event:wall_reply_edit")


def test_event_for_another_community_is_quarantined() -> None:
    event = load("message_new_private_cyrillic")
    outcome = parse_event(event, account="1")
    assert isinstance(outcome, Quarantined) and "202308925" in outcome.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda m: m.pop("conversation_message_id"),
            "vk.missing_field: object.message.conversation_message_id",
        ),
        (
            lambda m: m.update(peer_id="326596496"),
            "vk.bad_field: object.message.peer_id (expected integer, got string)",
        ),
        (lambda m: m.update(text=5), "vk.bad_field: object.message.text (expected string, got number)"),
        (lambda m: m.update(date=10**20), "vk.bad_field: object.message.date (integer out of range)"),
        (
            lambda m: m.update(attachments={}),
            "vk.bad_field: object.message.attachments (expected array, got object)",
        ),
    ],
)
def test_malformed_messages_are_quarantined_with_a_readable_reason(change: Any, reason: str) -> None:
    event = load("message_new_private_cyrillic")
    change(event["object"]["message"])
    assert parse(event) == Quarantined(reason)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"type": "message_new", "object": {', "vk.invalid_json"),
        (b"\xff\xfe", "vk.invalid_utf8"),
        (b"[1, 2]", "vk.not_an_object"),
    ],
)
def test_undecodable_payloads_are_quarantined_under_a_hash_key(payload: bytes, reason: str) -> None:
    raw = parse_event_payload(payload, account="1")
    assert raw.dedup_key == "sha256:" + hashlib.sha256(payload).hexdigest()
    (outcome,) = raw.outcomes
    assert isinstance(outcome, Quarantined) and outcome.reason.startswith(reason)


def test_missing_event_id_still_parses_under_a_hash_key() -> None:
    event = load("message_new_private_cyrillic")
    del event["event_id"]
    payload = as_bytes(event)
    raw = parse_event_payload(payload, account="202308925")
    assert raw.dedup_key.startswith("sha256:")
    assert isinstance(raw.outcomes[0], InboundMessage)


def test_a_parser_bug_quarantines_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.vk.parser as parser_module

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(parser_module, "_parse", boom)
    event = copy.deepcopy(load("message_new_private_cyrillic"))
    raw = parse_event_payload(as_bytes(event), account="202308925")
    assert raw.outcomes == [Quarantined("vk.parser_error: ZeroDivisionError: bug")]
