"""Unit tests for the pure Telegram update parser, driven by real updates recorded from public sources."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.domain import Attachment, Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.telegram import parser as parser_module
from connectors.telegram.parser import TELEGRAM_TEXT_LIMIT, parse_update, parse_update_payload

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "bot:7000000001"


def load(name: str) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["update"]
    return update


def as_bytes(update: dict[str, Any]) -> bytes:
    # Telegram sends compact UTF-8 JSON; ensure_ascii=False keeps Cyrillic as real multi-byte UTF-8.
    return json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(update: dict[str, Any]) -> ParseOutcome:
    return parse_update(update, account=ACCOUNT)


def parse_message(update: dict[str, Any]) -> InboundMessage:
    outcome = parse(update)
    assert isinstance(outcome, InboundMessage), outcome
    return outcome


def sha256_key(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def content_key(update: dict[str, Any]) -> str:
    """The dedup key the parser must give: the message's chat and id (and edit date), else the update_id
    with a hash of the content (see test_dedup_key_* below)."""
    for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
        msg = update.get(kind)
        if isinstance(msg, dict):
            chat = msg.get("chat")
            if isinstance(chat, dict) and "id" in chat and "message_id" in msg:
                if kind.startswith("edited_"):
                    if "edit_date" in msg:
                        return f"{kind}:{chat['id']}:{msg['message_id']}:{msg['edit_date']}"
                else:
                    return f"{kind}:{chat['id']}:{msg['message_id']}"
            break
    canonical = json.dumps(update, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"update:{update['update_id']}:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json"))


# --- fixture hygiene -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_names_a_public_source_and_carries_one_update(name: str) -> None:
    document = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert set(document) == {"source", "update"}
    assert document["source"].startswith("https://")
    assert isinstance(document["update"]["update_id"], int)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_payload_and_dict_entry_points_agree_and_key_by_content(name: str) -> None:
    update = load(name)
    payload = as_bytes(update)
    event = parse_update_payload(payload, account=ACCOUNT)
    assert event == RawEvent(dedup_key=content_key(update), payload=payload, outcomes=[parse(update)])
    assert event.payload is payload  # the exact bytes are kept, never re-serialised


def test_text_limit_is_telegrams_send_message_limit() -> None:
    assert TELEGRAM_TEXT_LIMIT == 4096


# --- private messages ------------------------------------------------------------------------------


def test_private_text() -> None:
    assert parse(load("private_text")) == InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="100000001",
        message_key="1232",
        sender_id="100000001",
        sent_at=datetime(2020, 10, 27, 15, 31, 5, tzinfo=UTC),
        text="Hello",
        sender_name="Test User",
        sender_username="test_user",
        language_hint="en",
    )


def test_cyrillic_kazakh_text_is_kept_exactly_through_the_bytes() -> None:
    update = load("private_text_cyrillic")
    expected = InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="100000002",
        message_key="8",
        sender_id="100000002",
        sent_at=datetime(2023, 4, 1, 19, 42, 27, tzinfo=UTC),
        text="Сәлеметсіз бе! Біздің ауылда үш күннен бері жарық жоқ. Қашан қосылады? Көмектесіңіздерші 🙏",
        sender_name="Айгерім Серікова",
        sender_username="aigerim_s",
        language_hint="en",  # as recorded: the client's UI language, not the language of the text
    )
    payload = as_bytes(update)
    assert "Сәлеметсіз".encode() in payload  # real UTF-8 on the wire, not \u escapes
    assert parse_update_payload(payload, account=ACCOUNT).outcomes == [expected]
    # Telegram may also send \u-escaped JSON; the result must not depend on the escaping.
    escaped = json.dumps(update).encode("ascii")
    assert parse_update_payload(escaped, account=ACCOUNT).outcomes == [expected]


def test_text_is_not_stripped() -> None:
    update = load("private_text")
    update["message"]["text"] = "  \n Hello \t\n"
    assert parse_message(update).text == "  \n Hello \t\n"


def test_photo_with_caption_keeps_only_the_largest_size() -> None:
    assert parse(load("private_photo_caption")) == InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="100000003",
        message_key="51",
        sender_id="100000003",
        sent_at=datetime(2024, 8, 10, 19, 40, 35, tzinfo=UTC),
        text="descripcion",
        sender_name="Test Citizen",
        sender_username="test_citizen",
        language_hint="es",
        attachments=(
            Attachment(
                kind="photo",
                file_id="AgACAgEAAxkBAAMzZrfCM1dfdgT4ptmq3Nz9kkO5yRkAAn6uMRuLpcBFs6NcKnRPYtoBAAMCAAN4AAM1BA",
                file_unique_id="AQADfq4xG4ulwEV9",
                size=28591,
                data={"width": 640, "height": 640},
            ),
        ),
    )


@pytest.mark.parametrize("order", [(2, 1, 0), (0, 2, 1), (1, 2, 0)])
def test_largest_photo_is_chosen_whatever_the_order(order: tuple[int, int, int]) -> None:
    update = load("private_photo_caption")
    sizes = update["message"]["photo"]
    update["message"]["photo"] = [sizes[i] for i in order]
    (photo,) = parse_message(update).attachments
    assert photo.file_unique_id == "AQADfq4xG4ulwEV9"
    assert photo.size == 28591


def test_largest_photo_falls_back_to_pixel_area_without_file_size() -> None:
    update = load("private_photo_caption")
    for size in update["message"]["photo"]:
        del size["file_size"]
    update["message"]["photo"].reverse()
    (photo,) = parse_message(update).attachments
    assert (photo.file_unique_id, photo.size, photo.data) == (
        "AQADfq4xG4ulwEV9",
        None,
        {"width": 640, "height": 640},
    )


def test_reply_carries_the_replied_message_key() -> None:
    assert parse(load("private_reply")) == InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="100000001",
        message_key="1272",
        sender_id="100000001",
        sent_at=datetime(2020, 10, 27, 21, 42, 2, tzinfo=UTC),
        text="This is a reply",
        reply_to_key="1271",
        sender_name="Test User",
        sender_username="test_user",
        language_hint="en",
    )


def test_contact_is_kept_with_null_names_and_marked_as_the_senders_own() -> None:
    assert parse(load("private_contact")) == InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="11111",
        message_key="111",
        sender_id="11111",
        sent_at=datetime(2025, 9, 10, 4, 5, 9, tzinfo=UTC),
        text="",
        sender_name=None,  # Telegram really sent "first_name": null
        language_hint="ru",
        attachments=(
            Attachment(
                kind="contact",
                data={
                    "phone_number": "1111",
                    "first_name": None,
                    "last_name": None,
                    "user_id": 11111,
                    "is_sender_own": True,
                },
            ),
        ),
    )


@pytest.mark.parametrize(
    ("change", "own"),
    [
        ({"user_id": 22222}, False),  # someone else's card shared by the citizen
        ({"user_id": None}, False),  # a phone-book entry with no Telegram account
        ({"user_id": 11111}, True),
    ],
)
def test_contact_is_sender_own_only_when_user_id_matches_from(change: dict[str, Any], own: bool) -> None:
    update = load("private_contact")
    contact = update["message"]["contact"]
    contact.update(change)
    if contact["user_id"] is None:
        del contact["user_id"]
    (attachment,) = parse_message(update).attachments
    assert attachment.data["is_sender_own"] is own


def test_location() -> None:
    message = parse_message(load("private_location"))
    assert (message.chat_id, message.message_key, message.text, message.sent_at) == (
        "1111111",
        "1365",
        "",
        datetime(2023, 1, 1, 0, 19, 55, tzinfo=UTC),
    )
    assert message.attachments == (
        Attachment(kind="location", data={"latitude": 37.7893768, "longitude": -122.3895553}),
    )


def test_location_keeps_horizontal_accuracy_when_sent() -> None:
    update = load("private_location")
    update["message"]["location"]["horizontal_accuracy"] = 23.5
    (location,) = parse_message(update).attachments
    assert location.data == {"latitude": 37.7893768, "longitude": -122.3895553, "horizontal_accuracy": 23.5}


def test_venue_replaces_its_duplicate_location() -> None:
    # Telegram fills `location` next to `venue` for old clients; only one item must reach the appeal.
    update = load("private_location")
    update["message"]["venue"] = {
        "location": {"latitude": 43.238949, "longitude": 76.889709},
        "title": "Әкімдік",
        "address": "Республика алаңы, 4",
    }
    assert parse_message(update).attachments == (
        Attachment(
            kind="venue",
            data={
                "latitude": 43.238949,
                "longitude": 76.889709,
                "title": "Әкімдік",
                "address": "Республика алаңы, 4",
            },
        ),
    )


def test_album_items_share_a_group_key() -> None:
    first, second = parse_message(load("album_1")), parse_message(load("album_2"))
    assert first.group_key == second.group_key == "13078204525058474"
    assert (first.message_key, second.message_key) == ("2435", "2436")
    assert first.chat_id == second.chat_id == "100000004"
    assert first.sent_at == second.sent_at == datetime(2021, 10, 21, 0, 19, 25, tzinfo=UTC)
    assert first.attachments == (
        Attachment(
            kind="audio",
            file_id="CQACAgIAAxkBAAIJg2Fwsg1NuihCkyJzeMNq-KKNka-1AAKnEgAC9NqJS7fQ3SnOgcvvIQQ",
            file_unique_id="AgADpxIAAvTaiUs",
            name="0 Paul Mauriat - Autumn Leaves (Les Feuilles Mortes).mp3",
            mime_type="audio/mpeg",
            size=9095212,
            data={
                "duration": 226,
                "performer": "Paul Mauriat",
                "title": "Autumn Leaves (Les Feuilles Mortes) (Sefon.Pro)",
            },
        ),
    )
    assert second.attachments[0].file_unique_id == "AgADqBIAAvTaiUs"


def test_voice_and_document_from_telegrams_own_samples() -> None:
    voice = parse_message(load("doc_voice"))
    document = parse_message(load("doc_document"))
    assert voice.attachments == (
        Attachment(
            kind="voice",
            file_id="AwADBAADbXXXXXXXXXXXGBdhD2l6_XX",
            mime_type="audio/ogg",
            size=23000,
            data={"duration": 5},
        ),
    )
    assert document.attachments == (
        Attachment(
            kind="document",
            file_id="AwADBAADbXXXXXXXXXXXGBdhD2l6_XX",
            name="Testfile.pdf",
            mime_type="application/pdf",
            size=536392,
        ),
    )
    # These samples predate `is_bot`; a missing flag means a person, not a bot.
    assert voice.sender_name == "Test Firstname Test Lastname"


def _private_without_text(extra: dict[str, Any]) -> dict[str, Any]:
    update = load("private_text")
    del update["message"]["text"]
    update["message"].update(copy.deepcopy(extra))
    return update


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {
                "sticker": {
                    "file_id": "CAAC-st",
                    "file_unique_id": "AgAD-st",
                    "emoji": "😡",
                    "file_size": 3000,
                }
            },
            Attachment(
                kind="sticker", file_id="CAAC-st", file_unique_id="AgAD-st", size=3000, data={"emoji": "😡"}
            ),
        ),
        (
            {
                "video": {
                    "file_id": "BAAC-v",
                    "width": 720,
                    "height": 1280,
                    "duration": 29,
                    "mime_type": "video/mp4",
                }
            },
            Attachment(
                kind="video",
                file_id="BAAC-v",
                mime_type="video/mp4",
                data={"width": 720, "height": 1280, "duration": 29},
            ),
        ),
        (
            {"video_note": {"file_id": "DQAC-vn", "length": 240, "duration": 7}},
            Attachment(kind="video_note", file_id="DQAC-vn", data={"length": 240, "duration": 7}),
        ),
        (
            # a GIF arrives as both `animation` and `document`; only the animation is kept
            {
                "animation": {
                    "file_id": "CgAC-a",
                    "file_name": "a.mp4",
                    "width": 1,
                    "height": 2,
                    "duration": 3,
                },
                "document": {"file_id": "CgAC-a", "file_name": "a.mp4"},
            },
            Attachment(
                kind="animation",
                file_id="CgAC-a",
                name="a.mp4",
                data={"width": 1, "height": 2, "duration": 3},
            ),
        ),
        (
            {
                "poll": {
                    "id": "5825895662671101957",
                    "question": "Test",
                    "options": [{"text": "Test", "voter_count": 0}],
                }
            },
            Attachment(kind="poll", data={"question": "Test"}),
        ),
    ],
)
def test_other_attachment_kinds(extra: dict[str, Any], expected: Attachment) -> None:
    message = parse_message(_private_without_text(extra))
    assert message.attachments == (expected,)
    assert message.text == ""


# --- edits -----------------------------------------------------------------------------------------


def test_edited_message_carries_edited_at() -> None:
    assert parse(load("private_edited")) == InboundMessage(
        channel="telegram",
        account=ACCOUNT,
        chat_id="100000001",
        message_key="1247",
        sender_id="100000001",
        sent_at=datetime(2020, 10, 27, 17, 5, 26, tzinfo=UTC),
        text="hi",
        edited_at=datetime(2020, 10, 27, 17, 5, 30, tzinfo=UTC),
        sender_name="Test User",
        sender_username="test_user",
        language_hint="en",
    )


def test_edit_keeps_the_original_message_key() -> None:
    original = parse_message(load("doc_text"))
    edit = parse_message(load("doc_edited"))
    assert (edit.chat_id, edit.message_key) == (original.chat_id, original.message_key) == ("1111111", "1365")
    assert (original.edited_at, original.is_edit) == (None, False)
    assert (edit.edited_at, edit.is_edit) == (datetime(2015, 9, 7, 17, 23, 20, tzinfo=UTC), True)
    assert edit.sent_at == original.sent_at == datetime(2015, 9, 7, 17, 5, 32, tzinfo=UTC)
    assert (original.text, edit.text) == ("/start", "Edited text")


def test_times_are_aware_utc() -> None:
    message = parse_message(load("private_edited"))
    assert message.sent_at.utcoffset() == timedelta(0)
    assert message.edited_at is not None and message.edited_at.utcoffset() == timedelta(0)


# --- ignored ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("group_supergroup_photo", "telegram.group_chat"),
        ("bot_sender_anonymous_admin", "telegram.from_bot"),
        ("channel_post", "telegram.channel_post"),
        ("doc_callback_query", "telegram.unsupported_update:callback_query"),
    ],
)
def test_ignored_fixtures(name: str, reason: str) -> None:
    assert parse(load(name)) == Ignored(reason)


@pytest.mark.parametrize("chat_type", ["group", "supergroup", "channel"])
def test_every_non_private_chat_is_ignored(chat_type: str) -> None:
    update = load("group_supergroup_photo")
    update["message"]["chat"]["type"] = chat_type
    assert parse(update) == Ignored("telegram.group_chat")


def test_bot_in_a_private_chat_is_ignored() -> None:
    update = load("private_text")
    update["message"]["from"]["is_bot"] = True
    assert parse(update) == Ignored("telegram.from_bot")


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (
            {
                "update_id": 5,
                "my_chat_member": {
                    "chat": {"id": 100000001, "type": "private"},
                    "from": {"id": 100000001, "is_bot": False, "first_name": "Test"},
                    "date": 1603812600,
                    "old_chat_member": {
                        "status": "member",
                        "user": {"id": 42, "is_bot": True, "first_name": "b"},
                    },
                    "new_chat_member": {
                        "status": "kicked",
                        "user": {"id": 42, "is_bot": True, "first_name": "b"},
                    },
                },
            },
            "telegram.my_chat_member",
        ),
        ({"update_id": 6, "edited_channel_post": {"message_id": 4}}, "telegram.channel_post"),
        (
            {"update_id": 7, "message_reaction": {"chat": {"id": 1}}},
            "telegram.unsupported_update:message_reaction",
        ),
        ({"update_id": 8, "poll": {"id": "p"}}, "telegram.unsupported_update:poll"),
    ],
)
def test_other_update_types_are_ignored(update: dict[str, Any], reason: str) -> None:
    assert parse(update) == Ignored(reason)


def test_private_service_message_is_ignored() -> None:
    pinned = load("private_reply")["message"]["reply_to_message"]
    assert parse(_private_without_text({"pinned_message": pinned})) == Ignored("telegram.service_message")


def test_private_content_we_do_not_model_is_quarantined_with_its_kind() -> None:
    # Issue 6 item 8: unknown content is kept for replay, not ignored.
    assert parse(_private_without_text({"dice": {"emoji": "🎲", "value": 4}})) == Quarantined(
        "telegram.unsupported_content:dice"
    )


@pytest.mark.parametrize("kind", ["business_message", "some_update_type_of_2030"])
def test_unknown_update_types_are_quarantined(kind: str) -> None:
    update = {"update_id": 11, kind: {"message_id": 1, "chat": {"id": 5, "type": "private"}}}
    assert parse(update) == Quarantined(f"telegram.unknown_update:{kind}")


# --- quarantined -----------------------------------------------------------------------------------


def test_malformed_fixture_is_quarantined_but_keyed_by_update_id_and_content() -> None:
    update = load("malformed_missing_chat")
    payload = as_bytes(update)
    assert parse_update_payload(payload, account=ACCOUNT) == RawEvent(
        dedup_key=content_key(update),
        payload=payload,
        outcomes=[Quarantined("telegram.missing_field: message.chat")],
    )


def _drop(path: str) -> Any:
    def change(update: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = update
        for part in parents:
            node = node[part]
        del node[leaf]

    return change


def _set(path: str, value: Any) -> Any:
    def change(update: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = update
        for part in parents:
            node = node[part]
        node[leaf] = value

    return change


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        ("private_text", _set("message", None), "telegram.missing_field: message"),
        (
            "private_text",
            _set("message", "Hello"),
            "telegram.bad_field: message (expected object, got string)",
        ),
        ("private_text", _drop("message.chat.id"), "telegram.missing_field: message.chat.id"),
        (
            "private_text",
            _set("message.chat.id", "100000001"),
            "telegram.bad_field: message.chat.id (expected integer, got string)",
        ),
        ("private_text", _drop("message.chat.type"), "telegram.missing_field: message.chat.type"),
        (
            "private_text",
            _set("message.chat.type", "secret"),
            "telegram.bad_field: message.chat.type (unknown chat type 'secret')",
        ),
        ("private_text", _drop("message.from"), "telegram.missing_field: message.from"),
        ("private_text", _drop("message.from.id"), "telegram.missing_field: message.from.id"),
        ("private_text", _drop("message.message_id"), "telegram.missing_field: message.message_id"),
        (
            "private_text",
            _set("message.message_id", True),
            "telegram.bad_field: message.message_id (expected integer, got boolean)",
        ),
        ("private_text", _drop("message.date"), "telegram.missing_field: message.date"),
        (
            "private_text",
            _set("message.date", 10**20),
            "telegram.bad_field: message.date (integer out of range)",
        ),
        (
            "private_text",
            _set("message.text", 42),
            "telegram.bad_field: message.text (expected string, got number)",
        ),
        (
            "private_edited",
            _drop("edited_message.edit_date"),
            "telegram.missing_field: edited_message.edit_date",
        ),
        ("private_edited", _drop("edited_message.chat"), "telegram.missing_field: edited_message.chat"),
        (
            "private_photo_caption",
            _set("message.photo", {"file_id": "x"}),
            "telegram.bad_field: message.photo (expected array, got object)",
        ),
        (
            "private_location",
            _drop("message.location.latitude"),
            "telegram.missing_field: message.location.latitude",
        ),
        ("doc_voice", _drop("message.voice.file_id"), "telegram.missing_field: message.voice.file_id"),
        (
            "private_location",
            _set("message.location.latitude", True),
            "telegram.bad_field: message.location.latitude (expected number, got boolean)",
        ),
        (
            "private_location",
            _set("message.location.longitude", 10**400),
            "telegram.bad_field: message.location.longitude (number out of range)",
        ),
    ],
)
def test_broken_messages_are_quarantined(name: str, change: Any, reason: str) -> None:
    update = load(name)
    change(update)
    assert parse(update) == Quarantined(reason)


def test_largest_photo_without_file_id_is_quarantined_with_its_index() -> None:
    update = load("private_photo_caption")
    del update["message"]["photo"][2]["file_id"]
    assert parse(update) == Quarantined("telegram.missing_field: message.photo[2].file_id")


def test_update_with_no_content_field_is_quarantined() -> None:
    assert parse({"update_id": 9}) == Quarantined(
        "telegram.missing_field: update content (no update type field)"
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "telegram.invalid_json: Expecting value at line 1 column 1"),
        (b"not json at all", "telegram.invalid_json: Expecting value at line 1 column 1"),
        (
            b'{"update_id": 1, "message": {',
            "telegram.invalid_json: Expecting property name enclosed in double quotes",
        ),
        (b"\xff\xfe{}", "telegram.invalid_utf8: invalid start byte at byte 0"),
        (b'[{"update_id": 1}]', "telegram.not_an_object: got array"),
        (b'"update"', "telegram.not_an_object: got string"),
        (b'{"message": {"message_id": 1}}', "telegram.missing_field: update_id"),
        (b'{"update_id": null, "message": {}}', "telegram.missing_field: update_id"),
        (
            b'{"update_id": "10000", "message": {}}',
            "telegram.bad_field: update_id (expected integer, got string)",
        ),
        (
            b'{"update_id": true, "message": {}}',
            "telegram.bad_field: update_id (expected integer, got boolean)",
        ),
        (
            b'{"update_id": 1.5, "message": {}}',
            "telegram.bad_field: update_id (expected integer, got number)",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "telegram.invalid_json: nesting too deep"),
    ],
)
def test_unreadable_payloads_are_quarantined_by_content_hash(payload: bytes, reason: str) -> None:
    event = parse_update_payload(payload, account=ACCOUNT)
    assert event.dedup_key == sha256_key(payload)
    assert event.payload is payload
    (outcome,) = event.outcomes
    assert isinstance(outcome, Quarantined)
    assert outcome.reason.startswith(reason), outcome.reason


def test_invalid_json_reason_names_the_position() -> None:
    (outcome,) = parse_update_payload(b'{"update_id": 1,}', account=ACCOUNT).outcomes
    assert outcome == Quarantined(
        "telegram.invalid_json: Expecting property name enclosed in double quotes at line 1 column 17"
    )


def test_quarantine_key_is_stable_for_the_same_bytes() -> None:
    first = parse_update_payload(b"not json", account=ACCOUNT)
    again = parse_update_payload(b"not json", account=ACCOUNT)
    other = parse_update_payload(b"not json!", account=ACCOUNT)
    assert first == again
    assert first.dedup_key != other.dedup_key


def test_a_parser_bug_quarantines_the_update_instead_of_losing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(update: Any, account: str) -> ParseOutcome:
        raise KeyError("surprise")

    monkeypatch.setattr(parser_module, "_parse", broken)
    payload = as_bytes(load("private_text"))
    assert parse_update_payload(payload, account=ACCOUNT) == RawEvent(
        dedup_key="message:100000001:1232",
        payload=payload,
        outcomes=[Quarantined("telegram.parser_error: KeyError: 'surprise'")],
    )


# --- dedup keys (issue 6 item 5: Telegram reuses update_id after a week without updates) -------------


def key_of(update: dict[str, Any]) -> str:
    return parse_update_payload(as_bytes(update), account=ACCOUNT).dedup_key


def test_dedup_key_is_the_message_not_the_update_id() -> None:
    first = load("private_text")
    reused = copy.deepcopy(first)
    reused["message"]["message_id"] += 1
    reused["message"]["text"] = "a new message under the same update_id"
    redelivered = copy.deepcopy(first)
    redelivered["update_id"] += 12345  # the same message under another update_id is still the same
    assert key_of(first) == "message:100000001:1232"
    assert key_of(reused) == "message:100000001:1233"
    assert key_of(redelivered) == key_of(first)


def test_dedup_key_of_an_edit_carries_its_edit_date() -> None:
    edit = load("private_edited")
    again = copy.deepcopy(edit)
    again["edited_message"]["edit_date"] += 60
    msg = edit["edited_message"]
    assert key_of(edit) == f"edited_message:{msg['chat']['id']}:{msg['message_id']}:{msg['edit_date']}"
    assert key_of(again) != key_of(edit)


def test_dedup_key_of_other_updates_is_the_update_id_with_a_content_hash() -> None:
    member = {"update_id": 5, "my_chat_member": {"chat": {"id": 1, "type": "private"}, "date": 1}}
    later = copy.deepcopy(member)
    later["my_chat_member"]["date"] = 2
    assert key_of(member).startswith("update:5:")
    assert key_of(member) == key_of(copy.deepcopy(member))  # a redelivery is a duplicate
    assert key_of(later) != key_of(member)  # a reused update_id with other content is not
    spaced = json.dumps(member, indent=2).encode()  # the content decides, not the formatting
    assert parse_update_payload(spaced, account=ACCOUNT).dedup_key == key_of(member)


def test_dedup_key_stays_short_for_absurd_ids() -> None:
    update = load("private_text")
    update["message"]["message_id"] = 10**190
    key = key_of(update)
    assert key.startswith("sha256:") and len(key) <= 200
