"""Follow-up's handlers: one per consumed event type. Load → domain → store + timers + outbox.

From intake: the customer, vehicle and visit projections it needs, the first return visit of
every pickup, maintenance reminders and lost-customer checks, campaign calls. From complaints:
open complaints (for loyalty) and the confirmation call after a resolution.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import metrics
from shared.events import Event
from shared.timeutil import add_months
from shared.uow import UnitOfWork

from services.followup import store
from services.followup.domain import (
    campaign_window,
    confirmation_window,
    first_visit_window,
    followup_id,
    loyalty_tier,
    lost_after,
    maintenance_due,
    priority,
)
from services.followup.scheduling import arm, cancel, rules, schedule
from services.followup.config import FollowUpDeps

Uow = UnitOfWork[FollowUpDeps]


# -- customers and vehicles ------------------------------------------------------------------------
async def on_customer(uow: Uow, events: list[Event[Any]]) -> None:
    """CustomerRegistered / CustomerUpdated: region, time zone and locale for calling and
    targeting; files intake merged move their follow-ups along."""
    await store.upsert_customers(uow.conn, [
        {"customer_id": e.data.customer_id, "region": e.data.region, "timezone": e.data.timezone,
         "locale": e.data.locale, "at": e.occurred_at} for e in events])
    merged = {old: e.data.customer_id for e in events for old in (getattr(e.data, "merged_customer_ids", None) or [])}
    if merged:
        await store.retire_customers(uow.conn, merged)


async def on_vehicle_sold(uow: Uow, events: list[Event[Any]]) -> None:
    await store.upsert_vehicles(uow.conn, [
        {"vin": e.data.vin, "customer_id": e.data.customer.customer_id, "model": e.data.model,
         "dealer_id": e.data.dealer_id, "sold_at": e.data.sold_at, "warranty_months": e.data.warranty_months,
         "warranty_km": e.data.warranty_km, "at": e.data.sold_at} for e in events])
    await store.upsert_customers(uow.conn, [
        {"customer_id": e.data.customer.customer_id, "region": e.data.customer.region,
         "timezone": e.data.customer.timezone, "locale": e.data.customer.locale, "at": e.occurred_at} for e in events])
    await _arm_lost_checks(uow, {e.data.customer.customer_id: e for e in events})


async def on_vehicle_picked_up(uow: Uow, events: list[Event[Any]]) -> None:
    """Every pickup schedules a first return-visit call, due 3 to 7 days after it; the
    vehicle's next maintenance reminder and the customer's lost-customer check move on."""
    r = rules(uow)
    await store.upsert_customers(uow.conn, [
        {"customer_id": e.data.customer.customer_id, "region": e.data.customer.region,
         "timezone": e.data.customer.timezone, "locale": e.data.customer.locale, "at": e.occurred_at} for e in events])
    await store.upsert_vehicles(uow.conn, [
        {"vin": e.data.vin, "customer_id": e.data.customer.customer_id, "model": e.data.model,
         "dealer_id": e.data.dealer_id, "sold_at": e.data.sold_at, "warranty_months": e.data.warranty_months,
         "warranty_km": e.data.warranty_km, "at": e.data.picked_up_at} for e in events])
    await store.insert_visits(uow.conn, [
        {"repair_order_id": e.data.repair_order_id, "vin": e.data.vin, "customer_id": e.data.customer.customer_id,
         "dealer_id": e.data.dealer_id, "picked_up_at": e.data.picked_up_at, "mileage_km": e.data.mileage_km,
         "next_service_due_at": e.data.next_service_due_at, "next_service_due_km": e.data.next_service_due_km}
        for e in events])
    items = []
    history_before = uow.now() - timedelta(days=r.history_after_days)
    for event in events:
        d = event.data
        window = first_visit_window(d.picked_up_at, r)
        if window.due_by < history_before:
            metrics.HISTORICAL_PICKUPS.inc()
            continue  # history: filed above, too old to call about
        items.append((event, {
            "followup_id": followup_id("first_visit", d.repair_order_id), "kind": "first_visit",
            "customer_id": d.customer.customer_id, "vin": d.vin, "dealer_id": d.dealer_id,
            "region": d.region or d.customer.region, "reason_event_id": str(event.event_id),
            "due_from": window.due_from, "due_by": window.due_by, "priority": r.priority_first_visit,
            "timezone": d.customer.timezone, "under_warranty": d.under_warranty, "mileage_km": d.mileage_km,
            "event_at": d.picked_up_at,
        }))
    await schedule(uow, items)
    await _arm_maintenance(uow, {e.data.vin: e for e in events})
    await _arm_lost_checks(uow, {e.data.customer.customer_id: e for e in events})


async def _arm_maintenance(uow: Uow, latest: dict[str, Event[Any]]) -> None:
    """The reminder 10 days before the next service is due, by date or km, whichever first,
    from the vehicle's latest visit and its mileage history."""
    r = rules(uow)
    now = uow.now()
    history = await store.visit_history(uow.conn, latest)
    stale = []
    for vin, event in latest.items():
        visits = history.get(vin, [])
        if not visits:
            continue
        last = visits[-1]  # the latest visit in world time, whatever arrived last
        due = maintenance_due(
            last["picked_up_at"], last["mileage_km"] or 0, last["next_service_due_at"], last["next_service_due_km"],
            [(v["picked_up_at"], v["mileage_km"]) for v in visits[:-1] if v["mileage_km"] is not None], r,
        )
        if due.remind_at < now - timedelta(days=r.history_after_days):
            stale.append(vin)  # long past: history, not a reminder to send now
            continue
        uow.schedule_timer("maintenance.remind", vin, _not_before_settled(due.remind_at, now, r), {
            "customer_id": event.data.customer.customer_id, "dealer_id": event.data.dealer_id,
            "region": event.data.region or event.data.customer.region, "timezone": event.data.customer.timezone,
            "estimated_due_at": due.estimated_due_at.isoformat(), "basis": due.basis,
            "due_at": due.due_at.isoformat() if due.due_at else None, "due_km": due.due_km,
            "last_visit_at": last["picked_up_at"].isoformat(),
        }, cause=event, replace=True)
    if stale:  # an earlier visit's reminder, if still pending, is superseded by this history
        await uow.cancel_timers(stale, ["maintenance.remind"])


def _not_before_settled(moment: datetime, now: datetime, r: Any) -> datetime:
    """A moment already past fires a little after now, once a burst of old facts has settled."""
    return moment if moment >= now else now + timedelta(minutes=r.late_timer_settle_minutes)


async def _arm_lost_checks(uow: Uow, latest: dict[str, Event[Any]]) -> None:
    """A customer with no visit for 12 months is lost: the check moves with every visit."""
    contacts = await store.last_contact(uow.conn, latest)
    for customer_id, event in latest.items():
        last = contacts.get(customer_id)
        if last is not None:
            uow.schedule_timer("customer.lost", customer_id,
                               _not_before_settled(lost_after(last, rules(uow)), uow.now(), rules(uow)),
                               {"last_contact_at": last.isoformat()}, cause=event, replace=True)


# -- campaigns -------------------------------------------------------------------------------------
async def on_campaign_announced(uow: Uow, events: list[Event[Any]]) -> None:
    """A call to each targeted customer (the campaign's regions, and models if it names them)
    14 days before it starts, loyal customers first; an amended campaign moves open calls."""
    r = rules(uow)
    for event in events:
        c = event.data
        await store.upsert_campaign(uow.conn, {
            "campaign_id": c.campaign_id, "kind": c.kind, "title": c.title, "starts_at": c.starts_at,
            "ends_at": c.ends_at, "regions": c.regions, "models": c.models, "loyal_first": c.loyal_first,
            "announced_at": event.occurred_at,
        })
        window = campaign_window(c.starts_at, event.occurred_at, r)
        if window is None:
            uow.log.info("campaign already started when announced; no calls", campaign_id=c.campaign_id)
            continue
        targets = await store.campaign_targets(uow.conn, c.regions, c.models)
        stats = await store.loyalty_stats(uow.conn, [t["customer_id"] for t in targets],
                                          add_months(event.occurred_at, -r.loyalty_window_months))
        items = []
        for t in targets:
            tier = loyalty_tier(*stats.get(t["customer_id"], (0, None, 0)), r) if c.loyal_first else "standard"
            fid = followup_id("campaign_call", f"{c.campaign_id}:{t['customer_id']}")
            f = {
                "followup_id": fid, "kind": "campaign_call", "customer_id": t["customer_id"], "vin": t["vin"],
                "dealer_id": t["dealer_id"], "region": t["region"], "campaign_id": c.campaign_id,
                "reason_event_id": str(event.event_id), "due_from": window.due_from, "due_by": window.due_by,
                "priority": priority("campaign_call", tier, r), "timezone": t["timezone"], "event_at": c.starts_at,
                "tier": tier,
            }
            items.append((event, f))
            if await store.reschedule_open(uow.conn, fid, window.due_from, window.due_by):
                arm(uow, f, event, replace=True)  # an amended campaign: the open call moves with it
                uow.publish("FollowUpScheduled", {k: f.get(k) for k in (
                    "followup_id", "kind", "customer_id", "vin", "due_from", "due_by", "priority", "reason_event_id",
                    "dealer_id", "region", "campaign_id")} | {"loyalty_tier": tier},
                    cause=event, discriminator=window.due_by.isoformat())
        await schedule(uow, items)


# -- complaints ------------------------------------------------------------------------------------
async def on_complaint_state(uow: Uow, events: list[Event[Any]]) -> None:
    """Open complaints keep a customer out of the loyal tiers; a closure ends a pending
    confirmation call."""
    state = {"ComplaintOpened": "open", "ComplaintReopened": "open", "ComplaintResolved": "resolved",
             "ComplaintClosed": "closed"}
    await store.upsert_complaints(uow.conn, [
        (e.data.complaint_id, e.data.customer_id, state.get(e.event_type, "open"), e.data.at) for e in events])
    for event in events:
        if event.event_type == "ComplaintResolved":
            await _confirm(uow, event)
        elif event.event_type == "ComplaintClosed":
            for f in await store.open_confirmations(uow.conn, event.data.complaint_id):
                await _expire(uow, f, event, "the complaint was closed before the confirmation call")


async def _confirm(uow: Uow, event: Event[Any]) -> None:
    """Resolved: the customer is contacted again to confirm the resolution satisfied them."""
    r = rules(uow)
    d = event.data
    if not d.customer_id:
        uow.log.warning("a resolved complaint names no customer; no confirmation call", complaint_id=d.complaint_id)
        return
    zones = await store.customer_zones(uow.conn, [d.customer_id])
    window = confirmation_window(d.at, r)
    reason = f"{d.complaint_id}:{getattr(d, 'round', None) if getattr(d, 'round', None) is not None else event.event_id}"
    await schedule(uow, [(event, {
        "followup_id": followup_id("complaint_confirmation", reason), "kind": "complaint_confirmation",
        "customer_id": d.customer_id, "vin": getattr(d, "vin", None), "complaint_id": d.complaint_id,
        "region": zones.get(d.customer_id, {}).get("region"), "reason_event_id": str(event.event_id),
        "due_from": window.due_from, "due_by": window.due_by, "priority": r.priority_complaint_confirmation,
        "timezone": zones.get(d.customer_id, {}).get("timezone") or "Asia/Shanghai", "event_at": d.at,
    })])


async def _expire(uow: Uow, f: dict[str, Any], cause: Any, why: str) -> None:
    await store.set_status(uow.conn, [f["followup_id"]], "status", uow.now(), "expired")
    await cancel(uow, f["followup_id"])
    uow.publish("FollowUpExpired", _timer_event(f), cause=cause, discriminator=f["followup_id"])
    uow.log.info("follow-up expired", followup_id=f["followup_id"], why=why)


def _timer_event(f: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {k: f.get(k) for k in ("followup_id", "kind", "customer_id", "vin", "due_from", "due_by", "dealer_id",
                                  "region")} | extra

