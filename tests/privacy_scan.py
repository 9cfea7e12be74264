"""Where a customer's identifying values still are (issue 19, erasure): every table column of a
schema, every file under a directory. A test scans for the erased customer (nothing may be
found) and for a control customer filed the same way (its values must be found, so a scan that
looks in the wrong place fails instead of passing)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import asyncpg

# Column types that can hold a value as text (a name in a jsonb payload, a phone in an array).
_TEXTUAL = ("text", "character varying", "character", "jsonb", "json", "ARRAY", "bytea", "USER-DEFINED")


async def columns(conn: asyncpg.Connection, schema: str) -> list[tuple[str, str, str]]:
    """(table, column, data_type) of every base table's column in `schema` that can hold text."""
    rows = await conn.fetch(
        """SELECT c.table_name, c.column_name, c.data_type
             FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE' AND c.data_type = ANY($2::text[])
            ORDER BY 1, 2""",
        schema, list(_TEXTUAL))
    return [(r["table_name"], r["column_name"], r["data_type"]) for r in rows]


async def find_in_schema(conn: asyncpg.Connection, schema: str, values: Iterable[str]) -> list[str]:
    """`table.column: value` for every column of `schema` holding one of `values` (as a substring,
    case-insensitive; in bytea, the value's UTF-8 bytes as given or lower-cased). Empty when none does."""
    wanted = [v for v in values if v]
    assert wanted, "nothing to look for"
    found: list[str] = []
    for table, column, data_type in await columns(conn, schema):
        col = _quote(column)
        # bytea may hold any bytes (a session hash is not UTF-8): look for the value's UTF-8 bytes
        # as given and lower-cased; text of every other type case-insensitively.
        where = (f"position(convert_to($1, 'UTF8') IN {col}) > 0 OR position(convert_to(lower($1), 'UTF8') IN {col}) > 0"
                 if data_type == "bytea" else f"position(lower($1) IN lower({col}::text)) > 0")
        for value in wanted:
            sql = (f"SELECT count(*) FROM {_quote(schema)}.{_quote(table)} "  # noqa: S608 - names from the catalog
                   f"WHERE {where}")
            if await conn.fetchval(sql, value):
                found.append(f"{schema}.{table}.{column}: {value}")
    return found


def find_in_files(root: Path, values: Iterable[str]) -> list[str]:
    """`path: value` for every file under `root` whose bytes contain one of `values` (UTF-8, or
    as JSON escapes them: `\\uXXXX` for non-ASCII)."""
    wanted = [v for v in values if v]
    assert wanted, "nothing to look for"
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        for value in wanted:
            forms = {value.lower().encode(), value.encode("ascii", "backslashreplace").decode().lower().encode(),
                     _json_escaped(value).lower().encode()}
            if any(form in data for form in forms):
                found.append(f"{path}: {value}")
    return found


def _json_escaped(value: str) -> str:
    return "".join(ch if ord(ch) < 128 else f"\\u{ord(ch):04x}" for ch in value)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
