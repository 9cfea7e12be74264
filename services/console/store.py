"""The console's SQL. Nothing else touches the `console` schema.

Three kinds of table: staff (accounts, sessions, the audit log), inbound calls logged at the
desk, and the read model of the customers' story, written only by the consumer's handlers
from the aftersales.* topics. A later fact never loses to an earlier one that arrives late
(rows keep the world time of what they hold)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.console.search import Query

# -- read model: customers -------------------------------------------------------------------------

CUSTOMER_COLUMNS = ("customer_id", "name", "name_pinyin", "name_initials", "phone", "email", "address", "region",
                    "person_in_charge", "locale", "timezone", "consent", "registered_at", "updated_at",
                    "contact_flags")


async def upsert_customers(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """A file's current fields, newest (by world time) wins; a field an event leaves out is kept;
    the earliest registration time is kept whatever order the events came in."""
    if not rows:
        return
    newer = "customers.updated_at <= EXCLUDED.updated_at"
    fields = [c for c in CUSTOMER_COLUMNS if c not in ("customer_id", "registered_at", "updated_at")]
    await conn.executemany(
        f"""INSERT INTO customers ({", ".join(CUSTOMER_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(CUSTOMER_COLUMNS) + 1))})
            ON CONFLICT (customer_id) DO UPDATE SET
                {", ".join(f"{c} = CASE WHEN {newer} THEN coalesce(EXCLUDED.{c}, customers.{c}) "
                           f"ELSE coalesce(customers.{c}, EXCLUDED.{c}) END" for c in fields)},
                registered_at = least(EXCLUDED.registered_at, customers.registered_at),
                updated_at = greatest(EXCLUDED.updated_at, customers.updated_at)""",
        [tuple(r.get(c) for c in CUSTOMER_COLUMNS) for r in rows],
    )


async def add_phones(conn: asyncpg.Connection, rows: Iterable[tuple[str, str, datetime]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO phones (customer_id, phone, reversed, first_seen_at) VALUES ($1, $2, reverse($2), $3)
           ON CONFLICT (customer_id, phone) DO UPDATE SET first_seen_at = least(phones.first_seen_at, EXCLUDED.first_seen_at)""",
        list(rows),
    )


async def add_changes(conn: asyncpg.Connection, rows: Iterable[tuple[Any, str, str, datetime, str | None, str | None]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO customer_changes (event_id, field, customer_id, at, old_value, new_value)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        list(rows),
    )


_CUSTOMER_TABLES = ("phones", "customer_changes", "vehicles", "visits", "receipts", "followups", "calls", "complaints",
                    "complaint_events", "notifications", "inbound_calls", "audit_log")


async def merge_customers(conn: asyncpg.Connection, merged: dict[str, str]) -> None:
    """Files intake merged into another customer's: their story moves along."""
    for old, new in merged.items():
        await conn.execute(
            """INSERT INTO phones (customer_id, phone, reversed, first_seen_at)
               SELECT $2, phone, reversed, first_seen_at FROM phones WHERE customer_id = $1
               ON CONFLICT (customer_id, phone) DO NOTHING""", old, new)
        await conn.execute("DELETE FROM phones WHERE customer_id = $1", old)
        for table in _CUSTOMER_TABLES[1:]:
            await conn.execute(f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1", old, new)
        await conn.execute("DELETE FROM customers WHERE customer_id = $1", old)


# -- read model: erasure --------------------------------------------------------------------------------

# What a file change may hold of the person (other fields, e.g. region or consent, are kept).
NEUTRAL_CHANGES = ("region", "locale", "timezone", "consent")
# The free-text keys of a case step's detail and of an audit entry's detail (what was written
# about or by the customer); the other keys are codes, ids, people of staff and figures.
ERASED_TEXT_KEYS = ("resolution", "reason", "note", "notes", "summary", "description", "talking_points", "requests",
                    "comments", "title")


async def erased(conn: asyncpg.Connection, customer_ids: Iterable[str | None]) -> dict[str, datetime]:
    """customer_id -> erased_at, for those of `customer_ids` intake erased."""
    ids = sorted({c for c in customer_ids if c})
    if not ids:
        return {}
    rows = await conn.fetch("SELECT customer_id, erased_at FROM erased_customers WHERE customer_id = ANY($1::text[])",
                            ids)
    return {r["customer_id"]: r["erased_at"] for r in rows}


async def complaint_customers(conn: asyncpg.Connection, complaint_ids: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT complaint_id, customer_id FROM complaints WHERE complaint_id = ANY($1::text[]) "
                            "AND customer_id IS NOT NULL", sorted(set(complaint_ids)))
    return {r["complaint_id"]: r["customer_id"] for r in rows}


async def erase_customers(conn: asyncpg.Connection, customer_ids: Sequence[str], erasure_id: str,
                          erased_at: datetime) -> bool:
    """Scrub every personal value of these customers from the read model (names, phones, e-mail,
    address, contact flags, old and new values of their file's changes, what was written about
    them or by them) and register them as erased. Ids, dates, states, outcomes and counts stay,
    so every dashboard and scorecard figure is unchanged. False (nothing done) when every one
    of them is already registered as erased at this time or later: a redelivered CustomerErased
    must not scrub what the customer gave again since."""
    ids = sorted(set(customer_ids))
    known = await erased(conn, ids)
    if ids and all(known.get(c) is not None and known[c] >= erased_at for c in ids):
        return False
    # A search typed at the desk for this customer (the name, the phone, the e-mail) is in the
    # audit log's subject: it goes too (the entry, who searched and when, stays).
    values = await conn.fetch(
        """SELECT v FROM (SELECT unnest(ARRAY[name, phone, email, address, person_in_charge]) AS v FROM customers
                           WHERE customer_id = ANY($1::text[])
                          UNION SELECT phone FROM phones WHERE customer_id = ANY($1::text[])) found
            WHERE v IS NOT NULL AND length(v) >= 2""", ids)
    searched = [r["v"] for r in values]
    searched += [digits for v in searched if len(digits := "".join(ch for ch in v if ch.isdigit())) >= 7]
    if searched:
        await conn.execute(
            r"""UPDATE audit_log SET subject = NULL
                WHERE action = 'search' AND subject IS NOT NULL
                  AND EXISTS (SELECT 1 FROM unnest($1::text[]) v
                               WHERE position(lower(v) IN lower(subject)) > 0
                                  OR (length(regexp_replace(subject, '\D', '', 'g')) >= 7
                                      AND position(regexp_replace(subject, '\D', '', 'g') IN v) > 0))""",
            searched)
    keys = list(ERASED_TEXT_KEYS)
    await conn.execute(
        """UPDATE customers SET name = NULL, name_pinyin = NULL, name_initials = NULL, phone = NULL, email = NULL,
                                address = NULL, person_in_charge = NULL, contact_flags = NULL
            WHERE customer_id = ANY($1::text[])""", ids)
    await conn.execute("DELETE FROM phones WHERE customer_id = ANY($1::text[])", ids)
    await conn.execute(
        """UPDATE customer_changes SET old_value = NULL, new_value = NULL
            WHERE customer_id = ANY($1::text[]) AND field <> ALL($2::text[])""", ids, list(NEUTRAL_CHANGES))
    await conn.execute("""UPDATE receipts SET comments = NULL, comments_erased = comments_erased OR btrim(comments) <> ''
                           WHERE customer_id = ANY($1::text[])""", ids)
    await conn.execute("UPDATE calls SET talking_points = NULL, requests = NULL, notes = NULL "
                       "WHERE customer_id = ANY($1::text[])", ids)
    await conn.execute("UPDATE inbound_calls SET summary = NULL WHERE customer_id = ANY($1::text[])", ids)
    await conn.execute("UPDATE complaints SET description = NULL, resolution = NULL WHERE customer_id = ANY($1::text[])",
                       ids)
    await conn.execute(
        """UPDATE complaint_events SET detail = detail - $2::text[]
            WHERE customer_id = ANY($1::text[])
               OR complaint_id IN (SELECT complaint_id FROM complaints WHERE customer_id = ANY($1::text[]))""",
        ids, keys)
    await conn.execute("UPDATE notifications SET reason = NULL WHERE customer_id = ANY($1::text[])", ids)
    await conn.execute("UPDATE audit_log SET detail = detail - $2::text[] WHERE customer_id = ANY($1::text[])",
                       ids, keys)
    # Registered once; a later erasure of the same id (the customer came back, then asked again)
    # moves the line the replay guard draws.
    await conn.executemany(
        """INSERT INTO erased_customers (customer_id, erasure_id, erased_at) VALUES ($1, $2, $3)
           ON CONFLICT (customer_id) DO UPDATE SET erasure_id = EXCLUDED.erasure_id, erased_at = EXCLUDED.erased_at
           WHERE erased_customers.erased_at < EXCLUDED.erased_at""",
        [(c, erasure_id, erased_at) for c in ids])
    return True


# -- read model: vehicles, visits, receipts -----------------------------------------------------------

VEHICLE_COLUMNS = ("vin", "customer_id", "plate", "plate_key", "model", "dealer_id", "region", "sold_at",
                   "warranty_months", "warranty_km", "updated_at")


async def upsert_vehicles(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO vehicles ({", ".join(VEHICLE_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(VEHICLE_COLUMNS) + 1))})
            ON CONFLICT (vin) DO UPDATE SET
                customer_id = CASE WHEN EXCLUDED.updated_at >= vehicles.updated_at
                                   THEN coalesce(EXCLUDED.customer_id, vehicles.customer_id) ELSE vehicles.customer_id END,
                plate = CASE WHEN EXCLUDED.updated_at >= vehicles.updated_at OR vehicles.plate IS NULL
                             THEN coalesce(EXCLUDED.plate, vehicles.plate) ELSE vehicles.plate END,
                plate_key = CASE WHEN EXCLUDED.updated_at >= vehicles.updated_at OR vehicles.plate_key IS NULL
                                 THEN coalesce(EXCLUDED.plate_key, vehicles.plate_key) ELSE vehicles.plate_key END,
                model = coalesce(vehicles.model, EXCLUDED.model), dealer_id = coalesce(vehicles.dealer_id, EXCLUDED.dealer_id),
                region = coalesce(EXCLUDED.region, vehicles.region), sold_at = coalesce(EXCLUDED.sold_at, vehicles.sold_at),
                warranty_months = coalesce(EXCLUDED.warranty_months, vehicles.warranty_months),
                warranty_km = coalesce(EXCLUDED.warranty_km, vehicles.warranty_km),
                updated_at = greatest(vehicles.updated_at, EXCLUDED.updated_at)""",
        [tuple(r.get(c) for c in VEHICLE_COLUMNS) for r in rows],
    )


VISIT_COLUMNS = ("repair_order_id", "vin", "customer_id", "dealer_id", "picked_up_at", "service_type", "items",
                 "mileage_km", "advisor_id", "next_service_due_at", "next_service_due_km")


async def insert_visits(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO visits ({", ".join(VISIT_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(VISIT_COLUMNS) + 1))})
            ON CONFLICT (repair_order_id) DO NOTHING""",
        [tuple(r.get(c) for c in VISIT_COLUMNS) for r in rows],
    )


async def insert_receipts(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    columns = ("receipt_id", "repair_order_id", "vin", "customer_id", "returned_at", "rating", "comments", "dealer_id",
               "comments_erased")
    await conn.executemany(
        f"""INSERT INTO receipts ({", ".join(columns)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, false))
            ON CONFLICT (receipt_id) DO NOTHING""",
        [tuple(r.get(c) for c in columns) for r in rows],
    )


# -- read model: follow-ups and calls ------------------------------------------------------------------

FOLLOWUP_COLUMNS = ("followup_id", "kind", "customer_id", "vin", "dealer_id", "region", "campaign_id", "complaint_id",
                    "due_from", "due_by", "scheduled_at", "updated_at")


async def upsert_followups(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO followups ({", ".join(FOLLOWUP_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(FOLLOWUP_COLUMNS) + 1))})
            ON CONFLICT (followup_id) DO UPDATE SET
                due_from = EXCLUDED.due_from, due_by = EXCLUDED.due_by,
                scheduled_at = coalesce(followups.scheduled_at, EXCLUDED.scheduled_at),
                vin = coalesce(followups.vin, EXCLUDED.vin)""",
        [tuple(r.get(c) for c in FOLLOWUP_COLUMNS) for r in rows],
    )


# Statuses only move forward; a late "due" never reopens a completed follow-up.
_STATUS_RANK = "array_position(ARRAY['scheduled', 'due', 'overdue', 'escalated', 'expired', 'completed'], {})"


async def set_followup_status(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """(followup_id, kind, customer_id, vin, status, at): from FollowUpDue/Overdue/Escalated/Expired."""
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO followups (followup_id, kind, customer_id, vin, due_from, due_by, status, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (followup_id) DO UPDATE SET status = EXCLUDED.status,
                updated_at = greatest(followups.updated_at, EXCLUDED.updated_at)
            WHERE {_STATUS_RANK.format("followups.status")} < {_STATUS_RANK.format("EXCLUDED.status")}""",
        [(r["followup_id"], r["kind"], r["customer_id"], r.get("vin"), r.get("due_from"), r.get("due_by"), r["status"],
          r["at"]) for r in rows],
    )


async def complete_followups(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO followups (followup_id, kind, customer_id, vin, status, outcome, satisfaction, satisfied,
                                  agent_id, attempts, completed_at, complaint_id, campaign_id, dealer_id, region,
                                  updated_at)
           VALUES ($1, $2, $3, $4, 'completed', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $10)
           ON CONFLICT (followup_id) DO UPDATE SET status = 'completed', outcome = EXCLUDED.outcome,
               satisfaction = EXCLUDED.satisfaction, satisfied = EXCLUDED.satisfied, agent_id = EXCLUDED.agent_id,
               attempts = greatest(followups.attempts, EXCLUDED.attempts), completed_at = EXCLUDED.completed_at,
               updated_at = greatest(followups.updated_at, EXCLUDED.updated_at)""",
        [(r["followup_id"], r["kind"], r["customer_id"], r.get("vin"), r["outcome"], r.get("satisfaction"),
          r.get("satisfied"), r.get("agent_id"), r["attempts"], r["completed_at"], r.get("complaint_id"),
          r.get("campaign_id"), r.get("dealer_id"), r.get("region")) for r in rows],
    )


async def add_feedback_categories(conn: asyncpg.Connection, rows: Sequence[tuple[str, list[str]]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany("UPDATE followups SET categories = $2 WHERE followup_id = $1", list(rows))


CALL_COLUMNS = ("followup_id", "attempt_no", "customer_id", "kind", "agent_id", "outcome", "attempted_at",
                "call_back_at", "satisfaction", "talking_points", "requests", "notes")


async def insert_calls(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO calls ({", ".join(CALL_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(CALL_COLUMNS) + 1))})
            ON CONFLICT (followup_id, attempt_no) DO NOTHING""",
        [tuple(r.get(c) for c in CALL_COLUMNS) for r in rows],
    )
    await conn.executemany(
        "UPDATE followups SET attempts = greatest(attempts, $2) WHERE followup_id = $1",
        [(r["followup_id"], r["attempt_no"]) for r in rows],
    )


# -- read model: complaints and notifications ----------------------------------------------------------

COMPLAINT_COLUMNS = ("complaint_id", "complaint_ref", "customer_id", "vin", "channel", "category", "severity",
                     "department", "description", "filed_at", "ack_due_at", "resolve_due_at", "updated_at",
                     "dealer_id", "region")


async def open_complaints(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO complaints ({", ".join(COMPLAINT_COLUMNS)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(COMPLAINT_COLUMNS) + 1))})
            ON CONFLICT (complaint_id) DO UPDATE SET
                complaint_ref = EXCLUDED.complaint_ref, customer_id = coalesce(EXCLUDED.customer_id, complaints.customer_id),
                vin = EXCLUDED.vin, channel = EXCLUDED.channel, category = EXCLUDED.category,
                severity = EXCLUDED.severity, department = EXCLUDED.department, description = EXCLUDED.description,
                filed_at = EXCLUDED.filed_at, ack_due_at = EXCLUDED.ack_due_at,
                resolve_due_at = EXCLUDED.resolve_due_at,
                dealer_id = coalesce(EXCLUDED.dealer_id, complaints.dealer_id),
                region = coalesce(EXCLUDED.region, complaints.region)""",
        [tuple(r.get(c) for c in COMPLAINT_COLUMNS) for r in rows],
    )


async def complaint_steps(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """A case's lifecycle events: the timeline row, and the case's state as of its newest event."""
    rows = list(rows)
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO complaint_events (event_id, complaint_id, customer_id, event_type, at, actor, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING""",
        [(r["event_id"], r["complaint_id"], r.get("customer_id"), r["event_type"], r["at"], r.get("actor"),
          r.get("detail") or {}) for r in rows],
    )
    await conn.executemany(
        """INSERT INTO complaints (complaint_id, customer_id, state, level, assignee, resolution, department, updated_at)
           VALUES ($1, $2, coalesce($3, 'opened'), coalesce($4, 0), $5, $6, $7, $8)
           ON CONFLICT (complaint_id) DO UPDATE SET
               customer_id = coalesce(complaints.customer_id, EXCLUDED.customer_id),
               state = CASE WHEN EXCLUDED.updated_at >= complaints.updated_at THEN coalesce($3, complaints.state)
                            ELSE complaints.state END,
               level = CASE WHEN $4::int IS NOT NULL AND EXCLUDED.updated_at >= complaints.updated_at THEN $4
                            ELSE complaints.level END,
               assignee = coalesce($5, complaints.assignee), resolution = coalesce($6, complaints.resolution),
               department = coalesce(complaints.department, EXCLUDED.department),
               updated_at = greatest(complaints.updated_at, EXCLUDED.updated_at)""",
        [(r["complaint_id"], r.get("customer_id"), r.get("state"), r.get("level"), r.get("assignee"),
          r.get("resolution"), r.get("department"), r["at"]) for r in rows],
    )


async def upsert_notifications(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    columns = ("notification_id", "customer_id", "channel", "template", "rule", "status", "reason", "attempts",
               "source_event_type", "at")
    await conn.executemany(
        f"""INSERT INTO notifications ({", ".join(columns)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (notification_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
                attempts = EXCLUDED.attempts, at = EXCLUDED.at
            WHERE notifications.at <= EXCLUDED.at""",
        [tuple(r.get(c) for c in columns) for r in rows],
    )


# -- staff ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: str
    password_hash: str
    locale: str
    failed_attempts: int
    locked_until: datetime | None


async def add_account(conn: asyncpg.Connection, username: str, display_name: str, role: str, password_hash: str,
                      locale: str, now: datetime, department: str | None = None) -> bool:
    status = await conn.execute(
        """INSERT INTO accounts (username, display_name, role, password_hash, locale, created_at, department)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username) DO NOTHING""",
        username, display_name, role, password_hash, locale, now, department)
    return status.endswith(" 1")


async def set_password(conn: asyncpg.Connection, username: str, password_hash: str) -> bool:
    status = await conn.execute(
        "UPDATE accounts SET password_hash = $2, failed_attempts = 0, locked_until = NULL WHERE username = $1",
        username, password_hash)
    return status.endswith(" 1")


async def account(conn: asyncpg.Connection, username: str, *, lock: bool = False) -> Account | None:
    row = await conn.fetchrow(
        f"""SELECT username, display_name, role, password_hash, locale, failed_attempts, locked_until
              FROM accounts WHERE username = $1{" FOR UPDATE" if lock else ""}""", username)
    return Account(**dict(row)) if row else None


async def accounts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT username, display_name, role, locale, failed_attempts, locked_until, created_at, last_sign_in_at,
                  regions, dealers
             FROM accounts ORDER BY username""")
    return [dict(r) for r in rows]


async def record_failure(conn: asyncpg.Connection, username: str, failed: int, locked_until: datetime | None) -> None:
    await conn.execute("UPDATE accounts SET failed_attempts = $2, locked_until = $3 WHERE username = $1",
                       username, failed, locked_until)


async def record_sign_in(conn: asyncpg.Connection, username: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE accounts SET failed_attempts = 0, locked_until = NULL, last_sign_in_at = $2 WHERE username = $1",
        username, now)


async def unlock(conn: asyncpg.Connection, username: str) -> bool:
    status = await conn.execute(
        "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE username = $1", username)
    return status.endswith(" 1")


async def set_locale(conn: asyncpg.Connection, username: str, locale: str) -> None:
    await conn.execute("UPDATE accounts SET locale = $2 WHERE username = $1", username, locale)


async def open_session(conn: asyncpg.Connection, session_hash: bytes, username: str, csrf_token: str,
                       now: datetime, expires_at: datetime) -> None:
    await conn.execute("DELETE FROM sessions WHERE expires_at < $1", now)
    await conn.execute(
        """INSERT INTO sessions (session_hash, username, csrf_token, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5)""", session_hash, username, csrf_token, now, expires_at)


async def session(conn: asyncpg.Connection, session_hash: bytes, now: datetime) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT s.username, s.csrf_token, s.expires_at, a.display_name, a.role, a.locale, a.department,
                  a.regions, a.dealers
             FROM sessions s JOIN accounts a USING (username)
            WHERE s.session_hash = $1 AND s.expires_at > $2""", session_hash, now)
    return dict(row) if row else None


async def close_session(conn: asyncpg.Connection, session_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE session_hash = $1", session_hash)


async def close_sessions_of(conn: asyncpg.Connection, username: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE username = $1", username)


# -- audit ------------------------------------------------------------------------------------------------


async def audit(conn: asyncpg.Connection, *, at: datetime, username: str, role: str, action: str,
                customer_id: str | None = None, subject: str | None = None, detail: dict[str, Any] | None = None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (at, username, role, action, customer_id, subject, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""", at, username, role, action, customer_id, subject, detail or {})


async def audit_entries(conn: asyncpg.Connection, *, username: str | None, customer_id: str | None,
                        action: str | None, limit: int, before_id: int | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT l.*, c.name AS customer_name FROM audit_log l LEFT JOIN customers c USING (customer_id)
            WHERE ($1::text IS NULL OR l.username = $1) AND ($2::text IS NULL OR l.customer_id = $2)
              AND ($3::text IS NULL OR l.action = $3) AND ($5::bigint IS NULL OR l.id < $5)
            ORDER BY l.id DESC LIMIT $4""", username, customer_id, action, limit, before_id)
    return [dict(r) for r in rows]


# -- inbound calls -----------------------------------------------------------------------------------------


async def add_inbound_calls(conn: asyncpg.Connection, calls: Sequence[dict[str, Any]]) -> None:
    """Inbound calls as follow-up's register announced them (InboundCallRecorded); once each."""
    if calls:
        await conn.executemany(
            """INSERT INTO inbound_calls (call_id, customer_id, at, handled_by, kind, summary, complaint_id)
               VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_id) DO NOTHING""",
            [(c["call_id"], c["customer_id"], c["at"], c["handled_by"], c["kind"], c["summary"], c.get("complaint_id"))
             for c in calls])


# -- pages ----------------------------------------------------------------------------------------------------


# A scoped agent's customers (services/intake/store.py's rule), regions as $1 and dealers as $2
# (both NULL: everything): the file's or a vehicle's region is theirs, or one of their dealers
# sold or serviced a vehicle. Constant SQL; the scope goes in as parameters.
IN_SCOPE = """(($1::text[] IS NULL AND $2::text[] IS NULL) OR c.region = ANY($1::text[])
    OR EXISTS (SELECT 1 FROM vehicles sv WHERE sv.customer_id = c.customer_id
               AND (sv.region = ANY($1::text[]) OR sv.dealer_id = ANY($2::text[])))
    OR EXISTS (SELECT 1 FROM visits sw WHERE sw.customer_id = c.customer_id AND sw.dealer_id = ANY($2::text[])))"""


async def in_scope(conn: asyncpg.Connection, customer_id: str, regions: Sequence[str], dealers: Sequence[str]) -> bool:
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = $3 AND {IN_SCOPE})",
        list(regions), list(dealers), customer_id))


async def search(conn: asyncpg.Connection, q: Query, limit: int = 20,
                 scope: tuple[Sequence[str], Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Customers matching any reading of the query, best reading first: a phone's last digits,
    part of a plate, a VIN fragment, a repair order, a name in characters or pinyin. A scoped
    agent's search finds only customers of their regions and dealers."""
    branches: list[str] = []
    args: list[Any] = [list(scope[0]), list(scope[1])] if scope is not None else [None, None]  # $1, $2: IN_SCOPE

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if q.phone_suffix:
        branches.append(f"SELECT customer_id, 1 AS rank, 'phone' AS matched FROM phones "
                        f"WHERE reversed LIKE {arg(q.phone_suffix[::-1] + '%')}")
    if q.plate:
        branches.append(f"SELECT customer_id, 2, 'plate' FROM vehicles WHERE plate_key LIKE {arg('%' + q.plate + '%')}")
    if q.vin:
        branches.append(f"SELECT customer_id, 3, 'vin' FROM vehicles WHERE vin LIKE {arg('%' + q.vin + '%')}")
    if q.repair_order:
        branches.append(f"SELECT customer_id, 4, 'repair_order' FROM visits "
                        f"WHERE upper(repair_order_id) LIKE {arg('%' + q.repair_order + '%')}")
    if q.name:
        pattern = (q.name + "%") if len(q.name) < 2 else ("%" + q.name + "%")
        branches.append(f"SELECT customer_id, CASE WHEN name = {arg(q.name)} THEN 0 ELSE 5 END, 'name' FROM customers "
                        f"WHERE name LIKE {arg(pattern)}")
    if q.pinyin:
        prefix = arg(q.pinyin + "%")
        contains = f" OR name_pinyin LIKE {arg('%' + q.pinyin + '%')}" if len(q.pinyin) >= 3 else ""
        branches.append(f"SELECT customer_id, 6, 'pinyin' FROM customers "
                        f"WHERE name_pinyin LIKE {prefix} OR name_initials LIKE {prefix}{contains}")
    if not branches:
        return []
    rows = await conn.fetch(
        f"""WITH hits (customer_id, rank, matched) AS ({" UNION ALL ".join(f"({b} LIMIT 200)" for b in branches)}),
                 best AS (SELECT customer_id, min(rank) AS rank, (array_agg(matched ORDER BY rank))[1] AS matched
                            FROM hits WHERE customer_id IS NOT NULL GROUP BY customer_id)
            SELECT c.customer_id, c.name, c.phone, c.region, b.matched, b.rank,
                   (SELECT array_agg(coalesce(v.plate, v.vin) || ' ' || coalesce(v.model, '') ORDER BY v.sold_at)
                      FROM vehicles v WHERE v.customer_id = c.customer_id) AS vehicles
              FROM best b JOIN customers c USING (customer_id)
             WHERE {IN_SCOPE}
             ORDER BY b.rank, c.name NULLS LAST, c.customer_id
             LIMIT {arg(limit)}""",
        *args,
    )
    return [dict(r) for r in rows]


async def customers_brief(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT customer_id, name, phone, region, timezone FROM customers WHERE customer_id = ANY($1::text[])",
        list(set(customer_ids)))
    return {r["customer_id"]: dict(r) for r in rows}


async def vehicles_brief(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT vin, plate, model FROM vehicles WHERE vin = ANY($1::text[])", list(set(vins)))
    return {r["vin"]: dict(r) for r in rows}


async def vehicles_dealers(conn: asyncpg.Connection, vins: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT vin, plate, model, dealer_id, region FROM vehicles WHERE vin = ANY($1::text[])",
                            list(set(vins)))
    return {r["vin"]: dict(r) for r in rows}


async def customer(conn: asyncpg.Connection, customer_id: str) -> dict[str, Any] | None:
    """The file, with erased_at and erasure_id when intake erased the customer's personal data."""
    row = await conn.fetchrow(
        """SELECT c.*, e.erased_at, e.erasure_id FROM customers c LEFT JOIN erased_customers e USING (customer_id)
            WHERE c.customer_id = $1""", customer_id)
    return dict(row) if row else None


async def story(conn: asyncpg.Connection, customer_id: str) -> dict[str, list[dict[str, Any]]]:
    """Everything the console knows of one customer, one query per table."""

    async def rows(sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await conn.fetch(sql, customer_id)]

    return {
        "phones": await rows("SELECT phone, first_seen_at FROM phones WHERE customer_id = $1 ORDER BY first_seen_at DESC"),
        "changes": await rows("SELECT * FROM customer_changes WHERE customer_id = $1 ORDER BY at DESC, field LIMIT 200"),
        "vehicles": await rows("SELECT * FROM vehicles WHERE customer_id = $1 ORDER BY sold_at NULLS LAST, vin"),
        "visits": await rows("SELECT * FROM visits WHERE customer_id = $1 ORDER BY picked_up_at DESC LIMIT 200"),
        "receipts": await rows("SELECT * FROM receipts WHERE customer_id = $1 ORDER BY returned_at DESC LIMIT 200"),
        "followups": await rows("SELECT * FROM followups WHERE customer_id = $1 ORDER BY due_by DESC NULLS LAST LIMIT 200"),
        "calls": await rows("SELECT * FROM calls WHERE customer_id = $1 ORDER BY attempted_at DESC LIMIT 200"),
        "inbound_calls": await rows("SELECT * FROM inbound_calls WHERE customer_id = $1 ORDER BY at DESC LIMIT 200"),
        "complaints": await rows("SELECT * FROM complaints WHERE customer_id = $1 ORDER BY filed_at DESC NULLS LAST"),
        "complaint_events": await rows(
            "SELECT * FROM complaint_events WHERE customer_id = $1 ORDER BY at, event_type LIMIT 1000"),
        "notifications": await rows("SELECT * FROM notifications WHERE customer_id = $1 ORDER BY at DESC LIMIT 200"),
    }


async def vehicle_story(conn: asyncpg.Connection, vin: str) -> dict[str, Any] | None:
    vehicle = await conn.fetchrow("SELECT * FROM vehicles WHERE vin = $1", vin)
    if vehicle is None:
        return None

    async def rows(sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await conn.fetch(sql, vin)]

    return {
        "vehicle": dict(vehicle),
        "visits": await rows("SELECT * FROM visits WHERE vin = $1 ORDER BY picked_up_at DESC"),
        "receipts": await rows("SELECT * FROM receipts WHERE vin = $1 ORDER BY returned_at DESC"),
        "followups": await rows("SELECT * FROM followups WHERE vin = $1 ORDER BY due_by DESC NULLS LAST"),
        "calls": await rows("""SELECT c.* FROM calls c JOIN followups f USING (followup_id)
                                WHERE f.vin = $1 ORDER BY c.attempted_at DESC"""),
        "complaints": await rows("SELECT * FROM complaints WHERE vin = $1 ORDER BY filed_at DESC NULLS LAST"),
    }


async def previous_calls(conn: asyncpg.Connection, customer_id: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM calls WHERE customer_id = $1 AND (talking_points IS NOT NULL OR requests IS NOT NULL
                                                           OR notes IS NOT NULL OR outcome <> 'reached')
            ORDER BY attempted_at DESC LIMIT $2""", customer_id, limit)
    return [dict(r) for r in rows]


# -- saved worklist views ---------------------------------------------------------------------------


async def saved_views(conn: asyncpg.Connection, username: str, page: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT name, query FROM saved_views WHERE username = $1 AND page = $2 ORDER BY name",
                            username, page)
    return [dict(r) for r in rows]


async def save_view(conn: asyncpg.Connection, username: str, page: str, name: str, query: str,
                    now: datetime) -> None:
    await conn.execute(
        """INSERT INTO saved_views (username, page, name, query, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (username, page, name) DO UPDATE SET query = EXCLUDED.query""",
        username, page, name, query, now)


async def delete_view(conn: asyncpg.Connection, username: str, page: str, name: str) -> None:
    await conn.execute("DELETE FROM saved_views WHERE username = $1 AND page = $2 AND name = $3", username, page, name)


async def dealer_vins(conn: asyncpg.Connection, dealer_id: str, limit: int) -> list[str]:
    """The VINs a dealer sold (the read model's vehicles), at most `limit` (the caller says when cut)."""
    rows = await conn.fetch("SELECT vin FROM vehicles WHERE dealer_id = $1 ORDER BY vin LIMIT $2", dealer_id, limit)
    return [r["vin"] for r in rows]
