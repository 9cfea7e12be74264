"""Decoding a Kafka record into a typed Event, and building the events a service publishes.

Every way a record can be unusable raises `InvalidRecord` with a reason that names the
field and what was expected; the consumer dead-letters it and the partition keeps flowing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from shared.events.catalog import EventData, EventSpec, event_types_on, spec_for
from shared.events.envelope import Envelope, Event, derive_event_id
from shared.validation import nul_path


class Cause(Protocol):
    """What a caused event needs of its cause: an Envelope, or a durable timer (which also
    offers a `discriminator`, since one event may set many timers)."""

    @property
    def event_id(self) -> uuid.UUID: ...

    @property
    def correlation_id(self) -> uuid.UUID: ...


class InvalidRecord(Exception):
    """A record that can never be processed as it is (permanent: dead-letter it)."""

    def __init__(self, error: str, reason: str, envelope: Envelope | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.envelope = envelope


class UnhandledEventType(Exception):
    """A well-formed event of a type this consumer does not handle (ignored, not dead-lettered)."""


QUOTE_LIMIT = 120  # characters of a refused value a reason quotes; the dead letter keeps it whole


def quoted(value: Any) -> str:
    """repr() of a refused value, cut short: a reason names the problem, it is not a copy."""
    text = repr(value)
    return text if len(text) <= QUOTE_LIMIT else f"{text[:QUOTE_LIMIT]}… ({len(text):,} characters)"


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """'data.vin: VIN 'X' has 16 characters; a VIN has 17; data.customer.phone is missing'."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        kind = err["type"]
        message = err["msg"].removeprefix("Value error, ")
        if kind == "missing":
            parts.append(f"{loc} is missing")
        elif kind == "extra_forbidden":
            parts.append(f"{loc} is not an allowed field")
        elif kind == "timezone_aware":
            parts.append(f"{loc}: {quoted(err.get('input'))} has no timezone; expected ISO 8601 with an offset such as +08:00")
        else:
            shown = err.get("input")
            got = f" (got {quoted(shown)})" if kind not in ("value_error", "assertion_error") and not isinstance(shown, (dict, list)) else ""
            message = message if len(message) <= 300 else f"{message[:300]}…"  # a message may quote the value too
            parts.append(f"{loc}: {message}{got}" if loc else f"{message}{got}")
    return "; ".join(parts)


def parse_envelope(value: bytes | None) -> Envelope:
    if value is None:
        raise InvalidRecord("EmptyRecord", "the record has no value; expected a JSON envelope")
    if b"\\u0000" in value:  # JSON escapes U+0000 so; a text column cannot hold it
        try:
            where = nul_path(orjson.loads(value))
        except orjson.JSONDecodeError:
            where = None  # not JSON: said below
        if where is not None:
            raise InvalidRecord("ValidationFailed", f"{where} holds the character U+0000 (NUL), which cannot be "
                                                    "stored; remove it")
    try:
        return Envelope.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidRecord(
                "MalformedJSON", f"the record value is not JSON ({first['msg']}); expected a JSON envelope"
            ) from None
        if first["type"] == "model_type" and not first["loc"]:
            try:
                kind = type(orjson.loads(value)).__name__
            except orjson.JSONDecodeError:
                kind = "value"
            raise InvalidRecord(
                "MalformedEnvelope", f"the record value is a JSON {kind}; expected a JSON object envelope"
            ) from None
        raise InvalidRecord("InvalidEnvelope", describe_validation_error(exc)) from None


def decode_data(envelope: Envelope, spec: EventSpec) -> EventData:
    if envelope.schema_version > spec.max_version:
        raise InvalidRecord(
            "UnsupportedSchemaVersion",
            f"schema_version {envelope.schema_version} of {envelope.event_type} is newer than this consumer "
            f"understands (up to {spec.max_version}); upgrade the consumer, then redrive",
            envelope,
        )
    try:
        data = spec.model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidRecord("ValidationFailed", describe_validation_error(exc, "data"), envelope) from None
    return data


def decode(
    value: bytes | None,
    topic: str,
    *,
    contract_topic: str | None = None,
    strict_types: bool,
    partition: int = -1,
    offset: int = -1,
    check_key: bool = False,
) -> Event[Any]:
    """Decode one record. `strict_types`: an event type not in the catalog for this topic is
    invalid (intake on upstream topics); otherwise it raises UnhandledEventType."""
    envelope = parse_envelope(value)
    logical = contract_topic or topic
    spec = spec_for(logical, envelope.event_type)
    if spec is None:
        if strict_types:
            allowed = ", ".join(event_types_on(logical)) or "none"
            raise InvalidRecord(
                "UnknownEventType",
                f"event_type {envelope.event_type!r} does not belong on {logical}; expected one of: {allowed}",
                envelope,
            )
        raise UnhandledEventType(envelope.event_type)
    data = decode_data(envelope, spec)
    if check_key:
        expected_key = spec.key(data)
        if envelope.key != expected_key:
            raise InvalidRecord(
                "KeyMismatch",
                f"key {envelope.key!r} does not match the event's {spec.key_doc} {expected_key!r}; "
                f"{envelope.event_type} is keyed by {spec.key_doc}",
                envelope,
            )
    return Event(envelope=envelope, data=data, topic=topic, partition=partition, offset=offset)


def new_event(
    *,
    topic: str,
    event_type: str,
    data: BaseModel | dict[str, Any],
    source: str,
    occurred_at: datetime,
    cause: Cause | None = None,
    event_id: uuid.UUID | None = None,
    discriminator: object = "",
) -> Envelope:
    """Build a catalog event. The data is validated against the catalog model, the key is
    derived from it, and a caused event gets a deterministic id plus the cause's correlation."""
    spec = spec_for(topic, event_type)
    if spec is None:
        raise ValueError(f"{event_type} is not in the catalog for {topic}")
    model = data if isinstance(data, spec.model) else spec.model.model_validate(
        data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    )
    key = spec.key(model)
    if event_id is None:
        # A cause that can produce many facts (a timer set by one event) adds its own identity.
        own = getattr(cause, "discriminator", "")
        event_id = derive_event_id(cause.event_id, event_type, key, own, discriminator) if cause else uuid.uuid4()
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        schema_version=1,
        occurred_at=occurred_at,
        source=source,
        correlation_id=cause.correlation_id if cause else event_id,
        causation_id=cause.event_id if cause else None,
        key=key,
        data=model.model_dump(mode="json", exclude_none=False),
    )
