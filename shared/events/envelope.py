"""The one envelope every record carries (DESIGN.md §3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# Derived event ids are uuid5 under this namespace, so re-running a handler on the same cause
# yields the same event_id and every consumer downstream recognises the repeat.
AFTERSALES_NAMESPACE = uuid.UUID("6f1c7d3e-5a0b-4b8e-9d6a-2f4e8c1b7a90")


class Envelope(BaseModel):
    """Unknown top-level fields are kept (forward compatible) and ignored."""

    model_config = ConfigDict(extra="allow")

    event_id: uuid.UUID
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(1, ge=1)
    occurred_at: AwareDatetime
    source: str = Field(min_length=1, max_length=100)
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    key: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _correlation_defaults_to_event_id(cls, value: Any) -> Any:
        # An upstream producer that starts a chain may leave correlation_id out.
        if isinstance(value, dict) and not value.get("correlation_id") and value.get("event_id"):
            value = {**value, "correlation_id": value["event_id"]}
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            ("event_type", self.event_type.encode()),
            ("event_id", str(self.event_id).encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("correlation_id", str(self.correlation_id).encode()),
        ]


def derive_event_id(cause: uuid.UUID, *parts: object) -> uuid.UUID:
    """A deterministic id for an event caused by `cause` (same inputs, same id)."""
    return uuid.uuid5(AFTERSALES_NAMESPACE, f"{cause}:" + ":".join(str(p) for p in parts))


D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Event(Generic[D]):
    """A decoded record: its envelope, its typed data, and where it was read from."""

    envelope: Envelope
    data: D
    topic: str = ""
    partition: int = -1
    offset: int = -1

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
        return self.envelope.correlation_id
