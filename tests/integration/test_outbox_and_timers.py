"""Outbox relay and durable timers with two replicas, on the real broker and database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.db import connect
from shared.migrations import KERNEL_MIGRATIONS, MigrationError, migrate
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.timers import Timer, TimerRunner
from shared.uow import UnitOfWork
from tests.support import Namespace, TopicReader, manual_clock

pytestmark = pytest.mark.infra
MIGRATIONS = Path(__file__).parent / "kernel_migrations"


def _definition() -> ServiceDefinition:
    return ServiceDefinition(name="kerneltest", description="kernel test service", migrations=MIGRATIONS)


async def _outbox(runtime: ServiceRuntime, rows: int, start: int = 0) -> None:
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, service="notifier", settings=runtime.settings, clock=runtime.clock, deps=None)
        for i in range(start, start + rows):
            uow.publish(
                "NotificationSent",
                {"notification_id": f"n{i}", "rule": "r", "channel": "sms", "recipient": f"C{i % 7}",
                 "recipient_kind": "customer", "template": "t", "locale": "en", "source_event_id": str(i),
                 "source_event_type": "X", "attempts": 1, "at": runtime.clock.now()},
                cause=None,
            )
        await uow.flush()


async def test_two_relays_elect_one_publisher_and_publish_each_row_once_in_order(ns: Namespace) -> None:
    clock = manual_clock()
    first = ServiceRuntime(_definition(), ns.settings, clock, replica="a")
    second = ServiceRuntime(_definition(), ns.settings, clock, replica="b")
    await first.start(consume=False, timers=False)
    await second.start(consume=False, timers=False)
    try:
        await _outbox(first, 300)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda r: len(r) >= 300, timeout=30, settle=1.0)
        assert first.relay is not None and second.relay is not None
        assert [first.relay.is_leader, second.relay.is_leader].count(True) == 1
        ids = [r.data["notification_id"] for r in topic.records]
        assert sorted(ids, key=lambda i: int(i[1:])) == [f"n{i}" for i in range(300)] and len(set(ids)) == 300
        for recipient in {r.record.key for r in topic.records}:  # per key, in the order written
            numbers = [int(r.data["notification_id"][1:]) for r in topic.records if r.record.key == recipient]
            assert numbers == sorted(numbers)

        leader, standby = (first, second) if first.relay.is_leader else (second, first)
        await leader.stop()
        await _outbox(standby, 50, start=300)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda r: len(r) >= 350, timeout=30, settle=1.0)
        assert len(topic.records) == 350
        assert standby.relay is not None and standby.relay.is_leader
    finally:
        await first.stop()
        await second.stop()


async def test_a_row_the_broker_refuses_for_good_is_set_aside_and_the_rows_after_it_flow(ns: Namespace) -> None:
    """A record over the topic's size limit can never be published: it must not block the
    outbox (nor make the relay re-send the rows before it on every retry)."""
    clock = manual_clock()
    runtime = ServiceRuntime(_definition(), ns.settings, clock)
    await runtime.start(consume=False, relay=False, timers=False)
    assert runtime.pool is not None
    try:
        await _outbox(runtime, 2)
        async with runtime.pool.acquire() as conn:  # between them, a record of 2 MiB for a 1 MiB topic
            await conn.execute(
                "INSERT INTO outbox (event_id, topic, key, event_type, payload) "
                "VALUES (gen_random_uuid(), $1, 'C1', 'NotificationSent', $2)",
                ns.settings.topic("aftersales.notifier"), b"x" * (2 * 1024 * 1024))
        await _outbox(runtime, 2, start=2)
        await runtime.stop()
        runtime = ServiceRuntime(_definition(), ns.settings, clock)
        await runtime.start(consume=False, timers=False)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda r: len(r) >= 4, timeout=30, settle=2.0)
        assert sorted(r.data["notification_id"] for r in topic.records) == ["n0", "n1", "n2", "n3"]
        assert runtime.pool is not None
        # what was published is gone from the outbox; the refused row stays, set aside with the reason
        rows = await runtime.pool.fetch("SELECT failed_at, error FROM outbox ORDER BY id")
        assert len(rows) == 1
        assert rows[0]["failed_at"] is not None and "TooLarge" in rows[0]["error"]
    finally:
        await runtime.stop()


async def test_two_timer_runners_fire_each_due_timer_once_and_never_early(ns: Namespace) -> None:
    clock = manual_clock()
    runtime = ServiceRuntime(_definition(), ns.settings, clock)
    await runtime.start(consume=False, relay=False, timers=False)
    assert runtime.pool is not None
    pool = runtime.pool
    start = clock.now()

    def handler(replica: str) -> Any:
        async def fire(uow: UnitOfWork, timers: list[Timer]) -> None:
            await asyncio.sleep(0.01)  # widen the window for a race
            await uow.conn.executemany(
                "INSERT INTO fired (ref, due_at, clock_at, replica) VALUES ($1, $2, $3, $4)",
                [(t.ref, t.due_at, uow.now(), replica) for t in timers],
            )
        return fire

    try:
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, service="kerneltest", settings=ns.settings, clock=clock, deps=None)
            for i in range(240):
                uow.schedule_timer("test.ping", f"ref-{i}", start + timedelta(minutes=i))
            uow.schedule_timer("test.ping", "ref-0", start + timedelta(days=9))  # same (kind, ref): kept once
            await uow.flush()
        settings = ns.settings.model_copy(update={"timer_batch": 7})
        runners = [
            TimerRunner("kerneltest", settings, pool, clock, {"test.ping": handler(name)}, deps=None) for name in ("a", "b")
        ]
        for step in range(0, 241, 30):
            clock.set(start + timedelta(minutes=step))
            while sum(await asyncio.gather(*(r.fire_due() for r in runners))):
                pass
            fired = await pool.fetch("SELECT ref, due_at, clock_at FROM fired")
            assert all(row["due_at"] <= row["clock_at"] for row in fired), "a timer fired before it was due"
            assert len(fired) == min(step + 1, 240)
        counts = await pool.fetch("SELECT ref, count(*) AS n FROM fired GROUP BY ref")
        assert len(counts) == 240 and all(row["n"] == 1 for row in counts)
        assert {r["replica"] for r in await pool.fetch("SELECT DISTINCT replica FROM fired")} == {"a", "b"}
        assert await pool.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NULL") == 0
    finally:
        await runtime.stop()


async def test_migrations_apply_once_and_refuse_an_edited_file(ns: Namespace, tmp_path: Path) -> None:
    conn: asyncpg.Connection = await connect(ns.settings)
    try:
        first = await migrate(conn, "migtest", {"kernel": KERNEL_MIGRATIONS, "migtest": MIGRATIONS})
        kernel = sorted(f"kernel/{f.name}" for f in KERNEL_MIGRATIONS.glob("*.sql"))
        assert kernel[0] == "kernel/0001_kernel.sql"
        assert first == [*kernel, "migtest/0001_seen.sql", "migtest/0002_fired.sql"]
        assert await migrate(conn, "migtest", {"kernel": KERNEL_MIGRATIONS, "migtest": MIGRATIONS}) == []

        edited = tmp_path / "edited"
        edited.mkdir()
        (edited / "0001_seen.sql").write_text((MIGRATIONS / "0001_seen.sql").read_text() + "\n-- changed\n")
        with pytest.raises(MigrationError, match="0001_seen.sql was changed after it was applied"):
            await migrate(conn, "migtest", {"migtest": edited})

        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "seen.sql").write_text("SELECT 1")
        with pytest.raises(MigrationError, match="not named like 0001_description.sql"):
            await migrate(conn, "migtest2", {"migtest2": bad})
    finally:
        await conn.close()


async def test_two_replicas_migrating_at_once_apply_each_file_once(ns: Namespace) -> None:
    conns = [await connect(ns.settings) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(migrate(c, "racetest", {"kernel": KERNEL_MIGRATIONS, "racetest": MIGRATIONS}) for c in conns)
        )
        files = len(list(KERNEL_MIGRATIONS.glob("*.sql"))) + 2
        assert sorted(len(r) for r in results) == [0, 0, files]
        assert await conns[0].fetchval("SELECT count(*) FROM racetest.schema_migrations") == files
    finally:
        for c in conns:
            await c.close()


async def test_a_timer_that_re_arms_itself_stays_pending_for_its_new_time(ns: Namespace) -> None:
    clock = manual_clock()
    runtime = ServiceRuntime(_definition(), ns.settings, clock)
    await runtime.start(consume=False, relay=False, timers=False)
    assert runtime.pool is not None
    pool = runtime.pool
    start = clock.now()

    async def snooze(uow: UnitOfWork, timers: list[Timer]) -> None:
        for t in timers:
            await uow.conn.execute("INSERT INTO fired (ref, due_at, clock_at, replica) VALUES ($1, $2, $3, 'a')",
                                   t.ref, t.due_at, uow.now())
            if len(await uow.conn.fetch("SELECT 1 FROM fired WHERE ref = $1", t.ref)) < 3:
                uow.schedule_timer("test.snooze", t.ref, t.due_at + timedelta(hours=1), replace=True)
                await uow.cancel_timers(["nothing-else"])  # flushes the re-arm before the runner marks the batch

    try:
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, service="kerneltest", settings=ns.settings, clock=clock, deps=None)
            uow.schedule_timer("test.snooze", "alarm", start)
            await uow.flush()
        runner = TimerRunner("kerneltest", ns.settings, pool, clock, {"test.snooze": snooze}, deps=None)
        for hour in range(4):
            clock.set(start + timedelta(hours=hour))
            await runner.fire_due()
        rows = await pool.fetch("SELECT due_at FROM fired ORDER BY due_at")
        assert [r["due_at"] for r in rows] == [start + timedelta(hours=h) for h in range(3)]
    finally:
        await runtime.stop()


class _StaleProducer:
    """A producer the broker no longer takes sends from (its sequence broke when the broker
    restarted): every send fails as aiokafka reports it. It knows the topics like the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sends = 0
        self.stopped = False

    async def partitions_for(self, topic: str) -> Any:
        return await self.real.partitions_for(topic)

    def create_batch(self) -> Any:
        return self.real.create_batch()

    def _failed(self) -> asyncio.Future[Any]:
        from aiokafka.errors import OutOfOrderSequenceNumber

        self.sends += 1
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(OutOfOrderSequenceNumber())
        return failed

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return self._failed()

    async def send_batch(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return self._failed()

    async def stop(self) -> None:
        self.stopped = True
        await self.real.stop()


async def test_a_relay_whose_producer_fails_its_sends_replaces_it_and_publishes_each_row_once(ns: Namespace) -> None:
    runtime = ServiceRuntime(_definition(), ns.settings, manual_clock())
    await runtime.start(consume=False, timers=False)
    try:
        assert runtime.relay is not None
        stale = _StaleProducer(runtime.relay.producer)
        runtime.relay.producer = stale  # type: ignore[assignment]
        await _outbox(runtime, 5)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda r: len(r) >= 5, timeout=30, settle=2.0)
        assert stale.sends >= 1 and stale.stopped, "the failing producer was tried, then thrown away"
        assert runtime.relay.producer is not stale
        assert sorted(r.data["notification_id"] for r in topic.records) == [f"n{i}" for i in range(5)]
        assert runtime.pool is not None
        assert await runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await runtime.stop()
