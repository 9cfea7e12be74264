"""Follow-up's handlers: one per consumed event type. Load → domain → store + outbox."""

from __future__ import annotations

from shared.events import Event
from shared.events.catalog import CanonicalVehiclePickedUp
from shared.uow import UnitOfWork

from services.followup import store
from services.followup.config import FollowUpRules
from services.followup.domain import first_visit_window, followup_id


def rules(uow: UnitOfWork) -> FollowUpRules:
    return uow.state["rules"]  # type: ignore[no-any-return]


async def on_vehicle_picked_up(uow: UnitOfWork, events: list[Event[CanonicalVehiclePickedUp]]) -> None:
    """Every pickup schedules a first return-visit call, due 3 to 7 days after it."""
    followups = []
    for event in events:
        d = event.data
        window = first_visit_window(d.picked_up_at, rules(uow))
        followups.append((event, {
            "followup_id": followup_id("first_visit", d.repair_order_id),
            "kind": "first_visit",
            "customer_id": d.customer.customer_id,
            "vin": d.vin,
            "dealer_id": d.dealer_id,
            "region": d.region or d.customer.region,
            "reason_event_id": str(event.event_id),
            "due_from": window.due_from,
            "due_by": window.due_by,
            "priority": 50,
            "timezone": d.customer.timezone,
            "under_warranty": d.under_warranty,
            "event_at": d.picked_up_at,
        }))
    new = await store.insert_followups(uow.conn, [f for _, f in followups], uow.now())
    for event, f in followups:
        if f["followup_id"] in new:
            new.discard(f["followup_id"])  # a repeat inside the batch is scheduled once
            uow.publish(
                "FollowUpScheduled",
                {k: f[k] for k in (
                    "followup_id", "kind", "customer_id", "vin", "due_from", "due_by", "priority", "reason_event_id",
                    "dealer_id", "region",
                )},
                cause=event,
            )
