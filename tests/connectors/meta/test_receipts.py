"""Delivery receipts in the core: applied to the outbox item whose platform message id they name, in
either order (a WhatsApp `failed` status may be stored before the send's result is), once; a receipt for
an id we never sent is kept and harms nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from adaldyk_bots.domain import DeliveryReceipt
from adaldyk_bots.receipts import apply_receipt, link_sent
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import DeliveryReceiptRow, OutboxItem


def _item(engine: Any, key: str, state: str) -> int:
    with unit_of_work(engine) as s:
        row = OutboxItem(
            key=key,
            channel="whatsapp",
            account="106540352242922",
            chat_id="16315551181",
            purpose="ack",
            text="Өтінішіңіз тіркелді",
            state=state,
            next_attempt_at=utcnow(),
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def _failed(wamid: str) -> DeliveryReceipt:
    return DeliveryReceipt(
        channel="whatsapp",
        account="106540352242922",
        platform_message_ids=(wamid,),
        state="failed",
        at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        code="meta.window_closed",
        detail="cannot reach the citizen: reply window closed (WhatsApp 131047)",
    )


def test_a_failed_receipt_before_the_send_is_recorded_is_applied_when_it_is(database_url: str) -> None:
    engine = make_engine(database_url)
    item_id = _item(engine, "ack:early", "sending")
    with unit_of_work(engine) as s:
        apply_receipt(s, _failed("wamid.early"))  # nothing names it yet: kept
    with Session(engine) as s:
        assert s.get(OutboxItem, item_id).state == "sending"  # type: ignore[union-attr]
        [kept] = s.exec(select(DeliveryReceiptRow)).all()
        assert kept.outbox_id is None
    with unit_of_work(engine) as s:
        row = s.get(OutboxItem, item_id)
        assert row is not None
        row.state, row.platform_message_ids = "sent", ["wamid.early"]  # what the dispatcher records
        link_sent(s, row, "wamid.early", utcnow())
        s.add(row)
    with Session(engine) as s:
        row = s.get(OutboxItem, item_id)
        assert row is not None and (row.state, row.last_error_code) == ("failed", "meta.window_closed")
        assert s.exec(select(DeliveryReceiptRow)).one().outbox_id == item_id
    engine.dispose()


def test_receipts_for_unknown_ids_and_repeats_change_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    item_id = _item(engine, "ack:late", "sent")
    with unit_of_work(engine) as s:
        row = s.get(OutboxItem, item_id)
        assert row is not None
        link_sent(s, row, "wamid.late", utcnow())
    delivered = DeliveryReceipt("whatsapp", "106540352242922", ("wamid.late",), "delivered", utcnow())
    for receipt in (delivered, delivered, _failed("wamid.never-sent")):
        with unit_of_work(engine) as s:
            apply_receipt(s, receipt)
    with Session(engine) as s:
        assert s.get(OutboxItem, item_id).state == "sent"  # type: ignore[union-attr]
        states = sorted(
            (r.platform_message_id, r.state, r.outbox_id) for r in s.exec(select(DeliveryReceiptRow))
        )
    assert states == [("wamid.late", "delivered", item_id), ("wamid.never-sent", "failed", None)]
    engine.dispose()
