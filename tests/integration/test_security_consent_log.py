"""Issue 19: the append-only consent log on the real broker and database. Consent changes on the
customer's file (intake's events) and opt-outs/opt-ins through the notifier's API each leave an
entry (who, which channel, when, why); a redelivered event adds nothing; UPDATE, DELETE and
TRUNCATE of the log are refused by the database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.test_notifier_delivery import NOON, Peers, _event, _notifier, peers
from tests.support import Namespace, api, db, manual_clock, publish

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["peers"]

BASE = {"customer_id": "C-CONSENT", "name": "陈静", "phone": "+8613800138010", "email": "chen.jing@example.cn",
        "address": "杭州市西湖区文三路1号", "region": "east", "locale": "zh-CN", "timezone": "Asia/Shanghai"}


async def _history(client: Any, n: int) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        response = await client.get("/v1/consent-log/C-CONSENT")
        if response.status_code == 404 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)  # the customer's events not consumed yet: the notifier knows nothing of them
            continue
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["items"]
        if len(entries) >= n or asyncio.get_running_loop().time() > deadline:
            return entries
        await asyncio.sleep(0.2)


async def test_every_consent_change_is_logged_once_with_who_when_why_and_the_log_cannot_be_rewritten(
    ns: Namespace, peers: Peers
) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    t0 = NOON - timedelta(days=3)
    registered = _event("aftersales.intake", "CustomerRegistered", {
        **BASE, "registered_from": "VehicleSold", "consent": {"sms": False, "email": True, "letter": True}}, t0)
    updated = _event("aftersales.intake", "CustomerUpdated", {
        **BASE, "changes": {"consent": {"old": {"sms": False}, "new": {"sms": True}}},
        "consent": {"sms": True, "email": True, "letter": True}}, t0 + timedelta(days=1))
    corrected = _event("aftersales.intake", "CustomerContactCorrected", {
        **BASE, "changes": {"consent": {"old": None, "new": None}}, "consent": {"sms": True, "email": False, "letter": True},
        "corrected_by": "agent-01", "corrected_at": t0 + timedelta(days=2), "reason": "客户电话中要求不再收邮件"},
        t0 + timedelta(days=2))
    unchanged = _event("aftersales.intake", "CustomerUpdated", {
        **BASE, "address": "杭州市西湖区文三路2号", "changes": {"address": {"old": "1号", "new": "2号"}},
        "consent": {"sms": True, "email": False, "letter": True}}, t0 + timedelta(days=2, hours=1))
    try:
        await publish(ns.settings, "aftersales.intake", [registered, updated, corrected, unchanged])
        async with api(stack["notifier"], "agent") as agent, api(stack["notifier"], "supervisor") as supervisor:
            from_events = await _history(agent, 3)
            opted = await agent.post("/v1/opt-outs", json={"customer_id": "C-CONSENT", "channel": "letter",
                                                           "reason": "搬家，信件寄不到"})
            assert opted.status_code == 201, opted.text
            clock.advance(timedelta(hours=1))
            back = await supervisor.delete("/v1/opt-outs/C-CONSENT/letter", params={"reason": "客户回电确认新地址"})
            assert back.status_code == 200, back.text
            await publish(ns.settings, "aftersales.intake", [corrected])  # redelivered: the inbox skips it
            await asyncio.sleep(2)
            entries = await _history(agent, 5)
            async with api(stack["notifier"], "ops") as ops:
                assert (await ops.get("/v1/consent-log/C-CONSENT")).status_code == 403, "ops sees no personal data"
    finally:
        await stack.stop()

    assert [(e["channel"], e["granted"], e["changed_by"], e["source"]) for e in from_events] == [
        ("sms", False, "intake", "CustomerRegistered"),  # a "no" at registration
        ("sms", True, "intake", "CustomerUpdated"),
        ("email", False, "agent-01", "CustomerContactCorrected"),
    ]
    assert from_events[2]["reason"] == "客户电话中要求不再收邮件"
    assert [datetime.fromisoformat(e["changed_at"]) for e in from_events] == [t0, t0 + timedelta(days=1),
                                                                               t0 + timedelta(days=2)]
    assert datetime.fromisoformat(entries[4]["changed_at"]) == NOON + timedelta(hours=1), "the clock at the call"
    assert [(e["channel"], e["granted"], e["changed_by"], e["source"], e["reason"]) for e in entries[3:]] == [
        ("letter", False, "agent-01", "opt_out", "搬家，信件寄不到"),
        ("letter", True, "supervisor-01", "opt_in", "客户回电确认新地址"),
    ]
    assert len(entries) == 5, "the address change logged nothing, the redelivery nothing twice"

    conn = await db(ns, "notifier")
    try:
        for statement in ("UPDATE consent_log SET granted = NOT granted", "DELETE FROM consent_log",
                          "TRUNCATE consent_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="consent_log is append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM consent_log WHERE customer_id = 'C-CONSENT'") == 5
    finally:
        await conn.close()
