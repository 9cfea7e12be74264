"""The first flow, end to end on the real broker and database:
VehiclePickedUp on upstream.dms → intake → followup → notifier → SMS at the gateway."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import orjson
import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import calling_window, first_visit_window
from services.notifier.config import NotifierSettings
from shared.workcal import WorkingCalendar
from tests.support import Namespace, Stack, TopicReader, count, day_at, manual_clock, publish, zh_date
from tools.peers import PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def _stack(ns: Namespace, gateway: SmsGatewaySink) -> Stack:
    # 10:00 on the test day: the customer's SMS goes out at once, outside the quiet hours
    notifier = NotifierSettings(sms_gateway_url=gateway.url, dispatch_tick_seconds=0.05)
    return await Stack(ns, manual_clock(day_at(10)), state={"notifier": {"settings": notifier}}).start()


async def test_one_pickup_gives_one_canonical_event_one_schedule_and_one_sms(ns: Namespace) -> None:
    gateway = await SmsGatewaySink(PeerStore()).start()
    stack = await _stack(ns, gateway)
    try:
        fleet = Fleet(seed=11)
        vehicle = fleet.vehicle(day_at(0, days=-537))
        picked_up_at = day_at(9, 30)
        pickup = fleet.pickup(vehicle, picked_up_at)
        await publish(ns.settings, "upstream.dms", [pickup])

        async with TopicReader(ns.settings, "aftersales.notifier") as notified:
            await notified.wait_for(count("NotificationSent", 1), timeout=60, settle=1.0)
        async with TopicReader(ns.settings, "aftersales.intake") as intake, \
                TopicReader(ns.settings, "aftersales.followup") as followup:
            await intake.wait_for(count("VehiclePickedUp", 1), settle=0.5)
            await followup.wait_for(count("FollowUpScheduled", 1), settle=0.5)

        canonical = intake.of_type("VehiclePickedUp")
        registered = intake.of_type("CustomerRegistered")
        scheduled = followup.of_type("FollowUpScheduled")
        sent = notified.of_type("NotificationSent")
        assert len(canonical) == 1 and len(registered) == 1 and len(scheduled) == 1 and len(sent) == 1
        assert len(gateway.store.sms) == 1

        # Keys as the catalog says.
        assert canonical[0].record.key.decode() == vehicle.vin
        assert scheduled[0].record.key.decode() == vehicle.customer.customer_id

        # The window: picked_up_at + 3 days .. + 7 days, placed on the calling days of the working
        # calendar (from the first calling moment; an end on a day off runs to the next working day).
        data = scheduled[0].data
        assert data["kind"] == "first_visit"
        plan = first_visit_window(picked_up_at, FollowUpRules())
        assert (plan.due_from, plan.due_by) == (picked_up_at + timedelta(days=3), picked_up_at + timedelta(days=7))
        window = calling_window(plan, "Asia/Shanghai", WorkingCalendar.load(None), FollowUpRules())
        assert datetime.fromisoformat(data["due_from"]) == window.due_from
        assert datetime.fromisoformat(data["due_by"]) == window.due_by

        # Causation: each step names the event that caused it; correlation is carried unchanged.
        upstream_id = pickup["event_id"]
        c, s, n = canonical[0].envelope, scheduled[0].envelope, sent[0].envelope
        assert c is not None and s is not None and n is not None
        assert str(c.causation_id) == upstream_id
        assert s.causation_id == c.event_id
        assert n.causation_id == s.event_id
        assert {str(c.correlation_id), str(s.correlation_id), str(n.correlation_id)} == {pickup["correlation_id"]}

        # Headers repeat the envelope's type and id.
        headers = dict(scheduled[0].record.headers)
        assert headers["event_type"] == b"FollowUpScheduled" and headers["event_id"] == str(s.event_id).encode()

        sms = gateway.store.sms[0]
        assert sms.to == vehicle.customer.phone
        assert vehicle.vin[-6:] in sms.text
        assert zh_date(window.due_from) in sms.text and zh_date(window.due_by) in sms.text
        assert sms.idempotency_key == n.data["notification_id"]
    finally:
        await stack.stop()
        await gateway.stop()


async def test_the_same_upstream_record_twice_is_handled_once(ns: Namespace) -> None:
    gateway = await SmsGatewaySink(PeerStore()).start()
    stack = await _stack(ns, gateway)
    try:
        fleet = Fleet(seed=12)
        pickup = fleet.pickup(fleet.vehicle(day_at(0, days=-684)), day_at(15, days=-1))
        await publish(ns.settings, "upstream.dms", [pickup, pickup])
        async with TopicReader(ns.settings, "aftersales.notifier") as notified:
            await notified.wait_for(count("NotificationSent", 1), timeout=60, settle=3.0)
        async with TopicReader(ns.settings, "aftersales.intake") as intake, \
                TopicReader(ns.settings, "aftersales.followup") as followup:
            await intake.wait_for(count("VehiclePickedUp", 1), settle=1.0)
            await followup.wait_for(count("FollowUpScheduled", 1), settle=1.0)
        assert len(intake.of_type("VehiclePickedUp")) == 1
        assert len(intake.of_type("CustomerRegistered")) == 1
        assert len(followup.of_type("FollowUpScheduled")) == 1
        assert len(notified.of_type("NotificationSent")) == 1
        assert len(gateway.store.sms) == 1
    finally:
        await stack.stop()
        await gateway.stop()


async def test_bad_records_are_dead_lettered_with_reasons_and_the_partition_keeps_flowing(ns: Namespace) -> None:
    stack = await Stack(ns, manual_clock(), services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=13)
        vehicle = fleet.vehicle(day_at(0, days=-629))
        picked_up_at = day_at(10, days=-2)
        good = fleet.pickup(vehicle, picked_up_at)
        no_vin = fleet.pickup(vehicle, picked_up_at)
        del no_vin["data"]["vin"]
        short_vin = fleet.pickup(vehicle, picked_up_at)
        short_vin["data"]["vin"] = vehicle.vin[:16]
        unknown_type = {**fleet.pickup(vehicle, picked_up_at), "event_type": "VehicleTeleported"}
        future_version = {**fleet.pickup(vehicle, picked_up_at), "schema_version": 99}
        key = vehicle.vin.encode()
        # All on the VIN's partition, the bad ones first: the good one behind them must still pass.
        await publish(ns.settings, "upstream.dms", [
            (key, b"{this is not json"),
            (key, orjson.dumps(no_vin)),
            (key, orjson.dumps(short_vin)),
            (key, orjson.dumps(unknown_type)),
            (key, orjson.dumps(future_version)),
            (key, orjson.dumps(good)),
        ])
        async with TopicReader(ns.settings, "aftersales.followup") as followup:
            await followup.wait_for(count("FollowUpScheduled", 1), timeout=60)
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 5), timeout=30, settle=1.0)
        letters = sorted((r.data for r in dead.of_type("DeadLettered")), key=lambda d: d["offset"])
        assert len(letters) == 5
        reasons = [d["reason"] for d in letters]
        assert [d["error"] for d in letters] == [
            "MalformedJSON", "ValidationFailed", "ValidationFailed", "UnknownEventType", "UnsupportedSchemaVersion",
        ]
        assert "not JSON" in reasons[0]
        assert "data.vin is missing" in reasons[1]
        assert "data.vin" in reasons[2] and "16 characters" in reasons[2] and "17" in reasons[2]
        assert "VehicleTeleported" in reasons[3] and "VehiclePickedUp" in reasons[3]
        assert "schema_version 99" in reasons[4]
        for letter in letters:
            assert letter["service"] == "intake" and letter["topic"] == "upstream.dms"
            assert letter["record"]["key"] == vehicle.vin
        assert base64.b64decode(letters[0]["record"]["value_b64"]) == b"{this is not json"
        assert orjson.loads(base64.b64decode(letters[2]["record"]["value_b64"]))["data"]["vin"] == vehicle.vin[:16]
        # The dead letter is keyed topic:partition:offset.
        first = dead.of_type("DeadLettered")[0]
        assert first.record.key.decode() == f"upstream.dms:{first.data['partition']}:{first.data['offset']}"
    finally:
        await stack.stop()
