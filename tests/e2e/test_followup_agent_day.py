"""A customer-service agent's day (the first working day from the test day, from 10:00: calls
are placed on working days only) through the follow-up API, on the real broker and database,
with the clock moved by hand: the queue, a claim another agent
holds, two unreachable attempts, then the customer reached, dissatisfied, with a complaint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import calling_window, second_visit_window
from shared.workcal import WorkingCalendar
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, manual_clock, publish, working_day
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


def utc(moment: datetime) -> str:
    """How the API writes a moment: UTC with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_an_agents_day_ends_in_a_complaint_filed_from_the_call(ns: Namespace) -> None:
    d = working_day()
    clock = manual_clock(day_at(10, days=d))  # the morning in Shanghai
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=61)
        vehicle = fleet.vehicle(day_at(0, days=-476))
        pickup = fleet.pickup(vehicle, day_at(9, days=d - 4))  # first call due from 3 days later
        await publish(ns.settings, "upstream.dms", [pickup])
        async with TopicReader(ns.settings, "aftersales.followup") as followup_topic:
            await followup_topic.wait_for(count("FollowUpDue", 1), timeout=60)
        followup_id = followup_topic.of_type("FollowUpScheduled")[0].data["followup_id"]
        service = stack["followup"]

        async with api(service, "agent") as me, api(service, "agent2") as colleague:
            queue = (await me.get("/v1/queue")).json()["items"]
            assert [i["followup_id"] for i in queue] == [followup_id]
            assert queue[0]["kind"] == "first_visit" and queue[0]["overdue"] is False

            # Two agents never call the same customer at once.
            assert (await colleague.post(f"/v1/followups/{followup_id}/claim")).status_code == 200
            refused = await me.post(f"/v1/followups/{followup_id}/claim")
            assert refused.status_code == 409
            assert "is being called by agent-02" in refused.json()["detail"]
            assert (await me.get("/v1/queue")).json()["items"] == [], "held by a colleague: not in my queue"
            assert (await colleague.post(f"/v1/followups/{followup_id}/release")).status_code == 200
            assert (await me.post(f"/v1/followups/{followup_id}/claim")).status_code == 200

            first = await me.post(f"/v1/followups/{followup_id}/attempts",
                                  json={"outcome": "unreachable", "notes": "no answer"})
            assert first.status_code == 201, first.text
            assert first.json()["next_attempt_at"] == utc(day_at(14, days=d)), "four hours later"
            assert (await me.get("/v1/queue")).json()["items"] == [], "waiting for the retry"

            clock.set(day_at(14, 5, days=d))
            assert [i["followup_id"] for i in (await me.get("/v1/queue")).json()["items"]] == [followup_id]
            second = await me.post(f"/v1/followups/{followup_id}/attempts",
                                   json={"outcome": "unreachable", "notes": "line busy"})
            assert second.json()["next_attempt_at"] == utc(day_at(18, 5, days=d))

            clock.set(day_at(18, 10, days=d))
            reached = await me.post(f"/v1/followups/{followup_id}/attempts", json={
                "outcome": "reached", "satisfaction": 2, "talking_points": "brakes squeal since the service",
                "requests": "wants a free re-check", "categories": ["repair_quality"],
                "complaint": {"category": "repair_quality", "description": "刹车异响，保养后出现"},
            })
            assert reached.status_code == 201, reached.text
            body = reached.json()
            assert body["completed_as"] == "reached" and len(body["complaints_filed"]) == 1
            assert {"FollowUpAttemptRecorded", "FollowUpCompleted", "FeedbackRecorded", "ComplaintFiled",
                    "FollowUpScheduled"} <= set(body["events"])
            again = await me.post(f"/v1/followups/{followup_id}/attempts", json={"outcome": "reached"})
            assert again.status_code == 409 and "already completed" in again.json()["detail"]

            register = (await me.get("/v1/register/calls", params={"agent": "agent-01"})).json()
            assert len(register["items"]) == 3 and register["next_cursor"] is None
            assert [c["outcome"] for c in register["items"]] == ["reached", "unreachable", "unreachable"]
            detail = (await me.get(f"/v1/followups/{followup_id}")).json()
            assert detail["status"] == "completed" and detail["satisfaction"] == 2 and len(detail["attempts"]) == 3

        async with TopicReader(ns.settings, "aftersales.followup") as followup_topic:
            await followup_topic.wait_for(count("ComplaintFiled", 1), timeout=30, settle=1.0)
        complaint = followup_topic.of_type("ComplaintFiled")[0]
        assert complaint.record.key.decode() == vehicle.customer.customer_id
        assert complaint.data["channel"] == "return_visit" and complaint.data["category"] == "repair_quality"
        assert complaint.data["followup_id"] == followup_id and complaint.data["vin"] == vehicle.vin
        assert str(complaint.envelope.correlation_id) == pickup["correlation_id"]  # type: ignore[union-attr]
        completed = followup_topic.of_type("FollowUpCompleted")[0].data
        assert completed["outcome"] == "reached" and completed["satisfaction"] == 2 and completed["attempts"] == 3
        assert completed["satisfied"] is False
        attempts = followup_topic.of_type("FollowUpAttemptRecorded")
        assert [a.data["outcome"] for a in attempts] == ["unreachable", "unreachable", "reached"]
        second_visit = [r.data for r in followup_topic.of_type("FollowUpScheduled") if r.data["kind"] == "second_visit"]
        assert len(second_visit) == 1
        # within 7 days of the first call, on calling days (a 7th day off runs to the next working day)
        expected = calling_window(second_visit_window(day_at(18, 10, days=d), FollowUpRules()), "Asia/Shanghai",
                                  WorkingCalendar.load(None), FollowUpRules())
        assert datetime.fromisoformat(second_visit[0]["due_by"]) == expected.due_by
    finally:
        await stack.stop()


async def test_the_follow_up_api_admits_agents_and_supervisors_only(ns: Namespace) -> None:
    stack = await Stack(ns, manual_clock(), services=("followup",)).start()
    try:
        service = stack["followup"]
        async with api(service) as anonymous, api(service, "quality") as quality, api(service, "agent") as agent:
            assert (await anonymous.get("/v1/queue")).status_code == 401
            assert (await quality.get("/v1/queue")).status_code == 403
            assert (await quality.post("/v1/followups/x/attempts", json={"outcome": "reached"})).status_code == 403
            assert (await agent.get("/v1/kpis")).status_code == 403, "KPIs are for supervisors and operations"
            missing = await agent.post("/v1/followups/nope/claim")
            assert missing.status_code == 404
            bad = await agent.post("/v1/followups/nope/attempts", json={"outcome": "call_back_later"})
            assert bad.status_code == 422 and "call_back_at is required" in bad.text
            mixed = await agent.post("/v1/followups/nope/attempts", json={"outcome": "unreachable", "satisfaction": 5})
            assert mixed.status_code == 422 and "only be recorded when the customer was reached" in mixed.text
    finally:
        await stack.stop()
