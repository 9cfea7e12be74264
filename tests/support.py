"""Helpers for tests on the real broker and database.

Each test gets a namespace: its own topic prefix (the contract topics, created with 12
partitions) and its own database, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared import keyring
from shared.clock import Clock, ManualClock, offset_to
from shared.events import Envelope, read_envelope
from shared.kafka.clients import stop_consumer
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.workcal import WorkingCalendar
from tools import sandbox
from tools.sandbox import Namespace, ServiceProcess, drop_namespace

# ---------------------------------------------------------------------------------------
# Time. Tests never read the wall clock for business time: "now" is the run's test moment, a
# fixed date (a Friday morning in Shanghai) unless AFTERSALES_TEST_NOW names another, so a run
# gives the same result on any day. `make test-dates` runs the date-sensitive tests (marked
# `dates`) on other moments: public holidays, month ends, late evenings.

DEFAULT_TEST_NOW = "2026-11-20T10:00:00+08:00"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _test_now() -> datetime:
    raw = os.environ.get("AFTERSALES_TEST_NOW") or DEFAULT_TEST_NOW
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise RuntimeError(f"AFTERSALES_TEST_NOW={raw!r} is not an ISO 8601 moment; "
                           "expected e.g. 2026-10-01T21:30:00+08:00") from None
    if moment.tzinfo is None:
        raise RuntimeError(f"AFTERSALES_TEST_NOW={raw!r} has no offset; add one such as +08:00")
    return moment.astimezone(SHANGHAI)


TEST_NOW = _test_now()


def day_at(hour: int, minute: int = 0, *, days: int = 0) -> datetime:
    """A local time in Shanghai on the test day (or `days` after it): for scenarios that need
    a time of day (calling hours, quiet hours, the quality department's Monday meeting)."""
    day = TEST_NOW.date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


def working_day(days: int = 0, region: str | None = None) -> int:
    """Days from the test day to the first working day at or after `days` from it on the
    region's working calendar (shared/calendars): follow-up calls are placed on working days
    only, so a scenario of calls runs on `day_at(..., days=working_day())`."""
    calendar = WorkingCalendar.load(region)
    while not calendar.is_working_day(TEST_NOW.date() + timedelta(days=days)):
        days += 1
    return days


def next_weekday(weekday: int, hour: int, minute: int = 0, *, after: datetime | None = None) -> datetime:
    """The next local `weekday` (0 = Monday) at hour:minute strictly after `after` (default: now)."""
    start = (after or TEST_NOW).astimezone(SHANGHAI)
    for days in range(0, 8):
        candidate = datetime(start.year, start.month, start.day, hour, minute, tzinfo=SHANGHAI) + timedelta(days=days)
        if candidate.weekday() == weekday and candidate > start:
            return candidate
    raise AssertionError("unreachable: a weekday recurs within eight days")


def in_test_week(weekday: int, hour: int, minute: int = 0) -> datetime:
    """`weekday` (0 = Monday) of the test moment's ISO week at hour:minute in Shanghai: for
    scenarios that name days of one week ("shipped Tuesday to Thursday, now Friday, reported
    Monday 08:00"); the week is the test moment's, whatever its day."""
    return day_at(hour, minute, days=weekday - TEST_NOW.weekday())


def iso_week(moment: datetime) -> str:
    """The ISO week label the reports use (2026-W47) of a moment's Shanghai date."""
    year, week, _ = moment.astimezone(SHANGHAI).isocalendar()
    return f"{year}-W{week:02d}"


def zh_date(moment: datetime) -> str:
    """How the zh-CN templates print a date: 2026年11月23日."""
    local = moment.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日"


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
    # the policy tests send hundreds of bad tokens on purpose; the limit has its own test
    overrides.setdefault("auth_failures_per_client", 1_000_000)
    # Service processes started in the namespace live at the test moment, not on today's date.
    overrides.setdefault("clock_offset_seconds", offset_to(TEST_NOW))
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
    """Reads a whole topic from the beginning, without a consumer group. The envelopes come with
    their sealed personal fields opened with the namespace's keyring, as a service reads them
    (shared/keyring.py; "" where the key was destroyed); `record.value` is what the topic holds."""

    def __init__(self, settings: Settings, topic: str, *, opened: bool = True) -> None:
        self.settings = settings
        self.opened = opened
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
            values = [r.value for r in records]
            if self.opened:
                values = await keyring.open_at(self.settings.database_url, values)
            for record, value in zip(records, values, strict=True):
                try:
                    envelope = read_envelope(value)  # type: ignore[arg-type]  # None: no envelope, below
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
            runtime = ServiceRuntime(load(name), self.ns.settings, self.clock, replica=f"test-{name}",
                                     overrides=self.state.get(name, {}))
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
    """The first follow-up of `kind` (for `vin`) in the agent's queue once it is due, waiting for
    it: the queue shows a follow-up from its due_from on, and a call recorded while its due
    timer fires races that timer (the API answers 503, retry), which is not what tests call."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [i for i in (await client.get("/v1/queue")).json()["items"]
                 if i["kind"] == kind and (vin is None or i["vin"] == vin)]
        if items and (await client.get(f"/v1/followups/{items[0]['followup_id']}")).json()["status"] == "due":
            return items[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} due in the queue within {timeout}s")


async def eventually(check: Any, timeout: float = 60, what: str = "the condition") -> Any:
    """Poll an async check until it returns something truthy, and return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.2)


def manual_clock(at: str | datetime | None = None) -> ManualClock:
    """A clock the test moves by hand, at `at` (default: the test moment)."""
    start = TEST_NOW if at is None else at if isinstance(at, datetime) else datetime.fromisoformat(at)
    return ManualClock(start)


async def db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": schema})



__all__ = ["DEFAULT_TEST_NOW", "SHANGHAI", "TEST_NOW", "TOKENS", "day_at", "in_test_week", "iso_week", "next_weekday",
           "zh_date", "Namespace", "ServiceProcess", "Stack", "TopicReader", "api", "count", "create_namespace", "db",
           "drop_namespace", "manual_clock", "publish", "queue_item"]
