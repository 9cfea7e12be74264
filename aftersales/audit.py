"""`aftersales audit --vin | --customer | --complaint`: the ordered trail of every event about a
vehicle, a customer or a complaint across all topics, with causation links.

Only the partition each key maps to is read (Kafka's default partitioner: murmur2 of the key),
never a whole topic. Starting from the subject's key, the trail follows the keys its events
name: a vehicle's events name its customer, a customer's events name their complaints; events
under those keys belong to the trail when they concern the subject (its VIN or customer, or a
chain of events that started from it: the same correlation_id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from rich.progress import TaskID

from aftersales.progress import QUIET, Tracker
from services.complaints.domain import complaint_id_for
from shared import keyring
from shared.events import (
    COMPLAINTS,
    FOLLOWUP,
    INTAKE,
    NOTIFIER,
    UPSTREAM_CRM,
    UPSTREAM_DMS,
    UPSTREAM_ERP,
    UPSTREAM_SALES,
)
from shared.kafka.clients import partitions_of, stop_consumer
from shared.settings import Settings

KeyKind = Literal["vin", "customer", "complaint"]

# Where each kind of key is used as a record key (DESIGN.md §3 catalog).
TOPICS_BY_KEY: dict[KeyKind, tuple[str, ...]] = {
    "vin": (UPSTREAM_SALES, UPSTREAM_DMS, UPSTREAM_ERP, INTAKE, FOLLOWUP, COMPLAINTS),
    "customer": (UPSTREAM_CRM, INTAKE, FOLLOWUP, NOTIFIER),
    "complaint": (COMPLAINTS,),
}


@dataclass
class Entry:
    occurred_at: str
    topic: str
    partition: int
    offset: int
    key: str
    event_type: str
    event_id: str
    correlation_id: str
    causation_id: str | None
    source: str
    summary: str
    depth: int = 0
    caused_by: str | None = None  # the event type of the cause, when it is in the trail
    appended_ms: int = 0  # the broker's timestamp: the order of events stamped at the same instant


@dataclass
class _Scan:
    """Reads whole partitions, each once. A consumer per partition: aiokafka's group-less
    consumer does not stop cleanly after being re-assigned."""

    settings: Settings
    partition_counts: dict[str, int]
    cache: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    records_read: int = 0
    progress: Tracker = QUIET
    records_to_read: int = 0  # grows with each partition the trail leads to: the bar's total
    task: TaskID = TaskID(0)

    async def partition(self, topic: str, key: str) -> list[Any]:
        """Every record of the partition `key` maps to, from the beginning to the current end."""
        physical = self.settings.topic(topic)
        count = self.partition_counts.get(physical)
        if not count:
            return []
        partitions = list(range(count))
        number = DefaultPartitioner()(key.encode(), partitions, partitions)
        if (physical, number) not in self.cache:
            self.cache[(physical, number)] = await self._read(TopicPartition(physical, number))
        return self.cache[(physical, number)]

    async def _read(self, tp: TopicPartition) -> list[Any]:
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            records: list[Any] = []
            if not end:
                return records
            self.records_to_read += end
            self.progress.update(self.task, total=self.records_to_read)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=20_000)
                wanted = [r for r in batch.get(tp, []) if r.offset < end]
                records.extend(wanted)
                self.progress.advance(self.task, len(wanted))
            self.records_read += len(records)
            return records
        finally:
            await stop_consumer(consumer)


async def _partition_counts(settings: Settings) -> dict[str, int]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None)  # type: ignore[arg-type]
    await consumer.start()
    try:
        counts = {}
        for topic in {t for topics in TOPICS_BY_KEY.values() for t in topics}:
            physical = settings.topic(topic)
            counts[physical] = len(await partitions_of(consumer, physical))
        return counts
    finally:
        await stop_consumer(consumer)


def _summary(event_type: str, data: dict[str, Any]) -> str:
    wanted = ("kind", "outcome", "repair_order_id", "sale_id", "service_type", "mileage_km", "complaint_ref", "category",
              "severity", "level_name", "role", "resolution", "satisfied", "satisfaction", "due_by", "rule", "channel",
              "recipient", "reason", "failure_mode", "receipt_id", "rating")
    # a personal value stays sealed (shared/keyring.py): an audit follows ids, not people
    parts = [f"{k}={'(sealed)' if isinstance(data[k], str) and data[k].startswith(keyring.PREFIX) else data[k]}"
             for k in wanted if data.get(k) not in (None, "", [])]
    return ", ".join(parts)[:160]


def _names(data: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """The VINs, customers and complaints an event's data names."""
    vins = {v for v in (data.get("vin"),) if v}
    customers = {c for c in (data.get("customer_id"), (data.get("customer") or {}).get("customer_id")) if c}
    complaints = {c for c in (data.get("complaint_id"),) if c}
    if data.get("complaint_ref"):
        complaints.add(complaint_id_for(data["complaint_ref"]))
    return vins, customers, complaints


async def trail(settings: Settings, *, vin: str | None = None, customer: str | None = None,
                complaint: str | None = None, progress: Tracker = QUIET) -> tuple[list[Entry], dict[str, Any]]:
    subject: tuple[KeyKind, str]
    if vin:
        subject = ("vin", vin.strip().upper())
    elif customer:
        subject = ("customer", customer.strip())
    elif complaint:
        subject = ("complaint", complaint.strip())
    else:
        raise ValueError("name a --vin, a --customer or a --complaint")
    started = time.perf_counter()
    scan = _Scan(settings, await _partition_counts(settings), progress=progress)
    scan.task = progress.add_task("reading the partitions the trail leads to", total=0)
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    keys: dict[KeyKind, set[str]] = {"vin": set(), "customer": set(), "complaint": set()}
    correlations: set[str] = set()
    pending: list[tuple[KeyKind, str]] = [subject]
    while pending:
        kind, value = pending.pop()
        if value in keys[kind]:
            continue
        keys[kind].add(value)
        # the key's partition on each of its topics, read side by side; then taken in topic order
        partitions = await asyncio.gather(*(scan.partition(topic, value) for topic in TOPICS_BY_KEY[kind]))
        for records in partitions:
            for record in records:
                if record.key != value.encode():
                    continue
                try:
                    envelope = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                data = envelope.get("data") or {}
                if not _concerns(subject, kind, data, envelope, correlations):
                    continue
                found.setdefault(envelope["event_id"], (record, envelope))
                correlations.add(envelope.get("correlation_id"))
                vins, customers, complaints = _names(data)
                pending += [("vin", v) for v in vins] + [("customer", c) for c in customers]
                pending += [("complaint", c) for c in complaints]
    entries = _order(found.values(), settings)
    stats = {"records_read": scan.records_read, "partitions_read": len(scan.cache),
             "seconds": round(time.perf_counter() - started, 3), "keys": {k: sorted(v) for k, v in keys.items()}}
    return entries, stats


def _concerns(subject: tuple[KeyKind, str], kind: KeyKind, data: dict[str, Any], envelope: dict[str, Any],
              correlations: set[str]) -> bool:
    """Whether a record under a followed key belongs to the subject's trail."""
    subject_kind, value = subject
    if kind == subject_kind:
        return True
    if envelope.get("correlation_id") in correlations:
        return True
    vins, customers, complaints = _names(data)
    if subject_kind == "vin":
        return value in vins
    if subject_kind == "customer":
        return value in customers
    return value in complaints


def _order(found: Iterable[tuple[Any, dict[str, Any]]], settings: Settings) -> list[Entry]:
    entries = []
    for record, envelope in found:
        entries.append(Entry(
            occurred_at=envelope["occurred_at"], topic=record.topic.removeprefix(settings.topic_prefix),
            partition=record.partition, offset=record.offset, key=record.key.decode(errors="replace"),
            event_type=envelope["event_type"], event_id=envelope["event_id"],
            correlation_id=envelope.get("correlation_id") or envelope["event_id"],
            causation_id=envelope.get("causation_id"), source=envelope.get("source", ""),
            summary=_summary(envelope["event_type"], envelope.get("data") or {}), appended_ms=record.timestamp,
        ))
    by_id = {e.event_id: e for e in entries}

    def depth(entry: Entry, seen: frozenset[str] = frozenset()) -> int:
        parent = by_id.get(entry.causation_id or "")
        if parent is None or parent.event_id in seen:
            return 0
        return depth(parent, seen | {entry.event_id}) + 1

    for entry in entries:
        entry.depth = depth(entry)
        parent = by_id.get(entry.causation_id or "")
        entry.caused_by = parent.event_type if parent else None
    entries.sort(key=lambda e: (datetime.fromisoformat(e.occurred_at), e.appended_ms, e.depth, e.topic, e.offset))
    return entries


def as_json(entries: list[Entry], stats: dict[str, Any]) -> bytes:
    return orjson.dumps({"trail": [asdict(e) for e in entries], "stats": stats}, option=orjson.OPT_INDENT_2)


def run(settings: Settings, progress: Tracker = QUIET, **subject: str | None) -> tuple[list[Entry], dict[str, Any]]:
    return asyncio.run(trail(settings, progress=progress, **subject))
