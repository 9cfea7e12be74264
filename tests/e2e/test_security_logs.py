"""The logs of a real run hold no raw phone number, e-mail address or customer name.

Intake, follow-up, complaints and notifier run in process on the real broker and database,
with an SMS gateway and an SMTP server, and process what a day brings for customers whose names,
phones and e-mail addresses are known here: sales, pickups (follow-ups scheduled, SMS and e-mail
sent), receipts, a change of phone and e-mail, complaints by customer id and by phone alone, and
the usual producer mistakes (a malformed phone and an e-mail without a domain, filed and flagged
with the reason; a complaint by a malformed phone, dead-lettered), some through the signed
webhook. Everything the stdlib and structlog loggers emit is captured as rendered, at DEBUG, and
searched for every form of every personal value: the name, the phone as sent, in E.164, national
and spaced (the changed phone too, once intake has filed it), the e-mail address and its local
part.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from services.intake.api import signature
from services.notifier.config import NotifierSettings
from shared.logging import configure_logging
from tests.complaints_fixtures import complaints_state
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    create_namespace,
    db,
    drop_namespace,
    manual_clock,
    publish,
)
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.simulate import CST, Customer, Fleet

pytestmark = pytest.mark.infra

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
SECRET = "dms-secret-logs-0123456789"
# Known people: (name, phone as the DMS sends it, e-mail).
PEOPLE = [
    ("王伟", "+86 138 2468 1357", "wang.wei@example.cn"),
    ("欧阳娜娜", "13912345678", "nana.ouyang@mail.example.com"),
    ("Zhang Min", "+8615087654321", "zhang.min+car@example.org"),
    ("O'Brien Liu", "186-2222-3333", "obrien.liu@example.net"),
]


# The first person's phone is changed by a CRM update during the run: the new one is searched too.
CHANGED_PHONE = PEOPLE[0][1].replace("3", "5", 1)
SEARCHED = [*PEOPLE, (PEOPLE[0][0], CHANGED_PHONE, PEOPLE[0][2])]


def _forms(name: str, phone: str, email: str) -> list[str]:
    digits = re.sub(r"\D", "", phone)
    national = digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
    return [name, phone, f"+86{national}", national, f"{national[:3]} {national[3:7]} {national[7:]}", email,
            email.split("@")[0]]


@pytest.fixture
def captured() -> io.StringIO:
    """Every log line, rendered exactly as the services' handler renders it (JSON, masked)."""
    configure_logging("DEBUG", "json")
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        configure_logging("INFO", "json")


async def test_the_logs_of_a_days_run_hold_no_phone_email_or_name(captured: io.StringIO, tmp_path: Path) -> None:
    ns: Namespace = await create_namespace(webhook_secrets=f"dms={SECRET}")
    gateway = await SmsGatewaySink(PeerStore()).start()
    mail = MailSink(gateway.store).start()
    notifier = NotifierSettings(sms_gateway_url=gateway.url, smtp_port=mail.port, dispatch_tick_seconds=0.05)
    state = {**complaints_state(tmp_path), "notifier": {"settings": notifier}}
    stack = await Stack(ns, manual_clock(NOW.isoformat()),
                        services=("intake", "followup", "complaints", "notifier"), state=state).start()
    try:
        fleet = Fleet(seed=77)
        sales, pickups, receipts, crm, bad = [], [], [], [], []
        for n, (name, phone, email) in enumerate(PEOPLE):
            customer = Customer(f"CUST-LOG-{n}", name, phone, f"{name} 家, road {n}", "east", email)
            vehicle = fleet.vehicle(NOW - timedelta(days=200), customer)
            sales.append(fleet.sale(vehicle))
            pickup = fleet.pickup(vehicle, NOW - timedelta(days=3, hours=n))
            pickups.append(pickup)
            receipts.append(fleet.receipt(pickup, NOW - timedelta(days=2), comments=f"{name} 很满意, call {phone}"))
            complaint = fleet.complaint(customer, NOW - timedelta(hours=2), f"{name} ({phone}, {email}) 说刹车异响",
                                        vin=vehicle.vin, by_phone_only=n % 2 == 1)
            if n % 2 == 1:  # keyed by the phone in E.164, as the catalog says
                complaint["key"] = "+86" + re.sub(r"\D", "", phone)[-11:]
            crm.append(complaint)
            crm.append(fleet.customer_update(customer, NOW - timedelta(hours=1), email=f"new.{email}",
                                             phone=CHANGED_PHONE if n == 0 else phone))
            # Producer mistakes that quote the personal values in their reasons: a pickup's phone or
            # e-mail that fails its check is filed and flagged on the customer's file (the reason
            # kept), a complaint by a phone that is not one is dead-lettered.
            wrong = fleet.pickup(vehicle, NOW - timedelta(days=1))
            wrong["data"]["customer"]["phone"] = phone + "99"
            bad.append(wrong)
            wrong = fleet.pickup(vehicle, NOW - timedelta(days=1))
            wrong["data"]["customer"]["email"] = email.split("@")[0] + "@localhost"  # no top-level domain
            bad.append(wrong)
            refused = fleet.complaint(customer, NOW - timedelta(hours=1), f"{name} 又打来电话", by_phone_only=True)
            refused["data"]["phone"] = refused["key"] = phone + "99"
            crm.append(refused)
        await publish(ns.settings, "upstream.sales", sales)
        await publish(ns.settings, "upstream.crm", crm)
        # The CRM's changes are on file before the workshop's records arrive: a newer usable phone
        # and e-mail clear a flag (last writer wins by world time), so with the pickups first the
        # flags of the day before would be gone, and the files' flags would depend on arrival.
        filed = await db(ns, "intake")
        try:
            for _ in range(300):
                if await filed.fetchval("SELECT count(*) FROM customers WHERE customer_id LIKE 'CUST-LOG-%' "
                                        "AND email LIKE 'new.%'") == len(PEOPLE):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the CRM's changes were never filed")
        finally:
            await filed.close()
        await publish(ns.settings, "upstream.dms", pickups[:2] + receipts[:2] + bad[:4])
        body = orjson.dumps(pickups[2:] + receipts[2:] + bad[4:])
        timestamp = str(int(time.time()))  # wall time: intake checks a signature's timestamp against the real clock
        async with api(stack["intake"], "producer") as client:
            response = await client.post("/v1/events", content=body, headers={
                "X-Aftersales-Producer": "dms", "X-Aftersales-Timestamp": timestamp,
                "X-Aftersales-Signature": signature(SECRET, timestamp, body)})
        assert response.status_code == 200, response.text

        async with TopicReader(ns.settings, "aftersales.notifier") as notified:
            await notified.wait_for(count("NotificationSent", len(PEOPLE)), timeout=90, settle=2.0)
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", len(PEOPLE)), timeout=60)
        async with TopicReader(ns.settings, "aftersales.complaints") as complaints:
            await complaints.wait_for(count("ComplaintOpened", len(PEOPLE)), timeout=60)
        # The change of phone was filed (so the logs had the chance to show the new one), and so
        # were the bad phones and e-mails, flagged with their reasons.
        changed = await db(ns, "intake")
        try:
            for _ in range(300):
                flags = await changed.fetch("SELECT contact_flags FROM customers WHERE customer_id LIKE 'CUST-LOG-%' "
                                            "AND contact_flags IS NOT NULL AND contact_flags <> '{}'::jsonb")
                if len(flags) == len(PEOPLE):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the bad contact values were never flagged on the files")
            for _ in range(300):
                if await changed.fetchval("SELECT phone FROM customers WHERE customer_id = 'CUST-LOG-0'") == \
                        "+86" + re.sub(r"\D", "", CHANGED_PHONE)[-11:]:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the CRM's change of phone was never filed")
        finally:
            await changed.close()
        # The staff look people up: searches by name and phone are logged by nobody.
        async with api(stack["intake"], "agent") as agent:
            found = await agent.get("/v1/customers", params={"phone": PEOPLE[1][1]})
            assert found.status_code == 200 and len(found.json()["items"]) == 1
    finally:
        await stack.stop()
        await gateway.stop()
        mail.stop()
        await drop_namespace(ns)

    text = captured.getvalue()
    lines = text.splitlines()
    # The capture saw the run: every service, the dead letters and the notifications.
    assert len(lines) > 50, text[:2000]
    for expected in ('"service":"intake"', '"service":"notifier"', "dead-lettered a record", "notification sent"):
        assert expected in text, f"{expected!r} is not in the captured logs"
    leaks = [(value, line) for name, phone, email in SEARCHED for value in _forms(name, phone, email)
             for line in lines if value in line]
    assert not leaks, "personal data in the logs:\n" + "\n".join(f"{v!r}: {line[:400]}" for v, line in leaks[:10])
