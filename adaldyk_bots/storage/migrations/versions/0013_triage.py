"""triage: the R12 data dialogue (data_request, conversation.collecting), one formal appeal per signal

Revision ID: 0013_triage
Revises: 0011_lifecycle
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013_triage"
down_revision = "0011_lifecycle"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime
OPEN = "finished_at IS NULL AND cancelled_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("collecting", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "data_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("step", _TEXT(length=16), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", _TIME(), nullable=False),
        sa.Column("started_by", _TEXT(length=200), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("finished_at", _TIME(), nullable=True),
        sa.Column("cancelled_at", _TIME(), nullable=True),
        sa.Column("cancel_reason", _TEXT(length=16), nullable=True),
        sa.Column("formal_appeal_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.ForeignKeyConstraint(["formal_appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_data_request_appeal_id", "data_request", ["appeal_id"], unique=False)
    op.create_index(
        "uq_data_request_open",
        "data_request",
        ["conversation_id"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_index("uq_appeal_signal_id", "appeal", ["signal_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_appeal_signal_id", table_name="appeal")
    op.drop_index("uq_data_request_open", table_name="data_request")
    op.drop_index("ix_data_request_appeal_id", table_name="data_request")
    op.drop_table("data_request")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("collecting")
