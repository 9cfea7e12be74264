"""`aftersales bench audit`: the trail of one VIN among a million events.

A scratch namespace gets a million events across the eight topics an audit reads, written as
the services write them (the catalog's keys: VIN, customer, complaint id; chains sharing a
correlation id, causation links): 50,000 vehicles with their sale, pickups, follow-up calls,
receipts, notifications and some complaints. One customer owns two vehicles, so a VIN's trail
must leave out the other vehicle's events that share the customer's partitions.

Measured in the same run:
  - `aftersales audit --vin` (reads only the partitions the keys map to), checked against the
    events the generator wrote for that vehicle: none missing, none extra;
  - the baseline: reading every partition of those topics once and decoding every record, the
    least a scan without key routing must do to find the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from aftersales import audit
from aftersales.progress import Tracker, bars
from services.complaints.domain import complaint_id_for
from shared.events import (
    COMPLAINTS,
    FOLLOWUP,
    INTAKE,
    NOTIFIER,
    UPSTREAM_CRM,
    UPSTREAM_DMS,
    UPSTREAM_SALES,
)
from shared.kafka.clients import partitions_of, stop_consumer
from shared.validation import with_check_digit
from tools.sandbox import Namespace, create_namespace, drop_namespace
from tools.simulate import CST

console = Console()
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


@dataclass
class Story:
    """The events of one vehicle, as (topic, key, envelope) in the order they happened."""

    vin: str
    customer_id: str
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start = datetime(2025, 6, 1, 9, 0, tzinfo=CST)

    def vin(self) -> str:
        return with_check_digit("LJ1" + "".join(self.rng.choice(_VIN_CHARS) for _ in range(14)))

    def _env(self, story: Story, topic: str, key: str, event_type: str, at: datetime, data: dict[str, Any],
             source: str, cause: dict[str, Any] | None) -> dict[str, Any]:
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        env = {"event_id": event_id, "event_type": event_type, "schema_version": 1, "occurred_at": at.isoformat(),
               "source": source, "correlation_id": cause["correlation_id"] if cause else event_id,
               "causation_id": cause["event_id"] if cause else None, "key": key, "data": data}
        story.events.append((topic, key, env))
        return env

    def story(self, vin: str, customer_id: str, pickups: int, complaint: bool) -> Story:
        s = Story(vin, customer_id)
        at = self.start + timedelta(days=self.rng.uniform(0, 300))
        customer = {"customer_id": customer_id, "name": "王伟", "phone": "+8613800000000", "region": "east"}
        sale = self._env(s, UPSTREAM_SALES, vin, "VehicleSold", at,
                         {"vin": vin, "sale_id": f"S-{vin[-8:]}", "customer": customer, "dealer_id": "D001"}, "sales", None)
        canonical = self._env(s, INTAKE, vin, "VehicleSold", at, {"vin": vin, "customer": customer}, "aftersales.intake", sale)
        self._env(s, INTAKE, customer_id, "CustomerRegistered", at, {"customer_id": customer_id, "region": "east"},
                  "aftersales.intake", canonical)
        for n in range(pickups):
            at += timedelta(days=self.rng.uniform(30, 120))
            ro = f"RO-{vin[-6:]}-{n}"
            up = self._env(s, UPSTREAM_DMS, vin, "VehiclePickedUp", at,
                           {"vin": vin, "repair_order_id": ro, "customer": customer, "service_type": "maintenance"},
                           "dms", None)
            picked = self._env(s, INTAKE, vin, "VehiclePickedUp", at,
                               {"vin": vin, "repair_order_id": ro, "customer": customer}, "aftersales.intake", up)
            scheduled = self._env(s, FOLLOWUP, customer_id, "FollowUpScheduled", at,
                                  {"followup_id": f"F-{ro}", "kind": "first_visit", "customer_id": customer_id,
                                   "vin": vin}, "aftersales.followup", picked)
            self._env(s, NOTIFIER, customer_id, "NotificationSent", at + timedelta(minutes=1),
                      {"recipient": customer_id, "channel": "sms", "rule": "first-visit-sms"}, "aftersales.notifier",
                      scheduled)
            self._env(s, FOLLOWUP, customer_id, "FollowUpCompleted", at + timedelta(days=4),
                      {"followup_id": f"F-{ro}", "kind": "first_visit", "customer_id": customer_id, "vin": vin,
                       "outcome": "reached", "satisfaction": 5}, "aftersales.followup", scheduled)
            receipt = self._env(s, UPSTREAM_DMS, vin, "ReceiptReturned", at + timedelta(days=1),
                                {"vin": vin, "repair_order_id": ro, "receipt_id": f"RC-{ro}", "rating": 5}, "dms", None)
            self._env(s, INTAKE, vin, "ReceiptRecorded", at + timedelta(days=1),
                      {"vin": vin, "repair_order_id": ro, "receipt_id": f"RC-{ro}"}, "aftersales.intake", receipt)
        if complaint:
            at += timedelta(days=self.rng.uniform(1, 20))
            ref = f"CRM-{vin[-8:]}"
            complaint_id = complaint_id_for(ref)
            filed = self._env(s, UPSTREAM_CRM, customer_id, "ComplaintFiled", at,
                              {"complaint_ref": ref, "customer_id": customer_id, "vin": vin, "description": "noise"},
                              "crm", None)
            canonical = self._env(s, INTAKE, customer_id, "ComplaintFiled", at,
                                  {"complaint_ref": ref, "customer_id": customer_id, "vin": vin}, "aftersales.intake",
                                  filed)
            cause = canonical
            for step, delay in (("ComplaintOpened", 0), ("ComplaintAcknowledged", 1), ("ComplaintResolved", 30),
                                ("ComplaintClosed", 60)):
                cause = self._env(s, COMPLAINTS, complaint_id, step, at + timedelta(hours=delay),
                                  {"complaint_id": complaint_id, "customer_id": customer_id, "vin": vin},
                                  "aftersales.complaints", cause)
            self._env(s, NOTIFIER, customer_id, "NotificationSent", at + timedelta(hours=2),
                      {"recipient": customer_id, "channel": "sms", "rule": "complaint-acknowledged"},
                      "aftersales.notifier", cause)
        return s

    def fleet(self, events: int, target_at: int) -> Iterator[Story]:
        """Stories until `events` are written; story number `target_at` is the audited vehicle,
        and the next one belongs to the same customer."""
        written, n = 0, 0
        shared_customer = None
        while written < events:
            vin = self.vin()
            if n == target_at + 1 and shared_customer:
                customer_id = shared_customer
            else:
                customer_id = f"CUST-{n:07d}"
            if n == target_at:
                shared_customer = customer_id
                story = self.story(vin, customer_id, pickups=3, complaint=True)
            else:
                story = self.story(vin, customer_id, pickups=self.rng.choice((1, 2, 2, 3)),
                                   complaint=self.rng.random() < 0.08 or n == target_at + 1)
            written += len(story.events)
            n += 1
            yield story


async def _publish(ns: Namespace, stories: Iterator[Story], total: int, target_at: int,
                   progress: Tracker) -> tuple[Story, Story, int]:
    # fresh topics: the first sends may meet a partition whose leader is still being elected;
    # aiokafka retries them, and says so on every one
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    producer = AIOKafkaProducer(**ns.settings.kafka_client_options(), linger_ms=20, acks=1,  # type: ignore[arg-type]
                                max_batch_size=1024 * 1024)
    await producer.start()
    task = progress.add_task("writing the log", total=total)
    target = sibling = None
    written = 0
    try:
        for i, story in enumerate(stories):
            if i == target_at:
                target = story
            elif i == target_at + 1:
                sibling = story
            for topic, key, env in story.events:
                await producer.send(ns.settings.topic(topic), orjson.dumps(env), key=key.encode(),
                                    headers=[("event_type", env["event_type"].encode())])
            written += len(story.events)
            if i % 200 == 0:
                progress.update(task, completed=written)
        await producer.flush()
        progress.update(task, total=written, completed=written)  # whole stories: a few past the target
    finally:
        await producer.stop()
    assert target is not None and sibling is not None
    return target, sibling, written


async def _full_scan(ns: Namespace, topics: list[str]) -> tuple[int, float]:
    """Every record of every partition of `topics`, each decoded once: the scan without routing."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(**ns.settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    read = 0
    try:
        tps = [TopicPartition(ns.settings.topic(t), p) for t in topics
               for p in await partitions_of(consumer, ns.settings.topic(t))]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000, max_records=20_000)).items():
                for record in records:
                    if record.offset < ends[tp]:
                        orjson.loads(record.value)
                        read += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await stop_consumer(consumer)
    return read, time.perf_counter() - started


async def measure(events: int = 1_000_000, seed: int = 20261129, keep: bool = False,
                  progress: Tracker | None = None) -> dict[str, Any]:
    """`progress` (default: a bar on stderr when it is a terminal) counts the events written."""
    ns = await create_namespace("benchaudit", 12)
    try:
        generator = Generator(seed)
        target_at = 25_000 * events // 1_000_000
        with contextlib.nullcontext(progress) if progress is not None else bars() as tracker:
            target, sibling, written = await _publish(ns, generator.fleet(events, target_at), events, target_at,
                                                      tracker)
        expected = {env["event_id"] for _, _, env in target.events}

        entries, stats = await audit.trail(ns.settings, vin=target.vin)
        found = {e.event_id for e in entries}
        missing, extra = expected - found, found - expected
        sibling_ids = {env["event_id"] for _, _, env in sibling.events}

        topics = sorted({t for ts in audit.TOPICS_BY_KEY.values() for t in ts})
        scanned, scan_seconds = await _full_scan(ns, topics)
        # the audit once more, now that the broker's page cache is as warm as the scan left it
        _, warm = await audit.trail(ns.settings, vin=target.vin)
        return {
            "events": written, "vin": target.vin, "customer_id": target.customer_id,
            "trail": len(entries), "expected": len(expected), "missing": len(missing), "extra": len(extra),
            "sibling_leaked": len(found & sibling_ids),
            "audit_seconds": stats["seconds"], "audit_seconds_warm": warm["seconds"],
            "audit_records_read": stats["records_read"], "audit_partitions_read": stats["partitions_read"],
            "scan_records": scanned, "scan_seconds": round(scan_seconds, 3),
        }
    finally:
        if not keep:
            await drop_namespace(ns)


def run(events: int = 1_000_000, seed: int = 20261129, keep: bool = False) -> dict[str, Any]:
    figures = asyncio.run(measure(events, seed, keep))
    table = Table(title=f"audit: the trail of one VIN among {figures['events']:,} events")
    table.add_column("")
    table.add_column("records read", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("ratio to baseline", justify="right")
    table.add_row("baseline: scan every partition once", f"{figures['scan_records']:,}", f"{figures['scan_seconds']:.2f}",
                  "1.00")
    for label, seconds in (("aftersales audit --vin", figures["audit_seconds"]),
                           ("aftersales audit --vin (again)", figures["audit_seconds_warm"])):
        table.add_row(label, f"{figures['audit_records_read']:,}", f"{seconds:.2f}",
                      f"{seconds / figures['scan_seconds']:.3f}")
    console.print(table)
    ok = figures["missing"] == 0 and figures["extra"] == 0 and figures["sibling_leaked"] == 0
    console.print(
        f"VIN {figures['vin']}: {figures['trail']} events in the trail, {figures['expected']} written for it; "
        f"missing {figures['missing']}, extra {figures['extra']}, from the same customer's other vehicle "
        f"{figures['sibling_leaked']} ({figures['audit_partitions_read']} partitions read) "
        + ("[green]correct[/green]" if ok else "[red]WRONG[/red]"))
    if not ok:
        raise SystemExit(1)
    return figures
