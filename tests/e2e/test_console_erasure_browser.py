"""删除个人信息 in a real headless Chromium on the real stack (Kafka, Postgres, intake and the
console, issue 19): an agent's customer page has no such action; a supervisor's has it, the
browser holds the form until a reason is written and the confirmation ticked, the console calls
intake's erasure route with the reason and shows the result; when intake's CustomerErased
reaches the console the page says 个人信息已删除 with the date, without the name, and without
the action. Every page passes axe-core; screenshots under .local/artifacts/console/."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, expect

from services.console.i18n import DISPLAY_ZONE
from tests.console_support import add_staff, console_stack, eventually, served
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.integration.test_console_erasure_action import NAME, db, file_customers
from tests.support import TEST_NOW, Namespace, manual_clock

pytestmark = pytest.mark.infra


async def test_a_supervisor_erases_a_customers_personal_data_and_an_agent_does_not_see_the_action(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    stack = await console_stack(cns, manual_clock(TEST_NOW), services=("intake",)).start()
    intake = await db(cns, "intake")
    try:
        await add_staff(cns)
        customer = (await file_customers(cns)).customer.customer_id
        conn = await db(cns, "console")
        try:
            await eventually(lambda: conn.fetchval("SELECT count(*) = 2 FROM customers"), what="the files")
        finally:
            await conn.close()

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "erasure-agent", "wang.fang", f"/customers/{customer}")
            await expect(page.get_by_role("heading", name=NAME, exact=False).first).to_be_visible()
            await expect(page.get_by_role("button", name="删除个人信息")).to_have_count(0)
            await journey.check("agent-customer-page")
            await page.locator("form[action='/sign-out'] button").click()
            await page.close()

            page, journey = await signed_in(chromium, url, "erasure-supervisor", "liu.yang", f"/customers/{customer}")
            action = page.get_by_role("region", name="删除个人信息")
            await expect(action).to_be_visible()
            await journey.check("supervisor-customer-page")
            erase = action.get_by_role("button", name="删除个人信息")
            await erase.click()  # no reason: the browser holds the form
            await action.get_by_label("删除原因（法律依据或客户的申请编号）").fill("客户书面申请 REQ-2026-042")
            await erase.click()  # no confirmation: held too
            assert page.url.endswith(f"/customers/{customer}")
            assert not await intake.fetchval("SELECT count(*) FROM erasures"), "intake was not asked"
            await action.get_by_label("我确认删除该客户的个人信息").check()
            await erase.click()
            await expect(page.get_by_role("status").filter(has_text="客户档案中的个人信息已删除")).to_be_visible()
            await journey.check("erasure-requested")
            register = await intake.fetchrow("SELECT * FROM erasures")
            assert (register["customer_id"], register["requested_by"], register["reason"]) == (
                customer, "liu.yang", "客户书面申请 REQ-2026-042")

            # Intake's CustomerErased reaches the console: the file shows as erased.
            async def erased() -> bool:
                await page.goto(f"{url}/customers/{customer}")
                return "个人信息已删除" in await page.content()

            await eventually(erased, what="the erasure in the console's read model")
            notice = page.locator("#erased-notice")
            await expect(notice).to_contain_text("个人信息已删除")
            day = register["erased_at"].astimezone(DISPLAY_ZONE)
            await expect(notice).to_contain_text(f"{day.year}年{day.month}月{day.day}日")
            body = await page.locator("main").inner_text()
            assert NAME not in body and "None" not in body
            await expect(page.get_by_role("heading", level=1)).to_have_text(customer)  # the id where the name was
            await expect(page.get_by_role("button", name="删除个人信息")).to_have_count(0)
            await journey.check("customer-erased")
    finally:
        await intake.close()
        await stack.stop()
