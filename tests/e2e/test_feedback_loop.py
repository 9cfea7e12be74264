"""The dissatisfaction loop across the real services (intake, followup, notifier on the real
broker and database, a real SMTP server and the HTTP SMS gateway), the clock moved by hand:
a return-visit call scored 2 with a request → a feedback item owned by the agent → the
responsible department's e-mail → the owner records the solution → the customer's SMS the same
day → a confirmation call in the queue a few days later → satisfied, the item closes. And the
item nobody answers goes to the supervisor after two days."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import calling_window, next_callable
from services.followup.feedback import answer_call_window, confirmation_window, escalate_at
from services.notifier.config import NotifierSettings
from shared.workcal import WorkingCalendar
from tests.support import (
    SHANGHAI,
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    db,
    manual_clock,
    publish,
    queue_item,
    working_day,
)
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

D = working_day()  # calls are placed on working days: the first one from the test day
T0 = day_at(10, days=D)  # the call, inside calling hours and outside the SMS quiet hours
RULES = FollowUpRules()
CN = WorkingCalendar.load(None)
# unanswered, the item goes to the supervisor 2 working days later
DUE = escalate_at(T0, RULES, CN)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[PeerStore, MailSink, SmsGatewaySink]]:
    store = PeerStore()
    mail = MailSink(store).start()
    gateway = await SmsGatewaySink(store).start()
    try:
        yield store, mail, gateway
    finally:
        await gateway.stop()
        mail.stop()


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.1)


async def _until_async(read: Callable[[], Awaitable[object]], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await read():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.1)


async def _stack(ns: Namespace, clock: object, peers: tuple[PeerStore, MailSink, SmsGatewaySink]) -> Stack:
    _, mail, gateway = peers
    settings = NotifierSettings(sms_gateway_url=gateway.url, smtp_host="127.0.0.1", smtp_port=mail.port,
                                retry_schedule_seconds=[60, 300], dispatch_tick_seconds=0.05)
    return await Stack(ns, clock, services=("intake", "followup", "notifier"),  # type: ignore[arg-type]
                       state={"notifier": {"settings": settings}}).start()


async def test_a_call_scored_2_with_a_request_reaches_the_department_the_customer_and_a_confirmation_call(
    ns: Namespace, peers: tuple[PeerStore, MailSink, SmsGatewaySink],
) -> None:
    store = peers[0]
    clock = manual_clock(T0)
    stack = await _stack(ns, clock, peers)
    try:
        fleet = Fleet(seed=151)
        vehicle = fleet.vehicle(day_at(0, days=-300))
        pickup = fleet.pickup(vehicle, day_at(9, days=D - 4), service_type="repair")
        await publish(ns.settings, "upstream.dms", [pickup])
        followup = stack["followup"]

        async with api(followup, "agent") as agent, api(followup, "agent2") as other, \
                api(followup, "supervisor") as supervisor:
            visit = await queue_item(agent, "first_visit")
            call = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 2, "talking_points": "the car pulls to the left",
                "requests": "请把四轮定位再做一次，并报销上次的费用",
                "feedback": {"category": "repair_quality"},
            })
            assert call.status_code == 201, call.text
            item_id = call.json()["feedback_item"]
            assert item_id, "a score of 2 with a request opens a feedback item"

            item = (await agent.get(f"/v1/feedback-items/{item_id}")).json()
            assert item["owner"] == "agent-01" and item["state"] == "open"
            assert item["reasons"] == ["low_score", "request"] and item["department"] == "after_sales_service"
            assert datetime.fromisoformat(item["due_at"]) == DUE
            mine = (await agent.get("/v1/feedback-items", params={"state": "open"})).json()["items"]
            assert [i["item_id"] for i in mine] == [item_id]
            assert (await other.get("/v1/feedback-items")).json()["items"] == [], "another agent sees only their own"
            assert (await other.get(f"/v1/feedback-items/{item_id}")).status_code == 403
            assert (await other.get("/v1/feedback-items", params={"owner": "agent-01"})).status_code == 403
            assert (await supervisor.get("/v1/feedback-items", params={"department": "after_sales_service"})
                    ).json()["items"][0]["item_id"] == item_id

            # The responsible department's written notice, by e-mail to each of its people.
            await _until(lambda: any(item_id[:8] in m.subject for m in store.mails), "the department's e-mail")
            notice = [m for m in store.mails if item_id[:8] in m.subject]
            assert {r for m in notice for r in m.rcpt_to} == {"as-supervisor-01@aftersales.example",
                                                             "as-head-01@aftersales.example"}
            assert "四轮定位" in notice[0].text and "agent-01" in notice[0].text

            # Only the owner or a supervisor records the solution; it cannot be empty.
            refused = await other.post(f"/v1/feedback-items/{item_id}/solution", json={"solution": "x"})
            assert refused.status_code == 403, refused.text
            empty = await agent.post(f"/v1/feedback-items/{item_id}/solution", json={"solution": ""})
            assert empty.status_code == 422

            clock.set(T0 + timedelta(hours=5))  # 15:00 the same day: the dealer found a way
            solution = "经销商免费重新做四轮定位，上次费用全额退还"
            solved = await agent.post(f"/v1/feedback-items/{item_id}/solution", json={"solution": solution})
            assert solved.status_code == 200, solved.text
            assert solved.json()["state"] == "answered" and solved.json()["answered_in_time"] is True
            again = await agent.post(f"/v1/feedback-items/{item_id}/solution", json={"solution": solution})
            assert again.status_code == 409, "answered once"

            # The customer's SMS, sent the day the solution was found.
            await _until(lambda: any(solution in s.text for s in store.sms), "the customer's SMS")
            sms = [s for s in store.sms if solution in s.text]
            assert len(sms) == 1 and sms[0].to[-8:] == vehicle.customer.phone[-8:]
            async with TopicReader(ns.settings, "aftersales.notifier") as topic:
                await topic.wait_for(lambda rs: any(r.data.get("rule") == "feedback_item_answer"
                                                    and r.event_type == "NotificationSent" for r in rs), timeout=30)
            sent = next(r for r in topic.records if r.data.get("rule") == "feedback_item_answer")
            told_at = datetime.fromisoformat(sent.data["at"]).astimezone(SHANGHAI)
            assert told_at.date() == (T0 + timedelta(hours=5)).astimezone(SHANGHAI).date(), "the same day"

            # A confirmation call in the agents' queue a few days later.
            # (3 to 7 days after the answer, on calling days: a day off at either end moves it to a working day)
            window = calling_window(confirmation_window(T0 + timedelta(hours=5), RULES), "Asia/Shanghai", CN, RULES)
            assert window.due_from >= T0 + timedelta(hours=5, days=3)
            clock.set(window.due_from + timedelta(minutes=30))
            confirmation = await queue_item(agent, "feedback_confirmation")
            assert confirmation["customer_id"] == vehicle.customer.customer_id
            assert datetime.fromisoformat(confirmation["due_by"]) == window.due_by
            unscored = await agent.post(f"/v1/followups/{confirmation['followup_id']}/attempts",
                                        json={"outcome": "reached"})
            assert unscored.status_code == 422, "a confirmation needs the customer's answer"
            done = await agent.post(f"/v1/followups/{confirmation['followup_id']}/attempts", json={
                "outcome": "reached", "satisfied": True, "satisfaction": 5, "notes": "drives straight now"})
            assert done.status_code == 201, done.text
            assert done.json()["feedback_item"] is None, "a confirmation opens no item of its own"

            closed = (await supervisor.get(f"/v1/feedback-items/{item_id}")).json()
            assert closed["state"] == "closed" and closed["closed_as"] == "confirmed"
            assert [h["action"] for h in closed["history"]] == ["opened", "answered", "closed"]

        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FeedbackItemClosed", 1), timeout=30)
        steps = [r for r in topic.records if (r.event_type or "").startswith("FeedbackItem")]
        assert [r.event_type for r in steps] == ["FeedbackItemOpened", "FeedbackItemAnswered", "FeedbackItemClosed"]
        assert all(r.envelope is not None and str(r.envelope.correlation_id) == pickup["correlation_id"] for r in steps)
        assert topic.of_type("FeedbackItemAnswered")[0].data["told_by"] == "sms"
    finally:
        await stack.stop()


async def test_an_item_nobody_answers_goes_to_the_supervisor_after_two_days_and_a_score_of_1_to_complaints(
    ns: Namespace, peers: tuple[PeerStore, MailSink, SmsGatewaySink],
) -> None:
    store = peers[0]
    clock = manual_clock(T0)
    stack = await _stack(ns, clock, peers)
    try:
        fleet = Fleet(seed=152)
        unhappy, furious = (fleet.vehicle(day_at(0, days=-200)) for _ in range(2))
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, day_at(9, days=D - 4)) for v in (unhappy, furious)])
        async with api(stack["followup"], "agent") as agent, api(stack["followup"], "supervisor") as supervisor:
            first = await queue_item(agent, "first_visit", vin=unhappy.vin)
            call = await agent.post(f"/v1/followups/{first['followup_id']}/attempts",
                                    json={"outcome": "reached", "satisfaction": 3})
            item_id = call.json()["feedback_item"]
            second = await queue_item(agent, "first_visit", vin=furious.vin)
            worst = await agent.post(f"/v1/followups/{second['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 1, "talking_points": "the engine stalled on the highway"})
            serious = (await agent.get(f"/v1/feedback-items/{worst.json()['feedback_item']}")).json()
            assert serious["serious"] and serious["state"] == "closed" and serious["closed_as"] == "complaint"

            clock.set(DUE - timedelta(minutes=30))
            await asyncio.sleep(0.5)
            assert (await agent.get(f"/v1/feedback-items/{item_id}")).json()["state"] == "open", "not yet"
            clock.set(DUE + timedelta(minutes=1))
            async with TopicReader(ns.settings, "aftersales.followup") as topic:
                await topic.wait_for(count("FeedbackItemEscalated", 1), timeout=30, settle=0.5)
            escalated = topic.of_type("FeedbackItemEscalated")
            assert len(escalated) == 1 and escalated[0].data["item_id"] == item_id
            assert escalated[0].data["escalated_to"] == "supervisor"
            async with api(stack["followup"]) as anyone:  # the gauge an alert or a dashboard reads
                gauge = 'aftersales_feedback_items_open{state="escalated"} 1.0'
                for _ in range(100):
                    if gauge in (await anyone.get("/metrics")).text:
                        break
                    await asyncio.sleep(0.1)
                assert gauge in (await anyone.get("/metrics")).text
            filed = [r for r in topic.of_type("ComplaintFiled") if r.data["complaint_ref"] == serious["complaint_ref"]]
            assert len(filed) == 1 and filed[0].data["channel"] == "return_visit"
            assert filed[0].data["followup_id"] == second["followup_id"]
            await _until(lambda: any(item_id[:8] in m.subject and "cs-supervisor-01@aftersales.example" in m.rcpt_to
                                     and ("逾期" in m.subject or "overdue" in m.subject) for m in store.mails),
                         "the supervisor's e-mail")
            assert not any(serious["item_id"][:8] in m.subject for m in store.mails), \
                "a complaint case is notified by complaints, not as a feedback notice"

            now = next_callable(DUE + timedelta(minutes=1), "Asia/Shanghai", RULES, CN)
            clock.set(now)
            late = await supervisor.post(f"/v1/feedback-items/{item_id}/solution",
                                         json={"solution": "a courtesy car next time", "tell_by": "call"})
            assert late.status_code == 200 and late.json()["answered_in_time"] is False
            answer_call = await queue_item(agent, "feedback_answer")
            assert answer_call["vin"] == unhappy.vin
            today = answer_call_window(now, "Asia/Shanghai", RULES, CN)
            assert datetime.fromisoformat(answer_call["due_by"]) == today.due_by
            assert datetime.fromisoformat(answer_call["due_by"]).astimezone(SHANGHAI).date() == \
                now.astimezone(SHANGHAI).date(), "the call telling the customer is due today"
            figures = (await supervisor.get("/v1/feedback-items/figures",
                                            params={"from": (T0 - timedelta(hours=1)).isoformat(),
                                                    "to": (now + timedelta(days=1)).isoformat()})).json()
            assert figures["opened"] == 2 and figures["escalated"] == 1 and figures["answered_late"] == 1
            assert figures["complaints"] == 1 and figures["departments_notified"] == 1
            assert (await agent.get("/v1/feedback-items/figures")).status_code == 403
    finally:
        await stack.stop()


async def test_a_customer_whose_phone_is_flagged_is_told_by_a_call_task_not_an_sms(
    ns: Namespace, peers: tuple[PeerStore, MailSink, SmsGatewaySink],
) -> None:
    store = peers[0]
    clock = manual_clock(T0)
    stack = await _stack(ns, clock, peers)
    try:
        fleet = Fleet(seed=153)
        vehicle = fleet.vehicle(day_at(0, days=-200))
        vehicle.customer.phone = "+8614412345678"  # libphonenumber rejects it: filed, flagged on the file
        await publish(ns.settings, "upstream.dms", [fleet.pickup(vehicle, day_at(9, days=D - 4))])
        async with api(stack["followup"], "agent") as agent:
            visit = await queue_item(agent, "first_visit", vin=vehicle.vin)
            assert "phone" in (await agent.get(f"/v1/followups/{visit['followup_id']}")).json()["contact_flags"]
            call = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
                "outcome": "reached", "satisfaction": 2, "requests": "the invoice, please"})
            item_id = call.json()["feedback_item"]
            clock.set(T0 + timedelta(hours=2))
            solved = await agent.post(f"/v1/feedback-items/{item_id}/solution",
                                      json={"solution": "the invoice is posted today"})
            assert solved.status_code == 200 and solved.json()["told_by"] == "call", solved.text
            told = await queue_item(agent, "feedback_answer", vin=vehicle.vin)
            assert told["customer_id"] == vehicle.customer.customer_id
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(count("FeedbackItemAnswered", 1), timeout=30, settle=1.0)
        answered = topic.of_type("FeedbackItemAnswered")[0]
        assert answered.data["told_by"] == "call"
        notifier = await db(ns, "notifier")
        try:  # once the notifier has handled the answer (its inbox), it has decided no SMS for it
            await _until_async(lambda: notifier.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1",
                                                         answered.envelope.event_id), "the notifier read the answer")
            assert await notifier.fetchval("SELECT count(*) FROM notifications WHERE source_event_id = $1",
                                           answered.envelope.event_id) == 0
        finally:
            await notifier.close()
        assert not any("invoice is posted" in s.text for s in store.sms)
    finally:
        await stack.stop()
