"""Notifier's SQL. Nothing else touches the `notifier` schema.

The handlers write a batch at a time, one statement per table (`shared.bulk.Table`); the
dispatcher claims and records one notification at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.api import Sort, keyset
from shared.bulk import Table, newest
from shared.http import SCOPE_SQL

CONTACTS = Table("contacts", {
    "customer_id": "text", "name": "text", "phone": "text", "email": "text", "address": "text", "locale": "text",
    "timezone": "text", "consent": "jsonb", "updated_at": "timestamptz", "contact_flags": "jsonb", "region": "text",
})
NOTIFICATIONS = Table("notifications", {
    "notification_id": "uuid", "rule": "text", "source_event_id": "uuid", "source_event_type": "text",
    "correlation_id": "uuid", "recipient": "text", "recipient_kind": "text", "channel": "text", "template": "text",
    "locale": "text", "context": "jsonb", "status": "text", "due_at": "timestamptz", "created_at": "timestamptz",
    "last_error": "text", "finished_at": "timestamptz",
})
CAMPAIGNS = Table("campaigns", {
    "campaign_id": "text", "title": "text", "kind": "text", "starts_at": "timestamptz", "ends_at": "timestamptz",
    "address": "text", "updated_at": "timestamptz",
})

# A contact keeps the newest facts by world time: a late, older event does not overwrite what the
# contact has, but fills what it lacks (intake announces the whole file, so a pickup that arrives
# after a newer address change still brings the customer's phone).
MERGE_CONTACT = """(customer_id) DO UPDATE SET
    name = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN coalesce(EXCLUDED.name, contacts.name)
                ELSE coalesce(contacts.name, EXCLUDED.name) END,
    phone = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN coalesce(EXCLUDED.phone, contacts.phone)
                 ELSE coalesce(contacts.phone, EXCLUDED.phone) END,
    email = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN coalesce(EXCLUDED.email, contacts.email)
                 ELSE coalesce(contacts.email, EXCLUDED.email) END,
    address = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN coalesce(EXCLUDED.address, contacts.address)
                   ELSE coalesce(contacts.address, EXCLUDED.address) END,
    locale = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN EXCLUDED.locale ELSE contacts.locale END,
    timezone = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN EXCLUDED.timezone ELSE contacts.timezone END,
    consent = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN EXCLUDED.consent ELSE contacts.consent END,
    contact_flags = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at
                         THEN coalesce(EXCLUDED.contact_flags, contacts.contact_flags)
                         ELSE coalesce(contacts.contact_flags, EXCLUDED.contact_flags) END,
    region = CASE WHEN contacts.updated_at <= EXCLUDED.updated_at THEN coalesce(EXCLUDED.region, contacts.region)
                  ELSE coalesce(contacts.region, EXCLUDED.region) END,
    updated_at = greatest(contacts.updated_at, EXCLUDED.updated_at)"""


async def merge_contacts(conn: asyncpg.Connection, contacts: Sequence[dict[str, Any]]) -> None:
    """Merge each contact fact (a row with its world time as `updated_at`) into the contacts, in
    order. A statement may touch a row once, and the merge of a customer's second fact must see
    the first: a customer's n-th fact of the batch goes in the n-th statement (mostly one)."""
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for contact in contacts:
        n = seen[contact["customer_id"]] = seen.get(contact["customer_id"], -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(contact)
    for batch in rounds:
        await CONTACTS.insert(conn, batch, on_conflict=MERGE_CONTACT)


async def add_customer_scope(conn: asyncpg.Connection, facts: Iterable[tuple[str, str | None, str | None]]) -> None:
    """(customer, region, dealer) of a vehicle sold to or serviced for the customer (migration 0006)."""
    rows = list({(c, r or "", d or "") for c, r, d in facts})
    if rows:
        await conn.executemany("""INSERT INTO customer_scope (customer_id, region, dealer_id) VALUES ($1, $2, $3)
                                  ON CONFLICT DO NOTHING""", rows)


# The customer is in a person's scope, a str.format template with constants only: `customer` (the
# SQL expression of their id), `regions`, `dealers` (the $n of the scope's two text[] parameters;
# both NULL: everyone): their file's region, or a region or dealer of one of their vehicles
# (shared.http.SCOPE_SQL), as intake's rule.
CUSTOMER_IN_SCOPE = ("""(({regions}::text[] IS NULL AND {dealers}::text[] IS NULL)
        OR EXISTS (SELECT 1 FROM contacts sc WHERE sc.customer_id = {customer} AND sc.region = ANY({regions}::text[]))
        OR EXISTS (SELECT 1 FROM customer_scope ss WHERE ss.customer_id = {customer} AND """
                     + SCOPE_SQL.format(region="ss.region", dealer="ss.dealer_id", regions="{regions}",
                                        dealers="{dealers}") + "))")


async def customer_in_scope(conn: asyncpg.Connection, customer_id: str, regions: list[str] | None,
                            dealers: list[str] | None) -> bool:
    return bool(await conn.fetchval(
        "SELECT " + CUSTOMER_IN_SCOPE.format(customer="$1::text", regions="$2", dealers="$3"),
        customer_id, regions, dealers))


async def contacts(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = list(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch("SELECT * FROM contacts WHERE customer_id = ANY($1::text[])", ids)
    return {r["customer_id"]: dict(r) for r in rows}


async def get_contact(conn: asyncpg.Connection, customer_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM contacts WHERE customer_id = $1", customer_id)
    return dict(row) if row else None


async def insert_notifications(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One notification per (rule, source event, recipient): one already on file is kept. The
    rows inserted now are returned."""
    return [dict(r) for r in await NOTIFICATIONS.insert(conn, rows, on_conflict="DO NOTHING", returning="*")]


async def release_awaiting(conn: asyncpg.Connection, customer_ids: Iterable[str], now: datetime) -> int:
    """Notifications waiting for these customers' contacts are due (their contact just changed)."""
    status = await conn.execute(
        """UPDATE notifications SET status = 'pending', due_at = greatest(due_at, $2)
            WHERE recipient = ANY($1::text[]) AND recipient_kind = 'customer' AND status = 'awaiting_contact'""",
        sorted(set(customer_ids)), now,
    )
    return int(status.split()[-1])


async def sweep_awaiting(conn: asyncpg.Connection, now: datetime, give_up_before: datetime) -> tuple[int, list[dict[str, Any]]]:
    """Release notifications whose contact has caught up since, with a phone and an address (a
    contact and its notification may be committed by concurrent transactions that cannot see
    each other, so the contact event's own release can miss one); return the count
    released and the ones that waited too long."""
    released = await conn.execute(
        """UPDATE notifications n SET status = 'pending', due_at = greatest(n.due_at, $1)
             FROM contacts c
            WHERE n.status = 'awaiting_contact' AND n.recipient_kind = 'customer' AND c.customer_id = n.recipient
              AND (c.phone IS NOT NULL OR coalesce(c.contact_flags, '{}'::jsonb) ? 'phone') AND c.address IS NOT NULL""",
        now,
    )
    expired = await conn.fetch(
        """UPDATE notifications SET status = 'sending', sending_since = $1
            WHERE status = 'awaiting_contact' AND created_at < $2
           RETURNING *""",
        now, give_up_before,
    )
    return int(released.split()[-1]), [dict(r) for r in expired]


async def await_contact(conn: asyncpg.Connection, notification_id: uuid.UUID, reason: str, *,
                        claimed_at: datetime) -> bool:
    """Park a claimed notification until the customer's contact catches up (it was not an
    attempt); released by the next contact event or by `sweep_awaiting`. False when the claim
    was lost (see `reschedule`)."""
    status = await conn.execute(
        """UPDATE notifications SET status = 'awaiting_contact', sending_since = NULL, attempts = attempts - 1,
                  last_error = $2
            WHERE notification_id = $1 AND status = 'sending' AND sending_since = $3""",
        notification_id, reason, claimed_at,
    )
    return status.endswith(" 1")


async def claim_due(conn: asyncpg.Connection, now: datetime, lease_expired_before: datetime, limit: int) -> list[dict[str, Any]]:
    """Claim pending notifications that are due, and ones whose sender died mid-send."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT notification_id FROM notifications
                WHERE (status = 'pending' AND due_at <= $1)
                   OR (status = 'sending' AND sending_since < $2)
                ORDER BY due_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
           UPDATE notifications n SET status = 'sending', sending_since = $1, attempts = n.attempts + 1
             FROM due WHERE n.notification_id = due.notification_id
           RETURNING n.*""",
        now, lease_expired_before, limit,
    )
    return [dict(r) for r in rows]


async def reschedule(conn: asyncpg.Connection, notification_id: uuid.UUID, due_at: datetime, *, undo_attempt: bool,
                     claimed_at: datetime, error: str | None = None) -> bool:
    """Back to pending, only while the claim made at `claimed_at` still holds: once its lease
    expired another dispatcher may have claimed and finished the notification, and a stale
    attempt must not undo that. False when the claim was lost."""
    status = await conn.execute(
        """UPDATE notifications SET status = 'pending', due_at = $2, sending_since = NULL,
                  attempts = attempts - CASE WHEN $3 THEN 1 ELSE 0 END, last_error = coalesce($4, last_error)
            WHERE notification_id = $1 AND status = 'sending' AND sending_since = $5""",
        notification_id, due_at, undo_attempt, error, claimed_at,
    )
    return status.endswith(" 1")


async def finish(conn: asyncpg.Connection, notification_id: uuid.UUID, status: str, now: datetime, *,
                 claimed_at: datetime, error: str | None = None, provider_ref: str | None = None,
                 address: str | None = None) -> bool:
    """Record the outcome, only while the claim made at `claimed_at` still holds (see
    `reschedule`). False when the claim was lost: the outcome is someone else's to record."""
    result = await conn.execute(
        """UPDATE notifications SET status = $2, finished_at = $3, sending_since = NULL,
                  last_error = coalesce($4, last_error), provider_ref = $5, address = $6
            WHERE notification_id = $1 AND status = 'sending' AND sending_since = $7""",
        notification_id, status, now, error, provider_ref, address, claimed_at,
    )
    return result.endswith(" 1")


async def opted_out(conn: asyncpg.Connection, customer_id: str, channel: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM opt_outs WHERE customer_id = $1 AND channel IN ($2, 'all') ORDER BY channel = 'all' LIMIT 1",
        customer_id, channel)
    return dict(row) if row else None


async def record_opt_out(conn: asyncpg.Connection, customer_id: str, channel: str, reason: str | None, by: str,
                         at: datetime) -> None:
    await conn.execute(
        """INSERT INTO opt_outs (customer_id, channel, reason, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (customer_id, channel) DO UPDATE SET reason = EXCLUDED.reason,
               recorded_by = EXCLUDED.recorded_by, recorded_at = EXCLUDED.recorded_at""",
        customer_id, channel, reason, by, at)


async def remove_opt_out(conn: asyncpg.Connection, customer_id: str, channel: str) -> bool:
    status = await conn.execute("DELETE FROM opt_outs WHERE customer_id = $1 AND channel = $2", customer_id, channel)
    return status.endswith(" 1")


async def opt_outs_of(conn: asyncpg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch("SELECT * FROM opt_outs WHERE customer_id = $1 ORDER BY channel",
                                               customer_id)]


async def upsert_campaigns(conn: asyncpg.Connection, campaigns: Sequence[dict[str, Any]]) -> None:
    """Each campaign as last announced (by world time, `updated_at`); an older announcement
    arriving late changes nothing."""
    await CAMPAIGNS.upsert(conn, newest(campaigns, "campaign_id", "updated_at"), key=("campaign_id",),
                           where="campaigns.updated_at <= EXCLUDED.updated_at")


async def campaign(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM campaigns WHERE campaign_id = $1", campaign_id)
    return dict(row) if row else None


async def switch_channel(conn: asyncpg.Connection, notification_id: uuid.UUID, channel: str) -> None:
    await conn.execute("UPDATE notifications SET channel = $2 WHERE notification_id = $1", notification_id, channel)


async def notifications(conn: asyncpg.Connection, *, recipient: str | None, event_id: uuid.UUID | None,
                        status: str | None, limit: int, sort: Sort, cursor: dict[str, Any] | None
                        ) -> list[dict[str, Any]]:
    ks = keyset(sort, "notification_id", cursor, 5)
    rows = await conn.fetch(
        f"""SELECT notification_id, rule, source_event_id, source_event_type, correlation_id, recipient,
                   recipient_kind, channel, template, locale, status, due_at, attempts, last_error, provider_ref,
                   created_at, finished_at
              FROM notifications
             WHERE ($1::text IS NULL OR recipient = $1) AND ($2::uuid IS NULL OR source_event_id = $2)
               AND ($3::text IS NULL OR status = $3) AND {ks.where}
             ORDER BY {ks.order_by} LIMIT $4""",
        recipient, event_id, status, limit, *ks.params)
    return [dict(r) for r in rows]


# A letter's customer: the recipient of the notification it was rendered from.
_LETTER_CUSTOMER = """(SELECT n.recipient FROM notifications n
                        WHERE n.notification_id = letters.letter_id AND n.recipient_kind = 'customer')"""


async def letters(conn: asyncpg.Connection, *, printed: bool | None, limit: int, sort: Sort,
                  cursor: dict[str, Any] | None, regions: list[str] | None = None, dealers: list[str] | None = None
                  ) -> list[dict[str, Any]]:
    ks = keyset(sort, "letter_id", cursor, 5)
    # An erased customer's letter not printed yet has nothing to print or post on it: not listed.
    where = ("($1::boolean IS NULL OR (printed_at IS NOT NULL) = $1) AND (printed_at IS NOT NULL OR postal_address <> '') "
             "AND ") + CUSTOMER_IN_SCOPE.format(
        customer=_LETTER_CUSTOMER, regions="$2", dealers="$3")
    rows = await conn.fetch(
        f"SELECT * FROM letters WHERE {where} AND {ks.where} ORDER BY {ks.order_by} LIMIT $4",
        printed, regions, dealers, limit, *ks.params)
    return [dict(r) for r in rows]


async def letter_in_scope(conn: asyncpg.Connection, letter_id: uuid.UUID, regions: list[str] | None,
                          dealers: list[str] | None) -> bool:
    """The letter's customer is in the scope (an unknown letter is: the route answers 404)."""
    return bool(await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM letters WHERE letter_id = $1) OR EXISTS "
        "(SELECT 1 FROM letters WHERE letter_id = $1 AND "
        + CUSTOMER_IN_SCOPE.format(customer=_LETTER_CUSTOMER, regions="$2", dealers="$3") + ")",
        letter_id, regions, dealers))


async def mark_printed(conn: asyncpg.Connection, letter_id: uuid.UUID, by: str, at: datetime) -> bool:
    status = await conn.execute(
        "UPDATE letters SET printed_at = $3, printed_by = $2 WHERE letter_id = $1 AND printed_at IS NULL",
        letter_id, by, at)
    return status.endswith(" 1")


# -- the consent log (append-only: migrations/0005_consent_log.sql) ---------------------------


async def consents(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> dict[str, tuple[dict[str, bool], datetime]]:
    """The consent each contact has now, with the world time of the fact it came from."""
    rows = await conn.fetch("SELECT customer_id, consent, updated_at FROM contacts WHERE customer_id = ANY($1::text[])",
                            list(set(customer_ids)))
    return {r["customer_id"]: (dict(r["consent"] or {}), r["updated_at"]) for r in rows}


async def log_consent(conn: asyncpg.Connection, entries: Sequence[dict[str, Any]]) -> None:
    """Append entries (customer_id, channel, granted, changed_at, changed_by, reason, source,
    event_id, recorded_at); an event's entries are written once however often it is redelivered."""
    if not entries:
        return
    columns = ("customer_id", "channel", "granted", "changed_at", "changed_by", "reason", "source", "event_id",
               "recorded_at")
    await conn.execute(
        """INSERT INTO consent_log (customer_id, channel, granted, changed_at, changed_by, reason, source, event_id,
                                    recorded_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::timestamptz[], $5::text[], $6::text[],
                                $7::text[], $8::uuid[], $9::timestamptz[])
           ON CONFLICT (event_id, channel) WHERE event_id IS NOT NULL DO NOTHING""",
        *[[e.get(c) for e in entries] for c in columns])


async def consent_history(conn: asyncpg.Connection, customer_id: str, limit: int, sort: Sort,
                          cursor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The tiebreak `seq` is the entry's id as zero-padded text (its text order is the ids' order)."""
    ks = keyset(sort, "l.seq", cursor, 3)
    rows = await conn.fetch(
        f"""SELECT entry_id, channel, granted, changed_at, changed_by, reason, source, event_id, recorded_at FROM (
                SELECT *, lpad(entry_id::text, 19, '0') AS seq FROM consent_log WHERE customer_id = $1) l
            WHERE {ks.where} ORDER BY {ks.order_by} LIMIT $2""",
        customer_id, limit, *ks.params)
    return [dict(r) for r in rows]


async def customer_known(conn: asyncpg.Connection, customer_id: str) -> bool:
    """The notifier has heard of the customer: their contact data, an opt-out or a consent entry."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM contacts WHERE customer_id = $1)
               OR EXISTS (SELECT 1 FROM opt_outs WHERE customer_id = $1)
               OR EXISTS (SELECT 1 FROM consent_log WHERE customer_id = $1)""", customer_id))


# -- erasure (issue 19; migrations/0007_erasure.sql) -------------------------------------------

# The reason a notification of an erased customer is suppressed with (never sent).
ERASED = "customer erased"
# The states of a notification not sent yet: an erasure cancels them.
UNSENT = ("awaiting_contact", "pending", "sending")


async def erasures(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, datetime]:
    """erased_at of each of these customers that was erased."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch("SELECT customer_id, erased_at FROM erased_customers WHERE customer_id = ANY($1::text[])",
                            ids)
    return {r["customer_id"]: r["erased_at"] for r in rows}


async def record_erasure(conn: asyncpg.Connection, customer_ids: Sequence[str], erasure_id: str,
                         erased_at: datetime) -> None:
    """The customers are erased as of `erased_at`; a redelivery changes nothing, a later erasure
    (the customer came back and was erased again) moves the moment on."""
    await conn.execute(
        """INSERT INTO erased_customers (customer_id, erasure_id, erased_at)
           SELECT unnest($1::text[]), $2, $3
           ON CONFLICT (customer_id) DO UPDATE SET erasure_id = EXCLUDED.erasure_id, erased_at = EXCLUDED.erased_at
            WHERE erased_customers.erased_at < EXCLUDED.erased_at""",
        sorted(set(customer_ids)), erasure_id, erased_at)


async def scrub_contacts(conn: asyncpg.Connection, customer_ids: Sequence[str], erased_at: datetime) -> None:
    """The contacts lose name, phone, e-mail, address and flagged values; the row (locale, time
    zone, consent, region) stays. A contact filed after the erasure (newer facts) is kept."""
    await conn.execute(
        """UPDATE contacts SET name = NULL, phone = NULL, email = NULL, address = NULL, contact_flags = NULL
            WHERE customer_id = ANY($1::text[]) AND updated_at <= $2""", list(customer_ids), erased_at)


async def scrub_free_text(conn: asyncpg.Connection, customer_ids: Sequence[str], erased_at: datetime) -> None:
    """Opt-outs and consent-log entries lose their reason (free text, often the customer's own
    words); channel, granted, who and when stay (the log's trigger allows exactly this)."""
    await conn.execute("""UPDATE opt_outs SET reason = NULL
                           WHERE customer_id = ANY($1::text[]) AND recorded_at <= $2 AND reason IS NOT NULL""",
                       list(customer_ids), erased_at)
    await conn.execute("""UPDATE consent_log SET reason = NULL
                           WHERE customer_id = ANY($1::text[]) AND changed_at <= $2 AND reason IS NOT NULL""",
                       list(customer_ids), erased_at)


async def notifications_about(conn: asyncpg.Connection, customer_ids: Sequence[str],
                              erased_at: datetime) -> list[dict[str, Any]]:
    """Notifications (locked) to these customers, or whose event names one of them anywhere
    (a `customer_id` field at any depth: a staff notice about their case), from events that
    occurred at or before `erased_at`."""
    rows = await conn.fetch(
        """SELECT * FROM notifications n
            WHERE (n.context->>'occurred_at')::timestamptz <= $2
              AND (n.recipient = ANY($1::text[])
                   OR EXISTS (SELECT 1 FROM unnest($1::text[]) AS i(id)
                               WHERE jsonb_path_exists(n.context, 'lax $.**.customer_id ? (@ == $id)',
                                                       jsonb_build_object('id', i.id))))
            ORDER BY n.notification_id
              FOR UPDATE""",
        list(customer_ids), erased_at)
    return [dict(r) for r in rows]


async def rewrite_notifications(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write back each scrubbed notification: its context, state, reason, address and times."""
    await conn.executemany(
        """UPDATE notifications SET context = $2::text::jsonb, status = $3, last_error = $4, address = $5,
                  finished_at = $6, sending_since = $7
            WHERE notification_id = $1""",
        [(r["notification_id"], orjson.dumps(r["context"]).decode(), r["status"], r["last_error"], r["address"],
          r["finished_at"], r["sending_since"]) for r in rows])


async def scrub_letters(conn: asyncpg.Connection, letter_ids: Sequence[uuid.UUID]) -> None:
    """The letters lose addressee, postal address, subject and body ('' where the register requires
    a value); ids and register times stay. One not printed yet leaves the register to print."""
    if letter_ids:
        await conn.execute(
            """UPDATE letters SET addressee = NULL, postal_address = '', subject = '', body = ''
                WHERE letter_id = ANY($1::uuid[])""", list(letter_ids))


async def unsent_outcomes(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Outbox rows not published yet with an outcome of a notification to these customers
    (keyed by the recipient): their reason may quote an address or an opt-out's reason."""
    rows = await conn.fetch(
        """SELECT id, payload FROM outbox
            WHERE key = ANY($1::text[]) AND event_type IN ('NotificationSent', 'NotificationFailed',
                                                           'NotificationSuppressed')""", list(customer_ids))
    return [dict(r) for r in rows]


async def rewrite_outbox(conn: asyncpg.Connection, rows: Sequence[tuple[int, bytes]]) -> None:
    await conn.executemany("UPDATE outbox SET payload = $2 WHERE id = $1", list(rows))


async def stored_answers(conn: asyncpg.Connection, before: datetime) -> list[dict[str, Any]]:
    """The idempotency records' stored answers (24 hours' POSTs) from before `before`."""
    rows = await conn.fetch("""SELECT key, credential, body FROM http_idempotency
                                WHERE body IS NOT NULL AND created_at <= $1""", before)
    return [dict(r) for r in rows]


async def rewrite_answer(conn: asyncpg.Connection, key: str, credential: str, body: bytes) -> None:
    await conn.execute("UPDATE http_idempotency SET body = $3 WHERE key = $1 AND credential = $2", key, credential, body)
