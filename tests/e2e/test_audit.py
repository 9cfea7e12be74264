"""The audit trail of one vehicle, from its sale to a closed complaint, across every topic, in
order and with causation links, reading only the partitions its keys map to."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timedelta

import orjson
import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.audit import trail
from aftersales.progress import columns
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
from tools.sandbox import ROOT
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

# 10:00 on the first working day from the test day: the agent's calls (the return visit, the
# confirmation) are inside the calling hours of a calling day, and the customer's SMS outside the quiet hours.
D = working_day()
T0 = day_at(10, days=D)


async def test_the_trail_of_a_vehicle_runs_from_its_sale_to_its_closed_complaint(ns: Namespace) -> None:
    clock = manual_clock(T0)
    stack = await Stack(ns, clock, services=("intake", "followup", "complaints", "notifier")).start()
    try:
        fleet = Fleet(seed=91)
        vehicle = fleet.vehicle(day_at(0, days=-172))
        other = fleet.vehicle(day_at(0, days=-172))  # another car: must not appear
        sale = fleet.sale(vehicle)
        await publish(ns.settings, "upstream.sales", [sale, fleet.sale(other)])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehicleSold", 2), timeout=60)
        pickup = fleet.pickup(vehicle, day_at(9, days=D - 4), service_type="repair")  # the first call is due
        await publish(ns.settings, "upstream.dms", [pickup, fleet.pickup(other, day_at(9, 5, days=D - 4))])

        async with api(stack["followup"], "agent") as agent:
            visit = await queue_item(agent, "first_visit", vin=vehicle.vin)
            called = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 2,
                "complaint": {"category": "repair_quality", "description": "noise after the repair"}})
            assert called.status_code == 201, called.text
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintOpened", 1), timeout=60)
        case = topic.of_type("ComplaintOpened")[0].data["complaint_id"]
        clock.set(T0 + timedelta(hours=2))
        async with api(stack["complaints"], "agent") as handler, api(stack["complaints"], "supervisor") as boss:
            assert (await handler.post(f"/v1/complaints/{case}/acknowledge")).status_code == 200
            assert (await boss.post(f"/v1/complaints/{case}/assign", json={"assignee": "agent-01"})).status_code == 200
            resolved = await handler.post(f"/v1/complaints/{case}/resolve", json={"resolution": "fixed the heat shield"})
            assert resolved.status_code == 200, resolved.text
        async with api(stack["followup"], "agent") as agent:
            confirmation = await queue_item(agent, "complaint_confirmation")
            confirmed = await agent.post(f"/v1/followups/{confirmation['followup_id']}/attempts",
                                         json={"outcome": "reached", "satisfied": True, "satisfaction": 5})
            assert confirmed.status_code == 201, confirmed.text
        async with TopicReader(ns.settings, "aftersales.complaints") as topic:
            await topic.wait_for(count("ComplaintClosed", 1), timeout=60, settle=1.0)
    finally:
        await stack.stop()

    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        entries, stats = await trail(ns.settings, vin=vehicle.vin, progress=progress)
    [reading] = progress.tasks
    assert reading.total == reading.completed == stats["records_read"] > 0, "the bar counts every record read"
    types = [e.event_type for e in entries]
    assert types[0] == "VehicleSold" and "CustomerRegistered" in types[:3], types
    for expected in ("VehicleSold", "VehiclePickedUp", "CustomerRegistered", "FollowUpScheduled", "FollowUpDue",
                     "FollowUpAttemptRecorded", "FollowUpCompleted", "ComplaintFiled", "ComplaintOpened",
                     "ComplaintAcknowledged", "ComplaintResolved", "NotificationSent", "ComplaintClosed"):
        assert expected in types, f"{expected} missing from the trail: {types}"
    assert types[-1] == "ComplaintClosed" or "ComplaintClosed" in types[-4:]
    assert all(other.vin not in (e.key, e.summary) for e in entries), "another vehicle's events are not in the trail"
    moments = [datetime.fromisoformat(e.occurred_at) for e in entries]
    assert moments == sorted(moments), "in the order things happened"
    by_id = {e.event_id: e for e in entries}
    closed = next(e for e in entries if e.event_type == "ComplaintClosed")
    chain = []
    link = closed
    while link is not None:  # follow causation back from the closure
        chain.append(link.event_type)
        link = by_id.get(link.causation_id or "")
    assert chain[-1] == "VehiclePickedUp" and "ComplaintOpened" in chain and "FollowUpCompleted" in chain, chain
    assert stats["partitions_read"] <= 14, "only the partitions the keys map to"
    # an audit follows ids: the personal values on the topics stay sealed in its summaries
    resolved_entry = next(e for e in entries if e.event_type == "ComplaintResolved")
    assert "resolution=(sealed)" in resolved_entry.summary, resolved_entry.summary
    assert not any("fixed the heat shield" in e.summary or "sealed:v1:" in e.summary for e in entries)

    # The same trail from the command line, as JSON.
    env = {**__import__("os").environ, **ns.env(), "COLUMNS": "220"}
    done = subprocess.run([sys.executable, "-m", "aftersales", "audit", "--vin", vehicle.vin, "--json"],
                          capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    printed = orjson.loads(done.stdout)
    assert [e["event_id"] for e in printed["trail"]] == [e.event_id for e in entries]
    table = subprocess.run([sys.executable, "-m", "aftersales", "audit", "--vin", vehicle.vin],
                           capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert table.returncode == 0 and b"ComplaintClosed" in table.stdout
