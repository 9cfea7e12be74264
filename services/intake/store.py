"""Intake's SQL. Nothing else touches the `intake` schema.

Handlers work a whole batch at a time: load every file the batch touches in one query per
table (locked FOR UPDATE, so replicas serialise on the same customer), change them in
memory, and write them back with one multi-row statement per table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.intake.domain import HISTORY_FIELDS, Change, Record

CUSTOMER_COLUMNS = ("name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone", "consent")
VEHICLE_COLUMNS = (
    "customer_id", "plate", "model", "dealer_id", "region", "sale_id", "sold_at", "warranty_months", "warranty_km", "parts",
)


def _record(row: asyncpg.Record, key: str, fields: tuple[str, ...]) -> Record:
    return Record(
        key=row[key],
        values={f: row[f] for f in fields if row[f] is not None},
        field_times={k: datetime.fromisoformat(v) for k, v in (row["field_times"] or {}).items()},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        source=row.get("registered_from") if "registered_from" in row else None,
    )


async def load_customers(conn: asyncpg.Connection, ids: Iterable[str], phones: Iterable[str]) -> list[Record]:
    rows = await conn.fetch(
        """SELECT * FROM customers WHERE customer_id = ANY($1::text[]) OR phone = ANY($2::text[])
            ORDER BY customer_id FOR UPDATE""",
        list(set(ids)), list(set(phones)),
    )
    return [_record(row, "customer_id", CUSTOMER_COLUMNS) for row in rows]


async def save_customers(conn: asyncpg.Connection, records: Iterable[Record]) -> None:
    rows = [r for r in records if r.dirty]
    if not rows:
        return
    v = [r.values for r in rows]
    await conn.execute(
        """INSERT INTO customers (customer_id, name, phone, email, address, region, person_in_charge, locale, timezone,
                                  consent, field_times, created_at, updated_at, registered_from)
           SELECT id, name, phone, email, address, region, pic, coalesce(locale, 'zh-CN'),
                  coalesce(tz, 'Asia/Shanghai'), coalesce(consent, '{"sms": true, "email": true, "letter": true}'::jsonb),
                  times, created, updated, source
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::text[], $10::jsonb[], $11::jsonb[], $12::timestamptz[], $13::timestamptz[], $14::text[])
                  AS u(id, name, phone, email, address, region, pic, locale, tz, consent, times, created, updated, source)
           ON CONFLICT (customer_id) DO UPDATE SET
               name = EXCLUDED.name, phone = EXCLUDED.phone, email = EXCLUDED.email, address = EXCLUDED.address,
               region = EXCLUDED.region, person_in_charge = EXCLUDED.person_in_charge, locale = EXCLUDED.locale,
               timezone = EXCLUDED.timezone, consent = EXCLUDED.consent, field_times = EXCLUDED.field_times,
               updated_at = greatest(customers.updated_at, EXCLUDED.updated_at)""",
        [r.key for r in rows], [x.get("name") for x in v], [x.get("phone") for x in v], [x.get("email") for x in v],
        [x.get("address") for x in v], [x.get("region") for x in v], [x.get("person_in_charge") for x in v],
        [x.get("locale") for x in v], [x.get("timezone") for x in v], [x.get("consent") for x in v],
        [{k: t.isoformat() for k, t in r.field_times.items()} for r in rows],
        [r.created_at for r in rows], [r.updated_at for r in rows], [r.source or "unknown" for r in rows],
    )


async def save_history(conn: asyncpg.Connection, entries: list[tuple[str, Change, datetime, uuid.UUID]]) -> None:
    """Every value a history field took, with when it took effect."""
    rows = [(key, c.field, _text(c.new), at, event_id) for key, c, at, event_id in entries if c.field in HISTORY_FIELDS]
    if not rows:
        return
    await conn.execute(
        """INSERT INTO customer_history (customer_id, field, value, effective_at, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[])
           ON CONFLICT DO NOTHING""",
        *map(list, zip(*rows, strict=True)),
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


async def load_vehicles(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, Record]:
    rows = await conn.fetch("SELECT * FROM vehicles WHERE vin = ANY($1::text[]) ORDER BY vin FOR UPDATE", list(set(vins)))
    return {row["vin"]: _record(row, "vin", VEHICLE_COLUMNS) for row in rows}


async def save_vehicles(conn: asyncpg.Connection, records: Iterable[Record]) -> None:
    rows = [r for r in records if r.dirty]
    if not rows:
        return
    v = [r.values for r in rows]
    await conn.execute(
        """INSERT INTO vehicles (vin, customer_id, plate, model, dealer_id, region, sale_id, sold_at, warranty_months,
                                 warranty_km, parts, field_times, created_at, updated_at)
           SELECT vin, cid, plate, model, dealer, region, sale, sold, months, km, coalesce(parts, '[]'::jsonb), times,
                  created, updated
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[], $9::int[], $10::int[], $11::jsonb[], $12::jsonb[], $13::timestamptz[],
                         $14::timestamptz[])
                  AS u(vin, cid, plate, model, dealer, region, sale, sold, months, km, parts, times, created, updated)
           ON CONFLICT (vin) DO UPDATE SET
               customer_id = EXCLUDED.customer_id, plate = EXCLUDED.plate, model = EXCLUDED.model,
               dealer_id = EXCLUDED.dealer_id, region = EXCLUDED.region, sale_id = EXCLUDED.sale_id,
               sold_at = EXCLUDED.sold_at, warranty_months = EXCLUDED.warranty_months,
               warranty_km = EXCLUDED.warranty_km, parts = EXCLUDED.parts, field_times = EXCLUDED.field_times,
               updated_at = greatest(vehicles.updated_at, EXCLUDED.updated_at)""",
        [r.key for r in rows], [x.get("customer_id") for x in v], [x.get("plate") for x in v],
        [x.get("model") for x in v], [x.get("dealer_id") for x in v], [x.get("region") for x in v],
        [x.get("sale_id") for x in v], [x.get("sold_at") for x in v], [x.get("warranty_months") for x in v],
        [x.get("warranty_km") for x in v], [x.get("parts") for x in v],
        [{k: t.isoformat() for k, t in r.field_times.items()} for r in rows],
        [r.created_at for r in rows], [r.updated_at for r in rows],
    )


async def existing_repair_orders(conn: asyncpg.Connection, ids: Iterable[str]) -> set[str]:
    rows = await conn.fetch("SELECT repair_order_id FROM visits WHERE repair_order_id = ANY($1::text[])", list(set(ids)))
    return {row[0] for row in rows}


async def insert_visits(conn: asyncpg.Connection, visits: list[dict[str, Any]]) -> None:
    if not visits:
        return
    columns = ("repair_order_id", "vin", "customer_id", "dealer_id", "picked_up_at", "service_type", "items",
               "mileage_km", "advisor_id", "next_service_due_at", "next_service_due_km", "event_id")
    await conn.execute(
        f"""INSERT INTO visits ({", ".join(columns)})
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                                 $7::jsonb[], $8::int[], $9::text[], $10::timestamptz[], $11::int[], $12::uuid[])
            ON CONFLICT (repair_order_id) DO NOTHING""",
        *[[visit.get(c) for visit in visits] for c in columns],
    )
