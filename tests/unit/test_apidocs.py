"""The API documents under docs/api/: current with the code, complete (every catalog event
type, every subscription, every route), valid AsyncAPI 3.0, and describing what is really on
the wire (an envelope built as producers build it validates against its message payload)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from aftersales.cli import _add_tools, app
from services import load
from shared.events import CATALOG, SERVICE_TOPIC
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES, Settings
from tools import apidocs
from tools.simulate import CST, Fleet

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = ROOT / "deploy" / "schema" / "asyncapi-3.0.0.json"


def committed_asyncapi(service: str) -> dict[str, Any]:
    return yaml.safe_load((apidocs.DOCS_DIR / f"{service}.asyncapi.yaml").read_text())  # type: ignore[no-any-return]


def operations(doc: dict[str, Any], action: str) -> set[tuple[str, str]]:
    """(topic, event type) of every operation with this action ('receive' or 'send')."""
    found = set()
    for operation in doc["operations"].values():
        if operation["action"] != action:
            continue
        channel = doc["channels"][operation["channel"]["$ref"].split("/")[-1]]
        for reference in channel["messages"].values():
            message = doc["components"]["messages"][reference["$ref"].split("/")[-1]]
            found.add((channel["address"], message["name"]))
    return found


def payload_validator(doc: dict[str, Any], topic: str, event_type: str, action: str) -> jsonschema.Validator:
    for operation in doc["operations"].values():
        channel = doc["channels"][operation["channel"]["$ref"].split("/")[-1]]
        for reference in channel["messages"].values():
            message = doc["components"]["messages"][reference["$ref"].split("/")[-1]]
            if operation["action"] == action and channel["address"] == topic and message["name"] == event_type:
                schema = {**message["payload"], "components": doc["components"]}
                return jsonschema.Draft202012Validator(schema)
    raise AssertionError(f"no {action} of {event_type} on {topic}")


def test_the_committed_documents_are_what_the_code_gives_now() -> None:
    stale = apidocs.stale()
    assert not stale, f"docs/api is stale ({', '.join(stale)}): run `aftersales docs` and commit the result"


def test_the_docs_command_writes_the_documents_and_its_check_finds_a_stale_one(tmp_path: Path) -> None:
    assert _add_tools(), "the docs command is a tool"
    runner = CliRunner()
    written = runner.invoke(app, ["docs", "--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(
        ["README.md", *(f"{s}.openapi.json" for s in SERVICES), *(f"{s}.asyncapi.yaml" for s in SERVICES)])
    assert {"events-catalog.md", "rules.md", "schemas"} <= {p.name for p in tmp_path.iterdir()}
    assert len(list((tmp_path / "schemas").rglob("*.json"))) == len(CATALOG)
    assert runner.invoke(app, ["docs", "--out", str(tmp_path), "--check"]).exit_code == 0
    (tmp_path / "api" / "quality.asyncapi.yaml").write_text("asyncapi: 3.0.0\n")
    (tmp_path / "schemas" / "aftersales.quality" / "QualityAlertRaised.v1.json").write_text("{}\n")
    (tmp_path / "rules.md").write_text("# rules\n")
    stale = runner.invoke(app, ["docs", "--out", str(tmp_path), "--check"])
    assert stale.exit_code == 1
    for name in ("api/quality.asyncapi.yaml", "schemas/aftersales.quality/QualityAlertRaised.v1.json", "rules.md"):
        assert name in stale.output.replace("\n", ""), stale.output
    assert (tmp_path / "api" / "quality.asyncapi.yaml").read_text() == "asyncapi: 3.0.0\n", "--check changes nothing"


def test_every_catalog_event_type_appears_in_some_document() -> None:
    documented: set[tuple[str, str]] = set()
    for service in SERVICES:
        doc = committed_asyncapi(service)
        documented |= operations(doc, "receive") | operations(doc, "send")
    missing = sorted(set(CATALOG) - documented)
    assert not missing, f"catalog events in no AsyncAPI document: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_document_lists_what_its_service_consumes_and_publishes(service: str) -> None:
    doc = committed_asyncapi(service)
    consumed = {(s.topic, t) for s in load(service).subscriptions for t in s.handlers if (s.topic, t) in CATALOG}
    assert operations(doc, "receive") == consumed
    published = {key for key in CATALOG if key[0] == SERVICE_TOPIC[service]} | {("aftersales.deadletter", "DeadLettered")}
    assert published <= operations(doc, "send")
    assert {op["channel"]["$ref"].split("/")[-1] for op in doc["operations"].values()} == set(doc["channels"])


def test_the_asyncapi_documents_follow_the_asyncapi_3_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    for service in SERVICES:
        doc = committed_asyncapi(service)
        assert doc["asyncapi"] == "3.0.0"
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
        assert not errors, f"{service}: " + "\n".join(errors[:10])
    broken = committed_asyncapi("quality")
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2's word, not 3's
    assert list(validator.iter_errors(broken))


def test_a_message_payload_is_the_envelope_of_the_catalog_model_as_producers_send_it() -> None:
    fleet = Fleet(seed=8)
    vehicle = fleet.vehicle(datetime(2025, 3, 1, tzinfo=CST))
    pickup = fleet.pickup(vehicle, datetime(2026, 11, 16, 9, 0, tzinfo=CST))
    intake = committed_asyncapi("intake")
    validator = payload_validator(intake, "upstream.dms", "VehiclePickedUp", "receive")
    assert not list(validator.iter_errors(pickup))
    assert list(validator.iter_errors({**pickup, "event_type": "ReceiptReturned"})), "event_type is fixed per message"
    assert list(validator.iter_errors({**pickup, "data": {k: v for k, v in pickup["data"].items() if k != "vin"}}))
    message = next(m for m in intake["components"]["messages"].values()
                   if m["payload"]["$ref"].endswith("/UpstreamDmsVehiclePickedUp"))
    assert message["bindings"]["kafka"]["key"]["description"] == "vin"
    assert message["correlationId"]["location"] == "$message.header#/correlation_id"
    data_ref = intake["components"]["schemas"]["UpstreamDmsVehiclePickedUp"]["properties"]["data"]["$ref"]
    assert data_ref.endswith("/Upstream" + CATALOG[("upstream.dms", "VehiclePickedUp")].model.__name__)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_openapi_document_is_what_the_service_serves(service: str) -> None:
    committed = json.loads((apidocs.DOCS_DIR / f"{service}.openapi.json").read_text())
    runtime = ServiceRuntime(load(service), Settings.model_construct())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test") as client:
        served = (await client.get("/openapi.json")).json()
    assert served == committed
    assert {"/health", "/ready", "/metrics"} <= set(committed["paths"])
    assert committed["info"]["title"] == f"Aftersales {service}"
