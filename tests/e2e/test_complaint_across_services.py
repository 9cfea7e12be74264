"""A complaint across the real services, with the clock moved by hand: an agent's return-visit
call finds the customer dissatisfied → ComplaintFiled → complaints opens a case → not
acknowledged in 4 h → supervisor → not resolved in 2 days → department head → resolved →
follow-up calls the customer back to confirm → closed; or, still unhappy, reopened."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.complaints.config import ComplaintRules
from services.followup.config import FollowUpRules
from services.followup.domain import next_callable
from shared.workcal import WorkingCalendar
from tests.complaints_fixtures import AROUND_THE_CLOCK
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    manual_clock,
    publish,
    queue_item,
    working_day,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

# 10:00 on the first working day from the test day: the return-visit call is inside the calling
# hours of a calling day; the confirmation is called from the first calling moment after the resolution.
D = working_day()
T0 = day_at(10, days=D)


@pytest.mark.parametrize("satisfied", [True, False], ids=["satisfied-closed", "unhappy-reopened"])
async def test_a_complaint_raised_on_a_call_is_escalated_resolved_and_confirmed(ns: Namespace, satisfied: bool) -> None:
    clock = manual_clock(T0)
    # The ladder as offsets from the test moment: the work plan's numbers around the clock.
    rules = ComplaintRules(sla=AROUND_THE_CLOCK)
    stack = await Stack(ns, clock, services=("intake", "followup", "complaints"),
                        state={"complaints": {"rules": rules}}).start()
    try:
        fleet = Fleet(seed=81)
        vehicle = fleet.vehicle(day_at(0, days=-415))
        pickup = fleet.pickup(vehicle, day_at(9, days=D - 4), service_type="repair")  # the first call is due
        await publish(ns.settings, "upstream.dms", [pickup])
        followup, complaints = stack["followup"], stack["complaints"]

        async with api(followup, "agent") as agent:
            visit = await queue_item(agent, "first_visit")
            call = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 2, "talking_points": "brakes squeal after the repair",
                "complaint": {"category": "repair_quality", "description": "刹车异响，维修后仍未解决"},
            })
            assert call.status_code == 201, call.text

        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintOpened", 1), timeout=60)
        opened = topic.of_type("ComplaintOpened")[0]
        case = opened.data["complaint_id"]
        assert opened.data["followup_id"] == visit["followup_id"] and opened.data["channel"] == "return_visit"
        assert str(opened.envelope.correlation_id) == pickup["correlation_id"]  # type: ignore[union-attr]
        assert datetime.fromisoformat(opened.data["ack_due_at"]) == T0 + timedelta(hours=4)

        clock.set(T0 + timedelta(hours=4, minutes=1))
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintEscalated", 1), timeout=30, settle=0.5)
        assert topic.of_type("ComplaintEscalated")[0].data["role"] == "supervisor"

        async with api(complaints, "agent") as handler, api(complaints, "supervisor") as supervisor:
            assert (await handler.post(f"/v1/complaints/{case}/acknowledge")).status_code == 200
            assert (await supervisor.post(f"/v1/complaints/{case}/assign", json={"assignee": "agent-01"})).status_code == 200
            clock.set(T0 + timedelta(days=2, minutes=1))
            async with TopicReader(ns.settings, "aftersales.complaints") as topic:
                await topic.wait_for(count("ComplaintEscalated", 2), timeout=30, settle=0.5)
            assert [e.data["role"] for e in topic.of_type("ComplaintEscalated")] == ["supervisor", "department_head"]
            clock.set(T0 + timedelta(days=2, hours=2))
            resolved = await handler.post(f"/v1/complaints/{case}/resolve",
                                          json={"resolution": "brake pads replaced free of charge"})
            assert resolved.status_code == 200, resolved.text

        # calls are placed in calling hours of working days: T0 + 2 days may be a weekend or a holiday
        clock.set(next_callable(T0 + timedelta(days=2, hours=2), "Asia/Shanghai", FollowUpRules(),
                                WorkingCalendar.load(None)))
        async with api(followup, "agent") as agent:
            confirmation = await queue_item(agent, "complaint_confirmation")
            assert confirmation["complaint_id"] == case
            answered = await agent.post(f"/v1/followups/{confirmation['followup_id']}/attempts", json={
                "outcome": "reached", "satisfied": satisfied, "satisfaction": 5 if satisfied else 2,
                "notes": "quiet now" if satisfied else "still squeals"})
            assert answered.status_code == 201, answered.text

        ending = "ComplaintClosed" if satisfied else "ComplaintReopened"
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count(ending, 1), timeout=60, settle=1.0)
        assert len(topic.of_type("ComplaintEscalated")) == 2, "resolution cancelled the remaining escalations"
        final = topic.of_type(ending)[0]
        assert final.data["complaint_id"] == case
        assert final.envelope is not None and str(final.envelope.correlation_id) == pickup["correlation_id"]
        if satisfied:
            assert final.data["satisfied"] is True
        else:
            assert datetime.fromisoformat(final.data["ack_due_at"]) > T0 + timedelta(days=2), "the clock restarted"
    finally:
        await stack.stop()
