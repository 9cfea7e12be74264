"""Set-based SQL for batch handlers: one statement per table for a whole batch.

A `Table` names its columns and their Postgres types once; `insert`, `upsert` and `update`
send every row in one statement as one array per column (`unnest`), so a batch of 2,000
pickups is one round trip per table, not 2,000. Values are always parameters, never spliced
into the text; only the table's own (code-declared) names are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import asyncpg
import orjson

Row = Mapping[str, Any]
# Sent as text and cast in the statement: JSON documents, and arrays (unnest would flatten an
# array of arrays into one column of elements).
_JSON_TYPES = frozenset({"json", "jsonb"})
_NUMERIC_ARRAYS = frozenset({"int[]", "bigint[]", "smallint[]"})
_ARRAYS = _NUMERIC_ARRAYS | {"text[]"}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE = re.compile(r"^[a-z][a-z0-9_ ]*(\[\])?$")


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _array_text(value: Any, pg_type: str) -> str | None:
    """An array literal: numbers as they are, strings double-quoted with \\ and \" escaped."""
    if value is None:
        return None
    if pg_type in _NUMERIC_ARRAYS:
        return "{" + ",".join(str(int(v)) for v in value) + "}"
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value) + "}"


def _as_text(pg_type: str) -> bool:
    return pg_type in _JSON_TYPES or pg_type in _ARRAYS


@dataclass(frozen=True, eq=False)
class Table:
    """A table's name and the columns a batch writes, with their Postgres types."""

    name: str
    columns: Mapping[str, str]
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Names are spliced into the statements: only plain lower-case identifiers and type names.
        bad = [n for n in (self.name, *self.columns) if not _IDENTIFIER.match(n)]
        bad += [t for t in self.columns.values()
                if not _TYPE.match(t) or (t.endswith("[]") and t not in _ARRAYS)]
        if bad:
            raise ValueError(f"table {self.name!r}: not plain identifiers or type names: {bad}")
        object.__setattr__(self, "_order", tuple(self.columns))

    # -- statement text (cached per shape) -------------------------------------------------
    def _source(self, names: tuple[str, ...]) -> str:
        """`unnest($1::text[], …) AS u(a, …)` selecting each column with its type."""
        arrays = ", ".join(
            f"${i}::{'text' if _as_text(self.columns[n]) else self.columns[n]}[]" for i, n in enumerate(names, 1)
        )
        return f"unnest({arrays}) AS u({', '.join(names)})"

    def _select(self, names: tuple[str, ...]) -> str:
        return ", ".join(f"u.{n}::{self.columns[n]}" if _as_text(self.columns[n]) else f"u.{n}" for n in names)

    def _arrays(self, names: tuple[str, ...], rows: Sequence[Row]) -> list[list[Any]]:
        arrays = []
        for n in names:
            values = [row.get(n) for row in rows]
            pg_type = self.columns[n]
            arrays.append([_json_text(v) for v in values] if pg_type in _JSON_TYPES
                          else [_array_text(v, pg_type) for v in values] if pg_type in _ARRAYS else values)
        return arrays

    def _names(self, only: Iterable[str] | None) -> tuple[str, ...]:
        if only is None:
            return self._order
        names = tuple(only)
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise KeyError(f"{self.name} has no column {', '.join(unknown)} (declared: {', '.join(self._order)})")
        return names

    # -- statements ------------------------------------------------------------------------
    async def insert(self, conn: asyncpg.Connection, rows: Sequence[Row], *, columns: Iterable[str] | None = None,
                     on_conflict: str = "", returning: str = "") -> list[asyncpg.Record]:
        """INSERT every row; `on_conflict` is the clause after ON CONFLICT (e.g. "(id) DO NOTHING")."""
        if not rows:
            return []
        names = self._names(columns)
        sql = _insert_sql(self, names, on_conflict, returning)
        args = self._arrays(names, rows)
        if returning:
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]
        await conn.execute(sql, *args)
        return []

    async def upsert(self, conn: asyncpg.Connection, rows: Sequence[Row], *, key: Sequence[str],
                     update: Iterable[str] | None = None, where: str = "", columns: Iterable[str] | None = None,
                     returning: str = "") -> list[asyncpg.Record]:
        """INSERT, or on a `key` conflict set the `update` columns (default: all the others) from
        the new row, when `where` holds (e.g. "t.updated_at <= EXCLUDED.updated_at"). A row may
        appear once per statement: callers keep the newest per key."""
        names = self._names(columns)
        changed = tuple(n for n in (update if update is not None else names) if n not in key)
        assignments = ", ".join(f"{n} = EXCLUDED.{n}" for n in changed)
        action = f"DO UPDATE SET {assignments}" + (f" WHERE {where}" if where else "") if changed else "DO NOTHING"
        return await self.insert(conn, rows, columns=names, on_conflict=f"({', '.join(key)}) {action}",
                                 returning=returning)

    async def update(self, conn: asyncpg.Connection, rows: Sequence[Row], *, key: Sequence[str],
                     columns: Iterable[str], where: str = "", returning: str = "") -> list[asyncpg.Record]:
        """UPDATE the rows matching each row's `key` columns, setting `columns` from it."""
        if not rows:
            return []
        changed = self._names(columns)
        names = tuple(key) + tuple(n for n in changed if n not in key)
        sql = _update_sql(self, names, tuple(key), changed, where, returning)
        args = self._arrays(names, rows)
        if returning:
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]
        await conn.execute(sql, *args)
        return []


@cache
def _insert_sql(table: Table, names: tuple[str, ...], on_conflict: str, returning: str) -> str:
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {table._select(names)} FROM {table._source(names)}"
    if on_conflict:
        sql += f" ON CONFLICT {on_conflict}"
    if returning:
        sql += f" RETURNING {returning}"
    return sql


@cache
def _update_sql(table: Table, names: tuple[str, ...], key: tuple[str, ...], changed: tuple[str, ...], where: str,
                returning: str) -> str:
    assignments = ", ".join(
        f"{n} = u.{n}::{table.columns[n]}" if _as_text(table.columns[n]) else f"{n} = u.{n}" for n in changed
    )
    match = " AND ".join(f"t.{k} = u.{k}" for k in key)
    sql = f"UPDATE {table.name} AS t SET {assignments} FROM {table._source(names)} WHERE {match}"
    if where:
        sql += f" AND ({where})"
    if returning:
        sql += f" RETURNING {returning}"
    return sql


def newest(rows: Iterable[Row], key: str | Sequence[str], at: str) -> list[Row]:
    """One row per key, the newest by `at` (a multi-row upsert may touch each row only once);
    on a tie the later row wins."""
    keys = (key,) if isinstance(key, str) else tuple(key)
    kept: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        ident = tuple(row[k] for k in keys)
        held = kept.get(ident)
        if held is None or row[at] >= held[at]:
            kept[ident] = row
    return list(kept.values())
