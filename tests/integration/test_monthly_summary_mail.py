"""The monthly work summary issued to the notifier and mailed for real (the notifier on the real
broker and database, a real SMTP server): customer service and the superior leader get it in
zh-CN with labels; issuing the same summary again mails nothing twice; a malformed month is a
422 and nothing is sent; only a supervisor may issue it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from services.notifier.config import NotifierSettings
from tests.support import Namespace, Stack, TopicReader, api, count, day_at, manual_clock
from tests.unit.test_monthly_summary_mail import SUMMARY
from tools.peers import MailSink, PeerStore

pytestmark = [pytest.mark.infra, pytest.mark.dates]

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")


@pytest.fixture
async def mail() -> AsyncIterator[tuple[PeerStore, MailSink]]:
    store = PeerStore()
    sink = MailSink(store).start()
    try:
        yield store, sink
    finally:
        sink.stop()


async def test_the_issued_summary_reaches_customer_service_and_the_leader_once(
        ns: Namespace, mail: tuple[PeerStore, MailSink]) -> None:
    store, sink = mail
    settings = NotifierSettings(smtp_host="127.0.0.1", smtp_port=sink.port, dispatch_tick_seconds=0.05)
    stack = await Stack(ns, manual_clock(day_at(10)), services=("notifier",),
                        state={"notifier": {"settings": settings}}).start()
    try:
        async with api(stack["notifier"], "supervisor") as supervisor, api(stack["notifier"], "agent") as agent:
            assert (await agent.post("/v1/reports/monthly-summary", json=SUMMARY)).status_code == 403
            refused = await supervisor.post("/v1/reports/monthly-summary", json=SUMMARY | {"month": "2026-13"})
            assert refused.status_code == 422 and "month" in refused.text
            issued = await supervisor.post("/v1/reports/monthly-summary", json=SUMMARY)
            assert issued.status_code == 202, issued.text
            async with TopicReader(ns.settings, "aftersales.notifier") as topic:
                await topic.wait_for(count("NotificationSent", 2), timeout=60, settle=1.0)
            again = await supervisor.post("/v1/reports/monthly-summary", json=SUMMARY)
            assert again.json()["event_id"] == issued.json()["event_id"], "the same summary is the same issue"
        [event] = topic.of_type("MonthlyWorkSummary")
        assert event.data["month"] == "2026-11" and event.data["figures"]["complaints"] == 4
        sent = sorted(r.data["rule"] for r in topic.of_type("NotificationSent"))
        assert sent == ["monthly_work_summary", "monthly_work_summary_leader"]

        mails = [m for m in store.mails if m.subject == "【月度工作总结】2026-11"]
        recipients = sorted(r for m in mails for r in m.rcpt_to)
        assert recipients == ["aftersales-director-01@aftersales.example", "cs-head-01@aftersales.example",
                              "cs-supervisor-01@aftersales.example"]
        for m in mails:
            assert "满意率：95.0%（95/100，目标 98.0%，未达标）" in m.text and "交车前复检刹车" in m.text
            assert not SNAKE.search(m.text) and m.html and not SNAKE.search(m.html)
        await asyncio.sleep(1.0)  # the second issue had its chance to be mailed
        assert len([m for m in store.mails if m.subject == "【月度工作总结】2026-11"]) == len(mails)
    finally:
        await stack.stop()
