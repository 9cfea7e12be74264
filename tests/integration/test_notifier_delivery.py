"""Notifications delivered for real: a real SMTP server (aiosmtpd), the local HTTP SMS gateway,
the real broker and database, the clock moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.notifier.config import NotifierSettings
from shared.clock import ManualClock
from shared.events import new_event
from shared.tracing import from_headers
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, db, manual_clock, publish, zh_date
from tools.peers import MailSink, PeerStore, SmsGatewaySink

pytestmark = [pytest.mark.infra, pytest.mark.dates]

NOON = day_at(12)  # the test day at noon: outside the customers' quiet hours
ZH = {"customer_id": "C-ZH", "name": "王伟", "phone": "+8613800138001", "email": "wang.wei@example.cn",
      "address": "上海市浦东新区世纪大道1号", "region": "east", "locale": "zh-CN", "timezone": "Asia/Shanghai",
      "registered_from": "VehicleSold"}
EN = {"customer_id": "C-EN", "name": "Anna Berger", "phone": "+8613800138002", "address": "88 West Road, Suzhou",
      "region": "east", "locale": "en", "timezone": "Asia/Shanghai", "registered_from": "VehicleSold"}


@dataclass
class Peers:
    store: PeerStore
    mail: MailSink
    gateway: SmsGatewaySink


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    store = PeerStore()
    mail = MailSink(store).start()
    gateway = await SmsGatewaySink(store).start()
    try:
        yield Peers(store, mail, gateway)
    finally:
        await gateway.stop()
        mail.stop()


async def _notifier(ns: Namespace, peers: Peers, clock: ManualClock) -> Stack:
    settings = NotifierSettings(sms_gateway_url=peers.gateway.url, smtp_host="127.0.0.1", smtp_port=peers.mail.port,
                                retry_schedule_seconds=[60, 300], dispatch_tick_seconds=0.05)
    return await Stack(ns, clock, services=("notifier",), state={"notifier": {"settings": settings}}).start()


def _event(topic: str, event_type: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return new_event(topic=topic, event_type=event_type, data=data, source=topic.split(".")[1],
                     occurred_at=at).to_dict()


async def _customers(ns: Namespace, at: datetime) -> None:
    await publish(ns.settings, "aftersales.intake", [_event("aftersales.intake", "CustomerRegistered", c, at)
                                                     for c in (ZH, EN)])


def _completed(customer: str, kind: str, outcome: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return _event("aftersales.followup", "FollowUpCompleted", {
        "followup_id": f"FU-{customer}-{kind}-{outcome}", "kind": kind, "customer_id": customer,
        "vin": "LJ1EEAUU5N0123456", "outcome": outcome, "completed_at": at, "attempts": 1, **extra}, at)


def _escalated(person: str, role: str, at: datetime) -> dict[str, Any]:
    return _event("aftersales.complaints", "ComplaintEscalated", {
        "complaint_id": f"CASE-{person}", "complaint_ref": f"CRM-{person}", "customer_id": "C-ZH", "at": at,
        "level": 2, "level_name": "department head", "role": role, "person": person, "breach": "resolve",
        "deadline": at - timedelta(minutes=1), "next_deadline": at + timedelta(days=1),
        "department": "after_sales_service"}, at)


async def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_each_rule_sends_its_template_in_the_recipients_language_to_the_right_recipient(
    ns: Namespace, peers: Peers
) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    try:
        at = NOON - timedelta(minutes=5)
        monday = day_at(0, days=-7 - NOON.weekday())  # last week's
        year, week, _ = monday.isocalendar()
        await _customers(ns, at - timedelta(days=30))
        await publish(ns.settings, "aftersales.intake", [_event("aftersales.intake", "CampaignAnnounced", {
            "campaign_id": "CP-1", "kind": "free_inspection_week", "title": "冬季免费检测周",
            "starts_at": NOON + timedelta(days=14), "ends_at": NOON + timedelta(days=21), "address": "浦东服务站",
            "regions": ["east"]}, at - timedelta(days=1))])
        await publish(ns.settings, "aftersales.followup", [
            _completed("C-EN", "first_visit", "unreachable", at),
            _completed("C-ZH", "first_visit", "wrong_number", at),
            _completed("C-ZH", "campaign_call", "reached", at, campaign_id="CP-1"),
            _completed("C-EN", "campaign_call", "reached", at, campaign_id="CP-1"),
            _event("aftersales.followup", "MaintenanceReminderDue", {
                "vin": "LJ1EEAUU5N0123456", "customer_id": "C-ZH", "estimated_due_at": NOON + timedelta(days=10),
                "due_at": NOON + timedelta(days=10), "basis": "date"}, at),
            _event("aftersales.followup", "FollowUpWeeklyReport", {
                "week": f"{year}-W{week:02d}", "week_start": monday.date().isoformat(), "generated_at": at,
                "figures": {"by_region": {"east": {"done": 12, "missed": 1}}}}, at),
        ])
        await publish(ns.settings, "aftersales.complaints", [
            _event("aftersales.complaints", "ComplaintAcknowledged", {
                "complaint_id": "CASE-7", "complaint_ref": "CRM-7", "customer_id": "C-EN", "at": at}, at),
            _escalated("as-head-01", "department_head", at),
            _escalated("someone-who-left", "department_head", at),
        ])
        await publish(ns.settings, "aftersales.quality", [_event("aftersales.quality", "QualityAlertRaised", {
            "alert_id": "QA-1", "cell": {"category": "controller", "batch": "B2611-3"}, "rule": "poisson",
            "observed": 9, "expected": 1.2, "p_value": 0.00002, "report_ids": ["DR-1", "DR-2"],
            "vins": ["LJ1EEAUU5N0123456"], "raised_at": at}, at)])

        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationSent", 10), timeout=60, settle=1.0)
        assert topic.of_type("NotificationFailed") == [] and topic.of_type("NotificationSuppressed") == []
        sent = {r.data["rule"] + "/" + r.data["recipient"]: r.data for r in topic.of_type("NotificationSent")}

        to_en = [s.text for s in peers.store.sms if s.to == EN["phone"]]
        to_zh = [s.text for s in peers.store.sms if s.to == ZH["phone"]]
        assert len(to_en) == 2 and len(to_zh) == 1
        assert any("we tried to call you several times" in text for text in to_en)  # unreachable, in English
        assert f"预计将于{zh_date(NOON + timedelta(days=10))}" in to_zh[0]  # maintenance reminder, in Chinese
        acknowledged = [s for s in peers.store.sms if "CRM-7" in s.text]
        assert len(acknowledged) == 1 and acknowledged[0].text.startswith("[Aftersales] We have received")

        mails = {m.subject: m for m in peers.store.mails}
        invitation = mails["活动邀请：冬季免费检测周"]
        assert invitation.rcpt_to == [ZH["email"]] and "浦东服务站" in invitation.text and invitation.html
        assert invitation.message_id == f"<{sent['campaign_invitation/C-ZH']['notification_id']}@aftersales.example>"
        to_head = [m for m in peers.store.mails if "CRM-as-head-01" in m.subject]
        assert len(to_head) == 1 and to_head[0].rcpt_to == ["as-head-01@aftersales.example"]
        assert sent["complaint_escalated/person:as-head-01"]["locale"] == "zh-CN"
        assert "complaint_escalated/role:department_head" in sent, "an unknown person falls back to the role"
        alert = next(m for m in peers.store.mails if m.subject.startswith("【质量预警】"))
        assert sorted(alert.rcpt_to) == ["qi-head-01@aftersales.example", "qi-supervisor-01@aftersales.example"]
        assert "DR-1, DR-2" in alert.text and "B2611-3" in alert.text
        weekly = next(m for m in peers.store.mails if m.subject.startswith("【回访周报】"))
        assert weekly.rcpt_to == ["cs-supervisor-01@aftersales.example", "cs-head-01@aftersales.example"]
        assert "done: 12" in weekly.text  # a report of the old shape (no headline) is still mailed as it is

        async with api(stack["notifier"], "agent") as agent:
            letters = (await agent.get("/v1/letters", params={"printed": False})).json()["items"]
        async with api(stack["notifier"], "supervisor") as supervisor:
            # walked three at a time, the notifications come each once, in the order asked
            whole = (await supervisor.get("/v1/notifications", params={"sort": "-created_at", "limit": 200})).json()
            assert whole["next_cursor"] is None and len(whole["items"]) >= 7
            walked, cursor = [], None
            while True:
                page = (await supervisor.get("/v1/notifications", params={
                    "sort": "-created_at", "limit": 3, **({"cursor": cursor} if cursor else {})})).json()
                assert len(page["items"]) <= 3 and page["limit"] == 3
                walked += page["items"]
                if (cursor := page["next_cursor"]) is None:
                    break
            assert [n["notification_id"] for n in walked] == [n["notification_id"] for n in whole["items"]]
            moments = [datetime.fromisoformat(n["created_at"]) for n in walked]
            assert moments == sorted(moments, reverse=True)
            newest_first = (await supervisor.get("/v1/notifications", params={"limit": 1})).json()["next_cursor"]
            for params, field in (({"cursor": "bm90LWEtY3Vyc29y"}, "query.cursor"), ({"sort": "recipient"}, "query.sort"),
                                  ({"sort": "created_at", "cursor": newest_first}, "query.cursor")):
                refused = await supervisor.get("/v1/notifications", params=params)
                assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
                assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text
        by_subject = {letter["subject"]: letter for letter in letters}
        assert by_subject["请更新您的联系电话"]["postal_address"] == ZH["address"]
        assert by_subject["Invitation: 冬季免费检测周"]["postal_address"] == EN["address"], "no e-mail: a letter"
        assert sent["campaign_invitation/C-EN"]["channel"] == "letter"
    finally:
        await stack.stop()


async def test_a_gateway_503_is_retried_with_backoff_and_the_sms_goes_once(ns: Namespace, peers: Peers) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    try:
        await _customers(ns, NOON - timedelta(days=3))
        async with httpx.AsyncClient() as client:
            await client.post(peers.gateway.url.replace("/v1/sms", "/_control/faults"), json={"status": 503, "count": 2})
        await publish(ns.settings, "aftersales.complaints", [_event("aftersales.complaints", "ComplaintAcknowledged", {
            "complaint_id": "CASE-8", "complaint_ref": "CRM-8", "customer_id": "C-ZH", "at": NOON}, NOON)])
        await _wait(lambda: len(peers.store.sms_attempts) == 1)
        await asyncio.sleep(0.5)
        assert peers.store.sms == [], "503: not delivered yet"
        clock.advance(timedelta(seconds=61))
        await _wait(lambda: len(peers.store.sms_attempts) == 2)
        clock.advance(timedelta(seconds=299))
        await asyncio.sleep(0.5)
        assert len(peers.store.sms_attempts) == 2, "the second retry waits 5 minutes"
        clock.advance(timedelta(seconds=2))
        await _wait(lambda: len(peers.store.sms) == 1)
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationSent", 1), timeout=20, settle=0.5)
        assert topic.of_type("NotificationSent")[0].data["attempts"] == 3
        # the dispatch batch that sent it is a trace of its own, which the event carries (shared/tracing.py)
        assert from_headers(list(topic.of_type("NotificationSent")[0].record.headers or ())) is not None
        assert len({a["idempotency_key"] for a in peers.store.sms_attempts}) == 1, "one idempotency key throughout"
    finally:
        await stack.stop()


async def test_a_gateway_400_fails_at_once_and_an_smtp_4xx_is_retried(ns: Namespace, peers: Peers) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    try:
        await _customers(ns, NOON - timedelta(days=3))
        async with httpx.AsyncClient() as client:
            await client.post(peers.gateway.url.replace("/v1/sms", "/_control/faults"), json={"status": 400, "count": 1})
        peers.mail.fail_next[0] = 1
        await publish(ns.settings, "aftersales.complaints", [
            _event("aftersales.complaints", "ComplaintAcknowledged", {
                "complaint_id": "CASE-9", "complaint_ref": "CRM-9", "customer_id": "C-EN", "at": NOON}, NOON),
            _escalated("as-head-01", "department_head", NOON),
        ])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationFailed", 1), timeout=30)
            failed = topic.of_type("NotificationFailed")[0].data
            assert failed["channel"] == "sms" and failed["attempts"] == 1 and "400" in failed["reason"]
            assert peers.store.mails == [], "451: the e-mail waits for its retry"
            clock.advance(timedelta(seconds=61))
            await topic.wait_for(count("NotificationSent", 1), timeout=30, settle=1.0)
        assert len(peers.store.mails) == 1 and topic.of_type("NotificationSent")[0].data["attempts"] == 2
        assert peers.store.sms == []
    finally:
        await stack.stop()


async def test_a_customer_sms_at_22_00_waits_until_08_00(ns: Namespace, peers: Peers) -> None:
    ten_pm = day_at(22)
    clock = manual_clock(ten_pm)
    stack = await _notifier(ns, peers, clock)
    try:
        await _customers(ns, ten_pm - timedelta(days=3))
        conn = await db(ns, "notifier")
        try:
            # A customer on file: their registration is on another topic, which may be
            # consumed after the event (then the SMS waits for the contact, and the quiet
            # hours apply when it is dispatched); this scenario is about a known customer.
            await _wait_async(lambda: _count(conn, "contacts"), 2)
            await publish(ns.settings, "aftersales.complaints", [_event(
                "aftersales.complaints", "ComplaintAcknowledged",
                {"complaint_id": "CASE-10", "complaint_ref": "CRM-10", "customer_id": "C-ZH", "at": ten_pm}, ten_pm)])
            await _wait_async(lambda: _count(conn, "notifications"), 1)
            assert await conn.fetchval("SELECT due_at FROM notifications") == day_at(8, days=1)
        finally:
            await conn.close()
        clock.set(day_at(7, 59, days=1))
        await asyncio.sleep(1)
        assert peers.store.sms == [] and peers.store.sms_attempts == []
        clock.set(day_at(8, days=1))
        await _wait(lambda: len(peers.store.sms) == 1)
    finally:
        await stack.stop()


async def test_an_opt_out_suppresses_and_says_why(ns: Namespace, peers: Peers) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    try:
        await _customers(ns, NOON - timedelta(days=3))
        async with api(stack["notifier"], "agent") as agent:
            recorded = await agent.post("/v1/opt-outs", json={"customer_id": "C-ZH", "channel": "sms",
                                                              "reason": "asked on the phone"})
            assert recorded.status_code == 201 and recorded.json()["opt_outs"][0]["recorded_by"] == "agent-01"
            # an e-mail opt-out retried with the same Idempotency-Key is recorded (and logged) once
            once = {"customer_id": "C-ZH", "channel": "email", "reason": "不要邮件"}
            first = await agent.post("/v1/opt-outs", json=once, headers={"Idempotency-Key": "opt-out-c-zh-email"})
            retried = await agent.post("/v1/opt-outs", json=once, headers={"Idempotency-Key": "opt-out-c-zh-email"})
            assert first.status_code == retried.status_code == 201 and retried.json() == first.json()
            assert retried.headers["Idempotency-Replayed"] == "true" and "Idempotency-Replayed" not in first.headers
            log = (await agent.get("/v1/consent-log/C-ZH")).json()["items"]
            assert [(e["channel"], e["source"]) for e in log if e["source"] == "opt_out"] == [
                ("sms", "opt_out"), ("email", "opt_out")], "one entry per opt-out: the retry recorded nothing"
            unknown = await agent.get("/v1/consent-log/C-NOBODY")
            assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
        await publish(ns.settings, "aftersales.followup", [_event("aftersales.followup", "MaintenanceReminderDue", {
            "vin": "LJ1EEAUU5N0123456", "customer_id": "C-ZH", "estimated_due_at": NOON + timedelta(days=10),
            "basis": "date"}, NOON)])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationSuppressed", 1), timeout=30, settle=0.5)
        reason = topic.of_type("NotificationSuppressed")[0].data["reason"]
        assert "opted out of sms" in reason and "asked on the phone" in reason
        assert peers.store.sms == []
        async with api(stack["notifier"], "supervisor") as supervisor:
            listed = (await supervisor.get("/v1/notifications", params={"recipient": "C-ZH"})).json()
            assert [n["status"] for n in listed["items"]] == ["suppressed"]
            assert (await supervisor.delete("/v1/opt-outs/C-ZH/sms")).status_code == 200
            gone = await supervisor.delete("/v1/opt-outs/C-ZH/sms")
            assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
            assert gone.json()["status"] == 404 and "no opt-out of sms" in gone.json()["detail"]
        async with api(stack["notifier"]) as anonymous, api(stack["notifier"], "quality") as quality:
            assert (await anonymous.get("/v1/letters")).status_code == 401
            assert (await quality.post("/v1/opt-outs", json={"customer_id": "C", "channel": "sms"})).status_code == 403
    finally:
        await stack.stop()


async def test_replaying_a_day_of_events_sends_nothing_again(ns: Namespace, peers: Peers) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    day = [_completed("C-EN", "first_visit", "unreachable", NOON - timedelta(hours=h)) for h in range(1, 4)]
    day = [{**e, "data": {**e["data"], "followup_id": f"FU-{i}"}} for i, e in enumerate(day)]
    day.append(_event("aftersales.followup", "MaintenanceReminderDue", {
        "vin": "LJ1EEAUU5N0123456", "customer_id": "C-ZH", "estimated_due_at": NOON + timedelta(days=10),
        "basis": "date"}, NOON))
    try:
        await _customers(ns, NOON - timedelta(days=3))
        await publish(ns.settings, "aftersales.followup", day)
        await _wait(lambda: len(peers.store.sms) == 4)
        await stack.stop()
        # Replay: the consumer group back to the start of every topic, and the inbox forgotten,
        # so only the notifications' own identity stands between a replay and the customers.
        conn = await db(ns, "notifier")
        try:
            await conn.execute("DELETE FROM inbox")
        finally:
            await conn.close()
        consumer = AIOKafkaConsumer(**ns.settings.kafka_client_options(), group_id=f"{ns.prefix}notifier",  # type: ignore[arg-type]
                                    enable_auto_commit=False)
        await consumer.start()
        tps = [TopicPartition(ns.topic(t), p) for t in ("aftersales.intake", "aftersales.followup",
                                                         "aftersales.complaints", "aftersales.quality") for p in range(12)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
        await consumer.stop()
        stack = await _notifier(ns, peers, clock)
        conn = await db(ns, "notifier")
        try:
            await _wait_async(lambda: _inbox_size(conn), 6)  # the replayed log is consumed again
        finally:
            await conn.close()
        await asyncio.sleep(2)
        assert len(peers.store.sms) == 4 and len(peers.store.sms_attempts) == 4, "nothing sent twice"
    finally:
        await stack.stop()


async def _inbox_size(conn: Any) -> int:
    return await _count(conn, "inbox")


async def _count(conn: Any, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def _wait_async(probe: Any, at_least: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await probe() < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"fewer than {at_least} rows in time")
        await asyncio.sleep(0.2)
