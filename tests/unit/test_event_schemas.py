"""The JSON Schemas under docs/schemas/ (one per event type and version, generated from the
catalog) and the compatibility policy (docs/events.md): the catalog is checked against the
previous release's schemas, and the checker is shown to catch each kind of breaking change."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.events import CATALOG, new_event
from shared.events.cloudevents import SCHEMA_BASE, dataschema, envelope_headers
from tools import eventschemas
from tools.simulate import CST, Fleet

SCHEMAS = eventschemas.SCHEMAS_DIR


def current(relative: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / relative).read_text())  # type: ignore[no-any-return]


def test_the_committed_schemas_are_what_the_catalog_gives_now() -> None:
    stale = eventschemas.stale()
    assert not stale, f"docs/schemas is stale ({', '.join(stale[:5])}): run `aftersales docs` and commit the result"


def test_one_valid_draft_2020_12_schema_per_event_type_and_version_named_by_its_ce_dataschema() -> None:
    files = eventschemas.render()
    assert len(files) == sum(spec.max_version for spec in CATALOG.values())
    for (topic, event_type), spec in CATALOG.items():
        schema = json.loads(files[f"{topic}/{event_type}.v{spec.max_version}.json"])
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == dataschema(topic, event_type, spec.max_version)
        assert schema["properties"]["event_type"]["const"] == event_type
        assert "data" in schema["required"]


def test_an_envelope_as_the_services_build_it_validates_and_a_broken_one_does_not() -> None:
    fleet = Fleet(seed=11)
    vehicle = fleet.vehicle(datetime(2025, 5, 1, tzinfo=CST))
    pickup = fleet.pickup(vehicle, datetime(2026, 11, 16, 9, 0, tzinfo=CST))
    upstream = jsonschema.Draft202012Validator(current("upstream.dms/VehiclePickedUp.v1.json"),
                                               format_checker=jsonschema.FormatChecker())
    assert not list(upstream.iter_errors(pickup))
    envelope = new_event(topic="aftersales.intake", event_type="VehiclePickedUp", data=pickup["data"],
                         source="intake", occurred_at=datetime(2026, 11, 16, 9, 5, tzinfo=CST))
    headers = dict((k, v.decode()) for k, v in envelope_headers("aftersales.intake", envelope))
    schema = current(headers["ce_dataschema"].removeprefix(SCHEMA_BASE))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    value = envelope.to_dict()
    assert not list(validator.iter_errors(value))
    assert list(validator.iter_errors({**value, "event_type": "VehicleSold"}))
    assert list(validator.iter_errors({**value, "data": {k: v for k, v in value["data"].items() if k != "vin"}}))
    assert list(validator.iter_errors({**value, "schema_version": 2})), "a v1 schema is for v1 envelopes"


def test_the_catalog_keeps_the_previous_releases_schemas_by_the_policy() -> None:
    releases = eventschemas.releases()
    assert releases, "docs/schemas/releases/ holds the previous release's schemas"
    previous = releases[-1]
    snapshot = eventschemas.load_release(previous)
    assert len(snapshot) >= len(CATALOG) - 5, "the snapshot holds (nearly) every event type"
    broken = eventschemas.check_release(previous)
    assert not broken, "breaking changes against release " + previous + ":\n" + "\n".join(
        f"{path}: {'; '.join(problems)}" for path, problems in broken.items())


def _pickup_schema() -> dict[str, Any]:
    return current("aftersales.intake/VehiclePickedUp.v1.json")


def test_the_checker_reports_a_removed_field_a_changed_type_and_a_new_required_field() -> None:
    old = _pickup_schema()
    new = copy.deepcopy(old)
    data = new["$defs"]["VehiclePickedUp"]
    del data["properties"]["advisor_id"]                                       # removed
    data["properties"]["mileage_km"] = {"type": "string"}                      # int -> string
    data["properties"]["workshop_bay"] = {"type": "string"}                    # new, and required
    data["required"] = [*data["required"], "workshop_bay"]
    problems = eventschemas.compatibility(old, new)
    assert "data.advisor_id: field removed (or renamed)" in problems
    assert "data.mileage_km: type changed from integer to string" in problems
    assert any(p.startswith("data.workshop_bay: newly required") for p in problems)
    assert len(problems) == 3, problems
    assert eventschemas.compatibility(old, old) == []


def test_the_checker_reports_removed_enum_values_narrowing_and_a_field_no_longer_required() -> None:
    old = _pickup_schema()
    new = copy.deepcopy(old)
    data = new["$defs"]["VehiclePickedUp"]
    service_type = data["properties"]["service_type"]
    values = service_type["enum"]
    service_type["enum"] = [v for v in values if v != "recall"]
    new["properties"]["key"]["maxLength"] = 17
    data["required"] = [name for name in data["required"] if name != "dealer_id"]
    del new["properties"]["source"]
    problems = eventschemas.compatibility(old, new)
    assert "data.service_type: enum value(s) removed: recall" in problems
    assert "key: maxLength narrowed from 200 to 17" in problems
    assert "data.dealer_id: no longer required (a reader relies on it)" in problems
    assert "source: field removed (or renamed)" in problems, "the envelope is checked too"


def test_a_new_optional_field_is_additive_and_a_new_enum_value_only_where_the_list_is_open() -> None:
    old = _pickup_schema()
    new = copy.deepcopy(old)
    data = new["$defs"]["VehiclePickedUp"]
    data["properties"]["workshop_bay"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert eventschemas.compatibility(old, new) == []
    data["properties"]["service_type"]["enum"].append("bodywork")
    assert eventschemas.compatibility(old, new) == ["data.service_type: enum value(s) added to a closed list: bodywork"]
    opened_old = copy.deepcopy(old)
    opened_old["$defs"]["VehiclePickedUp"]["properties"]["service_type"][eventschemas.OPEN_ENUM] = True
    data["properties"]["service_type"][eventschemas.OPEN_ENUM] = True
    assert eventschemas.compatibility(opened_old, new) == []


def test_a_release_missing_an_event_type_now_is_reported(tmp_path: Path) -> None:
    target = tmp_path / "schemas"
    for relative, content in eventschemas.render().items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(content)
    eventschemas.snapshot("1.0", target)
    extra = target / "releases" / "1.0" / "aftersales.intake" / "VehicleScrapped.v1.json"
    extra.write_text(json.dumps({"type": "object"}))
    assert eventschemas.check_release("1.0", target) == {
        "aftersales.intake/VehicleScrapped.v1.json": ["the event type's version is no longer published or accepted"]}
    with pytest.raises(FileExistsError):
        eventschemas.snapshot("1.0", target)


def test_an_older_version_still_accepted_is_published_from_the_release_that_froze_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ("aftersales.quality", "QualityAlertRaised")
    target = tmp_path / "schemas"
    monkeypatch.setitem(CATALOG, key, dataclasses.replace(CATALOG[key], max_version=2))
    with pytest.raises(FileNotFoundError, match="QualityAlertRaised.v1.json"):
        eventschemas.render(target)
    frozen = target / "releases" / "1.0" / "aftersales.quality" / "QualityAlertRaised.v1.json"
    frozen.parent.mkdir(parents=True)
    frozen.write_text('{"title": "as release 1.0 published it"}\n')
    files = eventschemas.render(target)
    assert files["aftersales.quality/QualityAlertRaised.v1.json"] == '{"title": "as release 1.0 published it"}\n'
    monkeypatch.setitem(eventschemas.DEPRECATIONS, ("aftersales.quality", "QualityAlertRaised", 1), "2027-06-30")
    old = json.loads(eventschemas.render(target)["aftersales.quality/QualityAlertRaised.v1.json"])
    assert old["title"] == "as release 1.0 published it"
    assert old["x-aftersales"] == {"deprecated": True, "published_until": "2027-06-30", "replaced_by": 2}
    assert json.loads(files["aftersales.quality/QualityAlertRaised.v2.json"])["properties"]["schema_version"]["const"] == 2


def test_a_customers_personal_values_are_marked_sealed_on_the_canonical_topics_only() -> None:
    def data_properties(topic: str, event_type: str) -> dict[str, dict[str, Any]]:
        schema = eventschemas.schema_for(CATALOG[(topic, event_type)], 1)
        defs = schema["$defs"]
        return {f"{name}.{key}": prop for name, d in defs.items() for key, prop in d.get("properties", {}).items()}

    sold = data_properties("aftersales.intake", "VehicleSold")
    marked = {key for key, prop in sold.items() if prop.get("x-aftersales-sealed")}
    assert {"CustomerInfo.name", "CustomerInfo.phone", "CustomerInfo.address", "CustomerInfo.email",
            "VehicleSold.plate"} <= marked
    assert not marked & {"CustomerInfo.customer_id", "CustomerInfo.region", "VehicleSold.vin", "Consent.email"}
    upstream = data_properties("upstream.sales", "VehicleSold")
    assert not any(prop.get("x-aftersales-sealed") for prop in upstream.values())  # the producers' records as sent
