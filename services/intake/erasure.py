"""Customer erasure (issue 19): the one function the API and `aftersales erase` call, and the
replay guard the handlers apply to facts about an erased customer.

`erase` works in one transaction: it takes the erasure lock (handlers hold it shared for the
length of their batch, so none is half-way through filing the customer meanwhile), locks the
file, finds the phone-only files it took over (`customer_merges`), removes every personal value
intake holds of them (the file's name, phone, e-mail, address, person in charge and flagged
contact values; their history; the customer's receipt comments; set-aside outbox rows and
stored HTTP answers that quote them), marks the file erased, writes the register row and the
access log entry, and puts CustomerErased in the outbox. Ids, VINs, plates, dealers, regions,
dates, visits and counts stay. A customer erased before is answered with the record on file.

The guard: an upstream fact naming an erased customer (by id, or by the phone-only id of a
file it took over) that occurred at or before `erased_at` is filed without its personal
fields, under the erased file, and the canonical event republished for it carries none.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.intake import store
from services.intake.domain import Output, derived_customer_id
from shared import keyring
from shared.clock import Clock
from shared.events import Event
from shared.events import upstream as u
from shared.events.canonical import CustomerErased
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.settings import Settings
from shared.uow import UnitOfWork

# The customer fields that identify a person (kept: region, locale, timezone, consent).
PERSONAL_FIELDS = ("name", "phone", "email", "address", "person_in_charge")
# Handlers hold it shared for a batch, an erasure exclusively (pg_advisory_xact_lock on its hash).
LOCK = "aftersales-intake-erasure"


class UnknownCustomer(LookupError):
    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer file {customer_id!r}; search with GET /v1/customers?phone=…")
        self.customer_id = customer_id


async def erase(conn: asyncpg.Connection, *, settings: Settings, clock: Clock, customer_id: str, reason: str,
                requested_by: str, role: str, via: str) -> tuple[dict[str, Any], bool]:
    """Erase a customer's personal data; (the register's record, True) when erased now, (the
    record on file, False) when erased before. Raises UnknownCustomer. `role` and `via` (the
    route, or the CLI command) go to the access log with `requested_by`."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", LOCK)
        if await conn.fetchval("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE", customer_id) is None:
            raise UnknownCustomer(customer_id)
        existing = await conn.fetchrow("SELECT * FROM erasures WHERE customer_id = $1", customer_id)
        if existing is not None:
            return dict(existing), False
        now = clock.now()
        merged = [r[0] for r in await conn.fetch(
            "SELECT merged_id FROM customer_merges WHERE customer_id = $1 AND merged_id <> $1 ORDER BY merged_id",
            customer_id)]
        ids = [customer_id, *merged]
        values = await _personal_values(conn, ids)
        await _scrub(conn, ids, values, now)
        # the keys of their sealed fields on the topics go: those values can never be read again
        await keyring.destroy_keys(conn, ids, now)
        record: dict[str, Any] = {"erasure_id": f"ERS-{uuid.uuid4().hex[:20].upper()}", "customer_id": customer_id,
                  "requested_by": requested_by, "reason": reason, "requested_at": now, "erased_at": now,
                  "merged_customer_ids": merged}
        await conn.execute(
            """INSERT INTO erasures (erasure_id, customer_id, requested_by, reason, requested_at, erased_at,
                                     merged_customer_ids) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            *record.values())
        await store.record_file_reads(conn, at=now, reader=requested_by, role=role, customer_ids=[customer_id],
                                      route=via, detail={"erasure_id": record["erasure_id"], "merged": merged})
        uow: UnitOfWork[None] = UnitOfWork(conn, service="intake", settings=settings, clock=clock, deps=None)
        uow.publish("CustomerErased", CustomerErased(
            customer_id=customer_id, erasure_id=record["erasure_id"], erased_at=now, requested_by=requested_by,
            merged_customer_ids=merged), cause=None, occurred_at=now,
            event_id=uuid5(AFTERSALES_NAMESPACE, f"erasure:{record['erasure_id']}"))
        await uow.flush()
    return record, True


async def _personal_values(conn: asyncpg.Connection, ids: list[str]) -> list[str]:
    """Every personal value intake holds of these files (to find the copies quoted elsewhere)."""
    rows = await conn.fetch(
        """SELECT v FROM customers c,
                  LATERAL (VALUES (c.name), (c.phone), (c.email), (c.address), (c.person_in_charge)) AS x(v)
            WHERE c.customer_id = ANY($1::text[]) AND v IS NOT NULL
           UNION SELECT f.value ->> 'value' FROM customers c, jsonb_each(c.contact_flags) AS f
            WHERE c.customer_id = ANY($1::text[]) AND jsonb_typeof(c.contact_flags) = 'object'
              AND jsonb_typeof(f.value) = 'object' AND f.value ->> 'value' IS NOT NULL
           UNION SELECT value FROM customer_history WHERE customer_id = ANY($1::text[]) AND field = ANY($2::text[])""",
        ids, list(PERSONAL_FIELDS))
    # too short a value would match unrelated text (a one-letter name)
    return sorted({r[0] for r in rows if r[0] and len(r[0]) >= 2})


async def _scrub(conn: asyncpg.Connection, ids: list[str], values: list[str], now: datetime) -> None:
    personal = list(PERSONAL_FIELDS)
    # the fields' times go too: a fact filed later sets them afresh instead of being "late"
    await conn.execute(
        """UPDATE customers SET name = NULL, phone = NULL, email = NULL, address = NULL, person_in_charge = NULL,
                  contact_flags = NULL, field_times = field_times - $2::text[] - 'contact_flags',
                  first_seen = first_seen - $2::text[],
                  history_kept = ARRAY(SELECT k FROM unnest(history_kept) AS k WHERE k <> ALL($2::text[]) ORDER BY k),
                  erased_at = $3, version = version + 1
            WHERE customer_id = ANY($1::text[])""", ids, personal, now)
    await conn.execute("DELETE FROM customer_history WHERE customer_id = ANY($1::text[]) AND field = ANY($2::text[])",
                       ids, personal)
    # what the customer wrote on a receipt: of their visits, or of their vehicles' visits not on file
    await conn.execute(
        """UPDATE receipts r SET comments = NULL
            WHERE r.comments IS NOT NULL
              AND (r.repair_order_id IN (SELECT repair_order_id FROM visits WHERE customer_id = ANY($1::text[]))
                   OR (r.vin IN (SELECT vin FROM vehicles WHERE customer_id = ANY($1::text[]))
                       AND NOT EXISTS (SELECT 1 FROM visits w WHERE w.repair_order_id = r.repair_order_id)))""", ids)
    if not values:
        return
    # Copies: outbox rows set aside (never to be published) and stored HTTP answers (a webhook's
    # rejection quoting a bad phone) that hold one of the values. Rows still to publish stay:
    # they go out before CustomerErased, which every service then applies.
    quoted = """EXISTS (SELECT 1 FROM unnest($1::text[]) AS v(value)
                        WHERE position(convert_to(v.value, 'UTF8') IN {column}) > 0)"""
    await conn.execute(f"DELETE FROM outbox WHERE failed_at IS NOT NULL AND {quoted.format(column='payload')}",
                       values)
    await conn.execute(f"DELETE FROM http_idempotency WHERE body IS NOT NULL AND {quoted.format(column='body')}",
                       values)


# ---------------------------------------------------------------------------------------
# the replay guard


@dataclass(frozen=True, slots=True)
class Erased:
    customer_id: str  # the erased file (an event naming a file it took over is filed there)
    erased_at: datetime


async def erased_among(conn: asyncpg.Connection, ids: set[str]) -> dict[str, Erased]:
    """id -> the erasure of the file it names (itself, or the file that took it over)."""
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT customer_id, erased_at, merged_customer_ids FROM erasures
            WHERE customer_id = ANY($1::text[]) OR merged_customer_ids && $1::text[]""", list(ids))
    found: dict[str, Erased] = {}
    for row in rows:
        erased = Erased(row["customer_id"], row["erased_at"])
        for name in (row["customer_id"], *row["merged_customer_ids"]):
            if name in ids:
                found[name] = erased
    return found


def named_ids(data: Any) -> set[str]:
    """The customer file an upstream fact names: its customer id; without one, the phone-only id
    of the phone it gives (a fact known only by phone lands on that file, or on the file that took
    it over). A fact naming another customer's id is theirs, whatever phone it gives."""
    info = getattr(data, "customer", None)
    source = info if isinstance(info, u.CustomerInfo) else data
    if isinstance(data, u.ReceiptReturned):
        return set()
    customer_id: str | None = getattr(source, "customer_id", None)
    phone: str | None = getattr(source, "phone", None)
    invalid = getattr(source, "invalid_contacts", None)
    if customer_id:
        return {customer_id}
    if phone:
        return {derived_customer_id(phone)}
    if invalid and "phone" in invalid:
        return {derived_customer_id(invalid["phone"].value)}
    return set()


def erasure_of(data: Any, occurred_at: datetime, erased: Mapping[str, Erased],
               receipt_customer: str | None = None) -> Erased | None:
    """The erasure an event falls under: it names an erased file and occurred at or before then."""
    names = {receipt_customer} if isinstance(data, u.ReceiptReturned) and receipt_customer else named_ids(data)
    hits = [erased[n] for n in sorted(names) if n in erased]
    return next((e for e in hits if occurred_at <= e.erased_at), None)


_NO_PERSON = dict.fromkeys(PERSONAL_FIELDS)


def strip(event: Event[Any], erasure: Erased) -> Event[Any]:
    """The event without its personal fields, naming the erased file."""
    d = event.data
    cid = {"customer_id": erasure.customer_id}
    if isinstance(d, (u.VehicleSold, u.VehiclePickedUp)):
        # the required name and address as the neutral '', and not among the fields it states
        # (defaults are not facts): the file keeps none of them
        info = d.customer
        stated = (set(info.model_fields_set) - set(PERSONAL_FIELDS) - {"invalid_contacts"}) | {"customer_id"}
        data: Any = d.model_copy(update={"customer": u.CustomerInfo.model_construct(
            stated, **{**dict(info), **_NO_PERSON, **cid, "name": "", "address": "", "invalid_contacts": None})})
    elif isinstance(d, u.ConsultationRecorded):
        data = d.model_copy(update={**cid, "phone": None, "name": None, "summary": None})
    elif isinstance(d, u.ComplaintFiled):
        data = d.model_copy(update={**cid, "phone": None, "description": ""})
    elif isinstance(d, u.CustomerUpdatedUpstream):
        data = d.model_copy(update={**_NO_PERSON, **cid})
    elif isinstance(d, u.CustomerContactCorrected):
        data = d.model_copy(update={**{k: None for k in ("phone", "email", "address", "person_in_charge")}, **cid,
                                    "reason": None})
    elif isinstance(d, u.ReceiptReturned):
        data = d.model_copy(update={"comments": None})
    else:
        return event
    return Event(msgspec.structs.replace(event.envelope, data=data), event.topic, event.partition, event.offset)


def stripped_output(output: Output) -> Output:
    """A canonical event republished for a stripped fact, with no personal value (the file's
    current values included): the catalog's required text fields get the neutral ''."""
    data = dict(output.data)
    customer = data.get("customer")
    if isinstance(customer, dict):
        data["customer"] = {**customer, **_NO_PERSON, "name": "", "address": "", "invalid_contacts": None}
    for name in PERSONAL_FIELDS:
        if name in data:
            data[name] = None
    if "contact_flags" in data:
        data["contact_flags"] = None if output.event_type != "CustomerContactCorrected" else {}
    if isinstance(data.get("changes"), dict):
        data["changes"] = {k: v for k, v in data["changes"].items() if k not in (*PERSONAL_FIELDS, "contact_flags")}
    for name in ("summary", "comments", "reason"):
        if data.get(name) is not None:
            data[name] = None
    if output.event_type == "ComplaintFiled":
        data["description"] = ""
    return Output(output.event_type, data, output.at)


# ---------------------------------------------------------------------------------------
# the register


async def register(conn: asyncpg.Connection, *, customer_id: str | None, limit: int, sort: Any,
                   cursor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The register's rows (all, or one customer's) in the sort, after the cursor's row."""
    from shared.api import keyset

    ks = keyset(sort, "e.erasure_id", cursor, 3)
    rows = await conn.fetch(
        f"""SELECT * FROM erasures e WHERE ($1::text IS NULL OR e.customer_id = $1) AND {ks.where}
             ORDER BY {ks.order_by} LIMIT $2""", customer_id, limit, *ks.params)
    return [dict(r) for r in rows]
