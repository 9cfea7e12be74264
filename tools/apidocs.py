"""`aftersales docs`: the API documents of every service, written under docs/api/.

- OpenAPI, from each service's FastAPI app (what /docs serves), as `<service>.openapi.json`.
- AsyncAPI 3.0, from FastStream, as `<service>.asyncapi.yaml`: a KafkaBroker declared per
  service with a subscriber per (topic, event type) it consumes and a publisher per event
  type it publishes. A message's payload is the envelope (docs/events.md) whose `data` is the
  event's structure in the catalog (shared.events.catalog: msgspec Structs on `aftersales.*`,
  JSON Schema from msgspec; pydantic models on `upstream.*`); its Kafka key and headers are
  given as message bindings. The broker only describes: the services consume with their own
  consumer (shared/kafka/consumer.py), which keeps per-partition order, the inbox and the
  commit-after-transaction contract.

The documents are a pure function of the code, so tests/unit/test_apidocs.py regenerates
them and fails when the committed ones are stale.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from shared.events import CATALOG, DEADLETTER, SERVICE_TOPIC, UPSTREAM_TOPICS, EventSpec
from shared.events.catalog import event_types_on
from shared.events.cloudevents import CONTENT_TYPE, SCHEMA_BASE, SPECVERSION
from shared.settings import SERVICES, Settings
from tools.docfiles import stale_files, write_files

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs" / "api"
VERSION = "1.0.0"
LOCAL_BOOTSTRAP = "127.0.0.1:9092"
# The headers every record the platform produces carries beside its envelope (the relay:
# shared.events.cloudevents.record_headers): the four it always sent and the CloudEvents 1.0
# Kafka binding's, binary mode (docs/events.md, "Headers").
_HEADER_PROPERTIES: dict[str, Any] = {
    "event_type": {"type": "string", "description": "the envelope's event_type, to filter without parsing"},
    "event_id": {"type": "string", "format": "uuid", "description": "the envelope's event_id (consumers de-duplicate on it)"},
    "schema_version": {"type": "string", "description": "the envelope's schema_version"},
    "correlation_id": {"type": "string", "format": "uuid", "description": "carried unchanged along a chain of events"},
    "ce_specversion": {"type": "string", "const": SPECVERSION, "description": "CloudEvents: the spec version"},
    "ce_id": {"type": "string", "format": "uuid", "description": "CloudEvents id: the envelope's event_id"},
    "ce_type": {"type": "string", "description": "CloudEvents type: com.aftersales.<topic without 'aftersales.'>."
                                                 "<event_type>.v<schema_version>"},
    "ce_source": {"type": "string", "format": "uri-reference",
                  "description": "CloudEvents source: /aftersales/<service>, or /upstream/<producer> on upstream.*"},
    "ce_time": {"type": "string", "format": "date-time", "description": "CloudEvents time: the envelope's occurred_at"},
    "ce_subject": {"type": "string", "description": "CloudEvents subject: the record key (the envelope's key)"},
    "ce_dataschema": {"type": "string", "format": "uri",
                      "description": "CloudEvents dataschema: the JSON Schema of the envelope of this type and "
                                     f"version, {SCHEMA_BASE}<topic>/<event_type>.v<n>.json (docs/schemas/)"},
    "content-type": {"type": "string", "const": CONTENT_TYPE, "description": "CloudEvents datacontenttype"},
    "traceparent": {"type": "string", "description": "W3C trace context of the request or record that caused the "
                                                     "event (absent when it was caused outside any trace)"},
    "tracestate": {"type": "string", "description": "W3C trace state, when the trace carries one"},
}
_OPTIONAL_HEADERS = ("traceparent", "tracestate")
HEADERS = {"type": "object", "properties": _HEADER_PROPERTIES,
           "required": [name for name in _HEADER_PROPERTIES if name not in _OPTIONAL_HEADERS]}
# What upstream producers send: any of these, or none (intake reads the envelope in the value);
# what intake's webhook forwards carries them all when it is a readable envelope.
UPSTREAM_HEADERS = {
    "type": "object", "properties": _HEADER_PROPERTIES, "required": [],
    "description": "Producers may send these headers or none; the envelope in the value is what counts.",
}


@dataclass(frozen=True)
class Channel:
    """One (topic, event type) a service consumes or publishes, and why."""

    spec: EventSpec
    action: Literal["consumes", "publishes"]
    note: str = ""

    @property
    def title(self) -> str:
        suffix = ":forwarded" if self.note.startswith("forwarded") else ":read-back" if self.note.startswith("read back") \
            else ""
        return f"{self.spec.topic}:{self.spec.event_type}{suffix}"


def channels(service: str) -> list[Channel]:
    """What a service consumes (its subscriptions) and publishes (its topic's catalog entries,
    dead letters, and for intake the webhook's records forwarded to the upstream topics)."""
    from services import load

    definition = load(service)
    known_types = {event_type for _, event_type in CATALOG}
    found: list[Channel] = []
    for subscription in definition.subscriptions:
        for event_type in sorted(subscription.handlers):
            spec = CATALOG.get((subscription.topic, event_type))
            if spec is not None:
                own = subscription.topic == SERVICE_TOPIC[service]  # an event it publishes and reads back
                found.append(Channel(spec, "consumes", "read back from its own topic to act on it" if own else ""))
            elif event_type not in known_types:
                raise ValueError(f"{service} subscribes to {event_type} on {subscription.topic}, an event type the "
                                 "catalog (shared/events/catalog.py) does not know; add it there or fix the subscription")
            # else: a type of another topic (e.g. a notifier rule without a topic), which never arrives here
    for event_type in event_types_on(SERVICE_TOPIC[service]):
        found.append(Channel(CATALOG[(SERVICE_TOPIC[service], event_type)], "publishes"))
    found.append(Channel(CATALOG[(DEADLETTER, "DeadLettered")], "publishes",
                         "a record it cannot handle (bad JSON, failed validation, newer schema_version), with the reason"))
    if service == "intake":
        for topic in UPSTREAM_TOPICS:
            for event_type in event_types_on(topic):
                found.append(Channel(CATALOG[(topic, event_type)], "publishes",
                                     "forwarded from the signed webhook (POST /v1/events) for producers that cannot reach Kafka"))
    return found


class EnvelopeDoc(BaseModel):
    """The envelope every record carries (shared.events.envelope.Envelope); unknown top-level
    fields are ignored."""

    model_config = ConfigDict(extra="allow")

    event_id: str = Field(json_schema_extra={"format": "uuid"}, description="unique; derived (uuid5) for caused events")
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(1, ge=1)
    occurred_at: AwareDatetime = Field(description="when it happened in the world, with its offset")
    source: str = Field(min_length=1, max_length=100)
    correlation_id: str | None = Field(None, json_schema_extra={"format": "uuid"},
                                       description="carried unchanged along a chain; defaults to event_id")
    causation_id: str | None = Field(None, json_schema_extra={"format": "uuid"},
                                     description="the event_id of the event that caused this one")
    key: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]


_ENVELOPES: dict[tuple[str, str], type[BaseModel]] = {}
_SCHEMA_REF = "#/components/schemas/{name}"


def _schema_name(spec: EventSpec) -> str:
    return "".join(part.capitalize() for part in spec.topic.split(".") if part != "aftersales") + spec.event_type


def envelope_model(spec: EventSpec) -> type[BaseModel]:
    """The envelope of one event type: `event_type` fixed; its `data` is filled in from the
    catalog's structure after FastStream has rendered the document (`_data_schemas`)."""
    key = (spec.topic, spec.event_type)
    if key not in _ENVELOPES:
        summary = (spec.model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        _ENVELOPES[key] = create_model(
            _schema_name(spec),
            __base__=EnvelopeDoc,
            __doc__=f"{spec.event_type} on {spec.topic}, keyed by {spec.key_doc}." + (f" {summary}" if summary else ""),
            event_type=(Literal[spec.event_type], Field(description="the event's type; also the `event_type` header")),
            schema_version=(int, Field(1, ge=1, le=spec.max_version,
                                       description=f"versions this code understands: 1..{spec.max_version}")),
            key=(str, Field(min_length=1, max_length=200, description=f"the record key: {spec.key_doc}")),
        )
    return _ENVELOPES[key]


def _data_schemas(specs: list[EventSpec]) -> tuple[dict[str, str], dict[str, Any]]:
    """(envelope schema name -> its data's schema name, every data schema by name): canonical
    Structs through msgspec, upstream pydantic models (prefixed Upstream) through pydantic."""
    refs: dict[str, str] = {}
    schemas: dict[str, Any] = {}
    canonical = sorted({s.model for s in specs if not s.upstream}, key=lambda m: m.__name__)
    if canonical:
        _, components = msgspec.json.schema_components(canonical, ref_template=_SCHEMA_REF)
        schemas.update(components)
    for spec in specs:
        if spec.upstream:
            name = f"Upstream{spec.model.__name__}"
            found = spec.model.model_json_schema(ref_template=_SCHEMA_REF.replace("{name}", "Upstream{model}"))
            for sub, definition in found.pop("$defs", {}).items():
                schemas[f"Upstream{sub}"] = definition
            schemas[name] = found
        else:
            name = spec.model.__name__
        refs[_schema_name(spec)] = name
    return refs, schemas


def _describe(handler_name: str, model: type[BaseModel]) -> Callable[..., Any]:
    async def handler(message: Any) -> None:
        """Described only: the service's own consumer handles the records."""

    handler.__name__ = handler_name
    handler.__annotations__ = {"message": model, "return": None}
    return handler


def asyncapi(service: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of one service, as plain data."""
    from services import load

    definition = load(service)
    broker = KafkaBroker(
        LOCAL_BOOTSTRAP,
        description="Kafka: 127.0.0.1:9092 with `aftersales infra up`; kafka-1:9092,kafka-2:9092,kafka-3:9092 "
                    "under docker compose (AFTERSALES_KAFKA_BOOTSTRAP).",
    )
    listed = channels(service)
    for channel in listed:
        model = envelope_model(channel.spec)
        description = _channel_description(service, channel)
        if channel.action == "consumes":
            broker.subscriber(
                channel.spec.topic, group_id=service, title=channel.title, description=description,
                auto_offset_reset="earliest",
            )(_describe(f"{service}_{channel.spec.event_type}", model))
        else:
            broker.publisher(channel.spec.topic, title=channel.title, description=description, schema=model)
    with warnings.catch_warnings():
        # An overwritten channel or schema would be a wrong document, not a cosmetic issue.
        warnings.simplefilter("error", RuntimeWarning)
        document = AsyncAPI(
            broker, title=f"Aftersales {service}", version=VERSION,
            description=f"{definition.description}\n\nEvery record is one JSON envelope (docs/events.md); the record "
                        "key is the envelope's key; the headers repeat event_type, event_id, schema_version and "
                        "correlation_id and carry the CloudEvents 1.0 attributes (Kafka binding, binary mode: ce_id, "
                        "ce_type, ce_source, ce_time, ce_subject, ce_dataschema, content-type); the JSON Schema of "
                        f"each event type is under docs/schemas/. Consumer group: `{service}`.",
            schema_version="3.0.0",
        ).to_specification().to_jsonable()
    # FastStream keeps its subscribers in a set: sort, so the document is the same on every run.
    for section in (document["channels"], document["operations"], document["components"]["messages"],
                    document["components"]["schemas"]):
        ordered = dict(sorted(section.items()))
        section.clear()
        section.update(ordered)
    refs, data_schemas = _data_schemas([c.spec for c in listed])
    schemas = document["components"]["schemas"]
    for envelope_name, data_name in refs.items():
        if envelope_name in schemas:
            schemas[envelope_name]["properties"]["data"] = {"$ref": _SCHEMA_REF.format(name=data_name)}
            schemas[envelope_name]["required"] = sorted(set(schemas[envelope_name].get("required", [])) | {"data"})
    for name in sorted(data_schemas):
        schemas.setdefault(name, data_schemas[name])
    schemas_sorted = dict(sorted(schemas.items()))
    schemas.clear()
    schemas.update(schemas_sorted)
    by_title = {c.title: c for c in listed}
    for message_name, message in document["components"]["messages"].items():
        channel = by_title[message_name.rsplit(":", 1)[0]]
        message["name"] = channel.spec.event_type
        message["headers"] = UPSTREAM_HEADERS if channel.spec.upstream else HEADERS
        message["bindings"] = {"kafka": {"key": {"type": "string", "description": channel.spec.key_doc},
                                         "bindingVersion": "0.4.0"}}
    return document  # type: ignore[no-any-return]


def _channel_description(service: str, channel: Channel) -> str:
    spec = channel.spec
    if channel.action == "consumes":
        why = f", {channel.note}" if channel.note else ""
        return f"{service} consumes {spec.event_type} from {spec.topic} (key: {spec.key_doc}){why}."
    why = f", {channel.note}" if channel.note else ""
    return f"{service} publishes {spec.event_type} to {spec.topic} (key: {spec.key_doc}){why}."


def openapi(service: str) -> dict[str, Any]:
    """The OpenAPI document of one service's HTTP API (what its /docs shows)."""
    from services import load
    from shared.runtime import ServiceRuntime

    # Defaults, not this machine's environment: the document must not depend on who made it.
    runtime = ServiceRuntime(load(service), Settings.model_construct())
    return runtime.app.openapi()


def render() -> dict[str, str]:
    """File name -> content of every document under docs/api/."""
    files: dict[str, str] = {}
    rows = []
    for service in SERVICES:
        spec = openapi(service)
        files[f"{service}.openapi.json"] = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
        events = asyncapi(service)
        files[f"{service}.asyncapi.yaml"] = yaml.safe_dump(events, sort_keys=False, allow_unicode=True, width=120)
        consumed = sorted({c.spec.topic for c in channels(service) if c.action == "consumes"})
        published = sorted({c.spec.topic for c in channels(service) if c.action == "publishes"})
        rows.append(f"| {service} | [{service}.openapi.json]({service}.openapi.json) ({len(spec['paths'])} paths) "
                    f"| [{service}.asyncapi.yaml]({service}.asyncapi.yaml) ({len(events['channels'])} channels) "
                    f"| {', '.join(consumed)} | {', '.join(published)} |")
    files["README.md"] = _INDEX.format(rows="\n".join(rows))
    return files


def write(directory: Path = DOCS_DIR) -> list[Path]:
    """Write the documents; return the files whose content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_files(directory, render())


def stale(directory: Path = DOCS_DIR) -> list[str]:
    """The documents that are missing or differ from what the code gives now."""
    return stale_files(directory, render())


_INDEX = """# API documents

Generated by `aftersales docs` from the code (do not edit by hand; run it again after changing a
route, a subscription or an event model). `aftersales docs --check` fails when they are stale.

| service | HTTP (OpenAPI 3) | events (AsyncAPI 3.0) | consumes from | publishes to |
|---|---|---|---|---|
{rows}

- A running service serves the same OpenAPI document at `/openapi.json` and renders it at `/docs`.
- Every AsyncAPI message is the envelope ([../events.md](../events.md)) whose `data` is the
  event's model in `shared/events/catalog.py`; the message bindings give the Kafka key, the
  headers give `event_type`, `event_id`, `schema_version`, `correlation_id` and the CloudEvents
  `ce_*` attributes with `content-type` (required on the platform's topics; on `upstream.*` a
  producer may send none). The JSON Schema of each event type and version is under
  [../schemas/](../schemas/), the catalog in [../events-catalog.md](../events-catalog.md).
  Intake also publishes to the upstream topics: what producers post to its signed webhook is
  forwarded there, so it takes exactly the Kafka path.
- To browse an AsyncAPI document: `faststream docs serve docs/api/followup.asyncapi.yaml`.
"""
