"""Issue 19, least privilege for people beyond intake (docs/security.md): follow-up's, complaints' and
the notifier's own APIs hold a scoped agent (a console token with `regions` / `dealers`) to their scope, on the real
broker and database: 403 for a record outside it, 200 inside, their lists and queue narrowed; an
unscoped agent (the hotline's static token) and a supervisor keep seeing everything."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.notifier.config import NotifierSettings
from shared.events import new_event
from tests.complaints_fixtures import complaints_stack
from tests.console_support import as_person, keyed_ns
from tests.integration.test_notifier_delivery import Peers, peers
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    day_at,
    db,
    manual_clock,
    publish,
    working_day,
)
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns", "peers"]

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)




async def test_complaints_hold_a_scoped_agent_to_their_regions_and_dealers(keyed_ns: Namespace,
                                                                           tmp_path: Path) -> None:
    ns = keyed_ns
    stack = await complaints_stack(ns, manual_clock(NOW.isoformat()), tmp_path)
    try:
        async with api(stack["complaints"], "agent") as hotline, \
                as_person(ns, stack, "complaints", "wang.fang", "agent", regions=["east"]) as east_agent, \
                as_person(ns, stack, "complaints", "li.qiang", "agent", dealers=["D-WEST"]) as dealer_agent, \
                as_person(ns, stack, "complaints", "liu.yang", "supervisor") as supervisor:
            ids = {}
            for ref, region, dealer in (("SC-EAST", "east", "D-EAST"), ("SC-WEST", "west", "D-WEST"),
                                        ("SC-NONE", None, None)):
                filed = await hotline.post("/v1/complaints", json={
                    "complaint_ref": ref, "customer_id": f"CUST-{ref}", "channel": "hotline", "region": region,
                    "dealer_id": dealer, "description": "刹车异响"})
                assert filed.status_code == 201, filed.text
                ids[ref] = filed.json()["complaint_id"]
            doc = await hotline.post(f"/v1/complaints/{ids['SC-WEST']}/documents",
                                     json={"title": "call note", "content": "客户来电"})
            assert doc.status_code == 201, doc.text
            document_id = doc.json()["document_id"]

            # the east agent: the east case, not the west one nor one without a region or dealer
            assert (await east_agent.get(f"/v1/complaints/{ids['SC-EAST']}")).status_code == 200
            refused = await east_agent.get(f"/v1/complaints/{ids['SC-WEST']}")
            assert refused.status_code == 403, refused.text
            assert "outside your scope" in refused.json()["detail"] and "east" in refused.json()["detail"]
            assert "刹车" not in refused.text
            assert (await east_agent.get(f"/v1/complaints/{ids['SC-NONE']}")).status_code == 403
            commenting = await east_agent.post(f"/v1/complaints/{ids['SC-WEST']}/comments", json={"text": "看看"})
            assert commenting.status_code == 403, "nor may they work a case outside their scope"
            assert (await east_agent.get(f"/v1/complaints/{ids['SC-WEST']}/documents/{document_id}")).status_code == 403
            assert (await east_agent.get(
                f"/v1/complaints/{ids['SC-WEST']}/documents/{document_id}/content")).status_code == 403
            listed = (await east_agent.get("/v1/complaints")).json()  # no filter needed: the scope narrows it
            assert [i["complaint_id"] for i in listed["items"]] == [ids["SC-EAST"]] and listed["next_cursor"] is None
            assert (await east_agent.get("/v1/complaints", params={"q": "SC-WEST"})).json()["items"] == []

            # a dealer's agent sees the dealer's case
            assert (await dealer_agent.get(f"/v1/complaints/{ids['SC-WEST']}")).status_code == 200
            assert (await dealer_agent.get(
                f"/v1/complaints/{ids['SC-WEST']}/documents/{document_id}")).status_code == 200
            assert (await dealer_agent.get(f"/v1/complaints/{ids['SC-EAST']}")).status_code == 403
            assert [i["complaint_id"] for i in (await dealer_agent.get("/v1/complaints")).json()["items"]] == [
                ids["SC-WEST"]]

            # the hotline (no scope) and a supervisor: every case
            for everyone in (hotline, supervisor):
                assert (await everyone.get(f"/v1/complaints/{ids['SC-NONE']}")).status_code == 200
                assert {i["complaint_id"] for i in (await everyone.get("/v1/complaints", params={"open": "true"})
                                                    ).json()["items"]} == set(ids.values())
                assert (await everyone.get("/v1/complaints")).status_code == 422, "the whole list needs a filter"
            assert (await hotline.post(f"/v1/complaints/{ids['SC-WEST']}/comments",
                                       json={"text": "已联系"})).status_code == 200

            # the SLA steps behind the week and its compliance: a scoped agent sees their cases' only
            for ref in ("SC-EAST", "SC-WEST"):
                assert (await hotline.post(f"/v1/complaints/{ids[ref]}/acknowledge")).status_code == 200
            week = {"week": f"{NOW.isocalendar().year}-W{NOW.isocalendar().week:02d}"}
            steps = (await east_agent.get("/v1/reports/sla-compliance/cases", params=week)).json()["items"]
            assert [(s["complaint_id"], s["step"], s["outcome"]) for s in steps] == [
                (ids["SC-EAST"], "acknowledge", "met")]
            everyone_steps = (await supervisor.get("/v1/reports/sla-compliance/cases", params=week)).json()["items"]
            assert {s["complaint_id"] for s in everyone_steps} == {ids["SC-EAST"], ids["SC-WEST"]}
            figures = (await east_agent.get("/v1/reports/sla-compliance", params={"until": week["week"], "weeks": 1})
                       ).json()["weeks"][0]
            assert (figures["met"], figures["due"]) == (1, 1), "the figures of their scope"
    finally:
        await stack.stop()


@pytest.mark.dates
async def test_follow_up_holds_a_scoped_agent_to_their_customers(keyed_ns: Namespace) -> None:
    ns = keyed_ns
    d = working_day()
    clock = manual_clock(day_at(10, days=d))
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=1919)
        east = fleet.vehicle(day_at(0, days=-400))
        east.customer.region, east.dealer_id = "east", fleet.dealers[0]
        west = fleet.vehicle(day_at(0, days=-300))
        west.customer.region, west.dealer_id = "west", fleet.dealers[1]
        e_id, w_id = east.customer.customer_id, west.customer.customer_id
        await publish(ns.settings, "upstream.sales", [fleet.sale(east), fleet.sale(west)])
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, day_at(9, days=d - 4), mileage_km=21_000)
                                                    for v in (east, west)])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: {r.data["customer_id"] for r in rs if r.event_type == "FollowUpScheduled"
                                             and r.data["kind"] == "first_visit"} >= {e_id, w_id}, timeout=60)
        first = {r.data["customer_id"]: r.data["followup_id"] for r in topic.records
                 if r.event_type == "FollowUpScheduled" and r.data["kind"] == "first_visit"}
        service = stack["followup"]

        async with api(service, "agent") as hotline, \
                as_person(ns, stack, "followup", "wang.fang", "agent", regions=["east"]) as east_agent, \
                as_person(ns, stack, "followup", "li.qiang", "agent", dealers=[west.dealer_id]) as dealer_agent, \
                as_person(ns, stack, "followup", "liu.yang", "supervisor") as supervisor:
            for _ in range(150):  # the hotline's queue offers both customers once their calls are due
                queued = {i["customer_id"] for i in (await hotline.get("/v1/queue")).json()["items"]}
                if {e_id, w_id} <= queued:
                    break
                await asyncio.sleep(0.1)
            assert {e_id, w_id} <= queued

            # a single follow-up, the customer's calls and conversation: the east agent's own only
            assert (await east_agent.get(f"/v1/followups/{first[e_id]}")).status_code == 200
            refused = await east_agent.get(f"/v1/followups/{first[w_id]}")
            assert refused.status_code == 403, refused.text
            assert "outside your scope" in refused.json()["detail"] and w_id in refused.json()["detail"]
            for path in (f"/v1/customers/{w_id}/calls", f"/v1/customers/{w_id}/conversation"):
                assert (await east_agent.get(path)).status_code == 403, path
            assert (await east_agent.get(f"/v1/customers/{e_id}/calls")).status_code == 200
            assert (await east_agent.post(f"/v1/followups/{first[w_id]}/claim")).status_code == 403
            assert (await east_agent.post(f"/v1/customers/{w_id}/conversation/claim")).status_code == 403
            assert (await east_agent.get("/v1/followups/FU-NONE")).status_code == 404, "an unknown one stays 404"

            # their lists and queue: their customers only
            east_queue = (await east_agent.get("/v1/queue")).json()
            assert e_id in {i["customer_id"] for i in east_queue["items"]}
            assert w_id not in {i["customer_id"] for i in east_queue["items"]}
            east_talks = (await east_agent.get("/v1/queue/conversations")).json()["items"]
            assert w_id not in {t["customer_id"] for t in east_talks}
            assert (await east_agent.get("/v1/followups", params={"customer": w_id})).json()["items"] == []
            assert {f["customer_id"] for f in (await east_agent.get("/v1/followups")).json()["items"]} == {e_id}

            # the west dealer's agent: the customer their dealer sold to and serviced
            assert (await dealer_agent.get(f"/v1/followups/{first[w_id]}")).status_code == 200
            assert (await dealer_agent.get(f"/v1/customers/{w_id}/conversation")).status_code == 200
            assert {i["customer_id"] for i in (await dealer_agent.get("/v1/queue")).json()["items"]} == {w_id}

            # the hotline and a supervisor: everyone (the hotline names the customer to list their follow-ups)
            for everyone in (hotline, supervisor):
                assert (await everyone.get(f"/v1/followups/{first[w_id]}")).status_code == 200
                for customer_id in (e_id, w_id):
                    assert {f["customer_id"] for f in (await everyone.get("/v1/followups", params={
                        "customer": customer_id})).json()["items"]} == {customer_id}
            assert {e_id, w_id} <= {f["customer_id"] for f in (await supervisor.get("/v1/followups")).json()["items"]}
            unnamed = await hotline.get("/v1/followups")
            assert unnamed.status_code == 422 and unnamed.json()["errors"][0]["field"] == "query.customer", unnamed.text
            # the scoped agent works their own customer's call as before
            claimed = await east_agent.post(f"/v1/followups/{first[e_id]}/claim")
            assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "wang.fang", claimed.text
            assert (await east_agent.post(f"/v1/followups/{first[e_id]}/release")).status_code == 200
    finally:
        await stack.stop()


async def test_the_notifier_holds_a_scoped_agent_to_their_customers(keyed_ns: Namespace, peers: Peers) -> None:
    ns = keyed_ns
    settings = NotifierSettings(sms_gateway_url=peers.gateway.url, smtp_host="127.0.0.1", smtp_port=peers.mail.port,
                                dispatch_tick_seconds=0.05)
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake", "notifier"),
                        state={"notifier": {"settings": settings}}).start()
    try:
        fleet = Fleet(seed=1920)
        east = fleet.vehicle(NOW - timedelta(days=300))
        east.customer.region, east.dealer_id = "east", fleet.dealers[0]
        west = fleet.vehicle(NOW - timedelta(days=200))
        west.customer.region, west.dealer_id = "west", fleet.dealers[1]
        e_id, w_id = east.customer.customer_id, west.customer.customer_id
        await publish(ns.settings, "upstream.sales", [fleet.sale(east), fleet.sale(west)])
        # a file with a region and no vehicle yet: in scope by the file's region alone
        await publish(ns.settings, "aftersales.intake", [new_event(
            topic="aftersales.intake", event_type="CustomerRegistered", source="intake", occurred_at=NOW,
            data={"customer_id": "C-NORTH", "name": "赵敏", "phone": "+8613800138077", "region": "north",
                  "registered_from": "VehicleSold"}).to_dict()])
        conn = await db(ns, "notifier")
        try:
            for _ in range(300):  # the notifier's projections of the files and the sales
                known = await conn.fetchval("SELECT count(*) FROM contacts WHERE region IS NOT NULL")
                sold = await conn.fetchval("SELECT count(DISTINCT customer_id) FROM customer_scope")
                if known == 3 and sold == 2:
                    break
                await asyncio.sleep(0.1)
            assert (known, sold) == (3, 2)
        finally:
            await conn.close()

        notifier = stack["notifier"]
        async with api(notifier, "agent") as hotline, \
                as_person(ns, stack, "notifier", "wang.fang", "agent", regions=["east"]) as east_agent, \
                as_person(ns, stack, "notifier", "li.qiang", "agent", dealers=[west.dealer_id]) as dealer_agent, \
                as_person(ns, stack, "notifier", "zhao.lei", "agent", regions=["north"]) as north_agent, \
                as_person(ns, stack, "notifier", "liu.yang", "supervisor") as supervisor:
            assert (await east_agent.get(f"/v1/consent-log/{e_id}")).status_code == 200
            assert (await east_agent.get(f"/v1/opt-outs/{e_id}")).status_code == 200
            refused = await east_agent.get(f"/v1/consent-log/{w_id}")
            assert refused.status_code == 403 and "outside your scope" in refused.json()["detail"], refused.text
            assert (await east_agent.get(f"/v1/opt-outs/{w_id}")).status_code == 403
            opting = await east_agent.post("/v1/opt-outs", json={"customer_id": w_id, "channel": "sms"})
            assert opting.status_code == 403, "nor may they change the consent of a customer outside their scope"
            assert (await east_agent.delete(f"/v1/opt-outs/{w_id}/sms")).status_code == 403
            assert (await supervisor.get(f"/v1/opt-outs/{w_id}")).json()["opt_outs"] == [], "the refusal stored nothing"

            assert (await dealer_agent.get(f"/v1/consent-log/{w_id}")).status_code == 200, "their dealer sold the car"
            assert (await dealer_agent.get(f"/v1/consent-log/{e_id}")).status_code == 403
            assert (await north_agent.get("/v1/consent-log/C-NORTH")).status_code == 200
            assert (await north_agent.get(f"/v1/consent-log/{e_id}")).status_code == 403
            assert (await east_agent.get("/v1/consent-log/C-UNKNOWN")).status_code == 403, "unknown: not theirs"
            assert (await east_agent.get("/v1/letters")).json()["items"] == []

            for everyone in (hotline, supervisor):
                assert (await everyone.get(f"/v1/consent-log/{w_id}")).status_code == 200
                assert (await everyone.get("/v1/consent-log/C-UNKNOWN")).status_code == 404, "never heard of"
            opted = await dealer_agent.post("/v1/opt-outs", json={"customer_id": w_id, "channel": "sms",
                                                                   "reason": "客户要求"})
            assert opted.status_code == 201, opted.text
    finally:
        await stack.stop()
