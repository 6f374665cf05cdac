"""Pure VK community event parser: the bytes of one Callback API body or Long Poll update in, outcomes out."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adaldyk_bots import safejson
from adaldyk_bots.domain import Attachment, Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.jsonfields import (
    JsonFields,
    Unparseable,
    body_key,
    loads,
    payload_failure,
    short,
    type_name,
)

_f = JsonFields("vk")

__all__ = [
    "CHANNEL",
    "CHAT_PEER_BASE",
    "VK_TEXT_LIMIT",
    "WallKey",
    "parse_attachments",
    "parse_event",
    "parse_event_payload",
]

CHANNEL = "vk"

# messages.send `message`: maxLength 9000 (VKCOM/vk-api-schema messages/methods.json; platforms.md §2d).
VK_TEXT_LIMIT = 9000

# peer_id of a multi-user chat is 2000000000 + chat_id (messages.send, `peer_id`); only dialogs are appeals.
CHAT_PEER_BASE = 2_000_000_000

# client_info.lang_id -> our languages. The numbering is VK's (VK ID SDK `Languages`: RUS 0, UKR 1,
# ENG 3, KAZ 97, https://vkcom.github.io/vkid-web-sdk/docs/enums/types.Languages.html).
_LANG_IDS = {0: "ru", 3: "en", 97: "kk"}

# What a VK event_id looks like (hex in every recorded event); anything else is hashed into the key.
_PLAIN_EVENT_ID = re.compile(r"[0-9A-Za-z_.:-]{1,150}")

# Event types that are authentic but never an appeal: a documented skip, not an error.
_SKIPPED_TYPES = frozenset(
    {
        "message_reply",  # our own outgoing message, echoed
        "message_allow",
        "message_deny",
        "message_typing_state",
        "message_read",
        "message_event",
        "message_reaction_event",
        "confirmation",  # answered by the webhook before anything is stored
    }
)


def _number(obj: Mapping[str, Any], key: str, path: str) -> float:
    value = obj.get(key)
    if value is None:
        raise _f.missing(path)
    # VK has sent coordinates as strings in older versions; both are the same number.
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not math.isfinite(number):  # "nan" or "1e999" as a string: no JSON column would hold it
            raise ValueError
        return number
    except (TypeError, ValueError, OverflowError):
        raise _f.bad(path, "number", value) from None


def _text(obj: Mapping[str, Any], path: str) -> str:
    # Returned exactly as sent: the appeal quotes the citizen verbatim.
    value = obj.get("text", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _f.bad(f"{path}.text", "string", value)
    return value


# --- attachments ------------------------------------------------------------------------------------


def _media_ref(kind: str, item: Mapping[str, Any]) -> str | None:
    # VK's own attachment reference ("photo<owner>_<id>[_<access_key>]", messages.send `attachment`):
    # enough to fetch the file again with the community token.
    owner, item_id = _f.opt_int(item, "owner_id"), _f.opt_int(item, "id")
    if owner is None or item_id is None:
        return None
    key = _f.opt_str(item, "access_key")
    return f"{kind}{owner}_{item_id}" + (f"_{key}" if key else "")


def _largest(sizes: object, url_key: str) -> dict[str, Any]:
    if not isinstance(sizes, list):
        return {}
    best: dict[str, Any] = {}
    for size in sizes:
        if isinstance(size, dict):
            area = (_f.opt_int(size, "width") or 0) * (_f.opt_int(size, "height") or 0)
            if not best or area > best["area"]:
                best = {"area": area, "size": size}
    if not best:
        return {}
    size = best["size"]
    return {
        "url": _f.opt_str(size, url_key),
        "width": _f.opt_int(size, "width"),
        "height": _f.opt_int(size, "height"),
    }


def _attachment(item: Mapping[str, Any], path: str) -> Attachment:
    kind = item.get("type")
    if not isinstance(kind, str) or not kind:
        raise _f.bad(f"{path}.type", "string", kind)
    body = item.get(kind)
    if not isinstance(body, dict):
        # A type we know nothing about, without its object: keep the marker so nothing is silently lost.
        return Attachment(kind=short(kind))
    if kind == "photo":
        data = _largest(body.get("sizes"), "url")
        return Attachment(kind="photo", file_id=_media_ref("photo", body), data=data)
    if kind == "doc":
        ext = _f.opt_str(body, "ext")
        return Attachment(
            kind="document",
            file_id=_media_ref("doc", body),
            name=_f.opt_str(body, "title"),
            size=_f.opt_int(body, "size"),
            data={k: v for k, v in {"ext": ext, "url": _f.opt_str(body, "url")}.items() if v is not None},
        )
    if kind == "audio_message":
        data = {
            "duration": _f.opt_int(body, "duration"),
            "link_ogg": _f.opt_str(body, "link_ogg"),
            "link_mp3": _f.opt_str(body, "link_mp3"),
        }
        return Attachment(
            kind="voice",
            file_id=_media_ref("audio_message", body),
            mime_type="audio/ogg",
            data={k: v for k, v in data.items() if v is not None},
        )
    if kind == "sticker":
        return Attachment(kind="sticker", file_id=str(body.get("sticker_id", "")) or None)
    # video, audio, wall, link, poll, graffiti, market...: the reference is what a moderator needs.
    return Attachment(kind=short(kind), file_id=_media_ref(kind, body))


def _geo(geo: object, path: str) -> Attachment:
    if not isinstance(geo, dict):
        raise _f.bad(path, "object", geo)
    coordinates = geo.get("coordinates")
    if not isinstance(coordinates, dict):
        raise _f.bad(f"{path}.coordinates", "object", coordinates)
    data: dict[str, Any] = {
        "latitude": _number(coordinates, "latitude", f"{path}.coordinates.latitude"),
        "longitude": _number(coordinates, "longitude", f"{path}.coordinates.longitude"),
    }
    place = geo.get("place")
    if isinstance(place, dict) and isinstance(place.get("title"), str):
        data["title"] = place["title"]
    return Attachment(kind="location", data=data)


def parse_attachments(obj: Mapping[str, Any], path: str = "message") -> tuple[Attachment, ...]:
    """Attachments of a VK message or wall comment, plus its `geo` (a message field, not an attachment)."""
    found: list[Attachment] = []
    items = obj.get("attachments")
    if items is not None:
        if not isinstance(items, list):
            raise _f.bad(f"{path}.attachments", "array", items)
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _f.bad(f"{path}.attachments[{index}]", "object", item)
            found.append(_attachment(item, f"{path}.attachments[{index}]"))
    if obj.get("geo") is not None:
        found.append(_geo(obj["geo"], f"{path}.geo"))
    forwarded = obj.get("fwd_messages")
    if isinstance(forwarded, list) and forwarded:
        # Forwarded messages are often the citizen's evidence; keep who wrote what and when.
        kept = [
            {
                "from_id": _f.opt_int(f, "from_id"),
                "date": _f.opt_int(f, "date"),
                "text": _f.opt_str(f, "text"),
            }
            for f in forwarded
            if isinstance(f, dict)
        ]
        found.append(Attachment(kind="forwarded", data={"messages": kept}))
    return tuple(found)


# --- events -----------------------------------------------------------------------------------------


class WallKey:
    """`wall<owner>_<post>_<comment>`: how a wall comment is keyed, in VK's own reference style, so that a
    reply target can be rebuilt from the message key alone."""

    PREFIX = "wall"

    @staticmethod
    def make(owner_id: int, post_id: int, comment_id: int | None = None) -> str:
        tail = f"_{comment_id}" if comment_id is not None else ""
        return f"wall{owner_id}_{post_id}{tail}"

    @staticmethod
    def split(key: str | None) -> tuple[int, int, int | None] | None:
        """(owner_id, post_id, comment_id or None), or None when `key` is not a wall key."""
        if not key or not key.startswith("wall"):
            return None
        parts = key[4:].split("_")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            return None
        if len(numbers) == 2:
            return numbers[0], numbers[1], None
        if len(numbers) == 3:
            return numbers[0], numbers[1], numbers[2]
        return None


def _language_hint(client_info: object) -> str | None:
    if isinstance(client_info, dict):
        lang_id = _f.opt_int(client_info, "lang_id")
        if lang_id is not None:
            return _LANG_IDS.get(lang_id)
    return None


def _parse_message(
    message: Mapping[str, Any], path: str, *, account: str, client_info: object, is_edit: bool
) -> ParseOutcome:
    peer_id = _f.req_int(message, "peer_id", f"{path}.peer_id")
    from_id = _f.req_int(message, "from_id", f"{path}.from_id")
    # `out` = 1 or a negative author: the community itself (or another community) wrote it; answering it
    # would make the bot talk to itself.
    if message.get("out") == 1 or from_id < 0:
        return Ignored("vk.own_message")
    if peer_id >= CHAT_PEER_BASE:
        # Same documented policy as Telegram groups: only private dialogs are appeals. (message.id is 0
        # here, so a chat message could not be keyed by it anyway; platforms.md §2e.)
        return Ignored("vk.group_chat")
    if peer_id != from_id:
        return Quarantined(f"vk.bad_field: {path}.peer_id (dialog {peer_id} but author {from_id})")

    # conversation_message_id, never message.id: id is 0 in chats and VK documents cmid as the
    # per-peer counter (platforms.md §2e, DESIGN.md invariant 2).
    cmid = _f.req_int(message, "conversation_message_id", f"{path}.conversation_message_id")
    sent_at = _f.utc(_f.req_int(message, "date", f"{path}.date"), f"{path}.date")
    edited_at: datetime | None = None
    if is_edit:
        # Without update_time an edit would look like the original message arriving twice.
        edited_at = _f.utc(_f.req_int(message, "update_time", f"{path}.update_time"), f"{path}.update_time")

    text = _text(message, path)
    attachments = parse_attachments(message, path)
    if not text and not attachments:
        return Ignored("vk.service_message" if "action" in message else "vk.empty_message")

    reply_to_key: str | None = None
    reply = message.get("reply_message")
    if isinstance(reply, dict) and _f.opt_int(reply, "conversation_message_id") is not None:
        reply_to_key = str(reply["conversation_message_id"])

    return InboundMessage(
        channel=CHANNEL,
        account=account,
        chat_id=str(peer_id),
        message_key=str(cmid),
        sender_id=str(from_id),
        sent_at=sent_at,
        text=text,
        language_hint=_language_hint(client_info),
        attachments=attachments,
        edited_at=edited_at,
        reply_to_key=reply_to_key,
        kind="message",
        choice=_choice(message.get("payload")),
    )


def _choice(payload: object) -> str | None:
    """A keyboard button's press: message.payload is the button's payload, a JSON string (connector.
    keyboard_json writes {"choice": <id>}); anything else (another bot's buttons, {"command":"start"} of
    the Start button) is no choice of ours."""
    if not isinstance(payload, str):
        return None
    try:
        value = safejson.loads(payload.encode())
    except safejson.NotJson:
        return None
    choice = value.get("choice") if isinstance(value, dict) else None
    return choice if isinstance(choice, str) and choice else None


def _parse_wall_comment(comment: Mapping[str, Any], account: str) -> ParseOutcome:
    path = "object"
    from_id = _f.req_int(comment, "from_id", f"{path}.from_id")
    if from_id < 0:
        # Comments by a community, including our own public invitations: never an appeal.
        return Ignored("vk.comment_by_community")
    comment_id = _f.req_int(comment, "id", f"{path}.id")
    post_id = _f.req_int(comment, "post_id", f"{path}.post_id")
    # owner_id in current versions; post_owner_id in older ones (both seen in recorded events).
    owner_id = _f.opt_int(comment, "owner_id")
    if owner_id is None:
        owner_id = _f.req_int(comment, "post_owner_id", f"{path}.owner_id")
    sent_at = _f.utc(_f.req_int(comment, "date", f"{path}.date"), f"{path}.date")
    text = _text(comment, path)
    attachments = parse_attachments(comment, path)
    if not text and not attachments:
        return Ignored("vk.empty_comment")
    reply_to = _f.opt_int(comment, "reply_to_comment")
    return InboundMessage(
        channel=CHANNEL,
        account=account,
        # The conversation is the citizen, as for a dialog: a later private message from the same person
        # joins the appeal their comment opened, and answers go to them privately.
        chat_id=str(from_id),
        message_key=WallKey.make(owner_id, post_id, comment_id),
        sender_id=str(from_id),
        sent_at=sent_at,
        text=text,
        attachments=attachments,
        reply_to_key=WallKey.make(owner_id, post_id, reply_to) if reply_to else None,
        kind="comment",
    )


def _parse(event: Mapping[str, Any], account: str) -> ParseOutcome:
    kind = event.get("type")
    if not isinstance(kind, str):
        raise _f.bad("type", "string", kind) if kind is not None else _f.missing("type")
    group_id = event.get("group_id")
    if group_id is not None and str(group_id) != account:
        return Quarantined(f"vk.bad_field: group_id (event for community {group_id}, this is {account})")
    if kind in _SKIPPED_TYPES:
        return Ignored(f"vk.{kind}")
    if kind == "message_new":
        obj = _f.req_object(event, "object", "object")
        if "message" in obj:
            message = _f.req_object(obj, "message", "object.message")
            return _parse_message(
                message, "object.message", account=account, client_info=obj.get("client_info"), is_edit=False
            )
        # API < 5.103 sends the message itself as the object (community-events json-schema); a callback
        # server configured with an old version must not lose the citizen's words.
        return _parse_message(obj, "object", account=account, client_info=None, is_edit=False)
    if kind == "message_edit":
        message = _f.req_object(event, "object", "object")
        return _parse_message(message, "object", account=account, client_info=None, is_edit=True)
    if kind == "wall_reply_new":
        return _parse_wall_comment(_f.req_object(event, "object", "object"), account)
    return Ignored(f"vk.unsupported_event:{short(kind)}")


def parse_event(event: dict[str, Any], *, account: str) -> ParseOutcome:
    """One decoded VK event (Callback API body or Long Poll update) to a domain outcome. Never raises."""
    try:
        return _parse(event, account)
    except Unparseable as exc:
        return Quarantined(exc.reason)


def parse_event_payload(payload: bytes, *, account: str) -> RawEvent:
    """The exact bytes of one event to a RawEvent keyed `event:<event_id>`. Never raises."""
    try:
        return _parse_event_payload(payload, account)
    except Exception as exc:  # total by contract: whatever the bytes, they are kept with a reason
        return payload_failure(payload, f"vk.parser_error: {type(exc).__name__}")


def _parse_event_payload(payload: bytes, account: str) -> RawEvent:
    try:
        event = loads(payload, CHANNEL)
    except Unparseable as exc:
        return payload_failure(payload, exc.reason)
    if not isinstance(event, dict):
        return payload_failure(payload, f"vk.not_an_object: got {type_name(event)}")
    event_id = event.get("event_id")
    try:
        outcome = parse_event(event, account=account)
    except Exception as exc:  # a parser bug must quarantine the event, never drop the citizen's message
        outcome = Quarantined(f"vk.parser_error: {type(exc).__name__}: {exc}")
    if not isinstance(event_id, str) or not event_id:
        # callback_base.event_id is required (VKCOM/vk-api-schema); without it the bytes are the key, and
        # the message-level key (peer, conversation_message_id) still stops a second appeal.
        return RawEvent(dedup_key=body_key(payload), payload=payload, outcomes=[outcome])
    # event_id is a 40-hex string in every recorded event; an oversized or strange one (control
    # characters, lone surrogates) is hashed, never cut short or cleaned, so two distinct ids can never
    # share a key.
    if not _PLAIN_EVENT_ID.fullmatch(event_id):
        event_id = "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return RawEvent(dedup_key=f"event:{event_id}", payload=payload, outcomes=[outcome])
