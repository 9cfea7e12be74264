"""CloudEvents on the real broker: upstream records sent without any `ce_*` header (one with no
header at all, one with only the old two) are accepted by intake, and what intake publishes
through its outbox relay arrives with every CloudEvents header valid and equal to its envelope
(ce_id = event_id, ce_time parses to occurred_at, ce_dataschema names a schema in docs/schemas/
that the envelope validates against), beside the old headers. A refused record's dead letter
keeps that record's headers and carries its own CloudEvents headers."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest

from shared.events.cloudevents import SCHEMA_BASE, problems
from tests.support import Namespace, Read, Stack, TopicReader, count, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


def _headers(read: Read) -> dict[str, str]:
    return {k: v.decode() for k, v in read.record.headers}


def _check(read: Read, topic: str) -> dict[str, str]:
    assert read.envelope is not None
    headers = _headers(read)
    assert problems(headers, read.envelope, topic) == [], f"{read.event_type}: {problems(headers, read.envelope, topic)}"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == str(read.envelope.event_id) == headers["event_id"]
    assert datetime.fromisoformat(headers["ce_time"]) == read.envelope.occurred_at
    assert headers["ce_subject"] == read.record.key.decode() == read.envelope.key
    assert headers["content-type"] == "application/json"
    assert headers["event_type"] == read.envelope.event_type
    assert headers["schema_version"] == str(read.envelope.schema_version)
    assert headers["correlation_id"] == str(read.envelope.correlation_id)
    schema_file = ROOT / "docs" / "schemas" / headers["ce_dataschema"].removeprefix(SCHEMA_BASE)
    assert headers["ce_dataschema"].startswith(SCHEMA_BASE) and schema_file.is_file(), headers["ce_dataschema"]
    schema = json.loads(schema_file.read_text())
    assert schema["$id"] == headers["ce_dataschema"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(orjson.loads(read.record.value)))
    assert not errors, f"{read.event_type} does not match {schema_file.name}: {errors[0].message}"
    return headers


async def test_upstream_records_without_ce_headers_are_accepted_and_what_intake_publishes_is_a_cloudevent(
    ns: Namespace,
) -> None:
    fleet = Fleet(seed=41)
    vehicle = fleet.vehicle(NOW - timedelta(days=200))
    sale = fleet.sale(vehicle)
    pickup = fleet.pickup(vehicle, NOW - timedelta(days=2))
    refused_headers = [("event_type", b"VehicleSold"), ("ce_specversion", b"1.0"), ("ce_id", b"producer-42"),
                       ("ce_source", b"/upstream/sales"), ("ce_type", b"com.example.sales.sold")]
    stack = await Stack(ns, manual_clock(NOW), services=("intake",)).start()
    try:
        # the sale with no header at all, the pickup with the old two only (tests.support.publish)
        await publish(ns.settings, "upstream.sales", [(vehicle.vin.encode(), orjson.dumps(sale))])
        await publish(ns.settings, "upstream.dms", [pickup])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(lambda rs: {"VehicleSold", "VehiclePickedUp"} <= {
                r.event_type for r in rs if r.envelope and str(r.envelope.causation_id) in (sale["event_id"],
                                                                                          pickup["event_id"])},
                timeout=60)
        published = [r for r in canonical.records if r.envelope and r.envelope.key == vehicle.vin]
        assert {r.event_type for r in published} >= {"VehicleSold", "VehiclePickedUp"}
        for read in published:
            headers = _check(read, "aftersales.intake")
            assert headers["ce_source"] == "/aftersales/intake"
            assert headers["ce_type"] == f"com.aftersales.intake.{read.event_type}.v1"
            assert headers["ce_dataschema"] == f"{SCHEMA_BASE}aftersales.intake/{read.event_type}.v1.json"
        registered = [r for r in canonical.records if r.event_type == "CustomerRegistered"
                      and r.envelope and r.envelope.key == vehicle.customer.customer_id]
        assert registered, "the sale registered its customer"
        assert _check(registered[0], "aftersales.intake")["ce_subject"] == vehicle.customer.customer_id

        # a producer's record intake refuses: its dead letter keeps the headers it came with
        producer = await _producer(ns)
        try:
            await producer.send_and_wait(ns.settings.topic("upstream.sales"), b"{not json", key=b"BROKEN-1",
                                         headers=refused_headers)
        finally:
            await producer.stop()
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 1), timeout=60)
        letter = dead.of_type("DeadLettered")[0]
        assert letter.data["record"]["headers"] == {k: v.decode() for k, v in refused_headers}
        assert base64.b64decode(letter.data["record"]["value_b64"]) == b"{not json"
        headers = _check(letter, "aftersales.deadletter")
        assert headers["ce_source"] == "/aftersales/intake"
        assert headers["ce_type"] == "com.aftersales.deadletter.DeadLettered.v1"
        assert headers["ce_id"] != "producer-42", "the dead letter is its own event"
    finally:
        await stack.stop()


async def _producer(ns: Namespace):  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    await producer.start()
    return producer
