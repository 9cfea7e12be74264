"""Quality's recall routes on the real broker and database (quality alone in process; the
events it consumes published as intake and followup publish them): who may confirm, what a
confirmation refuses, what it announces, and how workshop visits and campaign calls move the
recall's progress, with a report from an inspected vehicle kept apart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.events import FOLLOWUP, INTAKE
from tests.quality_events import canonical, defect_reported, vehicle, vehicle_sold
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, db, eventually, manual_clock, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

BATCH_A = {"batch": "B2610-CTRL-4", "supplier_id": "SUP-C"}
BATCH_B = {"batch": "B2610-CTRL-5", "supplier_id": "SUP-C"}


def visit(fleet: Fleet, v: Any, at: datetime, order: str, service_type: str, items: list[dict[str, Any]]
          ) -> dict[str, Any]:
    data = fleet.pickup(v, at, service_type=service_type, repair_order_id=order)["data"]
    data["items"] = items
    return canonical(INTAKE, "VehiclePickedUp", v.vin, data, at, "intake")


def call_completed(v: Any, campaign_id: str, at: datetime, booked_at: datetime | None) -> dict[str, Any]:
    data = {"followup_id": f"F-{v.vin}", "kind": "campaign_call", "customer_id": v.customer.customer_id,
            "outcome": "reached", "completed_at": at.isoformat(), "attempts": 1, "vin": v.vin,
            "campaign_id": campaign_id, "booked_at": booked_at.isoformat() if booked_at else None}
    return canonical(FOLLOWUP, "FollowUpCompleted", v.customer.customer_id, data, at, "followup")




async def test_confirming_an_alert_announces_one_recall_and_visits_and_calls_move_its_progress(ns: Namespace) -> None:
    clock = manual_clock(day_at(10))
    stack = await Stack(ns, clock, services=("quality",)).start()
    try:
        fleet = Fleet(seed=97)
        sold = day_at(9, days=-120)
        a = [vehicle(fleet, sold + timedelta(hours=3 * i), controller=BATCH_A) for i in range(12)]
        b = [vehicle(fleet, sold + timedelta(hours=4 * i), controller=BATCH_B) for i in range(12)]
        await publish(ns.settings, INTAKE, [vehicle_sold(fleet, v) for v in a + b])
        first = day_at(9, days=-5)
        await publish(ns.settings, INTAKE, [
            defect_reported(v, "controller", "no_power", first + timedelta(hours=5 * i), f"DR-{tag}{i:02d}")
            for tag, vs in (("A", a), ("B", b)) for i, v in enumerate(vs[:8])])
        async with TopicReader(ns.settings, "aftersales.quality") as topic:
            both = {"B2610-CTRL-4", "B2610-CTRL-5"}
            await topic.wait_for(lambda rs: {r.data["cell"].get("batch") for r in rs
                                             if r.event_type == "QualityAlertRaised"} >= both, timeout=60, settle=1.0)
        alerts = {r.data["cell"]["batch"]: r.data["alert_id"] for r in topic.of_type("QualityAlertRaised")
                  if r.data["cell"]["kind"] == "batch"}
        alert_a, alert_b = alerts["B2610-CTRL-4"], alerts["B2610-CTRL-5"]

        async with api(stack["quality"], "supervisor") as supervisor:
            refused = await supervisor.post(f"/v1/alerts/{alert_b}/confirm", json={"containment": "x"})
            assert refused.status_code == 403
            preview = (await supervisor.get(f"/v1/alerts/{alert_b}/affected-vehicles")).json()
            assert preview["confirmed"] is False and {v["vin"] for v in preview["vehicles"]} == {v.vin for v in b}

        async with api(stack["quality"], "quality") as quality:
            assert (await quality.post("/v1/alerts/nope/confirm", json={"containment": "x"})).status_code == 404
            assert (await quality.post(f"/v1/alerts/{alert_b}/confirm", json={"containment": ""})).status_code == 422
            other = await quality.post(f"/v1/alerts/{alert_b}/confirm",
                                       json={"containment": "x", "batch": "B2610-CTRL-4"})
            assert other.status_code == 422 and "not the alert's batch" in other.text
            past = await quality.post(f"/v1/alerts/{alert_b}/confirm", json={
                "containment": "x", "starts_at": (clock.now() - timedelta(days=1)).isoformat()})
            assert past.status_code == 422 and "in the past" in past.text
            # a closed alert is not confirmed
            assert (await quality.post(f"/v1/alerts/{alert_a}/acknowledge", json={})).status_code == 200
            assert (await quality.post(f"/v1/alerts/{alert_a}/close", json={"note": "false alarm"})).status_code == 200
            closed = await quality.post(f"/v1/alerts/{alert_a}/confirm", json={"containment": "x"})
            assert closed.status_code == 409 and closed.json()["state"] == "closed"

            # the list walked a page at a time returns each alert once, in the order asked
            walked, cursor = [], None
            while True:
                page = (await quality.get("/v1/alerts", params={"limit": 1, "sort": "alert_id",
                                                                **({"cursor": cursor} if cursor else {})})).json()
                walked += [x["alert_id"] for x in page["items"]]
                if (cursor := page["next_cursor"]) is None:
                    break
            every = [x["alert_id"] for x in (await quality.get("/v1/alerts", params={"limit": 200})).json()["items"]]
            assert walked == sorted(every) and len(walked) == len(set(walked)) and {alert_a, alert_b} <= set(walked)
            for params, field in (({"cursor": "not-a-cursor"}, "query.cursor"), ({"sort": "colour"}, "query.sort")):
                refused = await quality.get("/v1/alerts", params=params)
                assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
                assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text
            stale = await quality.post(f"/v1/alerts/{alert_b}/confirm", json={"containment": "x"},
                                       headers={"If-Match": '"not-the-alerts-etag"'})
            assert stale.status_code == 412, "confirmed on the strength of an alert that changed since"
            etag = (await quality.get(f"/v1/alerts/{alert_b}")).headers["ETag"]

            confirmation = {"containment": "B2610-CTRL-5 on hold", "title": "Controller inspection"}
            key = {"Idempotency-Key": "confirm-b2610-ctrl-5", "If-Match": etag}
            ok = await quality.post(f"/v1/alerts/{alert_b}/confirm", json=confirmation, headers=key)
            assert ok.status_code == 200, ok.text
            again = await quality.post(f"/v1/alerts/{alert_b}/confirm", json=confirmation, headers=key)
            assert again.status_code == 200 and again.headers["Idempotency-Replayed"] == "true"
            assert again.json() == ok.json(), "the retry answers the first confirmation"
            recalls = (await quality.get("/v1/recalls")).json()
            assert [r["campaign_id"] for r in recalls["items"]] == [ok.json()["campaign_id"]], "one recall"
            body = ok.json()
            campaign_id = body["campaign_id"]
            assert body["vehicles"] == len(b) and body["confirmed_by"] == "quality-01"
            assert datetime.fromisoformat(body["starts_at"]) == clock.now() + timedelta(days=14)
            detail = (await quality.get(f"/v1/alerts/{alert_b}")).json()
            assert detail["recall"]["campaign_id"] == campaign_id and detail["state"] == "raised"
            fixed = (await quality.get(f"/v1/alerts/{alert_b}/affected-vehicles")).json()
            assert fixed["confirmed"] is True and fixed["total"] == len(b)

        async with TopicReader(ns.settings, "aftersales.quality") as topic:
            await topic.wait_for(count("CampaignAnnounced", 1), timeout=30, settle=0.5)
        [announced] = topic.of_type("CampaignAnnounced")
        assert announced.record.key.decode() == campaign_id
        assert announced.data["title"] == "Controller inspection" and announced.data["kind"] == "recall"
        assert sorted(announced.data["vins"]) == sorted(v.vin for v in b)
        assert announced.data["regions"] == sorted({v.customer.region for v in b})

        # Progress: b[0] reached and booked; b[0] inspected and replaced; b[1] inspected by a
        # recall visit without the code; b[2] an ordinary visit (nothing); a report after
        # b[0]'s inspection is kept apart from one of b[3], not inspected.
        t = clock.now()
        code = f"{campaign_id}:replace"
        await publish(ns.settings, FOLLOWUP, [call_completed(b[0], campaign_id, t + timedelta(hours=1),
                                                            t + timedelta(days=2))])
        await publish(ns.settings, INTAKE, [
            visit(fleet, b[0], t + timedelta(days=2), "RO-1", "repair",
                  [{"code": code, "description": "controller replaced", "part_category": "controller"}]),
            visit(fleet, b[0], t + timedelta(days=9), "RO-1B", "recall",
                  [{"code": campaign_id, "description": "checked again", "part_category": None}]),
            visit(fleet, b[1], t + timedelta(days=2), "RO-2", "recall",
                  [{"code": "LAB", "description": "controller checked", "part_category": None}]),
            visit(fleet, b[2], t + timedelta(days=2), "RO-3", "maintenance",
                  [{"code": "M-OIL", "description": "oil", "part_category": None}]),
        ])
        await publish(ns.settings, INTAKE, [
            defect_reported(b[0], "controller", "no_power", t + timedelta(days=4), "DR-AFTER"),
            defect_reported(b[3], "controller", "no_power", t + timedelta(days=4), "DR-NOT"),
        ])
        async with api(stack["quality"], "ops") as ops:
            async def moved() -> dict[str, Any] | None:
                body = (await ops.get(f"/v1/recalls/{campaign_id}")).json()
                p, r = body["progress"]["total"], body["reports_since_confirmation"]
                return body if p["inspected"] == 2 and p["reached"] == 1 and r["inspected"] + r["not_inspected"] == 2 \
                    else None
            recall = await eventually(moved, what="the recall's progress")
            total = recall["progress"]["total"]
            assert [total[k] for k in ("vehicles", "reached", "booked", "inspected", "replaced")] == [12, 1, 1, 2, 1]
            by_vin = {v["vin"]: v for v in recall["vehicles"]}
            assert by_vin[b[0].vin]["repair_order_id"] == "RO-1"  # the later visit does not move it
            assert datetime.fromisoformat(by_vin[b[0].vin]["inspected_at"]) == t + timedelta(days=2)
            assert by_vin[b[1].vin]["replaced_at"] is None and by_vin[b[2].vin]["inspected_at"] is None
            seen = recall["reports_since_confirmation"]
            assert [x["report_id"] for x in seen["inspected_reports"]] == ["DR-AFTER"]
            assert [x["report_id"] for x in seen["not_inspected_reports"]] == ["DR-NOT"]
            assert sum(d["vehicles"] for d in recall["progress"]["by_dealer"]) == 12
            assert (await ops.get("/v1/recalls/RC-nope")).status_code == 404

            # The early warning counts a new defect of a vehicle not yet inspected (b[9]) in the
            # batch's open alert, and keeps that of a vehicle inspected in the recall before its
            # report (b[1]) apart, shown on the alert (40 days on: new defects, not duplicates).
            before = (await ops.get(f"/v1/alerts/{alert_b}")).json()["observed"]
            await publish(ns.settings, INTAKE, [
                defect_reported(b[1], "controller", "no_power", t + timedelta(days=40), "DR-LATE-INSPECTED"),
                defect_reported(b[9], "controller", "no_power", t + timedelta(days=40, hours=1), "DR-LATE-NOT"),
            ])

            async def alert_updated() -> dict[str, Any] | None:
                found = (await ops.get(f"/v1/alerts/{alert_b}")).json()
                apart = found["details"].get("after_inspection") or {}
                return found if "DR-LATE-NOT" in found["report_ids"] and apart.get("count") else None
            updated = await eventually(alert_updated, what="the alert's update with the new reports")
            assert "DR-LATE-INSPECTED" not in updated["report_ids"] and updated["observed"] == before + 1
            apart = updated["details"]["after_inspection"]
            assert apart["report_ids"] == ["DR-LATE-INSPECTED"] and apart["vins"] == [b[1].vin]

        # Each answer naming the owners (an export of customer data) is recorded: who, when, what, how many.
        conn = await db(ns, "quality")
        try:
            reads = [tuple(r) for r in await conn.fetch(
                "SELECT reader, role, route, subject, rows FROM owner_list_reads ORDER BY id")]
            affected = "GET /v1/alerts/{alert_id}/affected-vehicles"
            assert reads[:2] == [("supervisor-01", "supervisor", affected, alert_b, len(b)),
                                 ("quality-01", "quality", affected, alert_b, len(b))], reads
            assert ("ops-01", "ops", "GET /v1/recalls/{campaign_id}", campaign_id, len(b)) in reads
            assert not [r for r in reads if r[3] == "RC-nope"], "a 404 listed nobody"
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute("DELETE FROM owner_list_reads")
        finally:
            await conn.close()
    finally:
        await stack.stop()
