"""the appeal's legal life: statuses, triage, links, applicant data, org heads and deputies, staff work

Revision ID: 0011_lifecycle
Revises: 0010_appeal
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011_lifecycle"
down_revision = "0010_appeal"
branch_labels = None
depends_on = None

# The open statuses grew (registered, assigned, hearing, reopened) and lost forwarded: the partial indexes of
# the open appeals (0008) are rebuilt with the new predicate, which must be the text appeal_query renders.
OLD_OPEN_WHERE = "status IN ('received', 'in_progress', 'forwarded', 'extended')"
NEW_OPEN_WHERE = (
    "status IN ('received', 'registered', 'assigned', 'in_progress', 'hearing', 'extended', 'reopened')"
)
INBOX_COLUMNS = ["status", "channel", "category", "language", "unit_id", "assignee_id"]
_EVERY = [*INBOX_COLUMNS, "due_at", "last_activity_at"]
_LEADS = {
    "ix_appeal_open_activity": ["last_activity_at", "id"],
    "ix_appeal_open_due": ["due_at", "id"],
    "ix_appeal_open_channel": ["channel"],
    "ix_appeal_open_category": ["category"],
    "ix_appeal_open_language": ["language"],
    "ix_appeal_open_unit": ["unit_id"],
}
OPEN_INDEXES = {name: [*lead, *[c for c in _EVERY if c not in lead]] for name, lead in _LEADS.items()}

_TEXT = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def _open_indexes(batch_op: object, where: str) -> None:
    for name, columns in OPEN_INDEXES.items():
        batch_op.create_index(  # type: ignore[attr-defined]
            name, columns, unique=False, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
        )


def upgrade() -> None:
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        for name in OPEN_INDEXES:
            batch_op.drop_index(name)
        no = sa.false()
        batch_op.add_column(sa.Column("formal", sa.Boolean(), nullable=False, server_default=no))
        batch_op.add_column(sa.Column("triage", _TEXT(length=16), nullable=True))
        batch_op.add_column(sa.Column("signal_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("forwarded_to", _TEXT(length=64), nullable=True))
        batch_op.add_column(sa.Column("concerned_unit_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("confidential", sa.Boolean(), nullable=False, server_default=no))
        batch_op.add_column(sa.Column("transfers", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("original_due_at", _TIME(), nullable=True))
        batch_op.add_column(sa.Column("forward_due_at", _TIME(), nullable=True))
        batch_op.add_column(sa.Column("resolved", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("applicant_name", _TEXT(length=300), nullable=True))
        batch_op.add_column(sa.Column("applicant_iin", _TEXT(length=12), nullable=True))
        batch_op.add_column(sa.Column("applicant_address", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("applicant_email", _TEXT(length=254), nullable=True))
        batch_op.add_column(sa.Column("applicant_phone", _TEXT(length=32), nullable=True))
        batch_op.add_column(sa.Column("consent_at", _TIME(), nullable=True))
        batch_op.add_column(sa.Column("taken_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_appeal_signal_id_appeal", "appeal", ["signal_id"], ["id"])
        batch_op.create_foreign_key("fk_appeal_merged_into_id_appeal", "appeal", ["merged_into_id"], ["id"])
        batch_op.create_foreign_key("fk_appeal_concerned_unit_id_unit", "unit", ["concerned_unit_id"], ["id"])
        batch_op.create_foreign_key("fk_appeal_taken_by_id_staff_user", "staff_user", ["taken_by_id"], ["id"])
        _open_indexes(batch_op, NEW_OPEN_WHERE)
    with op.batch_alter_table("unit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", _TEXT(length=32), nullable=False, server_default="unit"))
        batch_op.add_column(sa.Column("head_position", _TEXT(length=300), nullable=True))
        batch_op.add_column(sa.Column("head_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("regions", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("keywords", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_foreign_key("fk_unit_head_user_id_staff_user", "staff_user", ["head_user_id"], ["id"])
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", _TEXT(length=254), nullable=True))
    op.create_table(
        "unit_deputy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("name", _TEXT(length=200), nullable=False),
        sa.Column("position", _TEXT(length=300), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["staff_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_unit_deputy_unit_id", "unit_deputy", ["unit_id"], unique=False)
    op.create_table(
        "staff_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _TEXT(length=200), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("kind", _TEXT(length=32), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("done_at", _TIME(), nullable=True),
        sa.Column("done_by_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.ForeignKeyConstraint(["done_by_id"], ["staff_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_staff_task_appeal_id", "staff_task", ["appeal_id"], unique=False)
    op.create_index("ix_staff_task_open", "staff_task", ["done_at", "appeal_id"], unique=False)
    op.create_table(
        "staff_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _TEXT(length=200), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("appeal_id", sa.Integer(), nullable=True),
        sa.Column("kind", _TEXT(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("read_at", _TIME(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["staff_user.id"]),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"]),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_staff_notice_appeal_id", "staff_notice", ["appeal_id"], unique=False)
    op.create_index("ix_staff_notice_user", "staff_notice", ["user_id", "read_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_staff_notice_user", table_name="staff_notice")
    op.drop_index("ix_staff_notice_appeal_id", table_name="staff_notice")
    op.drop_table("staff_notice")
    op.drop_index("ix_staff_task_open", table_name="staff_task")
    op.drop_index("ix_staff_task_appeal_id", table_name="staff_task")
    op.drop_table("staff_task")
    op.drop_index("ix_unit_deputy_unit_id", table_name="unit_deputy")
    op.drop_table("unit_deputy")
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.drop_column("email")
    with op.batch_alter_table("unit", schema=None) as batch_op:
        batch_op.drop_constraint("fk_unit_head_user_id_staff_user", type_="foreignkey")
        for column in ("keywords", "regions", "head_user_id", "head_position", "kind"):
            batch_op.drop_column(column)
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        for name in OPEN_INDEXES:
            batch_op.drop_index(name)
        for fk in (
            "fk_appeal_taken_by_id_staff_user",
            "fk_appeal_concerned_unit_id_unit",
            "fk_appeal_merged_into_id_appeal",
            "fk_appeal_signal_id_appeal",
        ):
            batch_op.drop_constraint(fk, type_="foreignkey")
        for column in (
            "taken_by_id", "consent_at", "applicant_phone", "applicant_email", "applicant_address",
            "applicant_iin", "applicant_name", "resolved", "forward_due_at", "original_due_at", "transfers",
            "confidential", "concerned_unit_id", "forwarded_to", "merged_into_id", "signal_id", "triage",
            "formal",
        ):  # fmt: skip
            batch_op.drop_column(column)
        _open_indexes(batch_op, OLD_OPEN_WHERE)
