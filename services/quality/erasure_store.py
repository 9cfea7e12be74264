"""Quality's SQL for customer erasure (migrations/0007_erasure.sql): the customers erased, and the
scrub of their personal values from quality's tables. Nothing else touches erased_customers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

# A customer's vehicles as quality knows them: owned now (vehicle_owners), or targeted by a recall
# as theirs (recall_vehicles, the owner as of the confirmation).
_VINS_OF = """SELECT vin FROM vehicle_owners WHERE customer_id = ANY($1::text[])
              UNION SELECT vin FROM recall_vehicles WHERE customer_id = ANY($1::text[])"""


async def lock_customers(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> None:
    """Serialise an erasure with the owners written for the same customers (after the vehicles'
    locks, as the sale handler takes them): a sale filed at the same moment either sees the
    erasure or is scrubbed by it."""
    keys = sorted(set(customer_ids))
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('quality-customer:' || c, 0)) FROM unnest($1::text[]) c",
            keys)


async def vins_of(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> list[str]:
    return sorted(r[0] for r in await conn.fetch(_VINS_OF, list(customer_ids)))


async def erased(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, datetime]:
    """customer_id -> erased_at of those of `customer_ids` that were erased."""
    rows = await conn.fetch("SELECT customer_id, erased_at FROM erased_customers WHERE customer_id = ANY($1::text[])",
                            sorted(set(customer_ids)))
    return {r["customer_id"]: r["erased_at"] for r in rows}


async def erased_by_vin(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, datetime]:
    """VIN -> erased_at of the vehicle's owner on file, for the vehicles whose owner was erased."""
    rows = await conn.fetch(
        """SELECT o.vin, e.erased_at FROM vehicle_owners o JOIN erased_customers e USING (customer_id)
            WHERE o.vin = ANY($1::text[])""", sorted(set(vins)))
    return {r["vin"]: r["erased_at"] for r in rows}


async def erased_by_complaint(conn: asyncpg.Connection, complaint_ids: Iterable[str]) -> dict[str, datetime]:
    """complaint_id -> erased_at of the complaint's customer, for the complaints of erased customers."""
    rows = await conn.fetch(
        """SELECT c.complaint_id, e.erased_at FROM complaints c JOIN erased_customers e USING (customer_id)
            WHERE c.complaint_id = ANY($1::text[])""", sorted(set(complaint_ids)))
    return {r["complaint_id"]: r["erased_at"] for r in rows}


async def record(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, datetime]]) -> int:
    """(customer_id, erasure_id, erased_at) rows; a customer already erased keeps its first row.
    Returns how many are new."""
    if not rows:
        return 0
    done = await conn.fetch(
        """INSERT INTO erased_customers (customer_id, erasure_id, erased_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
           ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id""",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    return len(done)


async def scrub(conn: asyncpg.Connection, erased_at: dict[str, datetime]) -> dict[str, int]:
    """Set every personal value of these customers filed up to their erasure (`erased_at`, as
    registered) to NULL: the owner's name of their vehicles and recalled vehicles, and the free text
    of the defect reports on their vehicles or from their complaints (a dealer's or a complaint's
    words may quote the owner). What they gave again after the erasure (a later purchase) stays, so
    a second CustomerErased changes nothing. VINs, ids, batches, dates, counts and progress stay.
    Returns the rows changed per table."""
    ids, times = list(erased_at), list(erased_at.values())
    erased = "unnest($1::text[], $2::timestamptz[]) AS x(customer_id, erased_at)"
    owners = await conn.execute(
        f"""UPDATE vehicle_owners o SET name = NULL FROM {erased}
             WHERE o.customer_id = x.customer_id AND o.occurred_at <= x.erased_at AND o.name IS NOT NULL""",
        ids, times)
    recalled = await conn.execute(
        f"""UPDATE recall_vehicles rv SET owner_name = NULL FROM {erased}, recalls rc
             WHERE rv.customer_id = x.customer_id AND rc.campaign_id = rv.campaign_id
               AND rc.confirmed_at <= x.erased_at AND rv.owner_name IS NOT NULL""",
        ids, times)
    reports = await conn.execute(
        f"""UPDATE reports r SET description = NULL FROM {erased}
             WHERE r.description IS NOT NULL AND r.reported_at <= x.erased_at
               AND (r.vin IN (SELECT vin FROM vehicle_owners WHERE customer_id = x.customer_id
                              UNION SELECT vin FROM recall_vehicles WHERE customer_id = x.customer_id)
                    OR r.complaint_id IN (SELECT complaint_id FROM complaints WHERE customer_id = x.customer_id))""",
        ids, times)
    return {"vehicle_owners": _count(owners), "recall_vehicles": _count(recalled), "reports": _count(reports)}


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
