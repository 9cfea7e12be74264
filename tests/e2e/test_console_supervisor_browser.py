"""Console II for supervisors, in a real headless Chromium on the real stack (Kafka, Postgres,
intake, follow-up, complaints, quality and the console): the targets by week with the trend and
the agents' workload, the weekly report on screen and exported as XLSX and CSV, and the file's
figures equal the services' APIs for that week. Every page passes axe-core; screenshots under
.local/artifacts/console/."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime

import pytest
from openpyxl import load_workbook
from playwright.async_api import BrowserContext, expect

from services.console.supervisor_pages import week_bounds
from tools.simulate import CST, Fleet
from tests.console_support import add_staff, console_stack, eventually, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.quality_events import part_shipped, shipment_discrepancy
from tests.support import Namespace, api, in_test_week, iso_week, manual_clock, publish

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
