"""Dealer scorecards and receipts in the console, in a real headless Chromium on the real stack
(Kafka, Postgres, intake, complaints and the console): two dealers ship at the same 95 % parts
accuracy, one on 200 lines (10 discrepant: flagged, p = 0.0075) and one on 20 (1 discrepant: not
flagged, p = 0.33); the supervisor sees the flagged one highlighted with the test's figures, opens
its drill-down (why, the discrepant lines, the complaint the case carried the dealer of, the
repeat repair, the poor receipt) and reads the same figures as JSON; a complaint that names no
vehicle carries the dealer of the customer's last visit (intake names it on the filing); an agent
searches the receipts by words and rating and sees them per dealer and week, and may not open the scorecards. Every page passes
axe-core; screenshots under .local/artifacts/console/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from playwright.async_api import expect

from tests.console_support import eventually
from tests.e2e.test_console_browser import _db
from tests.e2e.test_console_feedback_browser import World, running_world, signed_in
from tests.support import publish
from tools.simulate import CST, Fleet

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="module")]

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=CST)  # a Friday morning; everything below happened in November
NOV = datetime(2026, 11, 2, 9, 0, tzinfo=CST)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(infra: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(("intake", "complaints"), NOW, tmp_path_factory) as found:
        yield found


async def test_a_flagged_and_an_unflagged_dealer_at_the_same_percentage_and_the_receipts(world: World) -> None:
    fleet = Fleet(seed=4242)
    # Parts: 10 shipments of 20 lines to D-LARGE with 10 discrepant lines; one of 20 to D-SMALL with 1.
    large = [fleet.shipment("D-LARGE", NOV + timedelta(days=i), lines=20) for i in range(10)]
    small = fleet.shipment("D-SMALL", NOV + timedelta(days=3), lines=20)
    misses = [fleet.discrepancy(s, 1 + i, "short", NOV + timedelta(days=i + 1)) for i, s in enumerate(large)]
    misses.append(fleet.discrepancy(small, 7, "wrong_part", NOV + timedelta(days=4)))
    await publish(world.ns.settings, "upstream.erp", [*large, small, *misses])

    # Visits: a car at D-LARGE back for the same repair 9 days later; one at D-SMALL; their receipts.
    back, once, other = (fleet.vehicle(datetime(2025, 6, 1, tzinfo=CST)) for _ in range(3))
    back.dealer_id, once.dealer_id, other.dealer_id = "D-LARGE", "D-SMALL", "D-LARGE"
    back.customer.name, once.customer.name, other.customer.name = "周建国", "林小燕", "高志强"
    await publish(world.ns.settings, "upstream.sales", [fleet.sale(v) for v in (back, once, other)])
    first = fleet.pickup(back, NOV + timedelta(days=1), service_type="repair")
    again = fleet.pickup(back, NOV + timedelta(days=10), service_type="repair")
    visit = fleet.pickup(once, NOV + timedelta(days=5))
    third = fleet.pickup(other, NOV + timedelta(days=6))
    await publish(world.ns.settings, "upstream.dms", [first, again, visit, third])
    await publish(world.ns.settings, "upstream.dms", [
        fleet.receipt(first, NOV + timedelta(days=2), 2, "等了三个小时才交车，刹车还是异响"),
        fleet.receipt(again, NOV + timedelta(days=11), 4, "第二次修好了"),
        fleet.receipt(visit, NOV + timedelta(days=6), 5, "服务热情，非常满意"),
    ])
    # Complaints, days after the visits are on file: one names the vehicle (intake gives it the
    # vehicle's dealer), one names only the customer (intake gives it their last visit's dealer).
    console_db = await _db(world.ns, "console")
    try:
        await eventually(lambda: console_db.fetchval("SELECT count(*) = 4 FROM visits"), what="the visits on file")
    finally:
        await console_db.close()
    await publish(world.ns.settings, "upstream.crm", [
        fleet.complaint(back.customer, NOV + timedelta(days=12), "刹车异响修了两次还没好", vin=back.vin,
                        category="repair_quality"),
        fleet.complaint(other.customer, NOV + timedelta(days=13), "前台态度不好", category="service_attitude"),
    ])
    console_db = await _db(world.ns, "console")
    try:
        await eventually(lambda: console_db.fetchval(
            "SELECT (SELECT count(*) FROM shipment_lines) = 220 AND (SELECT count(*) FROM shipment_discrepancies) = 11"
            " AND (SELECT count(*) FROM receipts) = 3 AND (SELECT count(*) FROM visits) = 4"
            " AND (SELECT count(*) FROM complaints) = 2"), what="the shipments, visits, receipts and complaints")
        named = {r["vin"]: r["dealer_id"] for r in await console_db.fetch("SELECT vin, dealer_id FROM complaints")}
        # ComplaintOpened carries the dealer: the vehicle's (named by VIN), or, with no vehicle named,
        # the dealer of the customer's last visit (intake puts it on the filing).
        assert named == {back.vin: "D-LARGE", None: "D-LARGE"}, named
    finally:
        await console_db.close()

    page, journey = await signed_in(world, "dealer-scorecards", "liu.yang", "/dealers/scorecards?month=2026-11")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("经销商评分卡")
    flagged = page.locator("tr[data-dealer='D-LARGE']")
    calm = page.locator("tr[data-dealer='D-SMALL']")
    await expect(flagged).to_have_class(re.compile("flagged"))
    await expect(calm).not_to_have_class(re.compile("flagged"))
    await expect(flagged).to_contain_text("95.0 %")
    await expect(flagged).to_contain_text("(190/200)")
    await expect(flagged).to_contain_text("p = 0.0075")
    await expect(flagged).to_contain_text("低于目标")
    await expect(calm).to_contain_text("95.0 %")
    await expect(calm).to_contain_text("(19/20)")
    await expect(calm).to_contain_text("p = 0.3324")
    await expect(calm).to_contain_text("在偶然范围内")
    await expect(page.get_by_role("region", name=re.compile("家经销商"))).to_contain_text("1 家被标记")
    await journey.check("scorecards")

    # The same figures as JSON, with the session.
    answer = await page.request.get(f"{world.url}/dealers/scorecards?month=2026-11&format=json")
    assert answer.ok
    body = await answer.json()
    assert body["flagged"] == ["D-LARGE"] and body["confidence"] == 0.95 and body["target"] == 0.98
    dealers = {d["dealer_id"]: d for d in body["dealers"]}
    assert dealers["D-LARGE"]["parts_accuracy"]["rate"] == dealers["D-SMALL"]["parts_accuracy"]["rate"] == 0.95
    assert dealers["D-LARGE"]["parts_accuracy"]["p_value"] == pytest.approx(0.00748, abs=1e-5)
    assert dealers["D-SMALL"]["parts_accuracy"]["p_value"] == pytest.approx(0.3324, abs=1e-4)
    # Both complaints are D-LARGE's: one about its car, one from a customer whose last visit was there.
    assert (dealers["D-LARGE"]["visits"], dealers["D-LARGE"]["complaints"]) == (3, 2)
    assert dealers["D-LARGE"]["complaint_rate_per_100_visits"] == pytest.approx(200 / 3)
    assert dealers["D-LARGE"]["repeat_repairs"] == 1 and dealers["D-SMALL"]["repeat_repairs"] == 0
    assert dealers["D-SMALL"]["receipts"] == {"count": 1, "rated": 1, "mean_rating": 5.0, "good_share": 1.0}
    bad = await page.request.get(f"{world.url}/dealers/scorecards?month=2026-13&format=json")
    assert bad.status == 422 and "2026-11" in (await bad.json())["detail"]

    # The drill-down: why, the discrepant lines, the complaints, the repeat repair, the poor receipt.
    await flagged.get_by_role("link", name="D-LARGE").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("经销商 D-LARGE")
    why = page.get_by_role("note")
    await expect(why).to_contain_text("配件发货准确率")
    await expect(why).to_contain_text("200 次中达标 190 次")
    await expect(why).to_contain_text("p = 0.0075")
    await expect(page.get_by_role("region", name="有差错的发货行").locator("tbody tr")).to_have_count(10)
    cases = page.get_by_role("region", name="归属该经销商的投诉")
    await expect(cases.locator("tbody tr")).to_have_count(2)
    await expect(cases.locator("tbody tr", has_text="前台态度不好").or_(cases.locator("tbody tr", has_text="服务态度"))
                 ).to_contain_text("投诉登记")
    await expect(page.get_by_role("region", name=re.compile("^返修"))).to_contain_text(back.vin)
    await expect(page.get_by_role("region", name="3 分及以下的回执")).to_contain_text("刹车还是异响")
    await journey.check("dealer-drill-down")
    await page.goto(f"{world.url}/dealers/scorecards?month=11-2026")
    await expect(page.get_by_role("main")).to_contain_text("月份请写成 2026-11")
    await page.close()

    # An agent searches the receipts; the scorecards are the supervisors'.
    page, searching = await signed_in(world, "receipts-search", "wang.fang", "/receipts?since=2026-11-01&until=2026-11-30")
    await expect(page.get_by_role("heading", level=1)).to_have_text("回执")
    await expect(page.locator("table.receipts tbody tr")).to_have_count(3)
    await page.get_by_label("意见中的文字", exact=True).fill("异响")
    await page.get_by_role("button", name="搜索").click()
    rows = page.locator("table.receipts tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("D-LARGE")
    await expect(rows.first).to_contain_text("周建国")
    await searching.check("receipts-by-words")
    await page.get_by_label("意见中的文字", exact=True).fill("")
    await page.get_by_label("最低评分", exact=True).select_option("4")
    await page.get_by_role("button", name="搜索").click()
    await expect(page.locator("table.receipts tbody tr")).to_have_count(2)
    weeks = page.locator("table.receipt-weeks tbody tr")
    await expect(weeks).to_have_count(2)  # D-LARGE's W46 (4) and D-SMALL's W45 (5)
    await expect(page.locator("table.receipt-weeks")).to_contain_text("2026-W46")
    await searching.check("receipts-by-rating")
    answer = await page.request.get(f"{world.url}/receipts?dealer=D-LARGE&since=2026-11-01&until=2026-11-30&format=json")
    found = await answer.json()  # a cursor page, newest first; a page of one leads to the other
    assert len(found["items"]) == 2 and found["next_cursor"] is None and "customer_name" not in found["items"][0]
    returned = [r["returned_at"] for r in found["items"]]
    assert returned == sorted(returned, reverse=True)
    first = await (await page.request.get(f"{world.url}/receipts?dealer=D-LARGE&since=2026-11-01&until=2026-11-30"
                                          "&format=json&limit=1")).json()
    rest = await (await page.request.get(f"{world.url}/receipts?dealer=D-LARGE&since=2026-11-01&until=2026-11-30"
                                         f"&format=json&limit=1&cursor={first['next_cursor']}")).json()
    assert [r["receipt_id"] for r in first["items"] + rest["items"]] == [r["receipt_id"] for r in found["items"]]
    weeks = await (await page.request.get(f"{world.url}/receipts/weeks?dealer=D-LARGE&since=2026-11-01"
                                          "&until=2026-11-30")).json()
    assert weeks["receipts"] == 2 and {w["week"] for w in weeks["weeks"]} == {"2026-W45", "2026-W46"}
    refused = await page.request.get(f"{world.url}/receipts?rating_min=9&format=json")
    assert refused.status == 422 and "1 to 5" in (await refused.json())["detail"]
    denied = await page.goto(f"{world.url}/dealers/scorecards")
    assert denied is not None and denied.status == 403
    await page.close()
    assert journey.checked == ["scorecards", "dealer-drill-down"]
    assert searching.checked == ["receipts-by-words", "receipts-by-rating"]
