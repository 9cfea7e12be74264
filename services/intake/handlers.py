"""Intake's handlers: one per upstream event type, all the same shape. For a batch of events
from one poll: say what it needs, load those files (`store.load`), apply each event in order
with the domain rules (`FileSet.apply_*`), save what changed, and publish the canonical events.

`precheck` holds the checks that need no files (the VIN check digit); the webhook runs it too,
so an event refused over HTTP is refused for the same reason it would be on Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from services.intake import erasure, store
from services.intake.config import IntakeDeps, IntakeRules
from services.intake.domain import FileSet, Output, Rejected, derived_customer_id, verify_vin
from services.intake.store import Needs
from shared import metrics
from shared.errors import PermanentError
from shared.events import Event
from shared.events import upstream as u
from shared.uow import UnitOfWork

T = TypeVar("T")
Uow = UnitOfWork[IntakeDeps]


def precheck(event_type: str, data: Any, intake_rules: IntakeRules) -> None:
    """Checks that need no customer files. Raises Rejected with a field-naming reason."""
    for name in ("vin",):
        vin = getattr(data, name, None)
        if vin:
            try:
                verify_vin(vin, intake_rules.vin_check_digit_regions)
            except ValueError as exc:
                raise Rejected(f"data.{name}: {exc}") from None


# What each event type needs loaded, and how it is applied.
def _needs_customer(info: u.CustomerInfo, n: Needs) -> None:
    if info.phone:
        n.phones.add(info.phone)
    if info.customer_id:
        n.customer_ids.add(info.customer_id)
    elif not info.phone and info.invalid_contacts and "phone" in info.invalid_contacts:
        n.customer_ids.add(derived_customer_id(info.invalid_contacts["phone"].value))  # known by a bad number


def _needs_sale(d: u.VehicleSold, n: Needs) -> None:
    n.vins.add(d.vin)
    n.first_pickups.add(d.vin)
    _needs_customer(d.customer, n)


def _needs_pickup(d: u.VehiclePickedUp, n: Needs) -> None:
    n.vins.add(d.vin)
    n.repair_orders.add(d.repair_order_id)
    _needs_customer(d.customer, n)


def _needs_named(customer_id: str | None, phone: str | None, fact: tuple[str, str], n: Needs) -> None:
    """A fact filed once (by its reference) about a customer named by id or phone."""
    if customer_id:
        n.customer_ids.add(customer_id)
    if phone:
        n.phones.add(phone)
    n.facts.add(fact)


def _needs_consultation(d: u.ConsultationRecorded, n: Needs) -> None:
    _needs_named(d.customer_id, d.phone, ("consultation", d.consultation_id), n)


def _needs_receipt(d: u.ReceiptReturned, n: Needs) -> None:
    n.vins.add(d.vin)
    n.repair_orders.add(d.repair_order_id)
    n.receipts.add(d.receipt_id)


def _needs_customer_update(d: u.CustomerUpdatedUpstream | u.CustomerContactCorrected, n: Needs) -> None:
    n.customer_ids.add(d.customer_id)
    if d.phone:
        n.phones.add(d.phone)


def _needs_complaint(d: u.ComplaintFiled, n: Needs) -> None:
    _needs_named(d.customer_id, d.phone, ("complaint", d.complaint_ref), n)
    if d.vin:
        n.vins.add(d.vin)  # the vehicle's dealer and region go on the canonical event
    n.last_visits = True  # else the dealer of the customer's latest visit


def _needs_shipment(d: u.PartShipped, n: Needs) -> None:
    n.shipments.add(d.shipment_id)
    n.facts.add(("PartShipped", d.shipment_id))


def _needs_discrepancy(d: u.PartShipmentDiscrepancy, n: Needs) -> None:
    n.shipments.add(d.shipment_id)
    n.facts.add(("PartShipmentDiscrepancy", f"{d.shipment_id}:{d.line_no}:{d.kind}"))


def _needs_defect(d: u.PartDefectReported, n: Needs) -> None:
    n.facts.add(("PartDefectReported", d.report_id))


def _needs_campaign(d: u.CampaignAnnounced, n: Needs) -> None:
    n.facts.add(("CampaignAnnounced", d.campaign_id))


Apply = Callable[[FileSet, Event[T], datetime], list[Output]]
Handler = Callable[[Uow, list[Event[T]]], Awaitable[None]]


def _handler(needs: Callable[[T, Needs], None], apply: Apply[T]) -> Handler[T]:
    """Every intake handler is the same: check, say what the batch needs, load those files,
    apply the events in order, save what changed, publish the canonical events."""
    async def handle(uow: Uow, events: list[Event[T]]) -> None:
        intake_rules = uow.deps.rules
        for event in events:
            try:
                precheck(event.event_type, event.data, intake_rules)
            except Rejected as rejected:
                raise PermanentError(rejected.reason, "ValidationFailed") from None
        # An erasure waits for this batch (and this batch for an erasure under way): a fact about
        # an erased customer that occurred before the erasure is filed without its personal fields.
        await uow.conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", erasure.LOCK)
        erased = await erasure.erased_among(uow.conn, {n for e in events for n in erasure.named_ids(e.data)})
        guarded: dict[uuid.UUID, erasure.Erased] = {}
        for event in events:
            if (hit := erasure.erasure_of(event.data, event.occurred_at, erased)) is not None:
                guarded[event.event_id] = hit
        events = [erasure.strip(e, guarded[e.event_id]) if e.event_id in guarded else e for e in events]
        wanted = Needs()
        for event in events:
            needs(event.data, wanted)
        files = await store.load(uow.conn, wanted)
        files.future_tolerance = timedelta(hours=intake_rules.future_tolerance_hours)
        events = await _guard_receipts(uow, files, events, guarded)
        now = uow.now()
        for event in events:
            files.event_id = event.event_id
            try:
                outputs = apply(files, event, now)
            except Rejected as rejected:
                raise PermanentError(rejected.reason, "ValidationFailed") from None
            if event.event_id in guarded:
                outputs = [erasure.stripped_output(o) for o in outputs]
            for output in outputs:
                # the canonical form of a record validated on the way in, with the fields a newer producer added
                uow.publish(output.event_type, output.data, cause=event, occurred_at=output.at, checked=True)
        await store.save(uow.conn, files)

    return handle


async def _guard_receipts(uow: Uow, files: FileSet, events: list[Event[T]],
                          guarded: dict[uuid.UUID, erasure.Erased]) -> list[Event[T]]:
    """A receipt names no customer: it is their repair order's (or vehicle's) customer's."""
    owners: dict[uuid.UUID, str] = {}
    for event in events:
        d = event.data
        if isinstance(d, u.ReceiptReturned):
            visit = files.visits.get(d.repair_order_id)
            vehicle = files.vehicles.get(d.vin)
            owner = (visit or {}).get("customer_id") or (vehicle.values.get("customer_id") if vehicle else None)
            if owner:
                owners[event.event_id] = owner
    if not owners:
        return events
    erased = await erasure.erased_among(uow.conn, set(owners.values()))
    for event in events:
        if event.event_id in owners and (hit := erasure.erasure_of(
                event.data, event.occurred_at, erased, owners[event.event_id])) is not None:
            guarded[event.event_id] = hit
    return [erasure.strip(e, guarded[e.event_id]) if e.event_id in owners and e.event_id in guarded else e
            for e in events]


def _flagged(outputs: list[Output], event: Event[u.VehicleSold] | Event[u.VehiclePickedUp]) -> list[Output]:
    """Counts a record filed with a contact value that failed its check (the metric operators watch)."""
    if outputs:
        for name in event.data.customer.invalid_contacts or {}:
            metrics.CONTACT_VALUES_FLAGGED.labels(name, event.event_type).inc()
    return outputs


on_vehicle_sold = _handler(_needs_sale, lambda f, e, now: _flagged(f.apply_sale(e.data, now), e))
on_vehicle_picked_up = _handler(_needs_pickup, lambda f, e, now: _flagged(f.apply_pickup(e.data, now), e))
on_consultation = _handler(_needs_consultation, lambda f, e, now: f.apply_consultation(e.data, now))
on_contact_corrected = _handler(_needs_customer_update, lambda f, e, now: f.apply_contact_correction(e.data, now))
on_receipt_returned = _handler(_needs_receipt, lambda f, e, now: f.apply_receipt(e.data, now))
on_customer_updated = _handler(
    _needs_customer_update, lambda f, e, now: f.apply_customer_update(e.data, e.occurred_at, now))
on_complaint_filed = _handler(_needs_complaint, lambda f, e, now: f.apply_complaint(e.data, now))
on_part_shipped = _handler(_needs_shipment, lambda f, e, now: f.apply_shipment(e.data, now))
on_shipment_discrepancy = _handler(_needs_discrepancy, lambda f, e, now: f.apply_discrepancy(e.data, now))
on_part_defect_reported = _handler(
    _needs_defect, lambda f, e, now: f.pass_through("PartDefectReported", e.data.report_id, e.data, e.data.reported_at))
on_campaign_announced = _handler(
    _needs_campaign, lambda f, e, now: f.pass_through("CampaignAnnounced", e.data.campaign_id, e.data, e.occurred_at))

HANDLERS: dict[str, dict[str, Handler[Any]]] = {
    "upstream.sales": {"VehicleSold": on_vehicle_sold},
    "upstream.dms": {"VehiclePickedUp": on_vehicle_picked_up, "ReceiptReturned": on_receipt_returned},
    "upstream.erp": {
        "PartShipped": on_part_shipped, "PartShipmentDiscrepancy": on_shipment_discrepancy,
        "PartDefectReported": on_part_defect_reported,
    },
    "upstream.crm": {
        "ComplaintFiled": on_complaint_filed, "CampaignAnnounced": on_campaign_announced,
        "CustomerUpdated": on_customer_updated, "ConsultationRecorded": on_consultation,
        "CustomerContactCorrected": on_contact_corrected,
    },
}
