"""Lost customers on the real broker and database (intake and followup, the clock moved by
hand): the lost-customer call records why the customer left (an unknown reason is refused and
nothing is stored), the reason is in the call's events, counted by reason in the metric, the
report and the weekly report; and the customers at risk before the 12-month mark are listed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from services.followup.config import FollowUpRules
from shared import metrics
from tests.support import TEST_NOW, Namespace, Stack, TopicReader, api, count, db, manual_clock, next_weekday, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

NOW = TEST_NOW


def _lost_calls(records: list) -> list[dict]:
    return [r.data for r in records if r.event_type == "FollowUpScheduled" and r.data["kind"] == "lost_customer"]


async def test_a_lost_customers_reason_is_recorded_published_counted_and_reported(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    counted = metrics.LOST_CUSTOMER_REASONS.labels("switched_dealer")
    counted_before = counted._value.get()
    try:
        fleet = Fleet(seed=161)
        gone = fleet.vehicle(NOW - timedelta(days=420))  # sold 14 months ago, never back: lost
        drifting = fleet.vehicle(NOW - timedelta(days=500))  # came every 60 days, not for 150 days now
        overdue = fleet.vehicle(NOW - timedelta(days=400))  # its service fell due 40 days ago
        regular = fleet.vehicle(NOW - timedelta(days=400))  # came 20 days ago
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in (gone, drifting, overdue, regular)])
        late_service = fleet.pickup(overdue, NOW - timedelta(days=200), mileage_km=20_000)
        late_service["data"]["next_service_due_at"] = (NOW - timedelta(days=40)).isoformat()
        late_service["data"]["next_service_due_km"] = 90_000
        pickups = [fleet.pickup(drifting, NOW - timedelta(days=d), mileage_km=30_000 - d * 20)
                   for d in (330, 270, 210, 150)]
        pickups += [late_service, fleet.pickup(regular, NOW - timedelta(days=20), mileage_km=9_000)]
        await publish(ns.settings, "upstream.dms", pickups)
        conn = await db(ns, "followup")
        try:
            for _ in range(150):
                if await conn.fetchval("SELECT count(*) FROM visits") == len(pickups):
                    break
                await asyncio.sleep(0.2)
            assert await conn.fetchval("SELECT count(*) FROM visits") == len(pickups)
        finally:
            await conn.close()
        clock.set(NOW + timedelta(minutes=FollowUpRules().late_timer_settle_minutes))
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: len(_lost_calls(rs)) >= 1, timeout=60, settle=1.0)
        [lost] = _lost_calls(topic.records)
        assert lost["customer_id"] == gone.customer.customer_id

        service = stack["followup"]
        async with api(service, "agent") as agent, api(service, "supervisor") as supervisor:
            # Customers at risk before the 12-month mark (the lost one is past it: it has its call).
            listed = (await supervisor.get("/v1/customers/at-risk")).json()
            signs = {c["customer_id"]: c["signs"] for c in listed["items"]}
            assert "falling_visit_frequency" in signs[drifting.customer.customer_id]
            assert "overdue_maintenance" in signs[overdue.customer.customer_id]
            assert regular.customer.customer_id not in signs and gone.customer.customer_id not in signs
            entry = next(c for c in listed["items"] if c["customer_id"] == drifting.customer.customer_id)
            assert entry["average_interval_days"] == 60.0 and entry["vehicles"] == [drifting.vin]
            assert datetime.fromisoformat(entry["lost_at"]) > NOW
            east_only = (await agent.get("/v1/customers/at-risk", params={"region": "nowhere"})).json()
            assert east_only["items"] == []
            # an agent of the whole group (not scoped to regions or dealers) names a region or dealer
            unfiltered = await agent.get("/v1/customers/at-risk")
            assert unfiltered.status_code == 422 and {e["field"] for e in unfiltered.json()["errors"]} == {
                "query.region", "query.dealer"}, unfiltered.text

            call = f"/v1/followups/{lost['followup_id']}/attempts"
            unknown = await agent.post(call, json={"outcome": "reached", "lost_reason": "aliens"})
            assert unknown.status_code == 422 and "switched_dealer" in unknown.text, unknown.text
            wordless = await agent.post(call, json={"outcome": "reached", "lost_reason": "other"})
            assert wordless.status_code == 422 and "lost_reason_note" in wordless.text
            detail = (await agent.get(f"/v1/followups/{lost['followup_id']}")).json()
            assert detail["status"] in ("scheduled", "due") and detail["attempts"] == [], "nothing stored"

            reached = await agent.post(call, json={"outcome": "reached", "lost_reason": "switched_dealer",
                                                   "lost_reason_note": "离家近的经销商保养更方便"})
            assert reached.status_code == 201, reached.text
            assert reached.json()["completed_as"] == "reached" and reached.json()["lost_reason"] == "switched_dealer"
            [attempt] = (await agent.get(f"/v1/followups/{lost['followup_id']}")).json()["attempts"]
            assert (attempt["lost_reason"], attempt["lost_reason_note"]) == ("switched_dealer", "离家近的经销商保养更方便")
        assert counted._value.get() == counted_before + 1, "counted in the metric"

        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpCompleted", 1), timeout=30, settle=0.5)
        completed = [r.data for r in topic.of_type("FollowUpCompleted") if r.data["kind"] == "lost_customer"]
        recorded = [r.data for r in topic.of_type("FollowUpAttemptRecorded") if r.data["kind"] == "lost_customer"]
        assert [c["lost_reason"] for c in completed] == ["switched_dealer"]
        assert [(a["lost_reason"], a["lost_reason_note"]) for a in recorded] == [
            ("switched_dealer", "离家近的经销商保养更方便")]

        clock.set(clock.now() + timedelta(minutes=1))  # the report covers the 30 days up to now (exclusive)
        async with api(service, "supervisor") as supervisor:
            report = (await supervisor.get("/v1/reports/lost-reasons")).json()
            assert report["reasons"] == {"switched_dealer": 1} and report["total"] == 1
            assert "moved_away" in report["known_reasons"]
            elsewhere = (await supervisor.get("/v1/reports/lost-reasons", params={"dealer": "NO-SUCH"})).json()
            assert elsewhere["reasons"] == {}
            backwards = await supervisor.get("/v1/reports/lost-reasons", params={
                "from": NOW.isoformat(), "to": (NOW - timedelta(days=1)).isoformat()})
            assert backwards.status_code == 422

        monday = next_weekday(0, 8, 0, after=clock.now())
        clock.set(monday)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpWeeklyReport", 1), timeout=30, settle=0.5)
        figures = topic.of_type("FollowUpWeeklyReport")[0].data["figures"]
        assert figures["lost_reasons"] == {"switched_dealer": 1}
    finally:
        await stack.stop()
