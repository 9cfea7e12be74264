"""Canonical events for the quality tests, shaped as intake and complaints publish them
(validated against the catalog, caused by an upstream event whose correlation they carry)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.events import COMPLAINTS, INTAKE, spec_for
from tools.simulate import Fleet, Vehicle, envelope


def canonical(topic: str, event_type: str, key: str, data: dict[str, Any], occurred_at: datetime,
              source: str) -> dict[str, Any]:
    spec = spec_for(topic, event_type)
    assert spec is not None, f"{event_type} is not in the catalog for {topic}"
    spec.validate(data)  # a broken fixture fails here, not in the service
    upstream = uuid.uuid4()
    env = envelope(event_type, key, data, occurred_at, source)
    env["causation_id"], env["correlation_id"] = str(upstream), str(upstream)
    return env


def vehicle(fleet: Fleet, sold_at: datetime, *, model: str | None = None, **overrides: dict[str, str]) -> Vehicle:
    """A fleet vehicle; `controller={"batch": "B-1", "supplier_id": "SUP-A"}` pins a part's origin."""
    v = fleet.vehicle(sold_at)
    if model:
        v.model = model
    for part in v.parts:
        part.update(overrides.get(part["category"], {}))
    return v


def vehicle_sold(fleet: Fleet, v: Vehicle) -> dict[str, Any]:
    data = fleet.sale(v)["data"]
    return canonical(INTAKE, "VehicleSold", v.vin, data, v.sold_at, "intake")


def part_of(v: Vehicle, category: str) -> dict[str, str]:
    return next(p for p in v.parts if p["category"] == category)


def defect_reported(v: Vehicle, category: str, failure_mode: str, reported_at: datetime, report_id: str,
                    **overrides: Any) -> dict[str, Any]:
    part = part_of(v, category)
    data = {
        "report_id": report_id, "part_no": part["part_no"], "category": category, "batch": part["batch"],
        "supplier_id": part["supplier_id"], "model": v.model, "vin": v.vin, "failure_mode": failure_mode,
        "mileage_km": 8_000, "reported_by": "dealer", "reported_at": reported_at.isoformat(), **overrides,
    }
    return canonical(INTAKE, "PartDefectReported", v.vin, data, reported_at, "intake")


def complaint_defect(vin: str, category: str, failure_mode: str, reported_at: datetime, report_id: str,
                     **extra: Any) -> dict[str, Any]:
    """As complaints publishes it: the category and the vehicle, no batch or supplier."""
    data = {"report_id": report_id, "category": category, "vin": vin, "failure_mode": failure_mode,
            "reported_at": reported_at.isoformat(), "complaint_id": f"C-{report_id}", **extra}
    return canonical(COMPLAINTS, "PartDefectReported", vin, data, reported_at, "complaints")


def complaint_opened(complaint_id: str, category: str, filed_at: datetime, part_category: str | None = None
                     ) -> dict[str, Any]:
    data = {
        "complaint_id": complaint_id, "customer_id": "CUST-1", "at": filed_at.isoformat(), "channel": "hotline",
        "category": category, "severity": "medium", "department": "quality", "description": "the car stalls",
        "filed_at": filed_at.isoformat(), "ack_due_at": filed_at.isoformat(), "resolve_due_at": filed_at.isoformat(),
        "part_category": part_category,
    }
    return canonical(COMPLAINTS, "ComplaintOpened", complaint_id, data, filed_at, "complaints")


def part_shipped(shipment_id: str, dealer_id: str, shipped_at: datetime, lines: int) -> dict[str, Any]:
    data = {
        "shipment_id": shipment_id, "order_id": f"O-{shipment_id}", "dealer_id": dealer_id,
        "shipped_at": shipped_at.isoformat(),
        "lines": [{"line_no": n, "part_no": f"P-{n:03d}", "category": "controller", "qty": 2, "batch": "B-1",
                   "supplier_id": "SUP-A"} for n in range(1, lines + 1)],
    }
    return canonical(INTAKE, "PartShipped", shipment_id, data, shipped_at, "intake")


def shipment_discrepancy(shipment_id: str, line_no: int, kind: str, reported_at: datetime) -> dict[str, Any]:
    data = {"shipment_id": shipment_id, "line_no": line_no, "kind": kind, "reported_at": reported_at.isoformat()}
    return canonical(INTAKE, "PartShipmentDiscrepancy", shipment_id, data, reported_at, "intake")
