"""Helpers for tests on the real broker and database.

Each test gets a namespace: its own topic prefix (the contract topics, created with 12
partitions) and its own database, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from aftersales import sandbox
from aftersales.sandbox import Namespace, ServiceProcess, drop_namespace
from shared.clock import Clock, ManualClock
from shared.events import Envelope
from shared.kafka.clients import stop_consumer
from shared.runtime import ServiceRuntime
from shared.settings import Settings


# Bearer tokens every test namespace knows, one per role (and a second agent).
TOKENS = {
    "agent": "agent-token", "agent2": "agent2-token", "supervisor": "supervisor-token", "quality": "quality-token",
    "ops": "ops-token", "producer": "producer-token",
}
API_TOKENS = ("agent-token=agent:agent-01,agent2-token=agent:agent-02,supervisor-token=supervisor:supervisor-01,"
              "quality-token=quality:quality-01,ops-token=ops:ops-01,producer-token=producer:dms")


async def create_namespace(partitions: int = 12, **overrides: Any) -> Namespace:
    """A namespace tuned for tests: fast polling, small pools, short backoff, known tokens."""
    overrides.setdefault("api_tokens", API_TOKENS)
    return await sandbox.create_namespace(
        "t", partitions, outbox_idle_poll_seconds=0.2, timer_tick_seconds=0.05, consumer_poll_timeout_ms=50,
        db_pool_min=1, db_pool_max=6, retry_max_backoff_seconds=2.0, kpi_refresh_seconds=0.5, **overrides,
    )


def api(runtime: ServiceRuntime, role: str | None = None) -> httpx.AsyncClient:
    """An HTTP client for a service's API (in process), with the bearer token of `role`
    (a key of TOKENS) or none."""
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://test", headers=headers)


# ---------------------------------------------------------------------------------------
# Kafka I/O


async def publish(settings: Settings, topic: str, records: Iterable[dict[str, Any] | bytes | tuple[bytes | None, bytes]]) -> int:
    """Publish envelopes (dicts), raw values (bytes) or (key, value) pairs to a contract topic."""
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")  # type: ignore[arg-type]
    await producer.start()
    count = 0
    try:
        for record in records:
            if isinstance(record, dict):
                key, value = str(record.get("key") or "").encode() or None, orjson.dumps(record)
                headers = [("event_type", str(record.get("event_type", "")).encode()),
                           ("event_id", str(record.get("event_id", "")).encode())]
            elif isinstance(record, tuple):
                key, value = record
                headers = []
            else:
                key, value, headers = None, record, []
            await producer.send(settings.topic(topic), value=value, key=key, headers=headers)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


@dataclass
class Read:
    record: ConsumerRecord
    envelope: Envelope | None

    @property
    def event_type(self) -> str | None:
        return self.envelope.event_type if self.envelope else None

    @property
    def data(self) -> dict[str, Any]:
        return self.envelope.data if self.envelope else {}


class TopicReader:
    """Reads a whole topic from the beginning, without a consumer group."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.records: list[Read] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(), group_id=None, enable_auto_commit=False,  # type: ignore[arg-type]
            auto_offset_reset="earliest", fetch_max_wait_ms=100,
        )
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        while not partitions:
            await asyncio.sleep(0.1)
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await stop_consumer(self._consumer)

    async def poll(self, timeout: float = 0.2) -> list[Read]:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000))
        fresh = []
        for records in batches.values():
            for record in records:
                try:
                    envelope = Envelope.model_validate_json(record.value)
                except Exception:
                    envelope = None
                fresh.append(Read(record, envelope))
        self.records.extend(fresh)
        return fresh

    async def wait_for(self, predicate: Callable[[list[Read]], bool], timeout: float = 30.0,
                       settle: float = 0.0) -> list[Read]:
        """Poll until predicate(all records so far) holds, then keep reading `settle` seconds
        more (so a test can prove nothing extra arrives)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s on {self.topic}; have {len(self.records)} records: "
                    f"{[r.event_type for r in self.records][:50]}"
                )
            await self.poll()
        end = time.monotonic() + settle
        while time.monotonic() < end:
            await self.poll()
        return self.records

    def of_type(self, event_type: str) -> list[Read]:
        return [r for r in self.records if r.event_type == event_type]


def count(event_type: str, n: int) -> Callable[[list[Read]], bool]:
    return lambda records: sum(1 for r in records if r.event_type == event_type) >= n


# ---------------------------------------------------------------------------------------
# services in process


@dataclass
class Stack:
    """Services running in this process against the real broker and database."""

    ns: Namespace
    clock: Clock
    services: tuple[str, ...] = ("intake", "followup", "notifier")
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtimes: dict[str, ServiceRuntime] = field(default_factory=dict)

    async def start(self, **flags: bool) -> Stack:
        from services import load

        for name in self.services:
            runtime = ServiceRuntime(load(name), self.ns.settings, self.clock, replica=f"test-{name}")
            runtime.state.update(self.state.get(name, {}))
            await runtime.start(**flags)
            self.runtimes[name] = runtime
        return self

    async def stop(self) -> None:
        for runtime in reversed(list(self.runtimes.values())):
            await runtime.stop()
        self.runtimes.clear()

    def __getitem__(self, name: str) -> ServiceRuntime:
        return self.runtimes[name]


async def queue_item(client: httpx.AsyncClient, kind: str, vin: str | None = None, timeout: float = 15) -> dict[str, Any]:
    """The first follow-up of `kind` (for `vin`) in the agent's queue, waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [i for i in (await client.get("/v1/queue")).json()["items"]
                 if i["kind"] == kind and (vin is None or i["vin"] == vin)]
        if items:
            return items[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} in the queue within {timeout}s")


def manual_clock(at: str = "2026-11-20T10:00:00+08:00") -> ManualClock:
    return ManualClock(datetime.fromisoformat(at))


async def db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": schema})



__all__ = ["TOKENS", "Namespace", "ServiceProcess", "Stack", "TopicReader", "api", "count", "create_namespace", "db",
           "drop_namespace", "manual_clock", "publish", "queue_item"]
