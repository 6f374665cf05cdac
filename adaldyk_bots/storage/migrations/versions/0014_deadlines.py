"""deadlines: sweep marks (exactly once across workers) and the extension count and notice clock

Revision ID: 0014_deadlines
Revises: 0013_triage
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014_deadlines"
down_revision = "0013_triage"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "deadline_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _TEXT(length=200), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_deadline_mark_appeal_id", "deadline_mark", ["appeal_id"], unique=False)
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extensions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("extension_notice_due_at", _TIME(), nullable=True))
        batch_op.create_index("ix_appeal_extension_notice_due_at", ["extension_notice_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.drop_index("ix_appeal_extension_notice_due_at")
        batch_op.drop_column("extension_notice_due_at")
        batch_op.drop_column("extensions")
    op.drop_index("ix_deadline_mark_appeal_id", table_name="deadline_mark")
    op.drop_table("deadline_mark")
