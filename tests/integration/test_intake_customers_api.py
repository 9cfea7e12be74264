"""Customer files through the staff API, built from real upstream events."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.support import Namespace, Stack, TopicReader, api, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


async def test_staff_find_files_by_phone_plate_vin_name_and_see_the_whole_file(ns: Namespace) -> None:
    fleet = Fleet(seed=51)
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        a = fleet.vehicle(NOW - timedelta(days=400))
        a.customer.name, a.customer.region = "欧阳娜", "east"
        old_phone, new_phone = a.customer.phone, "+8613912345678"
        pickup = fleet.pickup(a, NOW - timedelta(days=30))
        c = fleet.vehicle(NOW - timedelta(days=100))
        c_pickup = fleet.pickup(c, NOW - timedelta(days=5))
        c_pickup["data"]["plate"] = None
        c.customer.region = "east"
        b = fleet.customer()
        await publish(ns.settings, "upstream.sales", [fleet.sale(a)])
        await publish(ns.settings, "upstream.dms", [pickup, fleet.receipt(pickup, NOW - timedelta(days=29), rating=4),
                                                    c_pickup])
        await publish(ns.settings, "upstream.crm", [
            fleet.customer_update(a.customer, NOW - timedelta(days=10), phone=new_phone, address="west road 77"),
            fleet.complaint(b, NOW - timedelta(days=4), "门店服务态度差", by_phone_only=True),
        ])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(lambda rs: {"ReceiptRecorded", "ComplaintFiled", "CustomerUpdated"} <= {
                r.event_type for r in rs} and sum(r.event_type == "VehiclePickedUp" for r in rs) == 2, timeout=60)

        async with api(stack["intake"], "agent") as client:
            national_old = old_phone.removeprefix("+86")  # as a person would type it
            by_old_phone = (await client.get("/v1/customers", params={"phone": national_old})).json()
            by_new_phone = (await client.get("/v1/customers", params={"phone": new_phone})).json()
            by_plate = (await client.get("/v1/customers", params={"plate": a.plate})).json()
            by_vin = (await client.get("/v1/customers", params={"vin": a.vin.lower()})).json()
            by_name = (await client.get("/v1/customers", params={"name": "欧阳"})).json()
            page = page_one = (await client.get("/v1/customers", params={"region": "east", "limit": 1})).json()
            rest = (await client.get("/v1/customers", params={"region": "east", "limit": 1,
                                                               "cursor": page["next_cursor"]})).json()
            unfiltered = await client.get("/v1/customers")
            too_big_a_page = await client.get("/v1/customers", params={"region": "east", "limit": 51})
            bad_phone = await client.get("/v1/customers", params={"phone": "12"})
            whole = (await client.get(f"/v1/customers/{a.customer.customer_id}")).json()
            missing = await client.get("/v1/customers/NOBODY")
            incomplete = (await client.get("/v1/customers/incomplete")).json()

        for found in (by_old_phone, by_new_phone, by_plate, by_vin, by_name):
            assert [x["customer_id"] for x in found["items"]] == [a.customer.customer_id], found
        assert len(page["items"]) == 1 and len(rest["items"]) == 1 and rest["next_cursor"] is None, \
            "a and c (b is known by phone only, no region)"
        assert {x["customer_id"] for x in page["items"] + rest["items"]} == {a.customer.customer_id,
                                                                            c.customer.customer_id}
        assert unfiltered.status_code == 422 and "whole customer base is not listed" in unfiltered.json()["detail"]
        assert too_big_a_page.status_code == 422, "a search answers at most 50 files a page"
        assert bad_phone.status_code == 422 and "E.164" in bad_phone.json()["detail"]
        assert missing.status_code == 404 and "GET /v1/customers?phone" in missing.json()["detail"]

        assert whole["phone"] == new_phone and whole["phones"] == [new_phone, old_phone]
        assert whole["address"] == "west road 77"
        assert [h["value"] for h in whole["history"]["address"]] == [a.customer.address, "west road 77"]
        assert [v["vin"] for v in whole["vehicles"]] == [a.vin]
        assert whole["vehicles"][0]["warranty_until"].startswith(str((NOW - timedelta(days=400)).year + 3))
        assert [v["repair_order_id"] for v in whole["visits"]] == [pickup["data"]["repair_order_id"]]
        assert whole["receipts"][0]["rating"] == 4
        assert whole["complete"] is True and whole["missing"] == []

        listed = {f["customer_id"]: f for f in incomplete["items"]}
        assert len(listed) == 2 and incomplete["next_cursor"] is None
        assert listed[c.customer.customer_id]["missing"] == [f"plate ({c.vin})"]
        assert listed[c.customer.customer_id]["overdue"] is True, "visited 5 days ago: past the 2-day target"
        phone_only = next(f for cid, f in listed.items() if cid != c.customer.customer_id)
        assert phone_only["missing"] == ["address"] and phone_only["overdue"] is True

        async with api(stack["intake"], "agent") as client:
            # the convention: a list walked a file at a time gives each file once, in the sort asked
            whole = (await client.get("/v1/customers/incomplete", params={"sort": "-created_at"})).json()["items"]
            walked, cursor = [], None
            while True:
                page = (await client.get("/v1/customers/incomplete", params={
                    "sort": "-created_at", "limit": 1, **({"cursor": cursor} if cursor else {})})).json()
                walked += page["items"]
                if (cursor := page["next_cursor"]) is None:
                    break
            assert [f["customer_id"] for f in walked] == [f["customer_id"] for f in whole] and len(walked) == 2
            opened = [datetime.fromisoformat(f["created_at"]) for f in walked]
            assert opened == sorted(opened, reverse=True)
            for sort in ("created_at", "-updated_at", "customer_id"):  # every sort key walks the same two files
                seen, cursor = [], None
                while True:
                    page = (await client.get("/v1/customers", params={
                        "region": "east", "sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})})).json()
                    seen += [x["customer_id"] for x in page["items"]]
                    if (cursor := page["next_cursor"]) is None:
                        break
                assert sorted(seen) == sorted({a.customer.customer_id, c.customer.customer_id}), (sort, seen)
            by_dealer = (await client.get("/v1/customers", params={"dealer": a.dealer_id})).json()["items"]
            assert a.customer.customer_id in {x["customer_id"] for x in by_dealer}, "a dealer is a filter too"
            for params, field in (({"region": "east", "cursor": "%%%"}, "query.cursor"),
                                  ({"region": "east", "sort": "phone"}, "query.sort"),
                                  ({"region": "east", "sort": "-customer_id", "cursor": page_one["next_cursor"]},
                                   "query.cursor")):
                refused = await client.get("/v1/customers", params=params)
                assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
                assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text
            assert missing.headers["content-type"] == "application/problem+json" and missing.json()["status"] == 404

            # a consultation posted twice with one Idempotency-Key is recorded once, answered the same
            consultation = {"phone": "13800138123", "name": "周杰", "topic": "EV-S 续航", "region": "east"}
            key = {"Idempotency-Key": "consultation-zhou-1"}
            first = await client.post("/v1/consultations", json=consultation, headers=key)
            retried = await client.post("/v1/consultations", json=consultation, headers=key)
            assert first.status_code == retried.status_code == 202, first.text
            assert retried.json() == first.json() and retried.headers["Idempotency-Replayed"] == "true"
            other = await client.post("/v1/consultations", json={**consultation, "topic": "保养"}, headers=key)
            assert other.status_code == 422, "the same key for another request is refused"
        async with TopicReader(ns.settings, "upstream.crm") as crm:
            await crm.wait_for(lambda rs: any(r.event_type == "ConsultationRecorded" for r in rs), timeout=30,
                               settle=1.0)
        assert [r.data["consultation_id"] for r in crm.of_type("ConsultationRecorded")] == [
            first.json()["consultation_id"]]

        async with api(stack["intake"]) as anonymous, api(stack["intake"], "quality") as quality:
            assert (await anonymous.get("/v1/customers")).status_code == 401
            assert (await quality.get(f"/v1/customers/{a.customer.customer_id}")).status_code == 403
    finally:
        await stack.stop()


async def _file_after(events: list[tuple[str, dict]], customer_id: str) -> dict:
    from tests.support import create_namespace, drop_namespace

    ns = await create_namespace()
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        for topic, env in events:  # one by one, in this order
            await publish(ns.settings, topic, [env])
            async with TopicReader(ns.settings, "aftersales.intake") as canonical:
                await canonical.wait_for(lambda rs, e=env: any(
                    r.envelope and str(r.envelope.causation_id) == e["event_id"] for r in rs), timeout=30)
        async with api(stack["intake"], "supervisor") as client:
            response = await client.get(f"/v1/customers/{customer_id}")
        assert response.status_code == 200, response.text
        return response.json()
    finally:
        await stack.stop()
        await drop_namespace(ns)


async def test_a_pickup_before_the_sale_and_an_update_before_the_registration_end_in_the_same_file(
    infra: None,
) -> None:
    fleet = Fleet(seed=52)
    vehicle = fleet.vehicle(NOW - timedelta(days=300))
    sale = fleet.sale(vehicle)
    pickup = fleet.pickup(vehicle, NOW - timedelta(days=20))
    pickup["data"]["customer"].pop("customer_id")  # the DMS knows the customer by phone only
    update = fleet.customer_update(vehicle.customer, NOW - timedelta(days=10), address="north road 3",
                                   person_in_charge="张经理")
    receipt = fleet.receipt(pickup, NOW - timedelta(days=19))
    in_order = [("upstream.sales", sale), ("upstream.dms", pickup), ("upstream.dms", receipt),
                ("upstream.crm", update)]
    reversed_order = list(reversed(in_order))
    first = await _file_after(in_order, vehicle.customer.customer_id)
    second = await _file_after(reversed_order, vehicle.customer.customer_id)
    assert first == second
    assert first["address"] == "north road 3" and first["person_in_charge"] == "张经理"
    assert [v["repair_order_id"] for v in first["visits"]] == [pickup["data"]["repair_order_id"]]
    assert len(first["receipts"]) == 1 and first["known_only_by_phone"] is False
