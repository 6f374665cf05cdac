"""Meta webhook bodies → domain outcomes, as pure functions (Facebook Page, Instagram, WhatsApp).

One POST carries up to 1000 items (`entry[]`, each with `messaging[]`, `standby[]` or `changes[]`;
a WhatsApp change may hold several `messages[]` and `statuses[]`). `split_body` cuts it into one item
per stored event, each wrapped with what it needs to be read alone later (`object`, the entry's id and
time): `{"object", "entry_id", "entry_time", "kind", "item"}`. `parse_item` reads one such item.

Conventions (shared with the outbound side, connectors/meta/send.py):
- a direct message: chat_id = the sender's page-/Instagram-scoped id (PSID / IGSID) or WhatsApp wa_id,
  message_key = the platform's message id (`mid`, `wamid`);
- a comment: kind="comment", chat_id = message_key = the comment id (the private or public reply goes
  to the comment: `recipient.comment_id`, `/{comment-id}/comments|replies`); commenter ids are not
  message-scoped ids, so a comment is its own conversation;
- dedup keys `mid:<mid>`, `comment:<id>` (+ `:edited:<time>` / `:removed`), `wamid:<id>`; a receipt
  `status:<id>:<state>`; each scoped to the (channel, account) the item was routed to, which is our
  Page, Instagram account or WhatsApp phone number id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adaldyk_bots.domain import (
    Attachment,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    ParseOutcome,
    Quarantined,
)
from adaldyk_bots.ports import RawEvent
from connectors.jsonfields import (
    JsonFields,
    Unparseable,
    body_key,
    is_number,
    loads,
    payload_failure,
    short,
    type_name,
)

# Meta's `object` of each product's webhook bodies, and our channel for it.
CHANNEL_OF_OBJECT = {"page": "facebook", "instagram": "instagram", "whatsapp_business_account": "whatsapp"}
OBJECT_OF_CHANNEL = {v: k for k, v in CHANNEL_OF_OBJECT.items()}
MAX_ITEMS_PER_BODY = 1000  # Meta batches up to 1000 updates per POST (platforms.md §3)
MAX_KEY_ID = 200  # ids are ~40-100 characters; a longer one is hashed into the key, never cut

# WhatsApp `errors[].code` that mean the 24-hour customer-service window is closed (platforms.md §5).
WINDOW_CLOSED_CODES = frozenset({131047})


@dataclass(frozen=True)
class Item:
    """One item of a body, with the account it belongs to and the bytes to store for it."""

    channel: str
    account: str
    payload: bytes


def body_object(body: bytes) -> str | None:
    """The body's `object` (page / instagram / whatsapp_business_account), or None. Never raises."""
    try:
        doc = loads(body, "meta")
    except Unparseable:
        return None
    value = doc.get("object") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def dump_item(doc: dict[str, Any]) -> bytes:
    # ensure_ascii=False: Cyrillic is stored as UTF-8, readable in the raw event, and a lone surrogate is
    # kept (surrogatepass) instead of breaking the body.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _entry_account(obj: str, entry: Mapping[str, Any], item: Mapping[str, Any] | None) -> str:
    if obj == "whatsapp_business_account" and item is not None:
        # entry.id is the WhatsApp Business Account; the number we send from is in value.metadata.
        value = item.get("value")
        metadata = value.get("metadata") if isinstance(value, dict) else None
        number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        if isinstance(number, str | int) and not isinstance(number, bool):
            return str(number)
    ident = entry.get("id")
    return str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else ""


def split_body(body: bytes) -> tuple[list[Item], str | None]:
    """Every item of a body, and the reason if the body itself could not be read. Never raises.

    An item that is not an object is still kept (its parse quarantines it), so nothing authentic is
    dropped; a body above MAX_ITEMS_PER_BODY items is read all the same (Meta's limit, not ours)."""
    try:
        doc = loads(body, "meta")
    except Unparseable as exc:
        return [], exc.reason
    if not isinstance(doc, dict):
        return [], f"meta.not_an_object: got {type_name(doc)}"
    obj = doc.get("object")
    channel = CHANNEL_OF_OBJECT.get(obj) if isinstance(obj, str) else None
    if channel is None or not isinstance(obj, str):
        return [], f"meta.unknown_object: {short(str(obj))}"
    entries = doc.get("entry")
    if not isinstance(entries, list):
        return [], f"meta.bad_field: entry (expected array, got {type_name(entries)})"
    items: list[Item] = []
    for entry in entries:
        if not isinstance(entry, dict):
            wrapped = {"object": obj, "kind": "entry", "item": entry}
            items.append(Item(channel, "", dump_item(wrapped)))
            continue
        base = {"object": obj, "entry_id": entry.get("id"), "entry_time": entry.get("time")}
        found = False
        for kind in ("messaging", "standby", "changes"):
            group = entry.get(kind)
            if group is None:
                continue
            found = True
            for item in group if isinstance(group, list) else [group]:
                for piece in _pieces(obj, kind, item):
                    account = _entry_account(obj, entry, piece if isinstance(piece, dict) else None)
                    items.append(Item(channel, account, dump_item({**base, "kind": kind, "item": piece})))
        if not found:
            items.append(
                Item(channel, _entry_account(obj, entry, None), dump_item({**base, "kind": "entry"}))
            )
    return items, None


def _pieces(obj: str, kind: str, item: Any) -> list[Any]:
    """A WhatsApp `messages` change split into one change per message and per status (each has its own
    id and fate); everything else is one piece as it came."""
    if obj != "whatsapp_business_account" or kind != "changes" or not isinstance(item, dict):
        return [item]
    value = item.get("value")
    if not isinstance(value, dict):
        return [item]
    messages = _list(value, "messages")
    statuses = _list(value, "statuses")
    if len(messages) + len(statuses) <= 1:
        return [item]
    rest = {k: v for k, v in value.items() if k not in ("messages", "statuses")}
    out: list[Any] = [{**item, "value": {**rest, "messages": [m]}} for m in messages]
    out += [{**item, "value": {**rest, "statuses": [st]}} for st in statuses]
    return out


# --- one item --------------------------------------------------------------------------------------


def _s(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _opt(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _obj(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


class _Fields(JsonFields):
    def any_id(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        """An id Meta sends as a string (sometimes as a number in older payloads)."""
        value = obj.get(key)
        if value is None:
            raise self.missing(path)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise self.bad(path, "string", value)
        return str(value)

    def time_ms(self, value: object, path: str) -> datetime:
        if not is_number(value):
            raise self.bad(path, "number", value) if value is not None else self.missing(path)
        return self.utc(int(value) // 1000, path).replace(microsecond=(int(value) % 1000) * 1000)

    def time_s(self, value: object, path: str) -> datetime:
        # feed created_time is a number of seconds; WhatsApp sends seconds as a string.
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not is_number(value):
            raise self.bad(path, "number", value) if value is not None else self.missing(path)
        return self.utc(int(value), path)


_f = _Fields("meta")


def _key_id(value: str) -> str:
    if len(value) <= MAX_KEY_ID and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _item_account(doc: Mapping[str, Any]) -> str:
    obj = doc.get("object")
    entry = {"id": doc.get("entry_id")}
    item = doc.get("item")
    return _entry_account(str(obj), entry, item if isinstance(item, dict) else None)


def parse_item_payload(payload: bytes, *, channel: str, account: str) -> RawEvent:
    """The stored bytes of one item (see split_body) to a RawEvent. Never raises."""
    try:
        doc = loads(payload, "meta")
    except Unparseable as exc:
        return payload_failure(payload, exc.reason)
    if not isinstance(doc, dict):
        return payload_failure(payload, f"meta.not_an_object: got {type_name(doc)}")
    try:
        key, outcome = _parse(doc, channel=channel, account=account)
    except Unparseable as exc:
        return RawEvent(dedup_key=body_key(payload), payload=payload, outcomes=[Quarantined(exc.reason)])
    except Exception as exc:  # a parser bug must quarantine the item, never drop the citizen's message
        reason = f"meta.parser_error: {type(exc).__name__}: {exc}"
        return RawEvent(dedup_key=body_key(payload), payload=payload, outcomes=[Quarantined(reason)])
    return RawEvent(dedup_key=key or body_key(payload), payload=payload, outcomes=[outcome])


def _parse(doc: Mapping[str, Any], *, channel: str, account: str) -> tuple[str | None, ParseOutcome]:
    obj = doc.get("object")
    if CHANNEL_OF_OBJECT.get(obj if isinstance(obj, str) else "") != channel:
        return None, Quarantined(f"meta.bad_field: object ({short(str(obj))} is not a {channel} object)")
    kind = doc.get("kind")
    item = doc.get("item")
    found = _item_account(doc)
    if found and found != account:
        # A body for another Page / account / number of the same app: kept, never mixed into ours.
        return None, Ignored(f"meta.other_account:{short(found)}")
    if kind == "entry":
        if item is not None:
            raise _f.bad("entry[]", "object", item)
        return None, Ignored("meta.empty_entry")
    if not isinstance(item, dict):
        raise _f.bad(f"entry.{kind}[]", "object", item)
    if kind in ("messaging", "standby"):
        return _parse_messaging(item, channel=channel, account=account, standby=kind == "standby")
    if kind == "changes":
        field = item.get("field")
        value = item.get("value")
        if not isinstance(value, dict):
            raise _f.bad("changes[].value", "object", value)
        if channel == "whatsapp":
            return _parse_whatsapp(field, value, account=account)
        entry_time = doc.get("entry_time")
        if field == "feed":
            return _parse_feed(value, account=account, entry_time=entry_time)
        if field in ("comments", "live_comments") and channel == "instagram":
            return _parse_ig_comment(value, account=account, entry_time=entry_time)
        if field == "mentions" and channel == "instagram":
            return _parse_ig_mention(value, account=account, entry_time=entry_time)
        return None, Ignored(f"meta.unsupported_field:{short(str(field))}")
    raise _f.bad("kind", "messaging, standby or changes", kind)


# --- Messenger and Instagram direct messages ------------------------------------------------------


def _attachments(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    found = message.get("attachments")
    if not isinstance(found, list):
        return ()
    out = []
    for i, item in enumerate(found):
        if not isinstance(item, dict):
            raise _f.bad(f"message.attachments[{i}]", "object", item)
        kind = item.get("type") if isinstance(item.get("type"), str) else "file"
        payload = _obj(item, "payload")
        url = _opt(payload, "url")
        data = {k: v for k, v in payload.items() if k != "url"}
        if url:
            data["url"] = url  # a signed CDN address that expires: fetched soon after, kept by id
        out.append(Attachment(kind=str(kind), file_id=url, data=data))
    return tuple(out)


def _parse_messaging(
    item: Mapping[str, Any], *, channel: str, account: str, standby: bool
) -> tuple[str | None, ParseOutcome]:
    sender = _f.req_object(item, "sender", "messaging[].sender")
    sender_id = _f.any_id(sender, "id", "messaging[].sender.id")
    recipient = _obj(item, "recipient")
    recipient_id = str(recipient.get("id", ""))

    def private(mid: str, at: datetime, **rest: Any) -> InboundMessage:
        """A message in the citizen's private thread with our Page or account (the thread is the sender)."""
        return InboundMessage(
            channel=channel,
            account=account,
            chat_id=sender_id,
            message_key=mid,
            sender_id=sender_id,
            sent_at=at,
            **rest,
        )

    if "message_edit" in item:  # Instagram: a citizen edited a message (its mid and new text)
        edit = _f.req_object(item, "message_edit", "messaging[].message_edit")
        mid = _f.req_str(edit, "mid", "messaging[].message_edit.mid")
        at = _f.time_ms(item.get("timestamp"), "messaging[].timestamp")
        num = edit.get("num_edit")
        text = _s(edit, "text")
        key = f"mid:{_key_id(mid)}:edit:{num if isinstance(num, int) else int(at.timestamp() * 1000)}"
        if sender_id == account:
            return key, Ignored("meta.echo_edit")
        return key, private(
            mid,
            at,
            text=str(text),
            edited_at=at,
        )
    if "message" in item:
        message = _f.req_object(item, "message", "messaging[].message")
        mid = _f.req_str(message, "mid", "messaging[].message.mid")
        key = f"mid:{_key_id(mid)}"
        if message.get("is_echo") or sender_id == account:
            return key, Ignored("meta.echo")  # our own message, sent by us or from the Page inbox
        at = _f.time_ms(item.get("timestamp"), "messaging[].timestamp")
        if message.get("is_deleted"):
            # Instagram: the citizen unsent it. The text already stored stays (never erased).
            return f"{key}:deleted", private(mid, at, edited_at=at, deleted=True)
        if recipient_id and recipient_id != account:
            return key, Quarantined(
                f"meta.bad_field: recipient.id (for {short(recipient_id)}, not {account})"
            )
        text = _s(message, "text")
        attachments = _attachments(message)
        if message.get("is_unsupported"):
            attachments += (Attachment(kind="unsupported"),)
        quick = message.get("quick_reply")
        # A quick reply the citizen tapped (Messenger Platform, quick replies; Instagram the same): the
        # text is the button's title, message.quick_reply.payload its payload, our choice's id.
        choice = quick.get("payload") if isinstance(quick, dict) else None
        choice = choice if isinstance(choice, str) and choice else None
        if choice is not None and not text:
            text = choice
        reply_to = message.get("reply_to")
        reply_mid = reply_to.get("mid") if isinstance(reply_to, dict) else None
        if not text and not attachments:
            return key, Ignored("meta.empty_message")
        return key, private(
            mid,
            at,
            text=str(text),
            attachments=attachments,
            reply_to_key=reply_mid if isinstance(reply_mid, str) else None,
            choice=choice,
        )
    if "postback" in item:  # a button the citizen pressed: its title is what they "said"
        postback = _f.req_object(item, "postback", "messaging[].postback")
        at = _f.time_ms(item.get("timestamp"), "messaging[].timestamp")
        postback_mid = _opt(postback, "mid")
        title = _s(postback, "title")
        if not title or postback_mid is None:
            return (f"mid:{_key_id(postback_mid)}" if postback_mid else None), Ignored("meta.postback")
        mid = postback_mid
        key = f"mid:{_key_id(mid)}"
        return key, private(
            mid,
            at,
            text=str(title),
        )
    if "delivery" in item or "read" in item:
        return _receipt(item, channel=channel, account=account)
    for other in ("reaction", "referral", "optin", "account_linking", "pass_thread_control", "take_thread"):
        if other in item:
            return None, Ignored(f"meta.{other}")
    return None, Ignored("meta.unsupported_messaging" + (":standby" if standby else ""))


def _receipt(item: Mapping[str, Any], *, channel: str, account: str) -> tuple[str | None, ParseOutcome]:
    """Messenger `delivery {mids, watermark}` / `read {watermark}`, Instagram `read {mid}`: receipts of
    what we sent. Messenger's read carries only a watermark (everything before it was read): it names
    no message, so it is recorded as ignored rather than guessed onto a row."""
    state = "delivered" if "delivery" in item else "read"
    body = item.get(state if state == "read" else "delivery")
    if not isinstance(body, dict):
        raise _f.bad(f"messaging[].{state}", "object", body)
    at = _f.time_ms(item.get("timestamp"), "messaging[].timestamp")
    mids = _list(body, "mids")
    if isinstance(body.get("mid"), str):
        mids = [body["mid"]]
    mids = [m for m in mids if isinstance(m, str) and m]
    if not mids:
        return None, Ignored(f"meta.{state}_watermark")
    # One receipt per item: a Messenger delivery naming several mids names them in order; the first
    # is the key and the rest are in the payload (applied one by one by the workflow).
    return f"{state}:{_key_id(mids[0])}", DeliveryReceipt(
        channel=channel,
        account=account,
        platform_message_ids=tuple(mids),
        state=state,
        at=at,
    )


# --- Page feed and Instagram comments -------------------------------------------------------------


def _parse_feed(
    value: Mapping[str, Any], *, account: str, entry_time: object
) -> tuple[str | None, ParseOutcome]:
    item, verb = value.get("item"), value.get("verb")
    if item != "comment":
        return None, Ignored(f"meta.feed_{short(str(item))}")
    comment_id = _f.any_id(value, "comment_id", "changes[].value.comment_id")
    key = f"comment:{_key_id(comment_id)}"
    sender = _obj(value, "from")
    sender_id = str(sender.get("id", ""))
    if sender_id == account:
        return key, Ignored("meta.comment_by_page")  # our own public replies
    if not sender_id:
        raise _f.missing("changes[].value.from.id")
    at = _f.time_s(value.get("created_time"), "changes[].value.created_time")
    text = _s(value, "message")
    photo = value.get("photo")
    attachments = (Attachment(kind="photo", file_id=photo),) if isinstance(photo, str) and photo else ()
    parent = value.get("parent_id")
    post = value.get("post_id")
    common: dict[str, Any] = {
        "channel": "facebook",
        "account": account,
        "chat_id": comment_id,
        "message_key": comment_id,
        "sender_id": sender_id,
        "sender_name": _opt(sender, "name"),
        "sent_at": at,
        "kind": "comment",
        "reply_to_key": parent if isinstance(parent, str) and parent != post else None,
    }
    if verb == "add":
        if not text and not attachments:
            return key, Ignored("meta.empty_comment")
        return key, InboundMessage(text=text, attachments=attachments, **common)
    if verb == "edited":
        # A new version of the same comment. created_time is still the original's; the entry's time is
        # when it changed (the same in a repeated delivery, so the key and the version stay one).
        edited = _version_time(entry_time, at)
        return f"{key}:edited:{_digest(text)}", InboundMessage(
            text=text, attachments=attachments, edited_at=edited, **common
        )
    if verb == "remove":
        return f"{key}:removed", InboundMessage(
            edited_at=_version_time(entry_time, at), deleted=True, **common
        )
    return key, Ignored(f"meta.comment_{short(str(verb))}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _entry_time(entry_time: object) -> datetime:
    """An entry's `time`: seconds (milliseconds in some bodies); absent, the moment we read it."""
    if is_number(entry_time) and entry_time > 10**11:
        entry_time = int(entry_time) // 1000
    return _f.time_s(entry_time, "entry.time") if entry_time is not None else datetime.now(UTC)


def _version_time(entry_time: object, created: datetime) -> datetime:
    """When a comment changed: the entry's time (seconds), never before the comment itself."""
    if is_number(entry_time) and entry_time > 10**11:  # milliseconds in some bodies
        entry_time = int(entry_time) // 1000
    try:
        at = _f.time_s(entry_time, "entry.time")
    except Unparseable:
        at = created
    return max(at, created + timedelta(seconds=1))


def _parse_ig_comment(
    value: Mapping[str, Any], *, account: str, entry_time: object
) -> tuple[str | None, ParseOutcome]:
    """Both shapes: Instagram Login sends `value.id`, the Page-linked (Facebook Login) one may send
    `value.comment_id`; `from` is absent in some recorded bodies."""
    raw_id = value.get("id") if value.get("id") is not None else value.get("comment_id")
    if raw_id is None:
        raise _f.missing("changes[].value.id")
    comment_id = _f.any_id({"id": raw_id}, "id", "changes[].value.id")
    key = f"comment:{_key_id(comment_id)}"
    sender = _obj(value, "from")
    sender_id = str(sender.get("id", "")) or f"ig-commenter:{comment_id}"
    if sender_id == account:
        return key, Ignored("meta.comment_by_account")
    text = _s(value, "text")
    if not text:
        return key, Ignored("meta.empty_comment")
    at = _entry_time(entry_time)
    parent = value.get("parent_id")
    media = _obj(value, "media")
    return key, InboundMessage(
        channel="instagram",
        account=account,
        chat_id=comment_id,
        message_key=comment_id,
        sender_id=sender_id,
        sender_username=_opt(sender, "username"),
        sent_at=at,
        text=text,
        kind="comment",
        reply_to_key=parent if isinstance(parent, str) else None,
        attachments=(Attachment(kind="media", file_id=str(media["id"])),) if media.get("id") else (),
    )


def _parse_ig_mention(
    value: Mapping[str, Any], *, account: str, entry_time: object
) -> tuple[str | None, ParseOutcome]:
    """The account was @mentioned in a comment (or a caption: no comment_id). The webhook carries ids
    only, so the appeal shows the mention; its text must be read through the Graph API."""
    media_id = value.get("media_id")
    comment_id = value.get("comment_id")
    if comment_id is None:
        key = f"mention:media:{_key_id(str(media_id))}" if media_id is not None else None
        return key, Ignored("meta.caption_mention")
    comment = _f.any_id(value, "comment_id", "changes[].value.comment_id")
    at = _entry_time(entry_time)
    return f"comment:{_key_id(comment)}", InboundMessage(
        channel="instagram",
        account=account,
        chat_id=comment,
        message_key=comment,
        sender_id=f"ig-commenter:{comment}",
        sent_at=at,
        kind="comment",
        attachments=(Attachment(kind="mention", data={"media_id": str(media_id), "comment_id": comment}),),
    )


# --- WhatsApp ---------------------------------------------------------------------------------------


def _parse_whatsapp(
    field: object, value: Mapping[str, Any], *, account: str
) -> tuple[str | None, ParseOutcome]:
    if field != "messages":
        return None, Ignored(f"meta.whatsapp_{short(str(field))}")
    messages = value.get("messages")
    statuses = value.get("statuses")
    if isinstance(statuses, list) and statuses:
        return _wa_status(statuses[0], account=account)
    if not isinstance(messages, list) or not messages:
        return None, Ignored("meta.whatsapp_no_messages")
    message = messages[0]
    if not isinstance(message, dict):
        raise _f.bad("value.messages[]", "object", message)
    wamid = _f.req_str(message, "id", "value.messages[].id")
    key = f"wamid:{_key_id(wamid)}"
    sender = _f.any_id(message, "from", "value.messages[].from")
    at = _f.time_s(message.get("timestamp"), "value.messages[].timestamp")
    kind = message.get("type")
    name = None
    contacts = value.get("contacts")
    if isinstance(contacts, list):
        for c in contacts:
            if isinstance(c, dict) and str(c.get("wa_id")) == sender and isinstance(c.get("profile"), dict):
                found = c["profile"].get("name")
                name = found if isinstance(found, str) else None
    text, attachments = _wa_content(kind, message)
    if kind in ("reaction", "system", "ephemeral") or (kind == "unsupported" and not attachments):
        return key, Ignored(f"meta.whatsapp_{kind}")
    if not text and not attachments:
        return key, Ignored(f"meta.whatsapp_empty:{short(str(kind))}")
    context = message.get("context")
    reply_to = context.get("id") if isinstance(context, dict) else None
    return key, InboundMessage(
        channel="whatsapp",
        account=account,
        chat_id=sender,
        message_key=wamid,
        sender_id=sender,
        sender_name=name,
        sent_at=at,
        text=text,
        attachments=attachments,
        reply_to_key=reply_to if isinstance(reply_to, str) else None,
        choice=_wa_choice(kind, message),
    )


def _wa_choice(kind: object, message: Mapping[str, Any]) -> str | None:
    """The id of a reply button the citizen pressed (Cloud API webhook: type "interactive",
    interactive.button_reply.id; a template's quick-reply button: type "button", button.payload)."""
    if kind == "interactive":
        inter = message.get("interactive")
        reply = inter.get("button_reply") if isinstance(inter, dict) else None
        found = reply.get("id") if isinstance(reply, dict) else None
    elif kind == "button":
        button = message.get("button")
        found = button.get("payload") if isinstance(button, dict) else None
    else:
        return None
    return found if isinstance(found, str) and found else None


_WA_LOCATION: tuple[str, ...] = ("latitude", "longitude", "name", "address", "url")
_WA_CHOICE: tuple[str, ...] = ("id", "title", "description")
_WA_MEDIA = ("image", "video", "audio", "document", "sticker", "voice")


def _wa_content(kind: object, message: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    def part(name: str) -> dict[str, Any]:
        value = message.get(name)
        return value if isinstance(value, dict) else {}

    if kind == "text":
        body = part("text").get("body")
        return (body if isinstance(body, str) else ""), ()
    if kind in _WA_MEDIA:
        media = part(str(kind))
        caption = _s(media, "caption")
        attachment = Attachment(
            kind="photo" if kind == "image" else str(kind),
            file_id=str(media["id"]) if media.get("id") is not None else None,
            name=_opt(media, "filename"),
            mime_type=_opt(media, "mime_type"),
            data={k: media[k] for k in ("sha256",) if k in media},
        )
        return caption, (attachment,)
    if kind == "location":
        where = part("location")
        data: dict[str, Any] = {k: where[k] for k in _WA_LOCATION if k in where}
        return "", (Attachment(kind="location", data=data),)
    if kind == "contacts":
        cards = _list(message, "contacts")
        return "", tuple(Attachment(kind="contact", data=c) for c in cards if isinstance(c, dict))
    if kind == "interactive":
        inter = part("interactive")
        chosen = inter.get(str(inter.get("type")))  # button_reply / list_reply
        if isinstance(chosen, dict):
            title = _s(chosen, "title")
            data = {k: chosen[k] for k in _WA_CHOICE if k in chosen}
            return title, (Attachment(kind=str(inter.get("type")), data=data),)
        return "", ()
    if kind == "button":  # a quick-reply button of a template
        button = part("button")
        text = _s(button, "text")
        return text, ()
    if kind in ("unsupported", "unknown"):
        return "", (Attachment(kind="unsupported", data={"errors": message.get("errors")}),)
    return "", ()


def _wa_status(status: object, *, account: str) -> tuple[str | None, ParseOutcome]:
    if not isinstance(status, dict):
        raise _f.bad("value.statuses[]", "object", status)
    wamid = _f.req_str(status, "id", "value.statuses[].id")
    state = _f.req_str(status, "status", "value.statuses[].status")
    at = _f.time_s(status.get("timestamp"), "value.statuses[].timestamp")
    key = f"status:{_key_id(wamid)}:{short(state)}"
    if state not in ("sent", "delivered", "read", "failed"):
        return key, Ignored(f"meta.whatsapp_status_{short(state)}")
    code = detail = None
    if state == "failed":
        errors = _list(status, "errors")
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        number = first.get("code")
        data = _obj(first, "error_data")
        words = [
            w for w in (first.get("title"), first.get("message"), data.get("details")) if isinstance(w, str)
        ]
        detail = "; ".join(dict.fromkeys(words)) or "WhatsApp reported the message as failed"
        if number in WINDOW_CLOSED_CODES:
            code = "meta.window_closed"
            detail = f"cannot reach the citizen: reply window closed (WhatsApp {number}: {detail})"
        else:
            code = f"whatsapp.{number}" if number is not None else "whatsapp.failed"
            detail = f"WhatsApp {number}: {detail}"
    return key, DeliveryReceipt(
        channel="whatsapp",
        account=account,
        platform_message_ids=(wamid,),
        state=state,
        at=at,
        code=code,
        detail=detail,
    )
