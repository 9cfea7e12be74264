"""ETags of follow-up's resources (issue 21) and the If-Match check of the actions that change them.

- A follow-up's ETag covers its stored row: a claim, a release, a call recorded, an assignment or
  anything the service does to it (a reschedule, an expiry) gives it a new one.
- A customer's conversation's ETag covers the open follow-ups in it as stored (docs/followup.md
  "One conversation per customer"), not its history or the moment it was read.

An action given `If-Match` takes the customer's lock (the one every claim and call record of the
customer takes, store.lock_customer) before comparing, so nothing changes between the check and
the act; a stale tag is a 412 and the transaction changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from fastapi import HTTPException

from services.followup import conversation, store
from shared.api import check_if_match, etag_of


def followup_etag(row: dict[str, Any]) -> str:
    return etag_of(dict(row))


def conversation_etag(customer_id: str, rows: list[dict[str, Any]], now: datetime, days: int) -> str:
    talk = conversation.conversation_of(customer_id, rows, now, days)
    return etag_of({"customer_id": customer_id, "followups": [dict(f) for f in talk.followups]})


async def current_conversation_etag(conn: asyncpg.Connection, customer_id: str, now: datetime, days: int) -> str:
    rows = (await store.open_followups_of(conn, [customer_id])).get(customer_id, [])
    return conversation_etag(customer_id, rows, now, days)


async def check_followup(conn: asyncpg.Connection, followup_id: str, if_match: str | None) -> None:
    """412 when `if_match` is given and the follow-up changed since (404 when there is none)."""
    if if_match is None:
        return
    found = await store.get_followup(conn, followup_id)
    if found is None:
        raise HTTPException(404, f"no follow-up {followup_id!r}")
    await store.lock_customer(conn, found["customer_id"])
    current = await store.get_followup(conn, followup_id, lock=True)
    assert current is not None  # follow-ups are never deleted
    check_if_match(if_match, followup_etag(current))


async def check_conversation(conn: asyncpg.Connection, customer_id: str, now: datetime, days: int,
                             if_match: str | None) -> None:
    if if_match is None:
        return
    await store.lock_customer(conn, customer_id)
    check_if_match(if_match, await current_conversation_etag(conn, customer_id, now, days))


async def followup_etag_of(conn: asyncpg.Connection, followup_id: str) -> str | None:
    row = await store.get_followup(conn, followup_id)
    return followup_etag(row) if row else None
