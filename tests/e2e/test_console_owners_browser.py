"""Tracking owners in the console, in a real headless Chromium on the real stack (Kafka, Postgres,
intake, followup and the console): customers get an owner by the rules; a supervisor opens the
tracking owners page (zh-CN), changes one customer's owner to 李强 with a reason (a change without
a reason is refused by the browser and nothing changes) and assigns another customer's call to
王芳; 李强's desk shows his customer first marked 我的客户 (before a call due earlier), 王芳's shows the
assigned call first marked 指派给我. The follow-up service holds both. Every page passes axe-core; screenshots under
.local/artifacts/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from playwright.async_api import expect

from tests.console_support import eventually
from tests.e2e.test_console_feedback_browser import World, running_world, signed_in
from tests.support import api, publish, queue_item
from tools.simulate import CST, Fleet

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="module")]

T = datetime(2026, 11, 20, 10, 0, tzinfo=CST)  # a Friday morning: both first calls are due


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(("intake", "followup"), T, tmp_path_factory) as found:
        yield found


async def test_a_supervisor_changes_an_owner_and_assigns_a_call_and_the_agents_desks_show_them_first(
        world: World) -> None:
    fleet = Fleet(seed=1616)
    moved, assigned, other = (fleet.vehicle(datetime(2025, 3, 10 + i, tzinfo=CST)) for i in range(3))
    moved.customer.name, assigned.customer.name, other.customer.name = "周丽华", "郑国强", "吴平"
    await publish(world.ns.settings, "upstream.sales", [fleet.sale(v) for v in (moved, assigned, other)])
    # 吴平's call falls due first: by due date alone it would lead every desk
    await publish(world.ns.settings, "upstream.dms", [fleet.pickup(v, T - timedelta(days=4, hours=hours))
                                                      for v, hours in ((moved, 0), (assigned, 1), (other, 5))])
    async with api(world.stack["followup"], "supervisor") as reader:
        call = await queue_item(reader, "first_visit", vin=assigned.vin, timeout=60)
        await queue_item(reader, "first_visit", vin=moved.vin, timeout=60)
        await queue_item(reader, "first_visit", vin=other.vin, timeout=60)

        async def owned() -> bool:
            found = [(await reader.get(f"/v1/customers/{v.customer.customer_id}/owner")).status_code
                     for v in (moved, assigned)]
            return found == [200, 200]

        await eventually(owned, what="the owners by the rules")
        before = (await reader.get(f"/v1/customers/{moved.customer.customer_id}/owner")).json()
        assert before["source"] == "rule:region" and before["owner"] != "li.qiang"

    page, journey = await signed_in(world, "owners-supervisor", "liu.yang", "/supervisor/owners")
    await expect(page.get_by_role("heading", name="跟踪业务员", level=1)).to_be_visible()
    await expect(page.get_by_role("link", name="周丽华")).to_be_visible(timeout=30_000)
    await journey.check("owners-list")
    await page.get_by_role("link", name="周丽华").click()
    await expect(page.get_by_role("heading", name="周丽华", level=2)).to_be_visible()
    await page.get_by_label("新的跟踪业务员").select_option("li.qiang")
    # no reason: the browser refuses the form (required) and nothing changes
    await page.get_by_role("button", name="更换跟踪业务员").click()
    assert await page.get_by_label("更换原因").evaluate("e => !e.validity.valid")
    await page.get_by_label("更换原因").fill("客户搬到南区，由李强跟进")
    await page.get_by_role("button", name="更换跟踪业务员").click()
    await expect(page.get_by_role("status")).to_have_text("已更换该客户的跟踪业务员。")
    await expect(page.locator(".owner-now")).to_have_text("李强")
    await expect(page.locator(".owner-history tbody tr")).to_have_count(2)
    await expect(page.locator(".owner-history tbody tr").last).to_contain_text("主管指定")
    await journey.check("owner-changed")
    await page.goto(f"{world.url}/customers/{moved.customer.customer_id}")  # the customer's page names the owner
    await expect(page.locator(".owner-line")).to_contain_text("跟踪业务员: 李强")

    await page.goto(f"{world.url}/supervisor/owners?customer={assigned.customer.customer_id}")
    row = page.locator(".open-calls tbody tr").first
    await row.get_by_label("回访专员").select_option("wang.fang")
    await row.get_by_label("指派原因").fill("王芳熟悉该车型")
    await row.get_by_role("button", name="指派回访").click()
    await expect(page.get_by_role("status")).to_have_text("已指派该回访。")
    await expect(page.locator(".open-calls tbody tr").first).to_contain_text("王芳")
    await journey.check("call-assigned")

    async with api(world.stack["followup"], "supervisor") as reader:
        after = (await reader.get(f"/v1/customers/{moved.customer.customer_id}/owner")).json()
        assert (after["owner"], after["source"], after["assigned_by"], after["reason"]) == \
            ("li.qiang", "supervisor", "liu.yang", "客户搬到南区，由李强跟进")
        held = (await reader.get(f"/v1/followups/{call['followup_id']}")).json()
        assert (held["assigned_to"], held["assigned_by"], held["assign_reason"]) == \
            ("wang.fang", "liu.yang", "王芳熟悉该车型")

    page, journey = await signed_in(world, "owners-li-qiang", "li.qiang", "/desk")
    first = page.locator("table.queue tbody tr").first
    await expect(first).to_contain_text("周丽华", timeout=30_000)
    await expect(first.locator(".tag.owned")).to_have_text("我的客户")
    await expect(page.locator("table.queue tbody tr").nth(1)).to_contain_text("吴平")  # then the rest, by due date
    await expect(page.locator("table.queue")).not_to_contain_text("郑国强")  # assigned to 王芳, not overdue
    await journey.check("desk-my-customer")

    page, journey = await signed_in(world, "owners-wang-fang", "wang.fang", "/desk")
    first = page.locator("table.queue tbody tr").first
    await expect(first).to_contain_text("郑国强", timeout=30_000)
    await expect(first.locator(".tag.owned")).to_have_text("指派给我")
    await expect(page.locator("table.queue tbody tr")).to_have_count(3)
    await expect(page.locator("table.queue tbody tr", has_text="周丽华").locator(".tag.owned")).to_have_count(0)
    await journey.check("desk-assigned-to-me")
