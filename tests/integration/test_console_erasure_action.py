"""A supervisor's 删除个人信息 on the customer's page (issue 19), through the console's HTTP on
the real database and broker: the form asks for a reason and a confirmation, the console calls
intake's POST /v1/customers/{id}/erasure under the supervisor's name with the reason and the
form's Idempotency-Key, and shows the result or intake's refusal; agents neither see the form
nor reach intake through the route.

Intake's erasure API was not committed when this test was written, so intake is a recording
stand-in on the console's transport (IntakeErasure below) that answers as the contract in
the erasure brief says (201 with the record, 200 when erased before, 404, 422)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from shared.events import INTAKE
from tests.console_support import (
    add_staff,
    browser_client,
    console_namespace,
    console_stack,
    csrf_of,
    eventually,
    served,
    sign_in,
)
from tests.support import TEST_NOW, Namespace, drop_namespace, manual_clock, publish
from tools.simulate import envelope

pytestmark = pytest.mark.infra

CUSTOMER = "CUS-ERA-1"
UNKNOWN = "CUS-ERA-2"  # in the console's read model, but intake answers 404


class IntakeErasure(httpx.AsyncBaseTransport):
    """Intake's erasure route as the contract has it, recording each request it gets."""

    def __init__(self, erased_at: datetime) -> None:
        self.requests: list[httpx.Request] = []
        self.erased_at = erased_at
        self.done: dict[str, dict[str, Any]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        found = re.fullmatch(r"/v1/customers/([^/]+)/erasure", request.url.path)
        if request.method != "POST" or not found:
            return _problem(404, "no such route")
        customer_id = found.group(1)
        if customer_id != CUSTOMER:
            return _problem(404, f"no customer file {customer_id!r}; search with GET /v1/customers?phone=…")
        reason = json.loads(request.content).get("reason") or ""
        if not 5 <= len(reason) <= 500:
            return _problem(422, "reason: 5 to 500 characters")
        if customer_id in self.done:
            return httpx.Response(200, json=self.done[customer_id])
        self.done[customer_id] = record = {
            "erasure_id": "ERS-TEST-1", "customer_id": customer_id, "requested_by": "liu.yang", "reason": reason,
            "requested_at": self.erased_at.isoformat(), "erased_at": self.erased_at.isoformat(),
            "merged_customer_ids": []}
        return httpx.Response(201, json=record)


def _problem(status: int, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"type": "about:blank", "title": "refused", "status": status, "detail": detail},
                          headers={"content-type": "application/problem+json"})


@pytest.fixture
async def ns(infra: None) -> AsyncIterator[Namespace]:
    found = await console_namespace()
    try:
        yield found
    finally:
        await drop_namespace(found)


async def file_customers(ns: Namespace) -> None:
    """The customers as intake announced them, in the console's read model."""
    await publish(ns.settings, INTAKE, [envelope("CustomerRegistered", customer_id, {
        "customer_id": customer_id, "registered_from": "sales", "name": name, "phone": phone, "region": "华东"},
        TEST_NOW, "intake") for customer_id, name, phone in ((CUSTOMER, "上官婉清", "+8613911112222"),
                                                              (UNKNOWN, "东方明月", "+8613911113333"))])


async def test_a_supervisor_erases_a_customer_with_a_reason_and_an_agent_cannot(ns: Namespace) -> None:
    intake = IntakeErasure(TEST_NOW)
    stack = console_stack(ns, manual_clock(TEST_NOW), services=())
    stack.state["console"]["transports"] = {"intake": intake}
    await stack.start()
    try:
        await add_staff(ns)
        await file_customers(ns)
        async with served(stack) as url:
            async with browser_client(url) as agent:
                assert (await sign_in(agent, "wang.fang")).status_code == 303
                page = await eventually(lambda: _page_with(agent, "上官婉清"), what="the customer's file")
                assert "删除个人信息" not in page and "/erasure" not in page, "agents do not see the action"
                refused = await agent.post(f"/customers/{CUSTOMER}/erasure",
                                           data={"csrf_token": csrf_of(page), "reason": "客户书面申请 REQ-1",
                                                 "confirm": "yes"})
                assert refused.status_code == 403 and not intake.requests, "nor can they post it"

            async with browser_client(url) as supervisor:
                assert (await sign_in(supervisor, "liu.yang")).status_code == 303
                page = (await supervisor.get(f"/customers/{CUSTOMER}")).text
                assert "删除个人信息" in page and 'name="reason"' in page and 'name="confirm"' in page
                key = re.search(r'name="erasure_key" value="([^"]+)"', page)
                assert key
                form = {"csrf_token": csrf_of(page), "erasure_key": key.group(1)}

                async def post(**fields: str) -> str:
                    answer = await supervisor.post(f"/customers/{CUSTOMER}/erasure", data=form | fields)
                    assert answer.status_code == 303
                    return (await supervisor.get(answer.headers["location"])).text

                shown = await post(reason="短", confirm="yes")
                assert "请填写删除原因" in shown and not intake.requests, "a reason of 5 characters at least"
                shown = await post(reason="客户书面申请 REQ-2026-001")
                assert "请勾选确认" in shown and not intake.requests, "and the confirmation"

                shown = await post(reason="  客户书面申请   REQ-2026-001 ", confirm="yes")
                assert "客户档案中的个人信息已删除" in shown, "the result"
                sent = intake.requests[-1]
                assert json.loads(sent.content) == {"reason": "客户书面申请 REQ-2026-001"}
                assert sent.headers["Idempotency-Key"] == key.group(1), "the form's key: a double submit is one"
                assert sent.headers["Authorization"].startswith("Bearer "), "under the supervisor's name"

                await eventually(lambda: _page_with(supervisor, "东方明月", UNKNOWN), what="the other file")
                missing = await supervisor.post(f"/customers/{UNKNOWN}/erasure",
                                                data=form | {"reason": "客户书面申请 REQ-9", "confirm": "yes"})
                assert missing.status_code == 303
                shown = (await supervisor.get(missing.headers["location"])).text
                assert f"no customer file &#39;{UNKNOWN}&#39;" in shown and "客户档案中的个人信息已删除" not in shown, \
                    "intake's refusal is shown"

        conn = await _console(ns)
        try:
            audit = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'erase_customer'")
            assert audit["username"] == "liu.yang" and audit["customer_id"] == CUSTOMER
            detail = audit["detail"] if isinstance(audit["detail"], dict) else json.loads(audit["detail"])
            assert audit["subject"] == "ERS-TEST-1" and "reason" not in detail, "the reason stays in intake's register"
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'erase_customer'") == 1
        finally:
            await conn.close()
    finally:
        await stack.stop()


async def _page_with(client: httpx.AsyncClient, text: str, customer_id: str = CUSTOMER) -> str | None:
    page = await client.get(f"/customers/{customer_id}")
    return page.text if page.status_code == 200 and text in page.text else None


async def _console(ns: Namespace) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": "console,public"})
