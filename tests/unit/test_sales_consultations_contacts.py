"""Calls after a sale and after a consultation (the windows), and contact data quality: a sale
or pickup whose phone or e-mail fails its check is filed with the bad value flagged, an agent's
correction clears the flag (pure domain, no infrastructure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.followup.config import FollowUpRules
from services.followup.domain import consultation_window, delivery_window, second_visit_window
from services.intake.domain import FileSet, Output, Rejected, derived_customer_id
from shared.events.upstream import ConsultationRecorded, CustomerContactCorrected, VehiclePickedUp, VehicleSold
from shared.validation import with_check_digit
from tests.support import TEST_NOW, day_at

RULES = FollowUpRules()
NOW = TEST_NOW
VIN = with_check_digit("LJ1EEAUU5N0123456")
BAD_PHONE = "+86 14412345678"  # a 144 prefix: libphonenumber knows no such Chinese number


def _customer(phone: str | None, customer_id: str | None = None, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"name": "王伟", "address": "east road 1", "region": "east", **extra}
    if phone is not None:
        info["phone"] = phone
    if customer_id:
        info["customer_id"] = customer_id
    return info


def _pickup(ro: str, at: datetime, customer: dict[str, Any], vin: str = VIN) -> VehiclePickedUp:
    return VehiclePickedUp.model_validate({
        "repair_order_id": ro, "vin": vin, "dealer_id": "D001", "picked_up_at": at, "service_type": "maintenance",
        "items": [], "mileage_km": 5000, "advisor_id": "SA-1", "customer": customer,
    })


def _sale(at: datetime, customer: dict[str, Any]) -> VehicleSold:
    return VehicleSold.model_validate({
        "sale_id": "S-1", "vin": VIN, "model": "EV-100", "sold_at": at, "dealer_id": "D001", "region": "east",
        "warranty_months": 36, "warranty_km": 100000, "customer": customer,
    })


def _types(outputs: list[Output]) -> list[str]:
    return [o.event_type for o in outputs]


# -- windows ------------------------------------------------------------------------------------------
@pytest.mark.dates
def test_the_first_call_after_a_delivery_is_due_three_to_seven_days_after_it() -> None:
    delivered = day_at(16, 30)
    window = delivery_window(delivered, RULES)
    assert (window.due_from, window.due_by) == (delivered + timedelta(days=3), delivered + timedelta(days=7))


@pytest.mark.dates
def test_the_second_call_after_a_delivery_is_due_within_seven_days_of_the_first() -> None:
    first_done = delivery_window(day_at(10), RULES).due_by + timedelta(hours=5)  # a late first call
    second = second_visit_window(first_done, RULES)
    assert first_done < second.due_from and second.due_by == first_done + timedelta(days=7)


@pytest.mark.dates
def test_the_first_call_after_a_consultation_is_due_three_to_seven_days_after_it() -> None:
    consulted = day_at(11)
    window = consultation_window(consulted, RULES)
    assert (window.due_from, window.due_by) == (consulted + timedelta(days=3), consulted + timedelta(days=7))


# -- contact flags at the edge -------------------------------------------------------------------------
def test_a_pickup_with_a_phone_libphonenumber_rejects_is_accepted_with_the_value_set_aside() -> None:
    event = _pickup("RO-1", NOW - timedelta(days=1), _customer(BAD_PHONE))
    assert event.customer.phone is None
    flagged = event.customer.invalid_contacts
    assert flagged is not None and flagged["phone"].value == BAD_PHONE
    assert "not a valid number" in flagged["phone"].reason


def test_a_pickup_with_no_phone_at_all_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="phone is missing"):
        _pickup("RO-1", NOW - timedelta(days=1), _customer(None))


def test_a_pickup_without_a_vin_is_still_refused() -> None:
    data = _pickup("RO-1", NOW - timedelta(days=1), _customer("+8613812345678")).model_dump(mode="json")
    del data["vin"]
    with pytest.raises(ValidationError, match="vin"):
        VehiclePickedUp.model_validate(data)


def test_a_bad_email_is_flagged_while_the_phone_is_used() -> None:
    event = _sale(NOW - timedelta(days=2), _customer("+8613812345678", "C1", email="wang@"))
    assert event.customer.phone == "+8613812345678" and event.customer.email is None
    assert set(event.customer.invalid_contacts or {}) == {"email"}


# -- contact flags on the file --------------------------------------------------------------------------
def test_a_pickup_with_a_bad_phone_is_filed_with_the_value_kept_and_flagged() -> None:
    files = FileSet()
    at = NOW - timedelta(days=1)
    outputs = files.apply_pickup(_pickup("RO-1", at, _customer(BAD_PHONE)), NOW)
    assert _types(outputs) == ["CustomerRegistered", "VehiclePickedUp"]
    key = derived_customer_id(BAD_PHONE)
    record = files.customers[key]
    assert "phone" not in record.values, "the bad number is not the phone on file"
    flag = record.values["contact_flags"]["phone"]
    assert flag["value"] == BAD_PHONE and "not a valid number" in flag["reason"]
    assert flag["source"] == "VehiclePickedUp" and flag["flagged_at"] == at.isoformat()
    registered = outputs[0].data
    assert "phone" not in registered and registered["contact_flags"]["phone"]["value"] == BAD_PHONE
    assert outputs[1].data["customer"]["invalid_contacts"]["phone"]["value"] == BAD_PHONE
    assert files.visits["RO-1"]["customer_id"] == key, "the visit is on the file"


def test_the_same_bad_number_again_finds_the_same_file() -> None:
    files = FileSet()
    files.apply_pickup(_pickup("RO-1", NOW - timedelta(days=9), _customer(BAD_PHONE)), NOW)
    outputs = files.apply_pickup(_pickup("RO-2", NOW - timedelta(days=1), _customer(BAD_PHONE)), NOW)
    assert _types(outputs) == ["CustomerUpdated", "VehiclePickedUp"]  # the flag's time moved on
    assert list(files.customers) == [derived_customer_id(BAD_PHONE)]


def test_an_agents_correction_sets_the_phone_and_clears_its_flag() -> None:
    files = FileSet()
    files.apply_pickup(_pickup("RO-1", NOW - timedelta(days=3), _customer(BAD_PHONE, "C7")), NOW)
    assert set(files.customers["C7"].values["contact_flags"]) == {"phone"}
    correction = CustomerContactCorrected.model_validate({
        "customer_id": "C7", "phone": "13912345678", "corrected_by": "wang.fang", "reason": "客户来电告知",
        "corrected_at": NOW - timedelta(hours=1)})
    outputs = files.apply_contact_correction(correction, NOW)
    assert _types(outputs) == ["CustomerContactCorrected"]
    data = outputs[0].data
    assert data["phone"] == "+8613912345678" and data["corrected_by"] == "wang.fang"
    assert data["contact_flags"] == {} and data["changes"]["phone"] == {"old": None, "new": "+8613912345678"}
    assert files.customers["C7"].values["contact_flags"] == {}


def test_a_correction_for_a_customer_with_no_file_is_refused_with_the_reason() -> None:
    correction = CustomerContactCorrected.model_validate({
        "customer_id": "C404", "phone": "13912345678", "corrected_by": "wang.fang", "corrected_at": NOW})
    with pytest.raises(Rejected, match="no customer file"):
        FileSet().apply_contact_correction(correction, NOW)


def test_a_correction_must_correct_something() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        CustomerContactCorrected.model_validate({"customer_id": "C7", "corrected_by": "a", "corrected_at": NOW})


def test_a_later_visit_with_a_good_number_clears_the_flag_and_an_older_one_does_not_raise_it() -> None:
    files = FileSet()
    files.apply_pickup(_pickup("RO-1", NOW - timedelta(days=5), _customer(BAD_PHONE, "C8")), NOW)
    files.apply_pickup(_pickup("RO-2", NOW - timedelta(days=2), _customer("13812345678", "C8")), NOW)
    assert files.customers["C8"].values["contact_flags"] == {}
    assert files.customers["C8"].values["phone"] == "+8613812345678"
    files.apply_pickup(_pickup("RO-0", NOW - timedelta(days=20), _customer(BAD_PHONE, "C8")), NOW)
    assert files.customers["C8"].values["contact_flags"] == {}, "an older fact does not flag a newer good number"


def test_a_consultation_opens_a_file_once_and_is_filed_once() -> None:
    files = FileSet()
    consultation = ConsultationRecorded.model_validate({
        "consultation_id": "CONS-1", "phone": "13700001111", "name": "李娜", "region": "north", "topic": "EV-100 试驾",
        "consulted_at": NOW - timedelta(days=1), "dealer_id": "D002"})
    outputs = files.apply_consultation(consultation, NOW)
    assert _types(outputs) == ["CustomerRegistered", "ConsultationRecorded"]
    filed = outputs[1].data
    assert filed["customer_id"] == derived_customer_id("+8613700001111") and filed["region"] == "north"
    assert filed["timezone"] == "Asia/Shanghai" and "phone" not in filed
    assert files.apply_consultation(consultation, NOW) == []


def test_a_consultation_must_name_the_customer() -> None:
    with pytest.raises(ValidationError, match="customer_id or phone"):
        ConsultationRecorded.model_validate({"consultation_id": "C", "topic": "t", "consulted_at": NOW})


def test_the_customer_page_shows_a_flagged_value_masked_with_its_reason() -> None:
    from services.console.i18n import environment

    flag = {"value": "+86 14412345678", "reason": "phone '+86 14412345678' is not a valid number for region CN",
            "source": "VehiclePickedUp"}
    customer = {"customer_id": "C1", "name": "王伟", "phone": None, "consent": {}, "registered_at": None,
                "contact_flags": {"phone": flag}}
    page = environment("zh-CN").get_template("_file.html").render(customer=customer,
                                                                  story={"phones": [], "vehicles": []})
    assert "无法使用的联系方式" in page and "is not a valid number" in page and "来自 VehiclePickedUp" in page
    assert "144****5678" in page and "14412345678" not in page, "the number is masked like any phone"
    clean = environment("en").get_template("_file.html").render(customer=customer | {"contact_flags": {}},
                                                                story={"phones": [], "vehicles": []})
    assert "Unusable contact value" not in clean
