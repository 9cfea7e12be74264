"""Issue 19, least privilege for people, on the real broker and database (docs/security.md):
- an agent whose console token names their regions/dealers gets 403 for a customer outside them
  and finds none of them by search; a supervisor and the central hotline (no scope) read every file;
- a search must name what it looks for;
- every read of a customer file (the file, a search's or a worklist's rows, a refusal) is in the
  append-only access log with who, role, when (the service's clock), which file and which route;
  the database refuses to rewrite it;
- ops reads the complaints it may read without any personal field, and no document at all."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.complaints_fixtures import complaints_stack
from tests.console_support import as_person, keyed_ns
from tests.support import Namespace, Stack, TopicReader, api, db, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns"]  # the fixture, imported

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)




async def test_an_agent_outside_a_region_gets_403_and_every_read_is_in_the_append_only_access_log(
    keyed_ns: Namespace
) -> None:
    ns = keyed_ns
    fleet = Fleet(seed=19)
    clock = manual_clock(NOW.isoformat())
    stack = await Stack(ns, clock, services=("intake",)).start()
    try:
        east = fleet.vehicle(NOW - timedelta(days=300))
        east.customer.region = "east"
        west = fleet.vehicle(NOW - timedelta(days=200))
        west.customer.region = "west"
        await publish(ns.settings, "upstream.sales", [fleet.sale(east), fleet.sale(west)])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(lambda rs: sum(r.event_type == "VehicleSold" for r in rs) == 2, timeout=60)
        e_id, w_id = east.customer.customer_id, west.customer.customer_id

        async with as_person(ns, stack, "intake", "wang.fang", "agent", regions=["east"]) as east_agent, \
                as_person(ns, stack, "intake", "li.qiang", "agent", dealers=[west.dealer_id]) as dealer_agent, \
                as_person(ns, stack, "intake", "liu.yang", "supervisor") as supervisor, \
                api(stack["intake"], "agent") as hotline:
            assert (await east_agent.get(f"/v1/customers/{e_id}")).status_code == 200
            clock.advance(timedelta(minutes=5))
            refused = await east_agent.get(f"/v1/customers/{w_id}")
            assert refused.status_code == 403, refused.text
            assert "outside your scope" in refused.json()["detail"] and "east" in refused.json()["detail"]
            assert west.customer.name not in refused.text and west.customer.phone not in refused.text
            correcting = await east_agent.post(f"/v1/customers/{w_id}/contact", json={"address": "西湖路1号"})
            assert correcting.status_code == 403, "nor may they change a file outside their scope"
            # a search finds only the agent's own customers, whatever it names
            by_phone = (await east_agent.get("/v1/customers", params={"phone": west.customer.phone})).json()
            assert by_phone["items"] == []
            assert (await east_agent.get("/v1/customers", params={"region": "west"})).json()["items"] == []
            assert [c["customer_id"] for c in (await east_agent.get(
                "/v1/customers", params={"phone": east.customer.phone})).json()["items"]] == [e_id]
            # the dealer's agent sees the customer their dealer sold to, not the other
            assert (await dealer_agent.get(f"/v1/customers/{w_id}")).status_code == 200
            assert (await dealer_agent.get(f"/v1/customers/{e_id}")).status_code == (
                200 if east.dealer_id == west.dealer_id else 403)
            # a supervisor and the central hotline (a token without a scope) see every file
            assert (await supervisor.get(f"/v1/customers/{w_id}")).status_code == 200
            assert (await hotline.get(f"/v1/customers/{w_id}")).status_code == 200
            # no search without a filter, and a capped page
            assert (await supervisor.get("/v1/customers")).status_code == 422
            assert (await supervisor.get("/v1/customers", params={"region": "west", "limit": 51})).status_code == 422

            # the access log: who, when, which file, which route; supervisors only; a filter required
            log = await supervisor.get("/v1/customer-file-reads", params={"customer_id": w_id})
            assert log.status_code == 200, log.text
            entries = log.json()["items"]
            seen = [(e["reader"], e["role"], e["route"], bool(e["detail"].get("refused"))) for e in entries]
            assert ("wang.fang", "agent", "GET /v1/customers/{customer_id}", True) in seen
            assert ("wang.fang", "agent", "POST /v1/customers/{customer_id}/contact", True) in seen
            assert ("li.qiang", "agent", "GET /v1/customers/{customer_id}", False) in seen
            assert ("liu.yang", "supervisor", "GET /v1/customers/{customer_id}", False) in seen
            assert ("agent-01", "agent", "GET /v1/customers/{customer_id}", False) in seen
            assert all(e["customer_id"] == w_id for e in entries)
            refused_at = next(e["at"] for e in entries if e["reader"] == "wang.fang" and e["detail"].get("refused"))
            assert datetime.fromisoformat(refused_at) == NOW + timedelta(minutes=5), "the service's clock"
            mine = (await supervisor.get("/v1/customer-file-reads", params={"reader": "wang.fang"})).json()["items"]
            listed = [e for e in mine if e["route"] == "GET /v1/customers" and e["customer_id"] == e_id]
            assert listed and listed[0]["detail"]["filters"] == ["phone"], "a search's rows are reads too (no values)"
            assert listed[0]["detail"]["rows"] == 1, "how many files the search listed"
            assert east.customer.phone not in str(mine), "the log names the filters, not what was typed"
            assert (await supervisor.get("/v1/customer-file-reads")).status_code == 422
            assert (await east_agent.get("/v1/customer-file-reads", params={"reader": "wang.fang"})).status_code == 403

        conn = await db(ns, "intake")
        try:
            for statement in ("UPDATE customer_file_reads SET reader = 'someone-else'",
                              "DELETE FROM customer_file_reads", "TRUNCATE customer_file_reads"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM customer_file_reads WHERE reader = 'wang.fang'") >= 4
        finally:
            await conn.close()
    finally:
        await stack.stop()


async def test_ops_reads_complaints_without_personal_data_and_no_documents(ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(ns, manual_clock(NOW.isoformat()), tmp_path)
    try:
        async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "ops") as ops:
            filed = await agent.post("/v1/complaints", json={
                "complaint_ref": "WEB-LP-1", "customer_id": "CUST-LP", "channel": "web",
                "description": "客户张伟说刹车异响，电话13800138000，住在西湖路1号"})
            assert filed.status_code == 201, filed.text
            cid = filed.json()["complaint_id"]
            assert (await agent.post(f"/v1/complaints/{cid}/comments", json={"text": "联系了张伟"})).status_code == 200
            doc = (await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "call note", "content": "张伟 13800138000"})).json()

            full = (await agent.get(f"/v1/complaints/{cid}")).json()
            masked = (await ops.get(f"/v1/complaints/{cid}")).json()
            listed = (await ops.get("/v1/complaints", params={"open": "true"})).json()
            content = await ops.get(f"/v1/complaints/{cid}/documents/{doc['document_id']}/content")
        assert "张伟" in str(full), "the agent reads the case as it was written"
        for answer in (masked, listed):
            text = str(answer)
            assert "张伟" not in text and "13800138000" not in text and "西湖路" not in text, text[:500]
        assert masked["description"] == "***"
        assert (masked["complaint_id"], masked["customer_id"], masked["state"]) == (cid, "CUST-LP", full["state"])
        assert [f["kind"] for f in masked["timeline"]] == [f["kind"] for f in full["timeline"]], "the history stays"
        assert content.status_code == 403 and "sees no personal data" in content.json()["detail"]
    finally:
        await stack.stop()
