"""Quality's SQL. Nothing else touches the `quality` schema.

Handlers work a batch at a time: one query loads what the batch needs, multi-row statements
(`unnest`) write it. Concurrency between replicas (a VIN's reports reach quality on two
topics; a batch's reports on many partitions) is settled by locks taken in one order:
a vehicle (advisory lock) -> a cell row -> an alert row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.quality.domain import (
    Cell,
    CellEvidence,
    CountedDefect,
    Counting,
    DealerLines,
    DefectReport,
    Exposure,
    FittedPart,
    ReportPoint,
)

# ---------------------------------------------------------------------------------------
# Vehicles and units in service


async def upsert_vehicles(conn: asyncpg.Connection, vehicles: Sequence[dict[str, Any]], now: datetime) -> set[str]:
    """Write each sale unless a later one (by occurred_at) is on file; replace the parts list
    of the vehicles written. Returns their VINs."""
    if not vehicles:
        return set()
    rows = await conn.fetch(
        """INSERT INTO vehicles (vin, model, sold_at, dealer_id, region, event_id, occurred_at, updated_at)
           SELECT *, $8::timestamptz FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                                                 $6::uuid[], $7::timestamptz[])
           ON CONFLICT (vin) DO UPDATE SET
               model = EXCLUDED.model, sold_at = EXCLUDED.sold_at, dealer_id = EXCLUDED.dealer_id,
               region = EXCLUDED.region, event_id = EXCLUDED.event_id, occurred_at = EXCLUDED.occurred_at,
               updated_at = EXCLUDED.updated_at
           WHERE vehicles.occurred_at <= EXCLUDED.occurred_at
           RETURNING vin""",
        [v["vin"] for v in vehicles], [v["model"] for v in vehicles], [v["sold_at"] for v in vehicles],
        [v["dealer_id"] for v in vehicles], [v["region"] for v in vehicles], [v["event_id"] for v in vehicles],
        [v["occurred_at"] for v in vehicles], now,
    )
    written = {row[0] for row in rows}
    await conn.execute("DELETE FROM vehicle_parts WHERE vin = ANY($1::text[])", list(written))
    parts = [(v["vin"], line, p, v["model"], v["sold_at"])
             for v in vehicles if v["vin"] in written for line, p in enumerate(v["parts"], start=1)]
    if parts:
        await conn.execute(
            """INSERT INTO vehicle_parts (vin, line, category, part_no, batch, supplier_id, model, sold_at)
               SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                    $8::timestamptz[])""",
            [p[0] for p in parts], [p[1] for p in parts], [p[2].category for p in parts], [p[2].part_no for p in parts],
            [p[2].batch for p in parts], [p[2].supplier_id for p in parts], [p[3] for p in parts],
            [p[4] for p in parts],
        )
    return written


async def fitted_parts(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, tuple[str, list[FittedPart]]]:
    """VIN -> (model, parts fitted) for the vehicles whose sale is on file."""
    rows = await conn.fetch(
        """SELECT v.vin, v.model, p.category, p.part_no, p.batch, p.supplier_id
             FROM vehicles v LEFT JOIN vehicle_parts p ON p.vin = v.vin
            WHERE v.vin = ANY($1::text[]) ORDER BY v.vin, p.line""",
        list(set(vins)),
    )
    found: dict[str, tuple[str, list[FittedPart]]] = {}
    for row in rows:
        model, parts = found.setdefault(row["vin"], (row["model"], []))
        if row["category"] is not None:
            parts.append(FittedPart(row["category"], row["part_no"], row["batch"], row["supplier_id"]))
    return found


# ---------------------------------------------------------------------------------------
# Defect reports


@dataclass(frozen=True)
class StoredReport:
    report: DefectReport
    counting: Counting
    event_id: uuid.UUID
    correlation_id: uuid.UUID


_REPORT_COLUMNS = (
    "report_id", "source", "event_id", "correlation_id", "vin", "category", "failure_mode", "reported_part_no",
    "reported_batch", "reported_supplier_id", "reported_model", "part_no", "batch", "supplier_id", "model",
    "mileage_km", "reported_by", "reported_at", "complaint_id", "description", "resolution", "resolution_note",
    "cell_batch", "cell_supplier_id", "cell_model",
)
_REPORT_TYPES = (
    "text", "text", "uuid", "uuid", "text", "text", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "int", "text", "timestamptz", "text", "text", "text", "text", "text", "text", "text",
)


async def lock_vehicles(conn: asyncpg.Connection, vins: Iterable[str]) -> None:
    """Serialise the work on one vehicle across replicas: its sale and its reports (which reach
    quality on two topics, possibly at two consumers) are resolved and counted one at a time."""
    keys = sorted(set(vins))
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('quality-vin:' || v, 0)) FROM unnest($1::text[]) v", keys
        )


async def insert_reports(
    conn: asyncpg.Connection, rows: Sequence[tuple[DefectReport, DefectReport, uuid.UUID, uuid.UUID]], now: datetime
) -> set[str]:
    """Insert (as reported, as resolved, event id, correlation id) rows; a report id already on
    file is kept as it is (a redelivery or a replay). Returns the ids that are new."""
    if not rows:
        return set()
    values = []
    for original, resolved, event_id, correlation_id in rows:
        values.append((
            resolved.report_id, resolved.source, event_id, correlation_id, resolved.vin, resolved.category,
            resolved.failure_mode, original.part_no, original.batch, original.supplier_id, original.model,
            resolved.part_no, resolved.batch, resolved.supplier_id, resolved.model, resolved.mileage_km,
            resolved.reported_by, resolved.reported_at, resolved.complaint_id, resolved.description,
            resolved.resolution, resolved.resolution_note, resolved.batch, resolved.supplier_id, resolved.model,
        ))
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(_REPORT_TYPES, start=1))
    inserted = await conn.fetch(
        f"""INSERT INTO reports ({", ".join(_REPORT_COLUMNS)}, received_at)
            SELECT *, ${len(_REPORT_COLUMNS) + 1}::timestamptz FROM unnest({arrays})
            ON CONFLICT (report_id) DO NOTHING
            RETURNING report_id""",
        *[list(column) for column in zip(*values, strict=True)], now,
    )
    return {row[0] for row in inserted}


def _stored(row: asyncpg.Record) -> StoredReport:
    report = DefectReport(
        report_id=row["report_id"], source=row["source"], category=row["category"], failure_mode=row["failure_mode"],
        reported_at=row["reported_at"], reported_by=row["reported_by"], vin=row["vin"], part_no=row["part_no"],
        batch=row["batch"], supplier_id=row["supplier_id"], model=row["model"], mileage_km=row["mileage_km"],
        complaint_id=row["complaint_id"], description=row["description"], resolution=row["resolution"],
        resolution_note=row["resolution_note"],
    )
    counting = Counting(row["report_id"], row["counted"], row["duplicate_of"], row["cell_batch"],
                        row["cell_supplier_id"], row["cell_model"])
    return StoredReport(report, counting, row["event_id"], row["correlation_id"])


def as_reported(row: asyncpg.Record) -> DefectReport:
    """The report as it arrived (before resolution from the vehicle)."""
    return DefectReport(
        report_id=row["report_id"], source=row["source"], category=row["category"], failure_mode=row["failure_mode"],
        reported_at=row["reported_at"], reported_by=row["reported_by"], vin=row["vin"],
        part_no=row["reported_part_no"], batch=row["reported_batch"], supplier_id=row["reported_supplier_id"],
        model=row["reported_model"], mileage_km=row["mileage_km"], complaint_id=row["complaint_id"],
        description=row["description"],
    )


async def reports_of(conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]]) -> list[StoredReport]:
    """Every report on these (vin, category) pairs."""
    pairs = sorted(set(pairs))
    if not pairs:
        return []
    rows = await conn.fetch(
        """SELECT r.* FROM reports r JOIN unnest($1::text[], $2::text[]) AS p(vin, category)
               ON r.vin = p.vin AND r.category = p.category
            ORDER BY r.report_id""",
        [p[0] for p in pairs], [p[1] for p in pairs],
    )
    return [_stored(row) for row in rows]


async def reports_by_id(conn: asyncpg.Connection, ids: Iterable[str]) -> list[StoredReport]:
    rows = await conn.fetch("SELECT * FROM reports WHERE report_id = ANY($1::text[]) ORDER BY report_id", list(ids))
    return [_stored(row) for row in rows]


async def unresolved_reports_of(conn: asyncpg.Connection, vins: Iterable[str]) -> list[asyncpg.Record]:
    """Reports on these vehicles that were not complete as reported (their resolution may change
    now that the sale is known)."""
    return await conn.fetch(
        """SELECT * FROM reports WHERE vin = ANY($1::text[]) AND resolution <> 'as_reported'
            ORDER BY report_id FOR UPDATE""",
        list(set(vins)),
    )


async def update_resolutions(conn: asyncpg.Connection, reports: Sequence[DefectReport]) -> None:
    if not reports:
        return
    await conn.execute(
        """UPDATE reports r SET part_no = u.part_no, batch = u.batch, supplier_id = u.supplier_id, model = u.model,
                                resolution = u.resolution, resolution_note = u.note
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS u(report_id, part_no, batch, supplier_id, model, resolution, note)
            WHERE r.report_id = u.report_id""",
        [r.report_id for r in reports], [r.part_no for r in reports], [r.batch for r in reports],
        [r.supplier_id for r in reports], [r.model for r in reports], [r.resolution for r in reports],
        [r.resolution_note for r in reports],
    )


async def update_countings(conn: asyncpg.Connection, countings: Sequence[Counting]) -> None:
    if not countings:
        return
    await conn.execute(
        """UPDATE reports r SET counted = u.counted, duplicate_of = u.duplicate_of, cell_batch = u.batch,
                                cell_supplier_id = u.supplier_id, cell_model = u.model
             FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS u(report_id, counted, duplicate_of, batch, supplier_id, model)
            WHERE r.report_id = u.report_id""",
        [c.report_id for c in countings], [c.counted for c in countings], [c.duplicate_of for c in countings],
        [c.batch for c in countings], [c.supplier_id for c in countings], [c.model for c in countings],
    )


# ---------------------------------------------------------------------------------------
# Cells and their evidence


@dataclass(frozen=True)
class CellRow:
    key: str
    since: datetime | None
    dirty: bool
    last_event_id: uuid.UUID | None
    last_correlation_id: uuid.UUID | None


async def lock_cells(conn: asyncpg.Connection, cells: Sequence[Cell], now: datetime) -> dict[str, CellRow]:
    """Create the cells that are new and lock them all, in key order (no deadlocks between replicas)."""
    if not cells:
        return {}
    await conn.execute(
        """INSERT INTO cells (cell_key, kind, category, batch, supplier_id, model, created_at)
           SELECT *, $7::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT (cell_key) DO NOTHING""",
        [c.key for c in cells], [c.kind for c in cells], [c.category for c in cells], [c.batch for c in cells],
        [c.supplier_id for c in cells], [c.model for c in cells], now,
    )
    return await locked_cells(conn, [c.key for c in cells])


async def locked_cells(conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, CellRow]:
    rows = await conn.fetch(
        """SELECT cell_key, since, dirty, last_event_id, last_correlation_id FROM cells
            WHERE cell_key = ANY($1::text[]) ORDER BY cell_key FOR UPDATE""",
        sorted(set(keys)),
    )
    return {r["cell_key"]: CellRow(r["cell_key"], r["since"], r["dirty"], r["last_event_id"],
                                   r["last_correlation_id"]) for r in rows}


async def mark_arrivals(conn: asyncpg.Connection, arrivals: dict[str, tuple[uuid.UUID, uuid.UUID]]) -> None:
    """New reports in these cells await the next look; remember the latest report's event as
    the cause of what the look decides."""
    if not arrivals:
        return
    keys = sorted(arrivals)
    await conn.execute(
        """UPDATE cells c SET dirty = true, last_event_id = u.event_id, last_correlation_id = u.correlation_id
             FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS u(cell_key, event_id, correlation_id)
            WHERE c.cell_key = u.cell_key""",
        keys, [arrivals[k][0] for k in keys], [arrivals[k][1] for k in keys],
    )


async def dirty_cells(conn: asyncpg.Connection) -> list[str]:
    return [r[0] for r in await conn.fetch("SELECT cell_key FROM cells WHERE dirty ORDER BY cell_key")]


async def finish_looks(conn: asyncpg.Connection, looked: dict[str, bool], at: datetime) -> None:
    """Record the looks taken at `at`; `looked[key]` is whether the cell stays dirty."""
    if not looked:
        return
    keys = sorted(looked)
    await conn.execute(
        """UPDATE cells c SET dirty = u.dirty, last_look_at = $3
             FROM unnest($1::text[], $2::boolean[]) AS u(cell_key, dirty) WHERE c.cell_key = u.cell_key""",
        keys, [looked[k] for k in keys], at,
    )


async def restart_cell(conn: asyncpg.Connection, key: str, since: datetime) -> None:
    await conn.execute("UPDATE cells SET since = $2, dirty = false WHERE cell_key = $1", key, since)


def _cell_filter(cell: Cell, first_param: int, *, reports: bool) -> tuple[str, list[Any]]:
    """The WHERE clause selecting a cell's rows: reports by the attributes they are counted
    under (alias r), units by the part's own (alias p)."""
    if reports:
        batch, supplier, model, alias = "cell_batch", "cell_supplier_id", "cell_model", "r"
    else:
        batch, supplier, model, alias = "batch", "supplier_id", "model", "p"
    n = first_param
    if cell.kind == "batch":
        return f"{alias}.category = ${n} AND {alias}.{batch} = ${n + 1}", [cell.category, cell.batch]
    return (f"{alias}.category = ${n} AND {alias}.{supplier} = ${n + 1} AND {alias}.{model} = ${n + 2}",
            [cell.category, cell.supplier_id, cell.model])


async def cell_evidence(conn: asyncpg.Connection, cell: Cell, since: datetime | None, until: datetime) -> CellEvidence:
    """A cell's counted reports in (since, until) (their times; the latest one since `since` at
    any time) and the instants its units went into service before `until`: what both tests
    need to follow the count and the expectation report by report."""
    report_filter, report_args = _cell_filter(cell, 3, reports=True)
    reports = await conn.fetchrow(
        f"""SELECT coalesce(array_agg(extract(epoch FROM r.reported_at)::float8 ORDER BY r.reported_at)
                                FILTER (WHERE r.reported_at < $2), '{{}}') AS times,
                   max(r.reported_at) AS latest
              FROM reports r
             WHERE r.counted AND {report_filter} AND ($1::timestamptz IS NULL OR r.reported_at > $1)""",
        since, until, *report_args,
    )
    unit_filter, unit_args = _cell_filter(cell, 2, reports=False)
    units = await conn.fetchval(
        f"""SELECT coalesce(array_agg(extract(epoch FROM p.sold_at)::float8), '{{}}')
              FROM vehicle_parts p WHERE {unit_filter} AND p.sold_at < $1""",
        until, *unit_args,
    )
    return CellEvidence(since, until, tuple(reports["times"]), Exposure(units), reports["latest"])


async def cell_reports(conn: asyncpg.Connection, cell: Cell, since: datetime | None, until: datetime | None,
                       limit: int | None = None) -> list[ReportPoint]:
    """Counted reports of a cell in (since, until), oldest first."""
    report_filter, args = _cell_filter(cell, 3, reports=True)
    rows = await conn.fetch(
        f"""SELECT r.report_id, r.reported_at, r.failure_mode, r.vin FROM reports r
             WHERE r.counted AND {report_filter}
               AND ($1::timestamptz IS NULL OR r.reported_at > $1) AND ($2::timestamptz IS NULL OR r.reported_at < $2)
             ORDER BY r.reported_at, r.report_id
             {f"LIMIT {int(limit)}" if limit else ""}""",
        since, until, *args,
    )
    return [ReportPoint(r["report_id"], r["reported_at"], r["failure_mode"], r["vin"]) for r in rows]


async def monitored_cells(conn: asyncpg.Connection) -> int:
    """Cells with units in service (for family-wise control across cells)."""
    return int(await conn.fetchval(
        """SELECT (SELECT count(*) FROM (SELECT DISTINCT category, batch FROM vehicle_parts) b)
                + (SELECT count(*) FROM (SELECT DISTINCT category, supplier_id, model FROM vehicle_parts) s)"""
    ))


# ---------------------------------------------------------------------------------------
# Alerts

_ALERT_FIELDS = (
    "alert_id", "cell_key", "cell", "category", "rule", "state", "observed", "expected", "statistic", "p_value",
    "threshold", "as_of", "since", "details", "report_ids", "vins", "revision", "raised_at", "updated_at",
    "last_event_id", "correlation_id",
)


async def open_alerts(conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM alerts WHERE cell_key = ANY($1::text[]) AND state <> 'closed'
            ORDER BY cell_key FOR UPDATE""",
        sorted(set(keys)),
    )
    return {r["cell_key"]: dict(r) for r in rows}


async def save_alert(conn: asyncpg.Connection, alert: dict[str, Any]) -> None:
    placeholders = ", ".join(f"${i}" for i in range(1, len(_ALERT_FIELDS) + 1))
    updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in _ALERT_FIELDS if f not in ("alert_id", "cell_key", "raised_at"))
    await conn.execute(
        f"""INSERT INTO alerts ({", ".join(_ALERT_FIELDS)}) VALUES ({placeholders})
            ON CONFLICT (alert_id) DO UPDATE SET {updates}""",
        *[alert[f] for f in _ALERT_FIELDS],
    )


async def alert(conn: asyncpg.Connection, alert_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT * FROM alerts WHERE alert_id = $1{' FOR UPDATE' if lock else ''}", alert_id)
    return dict(row) if row else None


async def set_alert_state(conn: asyncpg.Connection, alert_id: str, state: str, at: datetime, actor: str,
                          note: str | None, event_id: uuid.UUID) -> None:
    column = {"acknowledged": "acknowledge", "closed": "close"}[state]
    stamp = {"acknowledged": "acknowledged", "closed": "closed"}[state]
    await conn.execute(
        f"""UPDATE alerts SET state = $2, {stamp}_at = $3, {stamp}_by = $4, {column}_note = $5, updated_at = $3,
                              last_event_id = $6
             WHERE alert_id = $1""",
        alert_id, state, at, actor, note, event_id,
    )


async def list_alerts(conn: asyncpg.Connection, states: Sequence[str], category: str | None, limit: int,
                      offset: int) -> tuple[int, list[dict[str, Any]]]:
    total = await conn.fetchval(
        "SELECT count(*) FROM alerts WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR category = $2)",
        list(states), category,
    )
    rows = await conn.fetch(
        """SELECT * FROM alerts WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR category = $2)
            ORDER BY raised_at DESC, alert_id LIMIT $3 OFFSET $4""",
        list(states), category, limit, offset,
    )
    return int(total), [dict(r) for r in rows]


async def alert_reports(conn: asyncpg.Connection, report_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The reports behind an alert, with the reports counted as their duplicates."""
    rows = await conn.fetch(
        """SELECT report_id, source, vin, category, failure_mode, part_no, batch, supplier_id, model, mileage_km,
                  reported_by, reported_at, complaint_id, resolution, resolution_note, counted, duplicate_of
             FROM reports WHERE report_id = ANY($1::text[]) OR duplicate_of = ANY($1::text[])
            ORDER BY reported_at, report_id""",
        list(report_ids),
    )
    return [dict(r) for r in rows]


async def open_alert_summaries(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT alert_id, cell, rule, state, observed, expected, statistic, p_value, raised_at, updated_at
             FROM alerts WHERE state <> 'closed' ORDER BY raised_at, alert_id"""
    )
    return [dict(r) for r in rows]


async def alert_counts(conn: asyncpg.Connection, start: datetime, end: datetime) -> tuple[int, int]:
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE raised_at >= $1 AND raised_at < $2) AS raised,
                  count(*) FILTER (WHERE closed_at >= $1 AND closed_at < $2) AS closed FROM alerts""",
        start, end,
    )
    return int(row["raised"]), int(row["closed"])


async def alerts_open_by_state(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM alerts WHERE state <> 'closed' GROUP BY state")
    return {r["state"]: int(r["n"]) for r in rows}


# ---------------------------------------------------------------------------------------
# Statistics and weekly figures


async def counted_defects(conn: asyncpg.Connection, start: datetime, end: datetime,
                          category: str | None = None) -> list[CountedDefect]:
    rows = await conn.fetch(
        """SELECT category, cell_batch, cell_supplier_id, cell_model, failure_mode FROM reports
            WHERE counted AND reported_at >= $1 AND reported_at < $2 AND ($3::text IS NULL OR category = $3)""",
        start, end, category,
    )
    return [CountedDefect(r["category"], r["cell_batch"], r["cell_supplier_id"], r["cell_model"], r["failure_mode"])
            for r in rows]


async def report_counts(conn: asyncpg.Connection, start: datetime, end: datetime) -> dict[str, int]:
    row = await conn.fetchrow(
        """SELECT count(*) AS received, count(*) FILTER (WHERE NOT counted) AS duplicates,
                  count(*) FILTER (WHERE counted AND cell_batch IS NULL) AS without_batch,
                  count(*) FILTER (WHERE resolution IN ('awaiting_sale', 'unresolved', 'partial')) AS unresolved
             FROM reports WHERE reported_at >= $1 AND reported_at < $2""",
        start, end,
    )
    return {k: int(v) for k, v in dict(row).items()}


async def exposure_by_cell(conn: asyncpg.Connection, category: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Units in service and unit-seconds spent in service within [start, end), per (batch,
    supplier, model) of a category; with the counted reports of the same period."""
    rows = await conn.fetch(
        """SELECT batch, supplier_id, model, sum(units) AS units, coalesce(sum(seconds), 0) AS seconds,
                  sum(reports) AS reports, min(sold_at) AS first_sold_at, max(sold_at) AS last_sold_at
             FROM (SELECT batch, supplier_id, model, 1 AS units,
                          extract(epoch FROM $3 - greatest(sold_at, $2)) AS seconds, 0 AS reports, sold_at
                     FROM vehicle_parts WHERE category = $1 AND sold_at < $3
                   UNION ALL
                   SELECT cell_batch, cell_supplier_id, cell_model, 0, 0, 1, NULL
                     FROM reports WHERE counted AND category = $1 AND reported_at >= $2 AND reported_at < $3) x
            GROUP BY batch, supplier_id, model
            ORDER BY batch NULLS LAST, supplier_id NULLS LAST, model NULLS LAST""",
        category, start, end,
    )
    return [dict(r) for r in rows]


async def complaint_categories(conn: asyncpg.Connection, start: datetime, end: datetime
                               ) -> tuple[dict[str, int], dict[str, int]]:
    rows = await conn.fetch(
        "SELECT category, part_category FROM complaints WHERE filed_at >= $1 AND filed_at < $2", start, end
    )
    categories: dict[str, int] = {}
    parts: dict[str, int] = {}
    for row in rows:
        categories[row["category"]] = categories.get(row["category"], 0) + 1
        if row["part_category"]:
            parts[row["part_category"]] = parts.get(row["part_category"], 0) + 1
    return categories, parts


# ---------------------------------------------------------------------------------------
# Shipments, discrepancies, complaints


async def upsert_shipments(conn: asyncpg.Connection, shipments: Sequence[dict[str, Any]], now: datetime) -> None:
    """A shipment re-sent replaces its lines (the ERP's correction)."""
    if not shipments:
        return
    await conn.execute(
        """INSERT INTO shipments (shipment_id, order_id, dealer_id, shipped_at, event_id, updated_at)
           SELECT *, $6::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[])
           ON CONFLICT (shipment_id) DO UPDATE SET order_id = EXCLUDED.order_id, dealer_id = EXCLUDED.dealer_id,
               shipped_at = EXCLUDED.shipped_at, event_id = EXCLUDED.event_id, updated_at = EXCLUDED.updated_at""",
        [s["shipment_id"] for s in shipments], [s["order_id"] for s in shipments], [s["dealer_id"] for s in shipments],
        [s["shipped_at"] for s in shipments], [s["event_id"] for s in shipments], now,
    )
    ids = [s["shipment_id"] for s in shipments]
    await conn.execute("DELETE FROM shipment_lines WHERE shipment_id = ANY($1::text[])", ids)
    lines = [(s["shipment_id"], line) for s in shipments for line in s["lines"]]
    await conn.execute(
        """INSERT INTO shipment_lines (shipment_id, line_no, part_no, category, qty, batch, supplier_id)
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])""",
        [s for s, _ in lines], [line.line_no for _, line in lines], [line.part_no for _, line in lines],
        [line.category for _, line in lines], [line.qty for _, line in lines], [line.batch for _, line in lines],
        [line.supplier_id for _, line in lines],
    )


async def insert_discrepancies(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.execute(
        """INSERT INTO discrepancies (shipment_id, line_no, kind, reported_at, notes, event_id)
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::uuid[])
           ON CONFLICT (shipment_id, line_no, kind) DO NOTHING""",
        [r["shipment_id"] for r in rows], [r["line_no"] for r in rows], [r["kind"] for r in rows],
        [r["reported_at"] for r in rows], [r["notes"] for r in rows], [r["event_id"] for r in rows],
    )


async def shipment_lines_by_dealer(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[DealerLines]:
    """Lines shipped in [start, end) by dealer, and how many of them have a discrepancy."""
    rows = await conn.fetch(
        """SELECT s.dealer_id, count(*) AS lines,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM discrepancies d
                                                  WHERE d.shipment_id = l.shipment_id AND d.line_no = l.line_no))
                      AS discrepant
             FROM shipments s JOIN shipment_lines l ON l.shipment_id = s.shipment_id
            WHERE s.shipped_at >= $1 AND s.shipped_at < $2
            GROUP BY s.dealer_id ORDER BY s.dealer_id""",
        start, end,
    )
    return [DealerLines(r["dealer_id"], int(r["lines"]), int(r["discrepant"])) for r in rows]


async def discrepancy_kinds(conn: asyncpg.Connection, start: datetime, end: datetime) -> dict[str, int]:
    """Discrepancies on lines shipped in [start, end), by kind."""
    rows = await conn.fetch(
        """SELECT d.kind, count(*) AS n FROM discrepancies d
             JOIN shipment_lines l ON l.shipment_id = d.shipment_id AND l.line_no = d.line_no
             JOIN shipments s ON s.shipment_id = d.shipment_id
            WHERE s.shipped_at >= $1 AND s.shipped_at < $2 GROUP BY d.kind""",
        start, end,
    )
    return {r["kind"]: int(r["n"]) for r in rows}


async def unmatched_discrepancies(conn: asyncpg.Connection) -> int:
    """Discrepancies whose shipment line is not on file (yet)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM discrepancies d WHERE NOT EXISTS (
               SELECT 1 FROM shipment_lines l WHERE l.shipment_id = d.shipment_id AND l.line_no = d.line_no)"""
    ))


async def insert_complaints(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.execute(
        """INSERT INTO complaints (complaint_id, category, part_category, vin, severity, filed_at, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                                $7::uuid[])
           ON CONFLICT (complaint_id) DO NOTHING""",
        [r["complaint_id"] for r in rows], [r["category"] for r in rows], [r["part_category"] for r in rows],
        [r["vin"] for r in rows], [r["severity"] for r in rows], [r["filed_at"] for r in rows],
        [r["event_id"] for r in rows],
    )


async def defects_by_category_since(conn: asyncpg.Connection, since: datetime) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT category, count(*) AS n FROM reports WHERE counted AND reported_at >= $1 GROUP BY category", since
    )
    return {r["category"]: int(r["n"]) for r in rows}


async def unresolved_report_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM reports WHERE counted AND resolution IN ('awaiting_sale', 'unresolved', 'partial')"
    ))
