"""The unit of work a handler receives: one database transaction in which its state change,
the events it publishes (outbox rows) and the timers it sets are written together, plus the
service's typed dependencies (its rules, clients, directories)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import msgspec
import structlog

from shared.bulk import Table
from shared.clock import Clock
from shared.events import DEADLETTER, SERVICE_TOPIC, Envelope, Event, spec_for, wrap
from shared.events.canonical import DeadLettered, DeadLetterRecord
from shared.events.codec import Cause, describe_msgspec_error
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.settings import Settings
from shared.tracing import TraceContext, for_outbox

D = TypeVar("D")
B = TypeVar("B", bound="Batch")


class Batch(Protocol):
    """What one transaction's handlers load, change and save together (files, projections):
    every handler of a poll works on the same objects, and each is written once, at flush."""

    async def save(self) -> None: ...


def outbox_channel(service: str) -> str:
    return f"aftersales_outbox_{service}"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    topic: str
    event_id: uuid.UUID
    key: str
    event_type: str
    payload: bytes
    trace: TraceContext | None = None  # the W3C trace context the relay sends as headers


@dataclass(frozen=True, slots=True)
class TimerRequest:
    kind: str
    ref: str
    due_at: datetime
    payload: dict[str, Any]
    cause_event_id: uuid.UUID | None
    cause_correlation_id: uuid.UUID | None
    replace: bool


def dead_letter_event_id(service: str, topic: str, partition: int, offset: int) -> uuid.UUID:
    """The same bad record read twice is dead-lettered once."""
    return uuid5(AFTERSALES_NAMESPACE, f"deadletter:{service}:{topic}:{partition}:{offset}")


# A plain request keeps a timer that is already set; a re-arming one replaces it.
KEEP_TIMER = "(kind, ref) DO NOTHING"
REARM_TIMER = """(kind, ref) DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload,
    cause_event_id = EXCLUDED.cause_event_id, cause_correlation_id = EXCLUDED.cause_correlation_id,
    fired_at = NULL, cancelled_at = NULL, error = NULL"""
TIMERS = Table("timers", {
    "kind": "text", "ref": "text", "due_at": "timestamptz", "payload": "jsonb", "cause_event_id": "uuid",
    "cause_correlation_id": "uuid",
})


def _as_catalog(model: type[Any], event_type: str, data: Mapping[str, Any]) -> Any:
    """A mapping a service built, as the catalog's Struct (types checked, defaults filled); the
    fields the catalog does not know (a newer producer's, passed on by intake) are kept."""
    try:
        struct = msgspec.convert(data, model, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{event_type} does not match the catalog: {describe_msgspec_error(exc, 'data')}") from None
    known = model.__struct_fields__
    extra = {k: v for k, v in data.items() if k not in known}
    return {**msgspec.to_builtins(struct), **extra} if extra else struct


class UnitOfWork(Generic[D]):
    def __init__(self, conn: asyncpg.Connection, *, service: str, settings: Settings, clock: Clock, deps: D) -> None:
        self.conn = conn
        self.deps = deps
        self.service = service
        self.settings = settings
        self.clock = clock
        self.log = structlog.get_logger(f"aftersales.{service}")
        self._topic = SERVICE_TOPIC.get(service, "")
        self._messages: list[OutboxRow] = []
        self._ids: set[uuid.UUID] = set()  # event ids in this transaction (a batch holds thousands)
        self._published: list[Envelope] = []
        self._timers: list[TimerRequest] = []
        self._batches: dict[Callable[[UnitOfWork[D]], Batch], Batch] = {}
        # The trace context of each record being handled (by event id; the consumer fills it): an
        # event caused by one carries that record's trace on (shared/tracing.py).
        self.traces: dict[uuid.UUID, TraceContext] = {}

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def published(self) -> list[Envelope]:
        """The events this unit of work has published so far."""
        return list(self._published)

    def _append(self, topic: str, envelope: Envelope, trace: TraceContext | None = None) -> None:
        if envelope.event_id in self._ids:
            # Two facts with one derived id: the outbox would keep only the first. A bug in the
            # caller; fail loudly instead of losing an event.
            raise ValueError(
                f"{envelope.event_type} {envelope.key}: event id {envelope.event_id} is already used in this "
                "transaction; publish it with a discriminator"
            )
        self._ids.add(envelope.event_id)
        if trace is None and self.traces and envelope.causation_id is not None:
            trace = self.traces.get(envelope.causation_id)
        self._messages.append(OutboxRow(topic, envelope.event_id, envelope.key, envelope.event_type,
                                        envelope.to_json(), for_outbox(trace)))
        self._published.append(envelope)

    def forward(self, topic: str, *, key: str | None, value: bytes, event_id: uuid.UUID, event_type: str) -> None:
        """Put a record on an upstream topic exactly as a producer sent it (the intake webhook
        is a gateway for producers that cannot write to Kafka)."""
        self._ids.add(event_id)
        self._messages.append(OutboxRow(self.settings.topic(topic), event_id, key or "", event_type, value,
                                        for_outbox(None)))

    def batch(self, kind: Callable[[UnitOfWork[D]], B]) -> B:
        """This transaction's `kind` (made on first use): the state its handlers share, saved
        once when the unit of work is flushed."""
        found = self._batches.get(kind)
        if found is None:
            found = self._batches[kind] = kind(self)
        return found  # type: ignore[return-value]

    # -- events -------------------------------------------------------------------------
    def publish(
        self,
        event_type: str,
        data: Any,
        *,
        cause: Event[Any] | Cause | None,
        occurred_at: datetime | None = None,
        discriminator: object = "",
        event_id: uuid.UUID | None = None,
        checked: bool = False,
    ) -> Envelope:
        """Record an event on this service's own topic, to be published after commit. `data` is
        the event's canonical Struct, encoded as it is; or a mapping, type-checked against the
        catalog first unless the caller says it is `checked` already (intake: the canonical JSON
        of an upstream record it has just validated)."""
        spec = spec_for(self._topic, event_type)
        if spec is None:
            raise ValueError(f"{event_type} is not in the catalog for {self._topic}")
        if not (checked or isinstance(data, msgspec.Struct)):
            data = _as_catalog(spec.model, event_type, data)
        cause_envelope = cause.envelope if isinstance(cause, Event) else cause
        envelope = wrap(spec, data, source=self.service, occurred_at=occurred_at or self.clock.now(),
                        cause=cause_envelope, discriminator=discriminator, event_id=event_id)
        self._append(self.settings.topic(self._topic), envelope)
        return envelope

    def dead_letter(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
        error: str,
        reason: str,
        envelope: Envelope | None = None,
        trace: TraceContext | None = None,
    ) -> Envelope:
        logical_topic = topic.removeprefix(self.settings.topic_prefix)
        data = DeadLettered(
            service=self.service, topic=logical_topic, partition=partition, offset=offset, error=error, reason=reason,
            event_type=envelope.event_type if envelope else None,
            original_event_id=str(envelope.event_id) if envelope else None,
            record=DeadLetterRecord(
                key=key.decode("utf-8", "replace") if key is not None else None,
                value_b64=base64.b64encode(value or b"").decode(),
                headers={k: v.decode("utf-8", "replace") if v is not None else "" for k, v in headers},
            ),
        )
        spec = spec_for(DEADLETTER, "DeadLettered")
        assert spec is not None
        dead = wrap(spec, data, source=self.service, occurred_at=self.clock.now(),
                    event_id=dead_letter_event_id(self.service, logical_topic, partition, offset))
        if envelope is not None:
            dead.correlation_id, dead.causation_id = envelope.correlation, envelope.event_id
        self._append(self.settings.topic(DEADLETTER), dead, trace)
        return dead

    # -- timers -------------------------------------------------------------------------
    def schedule_timer(
        self,
        kind: str,
        ref: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
        *,
        cause: Event[Any] | Cause | None = None,
        replace: bool = False,
    ) -> None:
        """Set a durable timer; (kind, ref) is unique. `replace` re-arms an existing one."""
        cause_envelope = cause.envelope if isinstance(cause, Event) else cause
        self._timers.append(
            TimerRequest(
                kind, ref, due_at, payload or {},
                cause_envelope.event_id if cause_envelope else None,
                (cause_envelope.correlation_id or cause_envelope.event_id) if cause_envelope else None,
                replace,
            )
        )

    async def cancel_timers(self, ref: str | list[str], kinds: list[str] | None = None) -> int:
        """Cancel the pending timers of one ref (or several refs), of the given kinds or all."""
        await self._flush_timers()
        refs = [ref] if isinstance(ref, str) else list(ref)
        result = await self.conn.execute(
            """UPDATE timers SET cancelled_at = $3
                WHERE ref = ANY($1::text[]) AND ($2::text[] IS NULL OR kind = ANY($2))
                  AND fired_at IS NULL AND cancelled_at IS NULL""",
            refs, kinds, self.clock.now(),
        )
        return int(result.split()[-1])

    # -- commit -------------------------------------------------------------------------
    async def flush(self) -> int:
        """Save the batches, write pending timers and outbox rows; return how many outbox rows
        were written."""
        while self._batches:
            batches, self._batches = list(self._batches.values()), {}
            for batch in batches:
                await batch.save()
        await self._flush_timers()
        if not self._messages:
            return 0
        messages, self._messages = self._messages, []
        # One statement: the rows, and a wake-up for the relay (delivered at commit).
        await self.conn.execute(
            """WITH ins AS (
                   INSERT INTO outbox (event_id, topic, key, event_type, payload, traceparent, tracestate)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::text[],
                                        $8::text[])
                   RETURNING 1)
               SELECT pg_notify($6, '') WHERE EXISTS (SELECT 1 FROM ins)""",
            [m.event_id for m in messages],
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.event_type for m in messages],
            [m.payload for m in messages],
            outbox_channel(self.service),
            [m.trace.traceparent if m.trace else None for m in messages],
            [m.trace.tracestate if m.trace else None for m in messages],
        )
        return len(messages)

    async def _flush_timers(self) -> None:
        if not self._timers:
            return
        # A multi-row upsert may touch a row only once, and several handlers of one poll may arm
        # the same timer: one request per (kind, ref) and mode. Plain requests keep the timer
        # that exists, so the first wins; re-arming requests replace it, so the last wins, and
        # they are applied after the plain ones.
        plain: dict[tuple[str, str], TimerRequest] = {}
        rearm: dict[tuple[str, str], TimerRequest] = {}
        for t in self._timers:
            if t.replace:
                rearm[(t.kind, t.ref)] = t
            else:
                plain.setdefault((t.kind, t.ref), t)
        self._timers = []
        for replace, requests in ((False, plain), (True, rearm)):
            rows = [{"kind": t.kind, "ref": t.ref, "due_at": t.due_at, "payload": t.payload,
                     "cause_event_id": t.cause_event_id, "cause_correlation_id": t.cause_correlation_id}
                    for t in requests.values()]
            if not rows:
                continue
            await TIMERS.insert(self.conn, rows, on_conflict=REARM_TIMER if replace else KEEP_TIMER)
