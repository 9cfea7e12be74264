"""The event contract: the envelope, the catalog registry, decoding and building events
(docs/events.md)."""

from shared.events.catalog import (
    ALL_TOPICS,
    CANONICAL_TOPICS,
    CATALOG,
    COMPLAINTS,
    DEADLETTER,
    FOLLOWUP,
    INTAKE,
    NOTIFIER,
    QUALITY,
    SERVICE_TOPIC,
    UPSTREAM_CRM,
    UPSTREAM_DMS,
    UPSTREAM_ERP,
    UPSTREAM_SALES,
    UPSTREAM_TOPICS,
    EventSpec,
    spec_for,
)
from shared.events.codec import InvalidRecord, UnhandledEventType, decode, new_event, read_envelope, wrap
from shared.events.envelope import Envelope, Event, derive_event_id

__all__ = [
    "ALL_TOPICS", "CANONICAL_TOPICS", "CATALOG", "COMPLAINTS", "DEADLETTER", "FOLLOWUP", "INTAKE", "NOTIFIER",
    "QUALITY", "SERVICE_TOPIC", "UPSTREAM_CRM", "UPSTREAM_DMS", "UPSTREAM_ERP", "UPSTREAM_SALES",
    "UPSTREAM_TOPICS", "Envelope", "Event", "EventSpec", "InvalidRecord", "UnhandledEventType", "decode",
    "derive_event_id", "new_event", "read_envelope", "spec_for", "wrap",
]
