"""Meta: deleted messages are marked; delivery receipts and the outbox items' platform message ids

Revision ID: 0009_meta
Revises: 0008_search
Create Date: 2026-12-01 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_meta"
down_revision = "0008_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        "outbox_platform_id",
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("platform_message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("channel", "account", "platform_message_id"),
    )
    with op.batch_alter_table("outbox_platform_id", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_platform_id_outbox_id"), ["outbox_id"], unique=False)
    op.create_table(
        "delivery_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("platform_message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "account", "platform_message_id", "state", name="uq_delivery_receipt"),
    )
    with op.batch_alter_table("delivery_receipt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_receipt_outbox_id"), ["outbox_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_receipt_outbox_id"))
    op.drop_table("delivery_receipt")
    with op.batch_alter_table("outbox_platform_id", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_platform_id_outbox_id"))
    op.drop_table("outbox_platform_id")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
