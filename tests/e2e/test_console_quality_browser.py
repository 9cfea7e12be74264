"""Console II for the quality inspection department, in a real headless Chromium on the real
stack (Kafka, Postgres, the quality service and the console): an inspector reads an alert with
its evidence (observed against expected reports per month in service, drawn as a chart with its
table, readable in Chinese), the reports and VINs behind it, acknowledges it and closes it with
the containment; new reports on the same cell reopen that alert with the new evidence instead of
raising another. Parts-shipment accuracy per dealer and week is a chart with its table. Every
page passes axe-core; screenshots under .local/artifacts/console/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import BrowserContext, expect

from tests.console_support import add_staff, console_stack, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.integration.test_quality_service import units_in_service
from tests.quality_events import defect_reported, part_shipped, shipment_discrepancy, vehicle, vehicle_sold
from tests.support import Namespace, api, day_at, eventually, in_test_week, manual_clock, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def test_an_inspector_acknowledges_and_closes_an_alert_and_new_reports_reopen_it(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    clock = manual_clock()
    now = clock.now()
    stack = await console_stack(cns, clock, services=("quality",)).start()
    try:
        await add_staff(cns)
        fleet = Fleet(seed=9)
        batch = {"batch": "B2610-M3", "supplier_id": "SUP-A"}
        cars = [vehicle(fleet, day_at(0, days=-50) + timedelta(hours=i), motor=batch) for i in range(30)]
        await publish(cns.settings, "aftersales.intake", [vehicle_sold(fleet, v) for v in cars])
        await units_in_service(stack["quality"], "motor", 30)
        await publish(cns.settings, "aftersales.intake", [
            defect_reported(v, "motor", "noise", day_at(8, days=-8) + timedelta(hours=i), f"DR-M{i}")
            for i, v in enumerate(cars[:7])])
        # Shipments of the test week and the week before, one with a wrong line.
        monday = in_test_week(0, 0)
        await publish(cns.settings, "aftersales.intake", [
            part_shipped("S-1", "DLR-001", monday - timedelta(days=6), 10),
            part_shipped("S-2", "DLR-002", monday - timedelta(days=5), 10),
            shipment_discrepancy("S-2", 3, "wrong_part", monday - timedelta(days=4))])

        async def one_alert() -> list[dict]:
            async with api(stack["quality"], "ops") as ops:
                return [a for a in (await ops.get("/v1/alerts")).json()["items"] if a["cell"]["kind"] == "batch"]

        [alert] = await eventually(one_alert, what="the burst alert")
        alert_id = alert["alert_id"]

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "inspector-journey", "zhao.lei")
            await expect(page.get_by_role("heading", name="质量预警", exact=True)).to_be_visible()
            await expect(page.locator("table.alerts")).to_contain_text("B2610-M3")
            await journey.check("alerts")

            await page.get_by_role("link", name=alert_id[:8]).click()
            evidence = page.get_by_role("region", name="证据：按使用月份统计的报告数")
            chart = evidence.get_by_role("img", name="按使用月份的报告数：实际与预期对比")
            await expect(chart).to_be_visible()
            await expect(chart).to_contain_text("第1月")  # the axis reads Chinese
            assert await evidence.locator("tbody tr").count() >= 2
            reports = page.get_by_role("region", name="相关报告与车辆")
            for car in cars[:7]:
                await expect(reports).to_contain_text(car.vin)
            await expect(page.get_by_role("region", name="位置")).to_contain_text("SUP-A")
            await journey.check("alert-evidence")

            # Another inspector takes the alert on meanwhile: this page's step (made on what it showed)
            # is refused by the service (If-Match, 412) and says so; the page shows the alert as it is now.
            async with api(stack["quality"], "quality") as colleague:
                taken = await colleague.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "孙丽已接手"})
                assert taken.status_code == 200, taken.text
            await page.get_by_role("button", name="确认预警").click()
            await expect(page.locator("p.error")).to_contain_text("有人修改了它：本次操作未执行")
            await expect(page.get_by_role("button", name="确认预警")).to_have_count(0)
            await expect(page.get_by_role("heading", name=re.compile("质量预警"))).to_contain_text("已受理")
            await page.get_by_label("遏制措施", exact=True).fill("B2610-M3 批次电机隔离，通知供应商 SUP-A 整改")
            await page.get_by_role("button", name="填写遏制措施并关闭").click()
            await expect(page.get_by_role("status")).to_contain_text("预警已关闭")
            await expect(page.get_by_role("heading", name=re.compile("质量预警"))).to_contain_text("已遏制并关闭")
            await journey.check("alert-closed")

            # New reports on the contained batch reopen this alert with the new evidence.
            clock.set(now + timedelta(days=2))
            await publish(cns.settings, "aftersales.intake", [
                defect_reported(v, "motor", "noise", now + timedelta(days=1, hours=i), f"DR-N{i}")
                for i, v in enumerate(cars[10:17])])

            async def reopened() -> bool:
                async with api(stack["quality"], "ops") as ops:
                    return (await ops.get(f"/v1/alerts/{alert_id}")).json()["state"] == "raised"

            await eventually(reopened, what="the reopened alert")
            await page.reload()
            await expect(page.get_by_role("heading", name=re.compile("质量预警"))).to_contain_text("已发出")
            await expect(page.get_by_role("region", name="位置")).to_contain_text("因新报告重新打开")
            await expect(page.get_by_role("region", name="位置")).to_contain_text("B2610-M3 批次电机隔离")
            reports = page.get_by_role("region", name="相关报告与车辆")
            await expect(reports).to_contain_text("DR-N6")
            await expect(reports).not_to_contain_text("DR-M0")
            await journey.check("alert-reopened")
            await page.goto(f"{url}/quality/alerts?state=closed")
            await expect(page.get_by_text("此状态下没有预警")).to_be_visible()

            # Parts-shipment accuracy per dealer and week.
            await page.goto(f"{url}/quality/parts-accuracy")
            figure = page.locator("figure")
            await expect(figure.get_by_role("img", name="各经销商每周配件发货准确率")).to_be_visible()
            await expect(figure.locator("table")).to_contain_text("DLR-002")
            await expect(figure.locator("table")).to_contain_text("90%")
            await journey.check("parts-accuracy")
        assert journey.checked == ["alerts", "alert-evidence", "alert-closed", "alert-reopened", "parts-accuracy"]
    finally:
        await stack.stop()
