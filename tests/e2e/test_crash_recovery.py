"""Nothing lost, nothing done twice: services killed with SIGKILL at the worst moments, and
the broker stopped mid-stream. Real processes, real broker, real database."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from aftersales.infra import Kafka, _paths
from shared.settings import load_settings
from tests.support import (
    TEST_NOW,
    Namespace,
    ServiceProcess,
    Stack,
    TopicReader,
    count,
    day_at,
    db,
    manual_clock,
    publish,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.slow]

# Service processes live at the test moment (the namespace's clock offset): a pickup an hour before it.
PICKED_UP_AT = TEST_NOW - timedelta(hours=1)


@pytest.mark.dates
async def test_killed_between_commit_and_publish_publishes_exactly_once_after_restart(
    ns: Namespace, logs_dir: Path
) -> None:
    fleet = Fleet(seed=21)
    pickup = fleet.pickup(fleet.vehicle(day_at(0, days=-656)), PICKED_UP_AT)

    doomed = ServiceProcess(ns, "intake", logs_dir, AFTERSALES_FAULT="crash_after_commit").start()
    doomed.wait_ready()
    await publish(ns.settings, "upstream.dms", [pickup])
    assert doomed.wait_exit(60) == -9, doomed.tail()

    conn = await db(ns, "intake")
    try:
        assert await conn.fetchval("SELECT count(*) FROM visits") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2
    finally:
        await conn.close()
    async with TopicReader(ns.settings, "aftersales.intake") as intake:
        await intake.wait_for(lambda records: True, settle=2.0)
        assert intake.records == [], "nothing may be published before the crash"

    survivor = ServiceProcess(ns, "intake", logs_dir).start()
    survivor.wait_ready()
    try:
        async with TopicReader(ns.settings, "aftersales.intake") as intake:
            await intake.wait_for(count("VehiclePickedUp", 1), timeout=60, settle=3.0)
        assert len(intake.of_type("VehiclePickedUp")) == 1
        assert len(intake.of_type("CustomerRegistered")) == 1
        conn = await db(ns, "intake")
        try:
            assert await conn.fetchval("SELECT count(*) FROM visits") == 1
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        finally:
            await conn.close()
    finally:
        assert survivor.terminate() == 0, survivor.tail()


@pytest.mark.dates
async def test_killed_after_publish_before_marking_republishes_and_downstream_skips_the_repeat(
    ns: Namespace, logs_dir: Path
) -> None:
    fleet = Fleet(seed=22)
    pickup = fleet.pickup(fleet.vehicle(day_at(0, days=-656)), PICKED_UP_AT)
    followup = await Stack(ns, manual_clock(), services=("followup",)).start()
    try:
        doomed = ServiceProcess(ns, "intake", logs_dir, AFTERSALES_FAULT="crash_after_publish").start()
        doomed.wait_ready()
        await publish(ns.settings, "upstream.dms", [pickup])
        assert doomed.wait_exit(60) == -9, doomed.tail()
        survivor = ServiceProcess(ns, "intake", logs_dir).start()
        survivor.wait_ready()
        try:
            async with TopicReader(ns.settings, "aftersales.intake") as intake:
                await intake.wait_for(count("VehiclePickedUp", 2), timeout=60, settle=1.0)
            copies = intake.of_type("VehiclePickedUp")
            assert len(copies) == 2 and copies[0].envelope.event_id == copies[1].envelope.event_id  # type: ignore[union-attr]
            async with TopicReader(ns.settings, "aftersales.followup") as scheduled:
                await scheduled.wait_for(count("FollowUpScheduled", 1), timeout=60, settle=3.0)
            assert len(scheduled.of_type("FollowUpScheduled")) == 1
        finally:
            assert survivor.terminate() == 0, survivor.tail()
    finally:
        await followup.stop()


# Not in `make test-dates`: nothing in it depends on the day, and it restarts the broker every
# other test on the machine is using.
async def test_services_recover_by_themselves_when_kafka_stops_for_ten_seconds(ns: Namespace) -> None:
    kafka = Kafka(load_settings(), _paths())
    if kafka.running_pid() is None:
        pytest.fail("this test restarts the broker that `aftersales infra up` started; none is running")
    fleet = Fleet(seed=23)
    start = day_at(9, days=-10)
    pickups = list(fleet.pickups(300, start))
    stack = await Stack(ns, manual_clock(), services=("intake", "followup")).start()
    try:
        await publish(ns.settings, "upstream.dms", pickups[:150])
        async with TopicReader(ns.settings, "aftersales.followup") as followups:
            await followups.wait_for(count("FollowUpScheduled", 20), timeout=60)
        await asyncio.to_thread(kafka.down)
        stopped = time.monotonic()
        await asyncio.sleep(10)
        await asyncio.to_thread(kafka.up)
        outage = time.monotonic() - stopped
        await publish(ns.settings, "upstream.dms", pickups[150:])
        async with TopicReader(ns.settings, "aftersales.followup") as followups:
            # 300 distinct follow-ups: a record re-sent after the outage is a second copy, which
            # must not count towards the 300
            await followups.wait_for(lambda rs: len({r.data["followup_id"] for r in rs
                                                     if r.event_type == "FollowUpScheduled"}) >= 300,
                                     timeout=180, settle=3.0)
        event_ids: dict[str, set[str]] = {}
        for record in followups.of_type("FollowUpScheduled"):
            assert record.envelope is not None
            event_ids.setdefault(record.data["followup_id"], set()).add(str(record.envelope.event_id))
        assert outage >= 10
        assert len(event_ids) == 300, "every pickup has its follow-up"
        # One FollowUpScheduled each: a record may be re-sent after a failed send, always with
        # the same event_id (which consumers' inboxes skip), never as a second scheduling.
        assert all(len(ids) == 1 for ids in event_ids.values())
        conn = await db(ns, "followup")
        try:
            assert await conn.fetchval("SELECT count(*) FROM followups WHERE kind = 'first_visit'") == 300
        finally:
            await conn.close()
    finally:
        await stack.stop()
