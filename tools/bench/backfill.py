"""`aftersales bench backfill`: a DMS import of historical repair orders through intake and
followup, as the services run in production (processes, real broker and database).

A million pickups from the last three years, for about 110,000 vehicles with their customers,
are published to `upstream.dms` in world order per vehicle. The import is done when intake has
consumed all of them, its outbox is empty, and followup has consumed every canonical event intake
published. Followup files every visit; pickups this old are history (no return-visit call), but
the maintenance reminder and the lost-customer check of each vehicle are armed as in production.

Measured in the same run: the aiokafka consume→produce pass-through (no database) on the same
records, as the baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from aftersales.progress import Tracker, bars
from shared.kafka.clients import make_admin, make_consumer, partitions_of, stop_consumer
from shared.settings import project_home
from tools.bench.harness import _peak_rss_mb, start_passthrough, stop_bench
from tools.sandbox import Namespace, ServiceProcess, create_namespace
from tools.simulate import CST, Fleet, Vehicle

console = Console()


def orders(count: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of `count` historical pickups: each vehicle visits every ~100 days over the
    three years before today, its visits published in world order."""
    fleet = Fleet(seed=seed, dealers=40)
    now = datetime.now(CST).replace(microsecond=0)
    vehicles = max(1, count // 9)
    written = 0
    while written < count:
        batch: list[tuple[datetime, Vehicle]] = []
        for _ in range(min(5_000, vehicles)):
            sold = now - timedelta(days=fleet.rng.uniform(1000, 1200))
            batch.append((sold, fleet.vehicle(sold)))
        for visit in range(9):
            for sold, vehicle in batch:
                if written >= count:
                    return
                at = sold + timedelta(days=100 * (visit + 1) + fleet.rng.uniform(-20, 20))
                env = fleet.pickup(vehicle, at, mileage_km=4_000 * (visit + 1) + fleet.rng.randrange(0, 2_000))
                yield env["key"].encode(), orjson.dumps(env)
                written += 1


@dataclass
class Run:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def _publish(ns: Namespace, topic: str, count: int, seed: int, progress: Tracker, label: str) -> float:
    producer = AIOKafkaProducer(**ns.settings.kafka_client_options(), linger_ms=10, acks="all",  # type: ignore[arg-type]
                                enable_idempotence=True, max_batch_size=512 * 1024)
    await producer.start()
    task = progress.add_task(label, total=count)
    started = time.monotonic()
    try:
        for i, (key, value) in enumerate(orders(count, seed)):
            await producer.send(topic, value, key=key, headers=[("event_type", b"VehiclePickedUp")])
            if i % 5_000 == 0:
                progress.update(task, completed=i)
        await producer.flush()
        progress.update(task, completed=count)
    finally:
        await producer.stop()
    return started


async def _lag(ns: Namespace, group: str, topics: list[str]) -> int:
    """How far a consumer group is behind the end of its topics (uncommitted partitions count whole)."""
    admin = make_admin(ns.settings)
    consumer = make_consumer(ns.settings, group_id=None, client_id="bench-lag")
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(t, p) for t in topics for p in await partitions_of(consumer, t)]
        ends = await consumer.end_offsets(tps)
        return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp, end in ends.items())
    finally:
        await stop_consumer(consumer)
        await admin.close()


async def _outbox(ns: Namespace, service: str) -> int:
    conn = await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": service})
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE failed_at IS NULL"))
    finally:
        await conn.close()


async def _until_caught_up(checks: list[tuple[str, object]], started: float, progress: Tracker, total: int,
                           timeout: float, label: str = "processed") -> float:
    """Poll until every check reports 0; return the moment (monotonic) the first poll saw that."""
    task = progress.add_task(label, total=total)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [await check() for _, check in checks]  # type: ignore[operator]
        progress.update(task, completed=max(0, total - left[0]))
        if not any(left):
            return time.monotonic()
        await asyncio.sleep(1.0)
    raise TimeoutError(f"not caught up after {timeout:.0f} s: " + ", ".join(
        f"{name} {value}" for (name, _), value in zip(checks, left, strict=True)))


async def measure(count: int, seed: int = 11, keep: bool = False, progress: Tracker | None = None) -> dict[str, object]:
    """The two timed passes; `progress` (default: bars on stderr when it is a terminal) counts the
    orders published and processed in each."""
    with contextlib.nullcontext(progress) if progress is not None else bars() as tracker:
        return await _measure(count, seed, keep, tracker)


async def _measure(count: int, seed: int, keep: bool, progress: Tracker) -> dict[str, object]:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    ns = await create_namespace("backfill", partitions=12)
    log_dir = project_home() / ".local" / "bench" / ns.prefix.rstrip(".")
    running: list[ServiceProcess] = []
    passthrough: asyncio.subprocess.Process | None = None
    try:
        in_topic, out_topic, passthrough = await start_passthrough(ns)
        # the baseline pass
        started = await _publish(ns, in_topic, count, seed, progress, "baseline: publishing")

        async def base_left() -> int:
            return await _lag(ns, f"{ns.prefix}passthrough", [in_topic])

        done = await _until_caught_up([("pass-through lag", base_left)], started, progress, count, 3600,
                                      "baseline: processed")
        baseline = Run("baseline (pass-through)", count, done - started)
        passthrough.terminate()
        await passthrough.wait()

        running = [ServiceProcess(ns, s, log_dir, AFTERSALES_LOG_LEVEL="WARNING").start()
                   for s in ("intake", "followup")]
        for service in running:
            service.wait_ready(120)
        # the import through intake and followup
        started = await _publish(ns, ns.topic("upstream.dms"), count, seed + 1, progress, "import: publishing")

        async def intake_left() -> int:
            return await _lag(ns, f"{ns.prefix}intake", [ns.topic("upstream.dms")])

        async def intake_outbox() -> int:
            return await _outbox(ns, "intake")

        async def followup_left() -> int:
            return await _lag(ns, f"{ns.prefix}followup", [ns.topic("aftersales.intake")])

        done = await _until_caught_up([("intake lag", intake_left), ("intake outbox", intake_outbox),
                                       ("followup lag", followup_left)], started, progress, count, 4 * 3600,
                                      "import: processed")
        system = Run("intake + followup", count, done - started)
        rss = {s.service: _peak_rss_mb(s.pid) for s in running}
        conn = await asyncpg.connect(ns.settings.database_url)
        try:
            filed = {
                "intake visits": await conn.fetchval("SELECT count(*) FROM intake.visits"),
                "intake customers": await conn.fetchval("SELECT count(*) FROM intake.customers"),
                "followup visits": await conn.fetchval("SELECT count(*) FROM followup.visits"),
                "first-visit calls": await conn.fetchval(
                    "SELECT count(*) FROM followup.followups WHERE kind = 'first_visit'"),
                "reminders armed": await conn.fetchval(
                    "SELECT count(*) FROM followup.vehicles WHERE remind_at IS NOT NULL"),
                "lost checks armed": await conn.fetchval(
                    "SELECT count(*) FROM followup.customers WHERE lost_check_at IS NOT NULL"),
            }
        finally:
            await conn.close()
    finally:
        await stop_bench(ns, running, passthrough, keep=keep)
    return {"baseline": baseline, "system": system, "rss": rss, "filed": filed}


def run(count: int = 1_000_000, seed: int = 11, keep: bool = False) -> dict[str, object]:
    figures = asyncio.run(measure(count, seed, keep))
    baseline, system = figures["baseline"], figures["system"]
    assert isinstance(baseline, Run) and isinstance(system, Run)
    table = Table(title=f"backfill: {count:,} historical repair orders (one run, same broker)")
    for column in ("", "minutes", "orders/s", "ratio to baseline"):
        table.add_column(column, justify="right")
    for r in (baseline, system):
        table.add_row(r.name, f"{r.seconds / 60:.1f}", f"{r.rate:,.0f}", f"{r.rate / baseline.rate:.2f}")
    console.print(table)
    console.print("filed: " + ", ".join(f"{k} {v:,}" for k, v in figures["filed"].items()))  # type: ignore[union-attr]
    console.print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in figures["rss"].items() if v))  # type: ignore[union-attr]
    return figures
