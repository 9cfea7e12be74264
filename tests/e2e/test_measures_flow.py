"""Rectification measures end to end on the real broker and database, with a controlled clock:
two measures recorded (one answering a quality alert on rear axles, one the complaint category
repair_quality), reminded when due (the durable timer on the project's clock → MeasureDue →
the owner's e-mail), verified, and their effect computed from the events the complaints
service consumed: the workshop visits (VehiclePickedUp), the defect reports
(PartDefectReported) and the complaints (ComplaintFiled). The rear axles' 12 → 2 defect
reports on the same visits is a decrease; repair quality's 3 → 2 complaints is not an effect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aftersales.replay import replay
from services.complaints.config import MeasureRules
from services.complaints.measures import Period, effect, windows
from services.notifier.config import NotifierSettings
from shared.clock import Clock
from tests.complaints_fixtures import complaint_filed, complaints_state
from tests.e2e.test_complaint_sla_on_the_working_calendar import Mailbox, mail
from tests.support import Namespace, Stack, TopicReader, api, count, db, manual_clock, publish
from tools.simulate import envelope

__all__ = ["mail"]  # the fixture, imported
pytestmark = [pytest.mark.infra]

SH = ZoneInfo("Asia/Shanghai")
COMPLAINTS = "aftersales.complaints"
RECORDED = datetime(2026, 3, 2, 10, 0, tzinfo=SH)  # fixed dates: nothing here depends on today
DUE = RECORDED + timedelta(days=14)
AFTER_END = DUE + timedelta(weeks=8)


async def _stack(ns: Namespace, clock: Clock, documents: Path, mail: Mailbox) -> Stack:
    state = complaints_state(documents)
    state["notifier"] = {"settings": NotifierSettings(smtp_host="127.0.0.1", smtp_port=mail.port,
                                                      dispatch_tick_seconds=0.05)}
    return await Stack(ns, clock, services=("complaints", "notifier"), state=state).start()


def _spread(n: int, start: datetime, end: datetime) -> list[datetime]:
    step = (end - start) / (n + 1)
    return [start + step * (i + 1) for i in range(n)]


def _pickups(tag: str, moments: list[datetime]) -> list[dict[str, Any]]:
    return [envelope("VehiclePickedUp", f"LMEAS{tag}{i:011d}", {
        "repair_order_id": f"RO-{tag}-{i}", "vin": f"LMEAS{tag}{i:011d}", "dealer_id": "D-SH-01",
        "picked_up_at": at.isoformat(), "service_type": "maintenance",
        "items": [{"code": "M1", "description": "保养"}], "mileage_km": 12000, "advisor_id": "SA-1",
        "customer": {"customer_id": f"CUST-{tag}-{i}", "name": "王伟", "address": "上海市", "region": "east"},
    }, at, "intake") for i, at in enumerate(moments)]


def _defects(tag: str, moments: list[datetime], category: str = "rear_axle") -> list[dict[str, Any]]:
    return [envelope("PartDefectReported", f"P-{tag}-{i}", {
        "report_id": f"DR-{tag}-{i}", "part_no": "RA-100", "category": category, "batch": "B-7",
        "supplier_id": "SUP-1", "model": "E5", "failure_mode": "noise", "reported_by": "dealer",
        "reported_at": at.isoformat()}, at, "intake") for i, at in enumerate(moments)]


def _complaints(tag: str, moments: list[datetime]) -> list[dict[str, Any]]:
    return [complaint_filed(f"CRM-{tag}-{i}", at, customer_id=f"CUST-C{tag}{i}", source="intake", followup_id=None,
                            channel="hotline", category="repair_quality", severity="low",
                            description="修理后问题仍未解决") for i, at in enumerate(moments)]


def _alert(raised_at: datetime) -> dict[str, Any]:
    return envelope("QualityAlertRaised", "ALERT-RA-7", {
        "alert_id": "ALERT-RA-7", "cell": {"category": "rear_axle", "batch": "B-7", "supplier_id": "SUP-1"},
        "rule": "poisson", "observed": 9, "expected": 2.1, "report_ids": ["DR-B-0"], "vins": [],
        "raised_at": raised_at.isoformat(), "title": "后桥 B-7 批次异响"}, raised_at, "quality")


async def _measures(client: Any, **params: str) -> dict[str, Any]:
    listed = await client.get("/v1/measures", params=params)
    assert listed.status_code == 200, listed.text
    return listed.json()  # type: ignore[no-any-return]


async def test_a_measure_is_recorded_reminded_when_due_verified_and_its_effect_measured_from_events(
    ns: Namespace, tmp_path: Path, mail: Mailbox,
) -> None:
    log_from = datetime.now(UTC) - timedelta(seconds=5)  # the replay's range is in log (wall-clock) time
    clock = manual_clock(RECORDED)
    stack = await _stack(ns, clock, tmp_path / "documents", mail)
    try:
        # The 8 weeks before the measures: 150 visits, 12 rear-axle defects, 3 repair-quality complaints.
        before = (RECORDED - timedelta(weeks=8), RECORDED)
        await publish(ns.settings, "aftersales.intake",
                      _pickups("B", _spread(150, *before)) + _defects("B", _spread(12, *before))
                      + _complaints("B", _spread(3, *before)))
        await publish(ns.settings, "aftersales.quality", [_alert(RECORDED - timedelta(days=3))])
        conn = await db(ns, "complaints")
        try:
            for _ in range(300):
                got = await conn.fetchrow("""SELECT (SELECT count(*) FROM measure_visits) v,
                    (SELECT count(*) FROM measure_defects) d, (SELECT count(*) FROM cases) c,
                    (SELECT count(*) FROM measure_alerts) a""")
                if tuple(got) == (150, 12, 3, 1):
                    break
                await asyncio.sleep(0.1)
            assert tuple(got) == (150, 12, 3, 1)
        finally:
            await conn.close()

        async with api(stack["complaints"], "quality") as quality, \
                api(stack["complaints"], "supervisor") as supervisor, api(stack["complaints"], "agent") as agent:
            # Refused, nothing stored: an alert never raised, an owner outside the directory, a past due date.
            base = {"title": "后桥装配扭矩复核", "action": "每台车后桥螺栓按新扭矩复紧并记录", "owner": "qi-supervisor-01",
                    "due_at": DUE.isoformat()}
            for wrong, says in (({"target_kind": "alert", "alert_id": "NO-SUCH"}, "is not known here"),
                                ({"target_kind": "alert", "alert_id": "ALERT-RA-7", "owner": "nobody"},
                                 "not in the complaints directory"),
                                ({"target_kind": "alert", "alert_id": "ALERT-RA-7",
                                  "due_at": (RECORDED - timedelta(days=1)).isoformat()}, "is not after the recording"),
                                ({"target_kind": "category", "category": "paint"}, "category")):
                refused = await quality.post("/v1/measures", json=base | wrong)
                assert refused.status_code == 422 and says in refused.text, refused.text
            assert (await agent.post("/v1/measures", json=base | {"target_kind": "alert",
                                                                 "alert_id": "ALERT-RA-7"})).status_code == 403
            assert (await _measures(quality))["items"] == []

            axle = await quality.post("/v1/measures", json=base | {"target_kind": "alert", "alert_id": "ALERT-RA-7"},
                                      headers={"Idempotency-Key": "axle-1"})
            again = await quality.post("/v1/measures", json=base | {"target_kind": "alert", "alert_id": "ALERT-RA-7"},
                                       headers={"Idempotency-Key": "axle-1"})
            assert axle.status_code == 201 and again.status_code == 201, (axle.text, again.text)
            assert again.headers["idempotency-replayed"] == "true" and again.json() == axle.json()
            repair = await supervisor.post("/v1/measures", json={
                "target_kind": "category", "category": "repair_quality", "title": "维修后质检签字",
                "action": "维修完工后由质检员试车并签字", "owner": "as-supervisor-01", "due_at": DUE.isoformat()})
            assert repair.status_code == 201, repair.text
            axle_id, repair_id = axle.json()["measure_id"], repair.json()["measure_id"]
            # One checked before its due date: its reminder is cancelled.
            early = await supervisor.post("/v1/measures", json={
                "target_kind": "category", "category": "price", "title": "工时价格公示", "action": "前台公示工时单价",
                "owner": "cs-supervisor-01", "due_at": DUE.isoformat()})
            early_id = early.json()["measure_id"]
            done_early = await supervisor.post(f"/v1/measures/{early_id}/verify", json={
                "verdict": "effective", "note": "公示牌已张贴"})
            assert done_early.status_code == 200 and done_early.json()["effect"]["change"] == "after_not_started"
            shown = axle.json()
            assert (shown["category"], shown["status"], shown["effect"]["change"]) == (
                "rear_axle", "open", "after_not_started")
            assert (shown["effect"]["before"]["events"], shown["effect"]["before"]["visits"]) == (12, 150)

        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("MeasureRecorded", 3), timeout=30)
        recorded = {r.data["measure_id"]: r.data for r in topic.of_type("MeasureRecorded")}
        assert recorded[axle_id]["category"] == "rear_axle" and recorded[axle_id]["alert_id"] == "ALERT-RA-7"

        # Not before the due date; then once, to the owner.
        clock.set(DUE - timedelta(minutes=1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("MeasureRecorded", 3), timeout=30, settle=1.5)
        assert topic.of_type("MeasureDue") == []
        clock.set(DUE + timedelta(minutes=1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("MeasureDue", 2), timeout=30, settle=1.5)
        # the one checked early is not reminded
        assert sorted(r.data["owner"] for r in topic.of_type("MeasureDue")) == ["as-supervisor-01", "qi-supervisor-01"]

        def reminded() -> set[str]:
            return {to for m in mail.store.mails if m.subject.startswith("【整改措施到期】") for to in m.rcpt_to}

        for _ in range(200):
            if len(reminded()) == 2:
                break
            await asyncio.sleep(0.1)
        assert reminded() == {"qi-supervisor-01@aftersales.example", "as-supervisor-01@aftersales.example"}

        # The 8 weeks after the due date: 150 visits again, 2 rear-axle defects, 2 repair complaints.
        after = (DUE, AFTER_END)
        clock.set(AFTER_END + timedelta(days=1))
        await publish(ns.settings, "aftersales.intake",
                      _pickups("A", _spread(150, *after)) + _defects("A", _spread(2, *after))
                      + _complaints("A", _spread(2, *after)))
        async with api(stack["complaints"], "quality") as quality, \
                api(stack["complaints"], "supervisor") as supervisor:
            for _ in range(300):
                listing = await _measures(quality)
                by_id = {m["measure_id"]: m for m in listing["items"]}
                # every input counted: the visits, the axle's defects and the repair complaints
                # arrive on different partitions, in any order
                axle_after, repair_after = by_id[axle_id]["effect"]["after"], by_id[repair_id]["effect"]["after"]
                if (axle_after["visits"], axle_after["events"], repair_after["events"]) == (150, 2, 2):
                    break
                await asyncio.sleep(0.1)
            assert (await supervisor.get("/v1/reports/measures")).json()["counts"]["overdue"] == 2
            axle_effect = by_id[axle_id]["effect"]
            assert (axle_effect["after"]["events"], axle_effect["after"]["visits"]) == (2, 150)
            assert axle_effect["change"] == "decreased" and axle_effect["ci_high"] < 1
            assert by_id[repair_id]["effect"]["change"] == "no_significant_change"
            assert (by_id[repair_id]["effect"]["before"]["events"], by_id[repair_id]["effect"]["after"]["events"]) == (
                3, 2)

            verified = await quality.post(f"/v1/measures/{axle_id}/verify", json={
                "verdict": "effective", "note": "抽查 20 台，扭矩全部合格；后桥异响报告明显减少"})
            assert verified.status_code == 200, verified.text
            assert verified.json()["status"] == "verified"
            assert verified.json()["verification"]["verdict"] == "effective"
            twice = await quality.post(f"/v1/measures/{axle_id}/verify", json={"verdict": "effective", "note": "再次"})
            assert twice.status_code == 409 and "a new check is a new measure" in twice.text
            unknown = await supervisor.post("/v1/measures/NOPE/verify", json={"verdict": "effective", "note": "x"})
            assert unknown.status_code == 404
            await supervisor.post(f"/v1/measures/{repair_id}/verify", json={
                "verdict": "not_effective", "note": "投诉仅从 3 起降到 2 起，统计上不能说明有效；继续观察"})

            # The month's list the monthly summary reads: recorded in March, in force in March;
            # settled in May, so not in June's.
            march = await _measures(supervisor, month="2026-03")
            assert {m["measure_id"] for m in march["items"]} == {axle_id, repair_id, early_id}
            as_of = (await supervisor.get("/v1/reports/measures", params={"month": "2026-03"})).json()["as_of"]
            assert datetime.fromisoformat(as_of) == datetime(2026, 4, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
            assert (await _measures(supervisor, month="2026-06"))["items"] == []
            assert (await supervisor.get("/v1/measures", params={"month": "2026-13"})).status_code == 422
            assert len((await _measures(supervisor, status="verified"))["items"]) == 3
            assert (await supervisor.get("/v1/reports/measures")).json()["counts"] == {
                "open": 0, "due": 0, "overdue": 0, "verified": 3}

        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("MeasureVerified", 3), timeout=30)
        checked = {r.data["measure_id"]: r.data for r in topic.of_type("MeasureVerified")}
        assert checked[axle_id]["verdict"] == "effective" and checked[axle_id]["change"] == "decreased"
        assert (checked[axle_id]["events_before"], checked[axle_id]["events_after"]) == (12, 2)
        assert checked[repair_id]["change"] == "no_significant_change"
        assert all(r.envelope.causation_id is not None for r in topic.of_type("MeasureDue"))
        measured_at = datetime.fromisoformat(checked[axle_id]["verified_at"])

        # All from events: the effect again from the log alone (the measure's MeasureRecorded, the
        # visits and defect reports on aftersales.intake) through the same rule, as the service kept it.
        async with TopicReader(ns.settings, "aftersales.intake") as intake:
            await intake.wait_for(count("VehiclePickedUp", 300), timeout=30)
        m = recorded[axle_id]
        rules = MeasureRules()
        spans = windows(datetime.fromisoformat(m["recorded_at"]), datetime.fromisoformat(m["due_at"]), measured_at,
                        rules.window)

        def n(event_type: str, field: str, w: Any, category: str | None = None) -> int:
            return sum(1 for r in intake.of_type(event_type)
                       if w.starts_at <= datetime.fromisoformat(r.data[field]) < w.ends_at
                       and category in (None, r.data.get("category")))

        again = effect(*(Period(w.starts_at, w.ends_at, n("PartDefectReported", "reported_at", w, m["category"]),
                                n("VehiclePickedUp", "picked_up_at", w)) for w in spans), rules.confidence)
        assert (again.before.events, again.before.visits, again.after.events, again.after.visits, again.change) == (
            checked[axle_id]["events_before"], checked[axle_id]["visits_before"], checked[axle_id]["events_after"],
            checked[axle_id]["visits_after"], checked[axle_id]["change"])
        assert again.p_value == pytest.approx(checked[axle_id]["p_value"])
    finally:
        await stack.stop()

    # The replay rebuilds the counts the effect is measured with from the log, and they agree. (The
    # cases' SLA deadlines are left out: this stack runs the SLA around the clock, the replay on the
    # shipped working calendar.)
    report = await replay(ns.settings, "complaints", log_from, datetime.now(UTC) + timedelta(seconds=5))
    ours = {"workshop visits (measures' exposure)", "defect reports by part category (measures' counts)",
            "cases opened from events"}
    assert [d for d in report.differences if d.what in ours] == [], report.differences
    assert report.compared["workshop visits (measures' exposure)"] == 300
    assert report.compared["defect reports by part category (measures' counts)"] == 14
