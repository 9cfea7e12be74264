"""The SQL of rectification measures and of the counts their effect is measured with (the
`measures`, `measure_visits`, `measure_defects` and `measure_alerts` tables; complaints by
category are the `cases` table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.complaints.measures import Window
from shared.api import Sort, SortKey, keyset
from shared.bulk import Table

VISITS = Table("measure_visits", {
    "repair_order_id": "text", "picked_up_at": "timestamptz", "dealer_id": "text", "event_id": "uuid",
})
DEFECTS = Table("measure_defects", {
    "report_id": "text", "category": "text", "reported_at": "timestamptz", "event_id": "uuid",
})
ALERTS = Table("measure_alerts", {
    "alert_id": "text", "category": "text", "title": "text", "raised_at": "timestamptz",
})


@dataclass(frozen=True, slots=True)
class MeasureRow:
    measure_id: str
    target_kind: str
    category: str
    alert_id: str | None
    title: str
    action: str
    owner: str
    due_at: datetime
    recorded_at: datetime
    recorded_by: str
    reminded_at: datetime | None
    verdict: str | None
    verified_by: str | None
    verified_at: datetime | None
    verify_note: str | None
    correlation_id: Any


MEASURES = Table("measures", {
    "measure_id": "text", "target_kind": "text", "category": "text", "alert_id": "text", "title": "text",
    "action": "text", "owner": "text", "due_at": "timestamptz", "recorded_at": "timestamptz", "recorded_by": "text",
    "reminded_at": "timestamptz", "verdict": "text", "verified_by": "text", "verified_at": "timestamptz",
    "verify_note": "text", "correlation_id": "uuid",
})
# MeasureRow's fields, in its order (a literal: SQL is built from constants only)
_COLUMNS = ("measure_id, target_kind, category, alert_id, title, action, owner, due_at, recorded_at, recorded_by, "
            "reminded_at, verdict, verified_by, verified_at, verify_note, correlation_id")


async def add_visits(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await VISITS.insert(conn, rows, on_conflict="(repair_order_id) DO NOTHING")


async def add_defects(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await DEFECTS.insert(conn, rows, on_conflict="(report_id) DO NOTHING")


async def add_alerts(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """An alert's update (a later look) keeps the first raise's instant and category."""
    await ALERTS.upsert(conn, rows, key=("alert_id",), update=("title",))


async def alert_category(conn: asyncpg.Connection, alert_id: str) -> str | None:
    return await conn.fetchval("SELECT category FROM measure_alerts WHERE alert_id = $1", alert_id)  # type: ignore[no-any-return]


async def insert_measure(conn: asyncpg.Connection, m: MeasureRow) -> bool:
    """False when a measure with this id exists already (the same Idempotency-Key)."""
    inserted = await MEASURES.insert(conn, [asdict(m)], on_conflict="(measure_id) DO NOTHING", returning="measure_id")
    return bool(inserted)


async def measure(conn: asyncpg.Connection, measure_id: str, *, lock: bool = False) -> MeasureRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM measures WHERE measure_id = $1{' FOR UPDATE' if lock else ''}", measure_id)
    return MeasureRow(**dict(row)) if row else None


# The measures' sort keys (shared.api keyset paging) and their status as SQL (measures.status, with
# the moment as $4 and the reminder period as $5).
MEASURE_SORTS = {"due_at": SortKey("due_at", "timestamptz"), "recorded_at": SortKey("recorded_at", "timestamptz")}
_STATUS = """CASE WHEN verified_at IS NOT NULL THEN 'verified' WHEN $4::timestamptz >= due_at THEN 'overdue'
                  WHEN $4::timestamptz >= due_at - $5::interval THEN 'due' ELSE 'open' END"""


async def measures(conn: asyncpg.Connection, *, starts_at: datetime | None, ends_at: datetime | None,
                   owner: str | None = None) -> list[MeasureRow]:
    """All measures, or those in force or settled in [starts_at, ends_at): recorded before its
    end and not verified before its start. Due first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM measures
             WHERE ($1::timestamptz IS NULL OR verified_at IS NULL OR verified_at >= $1)
               AND ($2::timestamptz IS NULL OR recorded_at < $2)
               AND ($3::text IS NULL OR owner = $3)
             ORDER BY due_at, measure_id""",
        starts_at, ends_at, owner,
    )
    return [MeasureRow(**dict(r)) for r in rows]


async def measures_page(conn: asyncpg.Connection, *, starts_at: datetime | None, ends_at: datetime | None,
                        owner: str | None, status: str | None, now: datetime, due_soon: timedelta, sort: Sort,
                        cursor: dict[str, Any] | None, limit: int) -> list[MeasureRow]:
    """A page of the measures above (limit + 1 rows, shared.api.make_page cuts them) of a status
    (as of `now`), in `sort` order after `cursor`."""
    page = keyset(sort, "measure_id", cursor, first_param=7)
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM measures
             WHERE ($1::timestamptz IS NULL OR verified_at IS NULL OR verified_at >= $1)
               AND ($2::timestamptz IS NULL OR recorded_at < $2)
               AND ($3::text IS NULL OR owner = $3)
               AND ($6::text IS NULL OR {_STATUS} = $6)
               AND {page.where}
             ORDER BY {page.order_by} LIMIT ${7 + len(page.params)}""",
        starts_at, ends_at, owner, now, due_soon, status, *page.params, limit + 1,
    )
    return [MeasureRow(**dict(r)) for r in rows]


async def mark_reminded(conn: asyncpg.Connection, measure_id: str, at: datetime) -> None:
    await conn.execute("UPDATE measures SET reminded_at = $2 WHERE measure_id = $1", measure_id, at)


async def mark_verified(conn: asyncpg.Connection, measure_id: str, *, verdict: str, by: str, at: datetime,
                        note: str) -> None:
    await conn.execute(
        """UPDATE measures SET verdict = $2, verified_by = $3, verified_at = $4, verify_note = $5
            WHERE measure_id = $1""",
        measure_id, verdict, by, at, note,
    )


async def counts(conn: asyncpg.Connection, target_kind: str, category: str,
                 windows: Sequence[Window]) -> list[tuple[int, int]]:
    """(events of the category, workshop visits) in each window: complaints filed in the
    category for a category measure, defect reports of the part category for an alert's."""
    if target_kind == "category":
        events_sql = "SELECT count(*) FROM cases WHERE category = $1 AND filed_at >= $2 AND filed_at < $3"
    else:
        # the workshop's and ERP's reports, and the product-quality complaints naming the part
        # category (the ComplaintPartDefectReported this service publishes for them)
        events_sql = """SELECT (SELECT count(*) FROM measure_defects
                                 WHERE category = $1 AND reported_at >= $2 AND reported_at < $3)
                             + (SELECT count(*) FROM cases WHERE category = 'product_quality' AND part_category = $1
                                   AND filed_at >= $2 AND filed_at < $3)"""
    found = []
    for w in windows:
        events = await conn.fetchval(events_sql, category, w.starts_at, w.ends_at)
        visits = await conn.fetchval(
            "SELECT count(*) FROM measure_visits WHERE picked_up_at >= $1 AND picked_up_at < $2",
            w.starts_at, w.ends_at)
        found.append((int(events), int(visits)))
    return found
