"""Scheduling a follow-up: the row, its durable timers (due, overdue, escalated, expired) and
the FollowUpScheduled event, written together. Used by event handlers, timers and the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.uow import UnitOfWork

from services.followup import store
from services.followup.config import FollowUpDeps, FollowUpRules

Uow = UnitOfWork[FollowUpDeps]

SCHEDULED_FIELDS = ("followup_id", "kind", "customer_id", "vin", "due_from", "due_by", "priority", "reason_event_id",
                    "dealer_id", "region", "campaign_id", "complaint_id")
TIMER_KINDS = ("followup.due", "followup.overdue", "followup.escalate", "followup.expire")


def rules(uow: UnitOfWork[FollowUpDeps]) -> FollowUpRules:
    return uow.deps.rules


def arm(uow: Uow, f: dict[str, Any], cause: Any, *, replace: bool = False) -> None:
    """FollowUpDue at due_from, FollowUpOverdue at due_by, FollowUpEscalated 2 days after that,
    FollowUpExpired when it is hopelessly late."""
    r = rules(uow)
    for kind, at in (
        ("followup.due", f["due_from"]),
        ("followup.overdue", f["due_by"]),
        ("followup.escalate", f["due_by"] + timedelta(days=r.escalate_after_overdue_days)),
        ("followup.expire", f["due_by"] + timedelta(days=r.expire_after_overdue_days)),
    ):
        uow.schedule_timer(kind, f["followup_id"], at, cause=cause, replace=replace)


async def schedule(uow: Uow, items: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Insert the follow-ups that are new, arm their timers and announce them; return them."""
    for cause, f in items:
        f.setdefault("correlation_id", cause.correlation_id)
    new = await store.insert_followups(uow.conn, [f for _, f in items], uow.now())
    scheduled = []
    announced: dict[str, Any] = {}
    for cause, f in items:
        if f["followup_id"] not in new:
            continue
        new.discard(f["followup_id"])  # a repeat inside the batch is scheduled once
        arm(uow, f, cause)
        envelope = uow.publish("FollowUpScheduled", {k: f.get(k) for k in SCHEDULED_FIELDS}
                               | {"loyalty_tier": f.get("tier")}, cause=cause, discriminator=f["followup_id"])
        announced[f["followup_id"]] = envelope.event_id
        if f["kind"] == "campaign_call":
            uow.publish("CampaignCallScheduled", {
                "customer_id": f["customer_id"], "campaign_id": f["campaign_id"], "followup_id": f["followup_id"],
                "due_by": f["due_by"], "loyal": f.get("tier") in ("gold", "silver"),
            }, cause=cause, discriminator=f["followup_id"])
        scheduled.append(f)
    await store.set_scheduled_events(uow.conn, announced)
    return scheduled


async def cancel(uow: Uow, followup_id: str) -> None:
    await uow.cancel_timers(followup_id, list(TIMER_KINDS))
