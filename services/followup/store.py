"""Follow-up's SQL. Nothing else touches the `followup` schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def insert_followup(conn: asyncpg.Connection, f: dict[str, Any], created_at: datetime) -> bool:
    """Insert a follow-up; False when one with this id already exists (a repeat cause)."""
    status = await conn.execute(
        """INSERT INTO followups (followup_id, kind, customer_id, vin, dealer_id, region, campaign_id, complaint_id,
                                  reason_event_id, due_from, due_by, priority, timezone, under_warranty, event_at,
                                  created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           ON CONFLICT (followup_id) DO NOTHING""",
        f["followup_id"], f["kind"], f["customer_id"], f.get("vin"), f.get("dealer_id"), f.get("region"),
        f.get("campaign_id"), f.get("complaint_id"), f["reason_event_id"], f["due_from"], f["due_by"],
        f.get("priority", 50), f.get("timezone") or "Asia/Shanghai", f.get("under_warranty"), f["event_at"], created_at,
    )
    return status.endswith(" 1")
