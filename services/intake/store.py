"""Intake's SQL. Nothing else touches the `intake` schema.

Handlers work a whole batch at a time: load every file involved in one query per table, change
them in memory, and write them back with one multi-row statement per table. A file is written
back only if its version is still the one loaded (or, for a new file, if nobody created it
meanwhile): when two replicas reach the same customer through different partitions, the later
writer's batch fails with `ConcurrentUpdate`, a transient error, and is retried from the start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.domain import CUSTOMER_FIELDS, FLAGS, VEHICLE_FIELDS, FileSet, Observation, Record, as_text
from shared.api import Sort, keyset
from shared.bulk import Table
from shared.errors import TransientError


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
    last_visits: bool = False  # each loaded customer's latest visit (a complaint naming no known vehicle)


def _times(raw: dict[str, str] | None) -> dict[str, datetime]:
    return {k: datetime.fromisoformat(v) for k, v in (raw or {}).items()}


class ConcurrentUpdate(TransientError):
    """Another replica wrote a file this batch changed since the batch loaded it: retry the batch."""


async def load(conn: asyncpg.Connection, needs: Needs) -> FileSet:
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
                key=row["customer_id"], values={f: row[f] for f in (*CUSTOMER_FIELDS, FLAGS) if row[f] is not None},
                field_times=_times(row["field_times"]), created_at=row["created_at"],
                source=row["registered_from"], derived=row["id_derived"],
                known_phones={row["phone"]} if row["phone"] else set(),
                first_seen=_times(row["first_seen"]), kept=set(row["history_kept"]),
            )
            files.customer_versions[row["customer_id"]] = row["version"]
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
            files.vehicle_versions[row["vin"]] = row["version"]
    if needs.last_visits and files.customers:
        for row in await conn.fetch(
            """SELECT DISTINCT ON (customer_id) repair_order_id, vin, customer_id, dealer_id, picked_up_at FROM visits
                WHERE customer_id = ANY($1::text[]) ORDER BY customer_id, picked_up_at DESC""", list(files.customers),
        ):
            files.visits.setdefault(row["repair_order_id"], dict(row))
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
    await _save_files(conn, CUSTOMERS, "customer_id", [r for r in files.customers.values() if r.dirty],
                      files.customer_versions, _customer_row)
    for old, new in files.renamed:
        await _move_customer(conn, old, new)
    merges = dict(files.renamed)  # an erasure names the ids its customer was known by before (migration 0008)
    if merges:
        await conn.execute(
            """INSERT INTO customer_merges (merged_id, customer_id) SELECT * FROM unnest($1::text[], $2::text[])
               ON CONFLICT (merged_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, merged_at = now()""",
            list(merges), list(merges.values()))
    gone = [key for key in files.removed if key not in files.customers and key in files.customer_versions]
    if gone:
        deleted = await conn.fetch(
            """DELETE FROM customers c USING unnest($1::text[], $2::bigint[]) AS u(id, version)
                WHERE c.customer_id = u.id AND c.version = u.version RETURNING c.customer_id""",
            gone, [files.customer_versions[k] for k in gone])
        if len(deleted) < len(gone):
            raise ConcurrentUpdate(f"customer files {sorted(set(gone) - {r[0] for r in deleted})} changed meanwhile")
    await _save_history(conn, files.history)
    await _save_files(conn, VEHICLES, "vin", [r for r in files.vehicles.values() if r.dirty], files.vehicle_versions,
                      _vehicle_row)
    await VISITS.insert(conn, files.new_visits, on_conflict="(repair_order_id) DO NOTHING")
    await RECEIPTS.insert(conn, files.new_receipts, on_conflict="(receipt_id) DO NOTHING")
    if files.new_facts:
        await FACTS.insert(conn, [{"kind": k, "ref": r, "content_hash": h} for (k, r), h in files.new_facts.items()],
                           on_conflict="(kind, ref) DO UPDATE SET content_hash = EXCLUDED.content_hash, recorded_at = now()")
    if files.new_shipments:
        await SHIPMENTS.insert(conn, files.new_shipments, on_conflict="(shipment_id) DO NOTHING")


CUSTOMERS = Table("customers", {
    "customer_id": "text", "id_derived": "boolean", "name": "text", "phone": "text", "email": "text",
    "address": "text", "region": "text", "person_in_charge": "text", "locale": "text", "timezone": "text",
    "consent": "jsonb", "field_times": "jsonb", "created_at": "timestamptz", "updated_at": "timestamptz",
    "registered_from": "text", "first_seen": "jsonb", "history_kept": "text[]", "version": "bigint",
    "contact_flags": "jsonb",
})
VEHICLES = Table("vehicles", {
    "vin": "text", "customer_id": "text", "plate": "text", "model": "text", "dealer_id": "text", "region": "text",
    "sale_id": "text", "sold_at": "timestamptz", "warranty_months": "int", "warranty_km": "int", "parts": "jsonb",
    "field_times": "jsonb", "created_at": "timestamptz", "updated_at": "timestamptz", "registered_from": "text",
    "version": "bigint",
})
VISITS = Table("visits", {
    "repair_order_id": "text", "vin": "text", "customer_id": "text", "dealer_id": "text", "picked_up_at": "timestamptz",
    "service_type": "text", "items": "jsonb", "mileage_km": "int", "advisor_id": "text",
    "next_service_due_at": "timestamptz", "next_service_due_km": "int", "event_id": "uuid",
})
RECEIPTS = Table("receipts", {
    "receipt_id": "text", "repair_order_id": "text", "vin": "text", "returned_at": "timestamptz", "rating": "int",
    "comments": "text", "event_id": "uuid",
})
FACTS = Table("facts", {"kind": "text", "ref": "text", "content_hash": "text"})
SHIPMENTS = Table("shipments", {"shipment_id": "text", "dealer_id": "text", "shipped_at": "timestamptz",
                                "line_nos": "int[]"})
HISTORY = Table("customer_history", {"customer_id": "text", "field": "text", "value": "text",
                                     "first_seen_at": "timestamptz", "event_id": "uuid"})
# A file is replaced whole when its version is the one loaded (new files: when nobody made it).
REPLACE_CUSTOMER = """(customer_id) DO UPDATE SET id_derived = EXCLUDED.id_derived, name = EXCLUDED.name,
    phone = EXCLUDED.phone, email = EXCLUDED.email, address = EXCLUDED.address, region = EXCLUDED.region,
    person_in_charge = EXCLUDED.person_in_charge, locale = EXCLUDED.locale, timezone = EXCLUDED.timezone,
    consent = EXCLUDED.consent, field_times = EXCLUDED.field_times, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, registered_from = EXCLUDED.registered_from, first_seen = EXCLUDED.first_seen,
    history_kept = EXCLUDED.history_kept, version = EXCLUDED.version, contact_flags = EXCLUDED.contact_flags
    WHERE customers.version = EXCLUDED.version - 1"""
REPLACE_VEHICLE = """(vin) DO UPDATE SET customer_id = EXCLUDED.customer_id, plate = EXCLUDED.plate,
    model = EXCLUDED.model, dealer_id = EXCLUDED.dealer_id, region = EXCLUDED.region, sale_id = EXCLUDED.sale_id,
    sold_at = EXCLUDED.sold_at, warranty_months = EXCLUDED.warranty_months, warranty_km = EXCLUDED.warranty_km,
    parts = EXCLUDED.parts, field_times = EXCLUDED.field_times, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, registered_from = EXCLUDED.registered_from, version = EXCLUDED.version
    WHERE vehicles.version = EXCLUDED.version - 1"""


def _customer_row(r: Record) -> dict[str, Any]:
    v = r.values
    return {"customer_id": r.key, "id_derived": r.derived, "name": v.get("name"), "phone": v.get("phone"),
            "email": v.get("email"), "address": v.get("address"), "region": v.get("region"),
            "person_in_charge": v.get("person_in_charge"), "locale": v.get("locale") or "zh-CN",
            "timezone": v.get("timezone") or "Asia/Shanghai",
            "consent": v.get("consent") or {"sms": True, "email": True, "letter": True},
            "field_times": r.field_times, "created_at": r.created_at, "updated_at": r.updated_at,
            "registered_from": r.source or "unknown", "first_seen": r.first_seen, "history_kept": sorted(r.kept),
            "contact_flags": v.get(FLAGS)}


def _vehicle_row(r: Record) -> dict[str, Any]:
    v = r.values
    return {"vin": r.key, **{name: v.get(name) for name in ("customer_id", "plate", "model", "dealer_id", "region",
                                                            "sale_id", "sold_at", "warranty_months", "warranty_km")},
            "parts": v.get("parts") or [], "field_times": r.field_times,
            "created_at": r.created_at, "updated_at": r.updated_at, "registered_from": r.source or "unknown"}


async def _save_files(conn: asyncpg.Connection, table: Table, key: str, records: list[Record],
                      versions: dict[str, int], row: Any) -> None:
    """Write changed files back, each only if it is still the version loaded."""
    if not records:
        return
    rows = [{**row(r), "version": versions.get(r.key, 0) + 1} for r in records]
    written = await table.insert(conn, rows, on_conflict=REPLACE_CUSTOMER if table is CUSTOMERS else REPLACE_VEHICLE,
                                 returning="customer_id" if table is CUSTOMERS else "vin")
    if len(written) < len(rows):
        lost = sorted({r[key] for r in rows} - {w[0] for w in written})
        raise ConcurrentUpdate(f"{table.name} {lost[:5]} changed since this batch loaded them; retrying the batch")


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
    rows = [{"customer_id": ident[0], "field": ident[1], "value": ident[2], "first_seen_at": at, "event_id": event_id}
            for ident, (at, event_id) in earliest.items()]
    await HISTORY.insert(conn, rows, on_conflict=KEEP_EARLIEST)


# A value seen again keeps the earliest time it was seen (and the event that showed it then).
KEEP_EARLIEST = """(customer_id, field, value) DO UPDATE
    SET first_seen_at = least(customer_history.first_seen_at, EXCLUDED.first_seen_at),
        event_id = CASE WHEN EXCLUDED.first_seen_at < customer_history.first_seen_at
                        THEN EXCLUDED.event_id ELSE customer_history.event_id END"""


# ---------------------------------------------------------------------------------------
# reads for the staff API


# A person's scope (shared.http.Principal): the regions and dealers whose customers they see.
Scope = tuple[Sequence[str], Sequence[str]]


# The condition on `customers c` for a person's scope, with the regions as $1 and the dealers as $2
# (both NULL: everything): the file's or one of its vehicles' region is theirs, or one of their
# dealers sold or serviced one of its vehicles. Constant SQL; the scope goes in as parameters.
IN_SCOPE = """(($1::text[] IS NULL AND $2::text[] IS NULL) OR c.region = ANY($1::text[])
    OR EXISTS (SELECT 1 FROM vehicles sv WHERE sv.customer_id = c.customer_id
               AND (sv.region = ANY($1::text[]) OR sv.dealer_id = ANY($2::text[])))
    OR EXISTS (SELECT 1 FROM visits sw WHERE sw.customer_id = c.customer_id AND sw.dealer_id = ANY($2::text[])))"""


def scope_args(scope: Scope | None) -> list[list[str] | None]:
    """$1 and $2 of IN_SCOPE."""
    return [None, None] if scope is None else [list(scope[0]), list(scope[1])]


async def in_scope(conn: asyncpg.Connection, customer_id: str, scope: Scope) -> bool:
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = $3 AND {IN_SCOPE})",
        *scope_args(scope), customer_id))


async def record_file_reads(conn: asyncpg.Connection, *, at: datetime, reader: str, role: str,
                            customer_ids: Iterable[str], route: str, detail: dict[str, Any] | None = None) -> None:
    """The append-only access log: one row per customer file read (migration 0007)."""
    rows = [(at, reader, role, cid, route, detail or {}) for cid in dict.fromkeys(customer_ids)]
    if rows:
        await conn.executemany(
            """INSERT INTO customer_file_reads (at, reader, role, customer_id, route, detail)
               VALUES ($1, $2, $3, $4, $5, $6)""", rows)


async def file_reads(conn: asyncpg.Connection, *, customer_id: str | None, reader: str | None,
                     limit: int, sort: Sort, cursor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The access log's entries for a customer and/or a reader; the tiebreak `seq` is the id as
    zero-padded text, so its text order is the ids' order."""
    ks = keyset(sort, "r.seq", cursor, 4)
    rows = await conn.fetch(
        f"""SELECT id, at, reader, role, customer_id, route, detail FROM (
                SELECT *, lpad(id::text, 19, '0') AS seq FROM customer_file_reads
                 WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR reader = $2)) r
            WHERE {ks.where} ORDER BY {ks.order_by} LIMIT $3""", customer_id, reader, limit, *ks.params)
    return [dict(r) for r in rows]


async def search_customers(conn: asyncpg.Connection, *, phone: str | None, plate: str | None, vin: str | None,
                           name: str | None, dealer: str | None, region: str | None, limit: int, sort: Sort,
                           cursor: dict[str, Any] | None, scope: Scope | None = None) -> list[dict[str, Any]]:
    """At most `limit` files matching every filter given, in the sort, after the cursor's file."""
    where, args = ["true", IN_SCOPE], list(scope_args(scope))  # $1, $2: the reader's scope

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
    if dealer:
        d = arg(dealer)
        where.append(f"(EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id AND v.dealer_id = {d}) "
                     f"OR EXISTS (SELECT 1 FROM visits w WHERE w.customer_id = c.customer_id AND w.dealer_id = {d}))")
    if region:
        where.append(f"c.region = {arg(region)}")
    ks = keyset(sort, "c.customer_id", cursor, len(args) + 1)
    where.append(ks.where)
    args += ks.params
    rows = await conn.fetch(
        f"""SELECT c.customer_id, c.name, c.phone, c.region, c.address, c.created_at, c.updated_at,
                   (SELECT array_agg(v.vin ORDER BY v.vin) FROM vehicles v WHERE v.customer_id = c.customer_id) AS vins
              FROM customers c WHERE {" AND ".join(where)}
             ORDER BY {ks.order_by} LIMIT {arg(limit)}""",
        *args,
    )
    return [dict(r) for r in rows]


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
     WHERE c.erased_at IS NULL  -- nobody completes an erased file (its facts since are filed again)
       AND (c.phone IS NULL OR c.address IS NULL
            OR EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id AND (v.plate IS NULL OR v.model IS NULL)))
"""


async def incomplete_files(conn: asyncpg.Connection, limit: int, sort: Sort, cursor: dict[str, Any] | None,
                           scope: Scope | None = None) -> list[dict[str, Any]]:
    ks = keyset(sort, "c.customer_id", cursor, 4)
    rows = await conn.fetch(f"""SELECT * FROM ({INCOMPLETE}) c WHERE {IN_SCOPE} AND {ks.where}
                                ORDER BY {ks.order_by} LIMIT $3""", *scope_args(scope), limit, *ks.params)
    return [dict(r) for r in rows]


async def file_counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(f"SELECT (SELECT count(*) FROM customers) AS files,"
                              f" (SELECT count(*) FROM ({INCOMPLETE}) i) AS incomplete")
    return int(row["files"]), int(row["incomplete"])


async def flagged_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Files with a flagged contact value, by field."""
    rows = await conn.fetch("""SELECT f AS field, count(*) AS n FROM customers, jsonb_object_keys(contact_flags) AS f
                                WHERE contact_flags IS NOT NULL AND jsonb_typeof(contact_flags) = 'object'
                                GROUP BY f""")
    return {r["field"]: int(r["n"]) for r in rows}


async def flagged_files(conn: asyncpg.Connection, limit: int, sort: Sort, cursor: dict[str, Any] | None,
                        scope: Scope | None = None) -> list[dict[str, Any]]:
    """Files with a flagged contact value (the agents' list to correct), oldest flag first by default."""
    ks = keyset(sort, "c.customer_id", cursor, 4)
    where = f"c.contact_flags IS NOT NULL AND c.contact_flags <> '{{}}'::jsonb AND {IN_SCOPE} AND {ks.where}"
    rows = await conn.fetch(
        f"""SELECT c.customer_id, c.name, c.region, c.phone, c.email, c.contact_flags, c.updated_at FROM customers c
             WHERE {where} ORDER BY {ks.order_by} LIMIT $3""", *scope_args(scope), limit, *ks.params)
    return [dict(r) for r in rows]


async def already_seen(conn: asyncpg.Connection, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Event ids processed by the consumer or accepted through the webhook before."""
    ids = list(set(event_ids))
    rows = await conn.fetch(
        """SELECT event_id FROM inbox WHERE event_id = ANY($1::uuid[])
           UNION SELECT event_id FROM webhook_receipts WHERE event_id = ANY($1::uuid[])""", ids)
    return {r[0] for r in rows}


async def claim_webhook_request(conn: asyncpg.Connection, producer: str, signature: str, signed_at: int,
                                events: int, at: datetime, forget_before: int) -> datetime | None:
    """Record a signed request; None if it is new, else when the same request was first taken.
    Requests signed before `forget_before` (outside any replay window) are forgotten first."""
    await conn.execute("DELETE FROM webhook_requests WHERE signed_at < $1", forget_before)
    taken = await conn.fetchval(
        """INSERT INTO webhook_requests (producer, signature, signed_at, received_at, events)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (producer, signature) DO NOTHING RETURNING received_at""",
        producer, signature, signed_at, at, events)
    if taken is not None:
        return None
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT received_at FROM webhook_requests WHERE producer = $1 AND signature = $2", producer, signature)


async def record_webhook_receipts(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, str, str]], at: datetime) -> None:
    if rows:
        await conn.execute(
            """INSERT INTO webhook_receipts (event_id, producer, topic, received_at)
               SELECT *, $4::timestamptz FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING""",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], at,
        )
