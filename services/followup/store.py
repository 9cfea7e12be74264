"""Follow-up's SQL. Nothing else touches the `followup` schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = ("followup_id", "kind", "customer_id", "vin", "dealer_id", "region", "campaign_id", "complaint_id",
            "reason_event_id", "due_from", "due_by", "priority", "timezone", "under_warranty", "event_at")
_TYPES = ("text", "text", "text", "text", "text", "text", "text", "text", "text", "timestamptz", "timestamptz", "int",
          "text", "boolean", "timestamptz")


async def insert_followups(conn: asyncpg.Connection, followups: list[dict[str, Any]], created_at: datetime) -> set[str]:
    """Insert follow-ups in one statement; return the ids that are new (a repeated cause
    schedules nothing)."""
    if not followups:
        return set()
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=1))
    rows = await conn.fetch(
        f"""INSERT INTO followups ({", ".join(_COLUMNS)}, created_at)
            SELECT *, ${len(_COLUMNS) + 1}::timestamptz FROM unnest({arrays})
            ON CONFLICT (followup_id) DO NOTHING
            RETURNING followup_id""",
        *[[f.get(c) for f in followups] for c in _COLUMNS],
        created_at,
    )
    return {row[0] for row in rows}
