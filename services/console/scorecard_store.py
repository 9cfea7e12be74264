"""The console's SQL for the dealer scorecards and the receipts: the shipments read model (written
by the handlers from intake's PartShipped/PartShipmentDiscrepancy) and the reads that hand the
month's rows to services/console/scorecards.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.console.scorecards import Call, ComplaintRow, LineRow, Receipt, Visit

# -- written by the handlers -------------------------------------------------------------------------


async def upsert_shipments(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """A shipment's lines; the same shipment sent again replaces its lines (the ERP's correction)."""
    if not rows:
        return
    await conn.execute("DELETE FROM shipment_lines WHERE shipment_id = ANY($1::text[])",
                       list({r["shipment_id"] for r in rows}))
    await conn.executemany(
        """INSERT INTO shipment_lines (shipment_id, line_no, dealer_id, shipped_at, part_no, category, qty)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (shipment_id, line_no) DO UPDATE SET
               dealer_id = EXCLUDED.dealer_id, shipped_at = EXCLUDED.shipped_at, part_no = EXCLUDED.part_no,
               category = EXCLUDED.category, qty = EXCLUDED.qty""",
        [(r["shipment_id"], r["line_no"], r["dealer_id"], r["shipped_at"], r["part_no"], r["category"], r["qty"])
         for r in rows],
    )


async def insert_discrepancies(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO shipment_discrepancies (shipment_id, line_no, kind, reported_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""",
        [(r["shipment_id"], r["line_no"], r["kind"], r["reported_at"]) for r in rows],
    )


# -- the month's rows -------------------------------------------------------------------------------------


async def visits(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Visit]:
    rows = await conn.fetch(
        """SELECT repair_order_id, vin, dealer_id, picked_up_at, service_type,
                  ARRAY(SELECT i->>'code' FROM jsonb_array_elements(items) i) AS codes
             FROM visits WHERE picked_up_at >= $1 AND picked_up_at < $2""", start, end)
    return [Visit(r["repair_order_id"], r["vin"], r["dealer_id"], r["picked_up_at"], r["service_type"],
                  tuple(c for c in r["codes"] if c)) for r in rows]


async def calls(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Call]:
    """Return-visit follow-ups concluded in [start, end): completed (when completed) or expired
    (when it expired), with the dealer of the visit they follow."""
    rows = await conn.fetch(
        """SELECT dealer_id, kind, outcome = 'reached' AS reached, satisfaction,
                  CASE WHEN status = 'completed' THEN completed_at ELSE updated_at END AS at
             FROM followups
            WHERE kind IN ('first_visit', 'second_visit') AND dealer_id IS NOT NULL
              AND ((status = 'completed' AND completed_at >= $1 AND completed_at < $2)
                   OR (status = 'expired' AND updated_at >= $1 AND updated_at < $2))""", start, end)
    return [Call(r["dealer_id"], r["kind"], bool(r["reached"]), r["satisfaction"], r["at"]) for r in rows]


# A case names its dealer (the filing did); else the dealer of the vehicle's last visit before it
# was filed, else the dealer that sold the vehicle, else the dealer of the customer's last visit.
_COMPLAINT_DEALER = """
    coalesce(c.dealer_id,
             (SELECT v.dealer_id FROM visits v WHERE v.vin = c.vin AND v.picked_up_at <= c.filed_at
               ORDER BY v.picked_up_at DESC LIMIT 1),
             (SELECT h.dealer_id FROM vehicles h WHERE h.vin = c.vin),
             (SELECT v.dealer_id FROM visits v WHERE v.customer_id = c.customer_id AND v.picked_up_at <= c.filed_at
               ORDER BY v.picked_up_at DESC LIMIT 1))"""


async def complaints(conn: asyncpg.Connection, start: datetime, end: datetime,
                     dealer_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT * FROM (
                SELECT c.complaint_id, c.complaint_ref, c.customer_id, c.vin, c.category, c.severity, c.state,
                       c.filed_at, c.dealer_id AS named_dealer, {_COMPLAINT_DEALER} AS dealer_id
                  FROM complaints c WHERE c.filed_at >= $1 AND c.filed_at < $2) t
             WHERE $3::text IS NULL OR t.dealer_id = $3 ORDER BY filed_at""", start, end, dealer_id)
    return [dict(r) for r in rows]


def complaint_rows(rows: Sequence[dict[str, Any]]) -> list[ComplaintRow]:
    return [ComplaintRow(r["complaint_id"], r["dealer_id"], r["filed_at"]) for r in rows]


async def lines(conn: asyncpg.Connection, start: datetime, end: datetime,
                dealer_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT l.shipment_id, l.line_no, l.dealer_id, l.shipped_at, l.part_no, l.category, l.qty,
                  ARRAY(SELECT d.kind FROM shipment_discrepancies d
                         WHERE d.shipment_id = l.shipment_id AND d.line_no = l.line_no ORDER BY d.kind) AS kinds
             FROM shipment_lines l
            WHERE l.shipped_at >= $1 AND l.shipped_at < $2 AND ($3::text IS NULL OR l.dealer_id = $3)
            ORDER BY l.shipped_at, l.shipment_id, l.line_no""", start, end, dealer_id)
    return [dict(r) for r in rows]


def line_rows(rows: Sequence[dict[str, Any]]) -> list[LineRow]:
    return [LineRow(r["dealer_id"], r["shipped_at"], bool(r["kinds"])) for r in rows]


# -- receipts -----------------------------------------------------------------------------------------------

_RECEIPT = """SELECT r.receipt_id, r.repair_order_id, r.vin, r.customer_id, r.returned_at, r.rating, r.comments,
                     r.comments_erased, coalesce(r.dealer_id, v.dealer_id) AS dealer_id, c.name AS customer_name, h.plate
                FROM receipts r LEFT JOIN visits v ON v.repair_order_id = r.repair_order_id
                LEFT JOIN customers c ON c.customer_id = r.customer_id
                LEFT JOIN vehicles h ON h.vin = r.vin"""


@dataclass(frozen=True)
class ReceiptQuery:
    dealer_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    rating_min: int | None = None
    rating_max: int | None = None
    text: str | None = None  # any part of the comments, case-insensitive


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def receipts(conn: asyncpg.Connection, q: ReceiptQuery, limit: int | None = 200) -> list[dict[str, Any]]:
    """Receipts matching every filter given, newest first."""
    rows = await conn.fetch(
        f"""SELECT * FROM ({_RECEIPT}) t
             WHERE ($1::text IS NULL OR t.dealer_id = $1)
               AND ($2::timestamptz IS NULL OR t.returned_at >= $2) AND ($3::timestamptz IS NULL OR t.returned_at < $3)
               AND ($4::int IS NULL OR t.rating >= $4) AND ($5::int IS NULL OR t.rating <= $5)
               AND ($6::text IS NULL OR t.comments ILIKE '%' || $6 || '%')
             ORDER BY t.returned_at DESC, t.receipt_id LIMIT $7""",
        q.dealer_id, q.start, q.end, q.rating_min, q.rating_max, _escaped(q.text) if q.text else None, limit)
    return [dict(r) for r in rows]


def receipt_rows(rows: Sequence[dict[str, Any]]) -> list[Receipt]:
    return [Receipt(r["receipt_id"], r["dealer_id"], r["returned_at"], r["rating"], r["comments"],
                    bool(r.get("comments_erased"))) for r in rows]


async def month_inputs(conn: asyncpg.Connection, start: datetime, end: datetime, repeat_days: int) -> dict[str, Any]:
    """Everything one month's scorecards read, in one place (the history: the visits of the
    `repeat_days` before the month, whose repairs may be repeated in it)."""
    return {
        "visits": await visits(conn, start, end),
        "history": await visits(conn, start - timedelta(days=repeat_days), start),
        "calls": await calls(conn, start, end),
        "complaints": complaint_rows(await complaints(conn, start, end)),
        "lines": line_rows(await lines(conn, start, end)),
        "receipts": receipt_rows(await receipts(conn, ReceiptQuery(start=start, end=end), limit=None)),
    }
