"""From alert to recall in the console, in a real headless Chromium on the real stack (Kafka,
Postgres, the quality service and the console): an inspector confirms a batch alert with the
containment action taken, follows the link to its recall and reads the progress per dealer, the
vehicles carrying the batch with their owners, and the reports since the confirmation, those of
inspected vehicles apart. Every page passes axe-core; screenshots under .local/artifacts/console/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import BrowserContext, expect

from shared.events import INTAKE
from tests.console_support import add_staff, console_stack, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.integration.test_quality_service import units_in_service
from tests.quality_events import canonical, defect_reported, vehicle, vehicle_sold
from tests.support import Namespace, api, day_at, eventually, manual_clock, publish
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def test_an_inspector_confirms_a_batch_problem_and_follows_its_recall_per_dealer(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    clock = manual_clock(day_at(10))
    stack = await console_stack(cns, clock, services=("quality",)).start()
    try:
        await add_staff(cns)
        fleet = Fleet(seed=29)
        batch = {"batch": "B2610-R7", "supplier_id": "SUP-D"}
        cars = [vehicle(fleet, day_at(0, days=-90) + timedelta(hours=i), controller=batch) for i in range(12)]
        await publish(cns.settings, INTAKE, [vehicle_sold(fleet, v) for v in cars])
        await units_in_service(stack["quality"], "controller", 12)
        await publish(cns.settings, INTAKE, [
            defect_reported(v, "controller", "no_power", day_at(8, days=-6) + timedelta(hours=i), f"DR-R{i}")
            for i, v in enumerate(cars[:8])])

        async def batch_alert() -> list[dict]:
            async with api(stack["quality"], "ops") as ops:
                return [a for a in (await ops.get("/v1/alerts")).json()["items"] if a["cell"]["kind"] == "batch"]

        [alert] = await eventually(batch_alert, what="the batch alert")
        alert_id = alert["alert_id"]

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "recall-journey", "zhao.lei")
            await page.goto(f"{url}/quality/alerts/{alert_id}")
            containment = "B2610-R7 批次控制器全部隔离，供应商 SUP-D 8D 整改"
            await page.get_by_label("对该批次采取的遏制措施", exact=True).fill(containment)
            await page.get_by_role("button", name="确认批次问题并召回相关车辆").click()
            await expect(page.get_by_role("status")).to_contain_text("批次问题已确认，召回已发布")
            await journey.check("alert-confirmed")

            # A recalled vehicle comes in and its controller is replaced; then it reports again.
            campaign_id = f"RC-{alert_id}"
            visit = fleet.pickup(cars[0], clock.now() + timedelta(days=1), service_type="recall",
                                 repair_order_id="RO-R1")["data"]
            visit["items"] = [{"code": f"{campaign_id}:replace", "description": "controller replaced",
                               "part_category": "controller"}]
            await publish(cns.settings, INTAKE, [
                canonical(INTAKE, "VehiclePickedUp", cars[0].vin, visit, clock.now() + timedelta(days=1), "intake"),
                defect_reported(cars[0], "controller", "no_power", clock.now() + timedelta(days=2), "DR-AFTER")])

            async def replaced() -> bool:
                async with api(stack["quality"], "ops") as ops:
                    body = (await ops.get(f"/v1/recalls/{campaign_id}")).json()
                    return bool(body["progress"]["total"]["replaced"] == 1
                                and body["reports_since_confirmation"]["inspected"] == 1)

            await eventually(replaced, what="the replacement and the report after it")
            await page.get_by_role("link", name=f"召回 {campaign_id}：各经销商进度").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text(campaign_id)
            progress = page.get_by_role("region", name="各经销商进度")
            await expect(progress).to_contain_text(cars[0].dealer_id)
            await expect(progress.locator("tfoot")).to_contain_text("12")
            vehicles = page.get_by_role("region", name="装有该批次零件的车辆")
            for car in cars:
                await expect(vehicles).to_contain_text(car.vin)
            await expect(vehicles).to_contain_text(cars[0].customer.name)
            since = page.get_by_role("region", name="确认以来的缺陷报告")
            await expect(since).to_contain_text("来自已检查车辆 (1)")
            await expect(since).to_contain_text("DR-AFTER")
            await journey.check("recall")
        assert journey.checked == ["alert-confirmed", "recall"]
    finally:
        await stack.stop()
