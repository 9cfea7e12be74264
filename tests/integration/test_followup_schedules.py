"""Every follow-up schedule kind and timer on the real broker and database, with the clock
moved by hand from the test moment; two replicas; a replay of the log."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from services import load
from services.followup.config import FollowUpRules
from services.followup.domain import Window, calling_window, campaign_window, confirmation_window, first_visit_window
from shared.clock import ManualClock
from shared.events import new_event
from shared.runtime import ServiceRuntime
from shared.workcal import WorkingCalendar
from tests.support import (
    TEST_NOW,
    Namespace,
    Read,
    Stack,
    TopicReader,
    api,
    count,
    db,
    iso_week,
    manual_clock,
    next_weekday,
    publish,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

NOW = TEST_NOW
RULES = FollowUpRules()


def on_calling_days(window: Window) -> Window:
    """A window as follow-up schedules it: on the calling days of the default region's working calendar."""
    return calling_window(window, "Asia/Shanghai", WorkingCalendar.load(None), RULES)


def _moments(records: list[Read], field: str) -> list[datetime]:
    return [datetime.fromisoformat(r.data[field]) for r in records]


def _of_kind(records: list[Read], kind: str, event_type: str = "FollowUpScheduled") -> list[dict[str, Any]]:
    return [r.data for r in records if r.event_type == event_type and r.data.get("kind") == kind]


def _complaint_event(event_type: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return new_event(topic="aftersales.complaints", event_type=event_type, data=data, source="complaints",
                     occurred_at=at).to_dict()


async def test_the_first_visit_becomes_due_overdue_escalated_then_expired(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=71)
        picked_up = NOW - timedelta(days=1)
        await publish(ns.settings, "upstream.dms", [fleet.pickup(fleet.vehicle(NOW - timedelta(days=90)), picked_up)])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 1), timeout=60, settle=0.5)
            assert topic.of_type("FollowUpDue") == [], "not due before pickup + 3 days"
            # due at the first calling moment from pickup + 3 days, overdue after pickup + 7 days (or
            # the next working day's calling hours if that is a day off), escalated 2 and expired 14 days later
            window = on_calling_days(first_visit_window(picked_up, RULES))
            scheduled_data = topic.of_type("FollowUpScheduled")[0].data
            assert (datetime.fromisoformat(scheduled_data["due_from"]),
                    datetime.fromisoformat(scheduled_data["due_by"])) == (window.due_from, window.due_by)
            assert window.due_from >= picked_up + timedelta(days=3) and window.due_by >= picked_up + timedelta(days=7)
            steps = [
                (window.due_from, "FollowUpDue"),
                (window.due_by, "FollowUpOverdue"),
                (window.due_by + timedelta(days=2), "FollowUpEscalated"),
                (window.due_by + timedelta(days=14), "FollowUpExpired"),
            ]
            for at, event_type in steps:
                clock.set(at - timedelta(minutes=1))
                await topic.wait_for(lambda rs: True, settle=0.5)
                assert topic.of_type(event_type) == [], f"{event_type} fired early"
                clock.set(at)
                await topic.wait_for(count(event_type, 1), timeout=20)
        scheduled = topic.of_type("FollowUpScheduled")[0]
        escalated = topic.of_type("FollowUpEscalated")[0]
        assert escalated.data["escalated_to"] == "supervisor"
        for event_type in ("FollowUpDue", "FollowUpOverdue", "FollowUpEscalated", "FollowUpExpired"):
            caused = topic.of_type(event_type)[0].envelope
            assert caused is not None and scheduled.envelope is not None
            assert caused.correlation_id == scheduled.envelope.correlation_id
        async with api(stack["followup"], "agent") as agent:
            assert (await agent.get("/v1/queue")).json()["items"] == [], "an expired follow-up leaves the queue"
    finally:
        await stack.stop()


async def test_a_pickup_from_long_ago_is_filed_as_history_without_a_call_but_a_late_one_is_called(
        ns: Namespace) -> None:
    """A DMS import of old repair orders must not fill the queue (and customers' phones) with
    calls about visits years ago; a pickup a DMS sends a few weeks late is still called."""
    stack = await Stack(ns, manual_clock(NOW), services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=72)
        old = fleet.pickup(fleet.vehicle(NOW - timedelta(days=900)), NOW - timedelta(days=400))
        late = fleet.pickup(fleet.vehicle(NOW - timedelta(days=300)), NOW - timedelta(days=30))
        await publish(ns.settings, "upstream.dms", [old, late])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 1), timeout=60, settle=1.0)
        assert [d["vin"] for d in _of_kind(topic.records, "first_visit")] == [late["data"]["vin"]]
        conn = await db(ns, "followup")
        try:
            filed = {r["vin"] for r in await conn.fetch("SELECT vin FROM visits")}
            assert filed == {old["data"]["vin"], late["data"]["vin"]}, "the old visit is still on file"
            kinds = {r["kind"] for r in await conn.fetch("SELECT kind FROM followups WHERE vin = $1", old["data"]["vin"])}
            assert "first_visit" not in kinds  # (no visit for 400 days: a lost-customer call is right, though)
        finally:
            await conn.close()
    finally:
        await stack.stop()


async def test_a_resolved_complaint_gets_a_confirmation_call_whose_answer_is_published(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("followup",)).start()
    try:
        base = {"complaint_id": "CASE-1", "complaint_ref": "CRM-1", "customer_id": "CUST-9", "actor": "handler-1"}
        await publish(ns.settings, "aftersales.complaints", [
            _complaint_event("ComplaintOpened", base | {
                "at": NOW - timedelta(days=2), "channel": "hotline", "category": "repair_quality", "severity": "medium",
                "department": "service", "description": "noise", "filed_at": NOW - timedelta(days=2),
                "ack_due_at": NOW, "resolve_due_at": NOW}, NOW - timedelta(days=2)),
            _complaint_event("ComplaintResolved", base | {"at": NOW - timedelta(hours=1), "resolution": "re-torqued",
                                                          "round": 0}, NOW - timedelta(hours=1)),
        ])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 1), timeout=60)
            # called from the first calling moment after the resolution (a working day's calling hours)
            due_from = datetime.fromisoformat(topic.of_type("FollowUpScheduled")[0].data["due_from"])
            assert due_from == on_calling_days(confirmation_window(NOW - timedelta(hours=1), RULES)).due_from
            clock.set(max(NOW, due_from))
            await topic.wait_for(count("FollowUpDue", 1), timeout=60)
        confirmation = _of_kind(topic.records, "complaint_confirmation")[0]
        assert confirmation["complaint_id"] == "CASE-1" and confirmation["priority"] == 90
        async with api(stack["followup"], "agent") as agent:
            response = await agent.post(f"/v1/followups/{confirmation['followup_id']}/attempts",
                                        json={"outcome": "reached", "satisfied": False, "notes": "still squeals"})
            assert response.status_code == 201, response.text
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpCompleted", 1), timeout=30)
        done = topic.of_type("FollowUpCompleted")[0].data
        assert done["kind"] == "complaint_confirmation" and done["complaint_id"] == "CASE-1"
        assert done["outcome"] == "reached" and done["satisfied"] is False
    finally:
        await stack.stop()


async def test_campaign_calls_go_to_the_targeted_customers_loyal_ones_first(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=72)
        loyal = fleet.vehicle(NOW - timedelta(days=700))
        loyal.customer.region, loyal.model = "east", "EV-100"
        casual = fleet.vehicle(NOW - timedelta(days=300))
        casual.customer.region, casual.model = "east", "Cargo-3T"
        elsewhere = fleet.vehicle(NOW - timedelta(days=300))
        elsewhere.customer.region, elsewhere.model = "south", "City-S"
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in (loyal, casual, elsewhere)])
        pickups = [fleet.pickup(loyal, NOW - timedelta(days=d)) for d in (600, 400, 200, 30)]
        pickups.append(fleet.pickup(casual, NOW - timedelta(days=100)))
        await publish(ns.settings, "upstream.dms", pickups)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:  # the recent one is called
            await topic.wait_for(lambda rs: len(_of_kind(rs, "first_visit")) == 1, timeout=60)
        conn = await db(ns, "followup")
        try:  # the older ones are history: filed, counted for loyalty, not called
            for _ in range(100):
                if await conn.fetchval("SELECT count(*) FROM visits") == 5:
                    break
                await asyncio.sleep(0.2)
            assert await conn.fetchval("SELECT count(*) FROM visits") == 5
        finally:
            await conn.close()
        starts = NOW + timedelta(days=30)
        everyone = fleet.campaign("free_inspection_week", "Free inspection week", starts, 7, ["east"], NOW)
        evs_only = fleet.campaign("tech_knowledge_party", "EV knowledge party", starts, 1, ["east", "south"], NOW,
                                  models=["EV-100"])
        await publish(ns.settings, "upstream.crm", [everyone, evs_only])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("CampaignCallScheduled", 3), timeout=60, settle=1.0)
        calls = _of_kind(topic.records, "campaign_call")
        first = {c["customer_id"]: c for c in calls if c["campaign_id"] == everyone["data"]["campaign_id"]}
        assert set(first) == {loyal.customer.customer_id, casual.customer.customer_id}, "east only"
        assert first[loyal.customer.customer_id]["loyalty_tier"] == "gold"
        assert first[loyal.customer.customer_id]["priority"] > first[casual.customer.customer_id]["priority"]
        two_weeks_ahead = campaign_window(starts, NOW, RULES)
        assert two_weeks_ahead is not None and two_weeks_ahead.due_from == starts - timedelta(days=14)
        assert datetime.fromisoformat(first[loyal.customer.customer_id]["due_from"]) == \
            on_calling_days(two_weeks_ahead).due_from, "14 days ahead, or the first working day after"
        second = [c for c in calls if c["campaign_id"] == evs_only["data"]["campaign_id"]]
        assert [c["customer_id"] for c in second] == [loyal.customer.customer_id], "only owners of the EV-100"
        loyal_flags = {r.data["customer_id"]: r.data["loyal"] for r in topic.of_type("CampaignCallScheduled")}
        assert loyal_flags[loyal.customer.customer_id] is True and loyal_flags[casual.customer.customer_id] is False
    finally:
        await stack.stop()


async def test_a_maintenance_reminder_comes_ten_days_before_the_service_is_due(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=73)
        vehicle = fleet.vehicle(NOW - timedelta(days=200))
        pickup = fleet.pickup(vehicle, NOW - timedelta(days=1), mileage_km=8_000)
        service_due = NOW + timedelta(days=40)
        pickup["data"]["next_service_due_at"] = service_due.isoformat()
        pickup["data"]["next_service_due_km"] = 30_000
        await publish(ns.settings, "upstream.dms", [pickup])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 1), timeout=60)
            clock.set(service_due - timedelta(days=10, minutes=1))
            await topic.wait_for(lambda rs: True, settle=0.5)
            assert topic.of_type("MaintenanceReminderDue") == []
            clock.set(service_due - timedelta(days=10))
            await topic.wait_for(count("MaintenanceReminderDue", 1), timeout=20, settle=0.5)
        reminder = topic.of_type("MaintenanceReminderDue")[0].data
        assert reminder["vin"] == vehicle.vin and reminder["basis"] == "date"
        assert datetime.fromisoformat(reminder["estimated_due_at"]) == service_due
        assert len(_of_kind(topic.records, "maintenance_reminder")) == 1
    finally:
        await stack.stop()


async def test_a_customer_without_a_visit_for_twelve_months_gets_a_lost_customer_call(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=74)
        gone = fleet.vehicle(NOW - timedelta(days=400))
        regular = fleet.vehicle(NOW - timedelta(days=400))
        await publish(ns.settings, "upstream.sales", [fleet.sale(gone), fleet.sale(regular)])
        await publish(ns.settings, "upstream.dms", [fleet.pickup(regular, NOW - timedelta(days=60))])
        conn = await db(ns, "followup")
        try:  # the regular's visit is filed
            for _ in range(150):
                if await conn.fetchval("SELECT count(*) FROM visits") == 1:
                    break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: True, settle=1.0)
            assert _of_kind(topic.records, "lost_customer") == [], "a moment already past waits for the facts to settle"
            clock.set(NOW + timedelta(minutes=10))
            await topic.wait_for(lambda rs: len(_of_kind(rs, "lost_customer")) >= 1, timeout=60, settle=1.0)
        lost = _of_kind(topic.records, "lost_customer")
        assert [x["customer_id"] for x in lost] == [gone.customer.customer_id]
    finally:
        await stack.stop()


async def test_an_import_of_old_visits_reminds_and_calls_once_about_the_latest_state(ns: Namespace) -> None:
    """A vehicle's visits of the last two years arrive in a burst (a DMS import): no reminder
    or lost-customer call for the earlier visits, whose moments are long past; the customer
    whose latest visit is 13 months old gets one lost-customer call once the import settled."""
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=76)
        vehicle = fleet.vehicle(NOW - timedelta(days=900))
        visits = [fleet.pickup(vehicle, NOW - timedelta(days=d), mileage_km=60_000 - d * 50)
                  for d in (760, 640, 520, 395)]
        await publish(ns.settings, "upstream.dms", visits)
        conn = await db(ns, "followup")
        try:
            for _ in range(150):
                if await conn.fetchval("SELECT count(*) FROM visits") == 4:
                    break
                await asyncio.sleep(0.2)
            assert await conn.fetchval("SELECT count(*) FROM visits") == 4
            clock.set(NOW + timedelta(minutes=10))
            async with TopicReader(ns.settings, "aftersales.followup") as topic:
                await topic.wait_for(lambda rs: len(_of_kind(rs, "lost_customer")) >= 1, timeout=60, settle=2.0)
            assert len(_of_kind(topic.records, "lost_customer")) == 1
            assert topic.of_type("MaintenanceReminderDue") == [], "the service fell due a year ago: history"
            assert _of_kind(topic.records, "first_visit") == []
            pending = await conn.fetchval("SELECT count(*) FROM vehicles WHERE remind_at IS NOT NULL")
            assert pending == 0, "no reminder left armed for a service that fell due a year ago"
        finally:
            await conn.close()
    finally:
        await stack.stop()


async def test_two_replicas_schedule_each_follow_up_once_and_fire_each_timer_once(ns: Namespace) -> None:
    clock = ManualClock(NOW)
    intake = await Stack(ns, clock, services=("intake",)).start()
    racing = ns.settings.model_copy(update={"timer_batch": 4})  # small claims: the replicas race for the timers
    replicas = [ServiceRuntime(load("followup"), racing, clock, replica=f"r{i}") for i in (1, 2)]
    for replica in replicas:
        await replica.start()
    try:
        fleet = Fleet(seed=75)
        pickups = [fleet.pickup(fleet.vehicle(NOW - timedelta(days=300)), NOW - timedelta(days=2, minutes=i))
                   for i in range(60)]
        await publish(ns.settings, "upstream.dms", pickups)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 60), timeout=90, settle=1.0)
            # all due by then (a window opening on a day off is due on the next working day)
            clock.set(max([NOW + timedelta(days=2), *_moments(topic.of_type("FollowUpScheduled"), "due_from")]))
            await topic.wait_for(count("FollowUpDue", 60), timeout=60, settle=2.0)
        assert len(topic.of_type("FollowUpScheduled")) == 60
        assert len({r.data["followup_id"] for r in topic.of_type("FollowUpDue")}) == 60
        assert len(topic.of_type("FollowUpDue")) == 60, "each timer fired once"
    finally:
        for replica in replicas:
            await replica.stop()
        await intake.stop()


async def test_replaying_the_pickups_schedules_nothing_new(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    fleet = Fleet(seed=76)
    pickups = [fleet.pickup(fleet.vehicle(NOW - timedelta(days=300)), NOW - timedelta(days=1, minutes=i))
               for i in range(20)]
    try:
        await publish(ns.settings, "upstream.dms", pickups)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 20), timeout=60)
        await stack.stop()
        followup_inputs = ["aftersales.intake", "aftersales.complaints"]
        await _rewind(ns, "followup", followup_inputs)
        await _rewind(ns, "intake", ["upstream.dms"])
        assert not await _caught_up(ns, "followup", followup_inputs), "the rewind put the group back"
        seen_again = _consumed("followup", "duplicate")
        stack = await Stack(ns, clock, services=("intake", "followup")).start()
        await publish(ns.settings, "upstream.dms", pickups)  # and the producer sends them all again
        # The replay is consumed: each rewound group has committed up to the end of its input
        # topics (intake's first: what it publishes is followup's input).
        await _until(lambda: _caught_up(ns, "intake", ["upstream.dms"]), "intake to read upstream.dms again")
        await _until(lambda: _caught_up(ns, "followup", followup_inputs), "followup to read its topics again")
        assert _consumed("followup", "duplicate") - seen_again >= 20, "the pickups were read again, as duplicates"
        conn = await db(ns, "followup")
        try:
            assert await conn.fetchval("SELECT count(*) FROM followups") == 20
        finally:
            await conn.close()
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: True, settle=2.0)
        assert len(topic.of_type("FollowUpScheduled")) == 20
    finally:
        await stack.stop()


def _consumed(service: str, outcome: str) -> float:
    """Records the service has read with this outcome, over all topics and types (this process)."""
    return sum(sample.value for metric in REGISTRY.collect() if metric.name == "aftersales_events_consumed"
               for sample in metric.samples if sample.name == "aftersales_events_consumed_total"
               and sample.labels["service"] == service and sample.labels["outcome"] == outcome)


async def _caught_up(ns: Namespace, service: str, topics: list[str]) -> bool:
    """The service's group has committed every partition of `topics` up to its end (now)."""
    admin = AIOKafkaAdminClient(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    consumer = AIOKafkaConsumer(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(ns.topic(t), p) for t in topics for p in range(ns.settings.topic_partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp: meta.offset for tp, meta in
                     (await admin.list_consumer_group_offsets(f"{ns.prefix}{service}")).items()}
        return sum(ends.values()) > 0 and all(committed.get(tp, 0) >= ends[tp] for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def _until(probe: Any, what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _rewind(ns: Namespace, service: str, topics: list[str]) -> None:
    """Set the stopped service's committed offsets back to the start of its topics."""
    consumer = AIOKafkaConsumer(**ns.settings.kafka_client_options(), group_id=f"{ns.prefix}{service}",  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(ns.topic(t), p) for t in topics for p in range(ns.settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


async def test_kpis_registers_and_the_weekly_report_come_from_the_calls(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=77)
        under = [fleet.vehicle(NOW - timedelta(days=200)) for _ in range(3)]
        expired_warranty = fleet.vehicle(NOW - timedelta(days=1500))
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in [*under, expired_warranty]])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehicleSold", 4), timeout=60)
        pickups = [fleet.pickup(v, NOW - timedelta(days=4, hours=i)) for i, v in enumerate([*under, expired_warranty])]
        await publish(ns.settings, "upstream.dms", pickups)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpScheduled", 4), timeout=60)
            # the calls whose first calling moment has come are due (on a day off they wait: still callable)
            due_now = sum(1 for at in _moments(topic.of_type("FollowUpScheduled"), "due_from") if at <= NOW)
            await topic.wait_for(count("FollowUpDue", due_now), timeout=60)
        service = stack["followup"]
        by_vin = {r.data["vin"]: r.data["followup_id"] for r in topic.of_type("FollowUpScheduled")}
        async with api(service, "agent") as agent, api(service, "agent2") as colleague, \
                api(service, "supervisor") as supervisor:
            assert (await agent.post(f"/v1/followups/{by_vin[under[0].vin]}/attempts",
                                     json={"outcome": "reached", "satisfaction": 5, "categories": ["praise"]})).status_code == 201
            assert (await colleague.post(f"/v1/followups/{by_vin[under[1].vin]}/attempts",
                                         json={"outcome": "reached", "satisfaction": 3,
                                               "categories": ["price"]})).status_code == 201
            assert (await agent.post(f"/v1/followups/{by_vin[under[2].vin]}/attempts",
                                     json={"outcome": "wrong_number"})).status_code == 201
            assert (await agent.post(f"/v1/followups/{by_vin[expired_warranty.vin]}/attempts",
                                     json={"outcome": "reached", "satisfaction": 4})).status_code == 201
            letters = (await supervisor.get("/v1/register/letters")).json()
            calls = (await agent.get("/v1/register/calls", params={"customer": under[1].customer.customer_id})).json()
        assert [letter["kind"] for letter in letters["items"]] == ["wrong_number_notice"]
        assert len(calls["items"]) == 1 and calls["items"][0]["agent_id"] == "agent-02"

        async with api(service, "supervisor") as supervisor:
            kpis = (await supervisor.get("/v1/kpis", params={"from": (NOW - timedelta(days=10)).isoformat(),
                                                              "to": (NOW + timedelta(days=1)).isoformat()})).json()
            assert (await supervisor.get("/v1/kpis", params={"from": NOW.isoformat(),
                                                              "to": NOW.isoformat()})).status_code == 422
        assert (kpis["warranty_pickups"], kpis["warranty_visited"]) == (3, 2), "the old car is out of warranty"
        assert kpis["warranty_return_visit_rate"] == pytest.approx(2 / 3)
        assert (kpis["scored_calls"], kpis["satisfied_calls"]) == (3, 2)
        assert kpis["satisfaction_rate"] == pytest.approx(2 / 3)
        assert kpis["calls_per_agent"] == {"agent-01": {"calls": 3, "reached": 2}, "agent-02": {"calls": 1, "reached": 1}}
        assert kpis["open"].get("second_visit") == 3

        monday = next_weekday(0, 8, 0, after=NOW)  # the report on the seven days before Monday 08:00
        week = iso_week(monday - timedelta(days=7))
        clock.set(monday)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpWeeklyReport", 1), timeout=30, settle=0.5)
        report = topic.of_type("FollowUpWeeklyReport")[0].data
        assert report["week"] == week and report["week_start"] == (monday - timedelta(days=7)).date().isoformat()
        figures = report["figures"]
        assert figures["by_agent"]["agent-01"]["calls"] == 3 and figures["feedback_categories"] == {"praise": 1, "price": 1}
        assert sum(x["done"] for x in figures["by_region"].values()) == 3
        in_week = sum(1 for p in pickups
                      if monday - timedelta(days=7) <= datetime.fromisoformat(p["data"]["picked_up_at"]) < monday)
        assert figures["first_calls_by_reason"] == ({"VehiclePickedUp": in_week} if in_week else {})
        assert figures["inbound_calls"] == {}
        concerns = figures["feedback_items"]  # the call scored 3 opened one, owned by agent-02
        assert (concerns["opened"], concerns["low_score"], concerns["departments_notified"]) == (1, 1, 1)
        async with api(service, "ops") as ops:
            stored = await ops.get("/v1/reports/weekly", params={"week": week})
            missing = await ops.get("/v1/reports/weekly", params={"week": "2020-W01"})
        assert stored.status_code == 200 and stored.json()["figures"]["by_agent"]["agent-02"]["calls"] == 1
        assert missing.status_code == 404 and "2026-W48" in missing.json()["detail"]  # the format's example
    finally:
        await stack.stop()


async def test_a_weekly_report_made_before_eight_in_shanghai_is_labelled_with_the_shanghai_week(
        ns: Namespace) -> None:
    """At 07:00 on Monday in Shanghai it is still Sunday in UTC: the report covers the Shanghai
    week that just ended, and says so."""
    rules = FollowUpRules(weekly_report_time=time(7, 0))
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("followup",), state={"followup": {"rules": rules}}).start()
    try:
        monday = next_weekday(0, 7, 0, after=NOW)
        clock.set(monday)
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FollowUpWeeklyReport", 1), timeout=30, settle=0.5)
        report = topic.of_type("FollowUpWeeklyReport")[0].data
        last_week = monday - timedelta(days=7)
        assert (report["week"], report["week_start"]) == (iso_week(last_week), last_week.date().isoformat())
        conn = await db(ns, "followup")
        try:
            armed = await conn.fetch("SELECT ref, due_at FROM timers WHERE kind = 'report.weekly' AND fired_at IS NULL")
        finally:
            await conn.close()
        assert [(r["ref"], r["due_at"]) for r in armed] == [(iso_week(monday), monday + timedelta(days=7))]
    finally:
        await stack.stop()
