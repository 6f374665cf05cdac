"""staff_user.position: the post of the person who accepted an appeal, printed on the receipt (R2)

Revision ID: 0017_phone
Revises: 0016_public
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017_phone"
down_revision = "0016_public"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(
            sa.Column(
                "position", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False, server_default=""
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("position")
