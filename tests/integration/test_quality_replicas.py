"""Two quality replicas share the partitions: a batch's reports reach both at once (half of them
on each replica's partitions, and each replica reads its half), and still one alert per cell is
raised, each report is counted once, and a look fires once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from services import load
from shared.runtime import ServiceRuntime
from tests.quality_events import defect_reported, vehicle, vehicle_sold
from tests.support import Namespace, TopicReader, day_at, db, manual_clock, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def test_two_replicas_raise_one_alert_per_cell_and_fire_each_look_once(ns: Namespace) -> None:
    clock = manual_clock()
    replicas = [ServiceRuntime(load("quality"), ns.settings, clock, replica=f"quality-{n}") for n in (1, 2)]
    for runtime in replicas:
        await runtime.start()
    conn = await db(ns, "quality")
    try:
        async def settled(query: str, n: int) -> None:
            for _ in range(300):
                if await conn.fetchval(query) >= n:
                    return
                await asyncio.sleep(0.2)
            raise AssertionError(f"timed out: {query} < {n}")

        async def both_consuming() -> None:
            for _ in range(300):
                if all(r.consumer is not None and r.consumer.assigned for r in replicas):
                    return
                await asyncio.sleep(0.2)
            raise AssertionError("the replicas never split the partitions")

        await both_consuming()
        fleet = Fleet(seed=77)
        batch = {"batch": "B2610-D4", "supplier_id": "SUP-A"}
        cars = [vehicle(fleet, day_at(0, days=-50) + timedelta(hours=5 * i), model="Cargo-5T",
                        differential=batch) for i in range(80)]
        await publish(ns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in cars])
        await settled("SELECT count(*) FROM vehicle_parts WHERE category = 'differential'", 80)
        # Six reports on each replica's partitions (a report is keyed by its VIN).
        partitions = list(range(ns.settings.topic_partitions))

        def owner(vin: str) -> int:
            tp = TopicPartition(ns.topic("aftersales.intake"), DefaultPartitioner()(vin.encode(), partitions, partitions))
            [n] = [n for n, r in enumerate(replicas) if r.consumer is not None and tp in r.consumer.assigned]
            return n

        reported = [v for n in (0, 1) for v in [c for c in cars if owner(c.vin) == n][:6]]
        assert sorted(owner(v.vin) for v in reported) == [0] * 6 + [1] * 6
        read_before = [r.consumer.processed if r.consumer else 0 for r in replicas]
        reports = [defect_reported(v, "differential", "seal_leak", day_at(8, days=-11) + timedelta(hours=13 * i),
                                   f"DR-D{i:02d}") for i, v in enumerate(reported)]
        await publish(ns.settings, "aftersales.intake", reports)
        await settled("SELECT count(*) FROM reports", 12)

        def read() -> list[int]:  # records each replica has handled and committed since
            return [(r.consumer.processed if r.consumer else 0) - before
                    for r, before in zip(replicas, read_before, strict=True)]

        for _ in range(300):  # a replica counts a poll once its offsets are committed, after the rows
            if sum(read()) >= 12:
                break
            await asyncio.sleep(0.2)
        assert read() == [6, 6], f"each replica read the reports on its own partitions: {read()}"

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            await quality.wait_for(lambda rs: any(len(r.data["report_ids"]) == 12 for r in rs
                                                  if r.event_type == "QualityAlertRaised"), timeout=60, settle=1.0)
            clock.set(day_at(0, days=1) + timedelta(seconds=1))  # the daily look: due on both replicas
            await quality.wait_for(lambda rs: any(r.data["cell"]["kind"] == "supplier_model" for r in rs
                                                  if r.event_type == "QualityAlertRaised"), timeout=30, settle=2.0)
        raised = quality.of_type("QualityAlertRaised")
        by_cell: dict[str, set[str]] = {}
        for r in raised:
            by_cell.setdefault(r.data["cell"]["kind"], set()).add(r.data["alert_id"])
        assert {kind: len(ids) for kind, ids in by_cell.items()} == {"batch": 1, "supplier_model": 1}
        assert [r.data["updated"] for r in raised if r.data["cell"]["kind"] == "batch"].count(False) == 1
        assert [r.data["updated"] for r in raised if r.data["cell"]["kind"] == "supplier_model"] == [False]
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 2
        assert await conn.fetchval("SELECT count(*) FROM reports WHERE counted") == 12
        assert await conn.fetchval("SELECT count(*) FROM timers WHERE kind = 'look' AND fired_at IS NOT NULL") == 1
    finally:
        await conn.close()
        for runtime in replicas:
            await runtime.stop()
