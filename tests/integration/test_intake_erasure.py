"""Customer erasure in intake (issue 19): the API and `aftersales erase` remove every personal
value of the customer from intake's schema (a control customer's stay, so the scan can fail),
CustomerErased goes out on the real intake topic, and facts about the customer that occurred
before the erasure, delivered late, file no personal field again; later ones are filed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from services.intake.domain import derived_customer_id
from tests.privacy_scan import find_in_schema
from tests.support import TEST_NOW, Namespace, Stack, TopicReader, api, count, db, manual_clock, publish
from tools.simulate import Customer, Fleet, envelope

pytestmark = pytest.mark.infra

NOW = TEST_NOW
C = Customer(customer_id="CUST-ERASE-C", name="司马懿然", phone="+8613911112222", address="上海市徐汇区漕溪北路88号3号楼",
             region="east", email="sima.yiran@example.cn")
D = Customer(customer_id="CUST-KEEP-D", name="诸葛明月", phone="+8613933334444", address="北京市海淀区中关村大街27号",
             region="north", email="zhuge.mingyue@example.cn")
E = Customer(customer_id="CUST-ERASE-E", name="欧阳青峰", phone="+8613977778888", address="广州市天河区体育西路5号",
             region="south", email="ouyang.qf@example.cn")
C_MOVED = "上海市闵行区莘庄镇都市路5001号"
C_COMMENT = "司马先生说师傅很耐心"
D_MOVED = "北京市朝阳区望京街9号"
D_COMMENT = "诸葛女士对保养很满意"
REASON = "客户依《个人信息保护法》第47条申请删除（工单 CRM-2026-11-0042）"


def _values(customer: Customer, moved: str, comment: str) -> dict[str, str]:
    assert customer.email
    return {"name": customer.name, "phone": customer.phone, "email": customer.email, "address": customer.address,
            "moved": moved, "comment": comment}


async def _counts(conn: Any) -> dict[str, int]:
    return {table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            for table in ("customers", "vehicles", "visits", "receipts")}


async def _outbox_drained(conn: Any) -> None:
    for _ in range(200):
        if not await conn.fetchval("SELECT count(*) FROM outbox"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("intake's outbox did not drain")


async def test_erasure_scrubs_intake_publishes_and_guards_late_facts(ns: Namespace, monkeypatch: Any) -> None:
    fleet = Fleet(seed=19)
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake",)).start()
    conn = await db(ns, "intake")
    try:
        vc, vd, ve = (fleet.vehicle(NOW - timedelta(days=50), c) for c in (C, D, E))
        # C called first from their phone (a phone-only file), then bought: the file takes it over
        await publish(ns.settings, "upstream.crm", [fleet.consultation(C, NOW - timedelta(days=60), "EV-S 续航",
                                                                       by_phone_only=True)])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("ConsultationRecorded", 1), timeout=60)
            c_pickup, d_pickup = fleet.pickup(vc, NOW - timedelta(days=20)), fleet.pickup(vd, NOW - timedelta(days=20))
            await publish(ns.settings, "upstream.sales", [fleet.sale(vc), fleet.sale(vd), fleet.sale(ve)])
            await canonical.wait_for(count("VehicleSold", 3), timeout=60)
            await publish(ns.settings, "upstream.dms", [
                c_pickup, d_pickup, fleet.receipt(c_pickup, NOW - timedelta(days=19), 5, C_COMMENT),
                fleet.receipt(d_pickup, NOW - timedelta(days=19), 5, D_COMMENT)])
            await publish(ns.settings, "upstream.crm", [
                fleet.customer_update(C, NOW - timedelta(days=10), address=C_MOVED),
                fleet.customer_update(D, NOW - timedelta(days=10), address=D_MOVED),
                fleet.complaint(C, NOW - timedelta(days=5), "车辆异响，司马懿然第三次投诉", vin=vc.vin)])
            await canonical.wait_for(lambda rs: count("VehiclePickedUp", 2)(rs) and count("ReceiptRecorded", 2)(rs)
                                     and count("ComplaintFiled", 1)(rs) and count("CustomerUpdated", 3)(rs), timeout=60)
            await _outbox_drained(conn)
            c_values, d_values = _values(C, C_MOVED, C_COMMENT), _values(D, D_MOVED, D_COMMENT)
            assert len(await find_in_schema(conn, "intake", c_values.values())) >= 5, "C is on file before"
            before = await _counts(conn)
            merged = derived_customer_id(C.phone)

            async with api(stack["intake"], "supervisor") as boss, api(stack["intake"], "agent") as agent, \
                    api(stack["intake"], "ops") as ops:
                first = await boss.post(f"/v1/customers/{C.customer_id}/erasure", json={"reason": REASON},
                                        headers={"Idempotency-Key": "erase-c-1"})
                again = await boss.post(f"/v1/customers/{C.customer_id}/erasure", json={"reason": REASON + "（重复）"})
                retried = await boss.post(f"/v1/customers/{C.customer_id}/erasure", json={"reason": REASON},
                                          headers={"Idempotency-Key": "erase-c-1"})
                refused = await agent.post(f"/v1/customers/{D.customer_id}/erasure", json={"reason": REASON})
                unknown = await boss.post("/v1/customers/NOBODY/erasure", json={"reason": REASON})
                too_short = await boss.post(f"/v1/customers/{D.customer_id}/erasure", json={"reason": "no"})
                register = (await boss.get("/v1/erasures", params={"customer_id": C.customer_id})).json()
                register_ops = (await ops.get("/v1/erasures")).json()
                agent_register = await agent.get("/v1/erasures")
                c_file = (await boss.get(f"/v1/customers/{C.customer_id}")).json()
                d_file = (await boss.get(f"/v1/customers/{D.customer_id}")).json()
                incomplete = (await boss.get("/v1/customers/incomplete")).json()
                log = (await boss.get("/v1/customer-file-reads", params={"customer_id": C.customer_id})).json()

            record = first.json()
            assert first.status_code == 201, first.text
            assert record["customer_id"] == C.customer_id and record["requested_by"] == "supervisor-01"
            assert record["reason"] == REASON and record["merged_customer_ids"] == [merged]
            assert record["erasure_id"].startswith("ERS-") and record["erased_at"] == record["requested_at"]
            assert again.status_code == 200 and again.json() == record, "erased before: the record on file"
            assert retried.status_code == 201 and retried.headers["Idempotency-Replayed"] == "true"
            for response, status in ((refused, 403), (unknown, 404), (too_short, 422), (agent_register, 403)):
                assert response.status_code == status, response.text
                assert response.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in too_short.json()["errors"]] == ["body.reason"]
            assert register["items"] == [record] and register["next_cursor"] is None
            assert register_ops["items"] == [{**record, "reason": None}], "ops see no reason"

            # intake holds none of C's values, all of D's (so the scan looks where they would be)
            assert await find_in_schema(conn, "intake", c_values.values()) == []
            for kind, value in d_values.items():
                assert await find_in_schema(conn, "intake", [value]), f"D's {kind} should still be on file"
            assert await _counts(conn) == before, "ids, vehicles, visits and receipts stay"
            assert c_file["erased_at"] is not None and c_file["name"] is None and c_file["phone"] is None
            assert c_file["email"] is None and c_file["address"] is None and c_file["history"].get("address") is None
            assert [v["vin"] for v in c_file["vehicles"]] == [vc.vin] and len(c_file["visits"]) == 1
            assert c_file["receipts"][0]["comments"] is None and c_file["receipts"][0]["rating"] == 5
            assert d_file["name"] == D.name and d_file["erased_at"] is None
            assert C.customer_id not in {f["customer_id"] for f in incomplete["items"]}, "nobody completes it"
            erased_entry = [e for e in log["items"] if e["route"] == "POST /v1/customers/{customer_id}/erasure"]
            assert len(erased_entry) == 1 and erased_entry[0]["reader"] == "supervisor-01"
            assert erased_entry[0]["detail"]["erasure_id"] == record["erasure_id"]

            erased = (await canonical.wait_for(count("CustomerErased", 1), timeout=30, settle=1.0))
            published = [r for r in erased if r.event_type == "CustomerErased"]
            assert len(published) == 1, "a repeated erasure publishes nothing"
            event = published[0]
            assert event.record.key == C.customer_id.encode() and event.envelope is not None
            assert event.data["customer_id"] == C.customer_id and event.data["erasure_id"] == record["erasure_id"]
            assert event.data["requested_by"] == "supervisor-01" and event.data["merged_customer_ids"] == [merged]
            assert event.envelope.occurred_at == datetime.fromisoformat(record["erased_at"]) == NOW
            assert datetime.fromisoformat(event.data["erased_at"]) == NOW, "the service's clock"
            raw = event.record.value.decode()
            assert not [v for v in (*c_values.values(), REASON) if v in raw], "no personal value, no reason on the bus"

            # Late facts about C that occurred before the erasure: filed without personal fields
            seen = len(canonical.records)
            late_pickup = fleet.pickup(vc, NOW - timedelta(days=15))
            await publish(ns.settings, "upstream.dms", [late_pickup])
            await publish(ns.settings, "upstream.sales", [fleet.sale(vc) | {"event_id": str(uuid.uuid4())}])
            await publish(ns.settings, "upstream.crm", [
                fleet.complaint(C, NOW - timedelta(days=3), f"{C.name}又来投诉，电话{C.phone}", by_phone_only=True),
                fleet.customer_update(C, NOW - timedelta(days=2), name=C.name, email=C.email, address=C.address),
                fleet.consultation(C, NOW - timedelta(days=1), "续保", by_phone_only=True)])
            await canonical.wait_for(lambda rs: count("VehiclePickedUp", 3)(rs) and count("ComplaintFiled", 2)(rs)
                                     and count("ConsultationRecorded", 2)(rs), timeout=60, settle=1.0)
            await _outbox_drained(conn)
            late = canonical.records[seen:]
            assert {r.event_type for r in late} >= {"VehiclePickedUp", "ComplaintFiled", "ConsultationRecorded"}
            for r in late:
                text = r.record.value.decode()
                assert not [v for v in c_values.values() if v in text], (r.event_type, text)
            pickup_event = next(r for r in late if r.event_type == "VehiclePickedUp")
            assert pickup_event.data["customer"]["customer_id"] == C.customer_id
            assert pickup_event.data["customer"]["name"] == "" and pickup_event.data["customer"]["phone"] is None
            complaint = next(r for r in late if r.event_type == "ComplaintFiled").data
            assert complaint["customer_id"] == C.customer_id, "the phone-only id of a file it took over: filed on C"
            assert complaint["phone"] is None and complaint["description"] == ""
            assert not [r for r in late if r.event_type in ("CustomerRegistered", "CustomerUpdated")]
            assert await find_in_schema(conn, "intake", c_values.values()) == []
            after_late = await _counts(conn)
            assert after_late == {**before, "visits": before["visits"] + 1}, "the late visit counts, no new file"

            # A fact that occurred after the erasure: the customer came back, and it is filed
            clock.advance(timedelta(hours=2))
            await publish(ns.settings, "upstream.crm", [
                fleet.customer_update(C, NOW + timedelta(hours=1), email="sima.back@example.cn")])
            await canonical.wait_for(lambda rs: any(r.event_type == "CustomerUpdated"
                                                    and r.data.get("email") == "sima.back@example.cn" for r in rs),
                                     timeout=60)
            assert await conn.fetchval("SELECT email FROM customers WHERE customer_id = $1",
                                       C.customer_id) == "sima.back@example.cn"

            # The command line: the same function, intake's database settings
            monkeypatch.setattr("aftersales.cli.load_settings", lambda **_: ns.settings)
            from aftersales.cli import app

            runner = CliRunner()
            by_cli = await asyncio.to_thread(runner.invoke, app, [
                "erase", "--customer", E.customer_id, "--reason", "客户书面申请删除 REQ-77", "--by", "ops.li"])
            assert by_cli.exit_code == 0, by_cli.output
            printed = orjson.loads(by_cli.stdout[by_cli.stdout.index("{"):])
            assert printed["customer_id"] == E.customer_id and printed["requested_by"] == "ops.li"
            cli_again = await asyncio.to_thread(runner.invoke, app, [
                "erase", "--customer", E.customer_id, "--reason", "客户书面申请删除 REQ-77"])
            assert cli_again.exit_code == 0 and printed["erasure_id"] in cli_again.stdout
            cli_unknown = await asyncio.to_thread(runner.invoke, app, [
                "erase", "--customer", "NOBODY", "--reason", "客户书面申请删除 REQ-78"])
            assert cli_unknown.exit_code == 2 and "no customer file 'NOBODY'" in cli_unknown.output
            await canonical.wait_for(count("CustomerErased", 2), timeout=30, settle=0.5)
            assert [r.data["customer_id"] for r in canonical.of_type("CustomerErased")] == [C.customer_id,
                                                                                          E.customer_id]
            e_values = [E.name, E.phone, E.address, E.email or ""]
            assert await find_in_schema(conn, "intake", e_values) == []
            assert await conn.fetchval("SELECT reader FROM customer_file_reads WHERE customer_id = $1 "
                                       "AND route = 'aftersales erase'", E.customer_id) == "ops.li"
            for kind, value in d_values.items():
                assert await find_in_schema(conn, "intake", [value]), f"D's {kind} is still on file"
    finally:
        await conn.close()
        await stack.stop()


async def test_an_erased_customer_is_not_revived_by_an_upstream_envelope_naming_the_old_phone(ns: Namespace) -> None:
    """A fact known only by a phone the erased file took over, re-sent by its producer with a new
    event id: filed on the erased file without the phone."""
    fleet = Fleet(seed=23)
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("intake",)).start()
    conn = await db(ns, "intake")
    try:
        c = Customer(customer_id="CUST-PHONE-ONLY", name="上官婉儿", phone="+8615012345678", address="西安市雁塔区1号",
                     region="west")
        pickup = fleet.pickup(fleet.vehicle(NOW - timedelta(days=40), c), NOW - timedelta(days=30))
        pickup["data"]["customer"].pop("customer_id")  # the DMS knew the phone only
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await publish(ns.settings, "upstream.dms", [pickup])
            await canonical.wait_for(count("VehiclePickedUp", 1), timeout=60)
            await publish(ns.settings, "upstream.crm", [
                fleet.customer_update(c, NOW - timedelta(days=20), phone=c.phone, name=c.name)])
            await canonical.wait_for(count("CustomerUpdated", 1), timeout=60)
            await _outbox_drained(conn)
            async with api(stack["intake"], "supervisor") as boss:
                record = (await boss.post(f"/v1/customers/{c.customer_id}/erasure",
                                          json={"reason": "客户来电要求删除 REQ-101"})).json()
            assert record["merged_customer_ids"] == [derived_customer_id(c.phone)]
            resent: dict[str, Any] = envelope("VehiclePickedUp", pickup["key"], pickup["data"],
                                              NOW - timedelta(days=30), "dms")
            resent["data"] = {**pickup["data"], "repair_order_id": "RO-RESENT-1"}
            await publish(ns.settings, "upstream.dms", [resent])
            await canonical.wait_for(count("VehiclePickedUp", 2), timeout=60)
            await _outbox_drained(conn)
            again = canonical.of_type("VehiclePickedUp")[-1]
            assert again.data["customer"]["customer_id"] == c.customer_id and again.data["customer"]["phone"] is None
            assert await find_in_schema(conn, "intake", [c.name, c.phone, c.address]) == []
            assert await conn.fetchval("SELECT count(*) FROM customers") == 1, "no phone-only file again"

            # another customer named by their own id, with that number now: theirs, filed as given
            x = Customer(customer_id="CUST-OTHER-X", name="夏侯云舒", phone=c.phone, address="西安市碑林区2号", region="west")
            await publish(ns.settings, "upstream.sales", [fleet.sale(fleet.vehicle(NOW - timedelta(days=10), x))])
            await canonical.wait_for(count("VehicleSold", 1), timeout=60)
            sold = canonical.of_type("VehicleSold")[0].data["customer"]
            assert sold["customer_id"] == x.customer_id and sold["name"] == x.name and sold["phone"] == x.phone
            assert await conn.fetchval("SELECT name FROM customers WHERE customer_id = $1", x.customer_id) == x.name
    finally:
        await conn.close()
        await stack.stop()
