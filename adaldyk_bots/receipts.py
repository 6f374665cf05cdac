"""Delivery receipts: what a platform later says about a message we sent (any channel, not only Meta).

WhatsApp answers a send with 200 and a `wamid`, then reports failures (131047: the 24-hour window was
closed, among many) in a `statuses` webhook; Messenger reports `delivery`. A receipt names the platform's
message id; the outbox item it is about is found through `outbox_platform_id`, which the dispatcher
writes in the transaction that records the send (`link_sent`). Order does not matter: a receipt that
arrives first is kept in `delivery_receipt` with no item and applied when the send is recorded; one for
an id we never sent stays there, logged, and harms nothing.

A `failed` receipt takes a `sent` item to `failed`, with the platform's code and words, and records a
`delivery_failed` event on the appeal like the dispatcher's own failures (invariant 4: visible where the
moderator works). `delivered` and `read` are recorded in `delivery_receipt` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from adaldyk_bots import staff_work
from adaldyk_bots.domain import DeliveryReceipt
from adaldyk_bots.storage.db import insert_ignoring_conflict, utcnow
from adaldyk_bots.storage.locks import advisory_key
from adaldyk_bots.storage.models import AppealEvent, DeliveryReceiptRow, OutboxItem, OutboxPlatformId

log = logging.getLogger(__name__)

# States an item may leave for `failed` on a receipt: sent, or still sending its later parts.
_FAILABLE = ("sent", "sending", "retrying")
# The code of a receipt saying the reply window was closed (WhatsApp 131047): the message is then owed
# on the citizen's other conversation, if any, like a send the dispatcher found closed.
WINDOW_CLOSED = "meta.window_closed"

# workflow.enqueue_elsewhere: owe `row`'s message on the citizen's other conversation; its key or None.
Elsewhere = Callable[[Session, OutboxItem], str | None]


def sends_receipts(connector: object) -> bool:
    """Does the connector's platform report on sent messages by their ids (class attribute
    `delivery_receipts = True`: Meta's three)? Only those sends are indexed: a platform whose ids are
    unique only inside a chat (Telegram) would otherwise map ids onto the wrong items."""
    return bool(getattr(connector, "delivery_receipts", False))


def _serialize(s: Session, channel: str, account: str, platform_id: str) -> None:
    """One transaction at a time per platform message id, until commit. Without it, on PostgreSQL a
    receipt stored while the dispatcher records its send could miss the index row (not committed yet)
    while the dispatcher misses the receipt (not committed yet either), and stay unapplied. SQLite has
    one writer at a time, which serializes the two already."""
    if s.get_bind().dialect.name == "postgresql":
        key = advisory_key(f"receipt:{channel}:{account}:{platform_id}")
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def apply_receipt(s: Session, receipt: DeliveryReceipt, *, elsewhere: Elsewhere | None = None) -> None:
    """Keep the receipt and apply it to its outbox item, if that item is known yet."""
    now = utcnow()
    for platform_id in receipt.platform_message_ids:
        _serialize(s, receipt.channel, receipt.account, platform_id)
        receipt_id = insert_ignoring_conflict(
            s,
            DeliveryReceiptRow,
            {
                "channel": receipt.channel,
                "account": receipt.account,
                "platform_message_id": platform_id,
                "state": receipt.state,
                "code": receipt.code,
                "detail": receipt.detail,
                "at": receipt.at,
                "received_at": now,
            },
        )
        if receipt_id is None:
            continue  # the same receipt again
        link = s.get(OutboxPlatformId, (receipt.channel, receipt.account, platform_id))
        if link is None:
            log.info(
                "%s %s: receipt %s for message %s, which no recorded send names (yet); kept",
                receipt.channel,
                receipt.account,
                receipt.state,
                platform_id,
            )
            continue
        row = s.get(DeliveryReceiptRow, receipt_id)
        assert row is not None
        _apply(s, row, link.outbox_id, now, elsewhere=elsewhere)


def link_sent(
    s: Session,
    item: OutboxItem,
    platform_message_id: str,
    now: datetime,
    *,
    elsewhere: Elsewhere | None = None,
) -> None:
    """The dispatcher recorded `platform_message_id` for `item`: index it, and apply any receipt that
    came before (a WhatsApp `failed` status can beat the send's own answer to the database)."""
    assert item.id is not None
    _serialize(s, item.channel, item.account, platform_message_id)
    _index(s, item, platform_message_id)
    early = s.exec(
        select(DeliveryReceiptRow).where(
            col(DeliveryReceiptRow.channel) == item.channel,
            col(DeliveryReceiptRow.account) == item.account,
            col(DeliveryReceiptRow.platform_message_id) == platform_message_id,
            col(DeliveryReceiptRow.outbox_id).is_(None),
        )
    ).all()
    for receipt in early:
        _apply(s, receipt, item.id, now, item=item, elsewhere=elsewhere)


def _index(s: Session, item: OutboxItem, platform_message_id: str) -> None:
    # ON CONFLICT DO NOTHING: an id recorded twice (a part sent again after a lost lease) is one row.
    stmt = _insert_for(s)(OutboxPlatformId).values(
        channel=item.channel, account=item.account, platform_message_id=platform_message_id, outbox_id=item.id
    )
    s.execute(stmt.on_conflict_do_nothing())


def _insert_for(s: Session) -> Any:
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def _apply(
    s: Session,
    receipt: DeliveryReceiptRow,
    outbox_id: int,
    now: datetime,
    *,
    item: OutboxItem | None = None,
    elsewhere: Elsewhere | None = None,
) -> None:
    receipt.outbox_id, receipt.applied_at = outbox_id, now
    s.add(receipt)
    if receipt.state != "failed":
        return
    row = item or s.get(OutboxItem, outbox_id)
    if row is None or row.state not in _FAILABLE:
        return
    code = receipt.code or f"{receipt.channel}.failed"
    detail = receipt.detail or f"{receipt.channel} reported the message as not delivered"
    row.state, row.last_error_code, row.last_error_detail = "failed", code[:64], detail
    row.lease_until = row.lease_owner = None
    s.add(row)
    log.warning(
        "outbox %s: the platform reported %s as failed (%s: %s) -> failed",
        row.key,
        receipt.platform_message_id,
        code,
        detail,
    )
    fallback = elsewhere(s, row) if elsewhere is not None and code == WINDOW_CLOSED else None
    if row.appeal_id is not None:
        event: dict[str, object] = {
            "outbox": row.key,
            "code": code,
            "detail": detail,
            "platform_message_id": receipt.platform_message_id,
            "reported_by": "receipt",
        }
        if fallback is not None:
            event["fallback"] = fallback
        s.add(
            AppealEvent(
                appeal_id=row.appeal_id, kind="delivery_failed", actor="system", created_at=now, detail=event
            )
        )
        if fallback is None:  # owed nowhere else: a person must reach the citizen
            staff_work.task_for_undelivered(s, row, now)
