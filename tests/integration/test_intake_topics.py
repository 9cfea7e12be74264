"""Every upstream event type through intake on the real broker and database: valid → the
canonical event with the catalog's key; invalid variants → dead-lettered with a reason that
names the field and what was expected."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support import Namespace, Stack, TopicReader, count, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


@dataclass
class Invalid:
    label: str
    topic: str
    envelope: dict[str, Any]
    reason: str  # a fragment the dead letter's reason must contain


def _mutate(env: dict[str, Any], change: Callable[[dict[str, Any]], None], **envelope_fields: Any) -> dict[str, Any]:
    broken = copy.deepcopy(env)
    broken["event_id"] = __import__("uuid").uuid4().hex[:8] + broken["event_id"][8:]
    broken.update(envelope_fields)
    change(broken["data"])
    return broken


def _world() -> tuple[list[tuple[str, dict[str, Any], str, str]], list[Invalid]]:
    """(topic, valid envelope, canonical type, expected key) rows and invalid variants."""
    fleet = Fleet(seed=31)
    sold_at = NOW - timedelta(days=200)
    vehicle = fleet.vehicle(sold_at)
    sale = fleet.sale(vehicle)
    pickup = fleet.pickup(vehicle, NOW - timedelta(days=5))
    receipt = fleet.receipt(pickup, NOW - timedelta(days=4))
    shipment = fleet.shipment("D001", NOW - timedelta(days=3), lines=3)
    discrepancy = fleet.discrepancy(shipment, 2, "short", NOW - timedelta(days=2))
    defect = fleet.defect(vehicle, "controller", NOW - timedelta(days=1))
    complaint = fleet.complaint(vehicle.customer, NOW - timedelta(hours=5), "空调不制冷", vin=vehicle.vin)
    campaign = fleet.campaign("free_inspection_week", "Free inspection week", NOW + timedelta(days=30), 7,
                              ["east", "south"], NOW - timedelta(hours=4))
    newcomer = fleet.customer()
    update = fleet.customer_update(newcomer, NOW - timedelta(hours=3), address="new road 8", phone=newcomer.phone,
                                   name=newcomer.name)
    valid = [
        ("upstream.sales", sale, "VehicleSold", vehicle.vin),
        ("upstream.dms", pickup, "VehiclePickedUp", vehicle.vin),
        ("upstream.dms", receipt, "ReceiptRecorded", vehicle.vin),
        ("upstream.erp", shipment, "PartShipped", shipment["data"]["shipment_id"]),
        ("upstream.erp", discrepancy, "PartShipmentDiscrepancy", shipment["data"]["shipment_id"]),
        ("upstream.erp", defect, "PartDefectReported", vehicle.vin),
        ("upstream.crm", complaint, "ComplaintFiled", vehicle.customer.customer_id),
        ("upstream.crm", campaign, "CampaignAnnounced", campaign["data"]["campaign_id"]),
        ("upstream.crm", update, "CustomerRegistered", newcomer.customer_id),
    ]
    other = fleet.vehicle(sold_at)
    # a phone libphonenumber rejects does not refuse the sale: filed, the value flagged on the file
    flagged = fleet.vehicle(sold_at)
    valid.append(("upstream.sales", _mutate(fleet.sale(flagged), lambda d: d["customer"].update(phone="+86 14412345678")),
                  "VehicleSold", flagged.vin))
    invalid = [
        Invalid("sale: negative warranty", "upstream.sales",
                _mutate(fleet.sale(other), lambda d: d.update(warranty_months=-1)), "data.warranty_months"),
        Invalid("sale: no phone", "upstream.sales",
                _mutate(fleet.sale(other), lambda d: d["customer"].pop("phone")), "phone is missing"),
        Invalid("sale: wrong check digit", "upstream.sales",
                _mutate(fleet.sale(other), lambda d: d.update(vin=other.vin[:8] + ("0" if other.vin[8] != "0" else "1")
                                                               + other.vin[9:]),
                        key=other.vin[:8] + ("0" if other.vin[8] != "0" else "1") + other.vin[9:]),
                "check digit"),
        Invalid("pickup: unknown service type", "upstream.dms",
                _mutate(fleet.pickup(other, NOW - timedelta(days=1)), lambda d: d.update(service_type="car_wash")),
                "data.service_type"),
        Invalid("pickup: naive timestamp", "upstream.dms",
                _mutate(fleet.pickup(other, NOW - timedelta(days=1)),
                        lambda d: d.update(picked_up_at="2026-11-19T09:00:00")), "no timezone"),
        Invalid("pickup: before the sale", "upstream.dms",
                _mutate(fleet.pickup(vehicle, sold_at - timedelta(days=2)), lambda d: None),
                "is before the vehicle was sold"),
        Invalid("pickup: key is not the vin", "upstream.dms",
                _mutate(fleet.pickup(other, NOW - timedelta(days=1)), lambda d: None, key="NOT-THE-VIN"), "keyed by vin"),
        Invalid("receipt: rating out of range", "upstream.dms",
                _mutate(receipt, lambda d: d.update(receipt_id="RC-X", rating=7)), "data.rating"),
        Invalid("shipment: no lines", "upstream.erp", _mutate(fleet.shipment("D002", NOW), lambda d: d.update(lines=[])),
                "data.lines"),
        Invalid("shipment: a line number twice", "upstream.erp",
                _mutate(fleet.shipment("D002", NOW), lambda d: d["lines"][1].update(line_no=1)), "appears twice"),
        Invalid("discrepancy: unknown kind", "upstream.erp",
                _mutate(discrepancy, lambda d: d.update(kind="lost")), "data.kind"),
        Invalid("discrepancy: not a line of the shipment", "upstream.erp",
                _mutate(discrepancy, lambda d: d.update(line_no=9)), "is not a line of shipment"),
        Invalid("defect: unknown reporter", "upstream.erp",
                _mutate(defect, lambda d: d.update(reported_by="ghost", report_id="DR-X")), "data.reported_by"),
        Invalid("complaint: nobody named", "upstream.crm",
                _mutate(complaint, lambda d: d.update(customer_id=None, complaint_ref="CRM-X")), "customer_id or phone"),
        Invalid("complaint: unknown channel", "upstream.crm",
                _mutate(complaint, lambda d: d.update(channel="fax", complaint_ref="CRM-Y")), "data.channel"),
        Invalid("campaign: ends before it starts", "upstream.crm",
                _mutate(campaign, lambda d: d.update(ends_at=(NOW + timedelta(days=29)).isoformat())), "ends_at"),
        Invalid("campaign: no regions", "upstream.crm", _mutate(campaign, lambda d: d.update(regions=[])),
                "data.regions"),
        Invalid("customer update: nothing changed", "upstream.crm",
                _mutate(update, lambda d: [d.pop(k) for k in ("address", "phone", "name")]), "at least one of"),
        Invalid("wrong topic for the type", "upstream.crm", _mutate(sale, lambda d: None), "does not belong on upstream.crm"),
    ]
    return valid, invalid


async def test_every_upstream_type_is_validated_and_republished_with_its_key(ns: Namespace) -> None:
    valid, invalid = _world()
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        for topic, env, _, _ in valid:  # one at a time: sale before pickup before receipt, shipment before discrepancy
            await publish(ns.settings, topic, [env])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(lambda rs: all(
                any(r.envelope and str(r.envelope.causation_id) == env["event_id"] and r.event_type == kind
                    for r in rs) for _, env, kind, _ in valid), timeout=60)
        for topic, env, kind, key in valid:
            caused = [r for r in canonical.records if r.envelope and str(r.envelope.causation_id) == env["event_id"]]
            matching = [r for r in caused if r.event_type == kind]
            assert len(matching) == 1, f"{kind} from {topic}: {[r.event_type for r in caused]}"
            assert matching[0].record.key.decode() == key, f"{kind} keyed by {matching[0].record.key!r}, not {key}"
            assert str(matching[0].envelope.correlation_id) == env["correlation_id"]  # type: ignore[union-attr]

        for case in invalid:
            await publish(ns.settings, case.topic, [case.envelope])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", len(invalid)), timeout=60, settle=1.0)
        letters = {d.data["original_event_id"]: d.data for d in dead.of_type("DeadLettered")}
        assert len(letters) == len(invalid)
        for case in invalid:
            letter = letters.get(case.envelope["event_id"])
            assert letter is not None, f"{case.label}: not dead-lettered"
            assert case.reason in letter["reason"], f"{case.label}: reason was {letter['reason']!r}"
            assert letter["topic"] == case.topic and letter["service"] == "intake"
    finally:
        await stack.stop()
