"""Decoding a Kafka record into a typed Event, once, and building the events a service publishes.

Every way a record can be unusable raises `InvalidRecord` with a reason that names the
field and what was expected; the consumer dead-letters it and the partition keeps flowing.

Decoding is two steps over the same bytes: the envelope with its data kept raw, then the data
into its event type's structure: a canonical Struct (msgspec, types checked, nothing validated
twice) or, on an upstream topic, intake's pydantic model (the edge, where records are checked).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Container, Mapping
from datetime import datetime
from functools import cache
from typing import Any, Protocol

import msgspec
from pydantic import BaseModel, ValidationError

from shared.events.catalog import EventSpec, event_types_on, spec_for
from shared.events.envelope import Envelope, Event, RawEnvelope, derive_event_id
from shared.validation import nul_path


class Cause(Protocol):
    """What a caused event needs of its cause: an Envelope, or a durable timer (which also
    offers a `discriminator`, since one event may set many timers)."""

    @property
    def event_id(self) -> uuid.UUID: ...

    @property
    def correlation_id(self) -> uuid.UUID | None: ...


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
            shows_input = kind not in ("value_error", "assertion_error") and not isinstance(shown, (dict, list))
            got = f" (got {quoted(shown)})" if shows_input else ""
            message = message if len(message) <= 300 else f"{message[:300]}…"  # a message may quote the value too
            parts.append(f"{loc}: {message}{got}" if loc else f"{message}{got}")
    return "; ".join(parts)


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


def describe_msgspec_error(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `str`, got `int` - at `$.data.vin`" as "data.vin: expected `str`, got `int`"."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], (match["path"] or "")
    where = ".".join(p for p in (prefix, path.replace("[", ".").replace("]", "").lstrip(".")) if p)
    missing = _MISSING.match(message)
    if missing:
        return f"{where + '.' if where else ''}{missing['name']} is missing"
    text = message[:1].lower() + message[1:]
    if "a timezone component" in message:
        text += "; expected ISO 8601 with an offset such as +08:00"
    return f"{where}: {text}" if where else text


_ENVELOPE = msgspec.json.Decoder(RawEnvelope)
_ANY = msgspec.json.Decoder()


@cache
def _decoder(model: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(model)


def parse_envelope(value: bytes | None, *, refuse_nul: bool = True) -> RawEnvelope:
    if value is None:
        raise InvalidRecord("EmptyRecord", "the record has no value; expected a JSON envelope")
    if refuse_nul and b"\\u0000" in value:  # JSON escapes U+0000 so; a text column cannot hold it
        try:
            where = nul_path(_ANY.decode(value))
        except msgspec.DecodeError:
            where = None  # not JSON: said below
        if where is not None:
            raise InvalidRecord("ValidationFailed", f"{where} holds the character U+0000 (NUL), which cannot be "
                                                    "stored; remove it")
    try:
        return _ENVELOPE.decode(value)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Expected `object`, got ") and " - at " not in message:
            try:
                kind = type(_ANY.decode(value)).__name__
            except msgspec.DecodeError as not_json:  # a string and then more: msgspec stopped at the first value
                raise InvalidRecord(
                    "MalformedJSON", f"the record value is not JSON ({not_json}); expected a JSON envelope"
                ) from None
            raise InvalidRecord(
                "MalformedEnvelope", f"the record value is a JSON {kind}; expected a JSON object envelope"
            ) from None
        raise InvalidRecord("InvalidEnvelope", describe_msgspec_error(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRecord(
            "MalformedJSON", f"the record value is not JSON ({exc}); expected a JSON envelope"
        ) from None


def decode_data(raw: RawEnvelope, spec: EventSpec) -> Envelope:
    """The envelope with its data decoded into the event type's structure."""
    if raw.schema_version > spec.max_version:
        raise InvalidRecord(
            "UnsupportedSchemaVersion",
            f"schema_version {raw.schema_version} of {raw.event_type} is newer than this consumer "
            f"understands (up to {spec.max_version}); upgrade the consumer, then redrive",
            raw.with_data(None),
        )
    if spec.upstream:
        try:
            data: Any = spec.model.model_validate_json(bytes(raw.data))
        except ValidationError as exc:
            raise InvalidRecord("ValidationFailed", describe_validation_error(exc, "data"), raw.with_data(None)) from None
    else:
        try:
            data = _decoder(spec.model).decode(raw.data)  # type: ignore[arg-type]  # a class is hashable
        except msgspec.ValidationError as exc:
            raise InvalidRecord("ValidationFailed", describe_msgspec_error(exc, "data"), raw.with_data(None)) from None
    return raw.with_data(data)


def decode(
    value: bytes | None,
    topic: str,
    *,
    contract_topic: str | None = None,
    strict_types: bool,
    partition: int = -1,
    offset: int = -1,
    check_key: bool = False,
    wanted: Container[str] | None = None,
) -> Event[Any]:
    """Decode one record. `strict_types`: an event type not in the catalog for this topic is
    invalid (intake on upstream topics); otherwise it raises UnhandledEventType, as does a type
    not `wanted` (its data is then not decoded at all)."""
    raw = parse_envelope(value)
    logical = contract_topic or topic
    spec = spec_for(logical, raw.event_type)
    if wanted is not None and raw.event_type not in wanted and (spec is not None or not strict_types):
        raise UnhandledEventType(raw.event_type)
    if spec is None:
        if strict_types:
            allowed = ", ".join(event_types_on(logical)) or "none"
            raise InvalidRecord(
                "UnknownEventType",
                f"event_type {raw.event_type!r} does not belong on {logical}; expected one of: {allowed}",
                raw.with_data(None),
            )
        raise UnhandledEventType(raw.event_type)
    envelope = decode_data(raw, spec)
    if check_key:
        expected_key = spec.key(envelope.data)
        if envelope.key != expected_key:
            raise InvalidRecord(
                "KeyMismatch",
                f"key {envelope.key!r} does not match the event's {spec.key_doc} {expected_key!r}; "
                f"{envelope.event_type} is keyed by {spec.key_doc}",
                envelope,
            )
    return Event(envelope, topic, partition, offset)


def read_envelope(value: bytes) -> Envelope:
    """Any record's envelope with its data as plain JSON values (tools, tests, audits); a
    dead letter may quote a U+0000 it refused, so that is no reason to refuse reading it."""
    raw = parse_envelope(value, refuse_nul=False)
    return raw.with_data(_ANY.decode(raw.data))


def caused_id(cause: Cause, event_type: str, key: str, discriminator: object = "") -> uuid.UUID:
    """The id of the `event_type` event (with this key) that `cause` causes: the same inputs
    always give the same id, so a re-run publishes nothing new. A cause that can produce many
    facts (a timer set by one event) adds its own identity."""
    own = getattr(cause, "discriminator", "")
    return derive_event_id(cause.event_id, event_type, key, own, discriminator)


def wrap(
    spec: EventSpec,
    data: Any,
    *,
    source: str,
    occurred_at: datetime,
    cause: Cause | None = None,
    event_id: uuid.UUID | None = None,
    discriminator: object = "",
) -> Envelope:
    """Wrap data a service built (trusted: not validated again) in its envelope. The key is
    derived from the data; a caused event gets a deterministic id and the cause's correlation."""
    key = spec.key(data)
    if event_id is None:
        event_id = caused_id(cause, spec.event_type, key, discriminator) if cause else uuid.uuid4()
    return Envelope(
        event_id=event_id,
        event_type=spec.event_type,
        schema_version=1,
        occurred_at=occurred_at,
        source=source,
        correlation_id=(cause.correlation_id or cause.event_id) if cause else event_id,
        causation_id=cause.event_id if cause else None,
        key=key,
        data=data,
    )


def new_event(
    *,
    topic: str,
    event_type: str,
    data: Any,
    source: str,
    occurred_at: datetime,
    cause: Cause | None = None,
    event_id: uuid.UUID | None = None,
    discriminator: object = "",
) -> Envelope:
    """Build a catalog event from anything that describes it (a Struct, a pydantic model, a
    mapping of builtins or Python values): it is checked against the catalog's structure first.
    For tools and tests; a service publishes through its unit of work."""
    spec = spec_for(topic, event_type)
    if spec is None:
        raise ValueError(f"{event_type} is not in the catalog for {topic}")
    if isinstance(data, spec.model):
        model = data
    elif spec.upstream:
        plain = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        model = spec.model.model_validate(plain)
    else:
        plain = msgspec.to_builtins(data) if isinstance(data, msgspec.Struct) else data
        if isinstance(plain, Mapping):
            plain = {k: v for k, v in plain.items()}
        model = msgspec.convert(plain, spec.model, strict=False)
    return wrap(spec, model, source=source, occurred_at=occurred_at, cause=cause, event_id=event_id,
                    discriminator=discriminator)
