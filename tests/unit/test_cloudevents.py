"""The CloudEvents 1.0 Kafka binding (binary mode): the headers the relay gives every record,
built from its envelope, the headers it always had kept, the value untouched; a record that is
not a readable envelope gets no `ce_*`; a dead letter keeps the refused record's headers."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.clock import ManualClock
from shared.events import new_event
from shared.events.catalog import CATALOG, UPSTREAM_TOPICS
from shared.events.cloudevents import (
    CE_HEADERS,
    SCHEMA_BASE,
    ce_source,
    ce_type,
    envelope_headers,
    problems,
    record_headers,
)
from shared.kafka.relay import _headers
from shared.settings import Settings
from shared.uow import UnitOfWork
from tools.simulate import CST, Fleet

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=CST)


def _sold() -> Any:
    fleet = Fleet(seed=5)
    env = fleet.sale(fleet.vehicle(datetime(2026, 11, 1, tzinfo=CST)))
    return new_event(topic="aftersales.intake", event_type="VehicleSold", data=env["data"], source="intake",
                     occurred_at=NOW)


def test_a_published_envelope_carries_every_ce_header_derived_from_it_and_keeps_its_old_headers() -> None:
    envelope = _sold()
    row = {"topic": "t1.aftersales.intake", "payload": envelope.to_json(), "event_type": "VehicleSold",
           "event_id": envelope.event_id}
    headers = dict((k, v.decode()) for k, v in _headers(row, "t1."))  # type: ignore[arg-type]
    assert headers == {
        "event_type": "VehicleSold",
        "event_id": str(envelope.event_id),
        "schema_version": "1",
        "correlation_id": str(envelope.event_id),
        "ce_specversion": "1.0",
        "ce_id": str(envelope.event_id),
        "ce_type": "com.aftersales.intake.VehicleSold.v1",
        "ce_source": "/aftersales/intake",
        "ce_time": "2026-11-20T09:30:00+08:00",
        "ce_subject": envelope.key,
        "ce_dataschema": SCHEMA_BASE + "aftersales.intake/VehicleSold.v1.json",
        "content-type": "application/json",
    }
    assert envelope.key == envelope.data.vin, "the subject is the record key: the VIN for a sale"
    assert datetime.fromisoformat(headers["ce_time"]) == envelope.occurred_at
    assert (ROOT / "docs" / "schemas" / headers["ce_dataschema"].removeprefix(SCHEMA_BASE)).is_file()
    assert problems(headers, envelope, "aftersales.intake") == []


def test_a_utc_time_is_written_as_the_envelope_writes_it() -> None:
    envelope = _sold()
    envelope.occurred_at = datetime(2026, 11, 20, 1, 30, 0, 250000, tzinfo=UTC)
    headers = dict((k, v.decode()) for k, v in envelope_headers("aftersales.intake", envelope))
    assert headers["ce_time"] == "2026-11-20T01:30:00.250000Z" == envelope.to_dict()["occurred_at"]


def test_the_type_and_source_name_the_topic_so_one_type_name_on_two_topics_is_two_types() -> None:
    assert ce_type("upstream.sales", "VehicleSold", 1) == "com.aftersales.upstream.sales.VehicleSold.v1"
    assert ce_type("aftersales.intake", "VehicleSold", 2) == "com.aftersales.intake.VehicleSold.v2"
    assert ce_type("aftersales.deadletter", "DeadLettered", 1) == "com.aftersales.deadletter.DeadLettered.v1"
    assert ce_source("upstream.dms", "dms") == "/upstream/dms"
    assert ce_source("aftersales.deadletter", "followup") == "/aftersales/followup"
    names = {ce_type(topic, event_type, spec.max_version) for (topic, event_type), spec in CATALOG.items()}
    assert len(names) == len(CATALOG), "every catalog entry has its own ce_type"


def test_a_forwarded_record_that_is_not_an_envelope_keeps_the_two_old_headers_and_gets_no_ce() -> None:
    event_id = uuid.uuid4()
    for value in (b"not json", b'{"event_id": "x"}', b'{"event_type": "VehicleSold", "occurred_at": "yesterday"}'):
        headers = record_headers("upstream.sales", value, event_type="VehicleSold", event_id=event_id)
        assert headers == [("event_type", b"VehicleSold"), ("event_id", str(event_id).encode())]


def test_a_producers_envelope_forwarded_by_the_webhook_names_the_producer_as_source() -> None:
    fleet = Fleet(seed=5)
    env = fleet.sale(fleet.vehicle(datetime(2026, 11, 1, tzinfo=CST)))
    import orjson

    headers = dict((k, v.decode()) for k, v in record_headers(UPSTREAM_TOPICS[0], orjson.dumps(env),
                                                              event_type="VehicleSold", event_id=env["event_id"]))
    assert headers["ce_source"] == "/upstream/sales"
    assert headers["ce_type"] == "com.aftersales.upstream.sales.VehicleSold.v1"
    assert headers["ce_dataschema"].endswith("upstream.sales/VehicleSold.v1.json")


def test_the_checker_reports_headers_that_disagree_with_the_envelope() -> None:
    envelope = _sold()
    headers = dict((k, v.decode()) for k, v in envelope_headers("aftersales.intake", envelope))
    headers["ce_id"] = str(uuid.uuid4())
    headers["ce_time"] = "20 Nov 2026"
    del headers["ce_subject"]
    found = problems(headers, envelope, "aftersales.intake")
    assert "ce_subject is missing" in found
    assert any(p.startswith("ce_id is") for p in found)
    assert any("not RFC 3339" in p for p in found)
    assert set(CE_HEADERS) - {"ce_subject"} <= set(headers)


def test_a_dead_letter_keeps_the_refused_records_headers_and_carries_its_own_ce_headers() -> None:
    uow: UnitOfWork[None] = UnitOfWork(None, service="intake", settings=Settings.model_construct(),  # type: ignore[arg-type]
                                       clock=ManualClock(NOW), deps=None)
    original = [("event_type", b"VehicleSold"), ("ce_id", b"abc"), ("ce_source", b"/upstream/sales"),
                ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    dead = uow.dead_letter(topic="upstream.sales", partition=3, offset=42, key=b"VIN", value=b"not json",
                           headers=original, error="MalformedJSON", reason="the record value is not JSON")
    assert dead.data.record.headers == {k: v.decode() for k, v in original}
    assert base64.b64decode(dead.data.record.value_b64) == b"not json"
    headers = dict((k, v.decode()) for k, v in envelope_headers("aftersales.deadletter", dead))
    assert headers["ce_type"] == "com.aftersales.deadletter.DeadLettered.v1"
    assert headers["ce_source"] == "/aftersales/intake"
    assert headers["ce_subject"] == "upstream.sales:3:42"
    assert problems(headers, dead, "aftersales.deadletter") == []


@pytest.mark.parametrize("topic,event_type", sorted(CATALOG))
def test_every_catalog_event_names_a_schema_file_that_exists(topic: str, event_type: str) -> None:
    spec = CATALOG[(topic, event_type)]
    for version in range(1, spec.max_version + 1):
        path = ROOT / "docs" / "schemas" / topic / f"{event_type}.v{version}.json"
        assert path.is_file(), f"{path} is missing: run `aftersales docs`"


def test_every_header_the_relay_sends_is_documented_in_every_asyncapi_message() -> None:
    import yaml

    from shared.settings import SERVICES

    envelope = _sold()
    row = {"topic": "aftersales.intake", "payload": envelope.to_json(), "event_type": "VehicleSold",
           "event_id": envelope.event_id, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
           "tracestate": "vendor=1"}
    sent = {name for name, _ in _headers(row)}  # type: ignore[arg-type]
    assert {"traceparent", "tracestate", *CE_HEADERS, "content-type"} <= sent
    for service in SERVICES:
        doc = yaml.safe_load((ROOT / "docs" / "api" / f"{service}.asyncapi.yaml").read_text())
        for name, message in doc["components"]["messages"].items():
            documented = set(message["headers"]["properties"])
            assert sent <= documented, f"{service} {name}: undocumented headers {sent - documented}"
            if not name.startswith("upstream."):
                assert set(message["headers"]["required"]) == sent - {"traceparent", "tracestate"}, name
