"""appeal_tally: counts of the finished appeals kept by triggers, for the inbox's counts under status=all

Revision ID: 0018_tally
Revises: 0017_phone
Create Date: 2026-12-01 19:30:00

The table, the triggers on `appeal` (storage/tally.py) and a backfill from the appeals already stored:
one INSERT … SELECT … GROUP BY per grain, the same statement the bench's bulk loader runs after a load.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018_tally"
down_revision = "0017_phone"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appeal_tally",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("grain", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("concerned_unit_id", sa.Integer(), nullable=True),
        sa.Column("assigned", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_appeal_tally_grain_unit", "appeal_tally", ["grain", "unit_id"], unique=False)
    # The code of today writes the triggers and the backfill (as 0008 does for the search documents):
    # one definition for the migration and the bench's loader.
    from adaldyk_bots.storage import tally

    bind = op.get_bind()
    tally.install(bind)
    tally.rebuild(bind)


def downgrade() -> None:
    from adaldyk_bots.storage import tally

    tally.drop(op.get_bind())
    op.drop_index("ix_appeal_tally_grain_unit", table_name="appeal_tally")
    op.drop_table("appeal_tally")
