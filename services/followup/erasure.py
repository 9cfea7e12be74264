"""Erasure (issue 19, the erasure contract): intake erased a customer's personal data and says so
with CustomerErased; follow-up removes what it holds of the customer and of the phone-only files
the customer's file took over, in the handler's transaction:

- customers: the contact values flagged unusable (`contact_flags`: phones, e-mails);
- call_attempts: what was said on the calls (talking points, requests, notes, the lost-customer
  reason in the customer's words) and the descriptions of the complaint and product issue raised
  on them (their category, severity and part category stay: the weekly figures count them);
- feedback_items: the customer's request and the solution they were told;
- inbound_calls: the summary of what the customer phoned about;
- followups.assign_reason, and a supervisor's reason for changing the customer's tracking owner
  (free text about the customer; the rules' reasons, "region east", stay);
- weekly_reports: the customer's words quoted in the reports' voices (their request, the answer);
- the kernel's tables: outbox rows about the customer not yet published or set aside, and cached
  answers to idempotent POSTs (http_idempotency) about the customer, keep their shape with the
  personal values blanked.

Ids, VINs, dealers, regions, dates, states, outcomes, scores, categories and counts stay, so the
KPIs, the registers' counts and the reports' figures are what they were. Letter requests hold no
address (the notifier addresses the letters) and conversation calls no words: nothing to erase.

The `erased_customers` row makes the handlers' replay guard (`erased_at_of`, `scrubbed`) write no
personal value from an event about the customer that occurred at or before `erased_at`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.followup.config import FollowUpDeps
from services.followup.store import Projections
from shared.events import Event
from shared.events import canonical as c
from shared.privacy import PERSONAL_KEYS
from shared.uow import UnitOfWork

Uow = UnitOfWork[FollowUpDeps]

# The fields of follow-up's events and answers that hold a customer's personal value or words.
PERSONAL = PERSONAL_KEYS | {"lost_reason_note", "assign_reason", "contact_flags"}


async def on_customer_erased(uow: Uow, events: list[Event[c.CustomerErased]]) -> None:
    """CustomerErased: scrub the customer and the files it took over; a repeat changes nothing."""
    await uow.batch(Projections).save()  # this poll's earlier facts are written first, then scrubbed
    for event in events:
        d = event.data
        ids = sorted({d.customer_id, *d.merged_customer_ids})
        await uow.conn.executemany(
            """INSERT INTO erased_customers (customer_id, erasure_id, erased_at) VALUES ($1, $2, $3)
               ON CONFLICT (customer_id) DO NOTHING""", [(i, d.erasure_id, d.erased_at) for i in ids])
        counts = await scrub(uow.conn, ids)
        uow.log.info("customer erased", customer_id=d.customer_id, erasure_id=d.erasure_id,
                     merged_customer_ids=d.merged_customer_ids, **counts)


async def scrub(conn: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    """Blank every personal value of these customers in the schema; rows touched per table."""
    statements = {
        "customers": "UPDATE customers SET contact_flags = NULL "
                     "WHERE customer_id = ANY($1::text[]) AND contact_flags IS NOT NULL",
        "call_attempts": """UPDATE call_attempts SET talking_points = NULL, requests = NULL, notes = NULL,
                                   lost_reason_note = NULL, complaint = complaint - 'description',
                                   product_issue = product_issue - 'description'
                             WHERE customer_id = ANY($1::text[])""",
        "feedback_items": "UPDATE feedback_items SET requests = NULL, solution = NULL WHERE customer_id = ANY($1::text[])",
        "inbound_calls": "UPDATE inbound_calls SET summary = NULL WHERE customer_id = ANY($1::text[])",
        "followups": "UPDATE followups SET assign_reason = NULL "
                     "WHERE customer_id = ANY($1::text[]) AND assign_reason IS NOT NULL",
        # NOT NULL columns: the fixed neutral marker ''
        "customer_owners": "UPDATE customer_owners SET reason = '' "
                           "WHERE customer_id = ANY($1::text[]) AND source = 'supervisor'",
        "customer_owner_changes": "UPDATE customer_owner_changes SET reason = '' "
                                  "WHERE customer_id = ANY($1::text[]) AND source = 'supervisor'",
    }
    counts = {}
    for table, sql in statements.items():
        status = await conn.execute(sql, ids)
        counts[table] = int(status.rsplit(" ", 1)[-1])
    counts["weekly_reports"] = await _scrub_reports(conn, set(ids))
    counts["outbox"] = await _scrub_documents(conn, set(ids), "outbox", ("id",), "payload")
    counts["http_idempotency"] = await _scrub_documents(conn, set(ids), "http_idempotency", ("key", "credential"),
                                                        "body")
    return counts


async def _scrub_reports(conn: asyncpg.Connection, ids: set[str]) -> int:
    """The weekly reports' quoted words of these customers (their voices' requests and answers)."""
    changed = 0
    for row in await conn.fetch(
            "SELECT week, figures FROM weekly_reports WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS i "
            "WHERE position(i IN figures::text) > 0) FOR UPDATE", list(ids)):
        figures = row["figures"]
        figures = orjson.loads(figures) if isinstance(figures, str) else figures
        cleaned, touched = blank_about(figures, ids, None)
        if touched:
            await conn.execute("UPDATE weekly_reports SET figures = $2 WHERE week = $1", row["week"], cleaned)
            changed += 1
    return changed


async def _scrub_documents(conn: asyncpg.Connection, ids: set[str], table: str, key: tuple[str, ...],
                           column: str) -> int:
    """JSON documents stored as bytes (an outbox row's envelope, a cached answer): those about these
    customers keep their shape with the personal values blanked ('' for text, so an event still
    fits its schema)."""
    assert (table, key, column) in (("outbox", ("id",), "payload"), ("http_idempotency", ("key", "credential"), "body"))
    changed = 0
    rows = await conn.fetch(
        f"""SELECT {', '.join(key)}, {column} AS doc FROM {table}
             WHERE {column} IS NOT NULL AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS i
                                                    WHERE position(convert_to(i, 'UTF8') IN {column}) > 0)
             FOR UPDATE""", list(ids))  # noqa: S608 - fixed names (asserted above)
    for row in rows:
        try:
            document = orjson.loads(row["doc"])
        except orjson.JSONDecodeError:
            continue  # not JSON: nothing this module wrote
        cleaned, touched = blank_about(document, ids, "")
        if touched:
            where = " AND ".join(f"{k} = ${n}" for n, k in enumerate(key, start=2))
            await conn.execute(f"UPDATE {table} SET {column} = $1 WHERE {where}",  # noqa: S608 - fixed names
                               orjson.dumps(cleaned), *(row[k] for k in key))
            changed += 1
    return changed


def blank_about(document: Any, ids: set[str], blank: str | None) -> tuple[Any, bool]:
    """The document with the personal fields blanked in every object about one of `ids` (its
    `customer_id`, or an enclosing object's, is one of them): text becomes `blank`, lists empty,
    objects blanked through; numbers and flags stay. Returns (document, whether anything changed)."""
    touched = False

    def walk(value: Any, about: bool) -> Any:
        nonlocal touched
        if isinstance(value, dict):
            here = about or value.get("customer_id") in ids
            out = {}
            for k, v in value.items():
                if here and isinstance(k, str) and k.lower() in PERSONAL and _has_text(v):
                    out[k] = _blanked(v, blank)
                    touched = True
                else:
                    out[k] = walk(v, here)
            return out
        if isinstance(value, list):
            return [walk(v, about) for v in value]
        return value

    return walk(document, False), touched


def _has_text(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    if isinstance(value, dict):
        return any(_has_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_text(v) for v in value)
    return False


def _blanked(value: Any, blank: str | None) -> Any:
    if isinstance(value, str):
        return blank
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {k: _blanked(v, blank) for k, v in value.items()}
    return value


# -- the replay guard ---------------------------------------------------------------------------------
async def erased_at_of(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, datetime]:
    """When each of these customers was erased (those that were)."""
    rows = await conn.fetch("SELECT customer_id, erased_at FROM erased_customers WHERE customer_id = ANY($1::text[])",
                            list(set(customer_ids)))
    return {r["customer_id"]: r["erased_at"] for r in rows}


def scrubbed(erased: dict[str, datetime], customer_id: str, occurred_at: datetime) -> bool:
    """An event about an erased customer that occurred at or before the erasure (a replay, a late
    delivery): it brings no personal value back. A later one is the customer's new data."""
    at = erased.get(customer_id)
    return at is not None and occurred_at <= at
