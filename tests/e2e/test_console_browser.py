"""The console in a real headless Chromium (Debian's chromium, driven by Playwright) on the real
stack: Kafka, Postgres, intake, followup, complaints and the console. An agent signs in (zh-CN),
finds a customer by the last four digits of the phone, works three calls from the queue (reached
and scored; unreachable; complaint raised), and the results are in the follow-up and complaints
services under the agent's name. Five wrong passwords lock an account; a form posted without
its CSRF token is refused; an agent cannot open a supervisor page. Every page passes axe-core
(no serious or critical violation). Screenshots of each step are kept under
.local/artifacts/console/ (the path is printed)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from shared.settings import project_home
from tests.console_support import PASSWORD, add_staff, console_namespace, console_stack, eventually, served
from tests.support import Namespace, drop_namespace, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
ARTEFACTS = project_home() / ".local" / "artifacts" / "console"
NOW = "2026-11-20T10:00:00+08:00"  # a Friday morning in Shanghai, inside calling hours


class Journey:
    """A browser tab that screenshots each step and checks each page with axe-core."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.step = 0
        self.checked: list[str] = []

    async def shot(self, name: str) -> Path:
        self.step += 1
        path = self.folder / f"{self.step:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def check(self, name: str) -> None:
        """Screenshot, then axe-core in the page: no serious or critical violation."""
        await self.shot(name)
        await self.page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
        violations: list[dict[str, Any]] = await self.page.evaluate("""async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }""")
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, f"axe-core on {name} ({self.page.url}): {bad}"
        self.checked.append(name)


@pytest.fixture
async def cns(infra: None) -> AsyncIterator[Namespace]:
    namespace = await console_namespace()
    try:
        yield namespace
    finally:
        await drop_namespace(namespace)


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `aftersales infra up` (make test) installs it"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            await context.close()


def _folder(name: str) -> Path:
    folder = ARTEFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"\nscreenshots of {name}: {folder}")
    return folder


async def _db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": f"{schema},public"})


async def test_an_agent_signs_in_finds_a_customer_and_works_three_calls(cns: Namespace,
                                                                        chromium: BrowserContext) -> None:
    fleet = Fleet(seed=2026)
    vehicles = [fleet.vehicle(datetime(2025, 5, 10 + i, tzinfo=CST)) for i in range(3)]
    for vehicle, name in zip(vehicles, ("陈静怡", "周建国", "孙丽华"), strict=True):
        vehicle.customer.name = name
    stack = await console_stack(cns, manual_clock(NOW)).start()
    try:
        await add_staff(cns)
        await publish(cns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(cns.settings, "upstream.dms", [fleet.pickup(v, datetime(2026, 11, 16, 9 + i, tzinfo=CST))
                                                     for i, v in enumerate(vehicles)])
        console_db = await _db(cns, "console")
        try:
            await eventually(lambda: console_db.fetchval(
                "SELECT (SELECT count(*) FROM followups WHERE status = 'due') = 3 "
                "AND (SELECT count(*) FROM customers WHERE name IS NOT NULL) = 3 "
                "AND (SELECT count(*) FROM vehicles WHERE plate IS NOT NULL) = 3 AND (SELECT count(*) FROM visits) = 3"))
        finally:
            await console_db.close()

        async with served(stack) as url:
            page = await chromium.new_page()
            journey = Journey(page, _folder("agent-journey"))

            # Signing in, in Chinese.
            await page.goto(f"{url}/desk")
            assert page.url.startswith(f"{url}/sign-in"), "the desk asks who you are first"
            await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            await expect(page.get_by_role("heading", name="登录")).to_be_visible()
            await journey.check("sign-in")
            await page.get_by_label("用户名", exact=True).fill("wang.fang")
            await page.get_by_label("密码", exact=True).fill(PASSWORD)
            await page.get_by_label("密码", exact=True).press("Enter")  # the keyboard is enough
            await expect(page.get_by_role("heading", name="回访工作台")).to_be_visible()
            rows = page.locator("table.queue tbody tr")
            await expect(rows).to_have_count(3)
            for v in vehicles:
                await expect(page.locator("table.queue")).to_contain_text(v.customer.name)
                await expect(page.locator("table.queue")).to_contain_text(f"****{v.customer.phone[-4:]}")
                assert v.customer.phone[3:] not in await page.content(), "the phone is masked"
            await expect(page.locator("table.queue")).to_contain_text("提车后首次回访")
            await journey.check("desk")

            # Finding a customer by the last four digits of the phone.
            target = vehicles[1]
            await page.keyboard.press("/")
            await page.keyboard.type(target.customer.phone[-4:])
            await page.keyboard.press("Enter")
            results = page.locator("#results table")
            await expect(results).to_contain_text(target.customer.name)
            await expect(results).to_contain_text("电话")
            await journey.check("search-by-last-four-digits")
            await results.get_by_role("link", name=target.customer.name).click()
            await expect(page.get_by_role("heading", name=re.compile(target.customer.name))).to_be_visible()
            await expect(page.get_by_role("region", name="客户记录时间线")).to_contain_text("到店")
            await journey.check("customer-story")

            # Three calls from the queue; after each save the next one opens by itself.
            await page.get_by_role("link", name="回访工作台").click()
            await page.locator("table.queue tbody tr").first.get_by_role("button", name=re.compile("领取并拨打")).click()
            await expect(page.get_by_role("heading", name=re.compile("^回访"))).to_be_visible()
            await expect(page.get_by_role("region", name="话术")).to_contain_text("维修的问题是否已经解决")
            await journey.check("call-1")
            worked = [_followup_id(page.url)]
            await page.get_by_label("已接通", exact=True).check()
            await page.get_by_role("group", name="满意度评分（接通时）").get_by_label("5", exact=True).check()
            await page.get_by_label("谈话要点", exact=True).fill("车辆使用正常，对保养很满意")
            await page.get_by_label("客户需求", exact=True).fill("希望下次保养提前提醒")
            await page.get_by_role("button", name="保存并打开下一个回访").click()

            await expect(page.get_by_role("status")).to_contain_text("已为您打开下一个回访")
            worked.append(_followup_id(page.url))
            await journey.check("call-2")
            await page.get_by_label("未接通", exact=True).check()
            await page.get_by_label("备注", exact=True).fill("无人接听")
            await page.get_by_role("button", name="保存并打开下一个回访").click()

            await expect(page.get_by_role("status")).to_contain_text("已为您打开下一个回访")
            worked.append(_followup_id(page.url))
            await page.get_by_label("已接通", exact=True).check()
            await page.get_by_role("group", name="满意度评分（接通时）").get_by_label("2", exact=True).check()
            await page.get_by_label("谈话要点", exact=True).fill("保养后刹车有异响")
            await page.get_by_text("根据本次回访提交投诉").click()
            await page.get_by_label("投诉内容", exact=True).fill("保养后刹车异响，要求免费复查")
            await page.get_by_label("类别", exact=True).select_option("repair_quality")
            await journey.check("call-3-complaint")
            await page.get_by_role("button", name="保存并打开下一个回访").click()
            await expect(page.get_by_role("status")).to_contain_text("当前没有其他可拨打的回访")
            await journey.check("desk-after-three-calls")
            assert len(set(worked)) == 3

        # The results are in the follow-up and complaints services, under the agent's name.
        followup_db, complaints_db = await _db(cns, "followup"), await _db(cns, "complaints")
        try:
            calls = {r["followup_id"]: dict(r) for r in await followup_db.fetch(
                "SELECT followup_id, agent_id, outcome, satisfaction, talking_points, requests, customer_id "
                "FROM call_attempts")}
            assert {c["agent_id"] for c in calls.values()} == {"wang.fang"}
            assert [(calls[f]["outcome"], calls[f]["satisfaction"]) for f in worked] == [
                ("reached", 5), ("unreachable", None), ("reached", 2)]
            assert calls[worked[0]]["requests"] == "希望下次保养提前提醒"
            assert await followup_db.fetchval(
                "SELECT completed_by FROM followups WHERE followup_id = $1", worked[0]) == "wang.fang"
            cases = await eventually(lambda: complaints_db.fetch(
                "SELECT c.customer_id, c.category, c.channel, h.actor FROM cases c "
                "JOIN case_history h ON h.complaint_id = c.complaint_id AND h.kind = 'filed'"), what="the case")
            assert [dict(c) for c in cases] == [{"customer_id": calls[worked[2]]["customer_id"],
                                                 "category": "repair_quality", "channel": "return_visit",
                                                 "actor": "wang.fang"}]
        finally:
            await followup_db.close()
            await complaints_db.close()
        assert journey.checked == ["sign-in", "desk", "search-by-last-four-digits", "customer-story", "call-1",
                                   "call-2", "call-3-complaint", "desk-after-three-calls"]
    finally:
        await stack.stop()


def _followup_id(url: str) -> str:
    found = re.search(r"/desk/calls/([^/?]+)", url)
    assert found, f"not a call page: {url}"
    return found.group(1)


async def test_five_wrong_passwords_lock_forms_need_their_token_and_supervisor_pages_are_for_supervisors(
        cns: Namespace, chromium: BrowserContext) -> None:
    stack = await console_stack(cns, manual_clock(NOW), services=("followup",)).start()
    try:
        await add_staff(cns)
        async with served(stack) as url:
            page = await chromium.new_page()
            journey = Journey(page, _folder("sign-in-and-guards"))

            # Five wrong passwords lock the account: then even the right one is refused.
            for attempt in range(5):
                await page.goto(f"{url}/sign-in")
                await page.get_by_label("用户名", exact=True).fill("li.qiang")
                await page.get_by_label("密码", exact=True).fill(f"not the password {attempt}")
                await page.get_by_role("button", name="登录").click()
                message = "账号已被锁定" if attempt == 4 else "用户名或密码错误"
                await expect(page.get_by_role("alert")).to_contain_text(message)
            await journey.check("locked-after-five-wrong-passwords")
            await page.get_by_label("用户名", exact=True).fill("li.qiang")
            await page.get_by_label("密码", exact=True).fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await expect(page.get_by_role("alert")).to_contain_text("账号已被锁定")
            assert "/sign-in" in page.url

            # An agent cannot open a supervisor page.
            await page.get_by_label("用户名", exact=True).fill("wang.fang")
            await page.get_by_label("密码", exact=True).fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await expect(page.get_by_role("heading", name="回访工作台")).to_be_visible()
            assert await page.get_by_role("link", name="审计日志").count() == 0, "not offered to an agent"
            refused = await page.goto(f"{url}/supervisor/audit")
            assert refused is not None and refused.status == 403
            await expect(page.get_by_role("alert")).to_contain_text("此页面仅供以下角色使用：supervisor")
            await journey.check("agent-refused-a-supervisor-page")

            # A form posted without its CSRF token is refused, and changes nothing.
            await page.goto(f"{url}/desk")
            await page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
            await page.get_by_role("button", name="退出").click()
            await expect(page.get_by_role("alert")).to_contain_text("安全令牌缺失或已过期")
            await journey.check("form-without-csrf-refused")
            await page.goto(f"{url}/desk")
            await expect(page.get_by_role("heading", name="回访工作台")).to_be_visible()  # still signed in

            # Signing out, then a supervisor reads the audit log, in English.
            await page.get_by_role("button", name="退出").click()
            await expect(page.get_by_role("heading", name="登录")).to_be_visible()
            await page.get_by_label("用户名", exact=True).fill("liu.yang")
            await page.get_by_label("密码", exact=True).fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await page.get_by_role("button", name="English").click()
            await page.get_by_role("link", name="Audit log").click()
            await expect(page.locator("html")).to_have_attribute("lang", "en")
            log = page.locator("table")
            await expect(log).to_contain_text("sign-in refused: locked")
            await expect(log).to_contain_text("wrong password")
            await expect(log).to_contain_text("wang.fang")
            await journey.check("supervisor-audit-log-in-english")
        assert journey.checked == ["locked-after-five-wrong-passwords", "agent-refused-a-supervisor-page",
                                   "form-without-csrf-refused", "supervisor-audit-log-in-english"]
    finally:
        await stack.stop()
