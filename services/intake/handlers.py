"""Intake's handlers: one per upstream event type. Each takes the batch of its events from one
partition: load the files they touch, apply the rules in order, store, and publish."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import PermanentError
from shared.events import Event
from shared.events.catalog import CustomerInfo, VehiclePickedUp
from shared.timeutil import add_months
from shared.uow import UnitOfWork

from services.intake import store
from services.intake.config import IntakeRules
from services.intake.domain import Change, CustomerBook, Record, customer_fields, verify_vin


def rules(uow: UnitOfWork) -> IntakeRules:
    return uow.state["rules"]  # type: ignore[no-any-return]


def _check_vin(uow: UnitOfWork, vin: str, field: str = "data.vin") -> None:
    try:
        verify_vin(vin, rules(uow).vin_check_digit_regions)
    except ValueError as exc:
        raise PermanentError(f"{field}: {exc}", "ValidationFailed") from None


@dataclass
class Files:
    """The customer and vehicle files one batch touches: loaded once, changed in memory in
    event order, written back once."""

    uow: UnitOfWork
    customers: CustomerBook = field(default_factory=CustomerBook)
    vehicles: dict[str, Record] = field(default_factory=dict)
    history: list[tuple[str, Change, datetime, uuid.UUID]] = field(default_factory=list)

    async def load(self, *, customer_ids: set[str], phones: set[str], vins: set[str]) -> None:
        for record in await store.load_customers(self.uow.conn, customer_ids, phones):
            self.customers.add(record)
        self.vehicles.update(await store.load_vehicles(self.uow.conn, vins))

    def customer(self, info: CustomerInfo, at: datetime, event: Event[Any]) -> Record:
        """Match, create or update the customer's file; publish CustomerRegistered for a new
        file and CustomerUpdated only when something really changed."""
        record, created, changes = self.customers.resolve(
            info.customer_id, info.phone, customer_fields(info), at, event.event_type
        )
        self.history.extend((record.key, c, at, event.event_id) for c in changes)
        if created:
            self.uow.publish(
                "CustomerRegistered",
                {"customer_id": record.key, **record.values, "registered_from": event.event_type},
                cause=event, occurred_at=at,
            )
        elif changes:
            self.uow.publish(
                "CustomerUpdated",
                {"customer_id": record.key, "changes": {c.field: {"old": c.old, "new": c.new} for c in changes},
                 **record.values},
                cause=event, occurred_at=at,
            )
        return record

    def vehicle(self, vin: str) -> Record:
        if vin not in self.vehicles:
            self.vehicles[vin] = Record(key=vin, is_new=True)
        return self.vehicles[vin]

    def update_vehicle(self, vin: str, values: dict[str, Any], at: datetime) -> Record:
        record = self.vehicle(vin)
        if record.merge(values, at) or record.is_new:
            record.touch(at)
        return record

    async def save(self) -> None:
        await store.save_customers(self.uow.conn, self.customers.records.values())
        await store.save_history(self.uow.conn, self.history)
        await store.save_vehicles(self.uow.conn, self.vehicles.values())


async def on_vehicle_picked_up(uow: UnitOfWork, events: list[Event[VehiclePickedUp]]) -> None:
    for event in events:
        _check_vin(uow, event.data.vin)
    files = Files(uow)
    await files.load(
        customer_ids={e.data.customer.customer_id for e in events if e.data.customer.customer_id},
        phones={e.data.customer.phone for e in events},
        vins={e.data.vin for e in events},
    )
    on_file = await store.existing_repair_orders(uow.conn, [e.data.repair_order_id for e in events])
    visits: list[dict[str, Any]] = []
    for event in events:
        d = event.data
        at = d.picked_up_at
        sold_at = files.vehicles[d.vin].values.get("sold_at") if d.vin in files.vehicles else None
        if sold_at is not None and at < sold_at:
            raise PermanentError(
                f"data.picked_up_at {at.isoformat()} is before the vehicle was sold ({sold_at.isoformat()}); "
                "a pickup must come after the sale",
                "ValidationFailed",
            )
        if d.repair_order_id in on_file:
            uow.log.info("repair order already on file; not re-published", repair_order_id=d.repair_order_id)
            continue
        on_file.add(d.repair_order_id)
        customer = files.customer(d.customer, at, event)
        vehicle = files.update_vehicle(d.vin, {"customer_id": customer.key, "plate": d.plate, "model": d.model}, at)
        visits.append({
            "repair_order_id": d.repair_order_id, "vin": d.vin, "customer_id": customer.key, "dealer_id": d.dealer_id,
            "picked_up_at": at, "service_type": d.service_type, "items": [i.model_dump(mode="json") for i in d.items],
            "mileage_km": d.mileage_km, "advisor_id": d.advisor_id, "next_service_due_at": d.next_service_due_at,
            "next_service_due_km": d.next_service_due_km, "event_id": event.event_id,
        })
        v = vehicle.values
        canonical = d.model_dump(mode="json")
        canonical["customer"]["customer_id"] = customer.key
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
    await files.save()
    await store.insert_visits(uow.conn, visits)


def under_warranty(vehicle: dict[str, Any], at: datetime, mileage_km: int) -> bool | None:
    """Within sold_at + warranty_months and under warranty_km; None when the sale is not known yet."""
    sold_at, months, km = vehicle.get("sold_at"), vehicle.get("warranty_months"), vehicle.get("warranty_km")
    if sold_at is None or months is None or km is None:
        return None
    return at < add_months(sold_at, months) and mileage_km < km
