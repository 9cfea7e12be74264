"""Helpers for tests on the real broker and database.

Each test gets a namespace: its own topic prefix (the contract topics, created with 12
partitions) and its own database, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.clock import Clock, ManualClock
from shared.db import with_database
from shared.events import ALL_TOPICS, Envelope
from shared.kafka.clients import delete_topics, ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Namespace:
    settings: Settings
    prefix: str
    database: str

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess service living in this namespace."""
        env = {
            **os.environ,
            "AFTERSALES_TOPIC_PREFIX": self.prefix,
            "AFTERSALES_DATABASE_URL": self.settings.database_url,
            "AFTERSALES_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "AFTERSALES_LOG_LEVEL": "INFO",
            "AFTERSALES_OUTBOX_IDLE_POLL_SECONDS": "0.2",
            "AFTERSALES_TIMER_TICK_SECONDS": "0.2",
        }
        env.update(extra)
        return env


async def create_namespace(partitions: int = 12, **overrides: Any) -> Namespace:
    base = load_settings()
    token = uuid.uuid4().hex[:10]
    prefix = f"t{token}."
    database = f"aftersales_t{token}"
    conn = await asyncpg.connect(with_database(base.database_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    settings = load_settings(
        topic_prefix=prefix,
        topic_partitions=partitions,
        database_url=with_database(base.database_url, database),
        outbox_idle_poll_seconds=0.2,
        timer_tick_seconds=0.05,
        consumer_poll_timeout_ms=50,
        db_pool_min=1,
        db_pool_max=6,
        retry_max_backoff_seconds=2.0,
        **overrides,
    )
    await ensure_topics(settings, ALL_TOPICS)
    return Namespace(settings, prefix, database)


async def drop_namespace(ns: Namespace) -> None:
    try:
        await delete_topics(ns.settings, [ns.topic(t) for t in ALL_TOPICS])
    except Exception:
        pass
    base = load_settings()
    conn = await asyncpg.connect(with_database(base.database_url, "postgres"))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            ns.database,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{ns.database}"')
    finally:
        await conn.close()


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
        await self._consumer.stop()

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


def manual_clock(at: str = "2026-11-20T10:00:00+08:00") -> ManualClock:
    return ManualClock(datetime.fromisoformat(at))


async def db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": schema})


# ---------------------------------------------------------------------------------------
# services as processes


class ServiceProcess:
    """`aftersales serve <service>` in a subprocess, for crash and restart tests."""

    def __init__(self, ns: Namespace, service: str, log_dir: Path, **env: str) -> None:
        from aftersales.peers import free_port

        self.ns = ns
        self.service = service
        self.port = free_port()
        self.env = ns.env(**{f"AFTERSALES_{service.upper()}_PORT": str(self.port)}, **env)
        self.log_path = log_dir / f"{service}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aftersales", "serve", self.service],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.service} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.service} not ready within {timeout}s:\n{self.tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
