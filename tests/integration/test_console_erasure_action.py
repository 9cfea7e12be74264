"""A supervisor's 删除个人信息 on the customer's page (issue 19), through the console's HTTP on
the real stack (Kafka, Postgres, intake and the console): the form asks for a reason and a
confirmation, the console calls intake's POST /v1/customers/{id}/erasure under the supervisor's
name with the reason and the form's Idempotency-Key, shows the result or intake's refusal, and
the file shows as erased once intake's CustomerErased reaches the console; agents neither see
the form nor reach intake through the route."""

from __future__ import annotations

import re
from datetime import datetime

import asyncpg
import httpx
import pytest

from shared.events import INTAKE
from tests.console_support import (
    add_staff,
    browser_client,
    console_stack,
    csrf_of,
    eventually,
    keyed_ns,
    served,
    sign_in,
)
from tests.support import TEST_NOW, Namespace, manual_clock, publish
from tools.simulate import CST, Fleet, Vehicle, envelope

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns"]  # the fixture, used by name

UNKNOWN = "CUS-ERA-ONLY-HERE"  # in the console's read model only: intake answers 404
NAME = "上官婉清"


async def file_customers(ns: Namespace) -> Vehicle:
    """A customer filed by intake from a sale (NAME), and one the console heard of that intake
    does not know; the sale's vehicle."""
    fleet = Fleet(seed=1919)
    vehicle = fleet.vehicle(datetime(2025, 6, 1, tzinfo=CST))
    vehicle.customer.name = NAME
    await publish(ns.settings, "upstream.sales", [fleet.sale(vehicle)])
    await publish(ns.settings, INTAKE, [envelope("CustomerRegistered", UNKNOWN, {
        "customer_id": UNKNOWN, "registered_from": "sales", "name": "东方明月", "phone": "+8613911113333",
        "region": "华东"}, TEST_NOW, "intake")])
    return vehicle


async def db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": f"{schema},public"})


async def page_with(client: httpx.AsyncClient, customer_id: str, text: str) -> str | None:
    page = await client.get(f"/customers/{customer_id}")
    return page.text if page.status_code == 200 and text in page.text else None


async def test_a_supervisor_erases_a_customer_with_a_reason_and_an_agent_cannot(keyed_ns: Namespace) -> None:
    ns = keyed_ns  # the console's signing key pair, so people's tokens can be signed
    stack = await console_stack(ns, manual_clock(TEST_NOW), services=("intake",)).start()
    intake = await db(ns, "intake")
    try:
        await add_staff(ns)
        who = (await file_customers(ns)).customer.customer_id
        async with served(stack) as url:
            async with browser_client(url) as agent:
                assert (await sign_in(agent, "wang.fang")).status_code == 303
                page = await eventually(lambda: page_with(agent, who, NAME), what="the customer's file")
                assert "删除个人信息" not in page and "/erasure" not in page, "agents do not see the action"
                refused = await agent.post(f"/customers/{who}/erasure", data={
                    "csrf_token": csrf_of(page), "reason": "客户书面申请 REQ-1", "confirm": "yes"})
                assert refused.status_code == 403, "nor can they post it"

            async with browser_client(url) as supervisor:
                assert (await sign_in(supervisor, "liu.yang")).status_code == 303
                page = (await supervisor.get(f"/customers/{who}")).text
                assert "删除个人信息" in page and 'name="reason"' in page and 'name="confirm"' in page
                key = re.search(r'name="erasure_key" value="([^"]+)"', page)
                assert key
                form = {"csrf_token": csrf_of(page), "erasure_key": key.group(1)}

                async def post(customer_id: str = who, **fields: str) -> str:
                    answer = await supervisor.post(f"/customers/{customer_id}/erasure", data=form | fields)
                    assert answer.status_code == 303
                    return (await supervisor.get(answer.headers["location"])).text

                shown = await post(reason="短", confirm="yes")
                assert "请填写删除原因" in shown, "a reason of 5 characters at least"
                shown = await post(reason="客户书面申请 REQ-2026-001")
                assert "请勾选确认" in shown, "and the confirmation"
                assert not await intake.fetchval("SELECT count(*) FROM erasures"), "intake was not asked"

                shown = await post(reason="  客户书面申请   REQ-2026-001 ", confirm="yes")
                assert "客户档案中的个人信息已删除" in shown, "the result"
                again = await post(reason="客户书面申请 REQ-2026-001", confirm="yes")
                assert "客户档案中的个人信息已删除" in again, "the same form sent twice: one erasure"
                register = await intake.fetch("SELECT * FROM erasures")
                assert [(r["customer_id"], r["requested_by"], r["reason"]) for r in register] == [
                    (who, "liu.yang", "客户书面申请 REQ-2026-001")], "under the supervisor's name, with the reason"

                shown = await eventually(lambda: page_with(supervisor, who, "个人信息已删除"),
                                         what="intake's CustomerErased in the console")
                at = shown.find(NAME)
                assert NAME not in shown, shown[max(0, at - 600):at + 200]
                assert f'action="/customers/{who}/erasure"' not in shown, "erased: no name, no action any more"

                other = await eventually(lambda: page_with(supervisor, UNKNOWN, "东方明月"), what="the console-only file")
                form["erasure_key"] = re.findall(r'name="erasure_key" value="([^"]+)"', other)[0]  # that page's form
                shown = await post(UNKNOWN, reason="客户书面申请 REQ-9", confirm="yes")
                assert f"no customer file &#39;{UNKNOWN}&#39;" in shown and "客户档案中的个人信息已删除" not in shown, \
                    "intake's refusal is shown"

        conn = await db(ns, "console")
        try:
            audit = await conn.fetch("SELECT * FROM audit_log WHERE action = 'erase_customer'")
            assert [(a["username"], a["customer_id"], a["subject"]) for a in audit] == [
                ("liu.yang", who, register[0]["erasure_id"])] * 2, "each request audited, the reason is not"
            assert all("reason" not in str(a["detail"]) for a in audit)
        finally:
            await conn.close()
    finally:
        await intake.close()
        await stack.stop()
