"""删除个人信息 in a real headless Chromium (issue 19): an agent's customer page has no such
action; a supervisor's has it, the browser holds the form until a reason is written and the
confirmation ticked, the console calls intake's erasure route with the reason and shows the
result; when intake's CustomerErased reaches the console the page says 个人信息已删除 with the
date, without the name, and without the action. Every page passes axe-core; screenshots under
.local/artifacts/console/.

Intake's erasure API was not committed when this test was written: intake is the recording
stand-in of tests/integration/test_console_erasure_action.py; the CustomerErased it would
publish is published here as intake's outbox would."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from playwright.async_api import BrowserContext, expect

from services.console.i18n import DISPLAY_ZONE
from shared.events import INTAKE
from tests.console_support import add_staff, console_stack, eventually, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.integration.test_console_erasure_action import CUSTOMER, IntakeErasure, file_customers
from tests.support import TEST_NOW, Namespace, db, manual_clock, publish
from tools.simulate import envelope

pytestmark = pytest.mark.infra

ERASED_AT = TEST_NOW + timedelta(minutes=5)


async def test_a_supervisor_erases_a_customers_personal_data_and_an_agent_does_not_see_the_action(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    intake = IntakeErasure(ERASED_AT)
    stack = console_stack(cns, manual_clock(TEST_NOW), services=())
    stack.state["console"]["transports"] = {"intake": intake}
    await stack.start()
    try:
        await add_staff(cns)
        await file_customers(cns)
        conn = await db(cns, "console")
        try:
            await eventually(lambda: conn.fetchval("SELECT count(*) = 2 FROM customers"), what="the files")
        finally:
            await conn.close()

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "erasure-agent", "wang.fang", f"/customers/{CUSTOMER}")
            await expect(page.get_by_role("heading", name="上官婉清", exact=False).first).to_be_visible()
            await expect(page.get_by_role("button", name="删除个人信息")).to_have_count(0)
            await journey.check("agent-customer-page")
            await page.locator("form[action='/sign-out'] button").click()
            await page.close()

            page, journey = await signed_in(chromium, url, "erasure-supervisor", "liu.yang", f"/customers/{CUSTOMER}")
            action = page.get_by_role("region", name="删除个人信息")
            await expect(action).to_be_visible()
            await journey.check("supervisor-customer-page")
            erase = action.get_by_role("button", name="删除个人信息")
            await erase.click()  # no reason: the browser holds the form
            await action.get_by_label("删除原因（法律依据或客户的申请编号）").fill("客户书面申请 REQ-2026-042")
            await erase.click()  # no confirmation: held too
            assert not intake.requests and page.url.endswith(f"/customers/{CUSTOMER}")
            await action.get_by_label("我确认删除该客户的个人信息").check()
            await erase.click()
            await expect(page.get_by_role("status").filter(has_text="客户档案中的个人信息已删除")).to_be_visible()
            await journey.check("erasure-requested")
            assert len(intake.requests) == 1 and json.loads(intake.requests[0].content) == {
                "reason": "客户书面申请 REQ-2026-042"}

            # Intake's CustomerErased reaches the console: the file shows as erased.
            await publish(cns.settings, INTAKE, [envelope("CustomerErased", CUSTOMER, {
                "customer_id": CUSTOMER, "erasure_id": "ERS-TEST-1", "erased_at": ERASED_AT.isoformat(),
                "requested_by": "liu.yang", "merged_customer_ids": []}, ERASED_AT, "intake")])

            async def erased() -> bool:
                await page.goto(f"{url}/customers/{CUSTOMER}")
                return "个人信息已删除" in await page.content()

            await eventually(erased, what="the erasure in the console's read model")
            notice = page.locator("#erased-notice")
            await expect(notice).to_contain_text("个人信息已删除")
            day = ERASED_AT.astimezone(DISPLAY_ZONE)
            await expect(notice).to_contain_text(f"{day.year}年{day.month}月{day.day}日")
            body = await page.locator("main").inner_text()
            assert "上官婉清" not in body and "None" not in body
            await expect(page.get_by_role("button", name="删除个人信息")).to_have_count(0)
            await journey.check("customer-erased")
    finally:
        await stack.stop()
