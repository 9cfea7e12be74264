"""A complaint an agent takes on the phone carries the dealer it counts against (the dealer
scorecards' complaint rate, the complaints figures by dealer), as intake names it for the CRM's:
the named vehicle's dealer, else the dealer of the customer's latest visit before the call
(real Kafka and Postgres; intake and followup in process)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.console_support import eventually
from tests.support import Namespace, Stack, TopicReader, api, count, db, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


async def test_a_complaint_taken_on_the_phone_names_the_vehicles_or_the_last_visits_dealer(ns: Namespace) -> None:
    fleet = Fleet(seed=1601)
    car = fleet.vehicle(datetime(2025, 4, 1, tzinfo=CST))
    car.dealer_id = "D-SOLD"
    serviced = fleet.pickup(car, datetime(2026, 11, 10, 9, tzinfo=CST))
    serviced["data"]["dealer_id"] = "D-SERVICED"  # serviced at another dealer of the group
    stack = await Stack(ns, manual_clock(NOW), services=("intake", "followup")).start()
    try:
        await publish(ns.settings, "upstream.sales", [fleet.sale(car)])
        await publish(ns.settings, "upstream.dms", [serviced])
        followup_db = await db(ns, "followup")
        try:
            await eventually(lambda: followup_db.fetchval(
                "SELECT count(*) = 1 FROM visits WHERE dealer_id = 'D-SERVICED'"), what="the visit in followup")
            await eventually(lambda: followup_db.fetchval(
                "SELECT count(*) = 1 FROM vehicles WHERE dealer_id = 'D-SOLD'"), what="the sale in followup")
        finally:
            await followup_db.close()
        async with api(stack["followup"], "agent") as agent:
            for key, vin in (("about-the-car", car.vin), ("about-the-service", None)):
                taken = await agent.post("/v1/inbound-calls", headers={"Idempotency-Key": key}, json={
                    "customer_id": car.customer.customer_id, "kind": "complaint", "vin": vin,
                    "summary": "保养后车门异响" if vin else "前台服务态度不好", "category": "service_attitude",
                    "received_at": NOW.isoformat()})
                assert taken.status_code == 201, taken.text
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("ComplaintFiled", 2), timeout=60, settle=0.5)
        filed = {r.data.get("vin"): r.data for r in topic.of_type("ComplaintFiled")}
        assert filed[car.vin]["dealer_id"] == "D-SOLD", "the named vehicle's dealer"
        assert filed[None]["dealer_id"] == "D-SERVICED", "no vehicle named: the customer's latest visit"
        assert filed[None]["region"] == car.customer.region
    finally:
        await stack.stop()
