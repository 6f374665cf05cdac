"""internal notes on appeals (the appeal page)

Revision ID: 0010_appeal
Revises: 0009_meta
Create Date: 2026-12-01 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_appeal"
down_revision = "0009_meta"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appeal_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["staff_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("appeal_note", schema=None) as batch_op:
        batch_op.create_index("ix_appeal_note_appeal", ["appeal_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("appeal_note", schema=None) as batch_op:
        batch_op.drop_index("ix_appeal_note_appeal")
    op.drop_table("appeal_note")
