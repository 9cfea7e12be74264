"""The notifier killed between the send and the record of it: after a restart it sends at most
once more, with the same idempotency key, and the customer gets one message."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from shared.clock import offset_to
from shared.events import new_event
from tests.support import Namespace, ServiceProcess, TopicReader, count, day_at, publish
from tools.peers import PeerStore, SmsGatewaySink

pytestmark = [pytest.mark.infra, pytest.mark.slow, pytest.mark.dates]


async def test_a_crash_between_send_and_record_repeats_the_attempt_once_with_the_same_key(
    ns: Namespace, logs_dir: Path
) -> None:
    gateway = await SmsGatewaySink(PeerStore()).start()
    now = day_at(10)  # the service lives at 10:00 on the test day, outside the SMS quiet hours
    env = {"AFTERSALES_SMS_GATEWAY_URL": gateway.url, "AFTERSALES_SENDING_LEASE_SECONDS": "1",
           "AFTERSALES_DISPATCH_TICK_SECONDS": "0.1", "AFTERSALES_CLOCK_OFFSET_SECONDS": str(offset_to(now)),
           "AFTERSALES_SMS_API_KEY": ""}
    doomed = ServiceProcess(ns, "notifier", logs_dir, AFTERSALES_FAULT="crash_after_send", **env).start()
    try:
        doomed.wait_ready()
        await publish(ns.settings, "aftersales.intake", [new_event(
            topic="aftersales.intake", event_type="CustomerRegistered", occurred_at=now - timedelta(days=1),
            source="intake", data={"customer_id": "C-1", "name": "李娜", "phone": "+8613800138009", "region": "east",
                                   "registered_from": "VehicleSold"}).to_dict()])
        await publish(ns.settings, "aftersales.complaints", [new_event(
            topic="aftersales.complaints", event_type="ComplaintAcknowledged", occurred_at=now, source="complaints",
            data={"complaint_id": "CASE-1", "complaint_ref": "CRM-1", "customer_id": "C-1", "at": now},
        ).to_dict()])
        assert await asyncio.to_thread(doomed.wait_exit, 60) == -9, doomed.tail()
        assert len(gateway.store.sms_attempts) == 1 and len(gateway.store.sms) == 1, "sent, then the crash"

        survivor = ServiceProcess(ns, "notifier", logs_dir, **env).start()
        try:
            survivor.wait_ready()
            async with TopicReader(ns.settings, "aftersales.notifier") as topic:
                await topic.wait_for(count("NotificationSent", 1), timeout=60, settle=3.0)
            assert len(topic.of_type("NotificationSent")) == 1
            keys = [a["idempotency_key"] for a in gateway.store.sms_attempts]
            assert len(keys) == 2 and keys[0] == keys[1], "at most one duplicate attempt, with the same key"
            assert len(gateway.store.sms) == 1, "the gateway recognised the key: the customer got one SMS"
        finally:
            assert survivor.terminate() == 0, survivor.tail()
    finally:
        doomed.kill()
        await gateway.stop()
