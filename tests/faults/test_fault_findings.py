"""What the fault suite found, each reproduced on its own (real broker and database) so it
stays fixed. See docs/reliability.md, "Fault injection", for how each showed up in a run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.notifier import store
from services.notifier.config import NotifierSettings
from shared.db import acquire
from tests.support import Namespace, Stack, TopicReader, day_at, db, manual_clock, publish
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

NOON = day_at(12)  # the test day at noon: customers' SMS go out at once, outside the quiet hours


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[PeerStore, SmsGatewaySink, MailSink]]:
    peers = PeerStore()
    sms = await SmsGatewaySink(peers).start()
    mail = MailSink(peers).start()
    try:
        yield peers, sms, mail
    finally:
        await sms.stop()
        mail.stop()


async def test_an_address_change_that_overtakes_the_pickup_does_not_cost_the_customer_the_first_visit_sms(
    ns: Namespace, gateway: tuple[PeerStore, SmsGatewaySink, MailSink]
) -> None:
    """Found by the fault run: CRM's newer address change created the notifier's contact without
    a phone; intake's later CustomerUpdated (the pickup's, older in world time, carrying the
    phone) was dropped whole, and the first-visit SMS was suppressed: "no sms on file"."""
    peers, sms, mail = gateway
    fleet = Fleet(seed=41)
    vehicle = fleet.vehicle(NOON - timedelta(days=200))
    settings = NotifierSettings(sms_gateway_url=sms.url, smtp_port=mail.port, sms_api_key="", dispatch_tick_seconds=0.05)
    stack = await Stack(ns, manual_clock(NOON), services=("intake", "followup", "notifier"),
                        state={"notifier": {"settings": settings}}).start()
    try:
        await publish(ns.settings, "upstream.crm", [fleet.customer_update(
            vehicle.customer, NOON - timedelta(hours=1), address="east district, new road 1")])
        async with TopicReader(ns.settings, "aftersales.intake") as intake:
            await intake.wait_for(lambda rs: any(r.event_type == "CustomerRegistered" for r in rs), timeout=60)
        await publish(ns.settings, "upstream.dms", [fleet.pickup(vehicle, NOON - timedelta(hours=2))])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda rs: any(r.data.get("rule") == "first_visit_notice" for r in rs), timeout=60)
        outcome = next(r for r in topic.records if r.data.get("rule") == "first_visit_notice")
        assert outcome.event_type == "NotificationSent", outcome.data.get("reason")
        assert [s.to for s in peers.sms] == [vehicle.customer.phone]
        conn = await db(ns, "notifier")
        try:
            contact = await conn.fetchrow("SELECT phone, address FROM contacts WHERE customer_id = $1",
                                          vehicle.customer.customer_id)
        finally:
            await conn.close()
        assert contact["phone"] == vehicle.customer.phone
        assert contact["address"] == "east district, new road 1", "the newer address is kept"
    finally:
        await stack.stop()


async def test_a_stale_attempt_whose_lease_expired_cannot_undo_the_outcome_of_the_attempt_that_replaced_it(
    ns: Namespace,
) -> None:
    """Found by the fault run (two notifier replicas, a slow gateway): an attempt outlived its
    sending lease, another replica claimed the notification and sent it; the first attempt then
    failed and put the notification back to pending, due again in five minutes: a notification
    announced as sent would have been sent again."""
    stack = await Stack(ns, manual_clock(NOON), services=("notifier",)).start(consume=False, workers=False)
    nid = uuid.uuid4()
    try:
        assert stack["notifier"].pool is not None
        async with acquire(stack["notifier"].pool) as conn:
            await store.insert_notifications(conn, [{
                "notification_id": nid, "rule": "first_visit_notice", "source_event_id": uuid.uuid4(),
                "source_event_type": "FollowUpScheduled", "correlation_id": uuid.uuid4(), "recipient": "C-1",
                "recipient_kind": "customer", "channel": "sms", "template": "first_visit_notice",
                "context": {"data": {}}, "status": "pending", "due_at": NOON, "created_at": NOON}])
            first = await store.claim_due(conn, NOON, NOON - timedelta(seconds=120), 10)
            assert [n["attempts"] for n in first] == [1]
            later = NOON + timedelta(minutes=3)  # the first claim's lease (120 s) has expired
            second = await store.claim_due(conn, later, later - timedelta(seconds=120), 10)
            assert [n["attempts"] for n in second] == [2]
            assert await store.finish(conn, nid, "sent", later, provider_ref="m-1", claimed_at=second[0]["sending_since"])
            stale = first[0]["sending_since"]
            assert not await store.reschedule(conn, nid, later + timedelta(minutes=5), undo_attempt=False,
                                              error="ReadError", claimed_at=stale)
            assert not await store.finish(conn, nid, "failed", later, error="ReadError", claimed_at=stale)
            row = await conn.fetchrow("SELECT status, provider_ref, attempts FROM notifications WHERE notification_id = $1",
                                      nid)
        assert dict(row) == {"status": "sent", "provider_ref": "m-1", "attempts": 2}
    finally:
        await stack.stop()


async def _status(ns: Namespace, notification_rule: str) -> str | None:
    conn = await db(ns, "notifier")
    try:
        return await conn.fetchval("SELECT status FROM notifications WHERE rule = $1", notification_rule)
    finally:
        await conn.close()


async def _until(probe: Any, expected: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (seen := await probe()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {seen!r}, waited for {expected!r}"
        await asyncio.sleep(0.1)


def _event(topic: str, event_type: str, data: dict[str, object], at: datetime) -> dict[str, object]:
    from shared.events import new_event

    return new_event(topic=topic, event_type=event_type, data=data, source=topic.split(".")[1],
                     occurred_at=at).to_dict()


def _phoneless_file_and_a_first_visit() -> tuple[dict[str, object], dict[str, object]]:
    """CRM's address change made the file (no phone yet); the pickup's follow-up is read before
    the pickup's CustomerUpdated that brings the phone."""
    registered = _event("aftersales.intake", "CustomerRegistered", {
        "customer_id": "C-1", "address": "east district, new road 1", "registered_from": "CustomerUpdated"},
        NOON - timedelta(hours=1))
    scheduled = _event("aftersales.followup", "FollowUpScheduled", {
        "followup_id": "FU-1", "kind": "first_visit", "customer_id": "C-1", "vin": "LJ1EEAUU5N0123456",
        "due_from": NOON + timedelta(days=3), "due_by": NOON + timedelta(days=7), "priority": 60,
        "reason_event_id": str(uuid.uuid4())}, NOON)
    return registered, scheduled


async def test_a_first_visit_read_before_the_update_that_brings_the_phone_still_reaches_the_customer(
    ns: Namespace, gateway: tuple[PeerStore, SmsGatewaySink, MailSink]
) -> None:
    """Found by the fault run (finding 3): the notifier consumes two topics with no order
    between them; a FollowUpScheduled read before the CustomerUpdated that brings the phone was
    suppressed for good, "the customer has no sms on file". It now waits for the file."""
    peers, sms, mail = gateway
    settings = NotifierSettings(sms_gateway_url=sms.url, smtp_port=mail.port, sms_api_key="", dispatch_tick_seconds=0.05)
    stack = await Stack(ns, manual_clock(NOON), services=("notifier",),
                        state={"notifier": {"settings": settings}}).start()
    try:
        registered, scheduled = _phoneless_file_and_a_first_visit()
        await publish(ns.settings, "aftersales.intake", [registered])
        await publish(ns.settings, "aftersales.followup", [scheduled])
        await _until(lambda: _status(ns, "first_visit_notice"), "awaiting_contact")
        await asyncio.sleep(1)  # several dispatcher ticks: it stays parked, nothing is decided or sent
        assert await _status(ns, "first_visit_notice") == "awaiting_contact" and peers.sms == []
        await publish(ns.settings, "aftersales.intake", [_event("aftersales.intake", "CustomerUpdated", {
            "customer_id": "C-1", "name": "李娜", "phone": "+8613800138009", "address": "east district, new road 1",
            "changes": {"phone": {"old": None, "new": "+8613800138009"}}}, NOON - timedelta(hours=2))])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda rs: any(r.event_type == "NotificationSent" for r in rs), timeout=30, settle=0.5)
        assert [r.event_type for r in topic.records] == ["NotificationSent"]
        assert topic.records[0].data["attempts"] == 1, "waiting was not an attempt"
        assert [s.to for s in peers.sms] == ["+8613800138009"]
    finally:
        await stack.stop()


async def test_a_file_that_never_catches_up_is_suppressed_after_the_wait_and_says_so(
    ns: Namespace, gateway: tuple[PeerStore, SmsGatewaySink, MailSink]
) -> None:
    peers, sms, mail = gateway
    settings = NotifierSettings(sms_gateway_url=sms.url, smtp_port=mail.port, sms_api_key="", dispatch_tick_seconds=0.05)
    clock = manual_clock(NOON)
    stack = await Stack(ns, clock, services=("notifier",), state={"notifier": {"settings": settings}}).start()
    try:
        registered, scheduled = _phoneless_file_and_a_first_visit()
        await publish(ns.settings, "aftersales.intake", [registered])
        await publish(ns.settings, "aftersales.followup", [scheduled])
        await _until(lambda: _status(ns, "first_visit_notice"), "awaiting_contact")
        clock.set(NOON + timedelta(days=settings.awaiting_contact_days, minutes=1))
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(lambda rs: bool(rs), timeout=30, settle=0.5)
        assert [r.event_type for r in topic.records] == ["NotificationSuppressed"]
        assert topic.records[0].data["reason"] == "the customer has no sms on file (waited 7 days for it)"
        assert peers.sms == []
    finally:
        await stack.stop()
