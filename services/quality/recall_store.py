"""Quality's SQL for recalls (migrations/0005_recalls.sql): vehicle owners, confirmed batch
problems and their campaigns, the recalled vehicles' progress. Nothing else touches these tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.quality.recall import OpenRecall, Target
from shared.api import Sort, keyset
from shared.bulk import Table

OWNERS = Table("vehicle_owners", {
    "vin": "text", "customer_id": "text", "name": "text", "region": "text", "occurred_at": "timestamptz",
})
RECALL_VEHICLES = Table("recall_vehicles", {
    "campaign_id": "text", "vin": "text", "customer_id": "text", "owner_name": "text", "region": "text",
    "dealer_id": "text", "model": "text", "sold_at": "timestamptz",
})

# The owner's personal data was erased (migration 0007): the vehicle stays listed, by VIN and
# customer id, with no name (a name filed again later, the customer back, shows as usual).
_OWNER_ERASED = """({name} IS NULL AND EXISTS (SELECT 1 FROM erased_customers e
                                                WHERE e.customer_id = {id})) AS owner_erased"""


async def keep_owners(conn: asyncpg.Connection, owners: Sequence[dict[str, Any]]) -> None:
    """Each vehicle's owner as last seen (by world time): its sale, or a later workshop visit."""
    newest: dict[str, dict[str, Any]] = {}
    for o in owners:
        seen = newest.get(o["vin"])
        if seen is None or o["occurred_at"] >= seen["occurred_at"]:
            newest[o["vin"]] = o
    await OWNERS.upsert(conn, list(newest.values()), key=("vin",),
                        where="vehicle_owners.occurred_at <= EXCLUDED.occurred_at")


async def affected_vehicles(conn: asyncpg.Connection, target: Target) -> list[dict[str, Any]]:
    """Every vehicle whose sale's parts list carries the batch, with its owner, region and
    selling dealer; a vehicle carrying two units of the batch is listed once."""
    rows = await conn.fetch(
        f"""SELECT v.vin, v.model, v.sold_at, v.dealer_id, coalesce(o.region, v.region) AS region,
                  o.customer_id, o.name AS owner_name, {_OWNER_ERASED.format(name="o.name", id="o.customer_id")}
             FROM vehicles v LEFT JOIN vehicle_owners o ON o.vin = v.vin
            WHERE EXISTS (SELECT 1 FROM vehicle_parts p
                           WHERE p.vin = v.vin AND p.category = $1 AND p.batch = $2
                             AND ($3::text IS NULL OR p.supplier_id = $3))
            ORDER BY v.dealer_id NULLS LAST, v.vin""",
        target.category, target.batch, target.supplier_id)
    return [dict(r) for r in rows]


async def recall_of_alert(conn: asyncpg.Connection, alert_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM recalls WHERE alert_id = $1", alert_id)
    return dict(row) if row else None


async def recall(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM recalls WHERE campaign_id = $1", campaign_id)
    return dict(row) if row else None


async def list_recalls(conn: asyncpg.Connection, limit: int, sort: Sort,
                       cursor: dict[str, Any] | None) -> list[dict[str, Any]]:
    ks = keyset(sort, "campaign_id", cursor, 2)
    rows = await conn.fetch(f"SELECT * FROM recalls WHERE {ks.where} ORDER BY {ks.order_by} LIMIT $1",
                            limit, *ks.params)
    return [dict(r) for r in rows]


async def insert_recall(conn: asyncpg.Connection, recall: dict[str, Any], vehicles: Sequence[dict[str, Any]]) -> None:
    await conn.execute(
        """INSERT INTO recalls (campaign_id, alert_id, category, batch, supplier_id, containment, confirmed_at,
                                confirmed_by, title, address, starts_at, ends_at, event_id, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        *(recall[k] for k in ("campaign_id", "alert_id", "category", "batch", "supplier_id", "containment",
                              "confirmed_at", "confirmed_by", "title", "address", "starts_at", "ends_at",
                              "event_id", "correlation_id")))
    await RECALL_VEHICLES.insert(conn, [{**v, "campaign_id": recall["campaign_id"]} for v in vehicles])


async def recall_vehicles(conn: asyncpg.Connection, campaign_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT vin, customer_id, owner_name,
                   {_OWNER_ERASED.format(name="owner_name", id="recall_vehicles.customer_id")},
                   region, dealer_id, model, sold_at, reached_at, booked_at, inspected_at, replaced_at, repair_order_id
             FROM recall_vehicles WHERE campaign_id = $1 ORDER BY dealer_id NULLS LAST, vin""", campaign_id)
    return [dict(r) for r in rows]


async def open_recalls_of(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, list[OpenRecall]]:
    """VIN -> the recalls it is in, with how far it got (what a workshop visit is read against)."""
    rows = await conn.fetch(
        """SELECT rv.vin, rv.campaign_id, r.category, rv.inspected_at IS NOT NULL AS inspected,
                  rv.replaced_at IS NOT NULL AS replaced
             FROM recall_vehicles rv JOIN recalls r USING (campaign_id)
            WHERE rv.vin = ANY($1::text[]) ORDER BY rv.vin, r.confirmed_at, rv.campaign_id""", list(set(vins)))
    found: dict[str, list[OpenRecall]] = {}
    for r in rows:
        found.setdefault(r["vin"], []).append(OpenRecall(r["campaign_id"], r["category"], r["inspected"],
                                                         r["replaced"]))
    return found


async def mark_visits(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """The first inspection and the first replacement stay (a later visit does not move them);
    several visits of one vehicle in a batch are merged first (an UPDATE takes one source row)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["inspected_at"]):
        seen = merged.setdefault((r["campaign_id"], r["vin"]), dict(r))
        if seen["replaced_at"] is None:
            seen["replaced_at"] = r["replaced_at"]
    rows = list(merged.values())
    if not rows:
        return
    await conn.execute(
        """UPDATE recall_vehicles rv
              SET inspected_at = coalesce(rv.inspected_at, u.inspected_at),
                  replaced_at = coalesce(rv.replaced_at, u.replaced_at),
                  repair_order_id = coalesce(rv.repair_order_id, u.repair_order_id)
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
                  AS u(campaign_id, vin, inspected_at, replaced_at, repair_order_id)
            WHERE rv.campaign_id = u.campaign_id AND rv.vin = u.vin""",
        *([r[k] for r in rows] for k in ("campaign_id", "vin", "inspected_at", "replaced_at", "repair_order_id")))


async def mark_calls(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """A campaign call that reached the owner marks each of their recalled vehicles in that
    campaign reached (and booked, with the visit booked), and the call's vehicle even when
    quality had no owner on file for it; the first one stays (one row per owner and vehicle: an
    UPDATE takes one source row)."""
    merged: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["reached_at"]):
        seen = merged.setdefault((r["campaign_id"], r["customer_id"], r["vin"]), dict(r))
        if seen["booked_at"] is None:
            seen["booked_at"] = r["booked_at"]
    rows = list(merged.values())
    if not rows:
        return
    await conn.execute(
        """UPDATE recall_vehicles rv
              SET reached_at = coalesce(rv.reached_at, u.reached_at),
                  booked_at = coalesce(rv.booked_at, u.booked_at)
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
                  AS u(campaign_id, customer_id, vin, reached_at, booked_at)
            WHERE rv.campaign_id = u.campaign_id AND (rv.customer_id = u.customer_id OR rv.vin = u.vin)""",
        *([r[k] for r in rows] for k in ("campaign_id", "customer_id", "vin", "reached_at", "booked_at")))


async def inspections(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, list[tuple[str, datetime]]]:
    """VIN -> (part category, inspected at) of each recall it was inspected in."""
    rows = await conn.fetch(
        """SELECT rv.vin, r.category, rv.inspected_at FROM recall_vehicles rv JOIN recalls r USING (campaign_id)
            WHERE rv.vin = ANY($1::text[]) AND rv.inspected_at IS NOT NULL""", list({v for v in vins if v}))
    found: dict[str, list[tuple[str, datetime]]] = {}
    for r in rows:
        found.setdefault(r["vin"], []).append((r["category"], r["inspected_at"]))
    return found


async def reports_since(conn: asyncpg.Connection, campaign_id: str, since: datetime) -> list[dict[str, Any]]:
    """Defect reports of the recall's part category on its vehicles since the confirmation."""
    rows = await conn.fetch(
        """SELECT r.report_id, r.vin, r.category, r.failure_mode, r.reported_by, r.reported_at, r.counted
             FROM reports r JOIN recall_vehicles rv ON rv.vin = r.vin AND rv.campaign_id = $1
             JOIN recalls c ON c.campaign_id = rv.campaign_id AND c.category = r.category
            WHERE r.reported_at >= $2 ORDER BY r.reported_at, r.report_id""", campaign_id, since)
    return [dict(r) for r in rows]


async def record_owner_list(conn: asyncpg.Connection, *, at: datetime, reader: str, role: str, route: str,
                            subject: str, filter: dict[str, Any], rows: int) -> None:
    """The append-only record of a listing of owners (migration 0006): who, when, what, how many."""
    await conn.execute(
        """INSERT INTO owner_list_reads (at, reader, role, route, subject, filter, rows)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""", at, reader, role, route, subject, filter, rows)
