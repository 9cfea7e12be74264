"""Customer files: matching, merging facts in any order, date order, pass-through dedup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.domain import FileSet, Output, Rejected, derived_customer_id, missing_fields, under_warranty
from shared.events.upstream import (
    CampaignAnnounced,
    ComplaintFiled,
    CustomerUpdatedUpstream,
    PartShipmentDiscrepancy,
    PartShipped,
    ReceiptReturned,
    VehiclePickedUp,
    VehicleSold,
)
from shared.validation import with_check_digit
from tools.simulate import CST

NOW = datetime(2026, 12, 1, tzinfo=CST)
T0 = datetime(2025, 1, 1, 9, 0, tzinfo=CST)
VIN1 = with_check_digit("LJ1EEAUU5N0123456")
VIN2 = with_check_digit("LJ1EEAUU5N0654321")


def _customer(customer_id: str | None, phone: str, **extra: Any) -> dict[str, Any]:
    info = {"name": "王伟", "phone": phone, "address": "east road 1", "region": "east", **extra}
    if customer_id:
        info["customer_id"] = customer_id
    return info


def sale(vin: str, at: datetime, customer: dict[str, Any], plate: str = "沪A12345") -> VehicleSold:
    return VehicleSold.model_validate({
        "sale_id": f"S-{vin[-6:]}", "vin": vin, "model": "EV-100", "sold_at": at, "dealer_id": "D001",
        "region": "east", "warranty_months": 36, "warranty_km": 100000, "customer": customer, "plate": plate,
        "parts": [{"category": "motor", "part_no": "P-M1", "batch": "B1", "supplier_id": "SUP-A"}],
    })


def pickup(vin: str, ro: str, at: datetime, customer: dict[str, Any], plate: str | None = None,
           mileage: int = 5000) -> VehiclePickedUp:
    return VehiclePickedUp.model_validate({
        "repair_order_id": ro, "vin": vin, "dealer_id": "D001", "picked_up_at": at, "service_type": "maintenance",
        "items": [], "mileage_km": mileage, "advisor_id": "SA-1", "customer": customer, "plate": plate,
    })


def update(customer_id: str, at: datetime, **fields: Any) -> CustomerUpdatedUpstream:
    return CustomerUpdatedUpstream.model_validate({"customer_id": customer_id, "changed_at": at, **fields})


def receipt(receipt_id: str, ro: str, vin: str, at: datetime, rating: int = 5) -> ReceiptReturned:
    return ReceiptReturned.model_validate(
        {"receipt_id": receipt_id, "repair_order_id": ro, "vin": vin, "returned_at": at, "rating": rating})


def complaint(ref: str, at: datetime, phone: str | None = None, customer_id: str | None = None) -> ComplaintFiled:
    return ComplaintFiled.model_validate({
        "complaint_ref": ref, "customer_id": customer_id, "phone": phone, "channel": "hotline",
        "description": "the car makes a noise", "filed_at": at,
    })


def apply(files: FileSet, event: Any, event_id: str = "e") -> list[Output]:
    files.event_id = event_id
    match event:
        case VehicleSold():
            return files.apply_sale(event, NOW)
        case VehiclePickedUp():
            return files.apply_pickup(event, NOW)
        case ReceiptReturned():
            return files.apply_receipt(event, NOW)
        case CustomerUpdatedUpstream():
            return files.apply_customer_update(event, event.changed_at, NOW)
        case ComplaintFiled():
            return files.apply_complaint(event, NOW)
    raise AssertionError(event)


# ---------------------------------------------------------------------------------------
# behaviours


def test_a_sale_registers_the_customer_and_files_the_vehicle() -> None:
    files = FileSet()
    outputs = apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    assert [o.event_type for o in outputs] == ["CustomerRegistered", "VehicleSold"]
    assert outputs[1].data["customer"]["customer_id"] == "CUST-1"
    assert files.vehicles[VIN1].values["customer_id"] == "CUST-1"
    assert files.vehicles[VIN1].values["sold_at"] == T0


def test_a_pickup_matches_the_customer_by_phone_when_no_id_is_given() -> None:
    files = FileSet()
    apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    outputs = apply(files, pickup(VIN1, "RO-1", T0 + timedelta(days=90), _customer(None, "+8613800138000")))
    assert [o.event_type for o in outputs] == ["VehiclePickedUp"]
    assert outputs[0].data["customer"]["customer_id"] == "CUST-1"
    assert outputs[0].data["under_warranty"] is True


def test_customer_updated_is_published_only_when_something_really_changed() -> None:
    files = FileSet()
    apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    same = apply(files, update("CUST-1", T0 + timedelta(days=1), address="east road 1"))
    moved = apply(files, update("CUST-1", T0 + timedelta(days=2), address="west road 9"))
    assert same == []
    assert [o.event_type for o in moved] == ["CustomerUpdated"]
    assert moved[0].data["changes"] == {"address": {"old": "east road 1", "new": "west road 9"}}


def test_an_older_fact_arriving_late_does_not_overwrite_a_newer_one_but_is_kept_as_history() -> None:
    files = FileSet()
    apply(files, update("CUST-1", T0 + timedelta(days=10), address="new address"))
    late = apply(files, update("CUST-1", T0 + timedelta(days=5), address="old address"))
    assert late == []
    assert files.customers["CUST-1"].values["address"] == "new address"
    assert {(o.field, o.value) for _, o, _ in files.history} >= {("address", "new address"), ("address", "old address")}


def test_a_complaint_naming_a_known_vehicle_carries_its_dealer_and_region() -> None:
    files = FileSet()
    apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    about_the_car = complaint("CMP-V", T0 + timedelta(days=3), customer_id="CUST-1").model_copy(update={"vin": VIN1})
    [filed] = apply(files, about_the_car)
    assert (filed.event_type, filed.data["dealer_id"], filed.data["region"]) == ("ComplaintFiled", "D001", "east")
    [unknown] = apply(files, complaint("CMP-U", T0 + timedelta(days=3), customer_id="CUST-1").model_copy(
        update={"vin": VIN2}))
    assert unknown.data.get("dealer_id") is None and unknown.data.get("region") is None


def test_a_complaint_naming_no_known_vehicle_carries_the_dealer_of_the_customers_last_visit_before_it() -> None:
    files = FileSet()
    apply(files, pickup(VIN1, "RO-1", T0, _customer("CUST-1", "+8613800138000")))
    apply(files, pickup(VIN1, "RO-2", T0 + timedelta(days=40), _customer("CUST-1", "+8613800138000")).model_copy(
        update={"dealer_id": "D007"}))
    [filed] = apply(files, complaint("CMP-N", T0 + timedelta(days=20), customer_id="CUST-1"))
    assert (filed.data["dealer_id"], filed.data["region"]) == ("D001", "east"), "the visit before the filing"
    [later] = apply(files, complaint("CMP-L", T0 + timedelta(days=41), customer_id="CUST-1"))
    assert later.data["dealer_id"] == "D007"
    [before_any] = apply(files, complaint("CMP-B", T0 - timedelta(days=1), customer_id="CUST-1"))
    assert before_any.data.get("dealer_id") is None, "no visit before it: no dealer rather than a guess"


def test_a_phone_only_file_is_adopted_when_the_customer_id_arrives() -> None:
    files = FileSet()
    first = apply(files, complaint("CMP-1", T0, phone="+8613800138000"))
    derived = derived_customer_id("+8613800138000")
    assert first[0].event_type == "CustomerRegistered" and first[0].data["customer_id"] == derived
    assert first[1].data["customer_id"] == derived
    outputs = apply(files, update("CUST-1", T0 + timedelta(days=1), phone="+8613800138000", name="李娜"))
    assert list(files.customers) == ["CUST-1"]
    assert outputs[0].event_type == "CustomerUpdated"
    assert outputs[0].data["merged_customer_ids"] == [derived]
    assert files.renamed == [(derived, "CUST-1")]


def test_two_named_customers_sharing_a_phone_keep_their_own_files() -> None:
    files = FileSet()
    apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    apply(files, sale(VIN2, T0 + timedelta(days=1), _customer("CUST-2", "+8613800138000", name="王芳")))
    assert set(files.customers) == {"CUST-1", "CUST-2"}
    assert files.vehicles[VIN2].values["customer_id"] == "CUST-2"


def test_a_pickup_before_the_sale_is_refused_with_both_dates() -> None:
    files = FileSet()
    apply(files, sale(VIN1, T0, _customer("CUST-1", "+8613800138000")))
    with pytest.raises(Rejected, match=r"data.picked_up_at .* is before the vehicle was sold"):
        apply(files, pickup(VIN1, "RO-1", T0 - timedelta(days=1), _customer("CUST-1", "+8613800138000")))


def test_a_sale_after_the_vehicles_first_pickup_is_refused() -> None:
    files = FileSet()
    apply(files, pickup(VIN1, "RO-1", T0, _customer("CUST-1", "+8613800138000")))
    with pytest.raises(Rejected, match="a vehicle is sold before it comes in for service"):
        apply(files, sale(VIN1, T0 + timedelta(days=3), _customer("CUST-1", "+8613800138000")))


def test_a_receipt_before_its_pickup_or_for_another_vehicle_is_refused() -> None:
    files = FileSet()
    apply(files, pickup(VIN1, "RO-1", T0, _customer("CUST-1", "+8613800138000")))
    with pytest.raises(Rejected, match="a receipt comes after it"):
        apply(files, receipt("R-1", "RO-1", VIN1, T0 - timedelta(hours=1)))
    with pytest.raises(Rejected, match="is not the vehicle of repair order RO-1"):
        apply(files, receipt("R-1", "RO-1", VIN2, T0 + timedelta(hours=1)))
    out = apply(files, receipt("R-1", "RO-1", VIN1, T0 + timedelta(days=1)))
    assert out[0].event_type == "ReceiptRecorded" and out[0].data["customer_id"] == "CUST-1"


def test_events_from_the_future_are_refused() -> None:
    with pytest.raises(Rejected, match="is in the future"):
        apply(FileSet(), pickup(VIN1, "RO-1", NOW + timedelta(days=3), _customer("CUST-1", "+8613800138000")))


def test_the_same_repair_order_twice_is_filed_once() -> None:
    files = FileSet()
    event = pickup(VIN1, "RO-1", T0, _customer("CUST-1", "+8613800138000"))
    assert apply(files, event)
    assert apply(files, event) == []
    assert len(files.new_visits) == 1


def test_pass_through_events_are_published_once_and_again_when_amended() -> None:
    files = FileSet()
    campaign = CampaignAnnounced.model_validate({
        "campaign_id": "CMP-1", "kind": "free_inspection_week", "title": "Free inspection week",
        "starts_at": T0 + timedelta(days=30), "ends_at": T0 + timedelta(days=37), "address": "D001 workshop",
        "regions": ["east"],
    })
    assert len(files.pass_through("CampaignAnnounced", "CMP-1", campaign, T0)) == 1
    assert files.pass_through("CampaignAnnounced", "CMP-1", campaign, T0) == []
    amended = campaign.model_copy(update={"address": "D002 workshop"})
    assert len(files.pass_through("CampaignAnnounced", "CMP-1", amended, T0)) == 1


def test_a_discrepancy_must_name_a_line_of_its_shipment_and_follow_it() -> None:
    files = FileSet()
    files.apply_shipment(PartShipped.model_validate({
        "shipment_id": "SH-1", "order_id": "O-1", "dealer_id": "D001", "shipped_at": T0,
        "lines": [{"line_no": 1, "part_no": "P-1", "category": "motor", "qty": 2, "batch": "B1", "supplier_id": "S"}],
    }), NOW)
    with pytest.raises(Rejected, match=r"data.line_no 7 is not a line of shipment SH-1 \(its lines: 1\)"):
        files.apply_discrepancy(PartShipmentDiscrepancy.model_validate(
            {"shipment_id": "SH-1", "line_no": 7, "kind": "short", "reported_at": T0 + timedelta(days=1)}), NOW)
    with pytest.raises(Rejected, match="is before shipment SH-1 was shipped"):
        files.apply_discrepancy(PartShipmentDiscrepancy.model_validate(
            {"shipment_id": "SH-1", "line_no": 1, "kind": "short", "reported_at": T0 - timedelta(days=1)}), NOW)


def test_warranty_ends_by_months_or_by_km_whichever_first() -> None:
    vehicle = {"sold_at": T0, "warranty_months": 36, "warranty_km": 100_000}
    assert under_warranty(vehicle, T0 + timedelta(days=365), 99_999) is True
    assert under_warranty(vehicle, T0 + timedelta(days=365), 100_000) is False
    assert under_warranty(vehicle, T0 + timedelta(days=3 * 366), 10) is False
    assert under_warranty({}, T0, 10) is None


def test_a_file_missing_phone_address_plate_or_model_is_incomplete() -> None:
    assert missing_fields({"phone": "+86", "address": "x"}, [{"vin": VIN1, "plate": "A", "model": "M"}]) == []
    assert missing_fields({"phone": None, "address": "x"}, [{"vin": VIN1, "plate": None, "model": "M"}]) == [
        "phone", f"plate ({VIN1})"]


# ---------------------------------------------------------------------------------------
# property: out of order gives the same files as in order


@dataclass
class Fact:
    at: datetime
    event: Any
    ident: str


@st.composite
def customer_stories(draw: st.DrawFn) -> list[Fact]:
    """A consistent history of two customers: sales, pickups (named or phone-only), address
    and phone changes, receipts, complaints by phone. Every fact states the truth at its time."""
    days = iter(sorted(draw(st.lists(st.integers(1, 700), min_size=14, max_size=14, unique=True))))
    minutes = iter(range(10_000))

    def at() -> datetime:
        return T0 + timedelta(days=next(days), minutes=next(minutes))

    phones = ["+8613800138000", "+8613900139000"]
    addresses = ["east road 1", "west road 9"]
    phone_change = draw(st.integers(2, 12))
    address_change = draw(st.integers(2, 12))
    facts: list[Fact] = []
    timeline: list[datetime] = [at() for _ in range(13)]

    def truth(step: int) -> dict[str, str]:
        return {"phone": phones[step >= phone_change], "address": addresses[step >= address_change]}

    def info(step: int, named: bool) -> dict[str, Any]:
        t = truth(step)
        return _customer("CUST-1" if named else None, t["phone"], address=t["address"])

    facts.append(Fact(timeline[0], sale(VIN1, timeline[0], info(0, True)), "sale"))
    facts.append(Fact(timeline[phone_change], update("CUST-1", timeline[phone_change], phone=phones[1]), "phone"))
    facts.append(Fact(timeline[address_change], update("CUST-1", timeline[address_change], address=addresses[1]),
                      "address"))
    second_sale = draw(st.integers(1, 6))
    facts.append(Fact(timeline[second_sale], sale(VIN2, timeline[second_sale], info(second_sale, True),
                                                  plate="沪B00001"), "sale2"))
    steps = draw(st.lists(st.integers(1, 12), min_size=2, max_size=6, unique=True))
    for n, step in enumerate(sorted(steps)):
        vin = VIN2 if step > second_sale and n % 2 else VIN1
        named = draw(st.booleans())
        ro = f"RO-{n}"
        plate = draw(st.sampled_from([None, "沪A12345", "沪A99999"]))
        facts.append(Fact(timeline[step], pickup(vin, ro, timeline[step], info(step, named), plate=plate,
                                                 mileage=1000 * step), f"pickup-{n}"))
        if draw(st.booleans()):
            returned = timeline[step] + timedelta(hours=3)
            facts.append(Fact(returned, receipt(f"R-{n}", ro, vin, returned), f"receipt-{n}"))
    for n, step in enumerate(draw(st.lists(st.integers(1, 12), max_size=2, unique=True))):
        facts.append(Fact(timeline[step] + timedelta(minutes=30),
                          complaint(f"CMP-{n}", timeline[step] + timedelta(minutes=30), phone=truth(step)["phone"]),
                          f"complaint-{n}"))
    other = timeline[draw(st.integers(0, 12))] + timedelta(minutes=45)
    facts.append(Fact(other, sale(with_check_digit("LJ1EEAUU5N0777777"), other,
                                  _customer("CUST-2", "+8613700137000", name="赵敏")), "other"))
    return facts


def _files(facts: list[Fact]) -> dict[str, Any]:
    files = FileSet()
    for fact in facts:
        apply(files, fact.event, event_id=fact.ident)
    return files.snapshot()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=customer_stories(), data=st.data())
def test_any_arrival_order_gives_the_same_files_as_the_world_order(story: list[Fact], data: st.DataObject) -> None:
    in_order = _files(sorted(story, key=lambda f: f.at))
    shuffled = data.draw(st.permutations(story))
    assert _files(shuffled) == in_order
    assert set(in_order["customers"]) == {"CUST-1", "CUST-2"}, "phone-only facts end in the named file"
