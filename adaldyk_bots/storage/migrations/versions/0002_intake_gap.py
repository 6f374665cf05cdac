"""intake gaps reported by pollers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_gap",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("detected_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("cursor_before", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("cursor_after", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("intake_gap", schema=None) as batch_op:
        batch_op.create_index("ix_intake_gap_channel", ["channel", "account", "detected_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("intake_gap", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_gap_channel")
    op.drop_table("intake_gap")
