"""Notifier's SQL. Nothing else touches the `notifier` schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


async def upsert_contact(conn: asyncpg.Connection, c: dict[str, Any], at: datetime) -> None:
    """Keep the newest facts by world time; a late, older event does not overwrite them."""
    await conn.execute(
        """INSERT INTO contacts (customer_id, name, phone, email, address, locale, timezone, consent, updated_at)
           VALUES ($1, $2, $3, $4, $5, coalesce($6, 'zh-CN'), coalesce($7, 'Asia/Shanghai'),
                   coalesce($8, '{"sms": true, "email": true, "letter": true}'::jsonb), $9)
           ON CONFLICT (customer_id) DO UPDATE SET
               name = coalesce(EXCLUDED.name, contacts.name), phone = coalesce(EXCLUDED.phone, contacts.phone),
               email = coalesce(EXCLUDED.email, contacts.email), address = coalesce(EXCLUDED.address, contacts.address),
               locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, consent = EXCLUDED.consent,
               updated_at = EXCLUDED.updated_at
           WHERE contacts.updated_at <= EXCLUDED.updated_at""",
        c["customer_id"], c.get("name"), c.get("phone"), c.get("email"), c.get("address"), c.get("locale"),
        c.get("timezone"), c.get("consent"), at,
    )


async def get_contact(conn: asyncpg.Connection, customer_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM contacts WHERE customer_id = $1", customer_id)
    return dict(row) if row else None


async def insert_notification(conn: asyncpg.Connection, n: dict[str, Any]) -> bool:
    status = await conn.execute(
        """INSERT INTO notifications (notification_id, rule, source_event_id, source_event_type, correlation_id,
                                      recipient, recipient_kind, channel, template, locale, context, status, due_at,
                                      created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT DO NOTHING""",
        n["notification_id"], n["rule"], n["source_event_id"], n["source_event_type"], n["correlation_id"],
        n["recipient"], n["recipient_kind"], n["channel"], n["template"], n.get("locale"), n["context"], n["status"],
        n["due_at"], n["created_at"],
    )
    return status.endswith(" 1")


async def release_awaiting(conn: asyncpg.Connection, customer_id: str, now: datetime) -> int:
    status = await conn.execute(
        """UPDATE notifications SET status = 'pending', due_at = greatest(due_at, $2)
            WHERE recipient = $1 AND recipient_kind = 'customer' AND status = 'awaiting_contact'""",
        customer_id, now,
    )
    return int(status.split()[-1])


async def sweep_awaiting(conn: asyncpg.Connection, now: datetime, give_up_before: datetime) -> tuple[int, list[dict[str, Any]]]:
    """Release notifications whose contact has arrived since (a contact and its notification
    may be committed by concurrent transactions that cannot see each other); return the count
    released and the ones that waited too long."""
    released = await conn.execute(
        """UPDATE notifications n SET status = 'pending', due_at = greatest(n.due_at, $1)
             FROM contacts c
            WHERE n.status = 'awaiting_contact' AND n.recipient_kind = 'customer' AND c.customer_id = n.recipient""",
        now,
    )
    expired = await conn.fetch(
        """UPDATE notifications SET status = 'sending', sending_since = $1
            WHERE status = 'awaiting_contact' AND created_at < $2
           RETURNING *""",
        now, give_up_before,
    )
    return int(released.split()[-1]), [dict(r) for r in expired]


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
                     error: str | None = None) -> None:
    await conn.execute(
        """UPDATE notifications SET status = 'pending', due_at = $2, sending_since = NULL,
                  attempts = attempts - CASE WHEN $3 THEN 1 ELSE 0 END, last_error = coalesce($4, last_error)
            WHERE notification_id = $1""",
        notification_id, due_at, undo_attempt, error,
    )


async def finish(conn: asyncpg.Connection, notification_id: uuid.UUID, status: str, now: datetime, *,
                 error: str | None = None, provider_ref: str | None = None, address: str | None = None) -> None:
    await conn.execute(
        """UPDATE notifications SET status = $2, finished_at = $3, sending_since = NULL,
                  last_error = coalesce($4, last_error), provider_ref = $5, address = $6
            WHERE notification_id = $1""",
        notification_id, status, now, error, provider_ref, address,
    )
