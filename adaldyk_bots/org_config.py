"""config/org.toml read and checked: regions, units with heads and deputies, outside bodies, as plain data.

Every problem is reported with the line of the entry (or of its key) and the reason, all at once, so
one run of `adaldyk migrate` shows everything to fix. tomllib gives a line only for syntax errors, so
the lines of tables and keys are found by scanning the text for the `[[unit]]` / `[[unit.deputy]]` /
`[[region]]` / `[[outside_body]]` headers and the `key =` lines under them (the readable layout the
shipped file uses; an entry written as an inline table is reported at its table's line).

Nothing here touches the database: `org.sync_units` writes what this returns, `routing.suggest` reads
it, and start-up (runtime.Runtime.build) only validates.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

__all__ = [
    "KINDS",
    "ORG_FILE",
    "OTHER_BODY",
    "Deputy",
    "OrgConfig",
    "OrgConfigError",
    "OutsideBody",
    "Region",
    "UnitSpec",
    "load_org",
    "outside_bodies",
]

ORG_FILE = "org.toml"
OTHER_BODY = "other"  # reserved: a forwarding to an organisation the file does not list (forwarding.py)
KINDS = ("ministry", "committee", "department", "inspection", "subordinate", "office")

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Stem = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Strict):
    code: Code
    name_ru: Name
    name_kk: Name
    stems: tuple[Stem, ...] = ()


class Deputy(_Strict):
    name: Name
    position_ru: str = Field(default="", max_length=300)
    position_kk: str = Field(default="", max_length=300)
    username: Username | None = None
    starts_on: date = Field(alias="from")
    ends_on: date = Field(alias="to")


class UnitSpec(_Strict):
    code: Code
    kind: Literal["ministry", "committee", "department", "inspection", "subordinate", "office"]
    parent: Code | None = None
    name_ru: Name
    name_kk: Name
    head: str | None = Field(default=None, max_length=200)
    head_position_ru: str = Field(default="", max_length=300)
    head_position_kk: str = Field(default="", max_length=300)
    head_username: Username | None = None
    regions: tuple[Code, ...] = ()
    keywords: tuple[Stem, ...] = ()
    deputy: tuple[Deputy, ...] = ()


class OutsideBody(_Strict):
    """A body outside the ministry that appeals are forwarded to (APPC Art. 65, R5)."""

    code: Code
    name_ru: Name
    name_kk: Name
    name_en: str = Field(default="", max_length=300)  # for a citizen writing in English; else name_ru
    keywords: tuple[Stem, ...] = ()


class _File(_Strict):
    region: tuple[Region, ...] = ()
    unit: tuple[UnitSpec, ...] = ()
    outside_body: tuple[OutsideBody, ...] = ()


class OrgConfigError(ValueError):
    """config/org.toml cannot be used; `problems` are "line N: reason" strings, first line first."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = [f"line {line}: {reason}" if line else reason for line, reason in sorted(problems)]
        super().__init__(f"{path}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class OrgConfig:
    regions: tuple[Region, ...] = ()
    units: tuple[UnitSpec, ...] = ()
    outside_bodies: tuple[OutsideBody, ...] = ()
    warnings: tuple[str, ...] = ()
    unit_lines: dict[str, int] = field(default_factory=dict, compare=False)

    def unit(self, code: str) -> UnitSpec | None:
        return next((u for u in self.units if u.code == code), None)

    def parents_first(self) -> list[UnitSpec]:
        """The units in an order where each comes after its parent (the file may list a child first)."""
        done: set[str] = set()
        out: list[UnitSpec] = []
        pending = list(self.units)
        while pending:
            rest = [u for u in pending if u.parent is not None and u.parent not in done]
            for u in pending:
                if u not in rest:
                    out.append(u)
                    done.add(u.code)
            if len(rest) == len(pending):  # cannot happen after validation (no cycles, known parents)
                raise ValueError("the unit tree has a cycle")
            pending = rest
        return out


# --- where things are in the text ------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_]+)(?:\s*\.\s*([A-Za-z0-9_]+))?\s*\]\]")
_ANY_TABLE = re.compile(r"^\s*\[")


@dataclass
class _Entry:
    line: int
    end: int  # the last line of the entry's own keys (before the next table header)
    children: dict[str, list[_Entry]] = field(default_factory=dict)


class _Lines:
    """Line numbers of the array-of-tables entries and their keys, from the text itself."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.tables: dict[str, list[_Entry]] = {}
        current: _Entry | None = None
        last_top: _Entry | None = None
        for number, line in enumerate(self.lines, start=1):
            if current is not None and _ANY_TABLE.match(line):
                current.end = number - 1
                current = None
            match = _HEADER.match(line)
            if match is None:
                continue
            name, child = match.group(1), match.group(2)
            entry = _Entry(number, len(self.lines))
            if child is None:
                self.tables.setdefault(name, []).append(entry)
                last_top = entry
            elif last_top is not None:
                last_top.children.setdefault(child, []).append(entry)
            current = entry

    def key_line(self, entry: _Entry, key: str) -> int:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(entry.line + 1, entry.end + 1):
            if pattern.match(self.lines[number - 1]):
                return number
        return entry.line

    def top_line(self, name: str) -> int:
        pattern = re.compile(rf"^\s*(\[\[?\s*{re.escape(name)}\b|{re.escape(name)}\s*=)")
        return next((n for n, line in enumerate(self.lines, start=1) if pattern.match(line)), 0)

    def entry(self, table: str, index: int, child: str | None = None, child_index: int = 0) -> _Entry | None:
        entries = self.tables.get(table, [])
        if index >= len(entries):
            return None
        entry = entries[index]
        if child is None:
            return entry
        children = entry.children.get(child, [])
        return children[child_index] if child_index < len(children) else entry

    def of(self, loc: tuple[int | str, ...]) -> int:
        """The line for a pydantic error location such as ("unit", 3, "deputy", 0, "from")."""
        if not loc:
            return 0
        table = str(loc[0])
        if len(loc) < 2 or not isinstance(loc[1], int):
            return self.top_line(table)
        entry = self.entry(table, loc[1])
        if entry is None:
            return self.top_line(table)
        if len(loc) >= 4 and isinstance(loc[3], int) and loc[2] == "deputy":
            deputy = self.entry(table, loc[1], "deputy", loc[3])
            if deputy is None:
                return entry.line
            return self.key_line(deputy, str(loc[4])) if len(loc) > 4 else deputy.line
        return self.key_line(entry, str(loc[2])) if len(loc) > 2 else entry.line


# --- reading and checking --------------------------------------------------------------------------


def _describe(error: Any) -> str:
    loc = [str(p) for p in error["loc"] if not isinstance(p, int)]
    where = loc[-1] if loc else "entry"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {where!r}"
    if kind == "missing":
        return f"{where} is missing"
    if kind == "literal_error":
        return f"{where} must be one of {', '.join(KINDS)}"
    if kind == "string_pattern_mismatch":
        return f"{where} must be a code of lower-case letters, digits and _ (got {error.get('input')!r})"
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing"):
        return f"{where} must be a date like 2026-07-01 (got {error.get('input')!r})"
    if kind == "string_too_short":
        return f"{where} is empty"
    return f"{where}: {error['msg']}"


def _entry_name(data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and isinstance(loc[1], int):
        entries = data.get(str(loc[0]))
        if isinstance(entries, list) and loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
            code = entries[loc[1]].get("code")
            return f"{loc[0]} {code}: " if isinstance(code, str) else f"{loc[0]} #{loc[1] + 1}: "
    return ""


def load_org(path: Path) -> OrgConfig:
    """Read and check the file; OrgConfigError lists every problem with its line. No file: empty."""
    if not path.exists():
        return OrgConfig()
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message already ends "(at line N, column M)"
        line = int(m.group(1)) if (m := re.search(r"line (\d+)", str(exc))) else 0
        raise OrgConfigError(path, [(line, f"not valid TOML: {exc}")]) from None
    lines = _Lines(text)
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = [(lines.of(e["loc"]), _entry_name(data, e["loc"]) + _describe(e)) for e in exc.errors()]
        raise OrgConfigError(path, problems) from None
    problems, warnings = _check(parsed, lines)
    if problems:
        raise OrgConfigError(path, problems)
    unit_lines = {u.code: e.line for u, e in zip(parsed.unit, lines.tables.get("unit", []), strict=False)}
    return OrgConfig(parsed.region, parsed.unit, parsed.outside_body, tuple(warnings), unit_lines)


def _check(parsed: _File, lines: _Lines) -> tuple[list[tuple[int, str]], list[str]]:
    problems: list[tuple[int, str]] = []

    def line(table: str, index: int, key: str | None = None) -> int:
        entry = lines.entry(table, index)
        if entry is None:
            return 0
        return lines.key_line(entry, key) if key else entry.line

    coded: tuple[tuple[str, tuple[Region | UnitSpec | OutsideBody, ...]], ...] = (
        ("region", parsed.region),
        ("unit", parsed.unit),
        ("outside_body", parsed.outside_body),
    )
    for table, entries in coded:
        seen: dict[str, int] = {}
        for i, item in enumerate(entries):
            at = line(table, i, "code")
            if item.code in seen:
                problems.append(
                    (at, f"{table} {item.code}: the code is used twice (first at line {seen[item.code]})")
                )
            else:
                seen[item.code] = at
    for i, body in enumerate(parsed.outside_body):
        if body.code == OTHER_BODY:
            reserved = f"outside_body {body.code}: the code is the forwarding form's «another organisation»"
            problems.append((line("outside_body", i, "code"), reserved))
    regions = {r.code for r in parsed.region}
    units = {u.code: u for u in parsed.unit}
    roots = [i for i, u in enumerate(parsed.unit) if u.parent is None]
    if parsed.unit and len(roots) != 1:
        where = line("unit", roots[1]) if len(roots) > 1 else line("unit", 0)
        problems.append((where, f"exactly one unit (the ministry) has no parent; found {len(roots)}"))
    for i, u in enumerate(parsed.unit):
        reason = None
        if u.parent is not None and u.parent not in units:
            reason = f"unit {u.code}: parent {u.parent!r} is not a unit code"
        elif u.parent == u.code:
            reason = f"unit {u.code}: a unit cannot be its own parent"
        if reason:
            problems.append((line("unit", i, "parent"), reason))
        for region in u.regions:
            if region not in regions:
                reason = f"unit {u.code}: region {region!r} is not a [[region]] code"
                problems.append((line("unit", i, "regions"), reason))
        for j, d in enumerate(u.deputy):
            if d.ends_on < d.starts_on:
                entry = lines.entry("unit", i, "deputy", j)
                where = lines.key_line(entry, "to") if entry else 0
                reason = f"unit {u.code}: deputy {d.name}: 'to' {d.ends_on} is before 'from' {d.starts_on}"
                problems.append((where, reason))
    for i, circle in _cycles(parsed.unit, units):
        reason = f"unit {circle[0]}: the parents go round in a circle: {' → '.join(circle)}"
        problems.append((line("unit", i, "parent"), reason))
    return problems, []


def _cycles(entries: tuple[UnitSpec, ...], units: dict[str, UnitSpec]) -> list[tuple[int, list[str]]]:
    """Each circle of parents once (a unit that is its own parent is reported on its own)."""
    out: list[tuple[int, list[str]]] = []
    reported: set[str] = set()
    for i, u in enumerate(entries):
        if u.code in reported or u.parent == u.code:
            continue
        path = [u.code]
        current = u.parent
        while current is not None and current in units and current not in path:
            path.append(current)
            current = units[current].parent
        if current == u.code:
            reported.update(path)
            out.append((i, [*path, u.code]))
    return out


def outside_bodies(config_dir: Path) -> tuple[OutsideBody, ...]:
    """The outside bodies of config/org.toml (checked like the rest of the file)."""
    return load_org(config_dir / ORG_FILE).outside_bodies
