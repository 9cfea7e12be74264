"""Rectification measures in the console, in a real headless Chromium on the real stack (Kafka,
Postgres, the complaints service and the console): a supervisor records a measure answering
the complaint category repair quality (an empty form is refused with the fields marked, nothing
stored), sees it open with its rate before and no figures after yet; after the due date it is
overdue, and a quality inspector verifies it effective, with the effect measured from the
complaints and workshop visits the complaints service consumed. Every page passes axe-core;
screenshots under .local/artifacts/console/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import expect

from tests.console_support import eventually
from tests.e2e.test_console_feedback_browser import World, running_world, signed_in
from tests.e2e.test_measures_flow import _complaints, _pickups, _spread
from tests.support import api, db, publish

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="module")]

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, 10, 0, tzinfo=SH)  # fixed dates: nothing here depends on today
DUE_DAY = (START + timedelta(days=14)).date()
DUE = datetime.combine(DUE_DAY, datetime.min.time(), SH).replace(hour=9)  # the console's due hour


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(("complaints",), START, tmp_path_factory) as found:
        yield found


async def _counted(world: World, visits: int, cases: int) -> None:
    conn = await db(world.ns, "complaints")
    try:
        await eventually(lambda: conn.fetchval(
            "SELECT (SELECT count(*) FROM measure_visits) = $1 AND (SELECT count(*) FROM cases) = $2", visits, cases),
            what="the visits and complaints counted")
    finally:
        await conn.close()


async def test_a_supervisor_records_a_measure_and_a_quality_inspector_verifies_it(world: World) -> None:
    before = (START - timedelta(weeks=8), START)
    await publish(world.ns.settings, "aftersales.intake",
                  _pickups("W", _spread(120, *before)) + _complaints("W", _spread(9, *before)))
    await _counted(world, 120, 9)

    page, journey = await signed_in(world, "measures-journey", "liu.yang", "/measures")
    await expect(page.get_by_role("heading", level=1)).to_have_text("整改措施")
    await expect(page.get_by_role("link", name="整改措施", exact=True)).to_have_attribute("aria-current", "page")
    await journey.check("measures-empty")

    # Nothing filled in: refused on the form, every missing field marked, nothing stored.
    await page.get_by_role("button", name="登记措施").click()
    await expect(page.get_by_role("alert").first).to_contain_text("措施未登记")
    for label in ("标题", "整改内容", "责任人", "完成期限"):
        await expect(page.get_by_role("textbox", name=label, exact=True)).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_role("combobox", name="投诉类别")).to_have_attribute("aria-invalid", "true")
    async with api(world.stack["complaints"], "supervisor") as supervisor:
        assert (await supervisor.get("/v1/measures")).json()["items"] == []
    await journey.check("measures-refused")

    await page.get_by_role("combobox", name="投诉类别").select_option("repair_quality")
    await page.get_by_role("textbox", name="标题", exact=True).fill("维修完工质检签字")
    await page.get_by_role("textbox", name="整改内容", exact=True).fill("每台维修车辆完工后由质检员试车并签字确认")
    await page.get_by_role("textbox", name="责任人", exact=True).fill("as-supervisor-01")
    await page.get_by_role("textbox", name="完成期限", exact=True).fill(DUE_DAY.isoformat())
    await page.get_by_role("button", name="登记措施").click()
    await expect(page.get_by_role("status")).to_contain_text("措施已登记")
    row = page.locator("table.measures tbody tr", has_text="维修完工质检签字")
    await expect(row).to_contain_text("投诉: 维修质量")
    await expect(row).to_contain_text("未关闭")
    await expect(row).to_contain_text("120 次进厂中 9 起")
    await expect(row).to_contain_text("尚未到期")
    assert await row.get_by_role("button", name="验证").count() == 1  # a supervisor may verify
    await journey.check("measures-recorded")
    async with api(world.stack["complaints"], "supervisor") as supervisor:
        [stored] = (await supervisor.get("/v1/measures")).json()["items"]
    assert (stored["category"], stored["owner"], stored["recorded_by"]) == (
        "repair_quality", "as-supervisor-01", "liu.yang")
    assert datetime.fromisoformat(stored["due_at"]) == DUE
    await page.close()

    # Eight weeks after the due date: the same visits, one complaint.
    after_end = DUE + timedelta(weeks=8)
    world.clock.set(after_end + timedelta(days=1))
    await publish(world.ns.settings, "aftersales.intake",
                  _pickups("X", _spread(120, DUE, after_end)) + _complaints("X", _spread(1, DUE, after_end)))
    await _counted(world, 240, 10)

    page, journey = await signed_in(world, "measures-verify-journey", "zhao.lei", "/measures?status=overdue")
    row = page.locator("table.measures tbody tr", has_text="维修完工质检签字")
    await expect(row).to_contain_text("已逾期")
    await expect(row).to_contain_text("120 次进厂中 1 起")
    await expect(row).to_contain_text("已下降")
    await expect(row).to_contain_text(re.compile(r"发生率比 0\.11"))
    assert await page.locator("form[action='/measures']").count() == 1  # quality inspectors record too
    await journey.check("measures-overdue")
    await row.get_by_role("radio", name="有效", exact=True).check()
    await row.get_by_label("核查情况").fill("抽查 10 台维修车辆，试车签字齐全")
    await row.get_by_role("button", name="验证").click()
    await expect(page.get_by_role("status")).to_contain_text("措施已验证")
    row = page.locator("table.measures tbody tr", has_text="维修完工质检签字")
    await expect(row).to_contain_text("已验证")
    await expect(row).to_contain_text("有效 · zhao.lei")
    assert await row.get_by_role("button", name="验证").count() == 0
    await journey.check("measures-verified")
    await page.close()

    async with api(world.stack["complaints"], "supervisor") as supervisor:
        [checked] = (await supervisor.get("/v1/measures", params={"status": "verified"})).json()["items"]
    assert checked["verification"]["verdict"] == "effective" and checked["verification"]["verified_by"] == "zhao.lei"
    assert (checked["effect"]["before"]["events"], checked["effect"]["after"]["events"]) == (9, 1)
