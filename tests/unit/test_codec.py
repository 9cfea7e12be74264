"""Envelope decoding: every way a record can be unusable gives a reason naming the field."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import orjson
import pytest

from shared.events import InvalidRecord, UnhandledEventType, decode, derive_event_id, new_event
from shared.events.catalog import CATALOG, event_types_on
from tools.simulate import CST, Fleet

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


def _pickup() -> dict:
    fleet = Fleet(seed=3)
    return fleet.pickup(fleet.vehicle(datetime(2025, 1, 1, tzinfo=CST)), datetime(2026, 11, 20, 9, 0, tzinfo=CST))


def _reason(value: bytes, **kwargs: object) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        decode(value, "upstream.dms", strict_types=True, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_a_valid_pickup_decodes_to_its_typed_model() -> None:
    env = _pickup()
    event = decode(orjson.dumps(env), "upstream.dms", strict_types=True, check_key=True)
    assert event.event_type == "VehiclePickedUp" and event.data.vin == env["data"]["vin"]
    assert event.data.customer.phone.startswith("+86")


def test_unknown_fields_are_not_refused_and_upstream_data_keeps_them_for_the_canonical_event() -> None:
    env = _pickup()
    env["data"]["tyre_pressure_bar"] = 2.4
    env["future_header"] = "x"
    event = decode(orjson.dumps(env), "upstream.dms", strict_types=True)
    assert event.data.model_dump()["tyre_pressure_bar"] == 2.4  # intake passes it on in the canonical event
    assert event.envelope.event_id == uuid.UUID(env["event_id"])  # an unknown envelope field is ignored


def test_a_canonical_event_with_a_field_this_consumer_does_not_know_decodes() -> None:
    sent = new_event(topic="aftersales.followup", event_type="FollowUpDue", source="followup", occurred_at=NOW,
                     data={"followup_id": "F1", "kind": "first_visit", "customer_id": "C1"}).to_dict()
    sent["data"]["added_in_a_later_release"] = {"nested": True}
    event = decode(orjson.dumps(sent), "aftersales.followup", strict_types=False)
    assert event.data.followup_id == "F1" and event.data.kind == "first_visit"


def test_not_json_says_so() -> None:
    invalid = _reason(b"{oops")
    assert invalid.error == "MalformedJSON" and "not JSON" in invalid.reason


def test_a_string_followed_by_more_is_not_json_rather_than_a_crash() -> None:
    # found by tests/integration/test_fuzz_intake.py: a quote put in front of a whole envelope
    invalid = _reason(b'"{"event_id": "x"}')
    assert invalid.error == "MalformedJSON" and "not JSON" in invalid.reason


def test_a_json_array_is_not_an_envelope() -> None:
    assert "JSON list" in _reason(b"[1,2]").reason


def test_a_missing_vin_names_the_field() -> None:
    env = _pickup()
    del env["data"]["vin"]
    assert "data.vin is missing" in _reason(orjson.dumps(env)).reason


def test_a_sixteen_character_vin_says_how_long_a_vin_is() -> None:
    env = _pickup()
    env["data"]["vin"] = env["data"]["vin"][:16]
    reason = _reason(orjson.dumps(env)).reason
    assert "data.vin" in reason and "has 16 characters; a VIN has 17" in reason


def test_a_naive_timestamp_asks_for_an_offset() -> None:
    env = _pickup()
    env["data"]["picked_up_at"] = "2026-11-20T09:30:00"
    assert "data.picked_up_at" in _reason(orjson.dumps(env)).reason
    assert "no timezone" in _reason(orjson.dumps(env)).reason


def test_an_enum_lists_what_is_allowed() -> None:
    env = _pickup()
    env["data"]["service_type"] = "car_wash"
    reason = _reason(orjson.dumps(env)).reason
    assert "data.service_type" in reason and "'maintenance'" in reason and "car_wash" in reason


def test_an_unknown_event_type_lists_the_topic_types() -> None:
    env = {**_pickup(), "event_type": "VehicleTeleported"}
    invalid = _reason(orjson.dumps(env))
    assert invalid.error == "UnknownEventType"
    assert "VehicleTeleported" in invalid.reason and "VehiclePickedUp, ReceiptReturned" in invalid.reason


def test_an_event_on_the_wrong_topic_is_unknown_there() -> None:
    env = {**_pickup(), "event_type": "VehicleSold"}
    assert "does not belong on upstream.dms" in _reason(orjson.dumps(env)).reason


def test_a_newer_schema_version_is_refused_not_guessed() -> None:
    invalid = _reason(orjson.dumps({**_pickup(), "schema_version": 99}))
    assert invalid.error == "UnsupportedSchemaVersion" and "schema_version 99" in invalid.reason


def test_a_key_that_is_not_the_vin_is_refused() -> None:
    env = {**_pickup(), "key": "SOMETHING-ELSE"}
    invalid = _reason(orjson.dumps(env), check_key=True)
    assert invalid.error == "KeyMismatch" and "keyed by vin" in invalid.reason


def test_types_a_consumer_does_not_handle_are_ignored_outside_strict_topics() -> None:
    env = {**_pickup(), "event_type": "SomethingNew"}
    with pytest.raises(UnhandledEventType):
        decode(orjson.dumps(env), "upstream.dms", strict_types=False)


def test_correlation_id_defaults_to_the_event_id_for_a_chain_start() -> None:
    env = _pickup()
    del env["correlation_id"]
    event = decode(orjson.dumps(env), "upstream.dms", strict_types=True)
    assert event.correlation_id == event.event_id


def test_a_caused_event_has_a_deterministic_id_and_carries_the_correlation() -> None:
    cause = decode(orjson.dumps(_pickup()), "upstream.dms", strict_types=True).envelope
    data = {"customer_id": "C1", "registered_from": "VehiclePickedUp"}
    one = new_event(topic="aftersales.intake", event_type="CustomerRegistered", data=data, source="intake",
                    occurred_at=cause.occurred_at, cause=cause)
    two = new_event(topic="aftersales.intake", event_type="CustomerRegistered", data=data, source="intake",
                    occurred_at=cause.occurred_at + timedelta(minutes=1), cause=cause)  # handled again, later
    assert one.event_id == two.event_id == derive_event_id(cause.event_id, "CustomerRegistered", "C1", "", "")
    assert one.causation_id == cause.event_id and one.correlation_id == cause.correlation_id
    assert one.key == "C1"


def test_the_catalog_covers_every_topic_of_the_design() -> None:
    assert set(event_types_on("upstream.dms")) == {"VehiclePickedUp", "ReceiptReturned"}
    assert {"CustomerRegistered", "CustomerUpdated", "VehicleSold", "VehiclePickedUp", "ReceiptRecorded",
            "PartShipped", "PartShipmentDiscrepancy", "PartDefectReported", "ComplaintFiled",
            "CampaignAnnounced", "CustomerContactCorrected", "ConsultationRecorded", "CustomerErased"} == set(
        event_types_on("aftersales.intake"))
    assert {"ConsultationRecorded", "CustomerContactCorrected"} <= set(event_types_on("upstream.crm"))
    assert len(CATALOG) >= 45
    assert uuid.UUID(str(derive_event_id(uuid.uuid4(), "x")))


def test_a_nul_anywhere_is_refused_naming_where_it_is() -> None:
    env = _pickup()
    env["data"]["customer"]["name"] = "王\x00伟"
    invalid = _reason(orjson.dumps(env))
    assert invalid.error == "ValidationFailed"
    assert invalid.reason.startswith("data.customer.name holds the character U+0000 (NUL)")
    env = _pickup()
    env["data"]["items"][0]["description"] = "a\x00b"
    assert _reason(orjson.dumps(env)).reason.startswith("data.items[0].description holds")
    env = _pickup()
    env["event_type"] = "VehiclePicked\x00Up"
    assert _reason(orjson.dumps(env)).reason.startswith("event_type holds")
    env = _pickup()
    env["data"]["items"][0]["description"] = "a backslash then u0000: \\u0000"  # text, not the character
    decode(orjson.dumps(env), "upstream.dms", strict_types=True)


def test_a_reason_quotes_a_huge_bad_value_only_in_part() -> None:
    env = _pickup()
    env["data"]["items"][0]["code"] = "x" * 500_000
    reason = _reason(orjson.dumps(env)).reason
    assert reason.startswith("data.items.0.code") and len(reason) < 600
    assert "(500,002 characters)" in reason


def test_a_derived_event_id_is_the_uuid5_of_its_cause_and_parts() -> None:
    """derive_event_id computes uuid5 without uuid.uuid5's checks; the ids are the same ones
    (events caused before and after must keep their ids, or a replay would publish them again)."""
    import random

    from shared.events.envelope import AFTERSALES_NAMESPACE

    rng = random.Random(20261202)
    for _ in range(2_000):
        cause = uuid.UUID(int=rng.getrandbits(128))
        parts = (rng.choice(["FollowUpScheduled", "CustomerRegistered"]), f"C{rng.randrange(10**7)}",
                 rng.choice(["", "timer:followup.due:F1:2026-11-20T10:00:00+08:00"]), rng.randrange(1000))
        derived = derive_event_id(cause, *parts)
        expected = uuid.uuid5(AFTERSALES_NAMESPACE, f"{cause}:" + ":".join(str(p) for p in parts))
        assert derived == expected and str(derived) == str(expected) and hash(derived) == hash(expected)
        assert derived.version == 5 and derived.variant == uuid.RFC_4122


def test_uuid5_is_the_standard_librarys() -> None:
    from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5

    for name in ("followup:first_visit:RO-1", "", "中文:ref", "x" * 300):
        for namespace in (AFTERSALES_NAMESPACE, uuid.NAMESPACE_URL):
            assert uuid5(namespace, name) == uuid.uuid5(namespace, name)
