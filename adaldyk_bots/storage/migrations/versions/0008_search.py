"""the inbox: assignee, last activity, the indexes its filters need, and full-text search

Revision ID: 0008_search
Revises: 0007_audit
Create Date: 2026-12-01 12:30:00

Full text: `appeal_search` holds each appeal's normalised document (adaldyk_bots/search_text.py);
SQLite indexes it with an external-content FTS5 table kept in step by triggers, PostgreSQL with a GIN
index over to_tsvector('simple', document). Existing appeals get their documents here.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_search"
down_revision = "0007_audit"
branch_labels = None
depends_on = None

# The documents are already normalised (lower case, tokens split by single spaces): the tokenizer only
# has to split on spaces; remove_diacritics 2 changes nothing in them and is kept so that a query
# typed straight into the FTS table behaves the same.
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE appeal_fts USING fts5(document, content='appeal_search', content_rowid='appeal_id',"
    " tokenize='unicode61 remove_diacritics 2', detail='none')"
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER appeal_search_ai AFTER INSERT ON appeal_search BEGIN"
    " INSERT INTO appeal_fts(rowid, document) VALUES (new.appeal_id, new.document); END",
    "CREATE TRIGGER appeal_search_ad AFTER DELETE ON appeal_search BEGIN"
    " INSERT INTO appeal_fts(appeal_fts, rowid, document)"
    " VALUES ('delete', old.appeal_id, old.document); END",
    "CREATE TRIGGER appeal_search_au AFTER UPDATE ON appeal_search BEGIN"
    " INSERT INTO appeal_fts(appeal_fts, rowid, document) VALUES ('delete', old.appeal_id, old.document);"
    " INSERT INTO appeal_fts(rowid, document) VALUES (new.appeal_id, new.document); END",
)
INBOX_COLUMNS = ["status", "channel", "category", "language", "unit_id", "assignee_id"]
OPEN_WHERE = "status IN ('received', 'in_progress', 'forwarded', 'extended')"
_EVERY = [*INBOX_COLUMNS, "due_at", "last_activity_at"]
_LEADS = {
    "ix_appeal_open_activity": ["last_activity_at", "id"],
    "ix_appeal_open_due": ["due_at", "id"],
    "ix_appeal_open_channel": ["channel"],
    "ix_appeal_open_category": ["category"],
    "ix_appeal_open_language": ["language"],
    "ix_appeal_open_unit": ["unit_id"],
}
# Partial indexes of the open appeals, covering every inbox column, one per order the inbox reads.
OPEN_INDEXES = {name: [*lead, *[c for c in _EVERY if c not in lead]] for name, lead in _LEADS.items()}
PG_INDEX = (
    "CREATE INDEX ix_appeal_search_tsv ON appeal_search"
    " USING gin (to_tsvector('simple'::regconfig, document))"
)


def upgrade() -> None:
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_activity_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE appeal SET last_activity_at = updated_at")
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.alter_column(
            "last_activity_at", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False
        )
        batch_op.create_foreign_key("fk_appeal_assignee_id_staff_user", "staff_user", ["assignee_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_appeal_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_index("ix_appeal_activity", ["last_activity_at", "id"], unique=False)
        batch_op.create_index("ix_appeal_status_activity", ["status", "last_activity_at", "id"], unique=False)
        batch_op.create_index("ix_appeal_due", ["due_at", "id"], unique=False)
        for name, columns in OPEN_INDEXES.items():
            batch_op.create_index(
                name,
                columns,
                unique=False,
                sqlite_where=sa.text(OPEN_WHERE),
                postgresql_where=sa.text(OPEN_WHERE),
            )
        batch_op.create_index("ix_appeal_facets", [*INBOX_COLUMNS, "due_at"], unique=False)
    op.create_table(
        "appeal_search",
        sa.Column("appeal_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeal.id"]),
        sa.PrimaryKeyConstraint("appeal_id"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(SQLITE_FTS)
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    else:
        op.execute(PG_INDEX)
    _index_existing(bind)


def _index_existing(bind: sa.Connection) -> None:
    # The code of today builds the documents of the appeals already stored (a few thousand at most when
    # this ships); batches keep the memory flat.
    from adaldyk_bots.storage.search_index import refresh

    last = 0
    while True:
        batch = sa.text("SELECT id FROM appeal WHERE id > :last ORDER BY id LIMIT 1000")
        ids = [r[0] for r in bind.execute(batch, {"last": last})]
        if not ids:
            return
        refresh(bind, ids)
        last = ids[-1]


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("appeal_search_ai", "appeal_search_ad", "appeal_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS appeal_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_appeal_search_tsv")
    op.drop_table("appeal_search")
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.drop_index("ix_appeal_facets")
        for name in reversed(OPEN_INDEXES):
            batch_op.drop_index(name)
        batch_op.drop_index("ix_appeal_due")
        batch_op.drop_index("ix_appeal_status_activity")
        batch_op.drop_index("ix_appeal_activity")
        batch_op.drop_index(batch_op.f("ix_appeal_assignee_id"))
        batch_op.drop_constraint("fk_appeal_assignee_id_staff_user", type_="foreignkey")
        batch_op.drop_column("last_activity_at")
        batch_op.drop_column("assignee_id")
