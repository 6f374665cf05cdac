"""`appeal_tally`: counts of the finished appeals, kept by database triggers, for the inbox's counts.

The finished appeals (answered, closed, rejected, forwarded, merged) are years of history: grouping a
million of them per facet took 0.6-1.1 s (bench/README.md). Their counts change only when an appeal
enters or leaves a finished status or a finished appeal's counted columns change, so the database keeps
them: triggers on `appeal` (insert, update of a counted column, delete) add one to the row of the new
values when the new row is finished and take one from the row of the old values when the old row was.
Triggers catch every write path (the ORM, the prebuilt Core statements of storage/inbound.py, a manual
UPDATE) on both databases; appeal_query.facet_counts adds these counts to the open appeals' own.

Each appeal is counted at six grains (the `grain` column), so that a count reads the smallest one
that has every column it filters or groups on (appeal_query picks it). At 1,000,000 appeals:
    "n"  status, channel, category, language, concerned_unit_id, assigned: a moderator's counts (no unit
         in the scope or the filter), 1,300 rows;
    "m"  status, unit_id, concerned_unit_id, assigned: the unit facet, an officer's status counts, 1,600;
    "l", "k", "c"  "m" with the language, the category or the channel: a unit (scope, filter or facet)
         with one of those, 4,000-13,000 rows;
    "u"  every column: a unit with two of them, 136,000 rows, read through (grain, unit_id).
A finished appeal's change so costs six upserts and six decrements, in the statement that changes it.
Columns a grain leaves out hold NULL and are never read at that grain. `assigned` is whether the appeal
has an assignee: the tally does not hold who (300 officers would make it as large as the appeals); a
count per person reads the appeal table through ix_appeal_assignee_id (one person's appeals are few).

The columns keep NULL for "none", exactly as in `appeal`, so the scope's SQL (access.appeal_scope)
means the same over either table. A unique key over nullable columns would let two NULLs differ, so
the primary key is `key`, the grain and the counted values joined by '|' (codes never hold '|').
Rows that fall to 0 stay (the key space is bounded; a delete would cost every decrement a statement).

`install` creates the triggers and `rebuild` recomputes every row from `appeal` (migration 0018 and the
bench's bulk loader, which drops the triggers while it loads, call them).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from adaldyk_bots.domain import AppealStatus

__all__ = ["FINISHED", "GRAINS", "TRIGGERS", "drop", "install", "rebuild", "rebuild_sql"]

FINISHED: tuple[str, ...] = tuple(s.value for s in AppealStatus if not s.is_open)
_FINISHED_SQL = ", ".join(f"'{s}'" for s in FINISHED)
_DIMENSIONS = ("status", "channel", "category", "language", "unit_id", "concerned_unit_id")
_TEXT = {"status", "channel", "category", "language"}
# The columns each grain keeps (besides `assigned`, kept at every grain), smallest grain first: a count
# reads the first one that keeps what it needs.
GRAINS: dict[str, tuple[str, ...]] = {
    "n": ("status", "channel", "category", "language", "concerned_unit_id"),
    "m": ("status", "unit_id", "concerned_unit_id"),
    "l": ("status", "unit_id", "concerned_unit_id", "language"),
    "k": ("status", "unit_id", "concerned_unit_id", "category"),
    "c": ("status", "unit_id", "concerned_unit_id", "channel"),
    "u": _DIMENSIONS,
}
TRIGGERS = ("appeal_tally_ai", "appeal_tally_au", "appeal_tally_ad")
_UPSERT = " ON CONFLICT (key) DO UPDATE SET n = appeal_tally.n + 1"
_COLUMNS = "key, grain, status, channel, category, language, unit_id, concerned_unit_id, assigned, n"


def _values(row: str, grain: str) -> list[str]:
    """SQL for (key, grain, status … assigned) of `row` (new / old / appeal) at `grain`."""
    kept = GRAINS[grain]
    assigned = f"{row}.assignee_id IS NOT NULL"
    key = [f"'{grain}'"]
    for c in kept:
        value = f"{row}.{c}" if c in _TEXT else f"CAST({row}.{c} AS TEXT)"
        key.append(f"COALESCE({value}, '')")
    key.append(f"CASE WHEN {assigned} THEN '1' ELSE '0' END")
    columns = [
        f"{row}.{c}" if c in kept else ("CAST(NULL AS TEXT)" if c in _TEXT else "CAST(NULL AS INTEGER)")
        for c in _DIMENSIONS
    ]
    return [" || '|' || ".join(key), f"'{grain}'", *columns, f"({assigned})"]


def _add(row: str) -> list[str]:
    return [
        f"INSERT INTO appeal_tally ({_COLUMNS}) VALUES ({', '.join(_values(row, g))}, 1){_UPSERT}"
        for g in GRAINS
    ]


def _take(row: str) -> list[str]:
    return [f"UPDATE appeal_tally SET n = n - 1 WHERE key = {_values(row, g)[0]}" for g in GRAINS]


_WATCHED = (*_DIMENSIONS, "assignee_id")


def _sqlite() -> list[str]:
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _WATCHED)
    return [
        f"CREATE TRIGGER appeal_tally_ai AFTER INSERT ON appeal WHEN new.status IN ({_FINISHED_SQL}) BEGIN "
        + "; ".join(_add("new"))
        + "; END",
        f"CREATE TRIGGER appeal_tally_ad AFTER DELETE ON appeal WHEN old.status IN ({_FINISHED_SQL}) BEGIN "
        + "; ".join(_take("old"))
        + "; END",
        # One UPDATE trigger with both halves, each guarded: SQLite has no IF in a trigger body, and
        # INSERT … SELECT … WHERE needs the WHERE anyway (it also disambiguates the upsert's ON).
        f"CREATE TRIGGER appeal_tally_au AFTER UPDATE OF {', '.join(_WATCHED)} ON appeal"
        f" WHEN (old.status IN ({_FINISHED_SQL}) OR new.status IN ({_FINISHED_SQL})) AND ({changed}) BEGIN "
        + "; ".join(f"{t} AND old.status IN ({_FINISHED_SQL})" for t in _take("old"))
        + "; "
        + "; ".join(
            f"INSERT INTO appeal_tally ({_COLUMNS}) SELECT {', '.join(_values('new', g))}, 1"
            f" WHERE new.status IN ({_FINISHED_SQL}){_UPSERT}"
            for g in GRAINS
        )
        + "; END",
    ]


def _postgresql() -> list[str]:
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)
    take = "; ".join(_take("OLD"))
    add = "; ".join(_add("NEW"))
    return [
        "CREATE FUNCTION appeal_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF TG_OP <> 'INSERT' AND OLD.status IN ({_FINISHED_SQL}) THEN {take}; END IF;"
        f" IF TG_OP <> 'DELETE' AND NEW.status IN ({_FINISHED_SQL}) THEN {add}; END IF;"
        " RETURN NULL; END $$",
        f"CREATE TRIGGER appeal_tally_ai AFTER INSERT ON appeal FOR EACH ROW"
        f" WHEN (NEW.status IN ({_FINISHED_SQL})) EXECUTE FUNCTION appeal_tally_apply()",
        f"CREATE TRIGGER appeal_tally_ad AFTER DELETE ON appeal FOR EACH ROW"
        f" WHEN (OLD.status IN ({_FINISHED_SQL})) EXECUTE FUNCTION appeal_tally_apply()",
        f"CREATE TRIGGER appeal_tally_au AFTER UPDATE OF {', '.join(_WATCHED)} ON appeal FOR EACH ROW"
        f" WHEN ((OLD.status IN ({_FINISHED_SQL}) OR NEW.status IN ({_FINISHED_SQL})) AND ({changed}))"
        " EXECUTE FUNCTION appeal_tally_apply()",
    ]


def install(conn: Connection) -> None:
    """Create the triggers (the table is the model's, made by the migration)."""
    for ddl in _postgresql() if conn.dialect.name == "postgresql" else _sqlite():
        conn.execute(text(ddl))


def drop(conn: Connection) -> None:
    """Remove the triggers (before a bulk load; `install` and `rebuild` after it)."""
    for name in TRIGGERS:
        suffix = " ON appeal" if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name}{suffix}"))
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP FUNCTION IF EXISTS appeal_tally_apply()"))


def rebuild_sql() -> list[str]:
    """The statements of `rebuild`, the same on both databases (for a loader on a raw driver)."""
    out = ["DELETE FROM appeal_tally"]
    names = ["key", "grain", *_DIMENSIONS, "assigned"]
    for grain in GRAINS:
        inner = ", ".join(f"{v} AS {n}" for v, n in zip(_values("appeal", grain), names, strict=True))
        out.append(
            f"INSERT INTO appeal_tally ({_COLUMNS}) SELECT {', '.join(names)}, count(*) FROM"
            f" (SELECT {inner} FROM appeal WHERE appeal.status IN ({_FINISHED_SQL})) AS counted"
            f" GROUP BY {', '.join(names)}"
        )
    return out


def rebuild(conn: Connection) -> None:
    """Every row again from `appeal`: one INSERT … SELECT … GROUP BY per grain."""
    for sql in rebuild_sql():
        conn.execute(text(sql))
