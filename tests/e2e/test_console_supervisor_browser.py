"""Console II for supervisors, in a real headless Chromium on the real stack (Kafka, Postgres,
intake, follow-up, complaints, quality and the console): the targets by week with the trend and
the agents' workload, the weekly report on screen and exported as XLSX and CSV, and the file's
figures equal the services' APIs for that week. Every page passes axe-core; screenshots under
.local/artifacts/console/."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from openpyxl import load_workbook
from playwright.async_api import BrowserContext, expect

from services.console.supervisor_pages import week_bounds
from tests.console_support import add_staff, console_stack, eventually, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.quality_events import part_shipped, shipment_discrepancy
from tests.support import Namespace, api, db, in_test_week, iso_week, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def test_a_supervisor_reads_the_targets_and_exports_the_weekly_report_with_the_apis_figures(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    clock = manual_clock(in_test_week(4, 10))  # Friday 10:00 of the test week
    week = iso_week(in_test_week(0, 0))
    stack = await console_stack(cns, clock, services=("intake", "followup", "complaints", "quality")).start()
    try:
        await add_staff(cns)
        fleet = Fleet(seed=31)
        vehicles = [fleet.vehicle(datetime(2025, 6, 1 + i, tzinfo=CST)) for i in range(3)]
        await publish(cns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(cns.settings, "upstream.dms", [fleet.pickup(v, in_test_week(1, 9 + i))
                                                     for i, v in enumerate(vehicles)])
        await publish(cns.settings, "aftersales.intake", [
            part_shipped("S-1", "DLR-001", in_test_week(1, 10), 10),
            part_shipped("S-2", "DLR-002", in_test_week(2, 10), 8),
            shipment_discrepancy("S-2", 3, "wrong_part", in_test_week(3, 10))])
        start, end = week_bounds(week)

        async def api_figures() -> tuple[dict, dict] | None:
            async with api(stack["followup"], "supervisor") as f, api(stack["quality"], "supervisor") as q:
                kpis = (await f.get("/v1/kpis", params={"from": start.isoformat(), "to": end.isoformat()})).json()
                parts = (await q.get("/v1/reports/weekly", params={"week": week})).json()["parts_accuracy"]
            ready = sum(kpis["open"].values()) >= 3 and parts["lines"] == 18  # the pickups' calls, the shipments
            return (kpis, parts) if ready else None

        kpis, parts = await eventually(api_figures, what="the week's figures in the services")

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "supervisor-journey", "liu.yang")
            await page.get_by_role("link", name="指标看板").click()
            targets = page.locator("table.targets")
            await expect(targets).to_contain_text("保修期回访率")
            await expect(targets).to_contain_text(week)
            await expect(targets).to_contain_text("配件发货准确率")
            await expect(page.locator("table.workload tbody tr")).to_have_count(7)
            dealers = page.locator("table.dealers")
            await expect(dealers.get_by_role("row", name=re.compile("DLR-002"))).to_contain_text("88%")
            await expect(dealers.get_by_role("row", name=re.compile("DLR-001"))).to_contain_text("100%")
            await journey.check("targets-and-workload")
            # Drill-down: the calls behind a week's return-visit figure (none made yet this week).
            await targets.get_by_role("link", name=re.compile("查看相关回访")).last.click()
            await expect(page.get_by_role("heading", name=re.compile("指标背后的回访"))).to_contain_text(week)
            await expect(page.get_by_text("本周没有回访记录")).to_be_visible()
            await journey.check("calls-behind-a-figure")
            await page.get_by_role("link", name="返回指标看板").click()

            await page.get_by_role("link", name="周报").click()
            await page.get_by_label("周（如 2026-W47）或月（如 2026-11）").fill(week)
            await page.get_by_role("button", name="查询").click()
            await expect(page.locator("table.report")).to_contain_text("DLR-002")
            await journey.check("weekly-report")

            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            download = await waiting.value
            assert download.suggested_filename == f"aftersales-weekly-{week}.xlsx"
            book = load_workbook(io.BytesIO((await download.path()).read_bytes()))
            rows = [[c.value for c in row] for row in book.active.iter_rows()]
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 CSV").click()
            text = (await (await waiting.value).path()).read_text(encoding="utf-8-sig")
            assert list(csv.reader(io.StringIO(text)))[0] == rows[0]
        assert journey.checked == ["targets-and-workload", "calls-behind-a-figure", "weekly-report"]

        # The file's figures are the services' figures for that week.
        assert rows[0] == ["类别", "分组", "指标", "数量", "总数", "比率"]
        by_name = {(r[0], r[1], r[2]): r[3:] for r in rows[1:]}
        assert by_name[("回访", "全部", "保修期回访率")] == [
            kpis["warranty_visited"], kpis["warranty_pickups"], kpis["warranty_return_visit_rate"]]
        assert by_name[("回访", "全部", "满意度")] == [
            kpis["satisfied_calls"], kpis["scored_calls"], kpis["satisfaction_rate"]]
        assert by_name[("配件", "全部", "配件发货准确率")] == [
            parts["lines"] - parts["discrepant_lines"], parts["lines"], parts["accuracy"]]
        for dealer in parts["by_dealer"]:
            assert by_name[("配件", dealer["dealer_id"], "配件发货准确率")] == [
                dealer["lines"] - dealer["discrepant_lines"], dealer["lines"], dealer["accuracy"]]
        assert by_name[("配件", "DLR-002", "配件发货准确率")] == [7, 8, pytest.approx(7 / 8)]
    finally:
        await stack.stop()


async def test_a_supervisor_drills_down_from_sla_compliance_and_exports_the_regions_and_the_monthly_parts_row(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    clock = manual_clock(in_test_week(4, 10))  # Friday 10:00 of the test week
    week = iso_week(in_test_week(0, 0))
    month = in_test_week(2, 10).strftime("%Y-%m")
    stack = await console_stack(cns, clock, services=("intake", "followup", "complaints", "quality")).start()
    try:
        await add_staff(cns)
        fleet = Fleet(seed=32)
        vehicles = [replace(fleet.vehicle(datetime(2025, 6, 1 + i, tzinfo=CST)), dealer_id=dealer)
                    for i, dealer in enumerate(("DLR-001", "DLR-002", "DLR-003"))]
        region = {v.dealer_id: v.customer.region for v in vehicles}
        await publish(cns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(cns.settings, "upstream.dms", [fleet.pickup(v, in_test_week(1, 9 + i))
                                                     for i, v in enumerate(vehicles)])
        await publish(cns.settings, "aftersales.intake", [
            part_shipped("S-1", "DLR-001", in_test_week(1, 10), 10),
            part_shipped("S-2", "DLR-002", in_test_week(2, 10), 8),
            shipment_discrepancy("S-2", 3, "wrong_part", in_test_week(3, 10))])
        # Two critical cases of DLR-001's region filed on Monday (their clock runs around the clock,
        # so both deadlines fall on Monday whatever the calendar): one acknowledged and resolved in
        # time (2 steps met), one never touched (2 steps breached).
        monday = in_test_week(0, 10)
        async with api(stack["complaints"], "supervisor") as c:
            refs = {}
            for name in ("met", "breached"):
                case = (await c.post("/v1/complaints", json={
                    "complaint_ref": f"SLA-{name}", "customer_id": f"CUST-SLA-{name}", "channel": "hotline",
                    "severity": "critical", "category": "service_attitude", "description": "the advisor shouted",
                    "filed_at": monday.isoformat(), "dealer_id": "DLR-001", "region": region["DLR-001"]})).json()
                refs[name] = case["complaint_id"]
            done = refs["met"]
            assert (await c.post(f"/v1/complaints/{done}/acknowledge",
                                 json={"at": (monday + timedelta(minutes=30)).isoformat()})).status_code == 200
            assert (await c.post(f"/v1/complaints/{done}/assign", json={
                "at": (monday + timedelta(minutes=40)).isoformat(), "assignee": "wang.fang"})).status_code == 200
            assert (await c.post(f"/v1/complaints/{done}/resolve", json={
                "at": (monday + timedelta(hours=2)).isoformat(), "resolution": "apologised"})).status_code == 200
            sla = (await c.get("/v1/reports/sla-compliance", params={"until": week, "weeks": 2})).json()["weeks"]
            assert (await c.get("/v1/reports/sla-compliance", params={"until": "2026-47"})).status_code == 422
        [before, this] = sla
        assert (this["week"], this["met"], this["breached"], this["compliance"]) == (week, 2, 2, 0.5)
        assert before["compliance"] is None  # no step fell due: no figure

        async def console_knows_the_dealers() -> bool:
            conn = await db(cns, "console")
            try:
                return int(await conn.fetchval("SELECT count(*) FROM vehicles WHERE dealer_id LIKE 'DLR-%'")) == 3
            finally:
                await conn.close()

        await eventually(console_knows_the_dealers, what="the console's vehicles")

        async def api_figures() -> tuple[dict, dict, dict] | None:
            async with api(stack["followup"], "supervisor") as f, api(stack["quality"], "supervisor") as q:
                parts = (await q.get("/v1/reports/weekly", params={"week": week})).json()["parts_accuracy"]
                before_parts = (await q.get("/v1/reports/weekly", params={"week": iso_week(
                    in_test_week(0, 0) - timedelta(days=7))})).json()["parts_accuracy"]
                monthly = (await q.get("/v1/reports/monthly", params={"month": month})).json()["parts_accuracy"]
                start, end = week_bounds(week)
                kpis = {r: (await f.get("/v1/kpis", params={"from": start.isoformat(), "to": end.isoformat(),
                                                             "region": r})).json() for r in set(region.values())}
            ready = parts["lines"] == 18 and monthly["lines"] >= 18 and all(
                sum(k["open"].values()) >= 1 for k in kpis.values())
            return ({"parts": parts, "before": before_parts, "kpis": kpis}, monthly, this) if ready else None

        figures, monthly, _ = await eventually(api_figures, what="the week's figures in the services")
        async with api(stack["quality"], "supervisor") as q:
            assert (await q.get("/v1/reports/monthly", params={"month": "2026-13"})).status_code == 422

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "supervisor-drill-down", "liu.yang")
            await page.get_by_role("link", name="指标看板").click()
            targets = page.locator("table.targets")
            sla_row = targets.get_by_role("row", name=re.compile("投诉时限达成率"))
            await expect(sla_row).to_contain_text("50%")
            await sla_row.get_by_role("link", name=re.compile(f"查看相关投诉案件 {week}")).click()
            await expect(page.get_by_role("heading", name=re.compile("投诉时限达成率背后的案件"))).to_contain_text(week)
            steps = page.locator("table.sla-cases tbody tr")
            await expect(steps).to_have_count(4)
            await journey.check("sla-cases-behind-a-figure")
            await page.get_by_role("link", name="超时", exact=True).click()
            await expect(steps).to_have_count(2)
            await expect(page.get_by_text("达标 2 个，超时 2 个")).to_be_visible()  # the week's counts still
            await expect(steps.first).to_contain_text("SLA-breached")
            await steps.first.get_by_role("link", name="SLA-breached").click()
            await expect(page.get_by_role("heading", name=re.compile("SLA-breached"))).to_be_visible()

            await page.goto(f"{url}/supervisor/regions?week={week}")
            await expect(page.locator("table.regions")).to_contain_text(region["DLR-001"])
            await journey.check("targets-by-region")
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            book = load_workbook(io.BytesIO((await (await waiting.value).path()).read_bytes()))
            region_rows = [[c.value for c in row] for row in book.active.iter_rows()]

            await page.goto(f"{url}/supervisor/reports/monthly?period={month}")
            await expect(page.locator("table.report")).to_contain_text("DLR-002")
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            book = load_workbook(io.BytesIO((await (await waiting.value).path()).read_bytes()))
            monthly_rows = [[c.value for c in row] for row in book.active.iter_rows()]
        assert journey.checked == ["sla-cases-behind-a-figure", "targets-by-region"]

        # The region table's file: each region's figures are the services' figures for that week.
        by_region = {r[0]: r[1:] for r in region_rows[1:]}
        assert set(by_region) >= set(region.values())
        dealers_of = {r: [d for d, rr in region.items() if rr == r] for r in set(region.values())}
        for r, dealers in dealers_of.items():
            k = figures["kpis"][r]
            lines = [d for d in figures["parts"]["by_dealer"] if d["dealer_id"] in dealers]
            shipped = sum(d["lines"] for d in lines)
            parts = (shipped - sum(d["discrepant_lines"] for d in lines)) / shipped if shipped else None
            compliance = this["by_region"].get(r, {}).get("compliance")
            values = by_region[r][0::2]  # the week's figure, then its change, per target
            assert values[0] == k["warranty_return_visit_rate"] and values[1] == k["satisfaction_rate"]
            assert values[2] == compliance and values[3] == (pytest.approx(parts) if parts is not None else None)
        assert by_region[region["DLR-001"]][4] == 0.5  # SLA compliance of the region of the two cases

        # The monthly report's parts-accuracy row is the quality service's month.
        by_name = {(r[0], r[1], r[2]): r[3:] for r in monthly_rows[1:]}
        assert by_name[("配件", "全部", "配件发货准确率")] == [
            monthly["lines"] - monthly["discrepant_lines"], monthly["lines"], monthly["accuracy"]]
        for dealer in monthly["by_dealer"]:
            assert by_name[("配件", dealer["dealer_id"], "配件发货准确率")] == [
                dealer["lines"] - dealer["discrepant_lines"], dealer["lines"], dealer["accuracy"]]
    finally:
        await stack.stop()
