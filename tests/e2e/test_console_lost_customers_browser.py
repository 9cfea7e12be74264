"""Lost customers and recalls in the console, in a real headless Chromium on the real stack
(Kafka, Postgres, intake, followup, quality and the console; one stack for the module): an agent
records why a lost customer left on the call screen (`other` without the customer's words is
refused by the follow-up service and comes back on the form with what was chosen and typed; with
the words it is saved and the follow-up service holds it), and a supervisor sees it among the
reasons; the customers at risk list a customer whose visits fell off, linked to their page; the
recalls list shows a confirmed batch problem's recall with its progress, linked to its page.
Every page passes axe-core; screenshots under .local/artifacts/console/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect

from services.console.clients import Person
from services.followup.config import FollowUpRules
from shared.events import INTAKE
from tests.console_support import eventually
from tests.e2e.test_console_browser import _db
from tests.e2e.test_console_feedback_browser import World, running_world, signed_in
from tests.integration.test_quality_service import units_in_service
from tests.quality_events import defect_reported, vehicle, vehicle_sold
from tests.support import api, day_at, db, publish, working_day
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates, pytest.mark.asyncio(loop_scope="module")]

NOW = day_at(10, days=working_day())  # a working morning in Shanghai: calls are placed then


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One stack, one console on a port and one browser for the module's journeys."""
    async with running_world(("intake", "followup", "quality"), NOW, tmp_path_factory) as found:
        yield found


async def test_an_agent_records_why_a_lost_customer_left_and_sees_who_is_at_risk(world: World) -> None:
    fleet = Fleet(seed=1616)
    gone = fleet.vehicle(NOW - timedelta(days=420))  # sold 14 months ago, never back: lost
    drifting = fleet.vehicle(NOW - timedelta(days=500))  # came every 60 days, not for 150 days now
    gone.customer.name, drifting.customer.name = "郑海涛", "孙丽华"
    await publish(world.ns.settings, "upstream.sales", [fleet.sale(v) for v in (gone, drifting)])
    pickups = [fleet.pickup(drifting, NOW - timedelta(days=d), mileage_km=30_000 - d * 20) for d in (330, 270, 210, 150)]
    await publish(world.ns.settings, "upstream.dms", pickups)
    followup_db, console_db = await db(world.ns, "followup"), await _db(world.ns, "console")
    try:
        await eventually(lambda: followup_db.fetchval("SELECT count(*) = 4 FROM visits"), what="the visits")
        await eventually(lambda: console_db.fetchval(
            "SELECT count(*) = 2 FROM customers WHERE customer_id = ANY($1::text[]) AND name IS NOT NULL",
            [gone.customer.customer_id, drifting.customer.customer_id]))
    finally:
        await followup_db.close()
        await console_db.close()
    world.clock.set(NOW + timedelta(minutes=FollowUpRules().late_timer_settle_minutes))

    async with api(world.stack["followup"], "agent") as agent:
        async def lost_call() -> dict | None:
            listed = (await agent.get("/v1/followups", params={"customer": gone.customer.customer_id})).json()
            due = [f for f in listed["items"] if f["kind"] == "lost_customer" and f["status"] == "due"]
            return due[0] if due else None

        call = await eventually(lost_call, what="the lost customer's call, due")
    followup_id = call["followup_id"]
    wang = Person("wang.fang", "王芳", "agent", "zh-CN", "-")
    await world.stack["console"].deps.services.call(wang, "POST", "followup", f"/v1/followups/{followup_id}/claim")

    page, journey = await signed_in(world, "lost-customer-journey", "wang.fang", f"/desk/calls/{followup_id}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("郑海涛")
    reason = page.get_by_label("流失原因", exact=True)
    options = await reason.locator("option").all_inner_texts()
    assert options == ["客户未说明", "已搬离本地", "改去其他经销商或维修店", "已卖车", "保养维修价格太高",
                       "对服务或维修不满意", "其他原因"], options
    await journey.check("lost-customer-call")

    # `other` without the customer's words: refused by the follow-up service, everything kept.
    await reason.select_option("other")
    await page.get_by_label("谈话要点", exact=True).fill("客户说明年不再来店保养")
    await page.get_by_role("button", name="保存并打开下一个回访").click()
    await expect(page.get_by_role("alert").first).to_contain_text("通话未保存")
    await expect(page.get_by_role("alert").first).to_contain_text("lost_reason_note")
    await expect(page.get_by_label("流失原因", exact=True)).to_have_value("other")
    await expect(page.get_by_label("客户原话", exact=True)).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("谈话要点", exact=True)).to_have_value("客户说明年不再来店保养")
    await expect(page.get_by_role("radio", name="已接通")).to_be_checked()
    await journey.check("lost-customer-refused")
    async with api(world.stack["followup"], "agent") as agent:
        detail = (await agent.get(f"/v1/followups/{followup_id}")).json()
        assert detail["attempts"] == [] and detail["status"] == "due", "nothing stored"

    words = "孩子去外地读书，车卖给了亲戚"
    await page.get_by_label("客户原话", exact=True).fill(words)
    await page.get_by_role("button", name="保存并打开下一个回访").click()
    await expect(page).not_to_have_url(re.compile(f"{followup_id}/outcome"))
    async with api(world.stack["followup"], "agent") as agent:
        detail = (await agent.get(f"/v1/followups/{followup_id}")).json()
    [attempt] = detail["attempts"]
    assert (attempt["outcome"], attempt["lost_reason"], attempt["lost_reason_note"], attempt["agent_id"]) == (
        "reached", "other", words, "wang.fang")
    assert detail["status"] == "completed"

    # The customers at risk: the one whose visits fell off, linked to their page.
    await page.get_by_role("link", name="流失风险客户").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("流失风险客户")
    # an agent of the whole group (no regions or dealers on their account) chooses a region first
    await expect(page.get_by_role("alert")).to_contain_text("请选择地区或经销商")
    await page.get_by_label("地区", exact=True).fill(drifting.customer.region or "")
    await page.get_by_role("button", name="查询", exact=True).click()
    listed = page.get_by_role("region", name=re.compile("位流失风险客户"))
    row = listed.locator("tbody tr", has_text="孙丽华")
    await expect(row).to_contain_text("到店频率下降")
    await expect(row).to_contain_text("60")
    await expect(listed).not_to_contain_text("郑海涛")  # lost already: their call took over
    assert await page.get_by_role("region", name="流失客户的流失原因").count() == 0, "the reasons are supervisors'"
    await journey.check("at-risk")
    await row.get_by_role("link", name="孙丽华").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("孙丽华")
    await page.close()

    # A supervisor sees why the lost customers called this month left, and the list as a file.
    page, supervising = await signed_in(world, "lost-reasons-supervisor", "liu.yang", "/at-risk")
    reasons = page.get_by_role("region", name="流失客户的流失原因")
    await expect(reasons.locator("tbody tr", has_text="其他原因")).to_contain_text("1")
    await expect(reasons.locator("tfoot")).to_contain_text("1")
    await supervising.check("lost-reasons")
    async with page.expect_download() as download:
        await page.get_by_role("link", name="下载 CSV").click()
    text = Path(await (await download.value).path()).read_text(encoding="utf-8-sig")
    assert "孙丽华" in text and "到店频率下降" in text and "郑海涛" not in text
    await page.close()
    assert journey.checked == ["lost-customer-call", "lost-customer-refused", "at-risk"]
    assert supervising.checked == ["lost-reasons"]


async def test_an_inspector_lists_the_recalls_and_opens_one(world: World) -> None:
    fleet = Fleet(seed=2929)
    batch = {"batch": "B2611-L3", "supplier_id": "SUP-E"}
    cars = [vehicle(fleet, NOW - timedelta(days=90, hours=-i), controller=batch) for i in range(12)]
    await publish(world.ns.settings, INTAKE, [vehicle_sold(fleet, v) for v in cars])
    await units_in_service(world.stack["quality"], "controller", 12)
    await publish(world.ns.settings, INTAKE, [
        defect_reported(v, "controller", "no_power", NOW - timedelta(days=6, hours=2 - i), f"DR-L{i}")
        for i, v in enumerate(cars[:8])])
    async with api(world.stack["quality"], "quality") as quality:
        async def batch_alert() -> list[dict]:
            return [a for a in (await quality.get("/v1/alerts")).json()["items"] if a["cell"]["kind"] == "batch"]

        [alert] = await eventually(batch_alert, what="the batch alert")
        confirmed = await quality.post(f"/v1/alerts/{alert['alert_id']}/confirm",
                                       json={"containment": "B2611-L3 批次控制器隔离"})
        assert confirmed.status_code in (200, 201), confirmed.text
    campaign_id = f"RC-{alert['alert_id']}"

    page, journey = await signed_in(world, "recalls-journey", "zhao.lei", "/quality/alerts")
    await page.get_by_role("link", name="召回活动").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("召回活动")
    row = page.locator("table.recalls tbody tr", has_text=campaign_id)
    await expect(row).to_contain_text("B2611-L3")
    await expect(row).to_contain_text("controller")
    await expect(row.locator("td").nth(4)).to_have_text("12")
    await journey.check("recalls")
    await row.get_by_role("link", name=campaign_id).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(campaign_id)
    await expect(page.get_by_role("region", name="装有该批次零件的车辆")).to_contain_text(cars[0].vin)
    await journey.check("recall-from-the-list")
    await page.close()
    assert journey.checked == ["recalls", "recall-from-the-list"]
