"""The consumer: decode → inbox → handle → commit, one partition batch per transaction.

A pipeline of small named steps (after Sentry's arroyo):

1. **Decode** each record into a typed `Event`, or an `InvalidRecord` with its reason.
2. **Inbox**: in the handler's transaction, insert the batch's event_ids; ids already there
   were processed before (a redelivery) and are skipped.
3. **Plan**: the poll's records are grouped by handler, keeping each key's records in order
   (`plan`): every handler is called once per poll with all its records, however the types
   interleave, unless one key's records alternate between handlers. Invalid records become
   `DeadLettered` outbox rows. State, outbox rows and inbox rows commit together.
4. **Commit** the offsets, only after the transaction committed.

A poll's records from all its partitions are handled in one transaction, each partition's in
its order (so each key's), which keeps transactions and offset commits few under load.

Policies, explicit:
- `DeadLetterPolicy`: undecodable records and records a handler rejects permanently go to
  `aftersales.deadletter` (through the outbox, so that too is transactional); the offset
  is committed and the partition keeps flowing.
- Transient failures (database or broker down) retry the whole batch with exponential
  backoff; nothing is committed meanwhile, nothing is dead-lettered.
- If a handler fails permanently on a batch, the batch is bisected: each half is re-run as
  a batch, in order, and only a half that fails is split again, down to the culprit, which
  alone is dead-lettered (about 2·log2(n) transactions for one bad record in n, not n).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception, stop_when_event_set, wait_exponential_jitter

from shared import keyring, metrics
from shared.clock import Clock
from shared.db import acquire
from shared.errors import PermanentError, is_transient
from shared.events import Event, InvalidRecord, UnhandledEventType, decode
from shared.events.codec import parse_envelope
from shared.kafka.clients import make_consumer
from shared.settings import Settings
from shared.tracing import TraceContext, consuming, from_headers, handling
from shared.uow import UnitOfWork, dead_letter_event_id

D = TypeVar("D")
# A handler takes every record of its type(s) in a poll, in order per key, as typed events.
Handler = Callable[[UnitOfWork[Any], list[Event[Any]]], Awaitable[None]]

log = structlog.get_logger("aftersales.consumer")


@dataclass(frozen=True)
class Subscription:
    """What a service consumes from one topic (contract name) and who handles each type.

    `strict_types`: an event type this topic's catalog does not list is invalid (intake on
    upstream topics). Otherwise events of types without a handler are ignored: they are
    some other service's concern. `check_key`: the envelope key must match the catalog key.
    """

    topic: str
    handlers: Mapping[str, Handler]
    strict_types: bool = False
    check_key: bool = False
    # Envelopes only: the data stays raw JSON (msgspec.Raw) and the handler under "*" takes any
    # event type (a pass-through, such as the benchmark's guarantees-only baseline).
    raw: bool = False


@dataclass(slots=True)
class Decoded:
    record: ConsumerRecord
    event: Event[Any] | None = None
    invalid: InvalidRecord | None = None
    handler: Handler | None = None
    trace: TraceContext | None = None  # the record's W3C trace context (its `traceparent` header)


@dataclass
class DeadLetterPolicy:
    """Permanent failures are dead-lettered with the original record; nothing is dropped."""

    service: str

    def record(self, uow: UnitOfWork[Any], item: Decoded, error: str, reason: str) -> None:
        r = item.record
        uow.dead_letter(
            topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value,
            headers=list(r.headers or ()), error=error, reason=reason,
            envelope=item.invalid.envelope if item.invalid else (item.event.envelope if item.event else None),
            trace=item.trace,
        )
        metrics.DEAD_LETTERS.labels(self.service, r.topic, error).inc()
        log.warning(
            "dead-lettered a record", topic=r.topic, partition=r.partition, offset=r.offset, error=error, reason=reason
        )


@dataclass
class CommitAfterTransaction:
    """Commit offsets only after the batch's database transaction committed."""

    async def commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        owned = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
        if len(owned) < len(offsets):
            log.info("offsets of reassigned partitions not committed", partitions=len(offsets) - len(owned))
        if not owned:
            return
        try:
            await consumer.commit(owned)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member during the batch; it re-reads from the
            # last commit and the inbox skips what this member already processed.
            log.info("offsets not committed: partitions reassigned", reason=str(exc))


_DEAD = object()  # the "handler" of invalid records: they are dead-lettered


def plan(items: Sequence[Decoded]) -> list[list[Decoded]]:
    """Group a poll's records into handler calls, keeping each key's records in order.

    A record joins its handler's group in the earliest stage its key allows: the stage of the
    key's previous record if that had the same handler, else the next one. Stages run in order,
    so each key sees its records in partition order, and a poll in which types interleave
    across keys (CustomerRegistered by customer, VehiclePickedUp by VIN) makes one call per
    handler instead of one per run. Records without a key have no order to keep."""
    last: dict[object, tuple[int, object]] = {}
    rank: dict[int, int] = {}
    groups: dict[tuple[int, int], list[Decoded]] = {}
    for item in items:
        handler: object = _DEAD if item.invalid is not None else item.handler
        r = item.record
        key: object = (r.topic, r.partition, r.key) if r.key is not None else object()
        previous = last.get(key)
        stage = 0 if previous is None else previous[0] if previous[1] is handler else previous[0] + 1
        last[key] = (stage, handler)
        order = rank.setdefault(id(handler), len(rank))
        groups.setdefault((stage, order), []).append(item)
    return [groups[k] for k in sorted(groups)]


@dataclass
class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    owner: EventConsumer[Any]

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the batch in flight finish and commit before the partitions move.
        try:
            await asyncio.wait_for(self.owner._batch_lock.acquire(), timeout=20)
            self.owner._batch_lock.release()
        except TimeoutError:
            log.warning("rebalance did not wait for a slow batch; its records will be re-read and skipped by the inbox")
        if revoked:
            log.info("partitions revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", count=len(assigned), service=self.owner.service)
        self.owner.assigned = set(assigned)


@dataclass
class EventConsumer(Generic[D]):
    service: str
    settings: Settings
    pool: asyncpg.Pool
    clock: Clock
    subscriptions: Sequence[Subscription]
    deps: D
    group_id: str | None = None
    client_id: str | None = None
    commit_policy: CommitAfterTransaction = field(default_factory=CommitAfterTransaction)
    # Where the customers' keys are read to open sealed fields: the service's pool by default;
    # a replay reads the live keyring (so an erased customer's values stay unreadable).
    keys: asyncpg.Pool | asyncpg.Connection | None = None

    def __post_init__(self) -> None:
        self.dead_letters = DeadLetterPolicy(self.service)
        self.group_id = self.group_id or f"{self.settings.topic_prefix}{self.service}"
        self.client_id = self.client_id or f"{self.service}-{os.getpid()}"
        self._by_topic = {self.settings.topic(s.topic): s for s in self.subscriptions}
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self.consumer: Any = None
        self.assigned: set[TopicPartition] = set()
        self.processed = 0
        self._lag_refreshed = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.consumer = make_consumer(self.settings, group_id=self.group_id,
                                      client_id=self.client_id or f"{self.service}-{os.getpid()}")
        self.consumer.subscribe(topics=list(self._by_topic), listener=_Rebalance(self))
        async for attempt in self._retrying("consumer-start"):
            with attempt:
                await self.consumer.start()

    async def stop(self) -> None:
        self._stopping.set()
        async with self._batch_lock:
            pass
        if self.consumer is not None:
            await self.consumer.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def _refresh_lag(self) -> None:
        """Lag from what the fetcher knows, also while no records arrive (a stuck consumer's lag
        keeps moving instead of freezing at its last batch)."""
        for tp in list(self.assigned):
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1)
            except (TimeoutError, IllegalStateError):
                continue
            metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, highwater - position))

    async def run(self) -> None:
        """Poll, process, commit; until stop. Survives broker and database outages."""
        while not self._stopping.is_set():
            try:
                batches = await self.consumer.getmany(
                    timeout_ms=self.settings.consumer_poll_timeout_ms, max_records=self.settings.consumer_max_records
                )
            except Exception as exc:  # the broker went away; aiokafka reconnects by itself
                if not is_transient(exc):
                    raise
                metrics.TRANSIENT_ERRORS.labels(self.service, "consumer-poll").inc()
                log.warning("poll failed, retrying", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            if not batches:
                if time.monotonic() - self._lag_refreshed > 5:
                    self._lag_refreshed = time.monotonic()
                    await self._refresh_lag()
                continue
            async with self._batch_lock:
                if self._stopping.is_set():
                    return  # uncommitted: the next owner re-reads these records
                await self._process(batches)

    # -- one poll: every partition's records, each partition in its order -----------------
    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One transaction for the whole poll, then one offset commit. Order is kept per
        partition (and so per key); partitions are independent of each other."""
        records = [r for partition_records in batches.values() for r in partition_records]
        started = time.perf_counter()
        try:
            await self.apply(records)
        except Exception as exc:
            if is_transient(exc) and self._stopping.is_set():
                return  # shutting down mid-outage: nothing committed, the records will be re-read
            raise
        metrics.HANDLER_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        await self.commit_policy.commit(
            self.consumer, {tp: partition_records[-1].offset + 1 for tp, partition_records in batches.items()}
        )
        self.processed += len(records)
        for tp, partition_records in batches.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                    max(0, highwater - partition_records[-1].offset - 1)
                )

    async def apply(self, records: Sequence[ConsumerRecord]) -> None:
        """Decode and handle records in one transaction (inbox, handlers, dead letters, outbox),
        bisecting the batch down to the culprit when a handler fails on it. Transient
        failures are retried with backoff. Commits no offsets: the caller does (or, for a
        replay, there is nothing to commit)."""
        values = await self._opened(records)
        items = [self._decode(r, v) for r, v in zip(records, values, strict=True)]
        for item in items:
            item.trace = from_headers(item.record.headers)
        with consuming(self.service, [item.trace for item in items], group=self.group_id):
            async for attempt in self._retrying("consumer-batch"):
                with attempt:
                    try:
                        await self._in_one_transaction(items)
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        log.warning("batch failed, bisecting it to find the culprit", error=type(exc).__name__,
                                    records=len(items))
                        await self._bisect(items)

    async def _opened(self, records: Sequence[ConsumerRecord]) -> list[bytes | None]:
        """The records' values with their sealed personal fields opened (shared/keyring.py): one
        read of the keys per poll, and only when a record holds a sealed value. The records
        themselves stay as read (a dead letter keeps the sealed original)."""
        values = [r.value for r in records]
        if not any(v is not None and keyring.MARKER in v for v in values):
            return values
        keys = self.keys if self.keys is not None else self.pool
        async for attempt in self._retrying("consumer-keys"):
            with attempt:
                return await keyring.open_payloads(keys, values)
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _decode(self, record: ConsumerRecord, value: bytes | None) -> Decoded:
        subscription = self._by_topic[record.topic]
        if subscription.raw:
            try:
                envelope = parse_envelope(value)
            except InvalidRecord as invalid:
                return Decoded(record, invalid=invalid)
            handler = subscription.handlers.get(envelope.event_type) or subscription.handlers.get("*")
            event: Event[Any] = Event(envelope.with_data(envelope.data), record.topic, record.partition, record.offset)
            return Decoded(record, event=event if handler else None, handler=handler)
        try:
            event = decode(
                value, record.topic, contract_topic=subscription.topic, strict_types=subscription.strict_types,
                partition=record.partition, offset=record.offset, check_key=subscription.check_key,
                wanted=subscription.handlers,
            )
        except InvalidRecord as invalid:
            return Decoded(record, invalid=invalid)
        except UnhandledEventType:
            return Decoded(record)
        handler = subscription.handlers.get(event.event_type)
        return Decoded(record, event=event if handler else None, handler=handler)

    async def _claim_inbox(self, conn: asyncpg.Connection, items: Sequence[Decoded]) -> list[Decoded]:
        """Insert inbox rows; return the items not processed before, in order, each id once."""
        candidates: list[tuple[uuid.UUID, Decoded]] = []
        seen: set[uuid.UUID] = set()
        for item in items:
            r = item.record
            if item.event is not None:
                inbox_id = item.event.event_id
            elif item.invalid is not None:
                inbox_id = dead_letter_event_id(self.service, r.topic, r.partition, r.offset)
            else:
                metrics.EVENTS_CONSUMED.labels(self.service, r.topic, "-", "ignored").inc()
                continue
            if inbox_id in seen:
                metrics.EVENTS_CONSUMED.labels(self.service, r.topic, _type_of(item), "duplicate").inc()
                continue
            seen.add(inbox_id)
            candidates.append((inbox_id, item))
        if not candidates:
            return []
        fresh = {
            row[0]
            for row in await conn.fetch(
                """INSERT INTO inbox (event_id, topic, "partition", "offset", event_type)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::text[])
                   ON CONFLICT (event_id) DO NOTHING
                   RETURNING event_id""",
                [i for i, _ in candidates],
                [d.record.topic for _, d in candidates],
                [d.record.partition for _, d in candidates],
                [d.record.offset for _, d in candidates],
                [_type_of(d) for _, d in candidates],
            )
        }
        kept = []
        for inbox_id, item in candidates:
            if inbox_id in fresh:
                kept.append(item)
            else:
                metrics.EVENTS_CONSUMED.labels(self.service, item.record.topic, _type_of(item), "duplicate").inc()
        return kept

    async def _in_one_transaction(self, items: Sequence[Decoded]) -> None:
        async with acquire(self.pool) as conn:
            async with conn.transaction():
                uow = self._uow(conn)
                fresh = await self._claim_inbox(conn, items)
                for run in plan(fresh):
                    if run[0].invalid is not None:
                        for item in run:
                            assert item.invalid is not None
                            self.dead_letters.record(uow, item, item.invalid.error, item.invalid.reason)
                    else:
                        await self._handle(uow, run)
                written = await uow.flush()
        self._after_commit(fresh, written)

    async def _bisect(self, items: Sequence[Decoded]) -> None:
        """The batch failed as a whole: run each half as a batch, first then second (records keep
        their order: all before the culprit are committed before it is tried), and split again
        only a half that fails. A transient error escapes, and the caller retries the whole
        batch; the inbox skips what was already committed."""
        if len(items) <= 1:
            await self._one_by_one(items)
            return
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            if len(half) == 1:
                await self._one_by_one(half)
                continue
            try:
                await self._in_one_transaction(half)
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self._bisect(half)

    async def _one_by_one(self, items: Sequence[Decoded]) -> None:
        for item in items:
            try:
                await self._in_one_transaction([item])
            except Exception as exc:
                if is_transient(exc):
                    raise
                error = exc.error if isinstance(exc, PermanentError) else type(exc).__name__
                reason = exc.reason if isinstance(exc, PermanentError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, PermanentError):
                    log.exception("handler failed on a record; dead-lettering it", offset=item.record.offset)
                async with acquire(self.pool) as conn:
                    async with conn.transaction():
                        uow = self._uow(conn)
                        dead = await self._claim_inbox(conn, [item])
                        if dead:
                            self.dead_letters.record(uow, item, error, reason)
                        written = await uow.flush()
                for claimed in dead:
                    metrics.EVENTS_CONSUMED.labels(self.service, claimed.record.topic, _type_of(claimed),
                                                   "dead_lettered").inc()
                self._after_commit([], written)

    async def _handle(self, uow: UnitOfWork[D], run: list[Decoded]) -> None:
        assert run[0].handler is not None
        events = [item.event for item in run if item.event is not None]
        for item in run:  # what the handler publishes for a record carries that record's trace on
            if item.trace is not None and item.event is not None:
                uow.traces[item.event.event_id] = item.trace
        with handling(self.service, run[0].handler, [e.event_type for e in events], [item.trace for item in run]):
            if len(events) == 1:
                event = events[0]
                with structlog.contextvars.bound_contextvars(
                    event_id=str(event.event_id), correlation_id=str(event.correlation_id), event_type=event.event_type
                ):
                    await run[0].handler(uow, events)
            else:
                await run[0].handler(uow, events)

    def _after_commit(self, fresh: Sequence[Decoded], written: int) -> None:
        """Count what the committed transaction did (a batch re-run record by record is counted once)."""
        counts = Counter((item.record.topic, _type_of(item), "dead_lettered" if item.invalid is not None else "processed")
                         for item in fresh)
        for (topic, event_type, outcome), n in counts.items():
            metrics.EVENTS_CONSUMED.labels(self.service, topic, event_type, outcome).inc(n)
        if written and self.settings.fault == "crash_after_commit":
            # Fault injection for the crash tests: die between the commit and the publish.
            log.warning("fault injection: SIGKILL after commit, before publish")
            os.kill(os.getpid(), signal.SIGKILL)

    def _uow(self, conn: asyncpg.Connection) -> UnitOfWork[D]:
        return UnitOfWork(conn, service=self.service, settings=self.settings, clock=self.clock, deps=self.deps)

    def _retrying(self, component: str) -> AsyncRetrying:
        def before_sleep(state: Any) -> None:
            metrics.TRANSIENT_ERRORS.labels(self.service, component).inc()
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "transient failure, retrying", component=component, attempt=state.attempt_number,
                error=type(exc).__name__ if exc else None, detail=str(exc)[:200] if exc else None,
            )

        return AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.2, max=self.settings.retry_max_backoff_seconds, jitter=0.2),
            stop=stop_when_event_set(self._stopping),  # type: ignore[arg-type]
            before_sleep=before_sleep,
            reraise=True,
        )


def _type_of(item: Decoded) -> str:
    if item.event is not None:
        return item.event.event_type
    if item.invalid is not None and item.invalid.envelope is not None:
        return item.invalid.envelope.event_type
    return "-"
