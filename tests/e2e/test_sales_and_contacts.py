"""Every sale and consultation called, and a bad phone number no longer drops a pickup: on the
real broker and database, through the upstream topics and the services' APIs, with the clock
moved by hand.

- A delivery (VehicleSold) → the first tracking call 3-7 days later → reached → the second
  within 7 days → reached; both in the phone register and in the warranty return-visit rate. A
  CRM consultation and an agent's inbound consultation call each schedule a first call.
- A pickup whose phone libphonenumber rejects (+86 144…) → filed (not dead-lettered), the bad
  value flagged on the file with the reason, the first-visit notice goes by letter, an agent
  corrects the number on the phone (CustomerContactCorrected) → intake, follow-up and the
  notifier apply it → the customer is called."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import Window, calling_window, consultation_window, delivery_window
from services.intake.domain import derived_customer_id
from services.notifier.config import NotifierSettings
from shared import metrics
from shared.events import new_event
from shared.workcal import WorkingCalendar
from tests.console_support import eventually
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    db,
    manual_clock,
    publish,
    queue_item,
    working_day,
)
from tools.peers import PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

BAD_PHONE = "+86 14412345678"
RULES = FollowUpRules()


def on_calling_days(window: Window) -> Window:
    """A window placed on the calling days of the default region's working calendar."""
    return calling_window(window, "Asia/Shanghai", WorkingCalendar.load(None), RULES)


async def test_a_delivery_is_called_twice_and_consultations_are_called(ns: Namespace) -> None:
    d = working_day()  # calls are placed on working days: the scenario runs on the first one from the test day
    clock = manual_clock(day_at(10, days=d))
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=151)
        delivered_at = day_at(15, days=d - 4)
        vehicle = fleet.vehicle(delivered_at)
        await publish(ns.settings, "upstream.sales", [fleet.sale(vehicle)])
        await publish(ns.settings, "upstream.crm", [new_event(
            topic="upstream.crm", event_type="ConsultationRecorded", source="crm", occurred_at=day_at(11, days=d - 1),
            data={"consultation_id": "CONS-151", "phone": "13700001511", "name": "李娜", "region": "north",
                  "topic": "EV-100 试驾", "consulted_at": day_at(11, days=d - 1), "dealer_id": "D002"}).to_dict()])
        async with TopicReader(ns.settings, "aftersales.followup") as followup_topic:
            await followup_topic.wait_for(count("FollowUpScheduled", 2), timeout=60, settle=0.5)
        scheduled = {r.data["reason_type"]: r.data for r in followup_topic.of_type("FollowUpScheduled")}
        sale = scheduled["VehicleSold"]
        assert sale["kind"] == "first_visit" and sale["vin"] == vehicle.vin
        window = on_calling_days(delivery_window(delivered_at, RULES))  # 3-7 days later, on calling days
        assert (datetime.fromisoformat(sale["due_from"]), datetime.fromisoformat(sale["due_by"])) == (
            window.due_from, window.due_by)
        consultation = scheduled["ConsultationRecorded"]
        assert consultation["kind"] == "first_visit" and consultation["region"] == "north"
        assert datetime.fromisoformat(consultation["due_from"]) == \
            on_calling_days(consultation_window(day_at(11, days=d - 1), RULES)).due_from

        service = stack["followup"]
        async with api(service, "agent") as me:
            first = await queue_item(me, "first_visit", vehicle.vin)
            assert first["reason_type"] == "VehicleSold" and first["contact_flags"] == {}
            reached = await me.post(f"/v1/followups/{first['followup_id']}/attempts",
                                    json={"outcome": "reached", "satisfaction": 5})
            assert reached.status_code == 201, reached.text
            assert reached.json()["completed_as"] == "reached" and "FollowUpScheduled" in reached.json()["events"]

            # An agent takes a customer's consultation call: on the register, and a first call follows.
            taken = await me.post("/v1/inbound-calls", headers={"Idempotency-Key": "call-151"}, json={
                "customer_id": vehicle.customer.customer_id, "kind": "consultation",
                "summary": "问第二辆车的价格和试驾", "received_at": day_at(9, 30, days=d).isoformat()})
            assert taken.status_code == 201, taken.text
            again = await me.post("/v1/inbound-calls", headers={"Idempotency-Key": "call-151"}, json={
                "customer_id": vehicle.customer.customer_id, "kind": "consultation",
                "summary": "问第二辆车的价格和试驾", "received_at": day_at(9, 30, days=d).isoformat()})
            assert again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
            assert again.json() == taken.json(), "the retry is answered the first response: one call recorded"
            other = await me.post("/v1/inbound-calls", headers={"Idempotency-Key": "call-151"}, json={
                "customer_id": vehicle.customer.customer_id, "kind": "consultation", "summary": "另一个问题"})
            assert other.status_code == 422 and other.headers["content-type"].startswith("application/problem+json")
            inbound_followup = (await me.get(f"/v1/followups/{taken.json()['followup_id']}")).json()
            assert inbound_followup["kind"] == "first_visit" and inbound_followup["reason_type"] == "InboundCallRecorded"
            inbound_window = on_calling_days(consultation_window(day_at(9, 30, days=d), RULES))
            assert inbound_followup["due_from"].startswith(inbound_window.due_from.date().isoformat())
            future = await me.post("/v1/inbound-calls", json={
                "customer_id": vehicle.customer.customer_id, "kind": "request", "summary": "x",
                "received_at": day_at(12, days=d).isoformat()})
            assert future.status_code == 422 and "in the future" in future.json()["detail"]

            d1 = working_day(d + 1)
            clock.set(day_at(11, days=d1))  # the second call is due from a day after the first (a working day)
            second = await queue_item(me, "second_visit", vehicle.vin)
            done = await me.post(f"/v1/followups/{second['followup_id']}/attempts",
                                 json={"outcome": "reached", "satisfaction": 4})
            assert done.status_code == 201 and done.json()["completed_as"] == "reached", done.text

            register = (await me.get("/v1/register/calls",
                                     params={"customer": vehicle.customer.customer_id})).json()
            assert len(register["items"]) == 3
            assert [(c["direction"], c["kind"]) for c in register["items"]] == [
                ("outbound", "second_visit"), ("outbound", "first_visit"), ("inbound", "consultation")]
            assert register["items"][2]["agent_id"] == "agent-01" and register["items"][2]["summary"]
            inbound_only = (await me.get("/v1/register/calls", params={
                "direction": "inbound", "customer": vehicle.customer.customer_id})).json()
            assert len(inbound_only["items"]) == 1

        # A caller with no file asks about a car: the agent records the consultation through intake,
        # which opens the file; the first call follows and the call is on the phone register.
        async with api(stack["intake"], "agent") as desk:
            taken = await desk.post("/v1/consultations", headers={"Idempotency-Key": "cons-151"}, json={
                "phone": "13600001512", "name": "赵敏", "region": "south", "topic": "EV-100 价格",
                "summary": "想了解分期", "consulted_at": day_at(9, 45, days=d).isoformat()})
            assert taken.status_code == 202, taken.text
            nobody = await desk.post("/v1/consultations", json={"topic": "x"})
            assert nobody.status_code == 422 and "name the caller" in nobody.json()["detail"]
        prospect = derived_customer_id("+8613600001512")
        async with TopicReader(ns.settings, "aftersales.followup") as followup_topic:
            await followup_topic.wait_for(count("InboundCallRecorded", 2), timeout=60, settle=0.5)
        recorded = {r.data["customer_id"]: r for r in followup_topic.of_type("InboundCallRecorded")}
        assert recorded[vehicle.customer.customer_id].data["handled_by"] == "agent-01"
        assert recorded[vehicle.customer.customer_id].record.key.decode() == vehicle.customer.customer_id
        assert recorded[prospect].data["handled_by"] == "agent-01" and recorded[prospect].data["followup_id"]
        async with api(stack["intake"], "agent") as desk:
            opened = (await desk.get(f"/v1/customers/{prospect}")).json()
        assert opened["name"] == "赵敏" and opened["phone"] == "+8613600001512", "the caller has a file now"

        async with api(service, "supervisor") as supervisor:
            kpis = (await supervisor.get("/v1/kpis", params={"from": day_at(0, days=d - 10).isoformat(),
                                                              "to": day_at(12, days=d1 + 1).isoformat()})).json()
        assert (kpis["warranty_pickups"], kpis["warranty_visited"]) == (1, 1), "the delivery counts for warranty"
        assert kpis["first_visits_by_reason"]["VehicleSold"] == {"scheduled": 1, "reached": 1}
        assert kpis["first_visits_by_reason"]["ConsultationRecorded"]["scheduled"] == 2
        assert kpis["inbound_calls"] == {"consultation": 2}
    finally:
        await stack.stop()


async def test_a_pickup_with_a_bad_phone_is_filed_flagged_written_to_corrected_and_called(ns: Namespace) -> None:
    gateway = await SmsGatewaySink(PeerStore()).start()
    d = working_day()  # the customer is called on a working day
    clock = manual_clock(day_at(10, days=d))
    settings = NotifierSettings(sms_gateway_url=gateway.url, dispatch_tick_seconds=0.05)
    stack = await Stack(ns, clock, services=("intake", "followup", "notifier"),
                        state={"notifier": {"settings": settings}}).start()
    flagged = metrics.CONTACT_VALUES_FLAGGED.labels("phone", "VehiclePickedUp")
    flagged_before = flagged._value.get()
    try:
        fleet = Fleet(seed=152)
        vehicle = fleet.vehicle(day_at(0, days=-400))
        pickup = fleet.pickup(vehicle, day_at(9, days=d - 4))
        pickup["data"]["customer"]["phone"] = BAD_PHONE
        customer_id = vehicle.customer.customer_id
        await publish(ns.settings, "upstream.dms", [pickup])
        async with TopicReader(ns.settings, "aftersales.followup") as followup_topic:
            await followup_topic.wait_for(count("FollowUpDue", 1), timeout=60)
        assert flagged._value.get() == flagged_before + 1, "counted in the metric"

        async with api(stack["intake"], "agent") as agent:
            file = (await agent.get(f"/v1/customers/{customer_id}")).json()
            assert file["phone"] is None and [v["repair_order_id"] for v in file["visits"]] == \
                [pickup["data"]["repair_order_id"]], "filed, with its visit"
            flag = file["contact_flags"]["phone"]
            assert flag["value"] == BAD_PHONE and "not a valid number" in flag["reason"]
            assert flag["source"] == "VehiclePickedUp"
            listed = (await agent.get("/v1/customers/flagged")).json()
            assert [f["customer_id"] for f in listed["items"]] == [customer_id]

        async with api(stack["followup"], "agent") as me:
            item = await queue_item(me, "first_visit", vehicle.vin)
            assert item["contact_flags"]["phone"]["value"] == BAD_PHONE, "the agent sees why the number fails"

        async with api(stack["notifier"], "agent") as clerk:
            async def the_letter() -> list[dict[str, Any]]:
                letters = (await clerk.get("/v1/letters")).json()["items"]
                return [x for x in letters if x["postal_address"] == vehicle.customer.address]
            letters = await eventually(the_letter, what="the first-visit notice by letter")
        assert len(letters) == 1 and letters[0]["subject"] == "回访通知：请告知您的联系电话"
        assert gateway.store.sms == [], "no SMS to a number that is not one"

        # The customer phones in; the agent takes the right number and corrects the file.
        async with api(stack["intake"], "agent") as agent:
            corrected = await agent.post(f"/v1/customers/{customer_id}/contact",
                                         json={"phone": "13912345152", "reason": "客户来电告知正确号码"})
            assert corrected.status_code == 202, corrected.text
            async with TopicReader(ns.settings, "aftersales.intake") as intake_topic:
                await intake_topic.wait_for(count("CustomerContactCorrected", 1), timeout=60)
            event = intake_topic.of_type("CustomerContactCorrected")[0].data
            assert event["phone"] == "+8613912345152" and event["contact_flags"] == {}
            assert event["corrected_by"] == "agent-01"
            file = (await agent.get(f"/v1/customers/{customer_id}")).json()
            assert file["phone"] == "+8613912345152" and file["contact_flags"] == {}
            assert (await agent.get("/v1/customers/flagged")).json()["items"] == []

        notifier_db = await db(ns, "notifier")
        try:
            await eventually(lambda: notifier_db.fetchval(
                "SELECT phone = '+8613912345152' FROM contacts WHERE customer_id = $1", customer_id),
                what="the notifier's contact")
        finally:
            await notifier_db.close()

        async with api(stack["followup"], "agent") as me:
            async def unflagged() -> bool:
                return (await me.get(f"/v1/followups/{item['followup_id']}")).json()["contact_flags"] == {}
            await eventually(unflagged, what="follow-up applies the correction")
            called = await me.post(f"/v1/followups/{item['followup_id']}/attempts",
                                   json={"outcome": "reached", "satisfaction": 5})
            assert called.status_code == 201 and called.json()["completed_as"] == "reached", called.text
    finally:
        await stack.stop()
        await gateway.stop()
