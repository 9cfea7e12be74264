"""The consumer pipeline on the real broker and database: inbox, commit after the
transaction, transient failures retried without committing, permanent ones dead-lettered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from shared.db import with_database
from shared.errors import PermanentError
from shared.events import Event
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import load_settings
from shared.uow import UnitOfWork
from tests.support import Namespace, TopicReader, count, manual_clock, publish
from tools.simulate import envelope

pytestmark = pytest.mark.infra

VIN = "LJ1EEAUU5N0123456"


HANDLED: list[int] = []  # the size of each batch the handler was given


async def _record(uow: UnitOfWork, events: list[Event[Any]]) -> None:
    HANDLED.append(len(events))
    for event in events:
        if event.data.repair_order_id.startswith("POISON"):
            raise ValueError(f"cannot handle repair order {event.data.repair_order_id}")
        if event.data.repair_order_id.startswith("REFUSE"):
            raise PermanentError("data.repair_order_id: refused by the test handler")
        await uow.conn.execute(
            """INSERT INTO seen (event_id, n) VALUES ($1, $2)
               ON CONFLICT (event_id) DO UPDATE SET handled_times = seen.handled_times + 1""",
            event.event_id, event.data.mileage_km,
        )


def _definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="kerneltest", description="kernel test service",
        migrations=Path(__file__).parent / "kernel_migrations",
        subscriptions=[Subscription("upstream.dms", {"VehiclePickedUp": _record}, strict_types=True)],
    )


def _pickup(n: int, repair_order_id: str | None = None) -> dict[str, Any]:
    at = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    return envelope("VehiclePickedUp", VIN, {
        "repair_order_id": repair_order_id or f"RO-{n}", "vin": VIN, "dealer_id": "D001", "picked_up_at": at.isoformat(),
        "service_type": "repair", "items": [], "mileage_km": n, "advisor_id": "SA-1",
        "customer": {"name": "Test", "phone": "+8613800138000", "address": "road 1", "region": "east"},
    }, at, "dms")


async def _committed(ns: Namespace) -> int:
    admin = AIOKafkaAdminClient(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{ns.prefix}kerneltest")
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == ns.topic("upstream.dms"))
    finally:
        await admin.close()


async def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def test_a_database_outage_is_retried_without_committing_or_dead_lettering(ns: Namespace) -> None:
    runtime = ServiceRuntime(_definition(), ns.settings, manual_clock())
    await runtime.start()
    admin = await asyncpg.connect(with_database(load_settings().database_url, "postgres"))
    try:
        await publish(ns.settings, "upstream.dms", [_pickup(i) for i in range(20)])
        assert runtime.pool is not None
        pool = runtime.pool
        await _wait(lambda: _count_seen(pool, 20))
        await _wait(lambda: _committed_is(ns, 20))

        retried = _batch_retries()
        # The database goes away: no new connections, existing ones cut.
        await admin.execute(f'ALTER DATABASE "{ns.database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", ns.database
        )
        await publish(ns.settings, "upstream.dms", [_pickup(i) for i in range(20, 40)])
        # The step ran: the new records were fetched and their batch failed and was retried (twice,
        # so the first retry did not succeed either) while the database was down ...
        await _wait(lambda: _batch_retries_above(retried + 1), timeout=60)
        # ... and nothing of it was committed meanwhile.
        assert await _committed(ns) == 20, "nothing is committed while the database is down"

        await admin.execute(f'ALTER DATABASE "{ns.database}" ALLOW_CONNECTIONS true')
        await _wait(lambda: _count_seen(pool, 40), timeout=60)
        await _wait(lambda: _committed_is(ns, 40), timeout=30)
        assert await pool.fetchval("SELECT max(handled_times) FROM seen") == 1
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(lambda r: True, settle=1.0)
        assert dead.records == [], "a transient failure is never dead-lettered"
    finally:
        await admin.execute(f'ALTER DATABASE "{ns.database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await runtime.stop()


async def test_a_permanent_failure_dead_letters_only_that_record(ns: Namespace) -> None:
    runtime = ServiceRuntime(_definition(), ns.settings, manual_clock())
    await runtime.start()
    try:
        batch = [_pickup(1), _pickup(2, "POISON-2"), _pickup(3), _pickup(4, "REFUSE-4"), _pickup(5)]
        await publish(ns.settings, "upstream.dms", batch)
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 2), settle=1.0)
        assert runtime.pool is not None
        pool = runtime.pool
        await _wait(lambda: _count_seen(pool, 3))
        await _wait(lambda: _committed_is(ns, 5))
        letters = {d.data["original_event_id"]: d.data for d in dead.of_type("DeadLettered")}
        assert letters[batch[1]["event_id"]]["error"] == "ValueError"
        assert "cannot handle repair order POISON-2" in letters[batch[1]["event_id"]]["reason"]
        assert letters[batch[3]["event_id"]]["error"] == "PermanentError"
        assert letters[batch[3]["event_id"]]["reason"] == "data.repair_order_id: refused by the test handler"
        assert sorted(await pool.fetchval("SELECT array_agg(n) FROM seen")) == [1, 3, 5]
    finally:
        await runtime.stop()


async def test_one_bad_record_in_a_large_poll_is_found_by_bisection_not_one_transaction_per_record(
    ns: Namespace,
) -> None:
    batch = [_pickup(n) for n in range(1, 129)]
    batch[100] = _pickup(101, "REFUSE-101")
    await publish(ns.settings, "upstream.dms", batch)  # before the consumer starts: one poll holds them all
    HANDLED.clear()
    runtime = ServiceRuntime(_definition(), ns.settings, manual_clock())
    await runtime.start()
    try:
        assert runtime.pool is not None
        pool = runtime.pool
        await _wait(lambda: _committed_is(ns, 128))
        assert await pool.fetchval("SELECT count(*) FROM seen") == 127
        assert await pool.fetchval("SELECT count(*) FROM seen WHERE n = 101") == 0
        assert await pool.fetchval("SELECT max(handled_times) FROM seen") == 1, "nothing committed twice"
        # One poll: the batch, then about two transactions per level of a binary search; record
        # by record it would be 1 + 128. (A poll split in two by the fetch size costs a few more.)
        assert len(HANDLED) <= 2 * 7 + 4, HANDLED
        assert HANDLED.count(1) <= 4, "only the culprit's neighbourhood runs record by record"
    finally:
        await runtime.stop()


async def test_a_redelivered_event_is_skipped_by_the_inbox(ns: Namespace) -> None:
    runtime = ServiceRuntime(_definition(), ns.settings, manual_clock())
    await runtime.start()
    try:
        record = _pickup(7)
        await publish(ns.settings, "upstream.dms", [record])
        assert runtime.pool is not None
        pool = runtime.pool
        await _wait(lambda: _count_seen(pool, 1))
        await publish(ns.settings, "upstream.dms", [record, record])
        await _wait(lambda: _committed_is(ns, 3))
        assert await pool.fetchval("SELECT handled_times FROM seen") == 1
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 1
    finally:
        await runtime.stop()


async def _count_seen(pool: asyncpg.Pool, expected: int) -> bool:
    try:
        return int(await pool.fetchval("SELECT count(*) FROM seen")) >= expected
    except Exception:
        return False


async def _committed_is(ns: Namespace, expected: int) -> bool:
    return await _committed(ns) == expected


def _batch_retries() -> float:
    """How often the test service's consumer has retried a batch after a transient failure."""
    return REGISTRY.get_sample_value("aftersales_transient_errors_total",
                                     {"service": "kerneltest", "component": "consumer-batch"}) or 0.0


async def _batch_retries_above(n: float) -> bool:
    return _batch_retries() > n


