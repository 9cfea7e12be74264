"""The one envelope every record carries (docs/events.md): a msgspec Struct, decoded once.

A consumer decodes the envelope with its `data` left as raw JSON, then the data straight into
the event type's own structure (see `codec`): nothing is parsed twice and nothing a service
built itself is validated again.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec

# Derived event ids are uuid5 under this namespace, so re-running a handler on the same cause
# yields the same event_id and every consumer downstream recognises the repeat.
AFTERSALES_NAMESPACE = uuid.UUID("6f1c7d3e-5a0b-4b8e-9d6a-2f4e8c1b7a90")

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Version = Annotated[int, msgspec.Meta(ge=1)]


class Envelope(msgspec.Struct, kw_only=True):
    """Unknown top-level fields are ignored (forward compatible). `data` is the event's typed
    structure once decoded (a plain dict where the reader asked for no type)."""

    event_id: uuid.UUID
    event_type: EventType
    schema_version: Version = 1
    occurred_at: AwareDatetime
    source: Source
    # An upstream producer that starts a chain may leave it out: it is then the event's own id.
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    key: Key
    data: Any = None

    def __post_init__(self) -> None:
        if self.correlation_id is None:
            self.correlation_id = self.event_id

    @property
    def correlation(self) -> uuid.UUID:
        """The correlation id (always set after decoding)."""
        return self.correlation_id or self.event_id

    def to_json(self) -> bytes:
        return ENCODER.encode(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready builtins (times as ISO 8601 strings): what a producer would send."""
        return msgspec.json.decode(self.to_json(), type=dict[str, Any])

    # A record's Kafka headers (the old four and the CloudEvents ones) are built from the
    # envelope by shared.events.cloudevents.record_headers / envelope_headers.


class RawEnvelope(msgspec.Struct, kw_only=True):
    """The envelope as first read: `data` kept as raw JSON until its type is known."""

    event_id: uuid.UUID
    event_type: EventType
    schema_version: Version = 1
    occurred_at: AwareDatetime
    source: Source
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    key: Key
    data: msgspec.Raw

    def with_data(self, data: Any) -> Envelope:
        return Envelope(
            event_id=self.event_id, event_type=self.event_type, schema_version=self.schema_version,
            occurred_at=self.occurred_at, source=self.source, correlation_id=self.correlation_id,
            causation_id=self.causation_id, key=self.key, data=data,
        )


def _encode_other(value: Any) -> Any:
    """Pydantic models (upstream data at the edge) encode as their JSON form."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")


ENCODER = msgspec.json.Encoder(enc_hook=_encode_other)


_SAFE = uuid.SafeUUID.unknown


def uuid5(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """`uuid.uuid5(namespace, name)`, without its argument checks: a batch derives thousands of
    ids (event ids, follow-up ids) and uuid.uuid5 spends most of its time checking its inputs.
    tests/unit/test_codec.py holds the two equal."""
    digest = hashlib.sha1(namespace.bytes + name.encode()).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF000 << 64)) | (5 << 76)  # version 5
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    derived = object.__new__(uuid.UUID)
    object.__setattr__(derived, "int", value)
    object.__setattr__(derived, "is_safe", _SAFE)
    return derived


def derive_event_id(cause: uuid.UUID, *parts: object) -> uuid.UUID:
    """A deterministic id for an event caused by `cause` (same inputs, same id)."""
    return uuid5(AFTERSALES_NAMESPACE, f"{cause}:" + ":".join([str(p) for p in parts]))


D = TypeVar("D")


class Event(Generic[D]):
    """A decoded record: its envelope, its typed data, and where it was read from."""

    __slots__ = ("envelope", "topic", "partition", "offset")

    def __init__(self, envelope: Envelope, topic: str = "", partition: int = -1, offset: int = -1) -> None:
        self.envelope = envelope
        self.topic = topic
        self.partition = partition
        self.offset = offset

    @property
    def data(self) -> D:
        return self.envelope.data  # type: ignore[no-any-return]

    @property
    def event_id(self) -> uuid.UUID:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def key(self) -> str:
        return self.envelope.key

    @property
    def occurred_at(self) -> datetime:
        return self.envelope.occurred_at

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.envelope.correlation

    def __repr__(self) -> str:
        return f"Event({self.event_type} {self.event_id} key={self.key!r} {self.topic}:{self.partition}:{self.offset})"
