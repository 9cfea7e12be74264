"""From alert to recall, the application layer: the confirmation of an alert as a batch problem
(a command: BatchProblemConfirmed, then the recall CampaignAnnounced naming every VIN that
carries the batch), and the handlers that follow the campaign: owners from sales and visits,
calls that reached or booked an owner (followup's FollowUpCompleted), visits that inspected a
recalled vehicle or replaced its part (intake's VehiclePickedUp). The rules are in recall.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.quality import erasure_store, recall_store, store
from services.quality.config import QualityDeps
from services.quality.domain import Cell
from services.quality.erasure import kept
from services.quality.monitor import EventRef, alert_title
from services.quality.recall import (
    NotRecallable,
    VisitItem,
    campaign_dates,
    campaign_id_for,
    default_title,
    in_parts,
    read_visit,
    recall_target,
)
from shared.events import Event
from shared.events import canonical as c
from shared.uow import UnitOfWork

Uow = UnitOfWork[QualityDeps]
DEFAULT_ADDRESS = "any authorised dealer's workshop"


class ConfirmRefused(Exception):
    """The confirmation cannot be made as asked: `status` is the HTTP status, `detail` says why."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


async def confirm(uow: Uow, alert_id: str, actor: str, *, containment: str, batch: str | None = None,
                  title: str | None = None, address: str | None = None, starts_at: datetime | None = None,
                  ends_at: datetime | None = None,
                  precondition: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """An open alert confirmed as a batch problem with its containment action: the vehicles
    carrying the batch become the recall's targets, and the campaign is announced (when there
    is a vehicle to recall). One recall per alert. `precondition` sees the locked alert row first
    (the API's If-Match) and may refuse by raising."""
    found = await store.alert(uow.conn, alert_id)
    if found is None:
        raise ConfirmRefused(404, f"no alert {alert_id!r}; list the alerts with GET /v1/alerts")
    await store.locked_cells(uow.conn, [found["cell_key"]])  # lock order: cell, then alert
    row = await store.alert(uow.conn, alert_id, lock=True)
    assert row is not None
    if precondition is not None:
        precondition(row)
    done = await recall_store.recall_of_alert(uow.conn, alert_id)
    if done is not None:
        raise ConfirmRefused(409, {"message": f"alert {alert_id} was confirmed as a batch problem at "
                                              f"{done['confirmed_at'].isoformat()} by {done['confirmed_by']}; "
                                              f"its recall is {done['campaign_id']}",
                                   "state": row["state"], "campaign_id": done["campaign_id"]})
    if row["state"] == "closed":
        raise ConfirmRefused(409, {"message": f"alert {alert_id} is closed; a closed alert cannot be confirmed "
                                              "(it reopens when the reports alarm again)",
                                   "state": row["state"], "allowed": []})
    rules = uow.deps.rules
    now = uow.now()
    try:
        target = recall_target(Cell.from_key(row["cell_key"]), batch)
        start, end = campaign_dates(now, starts_at, ends_at, rules.recall_lead_days, rules.recall_length_days)
    except NotRecallable as exc:
        raise ConfirmRefused(422, str(exc)) from None
    vehicles = await recall_store.affected_vehicles(uow.conn, target)
    vins = [v["vin"] for v in vehicles]
    campaign_id = campaign_id_for(alert_id) if vehicles else None
    title = title or default_title(target)
    confirmed = uow.publish("BatchProblemConfirmed", c.BatchProblemConfirmed(
        alert_id=alert_id, confirmed_at=now, actor=actor, containment=containment, category=target.category,
        batch=target.batch, supplier_id=target.supplier_id, vins=vins[:rules.alert_listed_reports_max],
        vehicles=len(vins), cell=row["cell"], title=alert_title(row), campaign_id=campaign_id,
    ), cause=EventRef(row["last_event_id"], row["correlation_id"]), occurred_at=now)
    if campaign_id is not None:
        regions = sorted({v["region"] for v in vehicles if v["region"]})
        models = sorted({v["model"] for v in vehicles})
        for part, part_vins in enumerate(in_parts(vins)):  # a large batch: several announcements of its VINs
            uow.publish("CampaignAnnounced", c.CampaignAnnounced(
                campaign_id=campaign_id, kind="recall", title=title, starts_at=start, ends_at=end,
                address=address or DEFAULT_ADDRESS, regions=regions, models=models, loyal_first=True,
                vins=part_vins, alert_id=alert_id, category=target.category, batch=target.batch,
            ), cause=confirmed, occurred_at=now, discriminator=part)
        await recall_store.insert_recall(uow.conn, {
            "campaign_id": campaign_id, "alert_id": alert_id, "category": target.category, "batch": target.batch,
            "supplier_id": target.supplier_id, "containment": containment, "confirmed_at": now,
            "confirmed_by": actor, "title": title, "address": address or DEFAULT_ADDRESS, "starts_at": start,
            "ends_at": end, "event_id": confirmed.event_id, "correlation_id": confirmed.correlation_id,
        }, vehicles)
    uow.log.info("batch problem confirmed", alert_id=alert_id, actor=actor, batch=target.label,
                 vehicles=len(vins), campaign_id=campaign_id)
    return {"alert_id": alert_id, "category": target.category, "batch": target.batch,
            "supplier_id": target.supplier_id, "containment": containment, "confirmed_at": now,
            "confirmed_by": actor, "campaign_id": campaign_id, "vehicles": len(vins),
            "starts_at": start if campaign_id else None, "ends_at": end if campaign_id else None}


# ---------------------------------------------------------------------------------------
# Handlers


async def keep_sale_owners(uow: Uow, events: list[Event[c.VehicleSold]]) -> None:
    """The owner of each vehicle sold (what the affected-vehicles list names)."""
    await _keep_owners(uow, events)


async def _keep_owners(uow: Uow, events: list[Event[c.VehicleSold]] | list[Event[c.VehiclePickedUp]]) -> None:
    """The owner's name is not filed from an event about an erased customer that occurred at or
    before the erasure (a replay, a late delivery): the owner is kept by id, shown as erased."""
    ids = {e.data.customer.customer_id for e in events}
    await erasure_store.lock_customers(uow.conn, ids)  # after the vehicles' locks (on_vehicle_sold)
    erased = await erasure_store.erased(uow.conn, ids)
    await recall_store.keep_owners(uow.conn, [
        {"vin": d.vin, "customer_id": d.customer.customer_id,
         "name": d.customer.name if kept(erased.get(d.customer.customer_id), e.occurred_at) else None,
         "region": d.customer.region, "occurred_at": e.occurred_at} for e in events for d in [e.data]])


async def on_vehicle_picked_up(uow: Uow, events: list[Event[c.VehiclePickedUp]]) -> None:
    """A workshop visit: the owner as of that visit; for a recalled vehicle, whether the visit
    inspected it or replaced its part (recall.read_visit)."""
    await _keep_owners(uow, events)
    recalls = await recall_store.open_recalls_of(uow.conn, [e.data.vin for e in events])
    if not recalls:
        return
    rows = []
    for event in sorted(events, key=lambda e: e.data.picked_up_at):
        d = event.data
        items = [VisitItem(i.code, i.part_category) for i in d.items]
        for found in read_visit(d.service_type, items, recalls.get(d.vin, [])):
            rows.append({"campaign_id": found.campaign_id, "vin": d.vin, "inspected_at": d.picked_up_at,
                         "replaced_at": d.picked_up_at if found.replaced else None,
                         "repair_order_id": d.repair_order_id})
            uow.log.info("recalled vehicle visited", campaign_id=found.campaign_id, vin=d.vin,
                         replaced=found.replaced, repair_order_id=d.repair_order_id)
    await recall_store.mark_visits(uow.conn, rows)


async def on_followup_completed(uow: Uow, events: list[Event[c.FollowUpCompleted]]) -> None:
    """A recall's campaign call that reached the owner (and the visit they booked on it)."""
    await recall_store.mark_calls(uow.conn, [
        {"campaign_id": d.campaign_id, "customer_id": d.customer_id, "vin": d.vin, "reached_at": d.completed_at,
         "booked_at": d.booked_at}
        for e in events for d in [e.data]
        if d.kind == "campaign_call" and d.campaign_id and d.outcome == "reached"
    ])
