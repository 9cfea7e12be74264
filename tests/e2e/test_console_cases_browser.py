"""Console II in a real headless Chromium on the real stack (Kafka, Postgres, the complaints
service and the console): a complaint handler works a case from open to resolved through the
worklist (the overdue case first, in red), a saved view, the case page's actions with their
reasons and an uploaded photo (a step on a case changed meanwhile is refused until the handler
has seen the change), and the complaints service holds every step under the handler's
name and the photo with its checksum; a department user sees only the cases routed to their
department and is refused another's. Every page passes axe-core; screenshots under
.local/artifacts/console/."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.async_api import BrowserContext, Page, expect

from services.console import users
from tests.complaints_fixtures import complaints_state
from tests.console_support import PASSWORD, add_staff, console_stack, served
from tests.e2e.test_console_browser import Journey, _db, _folder, chromium, cns  # noqa: F401  (fixtures)
from tests.support import Namespace, api, manual_clock

pytestmark = pytest.mark.infra


async def signed_in(chromium: BrowserContext, url: str, folder: str, username: str, start: str = "/"
                    ) -> tuple[Page, Journey]:
    """A new tab with its journey (screenshots, axe-core), signed in as `username` from `start`."""
    page = await chromium.new_page()
    journey = Journey(page, _folder(folder))
    await page.goto(f"{url}{start}")
    await page.get_by_label("用户名", exact=True).fill(username)
    await page.get_by_label("密码", exact=True).fill(PASSWORD)
    await page.get_by_label("密码", exact=True).press("Enter")
    return page, journey


def png(width: int = 8, height: int = 8) -> bytes:
    """A real (tiny, red) PNG, as a phone's photo would be one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xc0\x20\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def test_a_handler_works_a_case_to_resolved_with_a_photo_and_a_department_sees_only_its_cases(
        cns: Namespace, chromium: BrowserContext, tmp_path: Path) -> None:  # noqa: F811
    clock = manual_clock()
    now = clock.now()
    stack = console_stack(cns, clock, services=("complaints",))
    stack.state |= complaints_state(tmp_path / "documents")
    await stack.start()
    try:
        await add_staff(cns)
        await users.add(cns.settings, "sun.wei", "孙伟", "department", PASSWORD, department="quality_inspection")
        async with api(stack["complaints"], "agent") as agent:
            filed = {}
            for ref, category, severity, ago in (("CS-A", "product_quality", "high", 7 * 24 * 60),
                                                 ("CS-B", "service_attitude", "low", 60),
                                                 ("CS-C", "repair_quality", "medium", 30)):
                answer = await agent.post("/v1/complaints", json={
                    "complaint_ref": ref, "customer_id": f"CUST-{ref}", "channel": "hotline", "category": category,
                    "severity": severity, "description": f"{ref} 刹车异响，要求检查",
                    "filed_at": (now - timedelta(minutes=ago)).isoformat()})
                assert answer.status_code == 201, answer.text
                filed[ref] = answer.json()
        assert filed["CS-A"]["department"] == "quality_inspection"
        assert {filed["CS-B"]["department"], filed["CS-C"]["department"]} & {"quality_inspection"} == set()

        async with served(stack) as url:
            page, journey = await signed_in(chromium, url, "handler-journey", "wang.fang", "/cases")
            await expect(page.get_by_role("heading", name="投诉案件", exact=True)).to_be_visible()

            # The worklist: the nearest deadline first; the one already missed in red.
            rows = page.locator("table.worklist tbody tr")
            await expect(rows).to_have_count(3)
            await expect(rows.nth(0)).to_contain_text("CS-A")
            await expect(rows.nth(0)).to_have_class(re.compile("late"))
            await expect(rows.nth(0)).to_contain_text("已超时")
            await expect(rows.nth(1)).to_contain_text("剩余")
            await journey.check("worklist")

            # Filters, and a saved view of them.
            await page.get_by_label("类别", exact=True).select_option("product_quality")
            await page.get_by_role("button", name="查询").click()
            await expect(rows).to_have_count(1)
            await page.get_by_label("将当前筛选保存为", exact=True).fill("产品质量")
            await page.get_by_role("button", name="保存视图").click()
            await page.goto(f"{url}/cases?q=CS-B")
            await expect(rows).to_have_count(1)
            await expect(rows.nth(0)).to_contain_text("CS-B")
            await page.get_by_role("link", name="产品质量").click()
            await expect(rows).to_have_count(1)
            await expect(rows.nth(0)).to_contain_text("CS-A")
            await journey.check("saved-view")
            # The list as a file: the same cases as on the screen.
            async with page.expect_download() as waiting:
                await page.get_by_role("link", name="下载 XLSX").click()
            sheet = load_workbook(io.BytesIO((await (await waiting.value).path()).read_bytes())).active
            exported = [[c.value for c in row] for row in sheet.iter_rows()]
            assert exported[0][:3] == ["投诉单", "下一时限", "状态"] and [r[0] for r in exported[1:]] == ["CS-A"]

            # The case page: its clocks, its ladder, and only the steps its state allows.
            await rows.nth(0).get_by_role("link", name="CS-A").click()
            await expect(page.get_by_role("heading", name=re.compile("CS-A"))).to_be_visible()
            await expect(page.get_by_role("region", name="时限计时")).to_contain_text("已超时")
            await expect(page.get_by_role("region", name="升级路径")).to_contain_text("部门负责人")
            actions = page.get_by_role("region", name="当前可执行的操作")
            assert await actions.get_by_role("button").all_inner_texts() == ["受理"]
            await journey.check("case-opened")
            await actions.get_by_role("button", name="受理").click()
            await expect(page.get_by_role("status")).to_contain_text("已受理")
            # A colleague notes something on the case meanwhile: the page the handler has is out of date,
            # so the step is refused (If-Match, 412) and the reloaded page shows the note; then it goes through.
            async with api(stack["complaints"], "agent") as colleague:
                noted = await colleague.post(f"/v1/complaints/{filed['CS-A']['complaint_id']}/comments",
                                             json={"text": "客户来电催促"})
                assert noted.status_code == 200, noted.text
            await actions.get_by_role("button", name="分派").click()
            await expect(page.get_by_role("alert")).to_contain_text("有人修改了它")
            await expect(page.get_by_text("客户来电催促")).to_be_visible()
            async with api(stack["complaints"], "agent") as colleague:
                unchanged = (await colleague.get(f"/v1/complaints/{filed['CS-A']['complaint_id']}")).json()
                assert unchanged["state"] == "acknowledged", "the refused step changed nothing"
            await actions.get_by_role("button", name="分派").click()
            await expect(page.get_by_role("status")).to_contain_text("已分派")

            # A step that needs its reason is refused without one (the browser's check removed).
            await page.evaluate("document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))")
            await actions.get_by_role("button", name="等待客户").click()
            await expect(page.get_by_role("alert")).to_contain_text("请说明原因")
            await actions.get_by_label("需要客户提供的内容", exact=True).fill("请客户提供异响视频")
            await actions.get_by_role("button", name="等待客户").click()
            await expect(page.get_by_role("region", name="时限计时")).to_contain_text("计时暂停")
            await actions.get_by_role("button", name="恢复处理").click()
            await expect(page.get_by_role("status")).to_contain_text("已恢复处理")

            # A photo of the fault.
            photo = png()
            documents = page.get_by_role("region", name="处理文件")
            await documents.get_by_label("标题", exact=True).fill("刹车盘照片")
            await documents.get_by_label("类型", exact=True).select_option("photo")
            await documents.get_by_label(re.compile("^文件")).set_input_files(
                files=[{"name": "brake.png", "mimeType": "image/png", "buffer": photo}])
            await documents.get_by_role("button", name="上传附件").click()
            await expect(page.get_by_role("status")).to_contain_text("文件已上传")
            await expect(documents.get_by_role("link", name="刹车盘照片")).to_be_visible()
            await expect(documents).to_contain_text(hashlib.sha256(photo).hexdigest()[:16])
            shown = await documents.get_by_role("img", name="刹车盘照片").evaluate("i => i.naturalWidth")
            assert shown == 8, "the photo comes back through the console as it was uploaded"

            # A file that is not what it says is refused with the service's reason.
            await documents.get_by_label(re.compile("^文件")).set_input_files(
                files=[{"name": "brake.jpg", "mimeType": "image/jpeg", "buffer": b"#!/bin/sh\necho no\n"}])
            await documents.get_by_role("button", name="上传附件").click()
            await expect(page.get_by_role("alert")).to_contain_text("not image/jpeg")

            await actions.get_by_label("处理结果", exact=True).fill("更换刹车片并免费复查，客户认可")
            await actions.get_by_role("button", name="办结").click()
            await expect(page.get_by_role("status")).to_contain_text("已办结")
            await expect(page.get_by_role("heading", name=re.compile("CS-A"))).to_contain_text("已解决")
            assert await actions.get_by_role("button").count() == 0, "closing and reopening are the supervisor's"
            await journey.check("case-resolved")

            # The department of quality inspection sees only the case routed to it.
            await page.get_by_role("button", name="退出").click()
            await page.get_by_label("用户名", exact=True).fill("sun.wei")
            await page.get_by_label("密码", exact=True).fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await expect(page.get_by_role("heading", name=re.compile("投诉案件"))).to_be_visible()
            # The worklist opens on the cases still being worked (CS-A is resolved; the others are not theirs).
            await expect(page.get_by_text("正在处理中的案件；选择筛选条件可查询全部案件")).to_be_visible()
            await expect(rows).to_have_count(0)
            await page.goto(f"{url}/cases?state=resolved")
            await expect(rows).to_have_count(1)
            await expect(rows.nth(0)).to_contain_text("CS-A")
            assert await page.get_by_label("责任部门", exact=True).count() == 0, "no department filter to change"
            assert await page.get_by_role("link", name="搜索").count() == 0, "no search of every customer's file"
            refused_search = await page.goto(f"{url}/search?q=1234")
            assert refused_search is not None and refused_search.status == 403
            await page.goto(f"{url}/cases?department=customer_service")
            await expect(rows).to_have_count(1)
            await expect(rows.nth(0)).to_contain_text("CS-A")
            await journey.check("department-worklist")
            # Another department's case does not exist for them (the service scopes by the token's department).
            refused = await page.goto(f"{url}/cases/{filed['CS-B']['complaint_id']}")
            assert refused is not None and refused.status in (403, 404)
            await expect(page.get_by_role("alert")).to_contain_text(re.compile("没有此编号的投诉单|此投诉未分派到您的部门"))
            assert filed["CS-B"]["description"] not in await page.content()
            await journey.check("department-refused-another-case")
        assert journey.checked == ["worklist", "saved-view", "case-opened", "case-resolved", "department-worklist",
                                   "department-refused-another-case"]

        # The complaints service has every step under the handler's name, and the photo with its checksum.
        complaints_db = await _db(cns, "complaints")
        try:
            cid = filed["CS-A"]["complaint_id"]
            assert await complaints_db.fetchval("SELECT state FROM cases WHERE complaint_id = $1", cid) == "resolved"
            steps = await complaints_db.fetch(
                "SELECT kind, actor FROM case_history WHERE complaint_id = $1 AND kind <> 'filed' ORDER BY seq", cid)
            assert [(s["kind"], s["actor"]) for s in steps if s["kind"] not in ("note", "escalated")] == [
                ("acknowledged", "wang.fang"), ("comment", "agent-01")] + [
                (k, "wang.fang") for k in ("assigned", "pended", "resumed", "document", "resolved")], "one assignment"
            [doc] = await complaints_db.fetch("SELECT content_type, size_bytes, sha256, path FROM documents "
                                              "WHERE complaint_id = $1", cid)
            assert (doc["content_type"], doc["size_bytes"], doc["sha256"]) == (
                "image/png", len(photo), hashlib.sha256(photo).hexdigest())
            assert (tmp_path / "documents" / doc["path"]).read_bytes() == photo
        finally:
            await complaints_db.close()
    finally:
        await stack.stop()
