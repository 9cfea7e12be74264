"""The weekly return-visit report reaches each department with its part (intake, followup and
notifier on the real broker and database, a real SMTP server, the clock moved by hand): three
first-visit calls (scored 2 with a repair request, 3 with a price request, 5), the repair one
answered; on Monday 08:00 customer service gets the whole report, the workshop only the repair
request and its answer, sales only the price request, the parts warehouse "nothing this week";
all in zh-CN with labels, no field names."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from services.notifier.config import NotifierSettings
from tests.e2e.test_feedback_loop import _until, peers
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    manual_clock,
    next_weekday,
    publish,
    queue_item,
    working_day,
)
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["peers"]  # the fixture, imported

D = working_day()
T0 = day_at(10, days=D)
REPAIR = "刹车异响上次没修好，请再检查一次"
PRICE = "保养报价比隔壁店贵三百元"
ANSWER = "经销商已预约周三免费复检刹车"
SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")  # a field name such as calls_due or after_sales_service


async def test_each_department_gets_its_part_of_the_weekly_report_in_zh_cn(
    ns: Namespace, peers: tuple[PeerStore, MailSink, SmsGatewaySink],
) -> None:
    store, sink, gateway = peers
    settings = NotifierSettings(sms_gateway_url=gateway.url, smtp_host="127.0.0.1", smtp_port=sink.port,
                                retry_schedule_seconds=[60, 300], dispatch_tick_seconds=0.05)
    clock = manual_clock(T0)
    stack = await Stack(ns, clock, services=("intake", "followup", "notifier"),
                        state={"notifier": {"settings": settings}}).start()
    try:
        fleet = Fleet(seed=1616)
        vehicles = [fleet.vehicle(day_at(0, days=-300)) for _ in range(3)]
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, day_at(9, days=D - 4), service_type="repair")
                                                   for v in vehicles])
        calls = [
            {"satisfaction": 2, "requests": REPAIR, "feedback": {"category": "repair_quality"}},
            {"satisfaction": 3, "requests": PRICE, "feedback": {"category": "price"}},
            {"satisfaction": 5},
        ]
        async with api(stack["followup"], "agent") as agent:
            items = []
            for vehicle, body in zip(vehicles, calls, strict=True):
                visit = await queue_item(agent, "first_visit", vin=vehicle.vin)
                done = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts",
                                        json={"outcome": "reached", **body})
                assert done.status_code == 201, done.text
                items.append(done.json()["feedback_item"])
            assert items[0] and items[1] and not items[2]
            clock.set(T0 + timedelta(hours=3))
            answered = await agent.post(f"/v1/feedback-items/{items[0]}/solution", json={"solution": ANSWER})
            assert answered.status_code == 200, answered.text

        clock.set(next_weekday(0, 8, 0, after=clock.now()))
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: count("FollowUpWeeklyReport", 1)(rs)
                                 and count("FollowUpDepartmentReport", 4)(rs), timeout=30, settle=0.5)
        parts = {r.data["department"]: r.data["figures"] for r in topic.of_type("FollowUpDepartmentReport")}
        assert sorted(parts) == ["after_sales_service", "parts_warehouse", "quality_inspection", "sales"]
        whole = topic.of_type("FollowUpWeeklyReport")[0].data["figures"]
        headline = whole["headline"]
        assert (headline["scored"], headline["satisfied"], headline["dissatisfied"]) == (3, 1, 2)
        assert headline["satisfaction_rate"] == pytest.approx(1 / 3)
        assert len(whole["trend"]["previous_weeks"]) == 4
        assert parts["sales"]["voices"].keys() == {"sales"} and parts["sales"]["headline"] == headline

        def to(prefix: str) -> list:
            return [m for m in store.mails if m.subject.startswith("【回访周报】")
                    and any(r.startswith(prefix) for r in m.rcpt_to)]

        await _until(lambda: all(to(p) for p in ("cs-", "as-", "sales-", "pw-", "qi-")), "the five departments' mails")
        [cs], [workshop], [sales], [parts_mail] = to("cs-"), to("as-"), to("sales-"), to("pw-")
        assert sorted(cs.rcpt_to) == ["cs-head-01@aftersales.example", "cs-supervisor-01@aftersales.example"]
        assert sorted(sales.rcpt_to) == ["sales-head-01@aftersales.example", "sales-supervisor-01@aftersales.example"]
        # customer service reads everything; each other department only its own customers' words
        assert REPAIR in cs.text and PRICE in cs.text and ANSWER in cs.text
        assert REPAIR in workshop.text and ANSWER in workshop.text and PRICE not in workshop.text
        assert PRICE in sales.text and REPAIR not in sales.text and ANSWER not in sales.text
        assert REPAIR not in parts_mail.text and PRICE not in parts_mail.text and "本周无" in parts_mail.text
        assert sales.subject.endswith("销售部") and "售后服务部（维修车间）" in workshop.subject
        for m in (cs, workshop, sales, parts_mail):
            assert "本周回访概况" in m.text and "回访率" in m.text and "满意率：33.3%" in m.text
            assert "不满意客户数：2" in m.text and "较前4周平均" in m.text
            assert not SNAKE.search(m.text), SNAKE.search(m.text)
            assert m.html and not SNAKE.search(m.html)
        assert "已将解决方案告知客户" in workshop.text and "处理中" in sales.text
    finally:
        await stack.stop()
