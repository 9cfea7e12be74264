"""One conversation per customer on the real broker and database (intake and followup, the clock
moved by hand): a customer with a first return visit, a maintenance reminder and a campaign call
open is one entry in the queue and is worked in one call: one claim (a second agent can claim
none of the three meanwhile), one record with each follow-up's outcome (an incomplete or refused
record stores nothing), the per-follow-up events on the topic carrying the call's id; the next
agent sees what was said and asked on that call and the open feedback item."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.followup.config import FollowUpRules
from tests.support import Namespace, Stack, TopicReader, api, day_at, db, manual_clock, publish, working_day
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

KINDS = {"first_visit", "maintenance_reminder", "campaign_call"}


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scheduled(records: list, customer_id: str) -> dict[str, dict]:
    return {r.data["kind"]: r.data for r in records
            if r.event_type == "FollowUpScheduled" and r.data["customer_id"] == customer_id}


async def _conversation_in_queue(client, customer_id: str, tries: int = 150) -> dict:
    for _ in range(tries):
        talks = [t for t in (await client.get("/v1/queue/conversations")).json()["items"] if t["customer_id"] == customer_id]
        if talks and {f["kind"] for f in talks[0]["followups"]} == KINDS and all(
                f["due_now"] and f["callable_now"] for f in talks[0]["followups"]):
            return talks[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"customer {customer_id}'s three follow-ups never came up as one conversation")


async def test_three_follow_ups_of_one_customer_are_worked_in_one_call(ns: Namespace) -> None:
    d = working_day()
    clock = manual_clock(day_at(10, days=d))
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=1616)
        vehicle = fleet.vehicle(day_at(0, days=-400))
        await publish(ns.settings, "upstream.sales", [fleet.sale(vehicle)])
        pickup = fleet.pickup(vehicle, day_at(9, days=d - 4), mileage_km=21_000)  # first visit due from d-1
        pickup["data"]["next_service_due_at"] = day_at(9, days=d + 10).isoformat()  # reminder 10 days before
        pickup["data"]["next_service_due_km"] = 40_000
        await publish(ns.settings, "upstream.dms", [pickup])
        customer_id = vehicle.customer.customer_id
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: "first_visit" in _scheduled(rs, customer_id), timeout=60)
            campaign = fleet.campaign("free_inspection_week", "Free inspection week", day_at(9, days=d + 14), 7,
                                      [vehicle.customer.region], clock.now())
            await publish(ns.settings, "upstream.crm", [campaign])
            clock.set(day_at(10, FollowUpRules().late_timer_settle_minutes + 1, days=d))  # the late reminder fires
            await topic.wait_for(lambda rs: set(_scheduled(rs, customer_id)) == KINDS, timeout=60, settle=0.5)
        ids = {kind: f["followup_id"] for kind, f in _scheduled(topic.records, customer_id).items()}
        service = stack["followup"]

        async with api(service, "agent") as me, api(service, "agent2") as colleague:
            # one entry in the queue listing the three
            talk = await _conversation_in_queue(me, customer_id)
            assert {f["followup_id"] for f in talk["followups"]} == set(ids.values())
            assert talk["claimed_by"] is None

            # two agents taking two of the customer's follow-ups at the same moment: one gets the customer
            for _ in range(3):
                races = await asyncio.gather(me.post(f"/v1/followups/{ids['first_visit']}/claim"),
                                             colleague.post(f"/v1/followups/{ids['maintenance_reminder']}/claim"))
                assert sorted(r.status_code for r in races) == [200, 409], [r.text for r in races]
                winner = me if races[0].status_code == 200 else colleague
                won = ids["first_visit"] if winner is me else ids["maintenance_reminder"]
                assert (await winner.post(f"/v1/followups/{won}/release")).status_code == 200

            # one claim takes all three
            claimed = await me.post(f"/v1/customers/{customer_id}/conversation/claim")
            assert claimed.status_code == 200, claimed.text
            call_id = claimed.json()["call_id"]
            assert {f["followup_id"] for f in claimed.json()["followups"]} == set(ids.values())
            conn = await db(ns, "followup")
            try:
                rows = await conn.fetch("SELECT claimed_by, call_id FROM followups WHERE customer_id = $1",
                                        customer_id)
                assert sorted((r["claimed_by"], r["call_id"]) for r in rows) == [("agent-01", call_id)] * 3
            finally:
                await conn.close()

            # a second agent can claim none of them, nor record on them, and is not offered the customer
            refused = await colleague.post(f"/v1/customers/{customer_id}/conversation/claim")
            assert refused.status_code == 409 and "is being called by agent-01" in refused.json()["detail"]
            for fid in ids.values():
                single = await colleague.post(f"/v1/followups/{fid}/claim")
                assert single.status_code == 409, single.text
                alone = await colleague.post(f"/v1/followups/{fid}/attempts", json={"outcome": "unreachable"})
                assert alone.status_code == 409, alone.text
            theirs = (await colleague.get("/v1/queue/conversations")).json()
            assert customer_id not in {t["customer_id"] for t in theirs["items"]}
            assert not set(ids.values()) & {i["followup_id"] for i in theirs["items"]}

            # a record that leaves one follow-up out, or one refused outcome, stores nothing
            partial = await me.post(f"/v1/customers/{customer_id}/calls", json={"call_id": call_id, "outcomes": [
                {"followup_id": ids["first_visit"], "outcome": "reached", "satisfaction": 5}]})
            assert partial.status_code == 422 and "missing" in partial.json()["detail"]
            assert ids["campaign_call"] in partial.json()["detail"]
            wrong = await me.post(f"/v1/customers/{customer_id}/calls", json={"call_id": call_id, "outcomes": [
                {"followup_id": ids["first_visit"], "outcome": "reached", "satisfaction": 5},
                {"followup_id": ids["maintenance_reminder"], "outcome": "reached", "lost_reason": "price"},
                {"followup_id": ids["campaign_call"], "outcome": "reached"}]})
            assert wrong.status_code == 422 and "lost_reason is for a lost-customer call" in wrong.json()["detail"]
            assert (await me.get("/v1/register/calls", params={"customer": customer_id})).json()["items"] == []

            # the one record: each follow-up's outcome
            call_back = day_at(15, days=d)
            recorded = await me.post(f"/v1/customers/{customer_id}/calls", json={"call_id": call_id, "outcomes": [
                {"followup_id": ids["first_visit"], "outcome": "reached", "satisfaction": 3,
                 "talking_points": "the noise from the front left wheel is gone",
                 "requests": "a courtesy car at the next service"},
                {"followup_id": ids["maintenance_reminder"], "outcome": "reached",
                 "talking_points": "service due at 40,000 km; will book for next week"},
                {"followup_id": ids["campaign_call"], "outcome": "call_back_later", "call_back_at": utc(call_back),
                 "notes": "wants to check the inspection week with the family"}]})
            assert recorded.status_code == 201, recorded.text
            body = recorded.json()
            assert body["call_id"] == call_id
            outcome = {f["followup_id"]: f for f in body["followups"]}
            assert outcome[ids["first_visit"]]["completed_as"] == "reached"
            assert outcome[ids["first_visit"]]["feedback_item"] is not None, "the request is followed up"
            assert outcome[ids["maintenance_reminder"]]["completed_as"] == "reached"
            assert outcome[ids["campaign_call"]]["completed_as"] is None
            assert outcome[ids["campaign_call"]]["next_attempt_at"] == utc(call_back)
            again = await me.post(f"/v1/customers/{customer_id}/calls", json={"call_id": call_id, "outcomes": [
                {"followup_id": ids["campaign_call"], "outcome": "unreachable"}]})
            assert again.status_code == 409 and "recorded already" in again.json()["detail"]
            register = (await me.get("/v1/register/calls", params={"customer": customer_id})).json()
            assert len(register["items"]) == 3 and {c["agent_id"] for c in register["items"]} == {"agent-01"}

        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: len([r for r in rs if r.event_type == "FollowUpAttemptRecorded"]) >= 3,
                                 timeout=30, settle=1.0)
        attempts = {r.data["followup_id"]: r.data for r in topic.of_type("FollowUpAttemptRecorded")}
        assert set(attempts) == set(ids.values())
        assert {a["call_id"] for a in attempts.values()} == {call_id}, "one call id on every attempt"
        assert attempts[ids["campaign_call"]]["outcome"] == "call_back_later"
        completed = {r.data["followup_id"]: r.data for r in topic.of_type("FollowUpCompleted")}
        assert set(completed) == {ids["first_visit"], ids["maintenance_reminder"]}
        assert {c["call_id"] for c in completed.values()} == {call_id}
        assert all(r.record.key.decode() == customer_id for r in topic.of_type("FollowUpAttemptRecorded"))

        # at the time the customer asked for, the colleague takes the rest and sees that call
        clock.set(call_back + timedelta(minutes=5))
        async with api(service, "agent2") as colleague:
            view = (await colleague.get(f"/v1/customers/{customer_id}/conversation")).json()
            assert [f["followup_id"] for f in view["followups"]] == [ids["campaign_call"]]
            said = {c["followup_id"]: c for c in view["previous_calls"]}
            assert said[ids["first_visit"]]["requests"] == "a courtesy car at the next service"
            assert said[ids["maintenance_reminder"]]["talking_points"].startswith("service due at 40,000 km")
            assert {c["call_id"] for c in view["previous_calls"]} == {call_id}
            [item] = view["open_feedback_items"]
            assert item["requests"] == "a courtesy car at the next service" and item["state"] == "open"
            taken = await colleague.post(f"/v1/customers/{customer_id}/conversation/claim")
            assert taken.status_code == 200 and taken.json()["call_id"] != call_id
            async with api(service, "supervisor") as supervisor:  # a supervisor can take a held customer over
                over = await supervisor.post(f"/v1/customers/{customer_id}/conversation/claim")
                assert over.status_code == 200 and over.json()["claimed_by"] == "supervisor-01"
                lost = await colleague.post(f"/v1/customers/{customer_id}/calls", json={"outcomes": [
                    {"followup_id": ids["campaign_call"], "outcome": "unreachable"}]})
                assert lost.status_code == 409 and "is being called by supervisor-01" in lost.json()["detail"]
                assert (await supervisor.post(f"/v1/customers/{customer_id}/conversation/release")).json()[
                    "released"] == [ids["campaign_call"]]
            taken = await colleague.post(f"/v1/customers/{customer_id}/conversation/claim")
            assert taken.status_code == 200
            done = await colleague.post(f"/v1/customers/{customer_id}/calls", json={"outcomes": [
                {"followup_id": ids["campaign_call"], "outcome": "reached",
                 "booked_at": utc(day_at(10, days=d + 15))}]})
            assert done.status_code == 201, done.text
            assert done.json()["call_id"] == taken.json()["call_id"], "the claim's call"
            assert (await colleague.get(f"/v1/customers/{customer_id}/conversation")).json()["followups"] == []
    finally:
        await stack.stop()
