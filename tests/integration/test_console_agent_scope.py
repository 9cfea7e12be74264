"""Issue 19: an agent's regions (their console account) hold in the console too, on the real
broker and database. The console's own search and customer pages apply the scope (403 page for
a customer outside it, no search hit), and what the console asks a service for the agent carries
the scope in the person's token, so intake refuses the same agent's correction of that file."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest

from services.console import users
from tests.console_support import PASSWORD, add_staff, console_stack, csrf_of, keyed_ns, sign_in
from tests.support import Namespace, db, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns"]  # the fixture, imported

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)



async def _console_knows(ns: Namespace, customer_ids: set[str]) -> None:
    conn = await db(ns, "console")
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            found = {r[0] for r in await conn.fetch("SELECT customer_id FROM customers WHERE customer_id = ANY($1)",
                                                    list(customer_ids))}
            if found == customer_ids or asyncio.get_running_loop().time() > deadline:
                assert found == customer_ids, "the console's read model never got the customers"
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_a_scoped_agent_sees_only_their_regions_in_the_console_and_the_services_agree(keyed_ns: Namespace) -> None:
    ns = keyed_ns
    fleet = Fleet(seed=23)
    stack = await console_stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        await add_staff(ns)
        await users.add(ns.settings, "chen.jing", "陈静", "agent", PASSWORD, regions=["east"])
        with pytest.raises(users.AccountError, match="only an agent"):
            await users.add(ns.settings, "sun.li", "孙丽", "supervisor", PASSWORD, regions=["east"])
        east = fleet.vehicle(NOW - timedelta(days=300))
        east.customer.region, east.customer.name = "east", "欧阳娜"
        west = fleet.vehicle(NOW - timedelta(days=200))
        west.customer.region, west.customer.name = "west", "欧阳丽"
        assert east.dealer_id != west.dealer_id
        await publish(ns.settings, "upstream.sales", [fleet.sale(east), fleet.sale(west)])
        e_id, w_id = east.customer.customer_id, west.customer.customer_id
        await _console_knows(ns, {e_id, w_id})

        transport = httpx.ASGITransport(app=stack["console"].app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as scoped, \
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as hotline:
            assert (await sign_in(scoped, "chen.jing")).status_code == 303
            assert (await sign_in(hotline, "wang.fang")).status_code == 303  # an agent of the whole group
            mine = await scoped.get(f"/customers/{e_id}")
            assert mine.status_code == 200 and "欧阳娜" in mine.text
            other = await scoped.get(f"/customers/{w_id}")
            assert other.status_code == 403 and "欧阳丽" not in other.text and west.customer.phone not in other.text
            assert "该客户不在您负责的区域和经销商范围内" in other.text, "the zh-CN page says why"
            assert (await scoped.get(f"/vehicles/{west.vin}")).status_code == 403
            found = await scoped.get("/search", params={"q": "欧阳"})
            assert e_id in found.text and w_id not in found.text and "欧阳丽" not in found.text
            everyone = await hotline.get("/search", params={"q": "欧阳"})
            assert e_id in everyone.text and w_id in everyone.text
            assert (await hotline.get(f"/customers/{w_id}")).status_code == 200

            # The console passes the person: intake, asked on the scoped agent's behalf, refuses too.
            page = await scoped.get(f"/customers/{e_id}")
            corrected = await scoped.post(f"/customers/{w_id}/contact", data={
                "csrf_token": csrf_of(page.text), "address": "西湖路1号", "back": f"/customers/{e_id}"})
            assert corrected.status_code == 303
            assert "outside your scope" in unquote(corrected.headers["location"]), corrected.headers["location"]

        conn = await db(ns, "intake")
        try:
            reads = await conn.fetch("SELECT reader, route, detail FROM customer_file_reads WHERE customer_id = $1", w_id)
        finally:
            await conn.close()
        assert ("chen.jing", "POST /v1/customers/{customer_id}/contact") in {(r["reader"], r["route"]) for r in reads}
        conn = await db(ns, "console")
        try:
            audited = await conn.fetch("SELECT username, action FROM audit_log WHERE customer_id = $1", w_id)
        finally:
            await conn.close()
        assert ("chen.jing", "refused_outside_scope") in {(r["username"], r["action"]) for r in audited}
    finally:
        await stack.stop()
