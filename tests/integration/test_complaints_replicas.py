"""Two replicas of the complaints service (same namespace: one consumer group, one schema,
one timers table) split the work, and every escalation is announced exactly once — while
handlers acknowledge cases through both replicas' APIs as the deadlines pass."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from services import load
from services.complaints.domain import complaint_id_for
from shared.runtime import ServiceRuntime
from tests.complaints_fixtures import complaint_filed, complaints_state
from tests.support import TEST_NOW, Namespace, TopicReader, api, count, db, manual_clock, publish

pytestmark = [pytest.mark.infra, pytest.mark.dates]

T0 = TEST_NOW  # the filing; the ladder's moments are offsets from it
H, D = timedelta(hours=1), timedelta(days=1)
CASES = 24


async def test_two_replicas_announce_each_escalation_exactly_once(ns: Namespace, tmp_path: Path) -> None:
    clock = manual_clock(T0)
    racing = ns.settings.model_copy(update={"timer_batch": 1})  # one timer per claim: the replicas race for them
    replicas = []
    for name in ("a", "b"):
        runtime = ServiceRuntime(load("complaints"), racing, clock, replica=name,
                                 overrides=complaints_state(tmp_path)["complaints"])
        await runtime.start()
        replicas.append(runtime)
    try:
        for _ in range(300):  # both in the group before the cases come, so both get a share
            if all(r.consumer is not None and r.consumer.assigned for r in replicas):
                break
            await asyncio.sleep(0.2)
        read_before = [r.consumer.processed if r.consumer else 0 for r in replicas]
        refs = [f"R-{i:03d}" for i in range(CASES)]
        await publish(ns.settings, "aftersales.intake", [
            complaint_filed(ref, T0, customer_id=f"CUST-{i:04d}", source="intake", followup_id=None,
                            channel="hotline", description="交车晚了")
            for i, ref in enumerate(refs)])
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintOpened", CASES), timeout=90)

        # Half the cases are acknowledged in time, alternately through each replica's API,
        # while the clock runs past the 4 h deadline of the others.
        acknowledged = [complaint_id_for(r) for r in refs[::2]]
        clock.set(T0 + 3 * H)
        for i, cid in enumerate(acknowledged):
            async with api(replicas[i % 2], "agent") as agent:
                assert (await agent.post(f"/v1/complaints/{cid}/acknowledge")).status_code == 200

        # 4 h: the 12 unacknowledged go to the supervisor; 2 d: all 24 climb; 3 d: all 24 climb;
        # 4 d: the 12 acknowledged ones reach the superior leader (the others already did at 3 d).
        expected = 0
        for offset, more in ((4 * H, 12), (2 * D, 24), (3 * D, 24), (4 * D, 12)):
            expected += more
            clock.set(T0 + offset + timedelta(minutes=1))
            async with TopicReader(ns.settings, "aftersales.complaints") as topic:
                await topic.wait_for(count("ComplaintEscalated", expected), timeout=60)
        await asyncio.sleep(2.0)  # long enough for a duplicate to show up, if there were one
        clock.set(T0 + 10 * D)
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintEscalated", expected), timeout=30, settle=2.0)

        escalations = topic.of_type("ComplaintEscalated")
        per_step = Counter((r.data["complaint_id"], r.data["round"], r.data["level"]) for r in escalations)
        assert len(escalations) == 72 and set(per_step.values()) == {1}
        assert len({r.envelope.event_id for r in escalations}) == 72
        levels = Counter(r.data["complaint_id"] for r in escalations)
        assert set(levels.values()) == {3}  # every case reached the superior leader, one level at a time
        for cid in acknowledged:
            assert [r.data["breach"] for r in escalations if r.data["complaint_id"] == cid] == [
                "resolve", "resolve", "resolve"]

        # Each replica did its own share: it read some of the filed cases (its partitions), and
        # fired some of the deadlines (whichever replica claims a timer fires it); together all.
        read = [(r.consumer.processed if r.consumer else 0) - before for r, before in zip(replicas, read_before,
                                                                                          strict=True)]
        fired = [r.timers.fired if r.timers else 0 for r in replicas]
        assert all(n > 0 for n in read) and sum(read) >= CASES, f"cases read per replica: {read}"
        assert all(n > 0 for n in fired) and sum(fired) >= 72, f"timers fired per replica: {fired}"
        conn = await db(ns, "complaints")
        try:
            assert await conn.fetchval("SELECT count(*) FROM escalations") == 72
            assert await conn.fetchval(
                "SELECT count(*) FROM timers WHERE kind = 'complaint.sla' AND fired_at IS NULL "
                "AND cancelled_at IS NULL") == 0
        finally:
            await conn.close()
    finally:
        for runtime in replicas:
            await runtime.stop()
