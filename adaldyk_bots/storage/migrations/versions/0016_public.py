"""the web form: citizens' uploaded files and the status look-up's code hashes

Revision ID: 0016_public
Revises: 0015_answers
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016_public"
down_revision = "0015_answers"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=True),
        sa.Column("name", _TEXT(length=255), nullable=False),
        sa.Column("mime_type", _TEXT(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", _TEXT(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_upload_appeal_id", "upload", ["appeal_id"], unique=False)
    op.create_table(
        "public_receipt",
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("code_sha256", _TEXT(length=64), nullable=False),
        sa.Column("form_key", _TEXT(length=64), nullable=False),
        sa.Column("answer_by", _TEXT(length=16), nullable=False),
        sa.Column("messenger", _TEXT(length=200), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("appeal_id"),
        sa.UniqueConstraint("form_key"),
    )


def downgrade() -> None:
    op.drop_table("public_receipt")
    op.drop_index("ix_upload_appeal_id", table_name="upload")
    op.drop_table("upload")
