"""Quality's SQL. Nothing else touches the `quality` schema.

Handlers work a batch at a time: one query loads what the batch needs, one statement per table
(`shared.bulk.Table`) writes it. Concurrency between replicas (a VIN's reports reach quality on
two topics; a batch's reports on many partitions) is settled by locks taken in one order:
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
from shared.api import Sort, keyset
from shared.bulk import Table

# ---------------------------------------------------------------------------------------
# Vehicles and units in service

VEHICLES = Table("vehicles", {
    "vin": "text", "model": "text", "sold_at": "timestamptz", "dealer_id": "text", "region": "text",
    "event_id": "uuid", "occurred_at": "timestamptz", "updated_at": "timestamptz",
})
VEHICLE_PARTS = Table("vehicle_parts", {
    "vin": "text", "line": "int", "category": "text", "part_no": "text", "batch": "text", "supplier_id": "text",
    "model": "text", "sold_at": "timestamptz",
})


async def upsert_vehicles(conn: asyncpg.Connection, vehicles: Sequence[dict[str, Any]], now: datetime) -> set[str]:
    """Write each sale unless a later one (by occurred_at) is on file; replace the parts list
    of the vehicles written. Returns their VINs."""
    if not vehicles:
        return set()
    rows = await VEHICLES.upsert(conn, [{**v, "updated_at": now} for v in vehicles], key=("vin",),
                                 where="vehicles.occurred_at <= EXCLUDED.occurred_at", returning="vin")
    written = {row[0] for row in rows}
    await conn.execute("DELETE FROM vehicle_parts WHERE vin = ANY($1::text[])", list(written))
    await VEHICLE_PARTS.insert(conn, [
        {"vin": v["vin"], "line": line, "category": p.category, "part_no": p.part_no, "batch": p.batch,
         "supplier_id": p.supplier_id, "model": v["model"], "sold_at": v["sold_at"]}
        for v in vehicles if v["vin"] in written for line, p in enumerate(v["parts"], start=1)
    ])
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


REPORTS = Table("reports", {
    "report_id": "text", "source": "text", "event_id": "uuid", "correlation_id": "uuid", "vin": "text",
    "category": "text", "failure_mode": "text", "reported_part_no": "text", "reported_batch": "text",
    "reported_supplier_id": "text", "reported_model": "text", "part_no": "text", "batch": "text",
    "supplier_id": "text", "model": "text", "mileage_km": "int", "reported_by": "text", "reported_at": "timestamptz",
    "complaint_id": "text", "description": "text", "resolution": "text", "resolution_note": "text",
    "counted": "boolean", "duplicate_of": "text", "cell_batch": "text", "cell_supplier_id": "text",
    "cell_model": "text", "received_at": "timestamptz",
})
# What a new report is inserted with (it is counted by default, under the cells it resolved to).
_NEW_REPORT = tuple(c for c in REPORTS.columns if c not in ("counted", "duplicate_of"))


async def lock_vehicles(conn: asyncpg.Connection, vins: Iterable[str]) -> None:
    """Serialise the work on one vehicle across replicas: its sale and its reports (which reach
    quality on two topics, possibly at two consumers) are resolved and counted one at a time."""
    keys = sorted(set(vins))
    if keys:
        # Kept: a VIN's complaint reports are partitioned apart from its sale and dealer reports (two topics), and
        # counting a defect once reads all its reports, so another replica's uncommitted one is a phantom no version sees.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('quality-vin:' || v, 0)) FROM unnest($1::text[]) v", keys
        )


async def insert_reports(
    conn: asyncpg.Connection, rows: Sequence[tuple[DefectReport, DefectReport, uuid.UUID, uuid.UUID]], now: datetime
) -> set[str]:
    """Insert (as reported, as resolved, event id, correlation id) rows; a report id already on
    file is kept as it is (a redelivery or a replay). Returns the ids that are new."""
    inserted = await REPORTS.insert(conn, [
        {"report_id": resolved.report_id, "source": resolved.source, "event_id": event_id,
         "correlation_id": correlation_id, "vin": resolved.vin, "category": resolved.category,
         "failure_mode": resolved.failure_mode, "reported_part_no": original.part_no,
         "reported_batch": original.batch, "reported_supplier_id": original.supplier_id,
         "reported_model": original.model, "part_no": resolved.part_no, "batch": resolved.batch,
         "supplier_id": resolved.supplier_id, "model": resolved.model, "mileage_km": resolved.mileage_km,
         "reported_by": resolved.reported_by, "reported_at": resolved.reported_at,
         "complaint_id": resolved.complaint_id, "description": resolved.description,
         "resolution": resolved.resolution, "resolution_note": resolved.resolution_note,
         "cell_batch": resolved.batch, "cell_supplier_id": resolved.supplier_id, "cell_model": resolved.model,
         "received_at": now}
        for original, resolved, event_id, correlation_id in rows
    ], columns=_NEW_REPORT, on_conflict="(report_id) DO NOTHING", returning="report_id")
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
    await REPORTS.update(conn, [
        {"report_id": r.report_id, "part_no": r.part_no, "batch": r.batch, "supplier_id": r.supplier_id,
         "model": r.model, "resolution": r.resolution, "resolution_note": r.resolution_note}
        for r in reports
    ], key=("report_id",), columns=("part_no", "batch", "supplier_id", "model", "resolution", "resolution_note"))


async def update_countings(conn: asyncpg.Connection, countings: Sequence[Counting]) -> None:
    await REPORTS.update(conn, [
        {"report_id": c.report_id, "counted": c.counted, "duplicate_of": c.duplicate_of, "cell_batch": c.batch,
         "cell_supplier_id": c.supplier_id, "cell_model": c.model}
        for c in countings
    ], key=("report_id",), columns=("counted", "duplicate_of", "cell_batch", "cell_supplier_id", "cell_model"))


# ---------------------------------------------------------------------------------------
# Cells and their evidence


CELLS = Table("cells", {
    "cell_key": "text", "kind": "text", "category": "text", "batch": "text", "supplier_id": "text", "model": "text",
    "since": "timestamptz", "dirty": "boolean", "last_look_at": "timestamptz", "last_event_id": "uuid",
    "last_correlation_id": "uuid", "created_at": "timestamptz",
})


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
    await CELLS.insert(conn, [
        {"cell_key": c.key, "kind": c.kind, "category": c.category, "batch": c.batch, "supplier_id": c.supplier_id,
         "model": c.model, "created_at": now}
        for c in cells
    ], columns=("cell_key", "kind", "category", "batch", "supplier_id", "model", "created_at"),
        on_conflict="(cell_key) DO NOTHING")
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
    await CELLS.update(conn, [
        {"cell_key": key, "dirty": True, "last_event_id": event_id, "last_correlation_id": correlation_id}
        for key, (event_id, correlation_id) in sorted(arrivals.items())
    ], key=("cell_key",), columns=("dirty", "last_event_id", "last_correlation_id"))


async def dirty_cells(conn: asyncpg.Connection) -> list[str]:
    return [r[0] for r in await conn.fetch("SELECT cell_key FROM cells WHERE dirty ORDER BY cell_key")]


async def finish_looks(conn: asyncpg.Connection, looked: dict[str, bool], at: datetime) -> None:
    """Record the looks taken at `at`; `looked[key]` is whether the cell stays dirty."""
    await CELLS.update(conn, [{"cell_key": key, "dirty": dirty, "last_look_at": at}
                              for key, dirty in sorted(looked.items())],
                       key=("cell_key",), columns=("dirty", "last_look_at"))


async def restart_cell(conn: asyncpg.Connection, key: str, since: datetime) -> None:
    await conn.execute("UPDATE cells SET since = $2, dirty = false WHERE cell_key = $1", key, since)


# A report from a vehicle already inspected (at or before the report) in a recall of the
# report's part category: the recall's remedy did not hold, or the fault is another one. The
# early warning does not count it in the cell (the vehicle was checked; its report says nothing
# about the units not yet inspected); it is kept apart, shown on the alert and the recall.
AFTER_INSPECTION = """EXISTS (SELECT 1 FROM recall_vehicles rv JOIN recalls rc ON rc.campaign_id = rv.campaign_id
                           WHERE rv.vin = r.vin AND rc.category = r.category AND rv.inspected_at <= r.reported_at)"""


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
             WHERE r.counted AND {report_filter} AND ($1::timestamptz IS NULL OR r.reported_at > $1)
               AND NOT {AFTER_INSPECTION}""",
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
                       limit: int | None = None, *, after_inspection: bool = False) -> list[ReportPoint]:
    """Counted reports of a cell in (since, until), oldest first: those the early warning
    counts, or (`after_inspection`) those it keeps apart, of vehicles already inspected in a
    recall of the category."""
    report_filter, args = _cell_filter(cell, 3, reports=True)
    rows = await conn.fetch(
        f"""SELECT r.report_id, r.reported_at, r.failure_mode, r.vin FROM reports r
             WHERE r.counted AND {report_filter} AND {"" if after_inspection else "NOT "}{AFTER_INSPECTION}
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

ALERTS = Table("alerts", {
    "alert_id": "text", "cell_key": "text", "cell": "jsonb", "category": "text", "rule": "text", "state": "text",
    "observed": "int", "expected": "float8", "statistic": "float8", "p_value": "float8", "threshold": "float8",
    "as_of": "timestamptz", "since": "timestamptz", "details": "jsonb", "report_ids": "text[]", "vins": "text[]",
    "revision": "int", "raised_at": "timestamptz", "updated_at": "timestamptz", "last_event_id": "uuid",
    "correlation_id": "uuid",
})
# A raised alert keeps its cell and the moment it was raised; the rest follows the evidence.
_ALERT_UPDATES = tuple(f for f in ALERTS.columns if f not in ("alert_id", "cell_key", "raised_at"))


async def open_alerts(conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM alerts WHERE cell_key = ANY($1::text[]) AND state <> 'closed'
            ORDER BY cell_key FOR UPDATE""",
        sorted(set(keys)),
    )
    return {r["cell_key"]: dict(r) for r in rows}


async def last_closed_alerts(conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each cell's most recently closed alert (locked): new reports on the cell reopen it."""
    rows = await conn.fetch(
        """SELECT * FROM alerts WHERE alert_id IN (
               SELECT DISTINCT ON (cell_key) alert_id FROM alerts
                WHERE cell_key = ANY($1::text[]) AND state = 'closed'
                ORDER BY cell_key, closed_at DESC NULLS LAST, alert_id)
            ORDER BY cell_key FOR UPDATE""",
        sorted(set(keys)),
    )
    return {r["cell_key"]: dict(r) for r in rows}


async def reopen_alert(conn: asyncpg.Connection, alert_id: str) -> None:
    """The alert is open again (raised): its acknowledgement and closing are history (in details)."""
    await conn.execute(
        """UPDATE alerts SET acknowledged_at = NULL, acknowledged_by = NULL, acknowledge_note = NULL,
                             closed_at = NULL, closed_by = NULL, close_note = NULL WHERE alert_id = $1""",
        alert_id)


async def save_alert(conn: asyncpg.Connection, alert: dict[str, Any]) -> None:
    await ALERTS.upsert(conn, [alert], key=("alert_id",), update=_ALERT_UPDATES)


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
                      sort: Sort, cursor: dict[str, Any] | None) -> list[dict[str, Any]]:
    ks = keyset(sort, "alert_id", cursor, 4)
    rows = await conn.fetch(
        f"""SELECT * FROM alerts WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR category = $2) AND {ks.where}
            ORDER BY {ks.order_by} LIMIT $3""",
        list(states), category, limit, *ks.params,
    )
    return [dict(r) for r in rows]


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


async def months_in_service(conn: asyncpg.Connection, cell: Cell, report_ids: Sequence[str], as_of: datetime,
                            month_days: float) -> tuple[list[float], list[float]]:
    """The cell's units' ages at `as_of` and the ages of the given reports' vehicles when each
    was reported, in months of `month_days` (what the evidence chart sets side by side)."""
    unit_filter, unit_args = _cell_filter(cell, 3, reports=False)
    ages = await conn.fetch(
        f"""SELECT extract(epoch FROM ($1::timestamptz - p.sold_at)) / 86400 / $2 AS months
              FROM vehicle_parts p WHERE {unit_filter} AND p.sold_at <= $1""",
        as_of, month_days, *unit_args)
    reported = await conn.fetch(
        """SELECT extract(epoch FROM (r.reported_at - v.sold_at)) / 86400 / $2 AS months
             FROM reports r JOIN vehicles v ON v.vin = r.vin WHERE r.report_id = ANY($1::text[])""",
        list(report_ids), month_days)
    return [float(r["months"]) for r in ages], [max(float(r["months"]), 0.0) for r in reported]


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


SHIPMENTS = Table("shipments", {
    "shipment_id": "text", "order_id": "text", "dealer_id": "text", "shipped_at": "timestamptz", "event_id": "uuid",
    "updated_at": "timestamptz",
})
SHIPMENT_LINES = Table("shipment_lines", {
    "shipment_id": "text", "line_no": "int", "part_no": "text", "category": "text", "qty": "int", "batch": "text",
    "supplier_id": "text",
})
DISCREPANCIES = Table("discrepancies", {
    "shipment_id": "text", "line_no": "int", "kind": "text", "reported_at": "timestamptz", "notes": "text",
    "event_id": "uuid",
})


async def upsert_shipments(conn: asyncpg.Connection, shipments: Sequence[dict[str, Any]], now: datetime) -> None:
    """A shipment re-sent replaces its lines (the ERP's correction)."""
    if not shipments:
        return
    await SHIPMENTS.upsert(conn, [{**s, "updated_at": now} for s in shipments], key=("shipment_id",))
    ids = [s["shipment_id"] for s in shipments]
    await conn.execute("DELETE FROM shipment_lines WHERE shipment_id = ANY($1::text[])", ids)
    await SHIPMENT_LINES.insert(conn, [
        {"shipment_id": s["shipment_id"], "line_no": line.line_no, "part_no": line.part_no,
         "category": line.category, "qty": line.qty, "batch": line.batch, "supplier_id": line.supplier_id}
        for s in shipments for line in s["lines"]
    ])


async def insert_discrepancies(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await DISCREPANCIES.insert(conn, rows, on_conflict="(shipment_id, line_no, kind) DO NOTHING")


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


COMPLAINTS = Table("complaints", {
    "complaint_id": "text", "customer_id": "text", "category": "text", "part_category": "text", "vin": "text", "severity": "text",
    "filed_at": "timestamptz", "event_id": "uuid",
})


async def insert_complaints(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await COMPLAINTS.insert(conn, rows, on_conflict="(complaint_id) DO NOTHING")


async def defects_by_category_since(conn: asyncpg.Connection, since: datetime) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT category, count(*) AS n FROM reports WHERE counted AND reported_at >= $1 GROUP BY category", since
    )
    return {r["category"]: int(r["n"]) for r in rows}


async def unresolved_report_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM reports WHERE counted AND resolution IN ('awaiting_sale', 'unresolved', 'partial')"
    ))
