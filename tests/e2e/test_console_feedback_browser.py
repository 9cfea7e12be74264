"""The listening loop in the console, in a real headless Chromium on the real stack (Kafka,
Postgres, intake, followup and the console; one stack for the module): an agent opens the
feedback items, sees the concern from a call scored 2 with a request beside an older one that is
overdue (in red; the overdue filter keeps it alone), records the solution, and the item shows
answered, in Chinese and in English, as the follow-up service holds it (answered under the
agent's name, a confirmation call scheduled); a supervisor sees every agent's items, or only
their own. An agent records a consultation from a caller
with no file: a bad phone is refused on the form in Chinese with everything typed kept; with the
number corrected the caller gets a file (intake), a first call is scheduled and the call is on
the phone register under the agent's name (followup). Every page passes axe-core; screenshots
under .local/artifacts/console/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from services.console.clients import Person
from services.intake.domain import derived_customer_id
from shared.clock import ManualClock
from tests.console_support import PASSWORD, add_staff, console_namespace, console_stack, eventually, served
from tests.e2e.test_console_browser import CHROMIUM, CHROMIUM_ARGS, Journey, _db, _folder
from tests.support import Namespace, Stack, api, drop_namespace, manual_clock, publish, queue_item
from tools.simulate import CST, Fleet

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="module")]

T1 = datetime(2026, 11, 16, 10, 0, tzinfo=CST)  # a Monday morning: the first call, whose concern waits
T2 = datetime(2026, 11, 20, 10, 0, tzinfo=CST)  # the Friday after: the second call, and the journeys


@dataclass
class World:
    ns: Namespace
    clock: ManualClock
    stack: Stack
    url: str
    browser: BrowserContext


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One stack, one console on a port and one browser for the module's journeys."""
    async with running_world(("intake", "followup"), T1, tmp_path_factory) as found:
        yield found


@contextlib.asynccontextmanager
async def running_world(services: tuple[str, ...], start: datetime,
                        tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The services and the console (clock at `start`), served on a port, and a zh-CN browser;
    the namespace dropped after."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `aftersales infra up` (make test) installs it"
    ns = await console_namespace()
    clock = manual_clock(start)
    stack = console_stack(ns, clock, services=services)
    try:
        await stack.start()
        await add_staff(ns)
        async with served(stack) as url, async_playwright() as playwright:
            browser = await playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1280, "height": 900})
            try:
                yield World(ns, clock, stack, url, browser)
            finally:
                await browser.close()
    finally:
        await stack.stop()
        await drop_namespace(ns)


async def signed_in(world: World, folder: str, username: str, start: str) -> tuple[Page, Journey]:
    await world.browser.clear_cookies()  # the module's browser: each journey signs in afresh
    page = await world.browser.new_page()
    journey = Journey(page, _folder(folder))
    await page.goto(f"{world.url}{start}")
    await page.get_by_label("用户名", exact=True).fill(username)
    await page.get_by_label("密码", exact=True).fill(PASSWORD)
    await page.get_by_label("密码", exact=True).press("Enter")
    return page, journey


async def test_an_agent_answers_the_concern_from_a_call_scored_2_with_a_request(world: World) -> None:
    fleet = Fleet(seed=1515)
    older, newer = (fleet.vehicle(datetime(2025, 5, 10 + i, tzinfo=CST)) for i in range(2))
    older.customer.name, newer.customer.name = "吴秀英", "陈静怡"
    await publish(world.ns.settings, "upstream.sales", [fleet.sale(v) for v in (older, newer)])
    await publish(world.ns.settings, "upstream.dms", [
        fleet.pickup(older, T1 - timedelta(days=6), service_type="repair"),
        fleet.pickup(newer, T1 - timedelta(hours=1), service_type="repair")])
    # The calls, made on the desk under wang.fang's name (the desk's own journey is tested elsewhere).
    services = world.stack["console"].deps.services
    wang = Person("wang.fang", "王芳", "agent", "zh-CN", "-")
    async with api(world.stack["followup"], "agent") as reader:
        first = await queue_item(reader, "first_visit", vin=older.vin)
        waited = await services.call(wang, "POST", "followup", f"/v1/followups/{first['followup_id']}/attempts",
                                     json={"outcome": "reached", "satisfaction": 3, "talking_points": "还行"})
        # Unanswered two working days later: it goes to the supervisor.
        async with api(world.stack["followup"], "supervisor") as supervisor:
            due = (await supervisor.get(f"/v1/feedback-items/{waited['feedback_item']}")).json()["due_at"]
            world.clock.set(datetime.fromisoformat(due) + timedelta(minutes=1))

            async def escalated() -> bool:
                item = (await supervisor.get(f"/v1/feedback-items/{waited['feedback_item']}")).json()
                return bool(item["state"] == "escalated")

            await eventually(escalated, what="the escalation")
        world.clock.set(T2)
        second = await queue_item(reader, "first_visit", vin=newer.vin)
        answered = await services.call(wang, "POST", "followup", f"/v1/followups/{second['followup_id']}/attempts",
                                       json={"outcome": "reached", "satisfaction": 2,
                                             "talking_points": "保养后方向盘跑偏",
                                             "requests": "请再做一次四轮定位，并报销上次的费用"})
    overdue_id, item_id = waited["feedback_item"], answered["feedback_item"]
    assert overdue_id and item_id, "a score of 3 and a score of 2 with a request each open an item"
    console_db = await _db(world.ns, "console")
    try:
        await eventually(lambda: console_db.fetchval(
            "SELECT count(*) = 2 FROM customers WHERE customer_id = ANY($1::text[]) AND name IS NOT NULL",
            [older.customer.customer_id, newer.customer.customer_id]))
    finally:
        await console_db.close()

    page, journey = await signed_in(world, "feedback-journey", "wang.fang", "/desk")
    await page.get_by_role("link", name="客户意见").click()
    await expect(page.get_by_role("heading", name=re.compile("^客户意见"))).to_be_visible()
    rows = page.locator("table.feedback tbody tr")
    await expect(rows).to_have_count(2)
    # The overdue one first, in red; the new one with its time left and the customer's words.
    await expect(rows.nth(0)).to_contain_text("吴秀英")
    await expect(rows.nth(0)).to_have_class(re.compile("late"))
    await expect(rows.nth(0)).to_contain_text(re.compile(r"已超时 \d天"))
    await expect(rows.nth(0)).to_contain_text("已上报主管")
    await expect(rows.nth(1)).to_contain_text("陈静怡")
    await expect(rows.nth(1)).to_contain_text("剩余")
    await expect(rows.nth(1)).to_contain_text("请再做一次四轮定位，并报销上次的费用")
    await expect(rows.nth(1)).to_contain_text("wang.fang")
    await journey.check("feedback-items")
    await page.get_by_label("仅看超时", exact=True).check()
    await page.get_by_role("button", name="查询").click()
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0)).to_contain_text("吴秀英")
    await page.get_by_label("仅看超时", exact=True).uncheck()
    await page.get_by_label("状态", exact=True).select_option("answered")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_text("没有符合条件的客户意见")).to_be_visible()
    await page.get_by_label("状态", exact=True).select_option("")
    await page.get_by_role("button", name="查询").click()

    # The item: what the customer said, its deadline, its timeline; the solution is required.
    await rows.nth(1).get_by_role("link", name="陈静怡").click()
    await expect(page.get_by_role("heading", name=re.compile("客户意见.*陈静怡"))).to_be_visible()
    words = page.get_by_role("region", name="客户原话")
    await expect(words).to_contain_text("请再做一次四轮定位")
    await expect(words).to_contain_text("保养后方向盘跑偏")
    await expect(words).to_contain_text("评分低, 需求")
    await expect(page.get_by_role("region", name="答复时限")).to_contain_text("剩余")
    await expect(page.get_by_role("region", name="处理记录")).to_contain_text("回访时登记")
    await journey.check("feedback-item")
    await page.evaluate("document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))")
    await page.get_by_role("radio", name="今天电话告知").check()
    await page.get_by_role("button", name="登记解决方案").click()
    await expect(page.get_by_role("alert")).to_contain_text("请填写告知客户的解决方案")
    await expect(page.get_by_role("radio", name="今天电话告知")).to_be_checked()  # what was chosen is kept
    solution = "经销商同意免费再做一次四轮定位，并报销上次的 300 元"
    await page.get_by_label("告知客户的解决方案", exact=True).fill(solution)
    await page.get_by_role("radio", name="短信告知", exact=True).check()
    await page.get_by_role("button", name="登记解决方案").click()
    await expect(page.get_by_role("status")).to_contain_text("解决方案已登记")
    await expect(page.get_by_role("heading", name=re.compile("陈静怡"))).to_contain_text("已答复，待确认")
    await expect(page.get_by_role("region", name="答复时限")).to_contain_text(solution)
    await expect(page.get_by_role("region", name="答复时限")).to_contain_text("按时")
    await expect(page.get_by_role("region", name="处理记录")).to_contain_text("已登记解决方案")
    assert await page.get_by_role("button", name="登记解决方案").count() == 0, "an answered item takes no second one"
    await journey.check("feedback-item-answered")

    # The same in English, with English labels.
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", name=re.compile("^Feedback item"))).to_contain_text(
        "answered, to be confirmed")
    await expect(page.get_by_role("region", name="Timeline")).to_contain_text("solution recorded")
    await expect(page.get_by_role("region", name="Answer by")).to_contain_text("by SMS")
    await journey.check("feedback-item-answered-in-english")
    await page.get_by_role("button", name="中文").click()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await page.close()

    # A supervisor sees every agent's items (the escalated one is theirs to see to), or only their own.
    page, supervising = await signed_in(world, "feedback-supervisor", "liu.yang", "/feedback")
    rows = page.locator("table.feedback tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("已上报主管")
    await expect(rows.nth(1)).to_contain_text("已答复，待确认")
    await supervising.check("feedback-items-supervisor")
    await page.get_by_label("我的意见", exact=True).check()
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_text("没有符合条件的客户意见")).to_be_visible()
    await page.close()
    assert journey.checked == ["feedback-items", "feedback-item", "feedback-item-answered",
                               "feedback-item-answered-in-english"]
    assert supervising.checked == ["feedback-items-supervisor"]

    # The follow-up service holds it: answered by the agent, in time, told by SMS, a confirmation call scheduled.
    async with api(world.stack["followup"], "supervisor") as supervisor:
        item = (await supervisor.get(f"/v1/feedback-items/{item_id}")).json()
        assert (item["state"], item["answered_by"], item["solution"], item["told_by"], item["answered_in_time"]) == (
            "answered", "wang.fang", solution, "sms", True)
        assert [h["action"] for h in item["history"]] == ["opened", "answered"]
        confirmation = (await supervisor.get(f"/v1/followups/{item['confirmation_followup_id']}")).json()
        assert (confirmation["kind"], confirmation["customer_id"]) == ("feedback_confirmation",
                                                                       newer.customer.customer_id)
        untouched = (await supervisor.get(f"/v1/feedback-items/{overdue_id}")).json()
        assert untouched["state"] in ("open", "escalated") and untouched["solution"] is None


async def test_an_agent_records_a_consultation_for_a_caller_with_no_file(world: World) -> None:
    page, journey = await signed_in(world, "consultation-journey", "li.qiang", "/desk")
    await page.get_by_role("link", name="来电咨询").click()
    await expect(page.get_by_role("heading", name=re.compile("^来电咨询登记"))).to_be_visible()
    await journey.check("consultation-form")

    # A phone that is not one: refused on the form, in Chinese, with everything typed kept.
    typed = {"姓名": "周建国", "电话": "12345", "地区": "east", "车型": "EV-200", "经销商": "DLR-007",
             "咨询事项": "EV-200 的保养费用", "备注": "想了解首保是否免费"}
    for label, value in typed.items():
        await page.get_by_label(re.compile(f"^{label}"), exact=False).first.fill(value)
    await page.get_by_role("button", name="登记咨询").click()
    await expect(page.get_by_role("alert")).to_contain_text("咨询未登记")
    phone = page.get_by_role("textbox", name=re.compile("^电话"))
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#q-phone-problem")).to_contain_text("这不是可以拨打的电话号码")
    for label, value in typed.items():
        await expect(page.get_by_label(re.compile(f"^{label}")).first).to_have_value(value)
    await expect(page.get_by_label("来电渠道", exact=True)).to_have_value("hotline")
    await journey.check("consultation-bad-phone")

    # Corrected, it is recorded under the agent's name.
    await phone.fill("139 8765 4321")
    await page.get_by_role("button", name="登记咨询").click()
    status = page.get_by_role("status")
    await expect(status).to_contain_text("已以您的名义登记")
    reference = re.search(r"CONS-[0-9a-f]{16}", await status.inner_text())
    assert reference, "the consultation's reference is shown"
    await journey.check("consultation-recorded")

    # The caller has a file (intake), a first call is scheduled and the call is on the register (followup).
    caller = derived_customer_id("+8613987654321")
    async with api(world.stack["intake"], "agent") as intake, api(world.stack["followup"], "supervisor") as followup:
        async def opened() -> dict[str, object] | None:
            answer = await intake.get(f"/v1/customers/{caller}")
            return answer.json() if answer.status_code == 200 else None

        file = await eventually(opened, what="the caller's file")
        assert (file["name"], file["phone"], file["region"]) == ("周建国", "+8613987654321", "east")

        async def scheduled() -> list[dict[str, object]]:
            return (await followup.get("/v1/followups", params={"customer": caller})).json()["items"]

        [first] = await eventually(scheduled, what="the first call")
        assert first["kind"] == "first_visit" and first["dealer_id"] == "DLR-007"
        assert datetime.fromisoformat(str(first["due_from"])) >= T2 + timedelta(days=3)
        register = (await followup.get("/v1/register/calls", params={"customer": caller,
                                                                      "direction": "inbound"})).json()
        assert [(c["agent_id"], c["kind"]) for c in register["items"]] == [("li.qiang", "consultation")]
        assert "EV-200" in register["items"][0]["summary"] and "首保" in register["items"][0]["summary"]

    # The file, found from the confirmation by phone once the console has it.
    console_db = await _db(world.ns, "console")
    try:
        await eventually(lambda: console_db.fetchval("SELECT name FROM customers WHERE customer_id = $1", caller))
    finally:
        await console_db.close()
    await page.get_by_role("link", name="按电话查找档案").click()
    await page.locator("#results table").get_by_role("link", name="周建国").click()
    await expect(page.get_by_role("heading", name=re.compile("周建国"))).to_be_visible()
    await journey.check("caller-file")

    # The caller has a file now: their next call is logged on their page; a refused one keeps what was typed.
    inbound = page.get_by_role("region", name="登记来电")
    await inbound.get_by_label("来电事由", exact=True).select_option("request")
    await inbound.get_by_label("投诉类别（投诉时填写）", exact=True).select_option("price")
    await page.evaluate("document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))")
    await inbound.get_by_role("button", name="登记来电").click()
    await expect(inbound.get_by_role("alert")).to_contain_text("请选择来电事由并填写简要摘要")
    await expect(inbound.get_by_label("来电事由", exact=True)).to_have_value("request")
    await expect(inbound.get_by_label("投诉类别（投诉时填写）", exact=True)).to_have_value("price")
    await journey.check("inbound-call-refused")
    await inbound.get_by_label("摘要", exact=True).fill("希望试驾 EV-200 后再决定")
    await inbound.get_by_role("button", name="登记来电").click()
    await expect(page.get_by_role("status")).to_contain_text("来电已登记")
    async with api(world.stack["followup"], "supervisor") as followup:
        register = (await followup.get("/v1/register/calls", params={"customer": caller,
                                                                      "direction": "inbound"})).json()
    assert sorted((c["agent_id"], c["kind"], c["summary"][:6]) for c in register["items"]) == [
        ("li.qiang", "consultation", "EV-200"), ("li.qiang", "request", "希望试驾 E")]
    assert journey.checked == ["consultation-form", "consultation-bad-phone", "consultation-recorded", "caller-file",
                               "inbound-call-refused"]
