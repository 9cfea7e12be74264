"""Quality early warning end to end, on the real broker and database: VehicleSold parts lists
and a burst of controller defects in one batch on aftersales.intake -> one alert on
aftersales.quality naming those reports and vehicles -> acknowledged -> closed, through the
HTTP API, each event naming its cause."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.quality_events import defect_reported, vehicle, vehicle_sold
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, manual_clock, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

BAD_BATCH = {"batch": "B2609-CTRL-7", "supplier_id": "SUP-B"}


async def wait_for_units(runtime: object, category: str, units: int, timeout: float = 60) -> None:
    async with api(runtime, "quality") as client:  # type: ignore[arg-type]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body = (await client.get("/v1/stats", params={"category": category, "from": "2020-01-01"})).json()
            if body["units_in_service"]["units"] >= units:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"units in service stuck at {body['units_in_service']['units']} of {units}")
            await asyncio.sleep(0.2)


async def test_a_burst_of_controller_defects_in_one_batch_raises_one_traceable_alert_acknowledged_then_closed(
    ns: Namespace,
) -> None:
    clock = manual_clock()
    stack = await Stack(ns, clock, services=("quality",)).start()
    try:
        fleet = Fleet(seed=61)
        sold = day_at(9, days=-80)
        bad = [vehicle(fleet, sold + timedelta(hours=7 * i), controller=BAD_BATCH) for i in range(200)]
        others = [vehicle(fleet, sold + timedelta(hours=5 * i)) for i in range(200)]
        await publish(ns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in bad + others])
        await wait_for_units(stack["quality"], "controller", 400)

        first = day_at(9, days=-4)
        burst = [defect_reported(v, "controller", "no_power", first + timedelta(hours=9 * i), f"DR-{i:03d}")
                 for i, v in enumerate(bad[:9])]
        await publish(ns.settings, "aftersales.intake", burst)

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            # the 7th report of one failure mode within 30 days raises it; the 8th and 9th update it
            await quality.wait_for(lambda rs: any(r.event_type == "QualityAlertRaised"
                                                  and len(r.data["report_ids"]) == 9 for r in rs),
                                   timeout=60, settle=1.0)
        raised = quality.of_type("QualityAlertRaised")
        assert len({r.data["alert_id"] for r in raised}) == 1, "exactly one alert for the batch"
        assert [r.data["updated"] for r in raised].count(False) == 1
        latest = max(raised, key=lambda r: r.data["revision"])
        alert_id = latest.data["alert_id"]
        assert latest.record.key.decode() == alert_id
        assert latest.data["cell"] == {"kind": "batch", "category": "controller", "batch": "B2609-CTRL-7"}
        assert latest.data["rule"] == "failure_mode_burst" and latest.data["failure_mode"] == "no_power"
        assert sorted(latest.data["report_ids"]) == sorted(e["data"]["report_id"] for e in burst)
        assert sorted(latest.data["vins"]) == sorted(v.vin for v in bad[:9])
        assert latest.data["observed"] == 9 and 0 < latest.data["expected"] < 2
        assert latest.data["p_value"] < latest.data["threshold"]
        # Caused by the defect report that tipped it, in that report's correlation.
        first_raise = next(r for r in raised if not r.data["updated"])
        by_id = {e["event_id"]: e for e in burst}
        cause = by_id[str(first_raise.envelope.causation_id)]
        assert str(first_raise.envelope.correlation_id) == cause["correlation_id"]
        assert cause["data"]["report_id"] in first_raise.data["report_ids"]

        async with api(stack["quality"], "quality") as client:
            listed = (await client.get("/v1/alerts", params={"state": "open", "category": "controller"})).json()
            assert [a["alert_id"] for a in listed["items"]] == [alert_id]
            detail = (await client.get(f"/v1/alerts/{alert_id}")).json()
            assert {r["report_id"] for r in detail["reports"]} == set(latest.data["report_ids"])
            assert detail["allowed_actions"] == ["acknowledge"]

            acknowledged = await client.post(f"/v1/alerts/{alert_id}/acknowledge",
                                              json={"note": "batch B2609-CTRL-7 on hold at the warehouse"})
            assert acknowledged.status_code == 200, acknowledged.text
            assert acknowledged.json()["state"] == "acknowledged"
            assert acknowledged.json()["acknowledged_by"] == "quality-01"

            clock.advance(timedelta(days=2))
            closed = await client.post(f"/v1/alerts/{alert_id}/close",
                                       json={"note": "supplier SUP-B replaced the capacitor lot; 200 units recalled"})
            assert closed.status_code == 200, closed.text
            assert closed.json()["state"] == "closed"
            assert closed.json()["close_note"].startswith("supplier SUP-B")

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            await quality.wait_for(count("QualityAlertClosed", 1), timeout=30, settle=0.5)
        ack = quality.of_type("QualityAlertAcknowledged")
        done = quality.of_type("QualityAlertClosed")
        assert len(ack) == 1 and len(done) == 1
        assert ack[0].data["alert_id"] == alert_id and ack[0].data["actor"] == "quality-01"
        assert ack[0].data["note"] == "batch B2609-CTRL-7 on hold at the warehouse"
        raised_ids = {r.envelope.event_id for r in quality.of_type("QualityAlertRaised")}
        # The chain: the last alert event -> acknowledged -> closed, one correlation throughout.
        assert ack[0].envelope.causation_id in raised_ids
        assert done[0].envelope.causation_id == ack[0].envelope.event_id
        assert done[0].envelope.correlation_id == ack[0].envelope.correlation_id
        assert done[0].data["state"] == "closed" and "capacitor" in done[0].data["note"]
    finally:
        await stack.stop()
