"""What the monitor stores for one comment, and how it becomes a message again (pure; intake and replay).

instaloader hands us parsed objects, not Instagram's bytes, so the stored payload is our own small JSON
of the fields it gave (`source` says so); the comment id is the dedup key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from adaldyk_bots import safejson
from adaldyk_bots.domain import Ignored, InboundMessage, ParseOutcome, Quarantined
from adaldyk_bots.ports import RawEvent
from connectors.instagram_monitor.reader import Comment

CHANNEL = "instagram_monitor"
# Instagram's limit for a comment; the monitor never sends, this only sizes the connector's measure.
COMMENT_TEXT_LIMIT = 2200
SOURCE = "instaloader"


def dedup_key(comment_id: str) -> str:
    return f"comment:{comment_id}"


def comment_payload(comment: Comment) -> bytes:
    body = {
        "source": SOURCE,
        "post": {"shortcode": comment.post_shortcode, "id": comment.post_id},
        "comment": {
            "id": comment.comment_id,
            "created_at": int(comment.created_at.timestamp()),
            "text": comment.text,
            "owner": {"id": comment.owner_id, "username": comment.owner_username},
            "reply_to": comment.reply_to,
        },
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def comment_event(comment: Comment, *, account: str) -> RawEvent:
    return parse_comment_payload(comment_payload(comment), account=account)


def parse_comment_payload(payload: bytes, *, account: str) -> RawEvent:
    try:
        body = safejson.loads(payload)
    except safejson.NotJson as exc:
        return RawEvent("unreadable", payload, [Quarantined(f"{CHANNEL}: not JSON: {exc}")])
    comment = body.get("comment") if isinstance(body, dict) else None
    key = dedup_key(str(comment.get("id"))) if isinstance(comment, dict) else "unreadable"
    return RawEvent(key, payload, [_parse(body, account)])


def _parse(body: Any, account: str) -> ParseOutcome:
    try:
        comment = body["comment"]
        owner = comment["owner"]
        post = body["post"]
        comment_id = _text(comment["id"], "comment.id")
        owner_id = _text(owner["id"], "comment.owner.id")
        created = comment["created_at"]
        if not isinstance(created, int) or isinstance(created, bool):
            raise ValueError("comment.created_at is not an integer")
        text = comment.get("text")
        if not isinstance(text, str):
            raise ValueError("comment.text is not a string")
        username = owner.get("username")
        reply_to = comment.get("reply_to")
        _text(post["shortcode"], "post.shortcode")
    except (KeyError, TypeError, ValueError) as exc:
        return Quarantined(f"{CHANNEL}: unexpected payload: {exc!r}")
    if not text.strip():
        return Ignored(f"{CHANNEL}.empty_comment")
    return InboundMessage(
        channel=CHANNEL,
        account=account,
        # The conversation is the citizen, as for VK wall comments: their later comments join the appeal.
        chat_id=owner_id,
        message_key=comment_id,
        sender_id=owner_id,
        sender_username=username if isinstance(username, str) else None,
        sender_name=f"@{username}" if isinstance(username, str) and username else None,
        sent_at=datetime.fromtimestamp(created, UTC),
        text=text,
        reply_to_key=str(reply_to) if reply_to else None,
        kind="comment",
    )


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise ValueError(f"{where} is missing")
    return str(value)
