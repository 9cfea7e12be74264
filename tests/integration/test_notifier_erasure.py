"""Issue 19, erasure: the notifier's side on the real broker, database, SMTP server and SMS
gateway. After CustomerErased nothing of customer C (nor of the phone-only file it merged) is
left in the notifier's schema, while control customer D is untouched; delivery counts stay;
what was not sent yet is suppressed ("customer erased") and nothing more reaches C; a replay of
C's old events files nothing; a second CustomerErased changes nothing; C's data given after the
erasure is filed and used as usual."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.test_notifier_delivery import NOON, Peers, _event, _notifier, peers
from tests.privacy_scan import find_in_schema
from tests.support import Namespace, TopicReader, api, db, manual_clock, publish

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["peers"]

INTAKE, FOLLOWUP, COMPLAINTS = "aftersales.intake", "aftersales.followup", "aftersales.complaints"
C = {"customer_id": "C-ERASE", "name": "赵雪梅", "phone": "+8613900139077", "email": "zhao.xuemei@example.cn",
     "address": "南京市鼓楼区中山北路288号", "region": "east", "locale": "zh-CN", "timezone": "Asia/Shanghai",
     "registered_from": "VehicleSold"}
D = {"customer_id": "C-KEEP", "name": "孙海涛", "phone": "+8613900139088", "email": "sun.haitao@example.cn",
     "address": "苏州市姑苏区人民路66号", "region": "east", "locale": "zh-CN", "timezone": "Asia/Shanghai",
     "registered_from": "VehicleSold"}
MERGED = "C-ERASE-PHONE"  # a phone-only file C's file took over
C_NOTE, D_NOTE = "赵女士说工作日白天不方便接电话", "孙先生只想收邮件不要信件"
C_VALUES = [C["name"], C["phone"], C["email"], C["address"], C_NOTE]
D_VALUES = [D["name"], D["phone"], D["email"], D["address"], D_NOTE]
T0 = NOON - timedelta(days=3)
ERASED_AT = NOON + timedelta(minutes=1)


def _followup(customer: str, followup_id: str, kind: str, outcome: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return _event(FOLLOWUP, "FollowUpCompleted", {
        "followup_id": followup_id, "kind": kind, "customer_id": customer, "vin": "LJ1EEAUU5N0123456",
        "outcome": outcome, "completed_at": at, "attempts": 1, **extra}, at)


def _invitation(customer: str, followup_id: str, at: datetime, note: str | None = None) -> dict[str, Any]:
    return _followup(customer, followup_id, "campaign_call", "reached", at, campaign_id="CP-9", lost_reason_note=note)


def _acknowledged(customer: str, case: str, at: datetime) -> dict[str, Any]:
    return _event(COMPLAINTS, "ComplaintAcknowledged", {
        "complaint_id": case, "complaint_ref": f"CRM-{case}", "customer_id": customer, "at": at}, at)


def _opened(customer: dict[str, str], case: str, at: datetime) -> dict[str, Any]:
    """A new case: the department is told by e-mail, the customer's own account in the event."""
    return _event(COMPLAINTS, "ComplaintOpened", {
        "complaint_id": case, "complaint_ref": f"CRM-{case}", "customer_id": customer["customer_id"], "at": at,
        "department": "after_sales_service", "channel": "hotline", "category": "repair_quality", "severity": "medium",
        "description": f"{customer['name']}来电（{customer['phone']}）：保养后异响", "filed_at": at,
        "ack_due_at": at + timedelta(days=1), "resolve_due_at": at + timedelta(days=5)}, at)


def _erased(at: datetime) -> dict[str, Any]:
    return _event(INTAKE, "CustomerErased", {
        "customer_id": C["customer_id"], "erasure_id": "ER-0001", "erased_at": ERASED_AT,
        "requested_by": "supervisor-01", "merged_customer_ids": [MERGED]}, at)


async def _until(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(sql, *args):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true in time: {sql}")
        await asyncio.sleep(0.1)


async def _statuses(conn: asyncpg.Connection) -> dict[str, tuple[str, str, int]]:
    return {str(r["notification_id"]): (r["status"], r["channel"], r["attempts"])
            for r in await conn.fetch("SELECT notification_id, status, channel, attempts FROM notifications")}


def _to_c(peers: Peers) -> int:
    """Everything C's phone or e-mail address was ever offered (attempts included)."""
    return (sum(1 for a in peers.store.sms_attempts if a["to"] == C["phone"])
            + sum(1 for m in peers.store.mails if C["email"] in m.rcpt_to))


async def test_an_erased_customer_leaves_nothing_in_the_notifier_and_is_sent_nothing(
    ns: Namespace, peers: Peers
) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    conn = await db(ns, "notifier")
    try:
        await publish(ns.settings, INTAKE, [
            _event(INTAKE, "CampaignAnnounced", {
                "campaign_id": "CP-9", "kind": "free_inspection_week", "title": "春季免费检测周",
                "starts_at": NOON + timedelta(days=14), "ends_at": NOON + timedelta(days=21), "address": "鼓楼服务站",
                "regions": ["east"]}, T0),
            registered := _event(INTAKE, "CustomerRegistered", C, T0),
            _event(INTAKE, "CustomerRegistered", D, T0)])
        await _until(conn, "SELECT count(*) = 2 FROM contacts")
        async with api(stack["notifier"], "agent") as agent:  # opt-outs in the customers' own words
            for customer, channel, note in ((C, "sms", C_NOTE), (D, "letter", D_NOTE)):
                recorded = await agent.post("/v1/opt-outs", headers={"Idempotency-Key": f"opt-out-{customer['customer_id']}"},
                                            json={"customer_id": customer["customer_id"], "channel": channel,
                                                  "reason": note})
                assert recorded.status_code == 201, recorded.text
        before = NOON - timedelta(minutes=10)
        await publish(ns.settings, FOLLOWUP, [
            _invitation("C-ERASE", "FU-C-1", before, C_NOTE),  # e-mail, with the customer's words in the event
            _followup("C-ERASE", "FU-C-2", "first_visit", "wrong_number", before),  # a letter
            _event(FOLLOWUP, "MaintenanceReminderDue", {  # SMS: opted out, suppressed quoting the reason
                "vin": "LJ1EEAUU5N0123456", "customer_id": "C-ERASE", "estimated_due_at": NOON + timedelta(days=10),
                "basis": "date"}, before),
            _invitation("C-KEEP", "FU-D-1", before, D_NOTE),
            _followup("C-KEEP", "FU-D-2", "first_visit", "wrong_number", before),  # opted out of letters
        ])
        await publish(ns.settings, COMPLAINTS, [_acknowledged("C-KEEP", "CASE-D1", before),
                                                _acknowledged(MERGED, "CASE-M1", before),  # waits for a contact
                                                _opened(C, "CASE-C0", before), _opened(D, "CASE-D0", before)])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda rs: sum(r.event_type == "NotificationSent" for r in rs) >= 8
                                 and sum(r.event_type == "NotificationSuppressed" for r in rs) >= 2, timeout=60)
        assert await conn.fetchval("SELECT count(*) FROM letters") == 1
        assert await conn.fetchval("SELECT status FROM notifications WHERE recipient = $1", MERGED) == "awaiting_contact"
        peers.mail.fail_next[0] = 1  # the next e-mail to C is refused for now (451): it waits for its retry
        await publish(ns.settings, FOLLOWUP, [_invitation("C-ERASE", "FU-C-3", before)])
        await _until(conn, """SELECT true FROM notifications WHERE context->'data'->>'followup_id' = 'FU-C-3'
                               AND status = 'pending' AND attempts = 1""")
        finished = {k: v for k, v in (await _statuses(conn)).items() if v[0] in ("sent", "failed", "suppressed")}
        unsent = [str(r["notification_id"]) for r in await conn.fetch(
            "SELECT notification_id FROM notifications WHERE status NOT IN ('sent', 'failed', 'suppressed')")]
        assert len(finished) == 10 and len(unsent) == 2
        staff = await conn.fetchval("""SELECT count(*) FROM notifications WHERE recipient_kind <> 'customer'
                                        AND context->'data'->>'customer_id' = 'C-ERASE'""")
        assert staff == 2, "the department's notices about C's case (its description quotes C)"
        reached_c = _to_c(peers)
        assert await find_in_schema(conn, "notifier", C_VALUES) != [], "C is on file before the erasure"

        # (the clock stays before C's retry falls due: the erasure is processed first)
        await publish(ns.settings, INTAKE, [erasure := _erased(ERASED_AT)])
        await _until(conn, "SELECT count(*) = 2 FROM erased_customers")

        assert await find_in_schema(conn, "notifier", C_VALUES) == []
        for value in D_VALUES:
            assert await find_in_schema(conn, "notifier", [value]) != [], f"the control's {value} is still on file"
        after = await _statuses(conn)
        assert {k: after[k] for k in finished} == finished, "every outcome, channel and attempt count stays"
        assert {after[k][0] for k in unsent} == {"suppressed"}
        assert set(await conn.fetchval("SELECT array_agg(DISTINCT last_error) FROM notifications WHERE "
                                       "notification_id = ANY($1::uuid[])", unsent)) == {"customer erased"}
        contact = await conn.fetchrow("SELECT * FROM contacts WHERE customer_id = 'C-ERASE'")
        assert (contact["name"], contact["phone"], contact["region"]) == (None, None, "east"), "ids and region stay"
        letter = await conn.fetchrow("SELECT * FROM letters")
        assert (letter["addressee"], letter["postal_address"], letter["body"]) == (None, "", "")
        async with api(stack["notifier"], "supervisor") as supervisor:
            register = await supervisor.get("/v1/letters", params={"printed": False})
            assert register.status_code == 200 and register.json()["items"] == [], "nothing to print or post for C"
            log = await supervisor.get("/v1/consent-log/C-ERASE")
            assert [(e["channel"], e["granted"], e["changed_by"], e["reason"]) for e in log.json()["items"]] == [
                ("sms", False, "agent-01", None)], "who changed which channel and when stay; the words go"

        # Nothing more reaches C: the retry falls due, a late event from before the erasure and
        # new ones after it are suppressed, each saying why.
        clock.set(NOON + timedelta(minutes=3))
        await publish(ns.settings, FOLLOWUP, [_followup("C-ERASE", "FU-C-4", "first_visit", "wrong_number", NOON),
                                              _invitation("C-ERASE", "FU-C-5", NOON + timedelta(minutes=2))])
        await publish(ns.settings, COMPLAINTS, [_acknowledged("C-ERASE", "CASE-C1", NOON + timedelta(minutes=2))])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda rs: sum(r.event_type == "NotificationSuppressed"
                                                and r.data["reason"] == "customer erased" for r in rs) >= 5,
                                 timeout=60, settle=1.5)
        erased = [r.data for r in topic.of_type("NotificationSuppressed") if r.data["reason"] == "customer erased"]
        assert sorted(d["recipient"] for d in erased) == ["C-ERASE"] * 4 + [MERGED]
        assert len(topic.of_type("NotificationSent")) == 8, "nothing sent since"
        assert _to_c(peers) == reached_c and await conn.fetchval("SELECT count(*) FROM letters") == 1
        assert await find_in_schema(conn, "notifier", C_VALUES) == []

        # A replay of C's old events (the inbox forgotten) and a late update from before the
        # erasure file nothing of C; a second CustomerErased changes nothing.
        settled = await _statuses(conn)
        await conn.execute("DELETE FROM inbox WHERE event_id = $1", registered["event_id"])
        late = _event(INTAKE, "CustomerUpdated", {**C, "changes": {"address": {"old": None, "new": C["address"]}}},
                      T0 + timedelta(days=1))
        await publish(ns.settings, INTAKE, [registered, late, _erased(NOON + timedelta(minutes=3))])
        await _until(conn, "SELECT count(*) = 3 FROM inbox WHERE event_id = ANY($1::uuid[])",
                     [registered["event_id"], late["event_id"], erasure["event_id"]])
        await _until(conn, "SELECT count(*) = 2 FROM inbox WHERE event_type = 'CustomerErased'")
        assert await find_in_schema(conn, "notifier", C_VALUES) == []
        assert await _statuses(conn) == settled
        assert [tuple(r) for r in await conn.fetch("SELECT customer_id, erasure_id, erased_at FROM erased_customers "
                                                   "ORDER BY 1")] == [
            ("C-ERASE", "ER-0001", ERASED_AT), (MERGED, "ER-0001", ERASED_AT)]

        # C comes back after the erasure: the new file is kept and used.
        back = NOON + timedelta(minutes=10)
        clock.set(back + timedelta(minutes=1))
        await publish(ns.settings, INTAKE, [_event(INTAKE, "CustomerUpdated", {
            **C, "email": "xuemei.new@example.cn", "changes": {"email": {"old": None, "new": "xuemei.new@example.cn"}}},
            back)])
        await _until(conn, "SELECT email = 'xuemei.new@example.cn' FROM contacts WHERE customer_id = 'C-ERASE'")
        await publish(ns.settings, FOLLOWUP, [_invitation("C-ERASE", "FU-C-6", back + timedelta(seconds=30))])
        deadline = asyncio.get_running_loop().time() + 30
        while not any("xuemei.new@example.cn" in m.rcpt_to for m in peers.store.mails):
            assert asyncio.get_running_loop().time() < deadline, "the returning customer's e-mail was not sent"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
        await stack.stop()
