"""Intake's SQL. Nothing else touches the `intake` schema.

Handlers work a whole batch at a time: lock the keys the batch touches (advisory locks, taken
in sorted order, so two replicas creating the same new customer serialise instead of racing),
load every file involved in one query per table, change them in memory, and write them back
with one multi-row statement per table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.intake.domain import CUSTOMER_FIELDS, VEHICLE_FIELDS, FileSet, Observation, Record, as_text


@dataclass
class Needs:
    """What a batch of events needs loaded."""

    customer_ids: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    vins: set[str] = field(default_factory=set)
    repair_orders: set[str] = field(default_factory=set)
    receipts: set[str] = field(default_factory=set)
    facts: set[tuple[str, str]] = field(default_factory=set)
    shipments: set[str] = field(default_factory=set)
    first_pickups: set[str] = field(default_factory=set)

    def lock_keys(self) -> list[str]:
        return sorted({f"c:{i}" for i in self.customer_ids} | {f"p:{p}" for p in self.phones}
                      | {f"v:{v}" for v in self.vins})


def _json(values: list[Any]) -> list[str | None]:
    """JSON text for a jsonb column fed through unnest: a list of lists would otherwise be sent
    as one two-dimensional array and flattened."""
    return [None if v is None else orjson.dumps(v).decode() for v in values]


def _times(raw: dict[str, str] | None) -> dict[str, datetime]:
    return {k: datetime.fromisoformat(v) for k, v in (raw or {}).items()}


async def load(conn: asyncpg.Connection, needs: Needs) -> FileSet:
    keys = needs.lock_keys()
    if keys:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest($1::text[]) AS k ORDER BY k", keys)
    files = FileSet()
    if needs.customer_ids or needs.phones:
        rows = await conn.fetch(
            # A union of three index lookups: written as ORs with a subquery, Postgres can only
            # scan the whole table (it did, for every batch: the pipeline slowed as files grew).
            """SELECT * FROM customers
                WHERE customer_id IN (SELECT unnest($1::text[])
                                      UNION SELECT customer_id FROM customers WHERE phone = ANY($2::text[])
                                      UNION SELECT customer_id FROM customer_history
                                             WHERE field = 'phone' AND value = ANY($2::text[]))""",
            list(needs.customer_ids), list(needs.phones),
        )
        for row in rows:
            files.customers[row["customer_id"]] = Record(
                key=row["customer_id"], values={f: row[f] for f in CUSTOMER_FIELDS if row[f] is not None},
                field_times=_times(row["field_times"]), created_at=row["created_at"],
                source=row["registered_from"], derived=row["id_derived"],
                known_phones={row["phone"]} if row["phone"] else set(),
            )
        for row in await conn.fetch(
            "SELECT customer_id, value FROM customer_history WHERE field = 'phone' AND customer_id = ANY($1::text[])",
            list(files.customers),
        ):
            files.customers[row["customer_id"]].known_phones.add(row["value"])
    if needs.vins:
        for row in await conn.fetch("SELECT * FROM vehicles WHERE vin = ANY($1::text[])", list(needs.vins)):
            files.vehicles[row["vin"]] = Record(
                key=row["vin"], values={f: row[f] for f in VEHICLE_FIELDS if row[f] is not None},
                field_times=_times(row["field_times"]), created_at=row["created_at"], source=row["registered_from"],
            )
    if needs.repair_orders:
        for row in await conn.fetch(
            """SELECT repair_order_id, vin, customer_id, dealer_id, picked_up_at FROM visits
                WHERE repair_order_id = ANY($1::text[])""", list(needs.repair_orders),
        ):
            files.visits[row["repair_order_id"]] = dict(row)
    if needs.first_pickups:
        for row in await conn.fetch(
            "SELECT vin, min(picked_up_at) AS first FROM visits WHERE vin = ANY($1::text[]) GROUP BY vin",
            list(needs.first_pickups),
        ):
            files.first_pickup[row["vin"]] = row["first"]
    if needs.receipts:
        for row in await conn.fetch("SELECT * FROM receipts WHERE receipt_id = ANY($1::text[])", list(needs.receipts)):
            files.receipts[row["receipt_id"]] = dict(row)
    if needs.facts:
        kinds, refs = zip(*needs.facts, strict=True)
        for row in await conn.fetch(
            """SELECT f.kind, f.ref, f.content_hash FROM facts f
                 JOIN unnest($1::text[], $2::text[]) AS w(kind, ref) ON f.kind = w.kind AND f.ref = w.ref""",
            list(kinds), list(refs),
        ):
            files.facts[(row["kind"], row["ref"])] = row["content_hash"]
    if needs.shipments:
        for row in await conn.fetch("SELECT * FROM shipments WHERE shipment_id = ANY($1::text[])", list(needs.shipments)):
            files.shipments[row["shipment_id"]] = {**dict(row), "line_nos": list(row["line_nos"])}
    return files


async def save(conn: asyncpg.Connection, files: FileSet) -> None:
    await _save_customers(conn, [r for r in files.customers.values() if r.dirty])
    for old, new in files.renamed:
        await _move_customer(conn, old, new)
    gone = [key for key in files.removed if key not in files.customers]
    if gone:
        await conn.execute("DELETE FROM customers WHERE customer_id = ANY($1::text[])", gone)
    await _save_history(conn, files.history)
    await _save_vehicles(conn, [r for r in files.vehicles.values() if r.dirty])
    await _insert_visits(conn, files.new_visits)
    await _insert_receipts(conn, files.new_receipts)
    if files.new_facts:
        items = list(files.new_facts.items())
        await conn.execute(
            """INSERT INTO facts (kind, ref, content_hash)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
               ON CONFLICT (kind, ref) DO UPDATE SET content_hash = EXCLUDED.content_hash, recorded_at = now()""",
            [k for (k, _), _ in items], [r for (_, r), _ in items], [h for _, h in items],
        )
    if files.new_shipments:
        s = files.new_shipments
        await conn.execute(
            """INSERT INTO shipments (shipment_id, dealer_id, shipped_at, line_nos)
               SELECT id, dealer, shipped, string_to_array(lines, ',')::int[]
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(id, dealer, shipped, lines)
               ON CONFLICT (shipment_id) DO NOTHING""",
            [x["shipment_id"] for x in s], [x["dealer_id"] for x in s], [x["shipped_at"] for x in s],
            [",".join(map(str, x["line_nos"])) for x in s],
        )


async def _save_customers(conn: asyncpg.Connection, rows: list[Record]) -> None:
    if not rows:
        return
    v = [r.values for r in rows]
    await conn.execute(
        """INSERT INTO customers (customer_id, id_derived, name, phone, email, address, region, person_in_charge,
                                  locale, timezone, consent, field_times, created_at, updated_at, registered_from)
           SELECT id, derived, name, phone, email, address, region, pic, coalesce(locale, 'zh-CN'),
                  coalesce(tz, 'Asia/Shanghai'), coalesce(consent, '{"sms": true, "email": true, "letter": true}'::jsonb),
                  times, created, updated, source
             FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], $13::timestamptz[],
                         $14::timestamptz[], $15::text[])
                  AS u(id, derived, name, phone, email, address, region, pic, locale, tz, consent, times, created,
                       updated, source)
           ON CONFLICT (customer_id) DO UPDATE SET
               id_derived = EXCLUDED.id_derived, name = EXCLUDED.name, phone = EXCLUDED.phone, email = EXCLUDED.email,
               address = EXCLUDED.address, region = EXCLUDED.region, person_in_charge = EXCLUDED.person_in_charge,
               locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, consent = EXCLUDED.consent,
               field_times = EXCLUDED.field_times, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
               registered_from = EXCLUDED.registered_from""",
        [r.key for r in rows], [r.derived for r in rows], [x.get("name") for x in v], [x.get("phone") for x in v],
        [x.get("email") for x in v], [x.get("address") for x in v], [x.get("region") for x in v],
        [x.get("person_in_charge") for x in v], [x.get("locale") for x in v], [x.get("timezone") for x in v],
        [x.get("consent") for x in v], [{k: t.isoformat() for k, t in r.field_times.items()} for r in rows],
        [r.created_at for r in rows], [r.updated_at for r in rows], [r.source or "unknown" for r in rows],
    )


async def _move_customer(conn: asyncpg.Connection, old: str, new: str) -> None:
    """A phone-only file joined its customer's file: everything filed under `old` moves."""
    for table in ("vehicles", "visits"):
        await conn.execute(f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1", old, new)
    await conn.execute(
        """INSERT INTO customer_history (customer_id, field, value, first_seen_at, event_id)
           SELECT $2, field, value, first_seen_at, event_id FROM customer_history WHERE customer_id = $1
           ON CONFLICT (customer_id, field, value) DO UPDATE
               SET first_seen_at = least(customer_history.first_seen_at, EXCLUDED.first_seen_at)""",
        old, new,
    )
    await conn.execute("DELETE FROM customer_history WHERE customer_id = $1", old)


async def _save_history(conn: asyncpg.Connection, entries: list[tuple[str, Observation, uuid.UUID]]) -> None:
    earliest: dict[tuple[str, str, str], tuple[datetime, uuid.UUID]] = {}
    for key, o, event_id in entries:
        text = as_text(o.value)
        if text is None:
            continue
        ident = (key, o.field, text)
        if ident not in earliest or o.at < earliest[ident][0]:
            earliest[ident] = (o.at, event_id)
    if not earliest:
        return
    rows = [(*ident, at, event_id) for ident, (at, event_id) in earliest.items()]
    await conn.execute(
        """INSERT INTO customer_history (customer_id, field, value, first_seen_at, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[])
           ON CONFLICT (customer_id, field, value) DO UPDATE
               SET first_seen_at = least(customer_history.first_seen_at, EXCLUDED.first_seen_at),
                   event_id = CASE WHEN EXCLUDED.first_seen_at < customer_history.first_seen_at
                                   THEN EXCLUDED.event_id ELSE customer_history.event_id END""",
        *map(list, zip(*rows, strict=True)),
    )


async def _save_vehicles(conn: asyncpg.Connection, rows: list[Record]) -> None:
    if not rows:
        return
    v = [r.values for r in rows]
    await conn.execute(
        """INSERT INTO vehicles (vin, customer_id, plate, model, dealer_id, region, sale_id, sold_at, warranty_months,
                                 warranty_km, parts, field_times, created_at, updated_at, registered_from)
           SELECT vin, cid, plate, model, dealer, region, sale, sold, months, km, coalesce(parts::jsonb, '[]'::jsonb),
                  times, created, updated, source
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[], $9::int[], $10::int[], $11::text[], $12::jsonb[], $13::timestamptz[],
                         $14::timestamptz[], $15::text[])
                  AS u(vin, cid, plate, model, dealer, region, sale, sold, months, km, parts, times, created, updated,
                       source)
           ON CONFLICT (vin) DO UPDATE SET
               customer_id = EXCLUDED.customer_id, plate = EXCLUDED.plate, model = EXCLUDED.model,
               dealer_id = EXCLUDED.dealer_id, region = EXCLUDED.region, sale_id = EXCLUDED.sale_id,
               sold_at = EXCLUDED.sold_at, warranty_months = EXCLUDED.warranty_months,
               warranty_km = EXCLUDED.warranty_km, parts = EXCLUDED.parts, field_times = EXCLUDED.field_times,
               created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
               registered_from = EXCLUDED.registered_from""",
        [r.key for r in rows], [x.get("customer_id") for x in v], [x.get("plate") for x in v],
        [x.get("model") for x in v], [x.get("dealer_id") for x in v], [x.get("region") for x in v],
        [x.get("sale_id") for x in v], [x.get("sold_at") for x in v], [x.get("warranty_months") for x in v],
        [x.get("warranty_km") for x in v], _json([x.get("parts") for x in v]),
        [{k: t.isoformat() for k, t in r.field_times.items()} for r in rows],
        [r.created_at for r in rows], [r.updated_at for r in rows], [r.source or "unknown" for r in rows],
    )


_VISIT_COLUMNS = ("repair_order_id", "vin", "customer_id", "dealer_id", "picked_up_at", "service_type", "items",
                  "mileage_km", "advisor_id", "next_service_due_at", "next_service_due_km", "event_id")


async def _insert_visits(conn: asyncpg.Connection, visits: list[dict[str, Any]]) -> None:
    if not visits:
        return
    await conn.execute(
        f"""INSERT INTO visits ({", ".join(_VISIT_COLUMNS)})
            SELECT ro, vin, cid, dealer, at, kind, items::jsonb, km, advisor, due_at, due_km, event_id
              FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                          $7::text[], $8::int[], $9::text[], $10::timestamptz[], $11::int[], $12::uuid[])
                   AS u(ro, vin, cid, dealer, at, kind, items, km, advisor, due_at, due_km, event_id)
            ON CONFLICT (repair_order_id) DO NOTHING""",
        *[_json([visit.get(c) for visit in visits]) if c == "items" else [visit.get(c) for visit in visits]
          for c in _VISIT_COLUMNS],
    )


_RECEIPT_COLUMNS = ("receipt_id", "repair_order_id", "vin", "returned_at", "rating", "comments", "event_id")


async def _insert_receipts(conn: asyncpg.Connection, receipts: list[dict[str, Any]]) -> None:
    if not receipts:
        return
    await conn.execute(
        f"""INSERT INTO receipts ({", ".join(_RECEIPT_COLUMNS)})
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::text[],
                                 $7::uuid[])
            ON CONFLICT (receipt_id) DO NOTHING""",
        *[[r.get(c) for r in receipts] for c in _RECEIPT_COLUMNS],
    )


# ---------------------------------------------------------------------------------------
# reads for the staff API


async def search_customers(conn: asyncpg.Connection, *, phone: str | None, plate: str | None, vin: str | None,
                           name: str | None, region: str | None, limit: int, offset: int) -> tuple[int, list[dict]]:
    where, args = ["true"], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if phone:
        where.append(f"(c.phone = {arg(phone)} OR EXISTS (SELECT 1 FROM customer_history h WHERE h.customer_id = "
                     f"c.customer_id AND h.field = 'phone' AND h.value = {arg(phone)}))")
    if plate:
        where.append(f"EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id AND v.plate = {arg(plate)})")
    if vin:
        where.append(f"EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id AND v.vin = {arg(vin)})")
    if name:
        prefix = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(f"lower(c.name) LIKE {arg(prefix)}")
    if region:
        where.append(f"c.region = {arg(region)}")
    condition = " AND ".join(where)
    total = await conn.fetchval(f"SELECT count(*) FROM customers c WHERE {condition}", *args)
    rows = await conn.fetch(
        f"""SELECT c.customer_id, c.name, c.phone, c.region, c.address, c.updated_at,
                   (SELECT array_agg(v.vin ORDER BY v.vin) FROM vehicles v WHERE v.customer_id = c.customer_id) AS vins
              FROM customers c WHERE {condition}
             ORDER BY c.region NULLS LAST, c.customer_id LIMIT {arg(limit)} OFFSET {arg(offset)}""",
        *args,
    )
    return int(total), [dict(r) for r in rows]


async def customer_file(conn: asyncpg.Connection, customer_id: str) -> dict[str, Any] | None:
    customer = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1", customer_id)
    if customer is None:
        return None
    vehicles = await conn.fetch(
        "SELECT * FROM vehicles WHERE customer_id = $1 ORDER BY sold_at NULLS LAST, vin", customer_id)
    visits = await conn.fetch("SELECT * FROM visits WHERE customer_id = $1 ORDER BY picked_up_at", customer_id)
    receipts = await conn.fetch(
        """SELECT r.* FROM receipts r JOIN visits v USING (repair_order_id)
            WHERE v.customer_id = $1 ORDER BY r.returned_at""", customer_id)
    history = await conn.fetch(
        """SELECT field, value, first_seen_at, event_id FROM customer_history
            WHERE customer_id = $1 ORDER BY field, first_seen_at""", customer_id)
    return {"customer": dict(customer), "vehicles": [dict(v) for v in vehicles], "visits": [dict(v) for v in visits],
            "receipts": [dict(r) for r in receipts], "history": [dict(h) for h in history]}


INCOMPLETE = """
    SELECT c.customer_id, c.name, c.region, c.phone IS NULL AS no_phone, c.address IS NULL AS no_address,
           coalesce((SELECT array_agg(v.vin ORDER BY v.vin) FROM vehicles v
                      WHERE v.customer_id = c.customer_id AND v.plate IS NULL), '{}') AS no_plate,
           coalesce((SELECT array_agg(v.vin ORDER BY v.vin) FROM vehicles v
                      WHERE v.customer_id = c.customer_id AND v.model IS NULL), '{}') AS no_model,
           (SELECT max(picked_up_at) FROM visits w WHERE w.customer_id = c.customer_id) AS last_visit_at,
           c.created_at
      FROM customers c
     WHERE c.phone IS NULL OR c.address IS NULL
        OR EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id AND (v.plate IS NULL OR v.model IS NULL))
"""


async def incomplete_files(conn: asyncpg.Connection, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    total = await conn.fetchval(f"SELECT count(*) FROM ({INCOMPLETE}) i")
    rows = await conn.fetch(f"{INCOMPLETE} ORDER BY c.created_at, c.customer_id LIMIT $1 OFFSET $2", limit, offset)
    return int(total), [dict(r) for r in rows]


async def file_counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(f"SELECT (SELECT count(*) FROM customers) AS files, (SELECT count(*) FROM ({INCOMPLETE}) i) AS incomplete")
    return int(row["files"]), int(row["incomplete"])


async def already_seen(conn: asyncpg.Connection, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Event ids processed by the consumer or accepted through the webhook before."""
    ids = list(set(event_ids))
    rows = await conn.fetch(
        """SELECT event_id FROM inbox WHERE event_id = ANY($1::uuid[])
           UNION SELECT event_id FROM webhook_receipts WHERE event_id = ANY($1::uuid[])""", ids)
    return {r[0] for r in rows}


async def record_webhook_receipts(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, str, str]], at: datetime) -> None:
    if rows:
        await conn.execute(
            """INSERT INTO webhook_receipts (event_id, producer, topic, received_at)
               SELECT *, $4::timestamptz FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING""",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], at,
        )
