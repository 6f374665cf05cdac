"""appeal.forwarded_to_name: the name of the outside body an appeal was forwarded to, as the citizen read it

Revision ID: 0019_forward
Revises: 0018_tally
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0019_forward"
down_revision = "0018_tally"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("appeal") as batch:
        batch.add_column(
            sa.Column("forwarded_to_name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("appeal") as batch:
        batch.drop_column("forwarded_to_name")
