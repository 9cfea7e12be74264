"""Dead letters: listed by reason, corrected and sent back, then processed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from aftersales import dlq
from shared.kafka.clients import make_admin
from tests.support import Namespace, Stack, TopicReader, count, manual_clock, publish
from tools.sandbox import ROOT
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


async def test_a_dead_letter_is_corrected_sent_back_and_processed(ns: Namespace) -> None:
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        fleet = Fleet(seed=95)
        vehicle = fleet.vehicle(NOW - timedelta(days=100))
        typo = fleet.pickup(vehicle, NOW - timedelta(days=1))
        typo["data"]["vin"] = vehicle.vin[:16]  # the DMS dropped a character
        wash = fleet.pickup(fleet.vehicle(NOW - timedelta(days=100)), NOW - timedelta(days=1))
        wash["data"]["service_type"] = "car_wash"
        await publish(ns.settings, "upstream.dms", [typo, wash])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 2), timeout=60)

        letters = await dlq.read(ns.settings)
        assert [d.error for d in letters] == ["ValidationFailed", "ValidationFailed"]
        chosen = dlq.select(letters, reason="16 characters")
        assert len(chosen) == 1 and chosen[0].original_event_id == typo["event_id"]
        with pytest.raises(LookupError, match="no dead letter for upstream.dms:0:999"):
            dlq.select(letters, ids=["upstream.dms:0:999"])

        sent = await dlq.redrive(ns.settings, chosen, [dlq.parse_assignment(f"data.vin={vehicle.vin}")])
        assert len(sent) == 1
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehiclePickedUp", 1), timeout=60, settle=1.0)
        pickup = canonical.of_type("VehiclePickedUp")[0]
        assert pickup.data["vin"] == vehicle.vin and str(pickup.envelope.causation_id) == typo["event_id"]  # type: ignore[union-attr]
        async with TopicReader(ns.settings, "upstream.dms") as upstream:
            await upstream.wait_for(lambda rs: len(rs) == 3)
        marked = [r for r in upstream.records if dict(r.record.headers).get("x-redriven-from")]
        assert len(marked) == 1 and dict(marked[0].record.headers)["x-redriven-from"].decode() == chosen[0].id

        # The command line lists them, as JSON.
        env = {**os.environ, **ns.env()}
        done = subprocess.run([sys.executable, "-m", "aftersales", "dlq", "list", "--json", "--error",
                               "ValidationFailed"], capture_output=True, env=env, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert {d["id"] for d in orjson.loads(done.stdout)} == {d.id for d in letters}
    finally:
        await stack.stop()


async def test_a_truncated_dead_letter_topic_reads_as_empty_instead_of_waiting_forever(ns: Namespace) -> None:
    """After the log was truncated (retention, `aftersales demo`'s reset) a partition starts
    where it ends: reading must not wait for records that will never come."""
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        await publish(ns.settings, "upstream.dms", [b"{not json"])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 1), timeout=60)
    finally:
        await stack.stop()
    assert len(await dlq.read(ns.settings)) == 1
    topic = ns.settings.topic("aftersales.deadletter")
    admin = make_admin(ns.settings)
    await admin.start()
    try:
        record = dead.records[0].record
        await admin.delete_records({TopicPartition(topic, record.partition): RecordsToDelete(record.offset + 1)})
    finally:
        await admin.close()
    assert await asyncio.wait_for(dlq.read(ns.settings), timeout=30) == []


def test_canonical_events_are_never_edited_by_hand() -> None:
    letter = dlq.DeadLetter(
        id="aftersales.followup:3:7", service="complaints", topic="aftersales.followup", partition=3, offset=7,
        error="ValidationFailed", reason="x", event_type="ComplaintFiled", original_event_id=None, key="C1",
        value=b'{"data": {}}', headers={}, dead_lettered_at="2026-11-20T00:00:00+00:00")
    with pytest.raises(ValueError, match="canonical topic; its events are not edited by hand"):
        dlq.corrected(letter, [dlq.parse_assignment("data.x=1")])
    assert dlq.corrected(letter, []) == b'{"data": {}}', "unchanged, it may go back"
    with pytest.raises(ValueError, match="must look like data.vin="):
        dlq.parse_assignment("no equals sign")
    assert dlq.parse_assignment('data.mileage_km=12000') == (["data", "mileage_km"], 12000)
    assert dlq.parse_assignment("data.plate=沪A12345") == (["data", "plate"], "沪A12345")
