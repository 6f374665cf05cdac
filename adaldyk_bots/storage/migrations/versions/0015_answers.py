"""four-eyes answer drafts and the choices an outbox message offers (buttons, quick replies)

Revision ID: 0015_answers
Revises: 0014_deadlines
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015_answers"
down_revision = "0014_deadlines"  # assigned 0011_lifecycle; rechained on merging h-deadlines
branch_labels = None
depends_on = None

_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("choices", sa.JSON(), nullable=True))
    op.create_table(
        "answer_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", _TIME(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["staff_user.id"]),
        sa.ForeignKeyConstraint(["decided_by_id"], ["staff_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_answer_draft_appeal_id", "answer_draft", ["appeal_id"], unique=False)
    op.create_index("ix_answer_draft_pending", "answer_draft", ["decision", "appeal_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_answer_draft_pending", table_name="answer_draft")
    op.drop_index("ix_answer_draft_appeal_id", table_name="answer_draft")
    op.drop_table("answer_draft")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("choices")
