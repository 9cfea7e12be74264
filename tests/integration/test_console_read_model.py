"""The console on the real broker and database: its read model is built from the aftersales.*
topics (upstream events through intake, follow-ups, complaints, notifications), search
forgives, the customer's page tells the whole story, actions reach the services under the
person's name, and the read model is rebuilt by replaying the log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from services.console.rebuild import rebuild
from services.console.search import parse
from services.console.store import search
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
from tests.support import Namespace, drop_namespace, manual_clock, publish
from tools.simulate import CST, Fleet, envelope

pytestmark = pytest.mark.infra

NOW = "2026-11-20T10:00:00+08:00"  # a Friday morning in Shanghai, inside calling hours


@pytest.fixture
async def cns(infra: None) -> AsyncIterator[Namespace]:
    namespace = await console_namespace()
    try:
        yield namespace
    finally:
        await drop_namespace(namespace)


async def _db(ns: Namespace, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(ns.settings.database_url, server_settings={"search_path": f"{schema},public"})


def _world() -> tuple[Fleet, list[Any]]:
    fleet = Fleet(seed=1717)
    vehicles = [fleet.vehicle(datetime(2025, 6, 1 + i, tzinfo=CST)) for i in range(3)]
    vehicles[0].customer.name, vehicles[0].plate = "张伟明", "粤B·7Q315"
    vehicles[1].customer.name = "李静"
    return fleet, vehicles


async def test_search_forgives_and_the_customer_page_tells_the_whole_story(cns: Namespace) -> None:
    fleet, vehicles = _world()
    zhang = vehicles[0]
    stack = await console_stack(cns, manual_clock(NOW), services=("intake", "followup", "complaints")).start()
    try:
        await add_staff(cns)
        pickup = fleet.pickup(zhang, datetime(2026, 11, 16, 9, 0, tzinfo=CST), repair_order_id="RO-SZ-20261116-0042")
        await publish(cns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(cns.settings, "upstream.dms", [pickup])
        # The notifier's record of a message to him (published as the notifier would).
        await publish(cns.settings, "aftersales.notifier", [envelope("NotificationSent", zhang.customer.customer_id, {
            "notification_id": "N-1", "rule": "first_visit_notice", "channel": "sms",
            "recipient": zhang.customer.customer_id, "recipient_kind": "customer", "template": "first_visit_notice",
            "locale": "zh-CN", "source_event_id": str(uuid.uuid4()), "source_event_type": "FollowUpScheduled",
            "attempts": 1, "at": "2026-11-16T10:00:00+08:00"}, datetime(2026, 11, 16, 10, tzinfo=CST), "notifier")])
        console_db = await _db(cns, "console")
        try:
            await eventually(lambda: console_db.fetchval(
                "SELECT count(*) = 1 FROM followups WHERE customer_id = $1 AND status = 'due'",
                zhang.customer.customer_id))
            await eventually(lambda: console_db.fetchval(
                "SELECT (SELECT count(*) FROM vehicles) = 3 AND (SELECT count(*) FROM customers) = 3 "
                "AND (SELECT count(*) FROM visits) = 1 AND (SELECT count(*) FROM notifications) = 1"))

            async def found(text: str) -> list[str]:
                return [r["customer_id"] for r in await search(console_db, parse(text))]

            who = zhang.customer.customer_id
            assert await found(zhang.customer.phone[-4:]) == [who], "the last four digits of the phone"
            assert await found(zhang.customer.phone[-7:]) == [who]
            for plate in ("7Q315", "粤b7q3", "B7Q315", "q31"):
                assert await found(plate) == [who], plate
            assert await found(zhang.vin[5:11].lower()) == [who], "a VIN fragment, any case"
            assert await found("张伟明") == [who] and await found("伟明") == [who], "characters, whole or part"
            assert await found("zhangweiming") == [who] and await found("zwm") == [who], "pinyin and its initials"
            assert await found("zhangw") == [who]
            assert await found("20261116-0042") == [who], "a repair order"
            assert await found("李") == [vehicles[1].customer.customer_id]
            assert await found("nobody here") == []
        finally:
            await console_db.close()

        async with served(stack) as url, browser_client(url) as browser:
            assert (await sign_in(browser, "wang.fang")).status_code == 303
            results = await browser.get("/search", params={"q": zhang.customer.phone[-4:]})
            assert results.status_code == 200 and "张伟明" in results.text and f"****{zhang.customer.phone[-4:]}" in \
                results.text and zhang.customer.phone not in results.text, "found, with the phone masked"

            # The desk: the call, with the customer's name, masked phone, vehicle, why and how late.
            desk = await browser.get("/desk")
            assert "张伟明" in desk.text and "粤B·7Q315" in desk.text and "提车后首次回访" in desk.text
            followup_id = await _followup_of(cns, who)
            claimed = await browser.post(f"/desk/calls/{followup_id}/claim", data={"csrf_token": csrf_of(desk.text)})
            assert claimed.status_code == 303 and claimed.headers["location"] == f"/desk/calls/{followup_id}"
            call = await browser.get(claimed.headers["location"])
            assert "话术" in call.text and "维修的问题是否已经解决" in call.text, "the script for a first visit"
            saved = await browser.post(f"/desk/calls/{followup_id}/outcome", data={
                "csrf_token": csrf_of(call.text), "customer_id": who, "outcome": "reached", "satisfaction": "2",
                "talking_points": "刹车有异响", "requests": "希望免费复查",
                "complaint_description": "保养后刹车异响", "complaint_category": "repair_quality"})
            assert saved.status_code == 303 and "error" not in saved.headers["location"], saved.headers["location"]

            corrected_phone = "+8613900001234"
            page = await browser.get(f"/customers/{who}")
            corrected = await browser.post(f"/customers/{who}/contact", data={
                "csrf_token": csrf_of(page.text), "phone": corrected_phone, "reason": "客户来电告知新号码"})
            assert corrected.status_code == 303 and "done=contact" in corrected.headers["location"]
            logged = await browser.post(f"/customers/{who}/inbound-calls", data={
                "csrf_token": csrf_of(page.text), "kind": "complaint", "summary": "客户来电：等待取车时间过长",
                "category": "delay"})
            assert logged.status_code == 303 and "done=inbound" in logged.headers["location"]

            console_db = await _db(cns, "console")
            try:
                await eventually(lambda: console_db.fetchval(
                    "SELECT count(*) = 2 FROM complaint_events WHERE customer_id = $1 AND event_type = 'ComplaintOpened'",
                    who), what="the cases")
                await eventually(lambda: console_db.fetchval(
                    "SELECT count(*) = 1 FROM inbound_calls WHERE customer_id = $1", who),
                    what="the inbound call, from follow-up's register")
                inbound = await console_db.fetchrow("SELECT * FROM inbound_calls WHERE customer_id = $1", who)
                assert inbound["handled_by"] == "wang.fang" and inbound["kind"] == "complaint"
                assert inbound["complaint_id"] is not None
                await eventually(lambda: console_db.fetchval(
                    "SELECT phone = $2 FROM customers WHERE customer_id = $1", who, corrected_phone),
                    what="the correction")
                assert await search(console_db, parse("1234")), "found by the new number"
                assert [r["customer_id"] for r in await search(console_db, parse(zhang.customer.phone[-4:]))] == \
                    [who], "and still by the old one"
            finally:
                await console_db.close()

            story = (await browser.get(f"/customers/{who}")).text
            for shown in ("张伟明", "RO-SZ-20261116-0042", "粤B·7Q315", "刹车有异响", "希望免费复查", "保养后刹车异响",
                          "维修质量", "立案", "first_visit_notice", "已发送", "已接通", "139****1234", "档案变更",
                          "来电", "客户来电：等待取车时间过长", "延误"):
                assert shown in story, f"{shown!r} is not on the customer's page"
            vehicle = (await browser.get(f"/vehicles/{zhang.vin}")).text
            assert "RO-SZ-20261116-0042" in vehicle and "张伟明" in vehicle

        # The services recorded it all under the person who did it, not a machine token.
        followup_db, complaints_db, intake_db = (await _db(cns, "followup"), await _db(cns, "complaints"),
                                                 await _db(cns, "intake"))
        try:
            assert await followup_db.fetchval("SELECT agent_id FROM call_attempts WHERE followup_id = $1",
                                              followup_id) == "wang.fang"
            assert await followup_db.fetchval("SELECT completed_by FROM followups WHERE followup_id = $1",
                                              followup_id) == "wang.fang"
            cases = await complaints_db.fetch(
                """SELECT c.channel, c.category, h.actor FROM cases c
                     JOIN case_history h ON h.complaint_id = c.complaint_id AND h.kind = 'filed'
                    WHERE c.customer_id = $1 ORDER BY c.channel""", who)
            assert [tuple(c) for c in cases] == [("hotline", "delay", "wang.fang"),
                                                 ("return_visit", "repair_quality", "wang.fang")], \
                "the call's complaint and the inbound call's are the agent's cases"
            assert await intake_db.fetchval("SELECT phone FROM customers WHERE customer_id = $1", who) == corrected_phone
            register = await followup_db.fetchrow(
                "SELECT handled_by, kind, complaint_id FROM inbound_calls WHERE customer_id = $1", who)
            assert register is not None and register["handled_by"] == "wang.fang" and register["kind"] == "complaint"
            assert register["complaint_id"] is not None, "follow-up's phone register keeps the console's inbound call"
        finally:
            for conn in (followup_db, complaints_db, intake_db):
                await conn.close()

        # Every read and every change is in the audit log, with who, when, what.
        console_db = await _db(cns, "console")
        try:
            actions = [tuple(r) for r in await console_db.fetch(
                "SELECT username, action FROM audit_log WHERE customer_id = $1 ORDER BY id", who)]
            assert ("wang.fang", "read_customer") in actions and ("wang.fang", "record_call") in actions
            assert ("wang.fang", "correct_contact") in actions and ("wang.fang", "read_vehicle") in actions
            assert ("wang.fang", "log_inbound_call") in actions and ("wang.fang", "raise_complaint") in actions
            assert await console_db.fetchval("SELECT at FROM audit_log WHERE action = 'record_call'") == \
                datetime.fromisoformat(NOW), "when: the platform's clock"
        finally:
            await console_db.close()
    finally:
        await stack.stop()


# Everything the rebuild test's log holds, consumed: the model is complete, not caught mid-way.
ALL_IN = ("SELECT (SELECT count(*) FROM followups WHERE status = 'due') = 3 AND (SELECT count(*) FROM receipts) = 1 "
          "AND (SELECT count(*) FROM customers) = 3 AND (SELECT count(*) FROM vehicles) = 3 "
          "AND (SELECT count(*) FROM visits) = 3")


async def _followup_of(ns: Namespace, customer_id: str) -> str:
    conn = await _db(ns, "followup")
    try:
        return str(await conn.fetchval("SELECT followup_id FROM followups WHERE customer_id = $1", customer_id))
    finally:
        await conn.close()


async def _snapshot(ns: Namespace) -> dict[str, list[tuple[Any, ...]]]:
    conn = await _db(ns, "console")
    try:
        return {table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
                for table in ("customers", "phones", "customer_changes", "vehicles", "visits", "receipts", "followups",
                              "calls", "complaints", "complaint_events", "notifications")}
    finally:
        await conn.close()


async def test_the_read_model_is_rebuilt_by_replaying_the_topics(cns: Namespace) -> None:
    fleet, vehicles = _world()
    clock = manual_clock(NOW)
    stack = await console_stack(cns, clock, services=("intake", "followup")).start()
    try:
        await publish(cns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(cns.settings, "upstream.dms", [fleet.pickup(v, datetime(2026, 11, 16, 9, tzinfo=CST))
                                                     for v in vehicles])
        await publish(cns.settings, "upstream.dms", [envelope("ReceiptReturned", vehicles[0].vin, {
            "receipt_id": "RC-1", "repair_order_id": "RO-X", "vin": vehicles[0].vin,
            "returned_at": "2026-11-17T09:00:00+08:00", "rating": 5, "comments": "服务很好"},
            datetime(2026, 11, 17, 9, tzinfo=CST), "dms")])
        conn = await _db(cns, "console")
        try:
            await eventually(lambda: conn.fetchval(
                ALL_IN))
        finally:
            await conn.close()
        before = await _snapshot(cns)
        assert len(before["customers"]) == 3 and len(before["visits"]) == 3
    finally:
        await stack.stop()

    emptied = await rebuild(cns.settings)
    assert emptied["customers"] == 3 and emptied["inbox"] > 0
    assert not (await _snapshot(cns))["customers"], "the read model is empty until the console replays"

    stack = await console_stack(cns, clock, services=()).start()
    try:
        conn = await _db(cns, "console")
        try:
            await eventually(lambda: conn.fetchval(
                ALL_IN), what="the replay")
        finally:
            await conn.close()
        assert await _snapshot(cns) == before, "the replayed read model is the one the live events built"
    finally:
        await stack.stop()
