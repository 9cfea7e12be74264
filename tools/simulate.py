"""The traffic generator the demo, the benchmarks and the tests use: realistic upstream
events for a dealer network (valid VINs with check digits, Chinese mobile numbers, regions,
dealers), published to the upstream topics as the real producers would."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from shared.validation import with_check_digit

CST = timezone(timedelta(hours=8))
REGIONS = ("east", "south", "north", "west", "central")
MODELS = ("EV-100", "EV-200", "Cargo-3T", "Cargo-5T", "City-S")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
PART_CATEGORIES = ("motor", "controller", "rear_axle", "differential", "frame", "front_shock_absorber", "rim_welding",
                   "battery", "brake_pad", "wiper")
SUPPLIERS = ("SUP-A", "SUP-B", "SUP-C", "SUP-D")
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def envelope(event_type: str, key: str, data: dict[str, Any], occurred_at: datetime, source: str,
             event_id: uuid.UUID | None = None) -> dict[str, Any]:
    event_id = event_id or uuid.uuid4()
    return {
        "event_id": str(event_id), "event_type": event_type, "schema_version": 1,
        "occurred_at": occurred_at.isoformat(), "source": source, "correlation_id": str(event_id),
        "causation_id": None, "key": key, "data": data,
    }


def encode(env: dict[str, Any]) -> bytes:
    return orjson.dumps(env)


@dataclass
class Customer:
    customer_id: str
    name: str
    phone: str
    address: str
    region: str
    email: str | None = None

    def info(self) -> dict[str, Any]:
        info = {"customer_id": self.customer_id, "name": self.name, "phone": self.phone, "address": self.address,
                "region": self.region}
        if self.email:
            info["email"] = self.email
        return info


@dataclass
class Vehicle:
    vin: str
    model: str
    plate: str
    customer: Customer
    dealer_id: str
    sold_at: datetime
    parts: list[dict[str, str]] = field(default_factory=list)


class Fleet:
    """A seeded, reproducible dealer network."""

    def __init__(self, seed: int = 7, dealers: int = 20) -> None:
        self.rng = random.Random(seed)
        self.dealers = [f"D{n:03d}" for n in range(1, dealers + 1)]
        self._serial = 0

    def vin(self) -> str:
        body = "LJ1" + "".join(self.rng.choice(_VIN_CHARS) for _ in range(14))
        return with_check_digit(body)

    def phone(self) -> str:
        return "+86" + self.rng.choice(("138", "139", "150", "186", "177")) + "".join(
            self.rng.choice(string.digits) for _ in range(8)
        )

    def customer(self) -> Customer:
        self._serial += 1
        region = self.rng.choice(REGIONS)
        name = self.rng.choice(SURNAMES) + "".join(self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2))))
        return Customer(
            customer_id=f"CUST-{self._serial:07d}-{self.rng.randrange(16**4):04x}",
            name=name,
            phone=self.phone(),
            address=f"{region} district, road {self.rng.randrange(1, 999)}",
            region=region,
            email=f"c{self._serial}@example.cn" if self.rng.random() < 0.6 else None,
        )

    def vehicle(self, sold_at: datetime, customer: Customer | None = None) -> Vehicle:
        customer = customer or self.customer()
        parts = [
            {"category": c, "part_no": f"P-{c[:4].upper()}-{self.rng.randrange(10, 99)}",
             "batch": f"B{sold_at:%y%m}-{self.rng.randrange(1, 6)}", "supplier_id": self.rng.choice(SUPPLIERS)}
            for c in PART_CATEGORIES[:7]
        ]
        return Vehicle(
            vin=self.vin(), model=self.rng.choice(MODELS),
            plate=f"沪A{self.rng.randrange(10000, 99999)}", customer=customer,
            dealer_id=self.rng.choice(self.dealers), sold_at=sold_at, parts=parts,
        )

    # -- upstream events ----------------------------------------------------------------
    def sale(self, vehicle: Vehicle) -> dict[str, Any]:
        data = {
            "sale_id": f"S-{vehicle.vin[-8:]}", "vin": vehicle.vin, "model": vehicle.model,
            "sold_at": vehicle.sold_at.isoformat(), "dealer_id": vehicle.dealer_id, "region": vehicle.customer.region,
            "warranty_months": 36, "warranty_km": 100_000, "customer": vehicle.customer.info(),
            "parts": vehicle.parts, "plate": vehicle.plate,
        }
        return envelope("VehicleSold", vehicle.vin, data, vehicle.sold_at, "sales")

    def pickup(self, vehicle: Vehicle, picked_up_at: datetime, *, mileage_km: int | None = None,
               service_type: str = "maintenance", repair_order_id: str | None = None) -> dict[str, Any]:
        data = {
            "repair_order_id": repair_order_id or f"RO-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}",
            "vin": vehicle.vin, "dealer_id": vehicle.dealer_id, "picked_up_at": picked_up_at.isoformat(),
            "service_type": service_type,
            "items": [{"code": "M-OIL", "description": "oil and filter change", "part_category": None}],
            "mileage_km": mileage_km if mileage_km is not None else self.rng.randrange(1_000, 60_000),
            "advisor_id": f"SA-{self.rng.randrange(1, 40):02d}",
            "customer": vehicle.customer.info(), "plate": vehicle.plate, "model": vehicle.model,
        }
        return envelope("VehiclePickedUp", vehicle.vin, data, picked_up_at, "dms")

    def pickups(self, count: int, start: datetime) -> Iterable[dict[str, Any]]:
        for i in range(count):
            vehicle = self.vehicle(start - timedelta(days=self.rng.randrange(30, 700)))
            yield self.pickup(vehicle, start + timedelta(seconds=i))

    def receipt(self, pickup_env: dict[str, Any], returned_at: datetime, rating: int | None = None,
                comments: str | None = None) -> dict[str, Any]:
        d = pickup_env["data"]
        data = {"receipt_id": f"RC-{d['repair_order_id'][3:]}", "repair_order_id": d["repair_order_id"],
                "vin": d["vin"], "returned_at": returned_at.isoformat(),
                "rating": rating if rating is not None else self.rng.choices([5, 4, 3, 2], [70, 24, 4, 2])[0],
                "comments": comments}
        return envelope("ReceiptReturned", d["vin"], data, returned_at, "dms")

    def shipment(self, dealer_id: str, shipped_at: datetime, lines: int = 4, batch: str | None = None,
                 category: str | None = None) -> dict[str, Any]:
        shipment_id = f"SH-{self.rng.getrandbits(40):010x}"
        data = {
            "shipment_id": shipment_id, "order_id": f"PO-{self.rng.getrandbits(32):08x}", "dealer_id": dealer_id,
            "shipped_at": shipped_at.isoformat(),
            "lines": [
                {"line_no": n, "part_no": f"P-{self.rng.randrange(100, 999)}",
                 "category": category or self.rng.choice(PART_CATEGORIES), "qty": self.rng.randrange(1, 20),
                 "batch": batch or f"B{shipped_at:%y%m}-{self.rng.randrange(1, 6)}",
                 "supplier_id": self.rng.choice(SUPPLIERS)}
                for n in range(1, lines + 1)
            ],
        }
        return envelope("PartShipped", shipment_id, data, shipped_at, "erp")

    def discrepancy(self, shipment_env: dict[str, Any], line_no: int, kind: str, reported_at: datetime) -> dict[str, Any]:
        data = {"shipment_id": shipment_env["data"]["shipment_id"], "line_no": line_no, "kind": kind,
                "reported_at": reported_at.isoformat()}
        return envelope("PartShipmentDiscrepancy", data["shipment_id"], data, reported_at, "erp")

    def defect(self, vehicle: Vehicle, category: str, reported_at: datetime, failure_mode: str = "no_start",
               reported_by: str = "dealer", mileage_km: int | None = None) -> dict[str, Any]:
        part = next((p for p in vehicle.parts if p["category"] == category), None)
        data = {
            "report_id": f"DR-{self.rng.getrandbits(48):012x}", "part_no": part["part_no"] if part else "P-UNKNOWN",
            "category": category, "batch": part["batch"] if part else "B-UNKNOWN",
            "supplier_id": part["supplier_id"] if part else "SUP-A", "model": vehicle.model, "vin": vehicle.vin,
            "failure_mode": failure_mode, "mileage_km": mileage_km, "reported_by": reported_by,
            "reported_at": reported_at.isoformat(),
        }
        return envelope("PartDefectReported", vehicle.vin, data, reported_at, "erp")

    def complaint(self, customer: Customer, filed_at: datetime, description: str, *, vin: str | None = None,
                  channel: str = "hotline", category: str | None = None, by_phone_only: bool = False,
                  part_category: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "complaint_ref": f"CRM-{self.rng.getrandbits(40):010x}", "channel": channel,
            "description": description, "filed_at": filed_at.isoformat(), "vin": vin, "category": category,
            "part_category": part_category,
        }
        if by_phone_only:
            data["phone"] = customer.phone
        else:
            data["customer_id"] = customer.customer_id
        key = customer.phone if by_phone_only else customer.customer_id
        return envelope("ComplaintFiled", key, data, filed_at, "crm")

    def campaign(self, kind: str, title: str, starts_at: datetime, days: int, regions: list[str],
                 announced_at: datetime, models: list[str] | None = None, loyal_first: bool = True) -> dict[str, Any]:
        campaign_id = f"CP-{self.rng.getrandbits(32):08x}"
        data = {"campaign_id": campaign_id, "kind": kind, "title": title, "starts_at": starts_at.isoformat(),
                "ends_at": (starts_at + timedelta(days=days)).isoformat(), "address": "the dealer's workshop",
                "regions": regions, "models": models, "loyal_first": loyal_first}
        return envelope("CampaignAnnounced", campaign_id, data, announced_at, "crm")

    def consultation(self, customer: Customer, consulted_at: datetime, topic: str, *, dealer_id: str | None = None,
                     by_phone_only: bool = False) -> dict[str, Any]:
        """A business interview or consultation the CRM recorded (a prospect known by phone, or a
        customer on file)."""
        data: dict[str, Any] = {
            "consultation_id": f"CONS-{self.rng.getrandbits(40):010x}", "topic": topic, "name": customer.name,
            "region": customer.region, "consulted_at": consulted_at.isoformat(),
            "dealer_id": dealer_id or self.rng.choice(self.dealers),
            "channel": self.rng.choice(("showroom", "hotline", "web")),
        }
        if by_phone_only:
            data["phone"] = customer.phone
        else:
            data["customer_id"] = customer.customer_id
        key = customer.phone if by_phone_only else customer.customer_id
        return envelope("ConsultationRecorded", key, data, consulted_at, "crm")

    def customer_update(self, customer: Customer, changed_at: datetime, **changes: Any) -> dict[str, Any]:
        data = {"customer_id": customer.customer_id, "changed_at": changed_at.isoformat(), **changes}
        return envelope("CustomerUpdated", customer.customer_id, data, changed_at, "crm")
