"""Intake's SQL. Nothing else touches the `intake` schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.domain import HISTORY_FIELDS, Change, Record


def _record(row: asyncpg.Record | None, key: str, fields: tuple[str, ...]) -> Record | None:
    if row is None:
        return None
    return Record(
        key=row[key],
        values={f: row[f] for f in fields if row[f] is not None},
        field_times={k: datetime.fromisoformat(v) for k, v in (row["field_times"] or {}).items()},
    )


CUSTOMER_COLUMNS = ("name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone", "consent")
VEHICLE_COLUMNS = (
    "customer_id", "plate", "model", "dealer_id", "region", "sale_id", "sold_at", "warranty_months", "warranty_km", "parts",
)


async def get_customer(conn: asyncpg.Connection, customer_id: str) -> Record | None:
    row = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1 FOR UPDATE", customer_id)
    return _record(row, "customer_id", CUSTOMER_COLUMNS)


async def find_customer_by_phone(conn: asyncpg.Connection, phone: str) -> Record | None:
    row = await conn.fetchrow(
        "SELECT * FROM customers WHERE phone = $1 ORDER BY updated_at DESC, customer_id LIMIT 1 FOR UPDATE", phone
    )
    return _record(row, "customer_id", CUSTOMER_COLUMNS)


async def save_customer(
    conn: asyncpg.Connection, record: Record, *, created: bool, at: datetime, source: str,
    changes: list[Change], event_id: uuid.UUID,
) -> None:
    values = record.values
    times = {k: v.isoformat() for k, v in record.field_times.items()}
    if created:
        await conn.execute(
            """INSERT INTO customers (customer_id, name, phone, email, address, region, person_in_charge,
                                      locale, timezone, consent, field_times, created_at, updated_at, registered_from)
               VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, 'zh-CN'), coalesce($9, 'Asia/Shanghai'),
                       coalesce($10, '{"sms": true, "email": true, "letter": true}'::jsonb), $11, $12, $12, $13)""",
            record.key, values.get("name"), values.get("phone"), values.get("email"), values.get("address"),
            values.get("region"), values.get("person_in_charge"), values.get("locale"), values.get("timezone"),
            values.get("consent"), times, at, source,
        )
    else:
        await conn.execute(
            """UPDATE customers SET name = $2, phone = $3, email = $4, address = $5, region = $6,
                      person_in_charge = $7, locale = coalesce($8, locale), timezone = coalesce($9, timezone),
                      consent = coalesce($10, consent), field_times = $11, updated_at = greatest(updated_at, $12)
                WHERE customer_id = $1""",
            record.key, values.get("name"), values.get("phone"), values.get("email"), values.get("address"),
            values.get("region"), values.get("person_in_charge"), values.get("locale"), values.get("timezone"),
            values.get("consent"), times, at,
        )
    history = [c for c in changes if c.field in HISTORY_FIELDS]
    if history:
        await conn.executemany(
            """INSERT INTO customer_history (customer_id, field, value, effective_at, event_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [(record.key, c.field, _text(c.new), at, event_id) for c in history],
        )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


async def get_vehicle(conn: asyncpg.Connection, vin: str) -> Record | None:
    row = await conn.fetchrow("SELECT * FROM vehicles WHERE vin = $1 FOR UPDATE", vin)
    return _record(row, "vin", VEHICLE_COLUMNS)


async def save_vehicle(conn: asyncpg.Connection, record: Record, *, created: bool, at: datetime) -> None:
    v = record.values
    times = {k: t.isoformat() for k, t in record.field_times.items()}
    args = (
        record.key, v.get("customer_id"), v.get("plate"), v.get("model"), v.get("dealer_id"), v.get("region"),
        v.get("sale_id"), _dt(v.get("sold_at")), v.get("warranty_months"), v.get("warranty_km"), v.get("parts") or [],
        times, at,
    )
    if created:
        await conn.execute(
            """INSERT INTO vehicles (vin, customer_id, plate, model, dealer_id, region, sale_id, sold_at,
                                     warranty_months, warranty_km, parts, field_times, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)""",
            *args,
        )
    else:
        await conn.execute(
            """UPDATE vehicles SET customer_id = $2, plate = $3, model = $4, dealer_id = $5, region = $6, sale_id = $7,
                      sold_at = $8, warranty_months = $9, warranty_km = $10, parts = $11, field_times = $12,
                      updated_at = greatest(updated_at, $13)
                WHERE vin = $1""",
            *args,
        )


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


async def insert_visit(conn: asyncpg.Connection, visit: dict[str, Any], event_id: uuid.UUID) -> bool:
    """Record a visit; False when this repair order is already on file."""
    status = await conn.execute(
        """INSERT INTO visits (repair_order_id, vin, customer_id, dealer_id, picked_up_at, service_type, items,
                               mileage_km, advisor_id, next_service_due_at, next_service_due_km, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (repair_order_id) DO NOTHING""",
        visit["repair_order_id"], visit["vin"], visit["customer_id"], visit["dealer_id"], visit["picked_up_at"],
        visit["service_type"], visit["items"], visit["mileage_km"], visit["advisor_id"],
        visit.get("next_service_due_at"), visit.get("next_service_due_km"), event_id,
    )
    return status.endswith(" 1")
