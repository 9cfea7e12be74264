"""The reports people read, in a real headless Chromium on the real stack (Kafka, Postgres, intake,
follow-up, complaints, quality and the console): the weekly return-visit report (headline rates,
the customers' own words and what was done, one department's part) on screen and as XLSX and CSV,
and the monthly work summary (targets against results, complaint categories against the month
before, the measures' section) on screen and as XLSX whose figures are the services', sent by
e-mail (through the notifier to a real SMTP server) to customer service and the superior leader. axe-core on
every page; screenshots under .local/artifacts/console/."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from playwright.async_api import BrowserContext, expect

from services.console import users
from services.console.supervisor_pages import month_bounds
from services.notifier.config import NotifierSettings
from tests.console_support import PASSWORD, add_staff, browser_client, console_stack, eventually, served, sign_in
from tests.e2e.test_console_browser import chromium, cns  # noqa: F401  (fixtures)
from tests.e2e.test_console_cases_browser import signed_in
from tests.support import (
    SHANGHAI,
    Namespace,
    api,
    day_at,
    iso_week,
    manual_clock,
    next_weekday,
    publish,
    queue_item,
    working_day,
)
from tools.peers import MailSink, PeerStore
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

D = working_day()
T0 = day_at(10, days=D)
REPAIR = "刹车异响上次没修好，请再检查一次"
PRICE = "保养报价比隔壁店贵三百元"
ANSWER = "经销商已预约周三免费复检刹车"


async def test_a_supervisor_reads_the_weekly_report_and_the_monthly_summary_and_downloads_both(
        cns: Namespace, chromium: BrowserContext) -> None:  # noqa: F811
    clock = manual_clock(T0)
    week, month = iso_week(T0), T0.astimezone(SHANGHAI).strftime("%Y-%m")
    store = PeerStore()
    sink = MailSink(store).start()
    stack = console_stack(cns, clock, services=("intake", "followup", "complaints", "quality", "notifier"))
    stack.state["notifier"] = {"settings": NotifierSettings(smtp_host="127.0.0.1", smtp_port=sink.port,
                                                            dispatch_tick_seconds=0.05)}
    await stack.start()
    try:
        await add_staff(cns)
        fleet = Fleet(seed=1617)
        vehicles = [fleet.vehicle(day_at(0, days=-300)) for _ in range(3)]
        await publish(cns.settings, "upstream.dms", [fleet.pickup(v, day_at(9, days=D - 4), service_type="repair")
                                                    for v in vehicles])
        async with api(stack["followup"], "agent") as agent:
            items = []
            for vehicle, body in zip(vehicles, [
                    {"satisfaction": 2, "requests": REPAIR, "feedback": {"category": "repair_quality"}},
                    {"satisfaction": 3, "requests": PRICE, "feedback": {"category": "price"}},
                    {"satisfaction": 5}], strict=True):
                visit = await queue_item(agent, "first_visit", vin=vehicle.vin)
                done = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts",
                                        json={"outcome": "reached", **body})
                assert done.status_code == 201, done.text
                items.append(done.json()["feedback_item"])
            answered = await agent.post(f"/v1/feedback-items/{items[0]}/solution", json={"solution": ANSWER})
            assert answered.status_code == 200, answered.text
        async with api(stack["complaints"], "supervisor") as c:
            for n, category in enumerate(("repair_quality", "repair_quality", "price")):
                filed = await c.post("/v1/complaints", json={
                    "complaint_ref": f"MS-{n}", "customer_id": f"CUST-MS-{n}", "channel": "hotline",
                    "severity": "medium", "category": category, "description": "客户来电投诉",
                    "filed_at": T0.isoformat()})
                assert filed.status_code == 201, filed.text
        clock.set(next_weekday(0, 8, 5, after=T0))  # Monday 08:05: last week's report is made

        async def report_made() -> dict | None:
            async with api(stack["followup"], "supervisor") as s:
                found = await s.get("/v1/reports/weekly", params={"week": week})
            return found.json() if found.status_code == 200 else None

        report = await eventually(report_made, what="the weekly report")
        assert report["figures"]["headline"]["dissatisfied"] == 2

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "reports-journey", "liu.yang")
            await page.get_by_role("link", name="报表").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text(week)
            headline = page.locator("table.report").first
            await expect(headline.get_by_role("row", name=re.compile("^满意度"))).to_contain_text("33")
            await expect(headline.get_by_role("row", name=re.compile("不满意客户数"))).to_contain_text("2")
            await expect(page.locator("section.department", has_text="售后服务部")).to_contain_text(ANSWER)
            await expect(page.locator("section.department", has_text="销售部")).to_contain_text(PRICE)
            await expect(page.get_by_text("本周无。").first).to_be_visible()
            await journey.check("weekly-return-visit-report")

            await page.get_by_label("部门").select_option(label="销售部")
            await page.get_by_role("button", name="查询").click()
            await expect(page.locator("section.department")).to_have_count(1)
            await expect(page.locator("main")).not_to_contain_text(REPAIR)
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            download = await waiting.value
            assert download.suggested_filename == f"aftersales-return-visits-{week}-sales.xlsx"
            sheet = load_workbook(io.BytesIO((await download.path()).read_bytes())).active
            rows = [[c.value for c in row] for row in sheet.iter_rows()]
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 CSV").click()
            text = (await (await waiting.value).path()).read_text(encoding="utf-8-sig")
            assert list(csv.reader(io.StringIO(text)))[0] == rows[0]
            assert PRICE in text and REPAIR not in text

            await page.get_by_role("link", name="月度工作总结").click()
            await page.get_by_label("月份（2026-11）").fill(month)
            await page.get_by_role("button", name="查询").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text(month)
            targets = page.locator("table.report").first
            await expect(targets.get_by_role("row", name=re.compile("回访接通率"))).to_be_visible()
            await expect(targets.get_by_role("row", name=re.compile("配件发运准确率|配件发货准确率"))).to_be_visible()
            await expect(page.get_by_role("row", name=re.compile("维修质量"))).to_contain_text("2")
            await expect(page.get_by_role("heading", name="整改措施及效果")).to_be_visible()
            await journey.check("monthly-work-summary")
            await page.get_by_role("button", name="发送邮件").click()
            await expect(page.get_by_role("status")).to_contain_text("月度总结已发布")
            subject = f"【月度工作总结】{month}"
            await eventually(lambda: _mailed(store, subject, 2), what="the summary's e-mails")
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            monthly = [[c.value for c in row] for row in
                       load_workbook(io.BytesIO((await (await waiting.value).path()).read_bytes())).active.iter_rows()]
            # A sales department person reads the sales part only, and nothing else.
            await users.add(cns.settings, "xu.juan", "徐娟", "department", PASSWORD, department="sales")
            async with browser_client(url) as client:
                await sign_in(client, "xu.juan")
                own = await client.get("/reports/return-visits", params={"week": week})
                other = await client.get("/reports/return-visits",
                                         params={"week": week, "department": "after_sales_service"})
                summary_page = await client.get("/reports/monthly-summary")
        assert journey.checked == ["weekly-return-visit-report", "monthly-work-summary"]
        assert own.status_code == 200 and PRICE in own.text and REPAIR not in own.text and ANSWER not in own.text
        assert "本周回访概况" in own.text and 'id="rv-department"' not in own.text
        assert other.status_code == 403 and REPAIR not in other.text
        assert summary_page.status_code == 403

        # The weekly file: the headline, then the sales department's words only.
        assert rows[0][:6] == ["类别", "责任部门", "指标", "本周", "较上周", "较前4周平均"]
        headline_rows = {r[2]: r[3] for r in rows[1:] if r[0] == "概况"}
        assert headline_rows["不满意客户数"] == 2 and headline_rows["满意度"] == pytest.approx(1 / 3)
        words = [r for r in rows[1:] if r[0] == "客户原话"]
        assert [(r[1], r[8], r[10], r[11]) for r in words] == [("销售部", "价格", PRICE, "处理中")]

        # The monthly file: the services' figures of that month.
        start, end = month_bounds(month)
        async with api(stack["followup"], "supervisor") as s:
            visits = (await s.get("/v1/reports/return-visits",
                                  params={"from": start.isoformat(), "to": end.isoformat()})).json()
        by_item = {(r[0], r[1]): r for r in monthly[1:]}
        assert monthly[0][:7] == ["类别", "项目", "实际", "目标", "是否达标", "数量", "总数"]
        reach = by_item[("目标与实际", "回访接通率")]
        assert (reach[5], reach[6]) == (visits["reached"], visits["calls_due"])
        assert reach[2] == pytest.approx(visits["reach_rate"])
        assert visits["scored"] == 3 and visits["dissatisfied"] == 2
        repair = by_item[("投诉类别", "维修质量")]
        assert (repair[5], repair[6], repair[7], repair[8]) == (2, 3, 0, 2)
        assert repair[2] == pytest.approx(2 / 3)
        assert by_item[("投诉类别", "价格")][5] == 1
        assert month_bounds(month)[0] <= T0 < month_bounds(month)[1] and timedelta(0) < end - start
        mailed = [m for m in store.mails if m.subject == subject]
        assert sorted(r for m in mailed for r in m.rcpt_to) == [
            "aftersales-director-01@aftersales.example", "cs-head-01@aftersales.example",
            "cs-supervisor-01@aftersales.example"]
        assert "- 维修质量：2（占比 66.7%，上月 0，变化 +2）" in mailed[0].text and "回访接通率" in mailed[0].text
    finally:
        await stack.stop()
        sink.stop()


async def _mailed(store: PeerStore, subject: str, mails: int) -> bool | None:
    return True if len([m for m in store.mails if m.subject == subject]) >= mails else None
