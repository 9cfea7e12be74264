"""What a replay compares for a service: the rows its event handlers decide, keyed, with the
columns that follow from the log alone (not those agents, handlers or timers change later)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    name: str
    table: str
    key: str  # a column, or an SQL expression giving one text key per row
    columns: tuple[str, ...]
    # SQL selecting the keys the replayed inputs caused, with the tokens :ids (their event
    # ids, uuid[]) and :correlations (their correlation ids, uuid[]).
    scope: str
    # SQL over the live rows: which of :keys (text[]) changed after the range ended (:until);
    # those are not compared column by column.
    changed_later: str | None = None
    note: str = ""


_TYPES = {"ids": "uuid[]", "correlations": "uuid[]", "keys": "text[]", "until": "timestamptz"}


def bind(sql: str, **values: object) -> tuple[str, list[object]]:
    """Number the named tokens of `sql` ($1, $2 … in order of first use, cast to their type)
    and return the query with the values it uses."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}::{_TYPES[name]}"

    query = re.sub(r":(ids|correlations|keys|until)\b", number, sql)
    return query, [values[name] for name in order]
