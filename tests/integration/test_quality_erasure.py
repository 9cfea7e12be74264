"""Customer erasure in quality (issue 19, the erasure contract) on the real broker and database
(quality alone in process; the events it consumes published as intake, complaints and followup
publish them): CustomerErased scrubs the owner's name and the reports' free text of the customer
and of the file it merged from every quality table, the vehicles stay in service and in their
recall (the owner shown as erased), the figures do not move, a replay of the customer's old
events brings nothing back, a second CustomerErased is harmless, and what happens after the
erasure is filed as usual."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.quality import figures
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE
from tests.privacy_scan import find_in_schema
from tests.quality_events import (
    canonical,
    defect_reported,
    part_shipped,
    shipment_discrepancy,
    vehicle,
    vehicle_sold,
)
from tests.support import Namespace, Stack, TopicReader, api, day_at, db, eventually, iso_week, manual_clock, publish
from tools.simulate import Customer, Fleet, Vehicle

pytestmark = [pytest.mark.infra, pytest.mark.dates]

BATCH = {"batch": "B2610-CTRL-9", "supplier_id": "SUP-E"}


def person(fleet: Fleet, customer_id: str, name: str, phone: str, email: str, address: str) -> Customer:
    return dataclasses.replace(fleet.customer(), customer_id=customer_id, name=name, phone=phone, email=email,
                               address=address)


def values(c: Customer, note: str) -> dict[str, str]:
    """Each kind of personal value, as the scan looks for it."""
    assert c.email is not None
    return {"name": c.name, "phone": c.phone, "email": c.email, "address": c.address, "note": note}


def quoting(c: Customer, note: str) -> str:
    """A dealer's or a complaint's words that quote the owner (what quality's free text may hold)."""
    return f"车主{c.name}（电话{c.phone}，{c.email}，住{c.address}）反映：{note}"


def visit(fleet: Fleet, v: Vehicle, at: datetime, order: str, service_type: str, items: list[dict[str, Any]]
          ) -> dict[str, Any]:
    data = fleet.pickup(v, at, service_type=service_type, repair_order_id=order)["data"]
    data["items"] = items
    return canonical(INTAKE, "VehiclePickedUp", v.vin, data, at, "intake")


def complaint_opened(complaint_id: str, customer_id: str, filed_at: datetime) -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "customer_id": customer_id, "at": filed_at.isoformat(),
            "channel": "hotline", "category": "product_quality", "severity": "medium", "department": "quality",
            "description": "the car stalls", "filed_at": filed_at.isoformat(), "ack_due_at": filed_at.isoformat(),
            "resolve_due_at": filed_at.isoformat(), "part_category": "controller"}
    return canonical(COMPLAINTS, "ComplaintOpened", complaint_id, data, filed_at, "complaints")


def complaint_defect(complaint_id: str, report_id: str, reported_at: datetime, description: str) -> dict[str, Any]:
    """A complaint's defect report naming no vehicle: only its complaint links it to the customer."""
    data = {"report_id": report_id, "category": "controller", "failure_mode": "no_power",
            "reported_at": reported_at.isoformat(), "complaint_id": complaint_id, "description": description}
    return canonical(COMPLAINTS, "PartDefectReported", complaint_id, data, reported_at, "complaints")


def call_completed(v: Vehicle, campaign_id: str, at: datetime) -> dict[str, Any]:
    data = {"followup_id": f"F-{v.vin}", "kind": "campaign_call", "customer_id": v.customer.customer_id,
            "outcome": "reached", "completed_at": at.isoformat(), "attempts": 1, "vin": v.vin,
            "campaign_id": campaign_id, "booked_at": (at + timedelta(days=3)).isoformat()}
    return canonical(FOLLOWUP, "FollowUpCompleted", v.customer.customer_id, data, at, "followup")


def erased(customer_id: str, merged: list[str], at: datetime) -> dict[str, Any]:
    data = {"customer_id": customer_id, "erasure_id": "ER-0001", "erased_at": at.isoformat(),
            "requested_by": "supervisor-01", "merged_customer_ids": merged}
    return canonical(INTAKE, "CustomerErased", customer_id, data, at, "intake")




async def handled(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
    """Quality has processed these events (its inbox holds them)."""
    ids = [uuid.UUID(e["event_id"]) for e in events]

    async def done() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids) == len(ids))
    await eventually(done, what=f"{len(ids)} events handled")


def without_owner(vehicles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in x.items() if k not in ("owner_name", "owner_erased")} for x in vehicles]


async def test_erasure_scrubs_the_owner_and_keeps_the_vehicle_the_recall_and_the_figures(ns: Namespace) -> None:
    clock = manual_clock(day_at(10))
    stack = await Stack(ns, clock, services=("quality",)).start()
    conn = await db(ns, "quality")
    try:
        fleet = Fleet(seed=131)
        c = person(fleet, "CUST-ERASE-C", "欧阳翠花", "+8613912345678", "cuihua.ouyang@example.cn",
                   "上海市浦东新区张杨路1188弄7号")
        merged = person(fleet, "CUST-ERASE-M", "欧阳晓明", "+8613700011122", "xiaoming.oy@example.cn",
                        "上海市静安区南京西路66号")
        d = person(fleet, "CUST-KEEP-D", "司马长风", "+8615811122233", "changfeng.sima@example.cn",
                   "杭州市西湖区文三路90号")
        notes = {c.customer_id: "起步时控制器报警，车主说孩子在车上很害怕",
                 merged.customer_id: "仪表盘黑屏，车主在高速上被迫停车",
                 d.customer_id: "雨天后无法上电，车主要求更换整车"}
        sold = day_at(9, days=-120)
        fleet_vehicles = [vehicle(fleet, sold + timedelta(hours=3 * i), controller=BATCH) for i in range(12)]
        for i, owner in enumerate((c, merged, d)):
            fleet_vehicles[i].customer = owner
        vc, vm, vd = fleet_vehicles[:3]
        await publish(ns.settings, INTAKE, [vehicle_sold(fleet, v) for v in fleet_vehicles])
        first = day_at(9, days=-5)
        texts = {v.vin: quoting(v.customer, notes[v.customer.customer_id]) for v in (vc, vm, vd)}
        await publish(ns.settings, INTAKE, [
            defect_reported(v, "controller", "no_power", first + timedelta(hours=5 * i), f"DR-E{i:02d}",
                            **({"description": texts[v.vin]} if v.vin in texts else {}))
            for i, v in enumerate(fleet_vehicles[:8])])
        async with TopicReader(ns.settings, "aftersales.quality") as topic:
            await topic.wait_for(lambda rs: any(r.event_type == "QualityAlertRaised" and r.data["cell"]["kind"] == "batch"
                                                for r in rs), timeout=60, settle=1.0)
        [alert_id] = [r.data["alert_id"] for r in topic.of_type("QualityAlertRaised") if r.data["cell"]["kind"] == "batch"]

        # The owner seen again at a workshop visit; each owner's complaint with a defect report
        # naming no vehicle; parts shipped with a discrepancy (the accuracy figures).
        await publish(ns.settings, INTAKE, [
            visit(fleet, vc, day_at(11, days=-3), "RO-C1", "maintenance",
                  [{"code": "M-OIL", "description": "oil", "part_category": None}]),
            part_shipped("SH-E1", vd.dealer_id, day_at(9, days=-2), lines=4),
            shipment_discrepancy("SH-E1", 2, "wrong_part", day_at(15, days=-2)),
        ])
        await publish(ns.settings, COMPLAINTS, [complaint_opened("CMP-C", c.customer_id, day_at(9, days=-2)),
                                                complaint_opened("CMP-D", d.customer_id, day_at(9, days=-2))])
        await publish(ns.settings, COMPLAINTS, [
            complaint_defect("CMP-C", "DR-CMP-C", day_at(10, days=-2), quoting(c, notes[c.customer_id])),
            complaint_defect("CMP-D", "DR-CMP-D", day_at(10, days=-2), quoting(d, notes[d.customer_id]))])

        async def filed() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM reports") == 10
                        and await conn.fetchval("SELECT count(*) FROM complaints") == 2
                        and await conn.fetchval("SELECT count(*) FROM discrepancies") == 1
                        and await conn.fetchval("SELECT count(*) FROM vehicle_owners WHERE occurred_at > $1",
                                                day_at(0, days=-4)) == 1)
        await eventually(filed, what="the reports, complaints, visit and shipment filed")

        # The batch confirmed: the recall targets the three owners' vehicles; C is reached, the
        # merged file's vehicle inspected and replaced at a recall visit.
        t = clock.now()
        async with api(stack["quality"], "quality") as quality:
            ok = await quality.post(f"/v1/alerts/{alert_id}/confirm", json={"containment": "B2610-CTRL-9 on hold"})
            assert ok.status_code == 200, ok.text
            campaign_id = ok.json()["campaign_id"]
            recalled = (await quality.get(f"/v1/recalls/{campaign_id}")).json()
            owners = {v["vin"]: v["owner_name"] for v in recalled["vehicles"]}
            assert owners[vc.vin] == c.name and owners[vd.vin] == d.name and owners[vm.vin] == merged.name
        progress_events = [call_completed(vc, campaign_id, t + timedelta(hours=1))]
        await publish(ns.settings, FOLLOWUP, progress_events)
        visits = [visit(fleet, vm, t + timedelta(hours=2), "RO-M1", "recall",
                        [{"code": f"{campaign_id}:replace", "description": "controller replaced",
                          "part_category": "controller"}])]
        await publish(ns.settings, INTAKE, visits)
        await handled(conn, progress_events + visits)

        rules = stack["quality"].deps.rules
        week = iso_week(first)

        async def figures_now() -> dict[str, Any]:
            """Every figure quality reports that C's data could touch."""
            async with api(stack["quality"], "ops") as ops:
                recall = (await ops.get(f"/v1/recalls/{campaign_id}")).json()
                alert = (await ops.get(f"/v1/alerts/{alert_id}")).json()
                stats = (await ops.get("/v1/stats", params={"category": "controller", "from": "2020-01-01",
                                                             "to": (t + timedelta(days=1)).isoformat()})).json()
                affected = (await ops.get(f"/v1/alerts/{alert_id}/affected-vehicles")).json()
            return {
                "progress": recall["progress"], "recall_vehicles": without_owner(recall["vehicles"]),
                "reports_since": {k: recall["reports_since_confirmation"][k] for k in ("inspected", "not_inspected")},
                "alert": {k: alert[k] for k in ("observed", "expected", "report_ids", "vins", "state")},
                "stats": stats, "affected": {**affected, "vehicles": without_owner(affected["vehicles"])},
                "kpis": await figures.kpis(conn, t, rules),
                "weekly": await figures.quality_weekly(conn, week, rules),
                "accuracy": await figures.parts_accuracy_week(conn, iso_week(day_at(9, days=-2)), rules),
                "rows": {table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                         for table in ("vehicles", "vehicle_parts", "vehicle_owners", "reports", "recall_vehicles",
                                       "complaints", "shipments", "shipment_lines", "discrepancies", "alerts")},
            }

        before = await figures_now()
        assert before["progress"]["total"]["vehicles"] == 12 and before["progress"]["total"]["reached"] == 1
        assert before["progress"]["total"]["replaced"] == 1 and before["accuracy"]
        gone = [*values(c, notes[c.customer_id]).values(), *values(merged, notes[merged.customer_id]).values()]
        kept = values(d, notes[d.customer_id])
        assert {c.name, notes[c.customer_id], merged.name} <= {f.rsplit(": ", 1)[1]
                                                               for f in await find_in_schema(conn, "quality", gone)}

        # The erasure of C, which took over the merged file.
        erased_at = t + timedelta(days=1)
        erasure = erased(c.customer_id, [merged.customer_id], erased_at)
        await publish(ns.settings, INTAKE, [erasure])
        await handled(conn, [erasure])

        assert await find_in_schema(conn, "quality", gone) == []
        for kind, value in kept.items():
            assert await find_in_schema(conn, "quality", [value]), f"D's {kind} is gone too: the scan proves nothing"
        assert await figures_now() == before, "the erasure moved a figure"
        register = [tuple(r) for r in await conn.fetch(
            "SELECT customer_id, erasure_id, erased_at FROM erased_customers ORDER BY customer_id")]
        assert register == [(c.customer_id, "ER-0001", erased_at), (merged.customer_id, "ER-0001", erased_at)]

        # The recall still targets the vehicles, by VIN and customer id; the owner shows as erased.
        async with api(stack["quality"], "quality") as quality:
            for path in (f"/v1/recalls/{campaign_id}", f"/v1/alerts/{alert_id}/affected-vehicles"):
                answer = await quality.get(path)
                assert answer.status_code == 200, answer.text
                by_vin = {v["vin"]: v for v in answer.json()["vehicles"]}
                for v in (vc, vm):
                    assert by_vin[v.vin]["customer_id"] == v.customer.customer_id
                    assert by_vin[v.vin]["owner_name"] is None and by_vin[v.vin]["owner_erased"] is True
                assert by_vin[vd.vin]["owner_name"] == d.name and by_vin[vd.vin]["owner_erased"] is False
            assert by_vin[vm.vin]["replaced_at"] is not None and by_vin[vc.vin]["reached_at"] is not None

        # A replay of C's old events (new event ids, as a re-publication brings them) and a late
        # report on C's vehicle that occurred before the erasure: nothing of C comes back.
        late = t + timedelta(hours=12)
        replay = [vehicle_sold(fleet, vc), vehicle_sold(fleet, vm),
                  visit(fleet, vc, day_at(11, days=-3), "RO-C1", "maintenance",
                        [{"code": "M-OIL", "description": "oil", "part_category": None}]),
                  defect_reported(vc, "controller", "overheat", late, "DR-E-LATE", description=texts[vc.vin])]
        await publish(ns.settings, INTAKE, replay)
        complaint_replay = [complaint_defect("CMP-C", "DR-CMP-C2", late, quoting(c, notes[c.customer_id]))]
        await publish(ns.settings, COMPLAINTS, complaint_replay)
        await handled(conn, replay + complaint_replay)
        assert await conn.fetchval("SELECT count(*) FROM reports WHERE report_id IN ('DR-E-LATE', 'DR-CMP-C2')") == 2
        assert await find_in_schema(conn, "quality", gone) == []

        # After the erasure: C's old vehicle sold on to E is filed with E's name; C back as a
        # customer (a new purchase) is filed with the name given again.
        e = person(fleet, "CUST-NEW-E", "诸葛明月", "+8618600099988", "mingyue.zg@example.cn", "南京市鼓楼区中山路8号")
        resold = dataclasses.replace(vc, customer=e, sold_at=erased_at + timedelta(days=1))
        back = vehicle(fleet, erased_at + timedelta(days=2))
        back.customer = c
        later = [vehicle_sold(fleet, resold), vehicle_sold(fleet, back)]
        await publish(ns.settings, INTAKE, later)
        await handled(conn, later)

        async def owners_now() -> dict[str, tuple[str, str | None]]:
            return {r["vin"]: (r["customer_id"], r["name"]) for r in await conn.fetch(
                "SELECT vin, customer_id, name FROM vehicle_owners WHERE vin = ANY($1::text[])", [vc.vin, back.vin])}
        assert await owners_now() == {vc.vin: (e.customer_id, e.name), back.vin: (c.customer_id, c.name)}
        async with api(stack["quality"], "quality") as quality:
            by_vin = {v["vin"]: v for v in
                      (await quality.get(f"/v1/alerts/{alert_id}/affected-vehicles")).json()["vehicles"]}
            assert by_vin[vc.vin]["owner_erased"] is True, "the recall's owner as of the confirmation stays erased"
        still_gone = [v for v in gone if v != c.name]
        assert await find_in_schema(conn, "quality", still_gone) == []
        settled = await figures_now()

        # A second CustomerErased (a redelivery under another event id) changes nothing: the first
        # record stays, nothing of C comes back, and what C gave after the erasure stays too.
        again = erased(c.customer_id, [merged.customer_id], erased_at + timedelta(hours=5))
        await publish(ns.settings, INTAKE, [again])
        await handled(conn, [again])
        assert [tuple(r) for r in await conn.fetch(
            "SELECT customer_id, erasure_id, erased_at FROM erased_customers ORDER BY customer_id")] == register
        assert await find_in_schema(conn, "quality", still_gone) == []
        assert await owners_now() == {vc.vin: (e.customer_id, e.name), back.vin: (c.customer_id, c.name)}
        assert await figures_now() == settled
    finally:
        await conn.close()
        await stack.stop()
