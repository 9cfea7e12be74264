"""The quality service on the real broker and database (in process, manual clock): the
daily look with the sequential Poisson test, alert updates, parts-shipment accuracy and the weekly reports,
reports that arrive before their sale, defects counted once, and the API's guards."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.quality import store
from services.quality.config import QualityRules
from shared import metrics
from shared.runtime import ServiceRuntime
from tests.quality_events import (
    complaint_defect,
    complaint_opened,
    defect_reported,
    part_shipped,
    shipment_discrepancy,
    vehicle,
    vehicle_sold,
)
from tests.support import (
    TEST_NOW,
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    db,
    eventually,
    in_test_week,
    iso_week,
    manual_clock,
    publish,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

NOW = TEST_NOW
NEXT_MIDNIGHT = day_at(0, days=1)  # the next (daily) look, local midnight after the test moment
FIRST_LOOK = NEXT_MIDNIGHT + timedelta(seconds=1)


async def units_in_service(runtime: ServiceRuntime, category: str, units: int) -> None:
    async with api(runtime, "quality") as client:
        async def probe() -> bool:
            body = (await client.get("/v1/stats", params={"category": category, "from": "2020-01-01"})).json()
            return bool(body["units_in_service"]["units"] >= units)

        await eventually(probe, what=f"{units} {category} units in service")


async def reports_stored(ns: Namespace, n: int) -> None:
    conn = await db(ns, "quality")
    try:
        async def probe() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM reports") >= n)

        await eventually(probe, what=f"{n} reports stored")
    finally:
        await conn.close()


async def outbox_sent(ns: Namespace) -> None:
    conn = await db(ns, "quality")
    try:
        async def probe() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM outbox") == 0)

        await eventually(probe, what="the quality outbox to be sent")
    finally:
        await conn.close()


async def looks_fired_through(ns: Namespace, last: datetime, looks: int) -> None:
    """The daily looks after the first, up to the one due at `last`, have fired (`looks` of
    them), and the service's outbox is empty: whatever they raised is on the topic."""
    conn = await db(ns, "quality")
    try:
        async def probe() -> bool:
            fired = await conn.fetchval(
                "SELECT count(*) FROM timers WHERE kind = 'look' AND fired_at IS NOT NULL AND due_at > $1 "
                "AND due_at <= $2", NEXT_MIDNIGHT, last)
            return bool(fired == looks and await conn.fetchval("SELECT count(*) FROM outbox") == 0)

        await eventually(probe, what=f"{looks} looks up to {last.isoformat()} to fire and their events to be sent")
    finally:
        await conn.close()


async def test_the_daily_look_raises_poisson_alerts_on_the_batch_and_its_supplier_model_cell(ns: Namespace) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("quality",)).start()
    try:
        fleet = Fleet(seed=5)
        sold = day_at(9, days=-50)
        bad = [vehicle(fleet, sold + timedelta(hours=3 * i), model="EV-200",
                       controller={"batch": "B2610-C1", "supplier_id": "SUP-C"}) for i in range(100)]
        others = [vehicle(fleet, sold + timedelta(hours=3 * i)) for i in range(100)]
        await publish(ns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in bad + others])
        await units_in_service(stack["quality"], "controller", 200)
        modes = ("no_power", "overheat", "fault_code_e12")  # two of each: the burst rule stays quiet
        reports = [defect_reported(v, "controller", modes[i % 3], day_at(15, days=-10 + i), f"DR-P{i}")
                   for i, v in enumerate(bad[:6])]
        await publish(ns.settings, "aftersales.intake", reports)
        await reports_stored(ns, 6)
        await outbox_sent(ns)  # what handling the reports decided is on the topic

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            await quality.wait_for(lambda rs: True, timeout=5, settle=1.0)
            assert quality.of_type("QualityAlertRaised") == [], "the Poisson test waits for the next look"
            clock.set(FIRST_LOOK)
            await quality.wait_for(count("QualityAlertRaised", 2), timeout=30, settle=1.5)
        raised = quality.of_type("QualityAlertRaised")
        assert len(raised) == 2
        cells = sorted(r.data["cell"]["kind"] for r in raised)
        assert cells == ["batch", "supplier_model"]
        for r in raised:
            assert r.data["rule"] == "poisson" and not r.data["updated"]
            # The sequential test: its level is the whole monthly budget on a supplier x model cell
            # and its share on a batch cell (2 %, baseline_rates.yaml `early_warning`; the
            # likelihood-ratio tests take the rest, issue 20), and p_value (the rate per 31 days at
            # which a problem-free cell reaches such a count) is within it.
            share = QualityRules().early_warning().sequential_share if r.data["cell"]["kind"] == "batch" else 1.0
            assert share < 0.1 or r.data["cell"]["kind"] != "batch"
            assert r.data["observed"] == 6 and r.data["threshold"] == pytest.approx(0.01 * share)
            assert r.data["p_value"] < 1e-5 and 0 < r.data["expected"] < 0.5
            assert 3 <= r.data["critical_count"] <= 6 and r.data["alpha_month"] == pytest.approx(0.01)
            if share == 1.0:
                assert r.data["critical_count"] == 3
            assert sorted(r.data["report_ids"]) == [f"DR-P{i}" for i in range(6)]
            assert datetime.fromisoformat(r.data["as_of"]) == NEXT_MIDNIGHT
            # Caused by the latest report behind it (not by the timer), in its correlation.
            assert str(r.envelope.causation_id) == reports[-1]["event_id"]
            assert str(r.envelope.correlation_id) == reports[-1]["correlation_id"]
        sm = next(r for r in raised if r.data["cell"]["kind"] == "supplier_model")
        assert sm.data["cell"] == {"kind": "supplier_model", "category": "controller", "supplier_id": "SUP-C",
                                   "model": "EV-200"}
        async with api(stack["quality"], "quality") as client:
            detail = (await client.get(f"/v1/alerts/{sm.data['alert_id']}")).json()["details"]
        # The count crossed the boundary at the third report (w P(X = 2 | 0.17) = 0.002 <= 1 %).
        assert detail["test"] == "sequential" and detail["window_days"] == 31 and detail["look_interval_days"] == 1
        assert datetime.fromisoformat(detail["crossed_at"]) == day_at(15, days=-8)
        assert 0 < detail["tail_p_value"] < 1e-4 and 0 < detail["expected_per_window"] < 0.2

        # A further report updates both open alerts at once; so does a late one dated before it,
        # and the update is as of the cell's newest report. The next look raises nothing new.
        await publish(ns.settings, "aftersales.intake",
                      [defect_reported(bad[6], "controller", "overheat", FIRST_LOOK, "DR-P6")])
        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            await quality.wait_for(count("QualityAlertRaised", 4), timeout=30, settle=0.5)
            await publish(ns.settings, "aftersales.intake", [defect_reported(
                bad[7], "controller", "no_power", day_at(9, days=-9), "DR-P7")])
            await quality.wait_for(count("QualityAlertRaised", 6), timeout=30, settle=0.5)
            clock.set(FIRST_LOOK + timedelta(days=7))
            await looks_fired_through(ns, NEXT_MIDNIGHT + timedelta(days=7), 7)  # the week's looks ran ...
            await quality.wait_for(lambda rs: True, timeout=5, settle=0.5)  # ... and what they sent is read
        events = quality.of_type("QualityAlertRaised")
        updates = [r for r in events if r.data["updated"]]
        assert len(events) == 6 and len(updates) == 4
        assert {r.data["alert_id"] for r in updates} == {r.data["alert_id"] for r in raised}
        first, late = ([r for r in updates if r.data["revision"] == n] for n in (1, 2))
        assert all(r.data["observed"] == 7 and "DR-P6" in r.data["report_ids"] for r in first)
        assert all(r.data["observed"] == 8 and {"DR-P6", "DR-P7"} <= set(r.data["report_ids"])
                   and datetime.fromisoformat(r.data["as_of"]) == FIRST_LOOK for r in late)
    finally:
        await stack.stop()


async def test_alert_endpoints_need_a_token_and_the_quality_role_and_refuse_illegal_transitions(
    ns: Namespace,
) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("quality",)).start()
    try:
        fleet = Fleet(seed=9)
        batch = {"batch": "B2610-M3", "supplier_id": "SUP-A"}
        cars = [vehicle(fleet, day_at(0, days=-50) + timedelta(hours=i), motor=batch)
                for i in range(30)]
        await publish(ns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in cars])
        await units_in_service(stack["quality"], "motor", 30)
        await publish(ns.settings, "aftersales.intake", [
            defect_reported(v, "motor", "noise", day_at(8, days=-8) + timedelta(hours=i),
                            f"DR-M{i}") for i, v in enumerate(cars[:7])
        ])
        runtime = stack["quality"]

        async def one_alert() -> list[dict[str, Any]]:
            async with api(runtime, "ops") as ops:
                return list((await ops.get("/v1/alerts")).json()["items"])

        alert_id = (await eventually(one_alert, what="the burst alert"))[0]["alert_id"]

        async with api(runtime) as anonymous:
            for method, path in (("GET", "/v1/alerts"), ("GET", f"/v1/alerts/{alert_id}"), ("GET", "/v1/stats"),
                                 ("GET", "/v1/reports/weekly"), ("GET", "/v1/kpis"),
                                 ("POST", f"/v1/alerts/{alert_id}/acknowledge")):
                response = await anonymous.request(method, path)
                assert response.status_code == 401, (method, path)
        async with api(runtime, "agent") as agent:
            response = await agent.get("/v1/alerts")
            assert response.status_code == 403 and "quality" in response.json()["detail"]
        async with api(runtime, "ops") as ops:
            assert (await ops.get(f"/v1/alerts/{alert_id}")).status_code == 200
            assert (await ops.get("/v1/kpis")).status_code == 200
            assert (await ops.post(f"/v1/alerts/{alert_id}/acknowledge", json={})).status_code == 403, \
                "ops reads; only the quality department acts on alerts"

        async with api(runtime, "quality") as quality:
            too_early = await quality.post(f"/v1/alerts/{alert_id}/close", json={"note": "recalled"})
            assert too_early.status_code == 409
            assert too_early.headers["content-type"] == "application/problem+json"
            assert too_early.json()["allowed"] == ["acknowledge"] and too_early.json()["state"] == "raised"
            assert "acknowledge" in too_early.json()["detail"]
            read = await quality.get(f"/v1/alerts/{alert_id}")
            seen = read.headers["ETag"]
            acknowledged = await quality.post(f"/v1/alerts/{alert_id}/acknowledge", json={}, headers={"If-Match": seen})
            assert acknowledged.status_code == 200 and acknowledged.headers["ETag"] != seen
            stale = await quality.post(f"/v1/alerts/{alert_id}/close", json={"note": "lot quarantined"},
                                       headers={"If-Match": seen})
            assert stale.status_code == 412, "closed on the strength of what another inspector changed since"
            assert stale.json()["status"] == 412 and stale.headers["ETag"] == acknowledged.headers["ETag"]
            assert (await quality.get(f"/v1/alerts/{alert_id}")).json()["state"] == "acknowledged", "412 changed nothing"
            assert (await quality.get(f"/v1/alerts/{alert_id}")).headers["ETag"] == acknowledged.headers["ETag"]
            twice = await quality.post(f"/v1/alerts/{alert_id}/acknowledge")
            assert twice.status_code == 409 and twice.json()["allowed"] == ["close"]
            no_note = await quality.post(f"/v1/alerts/{alert_id}/close", json={})
            assert no_note.status_code == 422, "closing needs a containment note"
            assert (await quality.post(f"/v1/alerts/{alert_id}/close", json={"note": "lot quarantined"})).status_code == 200
            after = await quality.post(f"/v1/alerts/{alert_id}/acknowledge")
            assert after.status_code == 409 and after.json()["allowed"] == []
            missing = await quality.get("/v1/alerts/no-such-alert")
            assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
            assert missing.json()["type"] == "urn:aftersales:problem:not-found" and "no-such-alert" in missing.json()["detail"]
            assert (await quality.get("/v1/alerts", params={"state": "sleeping"})).status_code == 422
            # malformed on purpose: a week without its W, a moment without its offset
            assert (await quality.get("/v1/reports/weekly", params={"week": "2026-47"})).status_code == 422
            assert (await quality.get("/v1/stats", params={"from": "2026-11-01T00:00:00"})).status_code == 422
            listed = (await quality.get("/v1/alerts", params={"state": "closed"})).json()
            assert len(listed["items"]) == 1 and listed["items"][0]["close_note"] == "lot quarantined"

        # New reports on the contained cell reopen the closed alert with the new evidence (the
        # reports since it was closed), instead of raising a fresh alert on the same cell.
        clock.set(NOW + timedelta(days=2))
        await publish(ns.settings, "aftersales.intake", [
            defect_reported(v, "motor", "noise", NOW + timedelta(days=1, hours=i), f"DR-N{i}")
            for i, v in enumerate(cars[10:17])
        ])

        async def reopened() -> list[dict[str, Any]]:
            async with api(runtime, "ops") as ops:
                return [a for a in (await ops.get("/v1/alerts", params={"state": "open"})).json()["items"]]

        async def reopened_one() -> list[dict[str, Any]]:
            return [a for a in await reopened() if a["alert_id"] == alert_id]

        await eventually(reopened_one, what="the reopened alert")
        async with api(runtime, "quality") as quality:
            every = (await quality.get("/v1/alerts")).json()["items"]
            detail = (await quality.get(f"/v1/alerts/{alert_id}")).json()
        assert [a["alert_id"] for a in every if a["cell"] == detail["cell"]] == [alert_id], "no second alert on the cell"
        assert detail["state"] == "raised"
        assert sorted(detail["report_ids"]) == [f"DR-N{i}" for i in range(7)], "only the new evidence"
        assert detail["closed_at"] is None and detail["acknowledged_at"] is None
        # The evidence per month in service: the seven new reports, against the baseline's expectation.
        months = detail["by_month_in_service"]
        assert sum(m["observed"] for m in months) == 7 and [m["month"] for m in months] == list(range(len(months)))
        assert all(m["expected"] >= 0 for m in months) and sum(m["expected"] for m in months) > 0
        [history] = detail["details"]["reopenings"]
        assert history["close_note"] == "lot quarantined" and history["previous_observed"] == 7
        async with TopicReader(ns.settings, "aftersales.quality") as topic:
            await topic.wait_for(lambda rs: any(r.event_type == "QualityAlertRaised" and r.data["alert_id"] == alert_id
                                                and r.data["revision"] > 0 for r in rs), timeout=30)
        later = [r.data for r in topic.of_type("QualityAlertRaised") if r.data["alert_id"] == alert_id]
        reopening = [d for d in later if d["revision"] > 0]
        assert later[0]["revision"] == 0 and reopening, "raised once, then reopened (the same alert id)"
        assert all(d["updated"] and d["state"] == "raised" for d in reopening)
    finally:
        await stack.stop()


async def test_parts_accuracy_per_week_and_dealer_and_the_monday_reports(ns: Namespace) -> None:
    # The test moment's ISO week: shipments Tuesday to Thursday, now is its Friday, the quality
    # meeting's reports go out the Monday after.
    monday = in_test_week(0, 0)
    week, previous_week = iso_week(monday), iso_week(monday - timedelta(days=7))
    clock = manual_clock(in_test_week(4, 10))
    stack = await Stack(ns, clock, services=("quality",)).start()
    try:
        tue, wed, thu = (in_test_week(d, 10) for d in (1, 2, 3))
        events = [
            part_shipped("S1", "D001", tue, lines=10),
            shipment_discrepancy("S1", 2, "short", wed),
            shipment_discrepancy("S1", 2, "late", thu),  # one line, two discrepancies: one bad line
            shipment_discrepancy("S1", 5, "damaged", thu),
            part_shipped("S2", "D002", wed, lines=5),
            shipment_discrepancy("S3", 1, "wrong_part", thu),  # before its shipment
            part_shipped("S3", "D002", thu, lines=5),
            part_shipped("S4", "D001", tue - timedelta(days=7), lines=4),  # the week before
            shipment_discrepancy("S4", 4, "short", thu - timedelta(days=7)),
            complaint_opened("CP-1", "product_quality", wed, part_category="controller"),
            complaint_opened("CP-2", "product_quality", thu, part_category="frame"),
            complaint_opened("CP-3", "service_attitude", thu),
        ]
        for event in events:  # one at a time: the discrepancy for S3 really arrives first
            await publish(ns.settings, "aftersales.intake" if "Part" in event["event_type"] else
                          "aftersales.complaints", [event])
        runtime = stack["quality"]
        async with api(runtime, "quality") as client:
            async def weekly() -> dict[str, Any] | None:
                body = (await client.get("/v1/reports/weekly", params={"week": week})).json()
                done = body["parts_accuracy"]["lines"] == 20 and body["parts_accuracy"]["discrepant_lines"] == 3 \
                    and body["quality"]["complaints"] == 3
                return body if done else None

            body = await eventually(weekly, what="the week's shipments")
            parts = body["parts_accuracy"]
            assert parts["accuracy"] == pytest.approx(17 / 20) and parts["meets_target"] is False
            by_dealer = {d["dealer_id"]: d for d in parts["by_dealer"]}
            assert (by_dealer["D001"]["lines"], by_dealer["D001"]["discrepant_lines"]) == (10, 2)
            assert (by_dealer["D002"]["lines"], by_dealer["D002"]["discrepant_lines"]) == (10, 1)
            assert by_dealer["D001"]["accuracy"] == pytest.approx(0.8)
            assert by_dealer["D002"]["accuracy"] == pytest.approx(0.9)
            assert parts["discrepancies_by_kind"] == {"damaged": 1, "late": 1, "short": 1, "wrong_part": 1}
            assert body["quality"]["complaint_categories"] == {"product_quality": 2, "service_attitude": 1}
            assert body["quality"]["complaint_part_categories"] == {"controller": 1, "frame": 1}
            previous = (await client.get("/v1/reports/weekly", params={"week": previous_week})).json()["parts_accuracy"]
            assert (previous["lines"], previous["discrepant_lines"]) == (4, 1)

            kpis = (await client.get("/v1/kpis")).json()  # the last 30 days: both weeks
            assert kpis["parts_shipment_accuracy"]["lines"] == 24
            assert kpis["parts_shipment_accuracy"]["accuracy"] == pytest.approx(20 / 24)
            assert kpis["parts_shipment_accuracy"]["target"] == 0.98
        await eventually(lambda: _gauge_is(metrics.PARTS_SHIPMENT_ACCURACY, 20 / 24), what="the accuracy gauge")

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            clock.set(monday + timedelta(days=7, hours=8, seconds=1))  # Monday 08:00, the quality meeting
            await quality.wait_for(lambda rs: count("PartsAccuracyReport", 1)(rs)
                                   and count("QualityWeeklyReport", 1)(rs), timeout=30, settle=1.0)
        report = quality.of_type("PartsAccuracyReport")[0]
        assert report.record.key.decode() == week
        assert report.data["week_start"] == monday.date().isoformat()
        assert report.data["figures"]["accuracy"] == pytest.approx(0.85)
        assert report.data["figures"]["dealers_below_target"] == ["D001", "D002"]
        weekly_report = quality.of_type("QualityWeeklyReport")[0]
        assert weekly_report.data["figures"]["complaint_categories"] == {"product_quality": 2, "service_attitude": 1}
        assert len(quality.of_type("PartsAccuracyReport")) == 1, "one report per week"
    finally:
        await stack.stop()


async def _gauge_is(gauge: Any, value: float) -> bool:
    return bool(abs(gauge._value.get() - value) < 1e-9)


async def test_reports_before_their_sale_are_resolved_and_tested_once_the_sale_arrives_and_each_defect_counts_once(
    ns: Namespace,
) -> None:
    clock = manual_clock(NOW)
    stack = await Stack(ns, clock, services=("quality",)).start()
    conn = await db(ns, "quality")
    try:
        fleet = Fleet(seed=21)
        sold = day_at(9, days=-50)
        models = ("EV-100", "EV-200", "Cargo-3T", "City-S")
        late = [vehicle(fleet, sold + timedelta(hours=6 * i), model=models[i % 4],
                        rear_axle={"batch": "B2610-RA9", "supplier_id": "SUP-D"}) for i in range(60)]
        # 1. A dealer's reports on a batch whose sales are not known yet: no exposure, no test.
        modes = ("leak", "noise", "bearing", "crack")
        await publish(ns.settings, "aftersales.intake", [
            defect_reported(v, "rear_axle", modes[i], day_at(9, days=-4 + i), f"DR-A{i}")
            for i, v in enumerate(late[:4])
        ])
        # 2. A customer's complaint names only the vehicle and the category; a dealer reports
        #    the same defect two days later.
        solo = vehicle(fleet, sold, frame={"batch": "B2610-F2", "supplier_id": "SUP-B"})
        await publish(ns.settings, "aftersales.complaints",
                      [complaint_defect(solo.vin, "frame", "crack", day_at(9, days=-10), "CR-1")])
        await reports_stored(ns, 5)
        row = await conn.fetchrow("SELECT resolution, batch, counted FROM reports WHERE report_id = 'CR-1'")
        assert (row["resolution"], row["batch"], row["counted"]) == ("awaiting_sale", None, True)

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            clock.set(FIRST_LOOK)
            await quality.wait_for(lambda rs: True, timeout=5, settle=2.0)
        assert quality.of_type("QualityAlertRaised") == []
        dirty = await conn.fetchval("SELECT dirty FROM cells WHERE kind = 'batch' AND batch = 'B2610-RA9'")
        assert dirty, "a cell with reports and no known units waits for its sales"

        await publish(ns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in [*late, solo]])
        await units_in_service(stack["quality"], "rear_axle", 61)
        # Family-wise control counts every cell with units in service, of both kinds.
        sold_cars = [*late, solo]
        batches = {(p["category"], p["batch"]) for v in sold_cars for p in v.parts}
        supplier_models = {(p["category"], p["supplier_id"], v.model) for v in sold_cars for p in v.parts}
        assert await store.monitored_cells(conn) == len(batches) + len(supplier_models)
        await publish(ns.settings, "aftersales.intake", [defect_reported(
            solo, "frame", "crack", day_at(9, days=-8), "DR-F1")])
        await reports_stored(ns, 6)

        async def resolved() -> bool:
            r = await conn.fetchrow("SELECT resolution, batch, supplier_id FROM reports WHERE report_id = 'CR-1'")
            return (r["resolution"], r["batch"], r["supplier_id"]) == ("from_vehicle", "B2610-F2", "SUP-B")

        await eventually(resolved, what="the complaint resolved from the sale")
        dealer = await conn.fetchrow("SELECT counted, duplicate_of FROM reports WHERE report_id = 'DR-F1'")
        assert (dealer["counted"], dealer["duplicate_of"]) == (False, "CR-1"), "one defect, two channels"
        async with api(stack["quality"], "ops") as client:
            stats = (await client.get("/v1/stats", params={"category": "frame",
                                                           "from": day_at(0, days=-19).date().isoformat()})).json()
        assert stats["defects"] == 1 and stats["by_batch"] == [{"category": "frame", "batch": "B2610-F2", "defects": 1}]
        assert stats["reports"]["duplicates"] == 1

        async with TopicReader(ns.settings, "aftersales.quality") as quality:
            clock.set(FIRST_LOOK + timedelta(days=7))  # the next look sees the units now
            await quality.wait_for(count("QualityAlertRaised", 1), timeout=30, settle=1.5)
        raised = quality.of_type("QualityAlertRaised")
        assert [r.data["cell"] for r in raised] == [{"kind": "batch", "category": "rear_axle", "batch": "B2610-RA9"}]
        assert raised[0].data["observed"] == 4 and raised[0].data["units"] == 60
    finally:
        await conn.close()
        await stack.stop()
