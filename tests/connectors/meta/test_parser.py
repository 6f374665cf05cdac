"""The Meta parser over recorded payloads from Meta's docs and public code (fixtures/SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adaldyk_bots.domain import DeliveryReceipt, Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.meta.parser import CHANNEL_OF_OBJECT, parse_item_payload, split_body

FIXTURES = Path(__file__).parent / "fixtures"
PAGE, IG, WA_NUMBER = "1234567890123", "17841400000000001", "106540352242922"
ACCOUNT = {"facebook": PAGE, "instagram": IG, "whatsapp": WA_NUMBER}


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def events(name: str) -> list[RawEvent]:
    body = fixture(name)
    items, problem = split_body(body)
    assert problem is None
    channel = CHANNEL_OF_OBJECT[json.loads(body)["object"]]
    return [parse_item_payload(i.payload, channel=channel, account=ACCOUNT[channel]) for i in items]


def one(name: str) -> tuple[str, ParseOutcome]:
    found = events(name)
    assert len(found) == 1
    return found[0].dedup_key, found[0].outcomes[0]


def test_every_fixture_names_its_source() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text()
    for path in FIXTURES.glob("*.json"):
        assert json.loads(path.read_text())["_source"]
        assert f"`{path.name}`" in sources


def test_messenger_text() -> None:
    key, msg = one("messenger_text")
    assert isinstance(msg, InboundMessage)
    assert key == "mid:m_1457764197618:41d102a3e1ae206a38"
    assert msg.channel == "facebook" and msg.account == PAGE
    assert msg.chat_id == msg.sender_id == "6789012345678901"
    assert msg.text == "Сәлеметсіз бе! Жолды қашан жөндейсіздер?"
    assert msg.sent_at == datetime(2016, 3, 23, 0, 25, 52, 478000, tzinfo=UTC)  # milliseconds
    assert msg.reply_to_key == "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU"
    assert msg.kind == "message" and not msg.is_edit


def test_messenger_image() -> None:
    key, msg = one("messenger_image")
    assert isinstance(msg, InboundMessage)
    assert key == "mid:mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c"
    assert msg.text == ""
    [photo] = msg.attachments
    assert photo.kind == "image" and photo.file_id and photo.file_id.startswith("https://")


def test_messenger_echo_is_never_an_appeal() -> None:
    _key, outcome = one("messenger_echo")
    assert outcome == Ignored("meta.echo")


def test_messenger_delivery_is_a_receipt_and_read_watermark_is_ignored() -> None:
    key, receipt = one("messenger_delivery")
    assert isinstance(receipt, DeliveryReceipt)
    assert key == "delivered:mid.1458668856218:ed81099e15d3f4f233"
    assert receipt.platform_message_ids == ("mid.1458668856218:ed81099e15d3f4f233",)
    assert receipt.state == "delivered" and receipt.code is None
    _key, read = one("messenger_read")
    assert read == Ignored("meta.read_watermark")  # names no message: nothing to update


def test_feed_comment_add_edited_remove_are_versions_of_one_comment() -> None:
    add_key, add = one("feed_comment_add")
    edit_key, edit = one("feed_comment_edited")
    remove_key, remove = one("feed_comment_remove")
    assert isinstance(add, InboundMessage) and isinstance(edit, InboundMessage)
    assert isinstance(remove, InboundMessage)
    comment = "555000111222333_9876543210"
    assert add.kind == edit.kind == remove.kind == "comment"
    assert add.chat_id == add.message_key == edit.message_key == remove.message_key == comment
    assert add.sender_name == "Айгүл Серікқызы"
    assert add.sent_at == datetime.fromtimestamp(1511949030, UTC)  # created_time: seconds
    assert add.text == "Аулада жарық жоқ, үш күн болды" and add.edited_at is None
    assert edit.text == "Аулада жарық жоқ, төрт күн болды"
    assert edit.edited_at == datetime.fromtimestamp(1511952630, UTC)  # the entry's time
    assert remove.deleted and not add.deleted and not edit.deleted
    assert len({add_key, edit_key, remove_key}) == 3 and add_key == f"comment:{comment}"


def test_the_pages_own_comment_is_ignored() -> None:
    assert one("feed_comment_by_page")[1] == Ignored("meta.comment_by_page")


def test_instagram_dm_edit_and_delete() -> None:
    dm_key, dm = one("instagram_dm")
    edit_key, edit = one("instagram_message_edit")
    gone_key, gone = one("instagram_is_deleted")
    assert isinstance(dm, InboundMessage) and isinstance(edit, InboundMessage)
    assert isinstance(gone, InboundMessage)
    assert dm.channel == "instagram" and dm.account == IG and dm.chat_id == "1133557799002244"
    assert dm.text == "Здравствуйте, когда откроют поликлинику?"
    assert edit.message_key == dm.message_key and edit.edited_at is not None
    assert edit.text.endswith("на Абая?")
    assert gone.deleted and gone.message_key == dm.message_key
    assert len({dm_key, edit_key, gone_key}) == 3


def test_instagram_unsupported_message_is_kept_as_an_attachment() -> None:
    _key, msg = one("instagram_unsupported")
    assert isinstance(msg, InboundMessage)
    assert [a.kind for a in msg.attachments] == ["unsupported"]


@pytest.mark.parametrize(
    ("name", "comment_id"),
    [
        ("instagram_comment_ig_login", "17865799348089039"),
        ("instagram_comment_fb_login", "17865799348089040"),
    ],
)
def test_instagram_comment_in_both_shapes(name: str, comment_id: str) -> None:
    key, msg = one(name)
    assert isinstance(msg, InboundMessage)
    assert key == f"comment:{comment_id}"
    assert msg.kind == "comment" and msg.chat_id == msg.message_key == comment_id
    assert msg.text and msg.sender_username
    assert msg.sent_at == datetime.fromtimestamp(1603059201, UTC)


def test_instagram_mention() -> None:
    key, msg = one("instagram_mention")
    assert isinstance(msg, InboundMessage)
    assert key == "comment:17895695668004550"
    assert [a.kind for a in msg.attachments] == ["mention"]
    assert msg.attachments[0].data["media_id"] == "17918195224117851"


def test_whatsapp_text_image_location_interactive() -> None:
    _k, text = one("whatsapp_text")
    _k, image = one("whatsapp_image")
    _k, where = one("whatsapp_location")
    key, button = one("whatsapp_interactive")
    for m in (text, image, where, button):
        assert isinstance(m, InboundMessage)
        assert (m.channel, m.account, m.chat_id) == ("whatsapp", WA_NUMBER, "16315551181")
        assert m.sender_name == "Kerry Fisher"
    assert isinstance(text, InboundMessage) and isinstance(image, InboundMessage)
    assert isinstance(where, InboundMessage) and isinstance(button, InboundMessage)
    assert text.text == "Сәлем! Субсидия туралы сұрағым бар"
    assert text.sent_at == datetime.fromtimestamp(1603059201, UTC)  # a string of seconds
    assert image.text == "Вот фото ямы" and image.attachments[0].file_id == "1003383421387256"
    assert where.attachments[0].data["latitude"] == 43.238949
    assert key.startswith("wamid:wamid.") and button.text == "Мәртебесі"
    assert button.reply_to_key == "wamid.HBgLMTYzMTU1NTExODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


def test_whatsapp_contacts_are_kept_as_contact_cards() -> None:
    key, msg = one("whatsapp_contacts")
    assert isinstance(msg, InboundMessage)
    assert key == "wamid:wamid.HBgLMTYzMTU1NTExODEVAgASGBQzRUIwQzc3OTVDMzc0NjhGMkNBMgA="
    assert (msg.chat_id, msg.sender_name) == ("16315551181", "Kerry Fisher")
    [card] = msg.attachments
    assert card.kind == "contact"
    assert card.data["name"]["formatted_name"] == "Айдос Серікұлы"
    assert card.data["phones"][0]["wa_id"] == "77015550123"


@pytest.mark.parametrize("name", ["messenger_reaction", "whatsapp_reaction"])
def test_reactions_are_never_appeals(name: str) -> None:
    _key, outcome = one(name)
    assert isinstance(outcome, Ignored) and "reaction" in outcome.reason


def test_a_standby_message_is_read_like_a_messaging_one() -> None:
    # A thread another app owns (handover protocol): the citizen's words still reach us, once.
    key, msg = one("messenger_standby")
    assert isinstance(msg, InboundMessage)
    assert key == "mid:m_standby_2b7a0d1f9c3e4a5b6c7d8e9f"
    assert (msg.channel, msg.chat_id, msg.text) == (
        "facebook",
        "6789012345678902",
        "Қоқыс полигоны туралы шағым",
    )


def test_whatsapp_statuses_are_receipts() -> None:
    wamid = "wamid.HBgLMTYzMTU1NTExODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    for state in ("sent", "delivered"):
        key, receipt = one(f"whatsapp_status_{state}")
        assert isinstance(receipt, DeliveryReceipt)
        assert key == f"status:{wamid}:{state}"
        assert (receipt.state, receipt.platform_message_ids, receipt.code) == (state, (wamid,), None)
    _key, failed = one("whatsapp_status_failed")
    assert isinstance(failed, DeliveryReceipt)
    assert failed.state == "failed" and failed.code == "meta.window_closed"
    assert failed.detail and "131047" in failed.detail and "24 hours" in failed.detail


def test_a_whatsapp_change_with_several_messages_is_one_event_each() -> None:
    doc = json.loads(fixture("whatsapp_text"))
    value = doc["entry"][0]["changes"][0]["value"]
    second = {**value["messages"][0], "id": "wamid.second"}
    value["messages"].append(second)
    value["statuses"] = json.loads(fixture("whatsapp_status_sent"))["entry"][0]["changes"][0]["value"][
        "statuses"
    ]
    items, _ = split_body(json.dumps(doc).encode())
    keys = [parse_item_payload(i.payload, channel="whatsapp", account=WA_NUMBER).dedup_key for i in items]
    assert len(keys) == 3 and keys[1] == "wamid:wamid.second" and keys[2].startswith("status:")


def test_an_item_for_another_account_is_kept_but_ignored() -> None:
    [event] = [
        parse_item_payload(i.payload, channel="facebook", account="999")
        for i in split_body(fixture("messenger_text"))[0]
    ]
    assert isinstance(event.outcomes[0], Ignored) and "other_account" in event.outcomes[0].reason


@pytest.mark.parametrize(
    "body",
    [
        b'{"object":"page","entry":[{"id":"1234567890123","messaging":[{"message":{"mid":"x"}}]}]}',
        b'{"object":"page","entry":[{"id":"1234567890123","messaging":[{"sender":{"id":"1"},"message":{}}]}]}',
        b'{"object":"page","entry":["boom"]}',
        b'{"object":"page","entry":[{"id":"1234567890123","messaging":[7]}]}',
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
        b'"value":{"metadata":{"phone_number_id":"106540352242922"},"messages":[{"id":"w","from":"1"}]}}]}]}',
    ],
)
def test_unreadable_items_are_quarantined_never_raised(body: bytes) -> None:
    items, problem = split_body(body)
    assert problem is None and items
    channel = CHANNEL_OF_OBJECT[json.loads(body)["object"]]
    for item in items:
        event = parse_item_payload(item.payload, channel=channel, account=ACCOUNT[channel])
        assert isinstance(event.outcomes[0], Quarantined), event.outcomes


@pytest.mark.parametrize("body", [b"", b"[]", b'{"object":"page"}', b'{"object":"x","entry":[]}', b"\xff"])
def test_unreadable_bodies_give_a_reason(body: bytes) -> None:
    items, problem = split_body(body)
    assert items == [] and problem
