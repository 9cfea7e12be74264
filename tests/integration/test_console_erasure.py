"""The console's side of a customer's erasure (issue 19), on the real broker and database: the
read model is filled from the aftersales.* topics for customer C (with a phone-only file C took
over) and a control customer D, then intake's CustomerErased for C arrives. Nothing of C's name,
phones, e-mail, addresses or the words written about C is left in the console's schema while
all of D's still is; the scorecards and the read model's counts are the same; the search no
longer finds C and C's page says the file was erased; C's old events delivered again, a second
CustomerErased and a rebuild of the read model from the topics bring nothing back; and what C
gives after the erasure is filed normally."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from services.console import scorecard_store
from services.console.i18n import DISPLAY_ZONE
from services.console.rebuild import rebuild
from services.console.scorecard_pages import card_json, week_json
from services.console.scorecards import ScorecardRules, receipts_by_week, scorecards
from services.console.search import parse
from services.console.store import search
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE, NOTIFIER
from shared.events import canonical as c
from shared.timeutil import month_span
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
from tests.privacy_scan import find_in_schema
from tests.support import TEST_NOW, Namespace, manual_clock, publish
from tools.simulate import CST, envelope

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns"]  # the fixture, used by name

# The test moment's month (its second day on): every event lies in it, whatever day the tests run.
BASE = datetime(TEST_NOW.year, TEST_NOW.month, 2, 9, 0, tzinfo=CST)
MONTH = f"{BASE.year}-{BASE.month:02d}"
ERASED_AT = BASE + timedelta(days=10)


@dataclass
class Person:
    """A customer's distinctive values, each kind of personal data the console gets."""

    customer_id: str
    merged_id: str  # a phone-only file this customer's file took over
    name: str
    spelled: str  # the name's pinyin, as the search keeps it
    phone: str
    old_phone: str
    merged_phone: str
    email: str
    old_address: str
    address: str
    bad_email: str  # a contact value intake flagged as unusable
    contact: str  # a company customer's person in charge
    note: str
    request: str
    comment: str
    summary: str
    description: str
    resolution: str
    reason: str  # a notification's failure, naming the address
    vin: str
    dealer: str

    def values(self) -> dict[str, str]:
        """Every personal value, by kind (the phones as their national digits too)."""
        return {"name": self.name, "pinyin": self.spelled, "phone": self.phone[3:], "old_phone": self.old_phone[3:],
                "merged_phone": self.merged_phone[3:], "email": self.email, "old_address": self.old_address,
                "address": self.address, "bad_email": self.bad_email, "contact": self.contact, "note": self.note,
                "request": self.request, "comment": self.comment, "summary": self.summary, "description": self.description,
                "resolution": self.resolution, "reason": self.reason}


C = Person("CUS-ER-C", "CUS-ER-CM", "欧阳晓燕", "ouyangxiaoyan", "+8613712340001", "+8613712340009", "+8613712340005",
           "ouyang.xy@example.cn", "广州市天河区体育西路88号", "广州市越秀区东风中路301号", "ouyang@@bad", "联系人慕容雪",
           "欧阳女士说刹车踏板发软", "请欧阳女士周六来店复查", "前台欧阳小姐态度很好", "欧阳女士来电问保养费用",
           "欧阳女士投诉空调异味", "为欧阳女士更换空调滤芯", "mailbox ouyang.xy@example.cn full",
           "LSVER00000000C001", "D-ER-1")
D = Person("CUS-ER-D", "CUS-ER-DM", "司马光明", "simaguangming", "+8613812340002", "+8613812340008", "+8613812340006",
           "sima.gm@example.cn", "深圳市福田区深南大道1001号", "深圳市南山区科技园南路12号", "sima@@bad", "联系人皇甫云",
           "司马先生说变速箱顿挫", "请司马先生周日来店复查", "司马先生夸技师专业", "司马先生来电问保修期限",
           "司马先生投诉等待太久", "为司马先生安排代步车", "mailbox sima.gm@example.cn full",
           "LSVER00000000D002", "D-ER-2")


async def _db(ns: Namespace) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": "console,public"})


def _ev(event_type: str, key: str, data: msgspec.Struct, at: datetime, source: str) -> dict[str, Any]:
    return envelope(event_type, key, msgspec.to_builtins(data), at, source)


def _story(p: Person) -> dict[str, list[dict[str, Any]]]:
    """Everything the console hears of one customer, by topic, occurred before ERASED_AT."""
    info = c.CustomerInfo(customer_id=p.customer_id, name=p.name, address=p.old_address, region="华南", phone=p.old_phone,
                          email=p.email)
    t = BASE
    complaint = f"CMP-{p.customer_id}"
    followup = f"FU-{p.customer_id}"
    flags = {"email": c.ContactFlag(value=p.bad_email, reason=f"{p.bad_email} is not an e-mail address")}
    intake = [
        # Keyed by the file that takes it over, so the merge comes after it whatever the partitions.
        _ev("CustomerRegistered", p.customer_id, c.CustomerRegistered(
            customer_id=p.merged_id, registered_from="hotline", phone=p.merged_phone), t, "intake"),
        _ev("CustomerRegistered", p.customer_id, c.CustomerRegistered(
            customer_id=p.customer_id, registered_from="sales", name=p.name, phone=p.old_phone, email=p.email,
            address=p.old_address, region="华南", person_in_charge=p.contact, contact_flags=flags),
            t + timedelta(minutes=1), "intake"),
        _ev("VehicleSold", p.vin, c.VehicleSold(
            sale_id=f"S-{p.vin}", vin=p.vin, model="Aurora", sold_at=t - timedelta(days=200), dealer_id=p.dealer,
            region="华南", warranty_months=36, warranty_km=100000, customer=info), t + timedelta(minutes=2), "intake"),
        _ev("VehiclePickedUp", p.vin, c.VehiclePickedUp(
            repair_order_id=f"RO-{p.vin}", vin=p.vin, dealer_id=p.dealer, picked_up_at=t + timedelta(hours=1),
            service_type="repair", items=[c.RepairItem(code="BRK", description="刹车检修")], mileage_km=12000,
            advisor_id="adv-1", customer=info), t + timedelta(hours=1), "intake"),
        _ev("ReceiptRecorded", p.vin, c.ReceiptRecorded(
            receipt_id=f"RC-{p.vin}", repair_order_id=f"RO-{p.vin}", vin=p.vin, returned_at=t + timedelta(days=1),
            rating=5, comments=p.comment, customer_id=p.customer_id, dealer_id=p.dealer), t + timedelta(days=1),
            "intake"),
        _ev("CustomerUpdated", p.customer_id, c.CustomerUpdated(
            customer_id=p.customer_id, name=p.name, phone=p.phone, address=p.address, email=p.email, region="华南",
            merged_customer_ids=[p.merged_id],
            changes={"phone": c.FieldChange(old=p.old_phone, new=p.phone),
                     "address": c.FieldChange(old=p.old_address, new=p.address)}), t + timedelta(days=2), "intake"),
    ]
    followups = [
        _ev("FollowUpScheduled", p.customer_id, c.FollowUpScheduled(
            followup_id=followup, kind="first_visit", customer_id=p.customer_id, due_from=t + timedelta(days=3),
            due_by=t + timedelta(days=5), priority=1, reason_event_id=str(uuid.uuid4()), vin=p.vin, dealer_id=p.dealer,
            region="华南"), t + timedelta(hours=1), "followup"),
        _ev("FollowUpAttemptRecorded", p.customer_id, c.FollowUpAttemptRecorded(
            followup_id=followup, kind="first_visit", customer_id=p.customer_id, attempt_no=1, agent_id="wang.fang",
            outcome="reached", attempted_at=t + timedelta(days=3), satisfaction=2, talking_points=p.note,
            requests=p.request, notes=p.note), t + timedelta(days=3), "followup"),
        _ev("FollowUpCompleted", p.customer_id, c.FollowUpCompleted(
            followup_id=followup, kind="first_visit", customer_id=p.customer_id, outcome="reached",
            completed_at=t + timedelta(days=3), attempts=1, vin=p.vin, satisfaction=2, satisfied=False,
            agent_id="wang.fang", dealer_id=p.dealer, region="华南"), t + timedelta(days=3), "followup"),
        _ev("InboundCallRecorded", p.customer_id, c.InboundCallRecorded(
            call_id=str(uuid.uuid5(uuid.NAMESPACE_URL, p.customer_id)), customer_id=p.customer_id,
            kind="consultation", summary=p.summary, handled_by="li.qiang", received_at=t + timedelta(days=4)),
            t + timedelta(days=4), "followup"),
    ]
    complaints = [
        _ev("ComplaintOpened", complaint, c.ComplaintOpened(
            complaint_id=complaint, at=t + timedelta(days=3), complaint_ref=f"REF-{p.customer_id}",
            customer_id=p.customer_id, actor="wang.fang", department="售后服务部", channel="return_visit",
            category="repair_quality", severity="medium", description=p.description, filed_at=t + timedelta(days=3),
            ack_due_at=t + timedelta(days=4), resolve_due_at=t + timedelta(days=10), vin=p.vin, dealer_id=p.dealer,
            region="华南"), t + timedelta(days=3), "complaints"),
        # A step that names no customer: the case's customer is the read model's.
        _ev("ComplaintResolved", complaint, c.ComplaintResolved(
            complaint_id=complaint, at=t + timedelta(days=5), actor="zhou.min", resolution=p.resolution),
            t + timedelta(days=5), "complaints"),
    ]
    notifications = [
        _ev("NotificationFailed", p.customer_id, c.NotificationEvent(
            notification_id=f"N-{p.customer_id}", rule="first_visit_notice", channel="email", recipient=p.customer_id,
            recipient_kind="customer", template="first_visit_notice", locale="zh-CN",
            source_event_id=str(uuid.uuid4()), source_event_type="FollowUpScheduled", at=t + timedelta(hours=2),
            attempts=3, reason=p.reason), t + timedelta(hours=2), "notifier"),
    ]
    return {INTAKE: intake, FOLLOWUP: followups, COMPLAINTS: complaints, NOTIFIER: notifications}


# What a late copy may repeat without adding a row (the file's changes and a case's steps are
# rows of their own per event, and the merged file would be filed again without its merge).
_REPEATABLE = ("VehicleSold", "VehiclePickedUp", "ReceiptRecorded", "FollowUpScheduled", "FollowUpAttemptRecorded",
               "FollowUpCompleted", "InboundCallRecorded", "NotificationFailed")


async def _publish(ns: Namespace, stories: list[dict[str, list[dict[str, Any]]]], late: bool = False) -> list[str]:
    """Publish the stories' events; their event ids. `late`: a copy of the events (new event
    ids, so the inbox does not skip them as a redelivery) delivered after the erasure, the
    customer's own file's registration among them."""
    ids = []
    for topic in (INTAKE, FOLLOWUP, COMPLAINTS, NOTIFIER):
        records = [e | {"event_id": str(uuid.uuid4())} if late else e for story in stories for e in story[topic]
                   if not late or e["event_type"] in _REPEATABLE
                   or (e["event_type"] == "CustomerRegistered" and e["data"].get("name"))]
        await publish(ns.settings, topic, records)
        ids += [r["event_id"] for r in records]
    return ids


def _erased(p: Person, at: datetime = ERASED_AT) -> dict[str, Any]:
    return _ev("CustomerErased", p.customer_id, c.CustomerErased(
        customer_id=p.customer_id, erasure_id=f"ER-{p.customer_id}", erased_at=at, requested_by="liu.yang",
        merged_customer_ids=[p.merged_id]), at, "intake")


async def _consumed(conn: asyncpg.Connection, ids: list[str]) -> None:
    await eventually(lambda: conn.fetchval("SELECT count(*) = $2 FROM inbox WHERE event_id = ANY($1::uuid[])",
                                           ids, len(ids)), what="the events, in the console's inbox")


async def _figures(conn: asyncpg.Connection) -> dict[str, Any]:
    """The scorecards and the receipts' weeks of the month, and the read model's counts."""
    start, end = month_span(MONTH, DISPLAY_ZONE.key)
    inputs = await scorecard_store.month_inputs(conn, start, end, 30)
    cards = scorecards(MONTH, DISPLAY_ZONE, rules=ScorecardRules(), **inputs)
    counts = {table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - the test's own names
              for table in ("customers", "vehicles", "visits", "receipts", "followups", "calls", "inbound_calls",
                            "complaints", "complaint_events", "notifications", "customer_changes")}
    states = [tuple(r) for r in await conn.fetch(
        """SELECT 'followup', followup_id, status, outcome, satisfaction, attempts FROM followups
           UNION ALL SELECT 'complaint', complaint_id, state, level::text, NULL, NULL FROM complaints
           UNION ALL SELECT 'notification', notification_id, status, channel, attempts, NULL FROM notifications
           ORDER BY 1, 2""")]
    return {"cards": [card_json(x) for x in cards],
            "weeks": [week_json(w) for w in receipts_by_week(inputs["receipts"], DISPLAY_ZONE)],
            "counts": counts, "states": states}


async def _scan(conn: asyncpg.Connection, p: Person) -> list[str]:
    return await find_in_schema(conn, "console", p.values().values())


async def _found(conn: asyncpg.Connection, text: str) -> list[str]:
    return [r["customer_id"] for r in await search(conn, parse(text))]


async def test_an_erased_customer_leaves_nothing_readable_in_the_console_and_no_replay_brings_it_back(
        keyed_ns: Namespace) -> None:
    ns = keyed_ns  # the console's signing key pair, so people's tokens can be signed
    clock = manual_clock(TEST_NOW)
    stack = await console_stack(ns, clock, services=()).start()
    try:
        await add_staff(ns)
        first = await _publish(ns, [_story(C), _story(D)])
        conn = await _db(ns)
        try:
            await _consumed(conn, first)
            for p in (C, D):  # the scan sees every kind of value where the read model keeps it
                for kind, value in p.values().items():
                    assert await find_in_schema(conn, "console", [value]), f"{p.customer_id}'s {kind} is filed"
            assert await _found(conn, C.name) == [C.customer_id] and await _found(conn, C.phone[-4:]) == [C.customer_id]
            before = await _figures(conn)
            assert before["counts"]["customers"] == 2 and before["counts"]["calls"] == 2, before["counts"]
            assert sum(w["with_comments"] for w in before["weeks"]) == 2

            erasure = [_erased(C)]
            await publish(ns.settings, INTAKE, erasure)
            await _consumed(conn, [erasure[0]["event_id"]])

            assert await _scan(conn, C) == [], "nothing of C is left in the console's schema"
            for kind, value in D.values().items():
                assert await find_in_schema(conn, "console", [value]), f"the control's {kind} is still found"
            assert await _figures(conn) == before, "the scorecards and the counts do not change"
            assert await conn.fetchval("SELECT erased_at FROM erased_customers WHERE customer_id = $1",
                                       C.customer_id) == ERASED_AT
            assert await conn.fetchval("SELECT count(*) FROM erased_customers WHERE customer_id = $1",
                                       C.merged_id) == 1, "the file C took over is erased with it"
            for text in (C.name, C.name[2:], C.spelled, C.phone[-4:], C.old_phone[-4:], C.merged_phone[-7:]):
                assert C.customer_id not in await _found(conn, text), text
            assert await _found(conn, D.name) == [D.customer_id] and await _found(conn, D.phone[-4:]) == [D.customer_id]
            row = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1", C.customer_id)
            assert row["region"] == "华南" and row["registered_at"] is not None, "ids, region and dates stay"

            # C's old events delivered late (new event ids, so the inbox does not skip them) and
            # the same CustomerErased delivered again: nothing of C comes back, nothing changes.
            late = await _publish(ns, [_story(C)], late=True)
            again = [_erased(C)]
            await publish(ns.settings, INTAKE, again)
            await _consumed(conn, [*late, again[0]["event_id"]])
            assert await _scan(conn, C) == [], "a late delivery brings nothing of C back"
            assert await _figures(conn) == before
            assert await conn.fetchval("SELECT count(*) FROM erased_customers") == 2
        finally:
            await conn.close()

        # The customer's page says the file was erased, and shows no empty value as 'None'.
        async with served(stack) as url, browser_client(url) as browser:
            assert (await sign_in(browser, "wang.fang")).status_code == 303
            page = await browser.get(f"/customers/{C.customer_id}")
            assert page.status_code == 200 and "个人信息已删除" in page.text and "None" not in page.text
            assert f"{ERASED_AT.year}年{ERASED_AT.month}月{ERASED_AT.day}日" in page.text, "with the erasure's date"
            assert C.name not in page.text and f"REF-{C.customer_id}" in page.text, "the cases stay, without the words"
            other = await browser.get(f"/customers/{D.customer_id}")
            assert other.status_code == 200 and D.name in other.text and "个人信息已删除" not in other.text
            found = await browser.get("/search", params={"q": C.vin[-6:]})
            assert found.status_code == 200 and C.customer_id in found.text and "None" not in found.text, \
                "found by the vehicle, shown by its id"
            assert (await browser.get(f"/vehicles/{C.vin}")).status_code == 200
            # Signed out: the session's row goes (its hash is binary, which the scanner reads as UTF-8).
            signed_out = await browser.post("/sign-out", data={"csrf_token": csrf_of(page.text)})
            assert signed_out.status_code == 303
    finally:
        await stack.stop()

    # The read model rebuilt from the topics (which still hold C's events): nothing of C.
    emptied = await rebuild(ns.settings)
    assert emptied["customers"] == 2 and emptied["inbox"] > 0, "C and D (the files they took over merged into theirs)"
    stack = await console_stack(ns, clock, services=()).start()
    try:
        conn = await _db(ns)
        try:
            await _consumed(conn, [*first, *late, erasure[0]["event_id"], again[0]["event_id"]])
            assert await _scan(conn, C) == [], "the rebuilt read model holds nothing of C"
            assert await _figures(conn) == before, "and the same figures"
            for kind, value in D.values().items():
                assert await find_in_schema(conn, "console", [value]), f"the control's {kind} is rebuilt"

            # C comes back after the erasure and gives a name and a phone again: filed normally.
            back = BASE + timedelta(days=12)
            returned = _ev("CustomerUpdated", C.customer_id, c.CustomerUpdated(
                customer_id=C.customer_id, name="欧阳新", phone="+8613712349999", region="华南",
                changes={"name": c.FieldChange(old=None, new="欧阳新")}), back, "intake")
            await publish(ns.settings, INTAKE, [returned])
            await _consumed(conn, [returned["event_id"]])
            assert await _found(conn, "欧阳新") == [C.customer_id] and await _found(conn, "9999") == [C.customer_id]
            assert await _scan(conn, C) == [], "and still nothing of what was erased"
        finally:
            await conn.close()
    finally:
        await stack.stop()
