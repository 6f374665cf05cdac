"""message.stand_in_edited_at: an edit kept as the message until its late original arrives

Revision ID: 0004_message_stand_in
Revises: 0003_loop_heartbeat
Create Date: 2026-12-01 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_message_stand_in"
down_revision = "0003_loop_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stand_in_edited_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("stand_in_edited_at")
