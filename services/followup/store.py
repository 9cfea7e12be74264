"""Follow-up's SQL. Nothing else touches the `followup` schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.api import Sort, keyset
from shared.bulk import Table
from shared.http import SCOPE_SQL

# -- projections: customers and vehicles --------------------------------------------------------
#
# A transaction's handlers share one `Projections` (uow.batch): CustomerRegistered and
# VehiclePickedUp of one poll change the same customer in memory, and it is written once.

CUSTOMERS = Table("customers", {
    "customer_id": "text", "region": "text", "timezone": "text", "locale": "text", "updated_at": "timestamptz",
    "last_contact_at": "timestamptz", "lost_check_at": "timestamptz", "lost_cause": "uuid", "lost_correlation": "uuid",
    "contact_flags": "jsonb",
})
VEHICLES = Table("vehicles", {
    "vin": "text", "customer_id": "text", "model": "text", "dealer_id": "text", "sold_at": "timestamptz",
    "warranty_months": "int", "warranty_km": "int", "updated_at": "timestamptz",
    "first_reading_at": "timestamptz", "first_reading_km": "int", "last_visit_at": "timestamptz",
    "last_mileage_km": "int", "next_service_due_at": "timestamptz", "next_service_due_km": "int",
    "remind_at": "timestamptz", "reminder": "jsonb", "remind_cause": "uuid", "remind_correlation": "uuid",
})
VISITS = Table("visits", {
    "repair_order_id": "text", "vin": "text", "customer_id": "text", "dealer_id": "text",
    "picked_up_at": "timestamptz", "mileage_km": "int", "next_service_due_at": "timestamptz",
    "next_service_due_km": "int",
})


@dataclass
class Customer:
    customer_id: str
    region: str | None = None
    timezone: str = "Asia/Shanghai"
    locale: str = "zh-CN"
    updated_at: datetime | None = None
    last_contact_at: datetime | None = None
    lost_check_at: datetime | None = None
    lost_cause: uuid.UUID | None = None
    lost_correlation: uuid.UUID | None = None
    # contact values on the customer's file that cannot be used ({field: {value, reason, …}})
    contact_flags: dict[str, Any] | None = None


@dataclass
class Vehicle:
    vin: str
    customer_id: str | None = None
    model: str | None = None
    dealer_id: str | None = None
    sold_at: datetime | None = None
    warranty_months: int | None = None
    warranty_km: int | None = None
    updated_at: datetime | None = None
    first_reading_at: datetime | None = None
    first_reading_km: int | None = None
    last_visit_at: datetime | None = None
    last_mileage_km: int | None = None
    next_service_due_at: datetime | None = None
    next_service_due_km: int | None = None
    remind_at: datetime | None = None
    reminder: dict[str, Any] | None = None
    remind_cause: uuid.UUID | None = None
    remind_correlation: uuid.UUID | None = None


# Customers are written from several partitions (by customer_id, and by VIN through pickups and
# sales), so two replicas may write one at once: each column merges the way its facts order
# (newest by world time, the latest contact), whatever the order the writes land in.
MERGE_CUSTOMER = """(customer_id) DO UPDATE SET
    region = CASE WHEN EXCLUDED.updated_at >= customers.updated_at THEN coalesce(EXCLUDED.region, customers.region)
                  ELSE coalesce(customers.region, EXCLUDED.region) END,
    timezone = CASE WHEN EXCLUDED.updated_at >= customers.updated_at THEN EXCLUDED.timezone ELSE customers.timezone END,
    locale = CASE WHEN EXCLUDED.updated_at >= customers.updated_at THEN EXCLUDED.locale ELSE customers.locale END,
    contact_flags = CASE WHEN EXCLUDED.updated_at >= customers.updated_at
                         THEN coalesce(EXCLUDED.contact_flags, customers.contact_flags)
                         ELSE coalesce(customers.contact_flags, EXCLUDED.contact_flags) END,
    updated_at = greatest(customers.updated_at, EXCLUDED.updated_at),
    last_contact_at = greatest(customers.last_contact_at, EXCLUDED.last_contact_at),
    lost_check_at = CASE WHEN EXCLUDED.last_contact_at IS NOT DISTINCT FROM customers.last_contact_at
                              OR EXCLUDED.last_contact_at > customers.last_contact_at OR customers.last_contact_at IS NULL
                         THEN EXCLUDED.lost_check_at ELSE customers.lost_check_at END,
    lost_cause = CASE WHEN EXCLUDED.last_contact_at IS NOT DISTINCT FROM customers.last_contact_at
                           OR EXCLUDED.last_contact_at > customers.last_contact_at OR customers.last_contact_at IS NULL
                      THEN EXCLUDED.lost_cause ELSE customers.lost_cause END,
    lost_correlation = CASE WHEN EXCLUDED.last_contact_at IS NOT DISTINCT FROM customers.last_contact_at
                                 OR EXCLUDED.last_contact_at > customers.last_contact_at
                                 OR customers.last_contact_at IS NULL
                            THEN EXCLUDED.lost_correlation ELSE customers.lost_correlation END"""
_CUSTOMER_COLUMNS = ("customer_id, region, timezone, locale, updated_at, last_contact_at, lost_check_at, lost_cause, "
                     "lost_correlation, contact_flags")
_VEHICLE_COLUMNS = ("vin, customer_id, model, dealer_id, sold_at, warranty_months, warranty_km, updated_at, "
                    "first_reading_at, first_reading_km, last_visit_at, last_mileage_km, next_service_due_at, "
                    "next_service_due_km, remind_at, reminder, remind_cause, remind_correlation")


class Projections:
    """The customers and vehicles a transaction's handlers touch: loaded once each (one query per
    table for what is not loaded yet), changed in memory, and written once when the unit of work
    is flushed (one statement per table). Visits are only ever added."""

    def __init__(self, uow: Any) -> None:
        self.conn: asyncpg.Connection = uow.conn
        self.customers: dict[str, Customer] = {}
        self.vehicles: dict[str, Vehicle] = {}
        self.new_visits: dict[str, dict[str, Any]] = {}
        self._dirty_customers: set[str] = set()
        self._dirty_vehicles: set[str] = set()

    async def load(self, *, customers: Iterable[str] = (), vins: Iterable[str] = ()) -> None:
        wanted = {c for c in customers if c not in self.customers}
        if wanted:
            for row in await self.conn.fetch(
                    f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ANY($1::text[])",
                    list(wanted)):
                self.customers[row["customer_id"]] = Customer(**dict(row))
        wanted_vins = {v for v in vins if v not in self.vehicles}
        if wanted_vins:
            for row in await self.conn.fetch(
                    f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE vin = ANY($1::text[])", list(wanted_vins)):
                self.vehicles[row["vin"]] = Vehicle(**dict(row))

    def customer(self, customer_id: str) -> Customer:
        """The customer's projection (a new one if it is not on file), marked to be written."""
        found = self.customers.get(customer_id)
        if found is None:
            found = self.customers[customer_id] = Customer(customer_id)
        self._dirty_customers.add(customer_id)
        return found

    def vehicle(self, vin: str) -> Vehicle:
        found = self.vehicles.get(vin)
        if found is None:
            found = self.vehicles[vin] = Vehicle(vin)
        self._dirty_vehicles.add(vin)
        return found

    def add_visit(self, visit: dict[str, Any]) -> None:
        self.new_visits.setdefault(visit["repair_order_id"], visit)

    async def save(self) -> None:
        if self.new_visits:
            await VISITS.insert(self.conn, list(self.new_visits.values()), on_conflict="(repair_order_id) DO NOTHING")
        if self._dirty_customers:
            rows = [vars(self.customers[c]) for c in self._dirty_customers]
            for row in rows:
                row["updated_at"] = row["updated_at"] or row["last_contact_at"]
            await CUSTOMERS.insert(self.conn, [r for r in rows if r["updated_at"] is not None],
                                   on_conflict=MERGE_CUSTOMER)
        if self._dirty_vehicles:
            rows = [vars(self.vehicles[v]) for v in self._dirty_vehicles]
            for row in rows:
                row["updated_at"] = row["updated_at"] or row["last_visit_at"] or row["sold_at"]
            await VEHICLES.upsert(self.conn, [r for r in rows if r["updated_at"] is not None], key=("vin",))
        self.new_visits.clear()
        self._dirty_customers.clear()
        self._dirty_vehicles.clear()


async def retire_customers(conn: asyncpg.Connection, merged: dict[str, str]) -> None:
    """Files intake merged into another customer's: their follow-ups and history move along."""
    for old, new in merged.items():
        for table in ("followups", "call_attempts", "letters_requested", "visits", "vehicles", "complaints",
                      "inbound_calls"):
            await conn.execute(f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1", old, new)
        await conn.execute("DELETE FROM customers WHERE customer_id = $1", old)
        # The tracking owner (owners.py): the file kept keeps its own; one without takes the retired
        # file's; the owner history moves along with the file.
        await conn.execute(
            "INSERT INTO customer_owners (customer_id, owner, source, reason, assigned_by, assigned_at, region, "
            "dealer_id, rule_owner, rule_source, rule_rank, rule_cause) "
            "SELECT $2, owner, source, reason, assigned_by, assigned_at, region, dealer_id, rule_owner, rule_source, "
            "rule_rank, rule_cause FROM customer_owners WHERE customer_id = $1 "
            "ON CONFLICT (customer_id) DO NOTHING", old, new)
        await conn.execute("DELETE FROM customer_owners WHERE customer_id = $1", old)
        await conn.execute("UPDATE customer_owner_changes SET customer_id = $2 WHERE customer_id = $1", old, new)


async def customer_zones(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT customer_id, region, timezone, locale FROM customers "
                            "WHERE customer_id = ANY($1::text[])", list(set(customer_ids)))
    return {r["customer_id"]: dict(r) for r in rows}


async def upsert_complaints(conn: asyncpg.Connection, rows: list[tuple[str, str | None, str, datetime]]) -> None:
    newest: dict[str, tuple[str, str | None, str, datetime]] = {}
    for row in rows:
        if row[0] not in newest or row[3] >= newest[row[0]][3]:
            newest[row[0]] = row
    rows = list(newest.values())
    if not rows:
        return
    await conn.execute(
        """INSERT INTO complaints (complaint_id, customer_id, state, updated_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           ON CONFLICT (complaint_id) DO UPDATE SET
               state = EXCLUDED.state, customer_id = coalesce(EXCLUDED.customer_id, complaints.customer_id),
               updated_at = EXCLUDED.updated_at
           WHERE complaints.updated_at <= EXCLUDED.updated_at""",
        *map(list, zip(*rows, strict=True)),
    )


async def loyalty_stats(conn: asyncpg.Connection, customer_ids: Iterable[str], since: datetime
                        ) -> dict[str, tuple[int, float | None, int]]:
    """(visits since, average satisfaction since, open complaints) per customer."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT id,
                  (SELECT count(*) FROM visits v WHERE v.customer_id = id AND v.picked_up_at >= $2) AS visits,
                  (SELECT avg(a.satisfaction)::float FROM call_attempts a
                    WHERE a.customer_id = id AND a.satisfaction IS NOT NULL AND a.attempted_at >= $2) AS satisfaction,
                  (SELECT count(*) FROM complaints k WHERE k.customer_id = id AND k.state <> 'closed') AS complaints
             FROM unnest($1::text[]) AS id""", ids, since)
    return {r["id"]: (int(r["visits"]), r["satisfaction"], int(r["complaints"])) for r in rows}


async def upsert_campaign(conn: asyncpg.Connection, c: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO campaigns (campaign_id, kind, title, starts_at, ends_at, regions, models, loyal_first, announced_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (campaign_id) DO UPDATE SET kind = EXCLUDED.kind, title = EXCLUDED.title,
               starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, regions = EXCLUDED.regions,
               models = EXCLUDED.models, loyal_first = EXCLUDED.loyal_first, announced_at = EXCLUDED.announced_at""",
        c["campaign_id"], c["kind"], c["title"], c["starts_at"], c["ends_at"], c["regions"], c["models"],
        c["loyal_first"], c["announced_at"],
    )


async def campaign_targets(conn: asyncpg.Connection, regions: list[str], models: list[str] | None) -> list[dict[str, Any]]:
    """Customers in the campaign's regions (owning one of its models, when it names models)."""
    rows = await conn.fetch(
        """SELECT c.customer_id, c.region, c.timezone,
                  (SELECT v.vin FROM vehicles v WHERE v.customer_id = c.customer_id
                     AND ($2::text[] IS NULL OR v.model = ANY($2::text[])) ORDER BY v.sold_at DESC NULLS LAST LIMIT 1) AS vin,
                  (SELECT v.dealer_id FROM vehicles v WHERE v.customer_id = c.customer_id
                     ORDER BY v.sold_at DESC NULLS LAST LIMIT 1) AS dealer_id
             FROM customers c
            WHERE c.region = ANY($1::text[])
              AND ($2::text[] IS NULL OR EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id
                                                    AND v.model = ANY($2::text[])))
            ORDER BY c.customer_id""", regions, models)
    return [dict(r) for r in rows]


async def owners_of(conn: asyncpg.Connection, vins: list[str]) -> list[dict[str, Any]]:
    """The customers owning these vehicles (a recall's targets), one row per customer (their
    first VIN of the list), with the region and zone of their file."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (v.customer_id) v.customer_id, v.vin, v.dealer_id, c.region, c.timezone
             FROM vehicles v JOIN customers c ON c.customer_id = v.customer_id
            WHERE v.vin = ANY($1::text[])
            ORDER BY v.customer_id, v.vin""", vins)
    return [dict(r) for r in rows]


# -- follow-ups ------------------------------------------------------------------------------------

FOLLOWUPS = Table("followups", {
    "followup_id": "text", "kind": "text", "customer_id": "text", "vin": "text", "dealer_id": "text",
    "region": "text", "campaign_id": "text", "complaint_id": "text", "reason_event_id": "text",
    "correlation_id": "uuid", "scheduled_event_id": "uuid", "due_from": "timestamptz", "due_by": "timestamptz",
    "priority": "int", "timezone": "text", "under_warranty": "boolean", "mileage_km": "int",
    "event_at": "timestamptz", "created_at": "timestamptz", "status": "text", "overdue_at": "timestamptz",
    "escalated_at": "timestamptz", "next_step": "text", "next_step_at": "timestamptz", "reason_type": "text",
})
# What scheduling writes from a NewFollowUp (the rest: correlation, announcement, first deadline).
NEW_FOLLOWUP_FIELDS = ("followup_id", "kind", "customer_id", "vin", "dealer_id", "region", "campaign_id",
                       "complaint_id", "reason_event_id", "due_from", "due_by", "priority", "timezone",
                       "under_warranty", "mileage_km", "event_at", "reason_type")
_INSERTED = NEW_FOLLOWUP_FIELDS + ("correlation_id", "scheduled_event_id", "created_at", "next_step", "next_step_at")


async def insert_followups(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert follow-ups in one statement; return the ids that are new (a repeated cause
    schedules nothing)."""
    inserted = await FOLLOWUPS.insert(conn, rows, columns=_INSERTED, on_conflict="(followup_id) DO NOTHING",
                                      returning="followup_id")
    return {row[0] for row in inserted}


@dataclass(slots=True)
class OpenFollowUp:
    """What a deadline or a closure needs of a follow-up."""

    followup_id: str
    kind: str
    customer_id: str
    vin: str | None
    dealer_id: str | None
    region: str | None
    due_from: datetime
    due_by: datetime
    status: str
    overdue_at: datetime | None
    escalated_at: datetime | None
    correlation_id: uuid.UUID
    scheduled_event_id: uuid.UUID | None
    next_step: str | None
    next_step_at: datetime | None


_OPEN_COLUMNS = ("followup_id, kind, customer_id, vin, dealer_id, region, due_from, due_by, status, overdue_at, "
                 "escalated_at, correlation_id, scheduled_event_id, next_step, next_step_at")


async def due_steps(conn: asyncpg.Connection, now: datetime, limit: int) -> list[OpenFollowUp]:
    rows = await conn.fetch(
        f"""SELECT {_OPEN_COLUMNS} FROM followups
             WHERE next_step IS NOT NULL AND next_step_at <= $1
             ORDER BY next_step_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)
    return [OpenFollowUp(**dict(r)) for r in rows]


async def close_followups(conn: asyncpg.Connection, ids: list[str], status: str | None) -> None:
    """No more deadlines (and, with a status, that status: expired)."""
    await conn.execute(
        """UPDATE followups SET next_step = NULL, next_step_at = NULL, status = coalesce($2, status)
            WHERE followup_id = ANY($1::text[])""", ids, status)


async def reschedule_open(conn: asyncpg.Connection, followup_id: str, due_from: datetime, due_by: datetime,
                          step: str | None, at: datetime | None) -> bool:
    """An open follow-up whose window moved (an amended campaign) starts its deadlines again."""
    status = await conn.execute(
        """UPDATE followups SET due_from = $2, due_by = $3, overdue_at = NULL, escalated_at = NULL,
                  next_step = $4, next_step_at = $5
            WHERE followup_id = $1 AND status IN ('scheduled', 'due') AND (due_from, due_by) <> ($2, $3)""",
        followup_id, due_from, due_by, step, at)
    return status.endswith(" 1")


async def open_confirmations(conn: asyncpg.Connection, complaint_id: str) -> list[OpenFollowUp]:
    rows = await conn.fetch(
        f"""SELECT {_OPEN_COLUMNS} FROM followups WHERE complaint_id = $1 AND kind = 'complaint_confirmation'
              AND status IN ('scheduled', 'due') FOR UPDATE""", complaint_id)
    return [OpenFollowUp(**dict(r)) for r in rows]


@dataclass(slots=True)
class DueReminder:
    vin: str
    remind_at: datetime
    reminder: dict[str, Any]
    remind_cause: uuid.UUID | None
    remind_correlation: uuid.UUID | None


async def due_reminders(conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueReminder]:
    rows = await conn.fetch(
        """SELECT vin, remind_at, reminder, remind_cause, remind_correlation FROM vehicles
            WHERE remind_at <= $1 ORDER BY remind_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)
    return [DueReminder(**dict(r)) for r in rows]


async def due_lost_checks(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Customer]:
    rows = await conn.fetch(
        f"""SELECT {_CUSTOMER_COLUMNS} FROM customers
             WHERE lost_check_at <= $1 ORDER BY lost_check_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)
    return [Customer(**dict(r)) for r in rows]


async def clear_deadline(conn: asyncpg.Connection, table: str, key: str, column: str, ids: list[str]) -> None:
    assert table in ("vehicles", "customers", "followups")
    assert key in ("vin", "customer_id", "followup_id")
    assert column in ("remind_at", "lost_check_at", "next_step_at")
    if ids:
        await conn.execute(f"UPDATE {table} SET {column} = NULL WHERE {key} = ANY($1::text[])", ids)


async def due_count(conn: asyncpg.Connection, table: str, column: str, now: datetime) -> int:
    assert table in ("vehicles", "customers", "followups")
    assert column in ("remind_at", "lost_check_at", "next_step_at")
    return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} <= $1", now))


# The condition that a customer is in a person's scope, a str.format template with constants only:
# `customer` (the SQL expression of their id), `regions`, `dealers` (the $n of the scope's two text[]
# parameters; both NULL: everyone). One of their follow-ups is of a region or dealer of the scope
# (shared.http.SCOPE_SQL), or their file's region is, or one of the dealers sold or serviced one of
# their vehicles (intake's rule on the same projections). A scoped agent sees all of an in-scope
# customer's follow-ups: one conversation, as the console's file.
CUSTOMER_IN_SCOPE = ("""(({regions}::text[] IS NULL AND {dealers}::text[] IS NULL)
        OR EXISTS (SELECT 1 FROM followups sf WHERE sf.customer_id = {customer} AND """
                     + SCOPE_SQL.format(region="sf.region", dealer="sf.dealer_id", regions="{regions}",
                                        dealers="{dealers}") + """)
        OR EXISTS (SELECT 1 FROM customers sc WHERE sc.customer_id = {customer} AND sc.region = ANY({regions}::text[]))
        OR EXISTS (SELECT 1 FROM vehicles sv WHERE sv.customer_id = {customer} AND sv.dealer_id = ANY({dealers}::text[]))
        OR EXISTS (SELECT 1 FROM visits sw WHERE sw.customer_id = {customer}
                   AND sw.dealer_id = ANY({dealers}::text[])))""")


async def customers_in_scope(conn: asyncpg.Connection, customer_ids: Iterable[str], regions: list[str] | None,
                             dealers: list[str] | None) -> set[str]:
    """Those of the customers in the scope (CUSTOMER_IN_SCOPE)."""
    rows = await conn.fetch(
        "SELECT x.id FROM unnest($1::text[]) AS x(id) WHERE "
        + CUSTOMER_IN_SCOPE.format(customer="x.id", regions="$2", dealers="$3"),
        list(set(customer_ids)), regions, dealers)
    return {r["id"] for r in rows}


async def customer_known(conn: asyncpg.Connection, customer_id: str) -> bool:
    """Follow-up has heard of the customer (their file, or a follow-up of theirs)."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM customers WHERE customer_id = $1)
               OR EXISTS (SELECT 1 FROM followups WHERE customer_id = $1)""", customer_id))


async def get_followup(conn: asyncpg.Connection, followup_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT * FROM followups WHERE followup_id = $1{' FOR UPDATE' if lock else ''}",
                              followup_id)
    return dict(row) if row else None


async def claim(conn: asyncpg.Connection, followup_id: str, agent: str, now: datetime, until: datetime,
                force: bool) -> dict[str, Any] | None:
    """Take the claim unless another agent holds an unexpired one (or `force`: a supervisor)."""
    row = await conn.fetchrow(
        """UPDATE followups SET claimed_by = $2, claim_expires_at = $4
            WHERE followup_id = $1 AND status IN ('scheduled', 'due')
              AND ($5 OR claimed_by IS NULL OR claimed_by = $2 OR claim_expires_at <= $3)
           RETURNING *""", followup_id, agent, now, until, force)
    return dict(row) if row else None


async def release(conn: asyncpg.Connection, followup_id: str) -> None:
    await conn.execute("UPDATE followups SET claimed_by = NULL, claim_expires_at = NULL WHERE followup_id = $1",
                       followup_id)


async def record_attempt(conn: asyncpg.Connection, a: dict[str, Any]) -> None:
    columns = ("attempt_id", "followup_id", "customer_id", "kind", "attempt_no", "agent_id", "attempted_at", "outcome",
               "call_back_at", "satisfaction", "satisfied", "talking_points", "requests", "notes", "categories",
               "complaint", "product_issue", "complaint_ref", "region", "dealer_id", "lost_reason", "lost_reason_note",
               "call_id")
    await conn.execute(
        f"INSERT INTO call_attempts ({', '.join(columns)}) VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        *[a.get(c) for c in columns],
    )


async def update_after_attempt(conn: asyncpg.Connection, followup_id: str, *, attempts: int, unreachable: int,
                               next_attempt_at: datetime | None, completed: dict[str, Any] | None) -> None:
    if completed is None:
        await conn.execute(
            """UPDATE followups SET attempts = $2, unreachable = $3, next_attempt_at = $4, claimed_by = NULL,
                      claim_expires_at = NULL WHERE followup_id = $1""",
            followup_id, attempts, unreachable, next_attempt_at)
        return
    await conn.execute(
        """UPDATE followups SET attempts = $2, unreachable = $3, next_attempt_at = NULL, claimed_by = NULL,
                  claim_expires_at = NULL, status = 'completed', outcome = $4, satisfaction = $5, satisfied = $6,
                  completed_at = $7, completed_by = $8, next_step = NULL, next_step_at = NULL, lost_reason = $9
            WHERE followup_id = $1""",
        followup_id, attempts, unreachable, completed["outcome"], completed.get("satisfaction"),
        completed.get("satisfied"), completed["at"], completed.get("agent_id"), completed.get("lost_reason"))


async def request_letter(conn: asyncpg.Connection, letter: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO letters_requested (letter_id, followup_id, customer_id, kind, reason, agent_id, requested_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        letter["letter_id"], letter["followup_id"], letter["customer_id"], letter["kind"], letter["reason"],
        letter.get("agent_id"), letter["requested_at"])


async def attempts_of(conn: asyncpg.Connection, followup_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM call_attempts WHERE followup_id = $1 ORDER BY attempt_no", followup_id)
    return [dict(r) for r in rows]


async def queue_candidates(conn: asyncpg.Connection, now: datetime, start: Any, end: Any, *, kind: str | None,
                           region: str | None, dealer: str | None, agent: str, limit: int,
                           regions: list[str] | None = None, dealers: list[str] | None = None) -> list[dict[str, Any]]:
    """Open follow-ups callable now: due, inside calling hours in the customer's zone, not
    waiting for a retry, not held by another agent. Owners (owners.py): the calling agent's calls
    first (assigned to them, or their customer's and assigned to nobody else); a call a
    supervisor assigned to another agent is offered only once it is overdue."""
    rows = await conn.fetch(
        """SELECT f.*, o.owner FROM followups f LEFT JOIN customer_owners o ON o.customer_id = f.customer_id
            WHERE f.status IN ('scheduled', 'due') AND f.due_from <= $1
              AND (f.next_attempt_at IS NULL OR f.next_attempt_at <= $1)
              AND (f.claimed_by IS NULL OR f.claimed_by = $7 OR f.claim_expires_at <= $1)
              AND (f.assigned_to IS NULL OR f.assigned_to = $7 OR f.due_by < $1)
              AND ($1 AT TIME ZONE f.timezone)::time >= $2 AND ($1 AT TIME ZONE f.timezone)::time < $3
              AND ($4::text IS NULL OR f.kind = $4) AND ($5::text IS NULL OR f.region = $5)
              AND ($6::text IS NULL OR f.dealer_id = $6) AND """
        + CUSTOMER_IN_SCOPE.format(customer="f.customer_id", regions="$9", dealers="$10") + """
            ORDER BY coalesce(f.assigned_to, o.owner) IS NOT DISTINCT FROM $7 DESC, (f.due_by < $1) DESC, f.due_by
            LIMIT $8""", now, start, end, kind, region, dealer, agent, limit, regions, dealers)
    return [dict(r) for r in rows]


async def followups_of(conn: asyncpg.Connection, *, customer: str | None, status: str | None, kind: str | None,
                       sort: Sort, cursor: dict[str, Any] | None, limit: int, regions: list[str] | None = None,
                       dealers: list[str] | None = None) -> list[dict[str, Any]]:
    """Follow-ups by customer, status and kind in `sort` order after `cursor` (shared.api.keyset)."""
    page = keyset(sort, "f.followup_id", cursor, 7)
    rows = await conn.fetch(
        """SELECT * FROM followups f
            WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR kind = $3) AND """ + CUSTOMER_IN_SCOPE.format(
                  customer="f.customer_id", regions="$5", dealers="$6") + f"""
              AND {page.where} ORDER BY {page.order_by} LIMIT $4""",
        customer, status, kind, limit, regions, dealers, *page.params)
    return [dict(r) for r in rows]


# The phone register: the agents' calls to customers (attempts) and the customers' calls to the
# department (inbound), one row shape; `direction` says which.
_REGISTER = """
    SELECT 'outbound' AS direction, attempt_id AS call_id, attempt_id, followup_id, customer_id, kind, attempt_no,
           agent_id, attempted_at, outcome, call_back_at, satisfaction, satisfied, talking_points, requests, notes,
           categories, complaint, product_issue, complaint_ref, region, dealer_id, NULL::text AS summary,
           NULL::text AS vin, NULL::text AS complaint_id
      FROM call_attempts
    UNION ALL
    SELECT 'inbound', call_id, NULL, followup_id, customer_id, kind, NULL, handled_by, received_at, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, '{}'::text[], NULL, NULL, NULL, region, NULL, summary, vin, complaint_id
      FROM inbound_calls"""


async def call_register(conn: asyncpg.Connection, *, customer: str | None, agent: str | None, since: datetime | None,
                        until: datetime | None, sort: Sort, cursor: dict[str, Any] | None, limit: int,
                        direction: str | None = None, regions: list[str] | None = None,
                        dealers: list[str] | None = None) -> list[dict[str, Any]]:
    """The phone register's rows in `sort` order after `cursor` (shared.api.keyset)."""
    page = keyset(sort, "r.call_id", cursor, 9)
    rows = await conn.fetch(
        f"""SELECT * FROM ({_REGISTER}) r
             WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR agent_id = $2)
               AND ($3::timestamptz IS NULL OR attempted_at >= $3) AND ($4::timestamptz IS NULL OR attempted_at < $4)
               AND ($5::text IS NULL OR direction = $5) AND """
        + CUSTOMER_IN_SCOPE.format(customer="r.customer_id", regions="$6", dealers="$7")
        + f" AND {page.where} ORDER BY {page.order_by} LIMIT $8",
        customer, agent, since, until, direction, regions, dealers, limit, *page.params)
    return [dict(r) for r in rows]


INBOUND_COLUMNS = ("call_id", "customer_id", "kind", "summary", "handled_by", "received_at", "vin", "complaint_id",
                   "followup_id", "region", "recorded_at")


async def record_inbound_call(conn: asyncpg.Connection, call: dict[str, Any]) -> bool:
    """Insert an inbound call; False when this call id is on the register already."""
    status = await conn.execute(
        f"""INSERT INTO inbound_calls ({', '.join(INBOUND_COLUMNS)})
            VALUES ({', '.join(f'${i}' for i in range(1, len(INBOUND_COLUMNS) + 1))}) ON CONFLICT DO NOTHING""",
        *[call.get(c) for c in INBOUND_COLUMNS])
    return status.endswith(" 1")


async def complaint_dealer(conn: asyncpg.Connection, customer_id: str, vin: str | None, at: datetime) -> str | None:
    """The dealer a complaint taken on the phone counts against (as intake names it): the vehicle's
    dealer when a vehicle is named, else the dealer of the customer's latest visit before `at`."""
    found = await conn.fetchval(
        """SELECT coalesce(
               (SELECT dealer_id FROM vehicles WHERE vin = $2),
               (SELECT dealer_id FROM visits WHERE vin = $2 AND picked_up_at <= $3
                 ORDER BY picked_up_at DESC LIMIT 1),
               (SELECT dealer_id FROM visits WHERE customer_id = $1 AND picked_up_at <= $3
                 ORDER BY picked_up_at DESC LIMIT 1))""", customer_id, vin, at)
    return str(found) if found is not None else None


async def inbound_call(conn: asyncpg.Connection, call_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM inbound_calls WHERE call_id = $1", call_id)
    return dict(row) if row else None


async def contact_flags_of(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The customers' flagged contact values (only those that have some)."""
    rows = await conn.fetch(
        """SELECT customer_id, contact_flags FROM customers
            WHERE customer_id = ANY($1::text[]) AND contact_flags IS NOT NULL AND contact_flags <> '{}'::jsonb""",
        list(set(customer_ids)))
    return {r["customer_id"]: r["contact_flags"] for r in rows}


async def letter_register(conn: asyncpg.Connection, *, customer: str | None, agent: str | None,
                          since: datetime | None, until: datetime | None, sort: Sort, cursor: dict[str, Any] | None,
                          limit: int, regions: list[str] | None = None, dealers: list[str] | None = None
                          ) -> list[dict[str, Any]]:
    """The letter register's rows in `sort` order after `cursor` (shared.api.keyset)."""
    page = keyset(sort, "l.letter_id", cursor, 8)
    rows = await conn.fetch(
        """SELECT * FROM letters_requested l
            WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR agent_id = $2)
              AND ($3::timestamptz IS NULL OR requested_at >= $3) AND ($4::timestamptz IS NULL OR requested_at < $4)
              AND """ + CUSTOMER_IN_SCOPE.format(customer="l.customer_id", regions="$5", dealers="$6")
        + f" AND {page.where} ORDER BY {page.order_by} LIMIT $7",
        customer, agent, since, until, regions, dealers, limit, *page.params)
    return [dict(r) for r in rows]


# -- KPIs ------------------------------------------------------------------------------------------


async def kpis(conn: asyncpg.Connection, since: datetime, until: datetime, region: str | None, dealer: str | None,
               satisfied_score: int) -> dict[str, Any]:
    """The department's figures for pickups and calls in [since, until).

    The warranty return-visit rate counts the deliveries (a new car is under warranty) and the
    pickups during warranty whose first visit has had its chance: done (whatever the outcome),
    expired, or past its due_by; one whose call is not yet due is not a miss. Consultations and
    inbound calls are not in it (no vehicle came or went)."""
    scope = "($3::text IS NULL OR f.region = $3) AND ($4::text IS NULL OR f.dealer_id = $4)"
    warranty = await conn.fetchrow(
        f"""SELECT count(*) AS pickups, count(*) FILTER (WHERE f.outcome = 'reached') AS visited
              FROM followups f LEFT JOIN vehicles v ON v.vin = f.vin
             WHERE f.kind = 'first_visit' AND f.event_at >= $1 AND f.event_at < $2 AND {scope}
               AND (f.status IN ('completed', 'expired') OR f.due_by < $2)
               AND coalesce(f.under_warranty,
                            v.sold_at IS NOT NULL AND f.event_at < v.sold_at + make_interval(months => v.warranty_months)
                            AND coalesce(f.mileage_km, 0) < v.warranty_km)""",
        since, until, region, dealer)
    satisfaction = await conn.fetchrow(
        f"""SELECT count(*) FILTER (WHERE f.satisfaction IS NOT NULL) AS scored,
                   count(*) FILTER (WHERE f.satisfaction >= $5) AS satisfied
              FROM followups f
             WHERE f.status = 'completed' AND f.completed_at >= $1 AND f.completed_at < $2 AND {scope}""",
        since, until, region, dealer, satisfied_score)
    open_rows = await conn.fetch(
        """SELECT f.kind, count(*) AS open, count(*) FILTER (WHERE f.due_by < $1) AS overdue
             FROM followups f
            WHERE f.status IN ('scheduled', 'due') AND ($2::text IS NULL OR f.region = $2)
              AND ($3::text IS NULL OR f.dealer_id = $3)
            GROUP BY f.kind""", until, region, dealer)
    calls = await conn.fetch(
        """SELECT a.agent_id, count(*) AS calls, count(*) FILTER (WHERE a.outcome = 'reached') AS reached
              FROM call_attempts a
             WHERE a.attempted_at >= $1 AND a.attempted_at < $2
               AND ($3::text IS NULL OR a.region = $3) AND ($4::text IS NULL OR a.dealer_id = $4)
             GROUP BY a.agent_id ORDER BY a.agent_id""", since, until, region, dealer)
    # first calls by what they follow (pickups, deliveries, consultations, inbound calls) and the
    # inbound calls taken, in the window
    reasons = await conn.fetch(
        f"""SELECT coalesce(f.reason_type, 'VehiclePickedUp') AS reason, count(*) AS n,
                   count(*) FILTER (WHERE f.outcome = 'reached') AS reached
              FROM followups f
             WHERE f.kind = 'first_visit' AND f.event_at >= $1 AND f.event_at < $2 AND {scope}
             GROUP BY 1 ORDER BY 1""", since, until, region, dealer)
    inbound = await conn.fetch(
        """SELECT kind, count(*) AS n FROM inbound_calls
            WHERE received_at >= $1 AND received_at < $2 AND ($3::text IS NULL OR region = $3)
            GROUP BY kind ORDER BY kind""", since, until, region)
    return {
        "first_visits_by_reason": {r["reason"]: {"scheduled": int(r["n"]), "reached": int(r["reached"])}
                                   for r in reasons},
        "inbound_calls": {r["kind"]: int(r["n"]) for r in inbound},
        "warranty_pickups": int(warranty["pickups"]), "warranty_visited": int(warranty["visited"]),
        "scored_calls": int(satisfaction["scored"]), "satisfied_calls": int(satisfaction["satisfied"]),
        "open": {r["kind"]: int(r["open"]) for r in open_rows},
        "overdue": {r["kind"]: int(r["overdue"]) for r in open_rows},
        "calls_per_agent": {r["agent_id"]: {"calls": int(r["calls"]), "reached": int(r["reached"])} for r in calls},
    }


async def weekly_figures(conn: asyncpg.Connection, since: datetime, until: datetime, satisfied_score: int) -> dict[str, Any]:
    """Visits done and missed, satisfaction and feedback by category, per region, dealer, agent."""
    by = {}
    for dimension in ("region", "dealer_id"):
        rows = await conn.fetch(
            f"""SELECT coalesce({dimension}, 'unknown') AS k,
                       count(*) FILTER (WHERE status = 'completed' AND outcome = 'reached'
                                          AND completed_at >= $1 AND completed_at < $2) AS done,
                       count(*) FILTER (WHERE due_by >= $1 AND due_by < $2
                                          AND (completed_at IS NULL OR completed_at > due_by OR outcome <> 'reached')) AS missed,
                       count(*) FILTER (WHERE satisfaction IS NOT NULL AND completed_at >= $1 AND completed_at < $2) AS scored,
                       count(*) FILTER (WHERE satisfaction >= $3 AND completed_at >= $1 AND completed_at < $2) AS satisfied
                  FROM followups GROUP BY 1 ORDER BY 1""", since, until, satisfied_score)
        by[dimension] = {r["k"]: {"done": int(r["done"]), "missed": int(r["missed"]), "scored": int(r["scored"]),
                                  "satisfied": int(r["satisfied"])} for r in rows
                         if r["done"] or r["missed"] or r["scored"]}
    agents = await conn.fetch(
        """SELECT agent_id, count(*) AS calls, count(*) FILTER (WHERE outcome = 'reached') AS reached,
                  avg(satisfaction)::float AS satisfaction
             FROM call_attempts WHERE attempted_at >= $1 AND attempted_at < $2 GROUP BY agent_id ORDER BY agent_id""",
        since, until)
    categories = await conn.fetch(
        """SELECT c AS category, count(*) AS n FROM call_attempts, unnest(categories) AS c
            WHERE attempted_at >= $1 AND attempted_at < $2 GROUP BY c ORDER BY n DESC, c""", since, until)
    complaints = await conn.fetch(
        """SELECT coalesce(complaint->>'category', 'unclassified') AS category, count(*) AS n FROM call_attempts
            WHERE complaint IS NOT NULL AND attempted_at >= $1 AND attempted_at < $2 GROUP BY 1 ORDER BY n DESC, 1""",
        since, until)
    reasons = await conn.fetch(
        """SELECT coalesce(reason_type, 'VehiclePickedUp') AS reason, count(*) AS n FROM followups
            WHERE kind = 'first_visit' AND event_at >= $1 AND event_at < $2 GROUP BY 1 ORDER BY 1""", since, until)
    inbound = await conn.fetch(
        """SELECT kind, count(*) AS n FROM inbound_calls WHERE received_at >= $1 AND received_at < $2
            GROUP BY kind ORDER BY kind""", since, until)
    return {
        "first_calls_by_reason": {r["reason"]: int(r["n"]) for r in reasons},
        "inbound_calls": {r["kind"]: int(r["n"]) for r in inbound},
        "by_region": by["region"], "by_dealer": by["dealer_id"],
        "by_agent": {r["agent_id"]: {"calls": int(r["calls"]), "reached": int(r["reached"]),
                                     "average_satisfaction": r["satisfaction"]} for r in agents},
        "feedback_categories": {r["category"]: int(r["n"]) for r in categories},
        "complaints_raised_on_calls": {r["category"]: int(r["n"]) for r in complaints},
    }


async def lost_reasons(conn: asyncpg.Connection, since: datetime, until: datetime, *, region: str | None = None,
                       dealer: str | None = None) -> dict[str, int]:
    """Lost-customer calls completed in [since, until) by the reason the customer gave ("not_given":
    reached, no reason recorded)."""
    rows = await conn.fetch(
        """SELECT coalesce(lost_reason, 'not_given') AS reason, count(*) AS n FROM followups
            WHERE kind = 'lost_customer' AND status = 'completed' AND outcome = 'reached'
              AND completed_at >= $1 AND completed_at < $2
              AND ($3::text IS NULL OR region = $3) AND ($4::text IS NULL OR dealer_id = $4)
            GROUP BY 1 ORDER BY n DESC, 1""", since, until, region, dealer)
    return {r["reason"]: int(r["n"]) for r in rows}


async def at_risk_candidates(conn: asyncpg.Connection, now: datetime, lost_since: datetime, *, region: str | None,
                             dealer: str | None) -> list[dict[str, Any]]:
    """Customers not lost yet (last contact after `lost_since`) with their visits and their vehicles'
    service facts, for the at-risk rules; one row per customer."""
    rows = await conn.fetch(
        """SELECT c.customer_id, c.region, c.last_contact_at,
                  (SELECT array_agg(v.picked_up_at ORDER BY v.picked_up_at) FROM visits v
                    WHERE v.customer_id = c.customer_id AND v.picked_up_at <= $1) AS visits,
                  (SELECT jsonb_agg(jsonb_build_object(
                          'vin', h.vin, 'dealer_id', h.dealer_id, 'last_visit_at', h.last_visit_at,
                          'last_mileage_km', h.last_mileage_km, 'first_reading_at', h.first_reading_at,
                          'first_reading_km', h.first_reading_km, 'next_service_due_at', h.next_service_due_at,
                          'next_service_due_km', h.next_service_due_km))
                     FROM vehicles h WHERE h.customer_id = c.customer_id AND h.last_visit_at IS NOT NULL) AS vehicles
             FROM customers c
            WHERE c.last_contact_at > $2 AND c.last_contact_at <= $1
              AND ($3::text IS NULL OR c.region = $3)
              AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM vehicles d WHERE d.customer_id = c.customer_id
                                                 AND d.dealer_id = $4))""", now, lost_since, region, dealer)
    return [dict(r) for r in rows]


async def save_weekly_report(conn: asyncpg.Connection, week: str, at: datetime, figures: dict[str, Any]) -> bool:
    status = await conn.execute(
        "INSERT INTO weekly_reports (week, generated_at, figures) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        week, at, figures)
    return status.endswith(" 1")


async def weekly_report(conn: asyncpg.Connection, week: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM weekly_reports WHERE week = $1", week)
    return dict(row) if row else None


# -- one conversation per customer (services/followup/conversation.py) ----------------------------


async def lock_customer(conn: asyncpg.Connection, customer_id: str) -> None:
    """Serialise the claims and call records of one customer (until the transaction ends): two
    agents taking two follow-ups of one customer at the same moment cannot both get one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"followup-customer:{customer_id}")


async def open_followups_of(conn: asyncpg.Connection, customer_ids: Iterable[str], *,
                            lock: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The customers' open follow-ups (scheduled or due), by customer; `lock`: FOR UPDATE, in
    follow-up id order (two agents claiming one customer wait for each other, never deadlock)."""
    rows = await conn.fetch(
        f"""SELECT * FROM followups WHERE customer_id = ANY($1::text[]) AND status IN ('scheduled', 'due')
             ORDER BY followup_id{' FOR UPDATE' if lock else ''}""", list(set(customer_ids)))
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(r["customer_id"], []).append(dict(r))
    return found


async def claim_all(conn: asyncpg.Connection, followup_ids: list[str], agent: str, until: datetime,
                    call_id: str) -> list[dict[str, Any]]:
    """One claim on all these follow-ups (already locked and checked by the caller)."""
    rows = await conn.fetch(
        """UPDATE followups SET claimed_by = $2, claim_expires_at = $3, call_id = $4
            WHERE followup_id = ANY($1::text[]) AND status IN ('scheduled', 'due') RETURNING *""",
        followup_ids, agent, until, call_id)
    return [dict(r) for r in rows]


async def release_all(conn: asyncpg.Connection, followup_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE followups SET claimed_by = NULL, claim_expires_at = NULL, call_id = NULL "
        "WHERE followup_id = ANY($1::text[])", followup_ids)


async def record_conversation_call(conn: asyncpg.Connection, call: dict[str, Any]) -> bool:
    """The call, once; False when this call id is recorded already."""
    status = await conn.execute(
        """INSERT INTO conversation_calls (call_id, customer_id, agent_id, called_at, followup_ids, outcomes)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        call["call_id"], call["customer_id"], call["agent_id"], call["called_at"], call["followup_ids"],
        call["outcomes"])
    return status.endswith(" 1")


async def conversation_call(conn: asyncpg.Connection, call_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM conversation_calls WHERE call_id = $1", call_id)
    return dict(row) if row else None


async def customer_calls(conn: asyncpg.Connection, customer_id: str, sort: Sort, cursor: dict[str, Any] | None,
                         limit: int) -> list[dict[str, Any]]:
    """The customer's calls on every follow-up in `sort` order after `cursor` (shared.api.keyset)."""
    page = keyset(sort, "a.attempt_id", cursor, 3)
    rows = await conn.fetch(
        f"""SELECT {_CALL_COLUMNS} FROM call_attempts a LEFT JOIN followups f ON f.followup_id = a.followup_id
             WHERE a.customer_id = $1 AND {page.where} ORDER BY {page.order_by} LIMIT $2""",
        customer_id, limit, *page.params)
    return [dict(r) for r in rows]


_CALL_COLUMNS = """a.attempt_id, a.followup_id, a.kind, a.attempt_no, a.agent_id, a.attempted_at, a.outcome,
                  a.call_back_at, a.satisfaction, a.satisfied, a.talking_points, a.requests, a.notes, a.categories,
                  a.complaint_ref, a.lost_reason, a.lost_reason_note, a.call_id, f.campaign_id, f.vin"""


async def customer_history(conn: asyncpg.Connection, customer_id: str, limit: int) -> dict[str, Any]:
    """What the customer was told and asked on earlier calls (every follow-up, newest first), the
    calls' records, and their feedback items not closed yet."""
    attempts = await conn.fetch(
        f"""SELECT {_CALL_COLUMNS}
             FROM call_attempts a LEFT JOIN followups f ON f.followup_id = a.followup_id
            WHERE a.customer_id = $1 ORDER BY a.attempted_at DESC, a.attempt_id LIMIT $2""", customer_id, limit)
    items = await conn.fetch(
        """SELECT item_id, followup_id, state, reasons, satisfaction, requests, category, department, serious,
                  complaint_ref, opened_at, due_at, owner, solution, answered_at
             FROM feedback_items WHERE customer_id = $1 AND state <> 'closed' ORDER BY opened_at DESC""",
        customer_id)
    return {"previous_calls": [dict(r) for r in attempts], "open_feedback_items": [dict(r) for r in items]}
