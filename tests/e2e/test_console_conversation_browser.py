"""One conversation per customer at the console's desk, in a real headless Chromium on the real
stack (Kafka, Postgres, intake, followup and the console): a customer with a first return visit,
a maintenance reminder and a campaign call open is one row on the desk listing the three; the
agent claims it once (a colleague can then claim none of them), the call page shows what the
customer said and asked on the earlier call and the open concern, and one submission records
each follow-up's outcome under one call id. Every page passes axe-core; screenshots under
.local/artifacts/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from playwright.async_api import expect

from services.console.clients import Person
from services.followup.config import FollowUpRules
from tests.console_support import browser_client, csrf_of, eventually, sign_in
from tests.e2e.test_console_browser import _db
from tests.e2e.test_console_feedback_browser import World, running_world, signed_in
from tests.support import api, day_at, publish, working_day
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates, pytest.mark.asyncio(loop_scope="module")]

D = working_day()
NOW = day_at(10, days=D)  # a working morning in Shanghai: calls are placed then
KINDS = {"first_visit", "maintenance_reminder", "campaign_call"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(("intake", "followup"), NOW, tmp_path_factory) as found:
        yield found


async def test_an_agent_works_three_follow_ups_of_one_customer_in_one_call(world: World) -> None:
    fleet = Fleet(seed=1617)
    car = fleet.vehicle(day_at(0, days=-400))
    car.customer.name = "李明"
    await publish(world.ns.settings, "upstream.sales", [fleet.sale(car)])
    pickup = fleet.pickup(car, day_at(9, days=D - 4), mileage_km=21_000)
    pickup["data"]["next_service_due_at"] = day_at(9, days=D + 10).isoformat()
    pickup["data"]["next_service_due_km"] = 40_000
    await publish(world.ns.settings, "upstream.dms", [pickup])
    await publish(world.ns.settings, "upstream.crm", [fleet.campaign(
        "free_inspection_week", "免费检测周", day_at(9, days=D + 14), 7, [car.customer.region], NOW)])
    customer_id = car.customer.customer_id
    async with api(world.stack["followup"], "agent") as reader:
        async def first_visit() -> bool:
            listed = (await reader.get("/v1/followups", params={"customer": customer_id})).json()["items"]
            return any(f["kind"] == "first_visit" for f in listed)

        await eventually(first_visit, what="the pickup's first visit")  # the late reminder's timer is set
    world.clock.set(NOW + timedelta(minutes=FollowUpRules().late_timer_settle_minutes + 1))
    console_db = await _db(world.ns, "console")
    try:
        await eventually(lambda: console_db.fetchval(
            "SELECT count(*) = 1 FROM customers WHERE customer_id = $1 AND name IS NOT NULL", customer_id))
    finally:
        await console_db.close()

    async with api(world.stack["followup"], "agent") as reader:
        async def three_open() -> dict | None:
            talks = [t for t in (await reader.get("/v1/queue/conversations")).json()["items"]
                     if t["customer_id"] == customer_id]
            return talks[0] if talks and {f["kind"] for f in talks[0]["followups"]} == KINDS else None

        talk = await eventually(three_open, what="the customer's three follow-ups as one conversation")
    ids = {f["kind"]: f["followup_id"] for f in talk["followups"]}
    # An earlier call on the first visit: the customer was driving and asked for something.
    wang = Person("wang.fang", "王芳", "agent", "zh-CN", "-")
    services = world.stack["console"].deps.services
    await services.call(wang, "POST", "followup", f"/v1/followups/{ids['first_visit']}/attempts", json={
        "outcome": "call_back_later", "call_back_at": (NOW + timedelta(hours=3)).isoformat(),
        "talking_points": "客户在开车，说下午再打", "requests": "下次保养希望提供代步车"})

    page, journey = await signed_in(world, "conversation-journey", "wang.fang", "/desk")
    row = page.locator("table.queue tbody tr", has_text="李明")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("一次通话处理 3 项回访")
    for label in ("提车后首次回访", "保养提醒", "活动邀请"):
        await expect(row).to_contain_text(label)
    await journey.check("desk-conversation")
    await row.get_by_role("button", name="领取并拨打").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("李明")
    await expect(page.locator("#previous-calls")).to_contain_text("客户在开车，说下午再打")
    await expect(page.locator("#previous-calls")).to_contain_text("下次保养希望提供代步车")
    await expect(page.get_by_text("一次通话处理该客户的 3 项回访")).to_be_visible()

    async with api(world.stack["followup"], "agent2") as colleague:  # one agent per customer
        held = await colleague.post(f"/v1/customers/{customer_id}/conversation/claim")
        assert held.status_code == 409 and "wang.fang" in held.json()["detail"]
        for fid in ids.values():
            assert (await colleague.post(f"/v1/followups/{fid}/claim")).status_code == 409

    parts = {kind: page.locator("fieldset.followup", has_text=label) for kind, label in (
        ("first_visit", "提车后首次回访"), ("maintenance_reminder", "保养提醒"), ("campaign_call", "活动邀请"))}
    await parts["first_visit"].get_by_role("radio", name="5", exact=True).check()
    await parts["first_visit"].get_by_label("谈话要点: 提车后首次回访").fill("异响已解决，很满意")
    await parts["maintenance_reminder"].get_by_label("谈话要点: 保养提醒").fill("下周二来店保养")
    await page.get_by_label("客户需求", exact=True).fill("希望周末也能预约保养")
    # "call back later" without the time: refused on the page, everything typed kept, nothing stored
    await parts["campaign_call"].get_by_role("radio", name="稍后再拨").check()
    await page.get_by_role("button", name="保存本次通话").click()
    await expect(page.get_by_role("alert")).to_contain_text("请填写回拨时间")
    await expect(parts["maintenance_reminder"].get_by_label("谈话要点: 保养提醒")).to_have_value("下周二来店保养")
    await expect(parts["campaign_call"].get_by_role("radio", name="稍后再拨")).to_be_checked()
    await expect(parts["first_visit"].get_by_role("radio", name="5", exact=True)).to_be_checked()
    await expect(page.get_by_label("客户需求", exact=True)).to_have_value("希望周末也能预约保养")
    async with api(world.stack["followup"], "agent") as reader:
        untouched = (await reader.get(f"/v1/followups/{ids['maintenance_reminder']}")).json()
        assert untouched["attempts"] == [] and untouched["claimed_by"] == "wang.fang"
    await parts["campaign_call"].get_by_role("radio", name="未接通").check()  # the line dropped before it
    await journey.check("conversation-call")
    await page.get_by_role("button", name="保存本次通话").click()
    await expect(page.get_by_role("status")).to_contain_text("已保存：本次通话已记录")
    await journey.check("desk-after-the-call")

    # The campaign call again after its retry time: called alone now, its page shows the open concern.
    world.clock.set(NOW + timedelta(hours=4, minutes=20))
    await page.goto(f"{world.url}/desk")
    row = page.locator("table.queue tbody tr", has_text="李明")
    await expect(row).to_contain_text("活动邀请")
    await expect(row).not_to_contain_text("一次通话处理")
    await row.get_by_role("button", name="领取并拨打").click()
    await expect(page.locator("#open-items")).to_contain_text("希望周末也能预约保养")
    await expect(page.locator("#open-items")).to_contain_text("wang.fang")
    await journey.check("single-call-open-concern")
    await page.close()

    async with api(world.stack["followup"], "agent") as reader:
        details = {kind: (await reader.get(f"/v1/followups/{fid}")).json() for kind, fid in ids.items()}
    assert details["first_visit"]["status"] == "completed" and details["first_visit"]["satisfaction"] == 5
    assert details["maintenance_reminder"]["status"] == "completed"
    assert details["campaign_call"]["status"] != "completed" and details["campaign_call"]["claimed_by"] == "wang.fang"
    latest = {kind: d["attempts"][-1] for kind, d in details.items()}
    assert len({a["call_id"] for a in latest.values()}) == 1 and latest["campaign_call"]["call_id"], "one call id"
    assert {a["agent_id"] for a in latest.values()} == {"wang.fang"}
    assert {kind: a["outcome"] for kind, a in latest.items()} == {
        "first_visit": "reached", "maintenance_reminder": "reached", "campaign_call": "unreachable"}
    assert details["maintenance_reminder"]["attempts"][-1]["talking_points"] == "下周二来店保养"
    assert latest["first_visit"]["requests"] == "希望周末也能预约保养", "the call's words on its first reached follow-up"
    assert "requests" not in latest["maintenance_reminder"] or latest["maintenance_reminder"]["requests"] is None
    assert journey.checked == ["desk-conversation", "conversation-call", "desk-after-the-call",
                               "single-call-open-concern"]


async def test_the_conversation_pages_are_for_the_desk_and_refuse_what_they_cannot_do(world: World) -> None:
    """A quality inspector cannot open a customer's call; a claim without the form's token is
    refused; a customer with nothing to call sends the agent back to the desk with why."""
    async with browser_client(world.url) as inspector, browser_client(world.url) as agent:
        await sign_in(inspector, "zhao.lei")
        assert (await inspector.get("/desk/customers/CUST-X/call")).status_code == 403
        await sign_in(agent, "li.qiang")
        assert (await agent.post("/desk/customers/CUST-X/call/claim", data={})).status_code == 403
        desk_page = await agent.get("/desk")
        assert desk_page.status_code == 200
        nothing = await agent.post("/desk/customers/CUST-NONE/call/claim", data={"csrf_token": csrf_of(desk_page.text)})
        assert nothing.status_code == 303 and nothing.headers["location"].startswith("/desk?error=")
        shown = await agent.get(nothing.headers["location"])
        assert 'role="alert"' in shown.text and "has no follow-up to call" in shown.text
        assert (await agent.get("/desk/customers/CUST-NONE/call")).headers["location"] == "/desk"
