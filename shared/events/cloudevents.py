"""The CloudEvents 1.0 Kafka protocol binding, binary mode (docs/events.md, "Headers").

Every record the platform produces keeps its value exactly as before (the envelope's JSON, which
is the CloudEvent's `data`) and carries, beside the headers it always had (`event_type`,
`event_id`, `schema_version`, `correlation_id`), the CloudEvents attributes as `ce_*` headers
and `content-type: application/json`. The attributes are derived from the envelope:

| header | value |
|---|---|
| `ce_specversion` | `1.0` |
| `ce_id` | the envelope's `event_id` |
| `ce_type` | `com.aftersales.<topic without "aftersales.">.<event_type>.v<schema_version>` |
| `ce_source` | `/aftersales/<service>` on the platform's topics, `/upstream/<producer>` on `upstream.*` |
| `ce_time` | the envelope's `occurred_at` (RFC 3339) |
| `ce_subject` | the record key (the envelope's `key`: customer id, VIN, case id ...) |
| `ce_dataschema` | `SCHEMA_BASE` + `<topic>/<event_type>.v<schema_version>.json`, a file under docs/schemas/ |

Consumers never need the `ce_*` headers (the envelope in the value says everything), so records
from producers that do not send them are accepted as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Annotated

import msgspec

from shared.events.catalog import UPSTREAM_TOPICS
from shared.events.envelope import Envelope

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "com.aftersales"
# The identifier of the schemas: each file under docs/schemas/ has `$id` = SCHEMA_BASE + its
# path there. A fixed name (the reserved .example domain), so the committed schemas and the
# headers agree wherever the platform runs; an operator may serve docs/schemas/ at any address.
SCHEMA_BASE = "https://aftersales.example/schemas/"
# The headers the platform sent before CloudEvents; kept, since consumers may filter on them.
LEGACY_HEADERS = ("event_type", "event_id", "schema_version", "correlation_id")
CE_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "ce_dataschema")
REQUIRED_CE_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source")


def schema_path(topic: str, event_type: str, version: int) -> str:
    """Where the JSON Schema of (topic, event type, version) lies under docs/schemas/."""
    return f"{topic}/{event_type}.v{version}.json"


def dataschema(topic: str, event_type: str, version: int) -> str:
    """`ce_dataschema`: the absolute URI (and `$id`) of that JSON Schema."""
    return SCHEMA_BASE + schema_path(topic, event_type, version)


def ce_type(topic: str, event_type: str, version: int) -> str:
    """`com.aftersales.intake.VehicleSold.v1`, `com.aftersales.upstream.sales.VehicleSold.v1`: the
    topic names the type, since one event type name may mean different data on two topics."""
    return f"{TYPE_PREFIX}.{topic.removeprefix('aftersales.')}.{event_type}.v{version}"


def ce_source(topic: str, source: str) -> str:
    """The producer as a URI reference: `/aftersales/intake`, or `/upstream/dms` for a producer's record."""
    return f"/upstream/{source}" if topic in UPSTREAM_TOPICS else f"/aftersales/{source}"


def rfc3339(moment: datetime) -> str:
    """As the envelope's JSON writes it (RFC 3339: `2026-11-20T09:30:00+08:00`, UTC as `Z`)."""
    return msgspec.json.encode(moment).decode().strip('"')


class _Attributes(msgspec.Struct, kw_only=True):
    """What the headers need of an envelope; its `data` is skipped, not decoded."""

    event_id: uuid.UUID
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    schema_version: Annotated[int, msgspec.Meta(ge=1)] = 1
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    correlation_id: uuid.UUID | None = None
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


_ATTRIBUTES = msgspec.json.Decoder(_Attributes)


_SPECVERSION = SPECVERSION.encode()
_CONTENT_TYPE = CONTENT_TYPE.encode()


@lru_cache(maxsize=4096)
def _per_type(topic: str, event_type: str, version: int, source: str) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The headers one (topic, type, version, source) always has, encoded once (the relay
    publishes tens of thousands a second of a few dozen kinds)."""
    return (event_type.encode(), str(version).encode(), ce_type(topic, event_type, version).encode(),
            ce_source(topic, source).encode(), dataschema(topic, event_type, version).encode())


def record_headers(topic: str, value: bytes, *, event_type: str, event_id: uuid.UUID | str) -> list[tuple[str, bytes]]:
    """The headers of a record about to be produced to `topic` (its contract name, without a
    prefix) with this value. A value that is not a readable envelope (a producer's bad record
    that intake's webhook forwards, to be dead-lettered with its reason) gets the two headers
    it always had and no `ce_*`: a CloudEvent without a valid id, type or time would be a lie."""
    try:
        a = _ATTRIBUTES.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [("event_type", event_type.encode()), ("event_id", str(event_id).encode())]
    kind, version, type_, source, schema = _per_type(topic, a.event_type, a.schema_version, a.source)
    event_id_text = str(a.event_id).encode()
    return [
        ("event_type", kind),
        ("event_id", event_id_text),
        ("schema_version", version),
        ("correlation_id", str(a.correlation_id).encode() if a.correlation_id else event_id_text),
        ("ce_specversion", _SPECVERSION),
        ("ce_id", event_id_text),
        ("ce_type", type_),
        ("ce_source", source),
        ("ce_time", msgspec.json.encode(a.occurred_at)[1:-1]),
        ("ce_subject", a.key.encode()),
        ("ce_dataschema", schema),
        ("content-type", _CONTENT_TYPE),
    ]


def envelope_headers(topic: str, envelope: Envelope) -> list[tuple[str, bytes]]:
    """The headers of an envelope published to `topic` (for tools and tests that produce directly)."""
    return record_headers(topic, envelope.to_json(), event_type=envelope.event_type, event_id=envelope.event_id)


def problems(headers: Mapping[str, str] | Iterable[tuple[str, bytes]], envelope: Envelope, topic: str) -> list[str]:
    """What is wrong with a record's `ce_*` headers against its envelope (empty: a valid
    CloudEvent that says what the envelope says). For tests and audits; consumers never require them."""
    found = dict(headers.items()) if isinstance(headers, Mapping) else {k: v.decode() for k, v in headers}
    wrong = [f"{name} is missing" for name in (*CE_HEADERS, "content-type") if name not in found]
    expected = dict((k, v.decode()) for k, v in envelope_headers(topic, envelope))
    for name in (*CE_HEADERS, "content-type"):
        if name in found and found[name] != expected[name]:
            wrong.append(f"{name} is {found[name]!r}; the envelope gives {expected[name]!r}")
    if "ce_time" in found:
        try:
            moment = datetime.fromisoformat(found["ce_time"])
        except ValueError:
            wrong.append(f"ce_time {found['ce_time']!r} is not RFC 3339")
        else:
            if moment.tzinfo is None:
                wrong.append(f"ce_time {found['ce_time']!r} has no offset")
    return wrong
