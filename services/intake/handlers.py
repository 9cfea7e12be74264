"""Intake's handlers: one per upstream event type. Load → domain → store + outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.errors import PermanentError
from shared.timeutil import add_months
from shared.events import Event
from shared.events.catalog import CustomerInfo, VehiclePickedUp
from shared.uow import UnitOfWork

from services.intake import store
from services.intake.config import IntakeRules
from services.intake.domain import Change, Record, customer_fields, derived_customer_id, verify_vin

def rules(uow: UnitOfWork) -> IntakeRules:
    return uow.state["rules"]  # type: ignore[no-any-return]


def _check_vin(uow: UnitOfWork, vin: str, field: str = "data.vin") -> None:
    try:
        verify_vin(vin, rules(uow).vin_check_digit_regions)
    except ValueError as exc:
        raise PermanentError(f"{field}: {exc}", "ValidationFailed") from None


async def resolve_customer(
    uow: UnitOfWork, info: CustomerInfo, at: datetime, event: Event[Any]
) -> tuple[Record, bool, list[Change]]:
    """Match by customer_id, else by normalised phone; create the file from whatever comes
    first; merge the stated fields by world time. Publishes CustomerRegistered for a new file
    and CustomerUpdated only when something really changed."""
    record: Record | None = None
    if info.customer_id:
        record = await store.get_customer(uow.conn, info.customer_id)
    if record is None and info.phone:
        record = await store.find_customer_by_phone(uow.conn, info.phone)
    created = record is None
    if record is None:
        record = Record(key=info.customer_id or derived_customer_id(info.phone))
    changes = record.merge(customer_fields(info), at)
    await store.save_customer(
        uow.conn, record, created=created, at=at, source=event.event_type, changes=changes, event_id=event.event_id
    )
    if created:
        uow.publish(
            "CustomerRegistered",
            {"customer_id": record.key, **record.values, "registered_from": event.event_type},
            cause=event, occurred_at=at,
        )
    elif changes:
        uow.publish(
            "CustomerUpdated",
            {
                "customer_id": record.key,
                "changes": {c.field: {"old": c.old, "new": c.new} for c in changes},
                **record.values,
            },
            cause=event, occurred_at=at,
        )
    return record, created, changes


async def on_vehicle_picked_up(uow: UnitOfWork, events: list[Event[VehiclePickedUp]]) -> None:
    for event in events:
        d = event.data
        _check_vin(uow, d.vin)
        at = d.picked_up_at
        vehicle = await store.get_vehicle(uow.conn, d.vin)
        sold_at = vehicle.values.get("sold_at") if vehicle else None
        if sold_at is not None and at < sold_at:
            raise PermanentError(
                f"data.picked_up_at {at.isoformat()} is before the vehicle was sold ({sold_at.isoformat()}); "
                "a pickup must come after the sale",
                "ValidationFailed",
            )
        customer, _, _ = await resolve_customer(uow, d.customer, at, event)
        created = vehicle is None
        vehicle = vehicle or Record(key=d.vin)
        vehicle.merge({"customer_id": customer.key, "plate": d.plate, "model": d.model}, at)
        await store.save_vehicle(uow.conn, vehicle, created=created, at=at)
        visit = {
            "repair_order_id": d.repair_order_id, "vin": d.vin, "customer_id": customer.key, "dealer_id": d.dealer_id,
            "picked_up_at": at, "service_type": d.service_type, "items": [i.model_dump(mode="json") for i in d.items],
            "mileage_km": d.mileage_km, "advisor_id": d.advisor_id, "next_service_due_at": d.next_service_due_at,
            "next_service_due_km": d.next_service_due_km,
        }
        if not await store.insert_visit(uow.conn, visit, event.event_id):
            uow.log.info("repair order already on file; not re-published", repair_order_id=d.repair_order_id)
            continue
        v = vehicle.values
        canonical = d.model_dump(mode="json")
        canonical["customer"] = {**canonical["customer"], "customer_id": customer.key}
        canonical.update(
            model=d.model or v.get("model"),
            plate=d.plate or v.get("plate"),
            sold_at=v["sold_at"].isoformat() if v.get("sold_at") else None,
            warranty_months=v.get("warranty_months"),
            warranty_km=v.get("warranty_km"),
            under_warranty=under_warranty(v, at, d.mileage_km),
            region=d.customer.region,
        )
        uow.publish("VehiclePickedUp", canonical, cause=event, occurred_at=at)


def under_warranty(vehicle: dict[str, Any], at: datetime, mileage_km: int) -> bool | None:
    """Within sold_at + warranty_months and under warranty_km; None when the sale is not known yet."""
    sold_at, months, km = vehicle.get("sold_at"), vehicle.get("warranty_months"), vehicle.get("warranty_km")
    if sold_at is None or months is None or km is None:
        return None
    return at < add_months(sold_at, months) and mileage_km < km
