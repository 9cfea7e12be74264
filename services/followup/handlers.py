"""Follow-up's handlers: one per consumed event type, and one per kind of deadline.

Each takes every record of its type in a poll. The customers and vehicles it needs are loaded
once per transaction (`Projections`, shared by every handler of the poll), the rules decide in
memory (`domain`), and the rows are written once per table when the unit of work is flushed.

From intake: the customer, vehicle and visit projections, the first return visit of every
pickup, maintenance reminders and lost-customer checks, campaign calls. From complaints: open
complaints (for loyalty) and the confirmation call after a resolution. A follow-up's own
deadlines (due, overdue, escalated, expired), a vehicle's reminder and a customer's lost check
are kept on their rows and fired by the kernel's timer runner (`Deadlines`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import msgspec

from services.followup import erasure, owners, store, weekly
from services.followup.config import FollowUpDeps, FollowUpRules
from services.followup.domain import (
    NewFollowUp,
    Step,
    Window,
    calling_days,
    calling_window,
    campaign_window,
    confirmation_window,
    consultation_window,
    delivery_window,
    first_visit_window,
    followup_id,
    lost_after,
    lost_window,
    loyalty_tier,
    maintenance_due,
    next_step,
    next_weekly_report,
    priority,
)
from services.followup.store import Customer, Projections, Vehicle
from shared import metrics
from shared.events import Event
from shared.events import canonical as c
from shared.events.codec import caused_id
from shared.events.envelope import uuid5
from shared.timers import Timer
from shared.timeutil import add_months, iso_week, local, week_start
from shared.uow import UnitOfWork

Uow = UnitOfWork[FollowUpDeps]
OPEN = ("scheduled", "due")


@dataclass(frozen=True)
class RowCause:
    """A deadline kept on a row, as the cause of what it fires: the event that set it, in its
    chain, with the deadline's own identity (one event may set several)."""

    event_id: uuid.UUID
    correlation_id: uuid.UUID | None
    discriminator: str


# -- customers and vehicles ------------------------------------------------------------------------
def _customer_facts(customer: Customer, at: datetime, region: str | None, timezone: str | None,
                    locale: str | None, contact_flags: dict[str, Any] | None = None) -> None:
    """Newest facts win by world time: a late event does not overwrite a newer one. Contact
    flags come from intake's file (None: the event does not say)."""
    if customer.updated_at is None or at >= customer.updated_at:
        customer.region = region or customer.region
        customer.timezone = timezone or customer.timezone
        customer.locale = locale or customer.locale
        if contact_flags is not None:
            customer.contact_flags = contact_flags
        customer.updated_at = at


def _contact(customer: Customer, at: datetime, cause: Event[Any], now: datetime, r: FollowUpRules) -> None:
    """A visit or a purchase: the customer is lost if nothing follows it for 12 months; the check
    moves with every later contact (an older one changes nothing)."""
    if customer.last_contact_at is not None and at <= customer.last_contact_at:
        return
    customer.last_contact_at = at
    customer.lost_check_at = _not_before_settled(lost_after(at, r), now, r)
    customer.lost_cause, customer.lost_correlation = cause.event_id, cause.correlation_id


def _not_before_settled(moment: datetime, now: datetime, r: FollowUpRules) -> datetime:
    """A moment already past fires a little after now, once a burst of old facts has settled."""
    return moment if moment >= now else now + timedelta(minutes=r.late_timer_settle_minutes)


async def on_customer(uow: Uow, events: list[Event[c.CustomerRegistered | c.CustomerUpdated]]) -> None:
    """CustomerRegistered / CustomerUpdated / CustomerContactCorrected: region, time zone and
    locale for calling and targeting, the contact values the agents must correct (flags); files
    intake merged move their follow-ups along."""
    files = uow.batch(Projections)
    await files.load(customers=[e.data.customer_id for e in events])
    erased = await erasure.erased_at_of(uow.conn, [e.data.customer_id for e in events])
    merged: dict[str, str] = {}
    for event in events:
        d = event.data
        flags = None if d.contact_flags is None else msgspec.to_builtins(d.contact_flags)
        if erasure.scrubbed(erased, d.customer_id, event.occurred_at):
            flags = None  # replay guard: the erased customer's flagged phones and e-mails stay gone
        _customer_facts(files.customer(d.customer_id), event.occurred_at, d.region, d.timezone, d.locale, flags)
        for old in getattr(d, "merged_customer_ids", None) or []:
            merged[old] = d.customer_id
    if merged:
        await files.save()  # the retired files' rows move with what is on file now
        await store.retire_customers(uow.conn, merged)
    # a customer first seen here gets a tracking owner by region (owners.py)
    await owners.assign_by_rules(uow, [owners.Sighting(e, e.data.customer_id, e.data.region, None) for e in events])


async def on_vehicle_sold(uow: Uow, events: list[Event[c.VehicleSold]]) -> None:
    """A sale (the delivery): the vehicle's warranty and owner, the owner's lost-customer check,
    and the first tracking call 3 to 7 days after delivery, by the rules of a pickup's (its
    completion schedules the second within 7 days)."""
    r, now = uow.deps.rules, uow.now()
    files = uow.batch(Projections)
    await files.load(customers=[e.data.customer.customer_id for e in events], vins=[e.data.vin for e in events])
    history_before = now - timedelta(days=r.history_after_days)
    items: list[tuple[Event[Any], NewFollowUp]] = []
    for event in events:
        d = event.data
        vehicle = files.vehicle(d.vin)
        if vehicle.updated_at is None or d.sold_at >= vehicle.updated_at:
            vehicle.customer_id, vehicle.updated_at = d.customer.customer_id, d.sold_at
        vehicle.model, vehicle.dealer_id = d.model or vehicle.model, d.dealer_id or vehicle.dealer_id
        vehicle.sold_at, vehicle.warranty_months, vehicle.warranty_km = d.sold_at, d.warranty_months, d.warranty_km
        customer = files.customer(d.customer.customer_id)
        _customer_facts(customer, event.occurred_at, d.customer.region, d.customer.timezone, d.customer.locale)
        _contact(customer, d.sold_at, event, now, r)
        window = delivery_window(d.sold_at, r)
        if window.due_by < history_before:
            continue  # a sale imported long after: filed, too old to call about
        items.append((event, NewFollowUp(
            followup_id=followup_id("first_visit", f"sale:{d.sale_id}"), kind="first_visit",
            customer_id=d.customer.customer_id, vin=d.vin, dealer_id=d.dealer_id, region=d.region or d.customer.region,
            reason_event_id=str(event.event_id), due_from=window.due_from, due_by=window.due_by,
            priority=r.priority_first_visit, timezone=d.customer.timezone, under_warranty=d.warranty_months > 0,
            mileage_km=0, event_at=d.sold_at, reason_type="VehicleSold",
        )))
    await owners.assign_by_rules(uow, [owners.Sighting(e, e.data.customer.customer_id, e.data.region
                                                       or e.data.customer.region, e.data.dealer_id) for e in events])
    await schedule(uow, items)


async def on_consultation(uow: Uow, events: list[Event[c.ConsultationRecorded]]) -> None:
    """A business interview or consultation (CRM): the first tracking call 3 to 7 days after it.
    It is no workshop visit: it moves no lost-customer check and is not a warranty pickup."""
    r, now = uow.deps.rules, uow.now()
    files = uow.batch(Projections)
    await files.load(customers=[e.data.customer_id for e in events])
    history_before = now - timedelta(days=r.history_after_days)
    items: list[tuple[Event[Any], NewFollowUp]] = []
    for event in events:
        d = event.data
        customer = files.customer(d.customer_id)
        _customer_facts(customer, event.occurred_at, d.region, d.timezone, None)
        window = consultation_window(d.consulted_at, r)
        scheduled = followup_id("first_visit", f"consultation:{d.consultation_id}")
        if d.channel == "hotline" and d.handled_by:
            await _phoned_in(uow, event, customer, scheduled if window.due_by >= history_before else None)
        if window.due_by < history_before:
            continue
        items.append((event, NewFollowUp(
            followup_id=scheduled, kind="first_visit",
            customer_id=d.customer_id, vin=d.vin, dealer_id=d.dealer_id, region=d.region or customer.region,
            reason_event_id=str(event.event_id), due_from=window.due_from, due_by=window.due_by,
            priority=r.priority_first_visit, timezone=customer.timezone or d.timezone, under_warranty=False,
            event_at=d.consulted_at, reason_type="ConsultationRecorded",
        )))
    await owners.assign_by_rules(uow, [owners.Sighting(e, e.data.customer_id, e.data.region, e.data.dealer_id)
                                       for e in events])
    await schedule(uow, items)


async def _phoned_in(uow: Uow, event: Event[c.ConsultationRecorded], customer: Customer, scheduled: str | None) -> None:
    """A consultation taken on the hotline (an agent recorded it through intake, or the CRM did) is
    an inbound call: on the phone register under the person who took it."""
    d = event.data
    assert d.handled_by is not None
    call_id = str(uuid5(uuid.NAMESPACE_URL, f"aftersales:consultation:{d.consultation_id}"))
    summary: str | None = d.topic + (f": {d.summary}" if d.summary else "")
    if erasure.scrubbed(await erasure.erased_at_of(uow.conn, [d.customer_id]), d.customer_id, event.occurred_at):
        summary = None  # replay guard: what an erased customer said comes back neither here nor on the bus
    if await store.record_inbound_call(uow.conn, {
        "call_id": call_id, "customer_id": d.customer_id, "kind": "consultation", "summary": summary,
        "handled_by": d.handled_by, "received_at": d.consulted_at, "vin": d.vin, "followup_id": scheduled,
        "region": d.region or customer.region, "recorded_at": uow.now(),
    }):
        uow.publish("InboundCallRecorded", c.InboundCallRecorded(
            call_id=call_id, customer_id=d.customer_id, kind="consultation", summary=summary or "",
            handled_by=d.handled_by, received_at=d.consulted_at, vin=d.vin, followup_id=scheduled,
        ), cause=event, discriminator=call_id)


async def on_vehicle_picked_up(uow: Uow, events: list[Event[c.VehiclePickedUp]]) -> None:
    """Every pickup schedules a first return-visit call, due 3 to 7 days after it; the
    vehicle's next maintenance reminder and the customer's lost-customer check move on."""
    r, now = uow.deps.rules, uow.now()
    files = uow.batch(Projections)
    await files.load(customers=[e.data.customer.customer_id for e in events], vins=[e.data.vin for e in events])
    history_before = now - timedelta(days=r.history_after_days)
    latest: dict[str, Event[c.VehiclePickedUp]] = {}
    items: list[tuple[Event[Any], NewFollowUp]] = []
    for event in events:
        d = event.data
        customer = files.customer(d.customer.customer_id)
        _customer_facts(customer, event.occurred_at, d.customer.region, d.customer.timezone, d.customer.locale)
        _contact(customer, d.picked_up_at, event, now, r)
        _visited(files.vehicle(d.vin), d)
        files.add_visit({
            "repair_order_id": d.repair_order_id, "vin": d.vin, "customer_id": d.customer.customer_id,
            "dealer_id": d.dealer_id, "picked_up_at": d.picked_up_at, "mileage_km": d.mileage_km,
            "next_service_due_at": d.next_service_due_at, "next_service_due_km": d.next_service_due_km,
        })
        held = latest.get(d.vin)
        if held is None or d.picked_up_at >= held.data.picked_up_at:
            latest[d.vin] = event
        window = first_visit_window(d.picked_up_at, r)
        if window.due_by < history_before:
            metrics.HISTORICAL_PICKUPS.inc()
            continue  # history: filed above, too old to call about
        items.append((event, NewFollowUp(
            followup_id=followup_id("first_visit", d.repair_order_id), kind="first_visit",
            customer_id=d.customer.customer_id, vin=d.vin, dealer_id=d.dealer_id, region=d.region or d.customer.region,
            reason_event_id=str(event.event_id), due_from=window.due_from, due_by=window.due_by,
            priority=r.priority_first_visit, timezone=d.customer.timezone, under_warranty=d.under_warranty,
            mileage_km=d.mileage_km, event_at=d.picked_up_at, reason_type="VehiclePickedUp",
        )))
    for vin, event in latest.items():
        _arm_maintenance(files.vehicle(vin), event, now, r)
    await owners.assign_by_rules(uow, [owners.Sighting(e, e.data.customer.customer_id, e.data.region
                                                       or e.data.customer.region, e.data.dealer_id) for e in events])
    await schedule(uow, items)


def _visited(vehicle: Vehicle, d: c.VehiclePickedUp) -> None:
    """What the vehicle's file learns from a visit: its owner and model (newest wins), its
    warranty, its first and latest mileage readings and the latest visit's service plan."""
    if vehicle.updated_at is None or d.picked_up_at >= vehicle.updated_at:
        vehicle.customer_id, vehicle.updated_at = d.customer.customer_id, d.picked_up_at
    vehicle.model, vehicle.dealer_id = vehicle.model or d.model, vehicle.dealer_id or d.dealer_id
    vehicle.sold_at = vehicle.sold_at or d.sold_at
    vehicle.warranty_months = vehicle.warranty_months if vehicle.warranty_months is not None else d.warranty_months
    vehicle.warranty_km = vehicle.warranty_km if vehicle.warranty_km is not None else d.warranty_km
    if vehicle.first_reading_at is None or d.picked_up_at < vehicle.first_reading_at:
        vehicle.first_reading_at, vehicle.first_reading_km = d.picked_up_at, d.mileage_km
    if vehicle.last_visit_at is None or d.picked_up_at >= vehicle.last_visit_at:
        vehicle.last_visit_at, vehicle.last_mileage_km = d.picked_up_at, d.mileage_km
        vehicle.next_service_due_at, vehicle.next_service_due_km = d.next_service_due_at, d.next_service_due_km


def _arm_maintenance(vehicle: Vehicle, event: Event[c.VehiclePickedUp], now: datetime, r: FollowUpRules) -> None:
    """The reminder 10 days before the next service is due, by date or km, whichever first,
    from the vehicle's latest visit and its mileage history (first to latest reading)."""
    assert vehicle.last_visit_at is not None and vehicle.last_mileage_km is not None
    earlier = ([(vehicle.first_reading_at, vehicle.first_reading_km)]
               if vehicle.first_reading_at is not None and vehicle.first_reading_km is not None
               and vehicle.first_reading_at < vehicle.last_visit_at else [])
    due = maintenance_due(vehicle.last_visit_at, vehicle.last_mileage_km, vehicle.next_service_due_at,
                          vehicle.next_service_due_km, earlier, r)
    if due.remind_at < now - timedelta(days=r.history_after_days):
        vehicle.remind_at = vehicle.reminder = None  # long past: history, and an earlier visit's reminder goes
        return
    d = event.data
    vehicle.remind_at = _not_before_settled(due.remind_at, now, r)
    vehicle.reminder = {
        "customer_id": d.customer.customer_id, "dealer_id": d.dealer_id, "region": d.region or d.customer.region,
        "timezone": d.customer.timezone, "estimated_due_at": due.estimated_due_at.isoformat(), "basis": due.basis,
        "due_at": due.due_at.isoformat() if due.due_at else None, "due_km": due.due_km,
        "last_visit_at": vehicle.last_visit_at.isoformat(),
    }
    vehicle.remind_cause, vehicle.remind_correlation = event.event_id, event.correlation_id


# -- scheduling ------------------------------------------------------------------------------------
async def schedule(uow: Uow, items: list[tuple[Any, NewFollowUp]]) -> list[NewFollowUp]:
    """Insert the follow-ups that are new, with their first deadline and the id of the
    FollowUpScheduled that announces them (the cause of their calls' events), in one
    statement; announce them; return them. A repeated cause schedules nothing."""
    if not items:
        return []
    r, now = uow.deps.rules, uow.now()
    items = [(cause, on_calling_days(uow.deps, f)) for cause, f in items]
    rows = []
    for cause, f in items:
        step, at = next_step(None, f.due_from, f.due_by, r)
        rows.append({
            **{name: getattr(f, name) for name in store.NEW_FOLLOWUP_FIELDS},
            "correlation_id": cause.correlation_id, "created_at": now, "next_step": step, "next_step_at": at,
            "scheduled_event_id": _scheduled_id(cause, f),
        })
    new = await store.insert_followups(uow.conn, rows)
    scheduled = []
    for (cause, f), row in zip(items, rows, strict=True):
        if f.followup_id not in new:
            continue
        new.discard(f.followup_id)  # a repeat inside the batch is scheduled once
        _announce(uow, f, cause, row["scheduled_event_id"])
        scheduled.append(f)
    return scheduled


def on_calling_days(deps: FollowUpDeps, f: NewFollowUp) -> NewFollowUp:
    """The follow-up with its window placed on the calling days of the customer's region
    (due from its first calling moment; a window ending on a holiday runs to the next working day)."""
    window = calling_window(Window(f.due_from, f.due_by), f.timezone,
                            calling_days(f.region, deps.rules, deps.calendars), deps.rules)
    return replace(f, due_from=window.due_from, due_by=window.due_by)


def _scheduled_id(cause: Any, f: NewFollowUp) -> uuid.UUID:
    return caused_id(cause.envelope if isinstance(cause, Event) else cause, "FollowUpScheduled", f.customer_id,
                     f.followup_id)


def _announce(uow: Uow, f: NewFollowUp, cause: Any, event_id: uuid.UUID | None = None,
              discriminator: object = None) -> None:
    uow.publish("FollowUpScheduled", c.FollowUpScheduled(
        followup_id=f.followup_id, kind=f.kind, customer_id=f.customer_id, vin=f.vin, due_from=f.due_from,
        due_by=f.due_by, priority=f.priority, reason_event_id=f.reason_event_id, dealer_id=f.dealer_id,
        region=f.region, campaign_id=f.campaign_id, complaint_id=f.complaint_id, loyalty_tier=f.tier,
        reason_type=f.reason_type,
    ), cause=cause, discriminator=f.followup_id if discriminator is None else discriminator, event_id=event_id)
    if f.kind == "campaign_call" and discriminator is None:
        assert f.campaign_id is not None
        uow.publish("CampaignCallScheduled", c.CampaignCallScheduled(
            customer_id=f.customer_id, campaign_id=f.campaign_id, followup_id=f.followup_id, due_by=f.due_by,
            loyal=f.tier in ("gold", "silver"), campaign_kind=f.campaign_kind, vin=f.vin,  # type: ignore[arg-type]
        ), cause=cause, discriminator=f.followup_id)


def step_event(f: store.OpenFollowUp, **extra: Any) -> c.FollowUpTimerEvent:
    return c.FollowUpTimerEvent(followup_id=f.followup_id, kind=f.kind, customer_id=f.customer_id,  # type: ignore[arg-type]
                                vin=f.vin, due_from=f.due_from, due_by=f.due_by, dealer_id=f.dealer_id,
                                region=f.region, **extra)


# -- campaigns -------------------------------------------------------------------------------------
async def on_campaign_announced(uow: Uow, events: list[Event[c.CampaignAnnounced]]) -> None:
    """A call to each targeted customer (the campaign's regions, and models if it names them)
    14 days before it starts, loyal customers first; an amended campaign moves open calls."""
    r = uow.deps.rules
    await uow.batch(Projections).save()  # the targets are read from the tables: this poll's customers too
    for event in events:
        d = event.data
        await store.upsert_campaign(uow.conn, {
            "campaign_id": d.campaign_id, "kind": d.kind, "title": d.title, "starts_at": d.starts_at,
            "ends_at": d.ends_at, "regions": d.regions, "models": d.models, "loyal_first": d.loyal_first,
            "announced_at": event.occurred_at,
        })
        window = campaign_window(d.starts_at, event.occurred_at, r)
        if window is None:
            uow.log.info("campaign already started when announced; no calls", campaign_id=d.campaign_id)
            continue
        if d.vins is not None:  # a recall from quality: the owners of exactly these vehicles
            targets = await store.owners_of(uow.conn, d.vins)
            uow.log.info("recall campaign targets", campaign_id=d.campaign_id, vins=len(d.vins),
                         owners=len(targets), vins_without_owner_on_file=len(set(d.vins) - {t["vin"] for t in targets}))
        else:
            targets = await store.campaign_targets(uow.conn, d.regions, d.models)
        stats = await store.loyalty_stats(uow.conn, [t["customer_id"] for t in targets],
                                          add_months(event.occurred_at, -r.loyalty_window_months))
        items = []
        for t in targets:
            tier = loyalty_tier(*stats.get(t["customer_id"], (0, None, 0)), r) if d.loyal_first else "standard"
            f = NewFollowUp(
                followup_id=followup_id("campaign_call", f"{d.campaign_id}:{t['customer_id']}"), kind="campaign_call",
                customer_id=t["customer_id"], vin=t["vin"], dealer_id=t["dealer_id"], region=t["region"],
                campaign_id=d.campaign_id, reason_event_id=str(event.event_id), due_from=window.due_from,
                due_by=window.due_by, priority=priority("campaign_call", tier, r), timezone=t["timezone"],
                event_at=d.starts_at, tier=tier, campaign_kind=d.kind,
            )
            f = on_calling_days(uow.deps, f)
            items.append((event, f))
            step, at = next_step(None, f.due_from, f.due_by, r)
            if await store.reschedule_open(uow.conn, f.followup_id, f.due_from, f.due_by, step, at):
                # an amended campaign: the open call moves with it
                _announce(uow, f, event, discriminator=window.due_by.isoformat())
        await schedule(uow, items)


# -- complaints ------------------------------------------------------------------------------------
async def on_complaint_state(uow: Uow, events: list[Event[c.ComplaintEvent]]) -> None:
    """Open complaints keep a customer out of the loyal tiers; a resolution asks the customer
    whether it satisfied them; a closure ends a pending confirmation call."""
    state = {"ComplaintOpened": "open", "ComplaintReopened": "open", "ComplaintResolved": "resolved",
             "ComplaintClosed": "closed"}
    await store.upsert_complaints(uow.conn, [
        (e.data.complaint_id, e.data.customer_id, state.get(e.event_type, "open"), e.data.at) for e in events])
    for event in events:
        if event.event_type == "ComplaintResolved":
            await _confirm(uow, event)
        elif event.event_type == "ComplaintClosed":
            for f in await store.open_confirmations(uow.conn, event.data.complaint_id):
                await store.close_followups(uow.conn, [f.followup_id], "expired")
                uow.publish("FollowUpExpired", step_event(f), cause=event, discriminator=f.followup_id)
                uow.log.info("follow-up expired", followup_id=f.followup_id,
                             why="the complaint was closed before the confirmation call")


async def _confirm(uow: Uow, event: Event[Any]) -> None:
    """Resolved: the customer is contacted again to confirm the resolution satisfied them."""
    r = uow.deps.rules
    d = event.data
    if not d.customer_id:
        uow.log.warning("a resolved complaint names no customer; no confirmation call", complaint_id=d.complaint_id)
        return
    files = uow.batch(Projections)
    await files.load(customers=[d.customer_id])
    known = files.customers.get(d.customer_id)
    zone = {"region": known.region, "timezone": known.timezone} if known else {}
    window = confirmation_window(d.at, r)
    reason = f"{d.complaint_id}:{d.round if d.round is not None else event.event_id}"
    await schedule(uow, [(event, NewFollowUp(
        followup_id=followup_id("complaint_confirmation", reason), kind="complaint_confirmation",
        customer_id=d.customer_id, vin=getattr(d, "vin", None), complaint_id=d.complaint_id, region=zone.get("region"),
        reason_event_id=str(event.event_id), due_from=window.due_from, due_by=window.due_by,
        priority=r.priority_complaint_confirmation, timezone=zone.get("timezone") or "Asia/Shanghai", event_at=d.at,
    ))])


# -- deadlines kept on rows --------------------------------------------------------------------------
@dataclass
class FollowUpSteps:
    """A follow-up's deadlines: due at due_from (it enters the agents' queue), overdue at due_by
    (top of the queue), escalated to the supervisor 2 days later, expired 14 days after due_by.
    A clock that jumps past several fires each of them, in order."""

    name: str = "followup.step"

    async def claim(self, conn: Any, now: datetime, limit: int) -> list[store.OpenFollowUp]:
        return await store.due_steps(conn, now, limit)

    async def fire(self, uow: Uow, due: list[store.OpenFollowUp]) -> None:
        r, now = uow.deps.rules, uow.now()
        changes = []
        for f in due:
            step: Step | None = f.next_step  # type: ignore[assignment]
            at = f.next_step_at
            change: dict[str, Any] = {"followup_id": f.followup_id, "status": f.status, "overdue_at": f.overdue_at,
                                      "escalated_at": f.escalated_at}
            while step is not None and at is not None and at <= now and change["status"] in OPEN:
                cause = RowCause(f.scheduled_event_id or uuid5(uuid.NAMESPACE_URL, f.followup_id),
                                 f.correlation_id, f"step:{step}:{at.isoformat()}")
                if step == "due":
                    change["status"] = "due"
                    uow.publish("FollowUpDue", step_event(f), cause=cause)
                elif step == "overdue":
                    change["overdue_at"] = now
                    uow.publish("FollowUpOverdue", step_event(f), cause=cause)
                elif step == "escalate":
                    change["escalated_at"] = now
                    uow.publish("FollowUpEscalated", step_event(f, escalated_to=r.escalate_to), cause=cause)
                else:
                    change["status"] = "expired"
                    uow.publish("FollowUpExpired", step_event(f), cause=cause)
                step, at = next_step(step, f.due_from, f.due_by, r)
            change["next_step"], change["next_step_at"] = (step, at) if change["status"] in OPEN else (None, None)
            changes.append(change)
        await store.FOLLOWUPS.update(uow.conn, changes, key=("followup_id",),
                                     columns=("status", "overdue_at", "escalated_at", "next_step", "next_step_at"))

    async def park(self, conn: Any, row: store.OpenFollowUp, error: str) -> None:
        await store.close_followups(conn, [row.followup_id], None)

    async def backlog(self, conn: Any, now: datetime) -> int:
        return await store.due_count(conn, "followups", "next_step_at", now)


@dataclass
class MaintenanceReminders:
    """10 days before the next service: MaintenanceReminderDue (the notifier sends the SMS) and a
    reminder call in the queue."""

    name: str = "maintenance.remind"

    async def claim(self, conn: Any, now: datetime, limit: int) -> list[store.DueReminder]:
        return await store.due_reminders(conn, now, limit)

    async def fire(self, uow: Uow, due: list[store.DueReminder]) -> None:
        r, now = uow.deps.rules, uow.now()
        items = []
        for v in due:
            p = v.reminder
            cause = RowCause(v.remind_cause or uuid5(uuid.NAMESPACE_URL, v.vin), v.remind_correlation,
                             f"remind:{v.vin}:{v.remind_at.isoformat()}")
            estimated = datetime.fromisoformat(p["estimated_due_at"])
            fid = followup_id("maintenance_reminder", f"{v.vin}:{p['last_visit_at']}")
            uow.publish("MaintenanceReminderDue", c.MaintenanceReminderDue(
                vin=v.vin, customer_id=p["customer_id"], estimated_due_at=estimated, basis=p["basis"],
                due_at=datetime.fromisoformat(p["due_at"]) if p["due_at"] else None, due_km=p["due_km"],
                followup_id=fid), cause=cause)
            items.append((cause, NewFollowUp(
                followup_id=fid, kind="maintenance_reminder", customer_id=p["customer_id"], vin=v.vin,
                dealer_id=p["dealer_id"], region=p["region"], reason_event_id=str(cause.event_id), due_from=now,
                due_by=max(estimated, now + timedelta(days=1)), priority=r.priority_maintenance_reminder,
                timezone=p["timezone"] or "Asia/Shanghai", event_at=estimated,
            )))
        await store.clear_deadline(uow.conn, "vehicles", "vin", "remind_at", [v.vin for v in due])
        await schedule(uow, items)

    async def park(self, conn: Any, row: store.DueReminder, error: str) -> None:
        await store.clear_deadline(conn, "vehicles", "vin", "remind_at", [row.vin])

    async def backlog(self, conn: Any, now: datetime) -> int:
        return await store.due_count(conn, "vehicles", "remind_at", now)


@dataclass
class LostCustomerChecks:
    """No visit for 12 months: a lost-customer call asks why."""

    name: str = "customer.lost"

    async def claim(self, conn: Any, now: datetime, limit: int) -> list[Customer]:
        return await store.due_lost_checks(conn, now, limit)

    async def fire(self, uow: Uow, due: list[Customer]) -> None:
        r, now = uow.deps.rules, uow.now()
        items = []
        for customer in due:
            last = customer.last_contact_at
            if last is None or lost_after(last, r) > now:
                continue  # a visit since: the check moved
            assert customer.lost_check_at is not None
            cause = RowCause(customer.lost_cause or uuid5(uuid.NAMESPACE_URL, customer.customer_id),
                             customer.lost_correlation, f"lost:{customer.customer_id}:{customer.lost_check_at.isoformat()}")
            window = lost_window(now, r)
            items.append((cause, NewFollowUp(
                followup_id=followup_id("lost_customer", f"{customer.customer_id}:{last.isoformat()}"),
                kind="lost_customer", customer_id=customer.customer_id, region=customer.region,
                reason_event_id=str(cause.event_id), due_from=window.due_from, due_by=window.due_by,
                priority=r.priority_lost_customer, timezone=customer.timezone or "Asia/Shanghai", event_at=last,
            )))
        await store.clear_deadline(uow.conn, "customers", "customer_id", "lost_check_at",
                                   [customer.customer_id for customer in due])
        await schedule(uow, items)

    async def park(self, conn: Any, row: Customer, error: str) -> None:
        await store.clear_deadline(conn, "customers", "customer_id", "lost_check_at", [row.customer_id])

    async def backlog(self, conn: Any, now: datetime) -> int:
        return await store.due_count(conn, "customers", "lost_check_at", now)


DEADLINES = (FollowUpSteps(), MaintenanceReminders(), LostCustomerChecks())


# -- the weekly report (a kernel timer) ------------------------------------------------------------------
WEEKLY_REPORT = "report.weekly"


async def on_weekly_report(uow: Uow, timers: list[Timer]) -> None:
    """Every Monday: visits done and missed, satisfaction, feedback by category, per region,
    dealer and agent, sent to the departments in writing (by the notifier)."""
    r = uow.deps.rules
    for timer in timers:
        until = timer.due_at
        since = until - timedelta(days=7)
        began = local(since, r.weekly_report_timezone)  # the report zone's week: UTC's may still be Sunday
        week = iso_week(began)
        figures = await store.weekly_figures(uow.conn, since, until, r.satisfied_score)
        figures["feedback_items"] = await feedback_figures(uow.conn, since, until)  # the week's concerns
        figures["lost_reasons"] = await store.lost_reasons(uow.conn, since, until)  # why lost customers left
        figures["period"] = {"from": since.isoformat(), "to": until.isoformat()}
        # headline rates, the trend against the 4 weeks before, the customers' words by department
        figures |= await weekly.report(uow.conn, since, until, r.satisfied_score, report_departments(r))
        if await store.save_weekly_report(uow.conn, week, uow.now(), figures):
            uow.publish("FollowUpWeeklyReport", c.WeeklyReport(week=week, week_start=week_start(began),
                                                               generated_at=uow.now(), figures=figures),
                        cause=timer, occurred_at=until)
            for department in figures["voices"]:  # each other department: its own part only
                if department != weekly.REPORT_OWNER:
                    uow.publish("FollowUpDepartmentReport", c.WeeklyReport(
                        week=week, week_start=week_start(began), generated_at=uow.now(), department=department,
                        figures=weekly.department_part(figures, department)), cause=timer, occurred_at=until,
                        discriminator=department)
        following = next_weekly_report(until, r)
        uow.schedule_timer(WEEKLY_REPORT, iso_week(following - timedelta(days=7)), following)


async def feedback_figures(conn: Any, since: datetime, until: datetime) -> dict[str, Any]:
    """The week's feedback items (opened, answered in time, departments notified) for the report."""
    from services.followup.feedback_items import figures  # it schedules its calls through this module

    return await figures(conn, since, until)


def report_departments(r: FollowUpRules) -> list[str]:
    """The departments the feedback items are routed to: each gets its part every week."""
    return sorted({*r.feedback_departments.values(), r.feedback_department_fallback})


def ensure_weekly_report(uow: Uow) -> None:
    """Arm the next weekly report (once; a running schedule keeps itself going)."""
    following = next_weekly_report(uow.now(), uow.deps.rules)
    uow.schedule_timer(WEEKLY_REPORT, iso_week(following - timedelta(days=7)), following)


TIMERS = {WEEKLY_REPORT: on_weekly_report}

__all__ = ["DEADLINES", "TIMERS", "Projections", "ensure_weekly_report", "schedule", "step_event"]
