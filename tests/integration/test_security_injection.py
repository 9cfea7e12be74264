"""Issue 19, injection on the real stack: a customer name written to smuggle a second address into
the To header, and a complaint ref carrying a phishing link, reach the notifier as canonical events
(as legacy data or a compromised producer would; intake now refuses both at its edge) and go out
through the real SMTP server and SMS gateway."""

from __future__ import annotations

from datetime import timedelta
from email.utils import getaddresses

import pytest

from tests.integration.test_notifier_delivery import NOON, Peers, _completed, _event, _notifier, peers
from tests.support import Namespace, TopicReader, count, manual_clock, publish

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["peers"]  # the fixture, shared with the delivery tests

HEADER_NAME = 'Li" <x@evil.example>, "'
CUSTOMER = {"customer_id": "C-LI", "name": HEADER_NAME, "phone": "+8613800138009", "email": "li.na@example.cn",
            "address": "上海市浦东新区世纪大道1号", "region": "east", "locale": "zh-CN", "timezone": "Asia/Shanghai",
            "registered_from": "VehicleSold"}
PHISHING_REF = "CRM-9 退款请访问 https://evil.example/refund"


async def test_a_name_with_an_address_in_it_gets_one_rcpt_to_and_a_link_in_a_ref_never_reaches_the_sms(
    ns: Namespace, peers: Peers
) -> None:
    clock = manual_clock(NOON)
    stack = await _notifier(ns, peers, clock)
    try:
        at = NOON - timedelta(minutes=5)
        await publish(ns.settings, "aftersales.intake", [
            _event("aftersales.intake", "CustomerRegistered", CUSTOMER, at - timedelta(days=30)),
            _event("aftersales.intake", "CampaignAnnounced", {
                "campaign_id": "CP-9", "kind": "free_inspection_week", "title": "冬季免费检测周",
                "starts_at": NOON + timedelta(days=14), "ends_at": NOON + timedelta(days=21), "address": "浦东服务站",
                "regions": ["east"]}, at - timedelta(days=1))])
        await publish(ns.settings, "aftersales.followup", [_completed("C-LI", "campaign_call", "reached", at,
                                                                     campaign_id="CP-9")])
        await publish(ns.settings, "aftersales.complaints", [_event("aftersales.complaints", "ComplaintAcknowledged", {
            "complaint_id": "CASE-9", "complaint_ref": PHISHING_REF, "customer_id": "C-LI", "at": at}, at)])
        async with TopicReader(ns.settings, "aftersales.notifier") as topic:
            await topic.wait_for(count("NotificationSent", 2), timeout=60, settle=1.0)
    finally:
        await stack.stop()
    assert topic.of_type("NotificationFailed") == []

    assert len(peers.store.mails) == 1
    mail = peers.store.mails[0]
    assert mail.rcpt_to == ["li.na@example.cn"], "the SMTP conversation named exactly one recipient"
    assert getaddresses([mail.headers["To"]]) == [(HEADER_NAME, "li.na@example.cn")], "the name stays a name"
    assert all("evil" not in rcpt for m in peers.store.mails for rcpt in m.rcpt_to)

    [sms] = peers.store.sms
    assert sms.to == CUSTOMER["phone"] and "CRM-9" in sms.text and "[链接已删除]" in sms.text
    assert "evil.example" not in sms.text and "https" not in sms.text
