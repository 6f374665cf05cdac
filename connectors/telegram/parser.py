"""Pure Telegram Bot API update parser: exact webhook/getUpdates bytes in, domain outcomes out (no I/O)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adaldyk_bots.domain import Attachment, Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.jsonfields import (
    JsonFields,
    Unparseable,
    is_int,
    is_int64,
    is_number,
    loads,
    payload_failure,
    short,
    type_name,
)

_f = JsonFields("telegram")

__all__ = ["CHANNEL", "TELEGRAM_TEXT_LIMIT", "parse_update", "parse_update_payload"]

CHANNEL = "telegram"

# sendMessage accepts 1-4096 characters after entities parsing (platforms.md §1d). Exported here so the
# connector's `text_limit` and the parser share one source of truth about Telegram.
TELEGRAM_TEXT_LIMIT = 4096

# Only private dialogs become appeals; these chat types are a documented policy skip, not an error.
_GROUP_CHAT_TYPES = frozenset({"group", "supergroup", "channel"})

# A reason code must stay short and log-safe even when the platform invents a long key name.

# Message fields that describe the envelope rather than what the citizen sent. Used only to decide
# whether a content-less message is a plain service notice or a content kind we do not model yet.
_ENVELOPE_KEYS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "date",
        "edit_date",
        "chat",
        "business_connection_id",
        "forward_origin",
        "forward_from",
        "forward_from_chat",
        "forward_from_message_id",
        "forward_signature",
        "forward_sender_name",
        "forward_date",
        "is_topic_message",
        "is_automatic_forward",
        "is_from_offline",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "via_bot",
        "has_protected_content",
        "media_group_id",
        "author_signature",
        "entities",
        "caption_entities",
        "link_preview_options",
        "effect_id",
        "show_caption_above_media",
        "has_media_spoiler",
        "reply_markup",
    }
)

# Telegram service notices (core.telegram.org/bots/api#message). In a private chat they carry nothing
# the citizen wrote, so they are ignored rather than quarantined.
_SERVICE_KEYS = frozenset(
    {
        "pinned_message",
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "connected_website",
        "write_access_allowed",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "successful_payment",
        "refunded_payment",
        "gift",
        "unique_gift",
    }
)


# Update types (Bot API, Update) that never carry a citizen's words to us; anything else we cannot parse
# is quarantined. Most are not even requested (connector.ALLOWED_UPDATES).
_IGNORED_UPDATE_TYPES = frozenset(
    {
        "inline_query",
        "chosen_inline_result",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
        "message_reaction",
        "message_reaction_count",
        "business_connection",
        "deleted_business_messages",
    }
)

# Update fields holding a Message: the content is identified by its chat and message id (and, for an
# edit, its edit_date), whatever update_id it came under.
_MESSAGE_UPDATE_TYPES = ("message", "edited_message", "channel_post", "edited_channel_post")
_MAX_KEY = 150  # raw_event.dedup_key holds 200


def _dedup_key(update: Mapping[str, Any], update_id: int) -> str:
    """The raw event's dedup key: what identifies the content, not the update_id alone.

    Telegram picks a random update_id again after a week without updates (Bot API, getUpdates), so a key
    `update:<id>` kept forever would one day drop a new message as a duplicate. A redelivery of the same
    update (webhook retry, a poll repeated before the offset was confirmed) still gets the same key."""
    for kind in _MESSAGE_UPDATE_TYPES:
        msg = update.get(kind)
        if not isinstance(msg, dict):
            continue
        chat = msg.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        message_id = msg.get("message_id")
        edit_date = msg.get("edit_date")
        if is_int(chat_id) and is_int(message_id):
            if not kind.startswith("edited_"):
                return _bounded(f"{kind}:{chat_id}:{message_id}")
            if is_int(edit_date):
                return _bounded(f"{kind}:{chat_id}:{message_id}:{edit_date}")
        break
    # No content id to trust (another update type, or a broken message): the update_id with a hash of the
    # content, so a reused update_id carrying something else is a new event.
    canonical = json.dumps(update, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return _bounded(f"update:{update_id}:{digest}")


def _bounded(key: str) -> str:
    # An absurdly long id is hashed, never cut short: two different ids must not meet in one key.
    return key if len(key) <= _MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _req_number(obj: Mapping[str, Any], key: str, path: str) -> float:
    value = obj.get(key)
    if value is None:
        raise _f.missing(path)
    if not is_number(value):
        raise _f.bad(path, "number", value)
    try:
        return float(value)
    except OverflowError:
        # A JSON integer too large for a float is not a coordinate.
        raise Unparseable(f"telegram.bad_field: {path} (number out of range)") from None


def _file_attachment(kind: str, obj: Mapping[str, Any], path: str, **data: Any) -> Attachment:
    # Without file_id the file can never be fetched, so that is a quarantine, not a silent drop.
    return Attachment(
        kind=kind,
        file_id=_f.req_str(obj, "file_id", f"{path}.file_id"),
        file_unique_id=_f.opt_str(obj, "file_unique_id"),
        name=_f.opt_str(obj, "file_name"),
        mime_type=_f.opt_str(obj, "mime_type"),
        size=_f.opt_int(obj, "file_size"),
        data={k: v for k, v in data.items() if v is not None},
    )


def _largest_photo(sizes: list[Any], path: str) -> Attachment | None:
    if not sizes:
        return None
    checked: list[dict[str, Any]] = []
    for index, size in enumerate(sizes):
        if not isinstance(size, dict):
            raise _f.bad(f"{path}[{index}]", "object", size)
        checked.append(size)

    def area(size: Mapping[str, Any]) -> int:
        return (_f.opt_int(size, "width") or 0) * (_f.opt_int(size, "height") or 0)

    # Telegram usually lists sizes smallest-first, but that order is not documented; pick explicitly.
    # file_size is the best measure when every size has it; otherwise fall back to pixel area.
    if all(_f.opt_int(size, "file_size") is not None for size in checked):
        best_index = max(
            range(len(checked)), key=lambda i: (_f.opt_int(checked[i], "file_size") or 0, area(checked[i]))
        )
    else:
        best_index = max(range(len(checked)), key=lambda i: area(checked[i]))
    best = checked[best_index]
    return Attachment(
        kind="photo",
        file_id=_f.req_str(best, "file_id", f"{path}[{best_index}].file_id"),
        file_unique_id=_f.opt_str(best, "file_unique_id"),
        size=_f.opt_int(best, "file_size"),
        data={"width": _f.opt_int(best, "width"), "height": _f.opt_int(best, "height")},
    )


def _location_data(location: Mapping[str, Any], path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "latitude": _req_number(location, "latitude", f"{path}.latitude"),
        "longitude": _req_number(location, "longitude", f"{path}.longitude"),
    }
    accuracy = location.get("horizontal_accuracy")
    if is_number(accuracy):
        data["horizontal_accuracy"] = accuracy
    return data


def _attachments(msg: Mapping[str, Any], path: str, sender_id: int) -> tuple[Attachment, ...]:
    found: list[Attachment] = []

    photo = msg.get("photo")
    if photo is not None:
        if not isinstance(photo, list):
            raise _f.bad(f"{path}.photo", "array", photo)
        largest = _largest_photo(photo, f"{path}.photo")
        if largest is not None:
            found.append(largest)

    # For GIFs Telegram also fills `document` "for backward compatibility" (Bot API, Message.animation);
    # reading both would show the moderator the same file twice.
    if msg.get("animation") is None and msg.get("document") is not None:
        document = _f.req_object(msg, "document", f"{path}.document")
        found.append(_file_attachment("document", document, f"{path}.document"))

    if msg.get("animation") is not None:
        animation = _f.req_object(msg, "animation", f"{path}.animation")
        found.append(
            _file_attachment(
                "animation",
                animation,
                f"{path}.animation",
                width=_f.opt_int(animation, "width"),
                height=_f.opt_int(animation, "height"),
                duration=_f.opt_int(animation, "duration"),
            )
        )

    if msg.get("video") is not None:
        video = _f.req_object(msg, "video", f"{path}.video")
        found.append(
            _file_attachment(
                "video",
                video,
                f"{path}.video",
                width=_f.opt_int(video, "width"),
                height=_f.opt_int(video, "height"),
                duration=_f.opt_int(video, "duration"),
            )
        )

    if msg.get("video_note") is not None:
        note = _f.req_object(msg, "video_note", f"{path}.video_note")
        found.append(
            _file_attachment(
                "video_note",
                note,
                f"{path}.video_note",
                length=_f.opt_int(note, "length"),
                duration=_f.opt_int(note, "duration"),
            )
        )

    if msg.get("audio") is not None:
        audio = _f.req_object(msg, "audio", f"{path}.audio")
        found.append(
            _file_attachment(
                "audio",
                audio,
                f"{path}.audio",
                duration=_f.opt_int(audio, "duration"),
                performer=_f.opt_str(audio, "performer"),
                title=_f.opt_str(audio, "title"),
            )
        )

    if msg.get("voice") is not None:
        voice = _f.req_object(msg, "voice", f"{path}.voice")
        found.append(
            _file_attachment("voice", voice, f"{path}.voice", duration=_f.opt_int(voice, "duration"))
        )

    if msg.get("sticker") is not None:
        sticker = _f.req_object(msg, "sticker", f"{path}.sticker")
        emoji = _f.opt_str(sticker, "emoji")
        found.append(_file_attachment("sticker", sticker, f"{path}.sticker", emoji=emoji))

    # A venue message also carries `location` "for backward compatibility"; one venue item is enough.
    if msg.get("venue") is not None:
        venue = _f.req_object(msg, "venue", f"{path}.venue")
        venue_location = _f.req_object(venue, "location", f"{path}.venue.location")
        data = _location_data(venue_location, f"{path}.venue.location")
        data["title"] = _f.opt_str(venue, "title")
        data["address"] = _f.opt_str(venue, "address")
        found.append(Attachment(kind="venue", data=data))
    elif msg.get("location") is not None:
        location = _f.req_object(msg, "location", f"{path}.location")
        found.append(Attachment(kind="location", data=_location_data(location, f"{path}.location")))

    if msg.get("contact") is not None:
        contact = _f.req_object(msg, "contact", f"{path}.contact")
        user_id = _f.opt_int(contact, "user_id")
        found.append(
            Attachment(
                kind="contact",
                data={
                    "phone_number": _f.opt_str(contact, "phone_number"),
                    "first_name": _f.opt_str(contact, "first_name"),
                    "last_name": _f.opt_str(contact, "last_name"),
                    "user_id": user_id,
                    # A shared contact may be anyone's card; only a match with the sender proves the
                    # number is the citizen's own (platforms.md §1e).
                    "is_sender_own": user_id is not None and user_id == sender_id,
                },
            )
        )

    if msg.get("poll") is not None:
        poll = _f.req_object(msg, "poll", f"{path}.poll")
        found.append(Attachment(kind="poll", data={"question": _f.opt_str(poll, "question")}))

    return tuple(found)


def _text(msg: Mapping[str, Any], path: str) -> str | None:
    # Returned exactly as sent: no strip, no normalisation; the appeal must quote the citizen verbatim.
    for key in ("text", "caption"):
        value = msg.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _f.bad(f"{path}.{key}", "string", value)
        return value
    return None


def _sender_name(sender: Mapping[str, Any]) -> str | None:
    parts = [part for part in (_f.opt_str(sender, "first_name"), _f.opt_str(sender, "last_name")) if part]
    name = " ".join(parts).strip()
    return name or None


def _parse_message(msg: dict[str, Any], path: str, *, account: str, is_edit: bool) -> ParseOutcome:
    chat = _f.req_object(msg, "chat", f"{path}.chat")
    chat_id = _f.req_int(chat, "id", f"{path}.chat.id")
    chat_type = _f.req_str(chat, "type", f"{path}.chat.type")

    # Sender before chat: a bot (incl. GroupAnonymousBot, platforms.md §1e) is never a citizen, in any chat.
    sender_value = msg.get("from")
    if isinstance(sender_value, dict) and sender_value.get("is_bot") is True:
        return Ignored("telegram.from_bot")

    if chat_type in _GROUP_CHAT_TYPES:
        return Ignored("telegram.group_chat")
    if chat_type != "private":
        # An unknown chat type could be a new kind of dialog with a citizen: keep it visible for replay.
        return Quarantined(f"telegram.bad_field: {path}.chat.type (unknown chat type {short(chat_type)!r})")

    sender = _f.req_object(msg, "from", f"{path}.from")
    sender_id = _f.req_int(sender, "id", f"{path}.from.id")
    message_id = _f.req_int(msg, "message_id", f"{path}.message_id")
    sent_at = _f.utc(_f.req_int(msg, "date", f"{path}.date"), f"{path}.date")

    edited_at: datetime | None = None
    if is_edit:
        # Without edit_date an edit would look like a second message with the same key.
        edited_at = _f.utc(_f.req_int(msg, "edit_date", f"{path}.edit_date"), f"{path}.edit_date")

    text = _text(msg, path)
    attachments = _attachments(msg, path, sender_id)

    if text is None and not attachments:
        content_keys = sorted(set(msg) - _ENVELOPE_KEYS - _SERVICE_KEYS)
        if content_keys:
            # Something the citizen sent that we cannot read yet (a new kind, or one we do not model):
            # kept for `adaldyk replay` once the parser knows it, never silently dropped.
            return Quarantined(f"telegram.unsupported_content:{short(content_keys[0])}")
        return Ignored("telegram.service_message")

    reply_to_key: str | None = None
    reply_to = msg.get("reply_to_message")
    if isinstance(reply_to, dict):
        reply_id = _f.opt_int(reply_to, "message_id")
        reply_to_key = str(reply_id) if reply_id is not None else None

    group = msg.get("media_group_id")
    group_key = group if isinstance(group, str) else (str(group) if is_int64(group) else None)

    return InboundMessage(
        channel=CHANNEL,
        account=account,
        chat_id=str(chat_id),
        message_key=str(message_id),
        sender_id=str(sender_id),
        sent_at=sent_at,
        text=text or "",
        sender_name=_sender_name(sender),
        sender_username=_f.opt_str(sender, "username"),
        language_hint=_f.opt_str(sender, "language_code"),
        attachments=attachments,
        edited_at=edited_at,
        reply_to_key=reply_to_key,
        group_key=group_key,
        kind="message",
    )


def _parse_callback(query: dict[str, Any], account: str) -> ParseOutcome:
    """A press of an inline button under one of our messages (Bot API, CallbackQuery): the button's
    callback_data is the choice (domain.Choice.id); the text is the pressed button's label, found in the
    message's reply_markup, so the history reads what the citizen chose."""
    sender = _f.req_object(query, "from", "callback_query.from")
    if sender.get("is_bot") is True:
        return Ignored("telegram.from_bot")
    data = _f.opt_str(query, "data")
    message = query.get("message")
    if data is None or not isinstance(message, dict):
        # A game's button or an inline-mode message (no chat, e.g. Telegram's own sample in
        # fixtures/doc_callback_query.json): nothing a citizen asked of us.
        return Ignored("telegram.unsupported_update:callback_query")
    chat = _f.req_object(message, "chat", "callback_query.message.chat")
    if _f.req_str(chat, "type", "callback_query.message.chat.type") != "private":
        return Ignored("telegram.group_chat")
    label = data
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                label = str(button.get("text") or data)
    # A CallbackQuery has no date of its own; the message it is under gives a stable, replayable one.
    sent_at = _f.utc(
        _f.req_int(message, "date", "callback_query.message.date"), "callback_query.message.date"
    )
    return InboundMessage(
        channel=CHANNEL,
        account=account,
        chat_id=str(_f.req_int(chat, "id", "callback_query.message.chat.id")),
        message_key=f"callback:{_f.req_str(query, 'id', 'callback_query.id')}",
        sender_id=str(_f.req_int(sender, "id", "callback_query.from.id")),
        sent_at=sent_at,
        text=label,
        sender_name=_sender_name(sender),
        sender_username=_f.opt_str(sender, "username"),
        language_hint=_f.opt_str(sender, "language_code"),
        kind="message",
        choice=data,
    )


def _parse(update: Mapping[str, Any], account: str) -> ParseOutcome:
    for key in ("message", "edited_message"):
        if key in update:
            msg = _f.req_object(update, key, key)
            return _parse_message(msg, key, account=account, is_edit=key == "edited_message")

    if "callback_query" in update:
        return _parse_callback(_f.req_object(update, "callback_query", "callback_query"), account)
    if "channel_post" in update or "edited_channel_post" in update:
        return Ignored("telegram.channel_post")
    if "my_chat_member" in update:
        return Ignored("telegram.my_chat_member")

    others = [key for key in update if key != "update_id"]
    if not others:
        raise _f.missing("update content (no update type field)")
    # Update carries at most one optional field (Bot API, Update), so the first other key is its type.
    if others[0] in _IGNORED_UPDATE_TYPES:
        return Ignored(f"telegram.unsupported_update:{short(others[0])}")
    # A type we do not know (e.g. business_message) may carry a citizen's words: keep it for replay.
    return Quarantined(f"telegram.unknown_update:{short(others[0])}")


def parse_update(update: dict[str, Any], *, account: str) -> ParseOutcome:
    """Turn one decoded Telegram `Update` object into a domain outcome. Never raises on bad data."""
    try:
        return _parse(update, account)
    except Unparseable as exc:
        return Quarantined(exc.reason)


def parse_update_payload(payload: bytes, *, account: str) -> RawEvent:
    """Decode the exact bytes Telegram sent (UTF-8 JSON `Update`) into a RawEvent. Never raises."""
    try:
        return _parse_update_payload(payload, account)
    except Exception as exc:  # total by contract: whatever the bytes, they are kept with a reason
        return payload_failure(payload, f"telegram.parser_error: {type(exc).__name__}")


def _parse_update_payload(payload: bytes, account: str) -> RawEvent:
    try:
        update = loads(payload, CHANNEL)
    except Unparseable as exc:
        return payload_failure(payload, exc.reason)

    if not isinstance(update, dict):
        return payload_failure(payload, f"telegram.not_an_object: got {type_name(update)}")
    update_id = update.get("update_id")
    if update_id is None:
        return payload_failure(payload, "telegram.missing_field: update_id")
    if not is_int(update_id):
        got = type_name(update_id)
        return payload_failure(payload, f"telegram.bad_field: update_id (expected integer, got {got})")
    if not is_int64(update_id):
        return payload_failure(payload, "telegram.bad_field: update_id (integer out of range)")

    try:
        outcome = parse_update(update, account=account)
    except Exception as exc:  # a parser bug must quarantine the update, never drop the citizen's message
        outcome = Quarantined(f"telegram.parser_error: {type(exc).__name__}: {exc}")
    try:
        key = _dedup_key(update, update_id)
    except Exception:  # never lose the update over its key: the exact bytes identify it too
        key = "sha256:" + hashlib.sha256(payload).hexdigest()
    return RawEvent(dedup_key=key, payload=payload, outcomes=[outcome])
