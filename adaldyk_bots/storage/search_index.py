"""Keeps `appeal_search` (each appeal's searchable text) in step with the appeal: the one place it is written.

The workflow calls `refresh` inside the transaction that adds a message, a version or a new name, so the
index never lags the messages (a search right after an edit finds the edit). The row is rebuilt from
the stored rows rather than appended to, which stays right when an original arrives after its edit
(workflow._merge_version rearranges the rows). SQLite's FTS5 table follows `appeal_search` through the
triggers of migration 0008_search; PostgreSQL's GIN index follows it by itself.

What is searchable: the appeal's number, the citizen's display name and usernames, and every version
of every message the citizen wrote in the appeal. Our own replies are not (their fixed wording would
make every appeal match the words of the templates).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from adaldyk_bots.search_text import normalize
from adaldyk_bots.storage.models import (
    Appeal,
    AppealSearch,
    ChannelIdentity,
    Contact,
    Message,
    MessageVersion,
)
from adaldyk_bots.storage.types import storable

__all__ = ["document", "refresh", "refresh_contact", "write_first"]


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


_appeal, _contact, _identity = _t(Appeal), _t(Contact), _t(ChannelIdentity)
_message, _version, _search = _t(Message), _t(MessageVersion), _t(AppealSearch)

_HEADS = (
    select(_appeal.c.id, _appeal.c.number, _contact.c.display_name, _identity.c.username)
    .join(_contact, _contact.c.id == _appeal.c.contact_id)
    .outerjoin(_identity, _identity.c.contact_id == _contact.c.id)
    .where(_appeal.c.id.in_(bindparam("ids", expanding=True)))
)
_TEXTS = (
    select(_message.c.appeal_id, _message.c.text, _version.c.text)
    .outerjoin(_version, _version.c.message_id == _message.c.id)
    .where(_message.c.appeal_id.in_(bindparam("ids", expanding=True)), _message.c.direction == "in")
    .order_by(_message.c.id, _version.c.edited_at)
)
_CONTACT_APPEALS = select(_appeal.c.id).where(_appeal.c.contact_id == bindparam("contact_id"))


def document(parts: Iterable[str | None]) -> str:
    """The stored document: the distinct normalised tokens of `parts`, in first-seen order. Each token
    once is enough (no phrase search) and keeps both databases' indexes small."""
    seen: dict[str, None] = {}
    for part in parts:
        if part:
            for token in normalize(part).split():
                seen.setdefault(token, None)
    return " ".join(seen)


def refresh(conn: Connection, appeal_ids: Iterable[int]) -> None:
    """Rewrite the search documents of `appeal_ids` from the stored rows, in the caller's transaction."""
    ids = sorted(set(appeal_ids))
    if not ids:
        return
    parts: dict[int, list[str | None]] = defaultdict(list)
    for appeal_id, number, name, username in conn.execute(_HEADS, {"ids": ids}):
        if not parts[appeal_id]:
            parts[appeal_id] += [number, name]
        parts[appeal_id].append(username)
    for appeal_id, text, version_text in conn.execute(_TEXTS, {"ids": ids}):
        parts[appeal_id] += [text, version_text]
    rows = [{"appeal_id": appeal_id, "document": document(p)} for appeal_id, p in parts.items()]
    if rows:
        conn.execute(_upsert(conn.dialect.name), rows)


def write_first(
    conn: Connection, appeal_id: int, *, number: str, name: str | None, username: str | None, text: str
) -> None:
    """The document of an appeal that was opened in this transaction by a citizen also created in it: its
    rows are the one message (`text`, no version yet) and the one identity just inserted, so the document
    is what `refresh` would read back, without the two reads (a sixth of a new appeal's statements). The
    values go through `storable` as they did on their way into those rows (storage/types.py)."""
    parts = [storable(v) if v else v for v in (number, name, username, text)]
    conn.execute(_upsert(conn.dialect.name), [{"appeal_id": appeal_id, "document": document(parts)}])


def refresh_contact(conn: Connection, contact_id: int, *, also: int | None = None) -> None:
    """A citizen's name changed: every appeal of theirs is found by the new name (and `also`, the
    appeal their message joined, which may be another person's in a shared chat)."""
    ids = [row[0] for row in conn.execute(_CONTACT_APPEALS, {"contact_id": contact_id})]
    refresh(conn, ids if also is None else [*ids, also])


@cache
def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_search)
    return stmt.on_conflict_do_update(index_elements=["appeal_id"], set_={"document": stmt.excluded.document})
