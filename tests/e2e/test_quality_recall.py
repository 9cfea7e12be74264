"""From alert to recall, end to end on the real broker and database, with intake, followup,
notifier and quality in process: sales through intake (parts lists, owners) and defect reports
on one controller batch from the ERP -> an early-warning alert -> confirmed as a batch problem
with its containment action -> the affected VINs -> a recall campaign announced -> campaign
calls in the agents' queue (the loyal owner first) and recall letters written to exactly the
owners of the batch's vehicles; a control vehicle without the batch gets neither. Then the
campaign's progress: a call that booked a visit, a workshop visit that inspected the vehicle
and replaced the part, and a later report from the inspected vehicle kept apart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import next_callable
from shared.workcal import WorkingCalendar
from tests.quality_events import part_of, vehicle
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, eventually, manual_clock, publish
from tools.simulate import Fleet, envelope

pytestmark = [pytest.mark.infra, pytest.mark.dates]

BAD = {"batch": "B2610-CTRL-9", "supplier_id": "SUP-B"}
GOOD = {"batch": "B2610-CTRL-2", "supplier_id": "SUP-A"}


def defect(v: Any, at: Any, report_id: str) -> dict[str, Any]:
    part = part_of(v, "controller")
    return envelope("PartDefectReported", v.vin, {
        "report_id": report_id, "part_no": part["part_no"], "category": "controller", "batch": part["batch"],
        "supplier_id": part["supplier_id"], "model": v.model, "vin": v.vin, "failure_mode": "no_power",
        "mileage_km": 8_000, "reported_by": "dealer", "reported_at": at.isoformat()}, at, "erp")


async def test_a_confirmed_batch_problem_calls_and_writes_to_exactly_the_owners_of_the_batch(ns: Namespace) -> None:
    clock = manual_clock(day_at(10))
    stack = await Stack(ns, clock, services=("intake", "followup", "notifier", "quality")).start()
    try:
        fleet = Fleet(seed=83)
        sold = day_at(9, days=-200)
        bad = [vehicle(fleet, sold + timedelta(hours=7 * i), controller=BAD) for i in range(10)]
        loyal = bad[3]
        control = vehicle(fleet, sold, model=bad[0].model, controller=GOOD)
        control.customer.region = bad[0].customer.region  # same region and model: only the batch differs
        others = [vehicle(fleet, sold + timedelta(hours=5 * i), controller=GOOD) for i in range(10)]
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in [*bad, control, *others]])
        # the loyal owner: four workshop visits in the last 24 months (gold)
        await publish(ns.settings, "upstream.dms", [
            fleet.pickup(loyal, day_at(11, days=-150 + 30 * i), repair_order_id=f"RO-LOYAL-{i}") for i in range(4)])

        async with api(stack["quality"], "quality") as quality:
            async def units() -> bool:
                body = (await quality.get("/v1/stats", params={"category": "controller", "from": "2020-01-01"})).json()
                return bool(body["units_in_service"]["units"] >= 21)
            await eventually(units, what="the 21 sales in quality's units in service")

            first = day_at(9, days=-6)
            await publish(ns.settings, "upstream.erp",
                          [defect(v, first + timedelta(hours=9 * i), f"DR-R{i:02d}") for i, v in enumerate(bad[:8])])
            async with TopicReader(ns.settings, "aftersales.quality") as topic:
                await topic.wait_for(lambda rs: any(r.event_type == "QualityAlertRaised"
                                                    and r.data["cell"].get("batch") == BAD["batch"] for r in rs),
                                     timeout=60, settle=1.0)
            alert_id = next(r.data["alert_id"] for r in topic.of_type("QualityAlertRaised")
                            if r.data["cell"].get("batch") == BAD["batch"])

            # Before the confirmation: the vehicles carrying the batch, with owner, region and dealer.
            preview = (await quality.get(f"/v1/alerts/{alert_id}/affected-vehicles")).json()
            assert preview["confirmed"] is False
            assert {v["vin"] for v in preview["vehicles"]} == {v.vin for v in bad}
            by_vin = {v["vin"]: v for v in preview["vehicles"]}
            for v in bad:
                assert by_vin[v.vin]["customer_id"] == v.customer.customer_id
                assert by_vin[v.vin]["owner_name"] == v.customer.name
                assert by_vin[v.vin]["region"] == v.customer.region and by_vin[v.vin]["dealer_id"] == v.dealer_id

            missing = await quality.post(f"/v1/alerts/{alert_id}/confirm", json={})
            assert missing.status_code == 422 and "containment" in missing.text
            confirmed = await quality.post(f"/v1/alerts/{alert_id}/confirm", json={
                "containment": "batch B2610-CTRL-9 quarantined at the warehouse; SUP-B 8D opened",
                "address": "any authorised dealer"})
            assert confirmed.status_code == 200, confirmed.text
            campaign_id = confirmed.json()["campaign_id"]
            assert confirmed.json()["vehicles"] == len(bad)
            again = await quality.post(f"/v1/alerts/{alert_id}/confirm", json={"containment": "again"})
            assert again.status_code == 409 and again.json()["campaign_id"] == campaign_id

        async with TopicReader(ns.settings, "aftersales.quality") as topic:
            await topic.wait_for(lambda rs: any(r.event_type == "CampaignAnnounced" for r in rs), timeout=30)
        [problem] = topic.of_type("BatchProblemConfirmed")
        [announced] = topic.of_type("CampaignAnnounced")
        assert problem.data["alert_id"] == alert_id and problem.data["actor"] == "quality-01"
        assert problem.data["containment"].startswith("batch B2610-CTRL-9 quarantined")
        assert announced.data["kind"] == "recall" and announced.data["campaign_id"] == campaign_id
        assert sorted(announced.data["vins"]) == sorted(v.vin for v in bad)
        assert announced.envelope.causation_id == problem.envelope.event_id
        assert announced.envelope.correlation_id == problem.envelope.correlation_id

        owners = {v.customer.customer_id for v in bad}
        async with TopicReader(ns.settings, "aftersales.followup") as followup:
            await followup.wait_for(count("CampaignCallScheduled", len(owners)), timeout=60, settle=2.0)
        calls = followup.of_type("CampaignCallScheduled")
        assert {r.data["customer_id"] for r in calls} == owners and len(calls) == len(owners)
        assert all(r.data["campaign_kind"] == "recall" and r.data["campaign_id"] == campaign_id for r in calls)
        scheduled = [r for r in followup.of_type("FollowUpScheduled") if r.data["kind"] == "campaign_call"]
        assert {r.data["customer_id"] for r in scheduled} == owners
        # "14 days before it starts": the campaign starts 14 days after the confirmation, so the calls are due
        # now, from the first calling moment (calling hours of a working day: the test day may be a holiday)
        due = [(datetime.fromisoformat(r.data["due_from"]), datetime.fromisoformat(r.data["due_by"]))
               for r in scheduled]
        first_call = next_callable(clock.now(), "Asia/Shanghai", FollowUpRules(), WorkingCalendar.load(None))
        assert all(start <= first_call + timedelta(days=3) and start < end for start, end in due)

        # The agents' queue once the calls are due: exactly the owners, the loyal one first.
        clock.set(max(start for start, _ in due) + timedelta(minutes=1))
        async with api(stack["followup"], "agent") as agent:
            async def campaign_queue() -> list[dict[str, Any]]:
                items = (await agent.get("/v1/queue", params={"kind": "campaign_call", "limit": 100})).json()["items"]
                return items if len(items) == len(owners) else []
            queue = await eventually(campaign_queue, what="the campaign calls in the queue")
            assert {i["customer_id"] for i in queue} == owners
            # An agent's own customers come first (tracking owners, by region rules); among the calls on the
            # same side of that line the loyal customer is first.
            first = next(i for i in queue if i["customer_id"] == loyal.customer.customer_id)
            assert first["loyalty_tier"] == "gold"
            assert [i for i in queue if i["mine"] == first["mine"]][0] is first
            assert [i["mine"] for i in queue] == sorted((i["mine"] for i in queue), reverse=True)
            assert control.customer.customer_id not in {i["customer_id"] for i in queue}

        # The recall letters: one to each owner, none to the control owner.
        async with api(stack["notifier"], "supervisor") as notifier:
            async def every(path: str, **params: Any) -> list[dict[str, Any]]:
                rows, cursor = [], None
                while True:
                    page = (await notifier.get(path, params={**params, "limit": 200,
                                                             **({"cursor": cursor} if cursor else {})})).json()
                    rows += page["items"]
                    if not (cursor := page["next_cursor"]):
                        return rows

            async def letters_sent() -> list[dict[str, Any]]:
                rows = await every("/v1/notifications")
                recall = [n for n in rows if n["rule"] == "recall_notice"]
                return recall if len(recall) == len(owners) and all(n["status"] == "sent" for n in recall) else []
            sent = await eventually(letters_sent, what="a recall letter to each owner")
            assert {n["recipient"] for n in sent} == owners and all(n["channel"] == "letter" for n in sent)
            everything = await every("/v1/notifications", recipient=control.customer.customer_id)
            assert not [n for n in everything if n["rule"] in ("recall_notice", "campaign_invitation")]
            register = await every("/v1/letters")
            recall_letters = [row for row in register if row["subject"].startswith(("召回通知", "Recall notice"))]
            assert sorted(row["addressee"] for row in recall_letters) == sorted(v.customer.name for v in bad)

        # Progress: the loyal owner is reached and books a visit; the visit inspects and replaces.
        target = next(i for i in queue if i["customer_id"] == loyal.customer.customer_id)
        booked = clock.now() + timedelta(days=3)
        async with api(stack["followup"], "agent") as agent:
            unreached = await agent.post(f"/v1/followups/{target['followup_id']}/attempts",
                                         json={"outcome": "unreachable", "booked_at": booked.isoformat()})
            assert unreached.status_code == 422 and "booked_at" in unreached.text
            # booked_at is for campaign calls: not on the control owner's first return visit
            await publish(ns.settings, "upstream.dms", [fleet.pickup(control, clock.now(), repair_order_id="RO-C")])

            async def first_visit() -> list[dict[str, Any]]:
                return (await agent.get("/v1/followups", params={"customer": control.customer.customer_id,
                                                                 "kind": "first_visit"})).json()["items"]
            [visit_call] = await eventually(first_visit, what="the control owner's first return visit")
            not_a_campaign = await agent.post(f"/v1/followups/{visit_call['followup_id']}/attempts",
                                              json={"outcome": "reached", "booked_at": booked.isoformat()})
            assert not_a_campaign.status_code == 422 and "campaign call" in not_a_campaign.text
            call = await agent.post(f"/v1/followups/{target['followup_id']}/attempts",
                                    json={"outcome": "reached", "booked_at": booked.isoformat()})
            assert call.status_code == 201, call.text
        visit = fleet.pickup(loyal, booked + timedelta(hours=2), service_type="recall", repair_order_id="RO-RECALL-1")
        visit["data"]["items"] = [
            {"code": f"{campaign_id}:inspect", "description": "controller inspected", "part_category": None},
            {"code": f"{campaign_id}:replace", "description": "controller replaced", "part_category": "controller"},
        ]
        clock.set(booked + timedelta(days=1))
        await publish(ns.settings, "upstream.dms", [visit])
        later = booked + timedelta(days=2)
        await publish(ns.settings, "upstream.erp",
                      [defect(loyal, later, "DR-AFTER-1"), defect(bad[9], later, "DR-AFTER-2")])

        async with api(stack["quality"], "quality") as quality:
            async def progressed() -> dict[str, Any] | None:
                body = (await quality.get(f"/v1/recalls/{campaign_id}")).json()
                done = body["progress"]["total"]
                seen = body["reports_since_confirmation"]
                ready = done["replaced"] == 1 and done["booked"] == 1 and seen["inspected"] + seen["not_inspected"] == 2
                return body if ready else None
            recall = await eventually(progressed, what="the campaign's progress")
            total = recall["progress"]["total"]
            assert (total["vehicles"], total["reached"], total["booked"], total["inspected"], total["replaced"]) == (
                len(bad), 1, 1, 1, 1)
            dealer = next(d for d in recall["progress"]["by_dealer"] if d["dealer_id"] == loyal.dealer_id)
            assert dealer["inspected"] == 1 and dealer["replaced"] == 1
            assert sum(d["vehicles"] for d in recall["progress"]["by_dealer"]) == len(bad)
            seen = recall["reports_since_confirmation"]
            assert [r["report_id"] for r in seen["inspected_reports"]] == ["DR-AFTER-1"]
            assert [r["report_id"] for r in seen["not_inspected_reports"]] == ["DR-AFTER-2"]
            mine = next(v for v in recall["vehicles"] if v["vin"] == loyal.vin)
            assert mine["repair_order_id"] == "RO-RECALL-1"
            listed = (await quality.get("/v1/recalls")).json()
            assert [r["campaign_id"] for r in listed["items"]] == [campaign_id]
    finally:
        await stack.stop()
