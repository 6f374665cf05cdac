"""Pruning indexes (expired sessions, old login attempts) and message.thread (e-mail References)

Revision ID: 0020_ops
Revises: 0019_forward
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_ops"
down_revision = "0019_forward"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_session") as batch:
        batch.create_index("ix_web_session_ended", ["ended_at"], unique=False)
        batch.create_index("ix_web_session_last_seen", ["last_seen_at"], unique=False)
    with op.batch_alter_table("login_attempt") as batch:
        batch.create_index("ix_login_attempt_at", ["at"], unique=False)
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("thread", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("thread")
    with op.batch_alter_table("login_attempt") as batch:
        batch.drop_index("ix_login_attempt_at")
    with op.batch_alter_table("web_session") as batch:
        batch.drop_index("ix_web_session_last_seen")
        batch.drop_index("ix_web_session_ended")
