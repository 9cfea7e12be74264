"""Erasure in follow-up (issue 19, the erasure contract) on the real broker and database: customer
C and a control customer D are filed the same way with distinctive values (a Chinese name, a
phone, an e-mail, an address, free text) in every place follow-up keeps them: the contact flags
of their file, a hotline consultation, a call's notes, requests and complaint, a feedback item
and its solution, an inbound call (with its cached Idempotency-Key answer), a supervisor's owner
change and call assignment, the weekly report's voices. CustomerErased for C (and a phone-only
file it took over) leaves none of C's values in the schema while D's are all still there; the
KPIs, the registers' and the report's figures are unchanged; a second CustomerErased changes
nothing; C's old events delivered again (and a late one) bring nothing back; an event after the
erasure is filed; the agents' queue and pages still work for C's follow-ups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.followup.config import FollowUpRules
from services.followup.domain import next_weekly_report
from shared.events import new_event
from tests.console_support import eventually
from tests.privacy_scan import find_in_schema
from tests.support import Namespace, Stack, api, day_at, db, manual_clock, publish, queue_item, working_day

pytestmark = [pytest.mark.infra, pytest.mark.dates]

T0 = day_at(10, days=working_day())  # inside calling hours on a calling day


@dataclass(frozen=True)
class Person:
    customer_id: str
    vin: str
    name: str
    phone: str
    email: str
    address: str
    note: str  # free text: what they asked for on the call
    solution: str  # free text: what they were told

    def values(self) -> dict[str, str]:
        return {"name": self.name, "phone": self.phone, "email": self.email, "address": self.address,
                "note": self.note, "solution": self.solution}


C = Person("C-ERASE-1", "LERASE0000000C001", "欧阳娜娜", "+8613912345678", "ouyang.nana@example.cn",
           "上海市浦东新区枫林路88弄6号", "后备箱密封条漏水请尽快处理", "已约好周六检修密封条")
D = Person("D-KEEP-1", "LERASE0000000D001", "司马光明", "+8613787654321", "sima.guangming@example.cn",
           "北京市海淀区中关村大街27号", "空调出风口有异味希望检查", "已更换空调滤芯")
C_OLD = "C-ERASE-OLD"  # a phone-only file C's file took over (CustomerErased's merged_customer_ids)


def _intake(event_type: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return new_event(topic="aftersales.intake", event_type=event_type, data=data, source="intake",
                     occurred_at=at).to_dict()


def _registered(p: Person, at: datetime, phone: str | None = None) -> dict[str, Any]:
    """The file, with its phone and e-mail flagged unusable (follow-up keeps the flags' values);
    the newest fact about the file (a pickup's or a consultation's later one would keep its own)."""
    phone = phone or p.phone
    return _intake("CustomerRegistered", {
        "customer_id": p.customer_id, "registered_from": "sales", "name": p.name, "phone": phone, "email": p.email,
        "address": p.address, "region": "east", "contact_flags": {
            "phone": {"value": phone, "reason": "wrong_number"}, "email": {"value": p.email, "reason": "bounced"}},
    }, at)


def _picked_up(p: Person, at: datetime) -> dict[str, Any]:
    return _intake("VehiclePickedUp", {
        "repair_order_id": f"RO-{p.customer_id}", "vin": p.vin, "dealer_id": "D-SH-01", "picked_up_at": at,
        "service_type": "maintenance", "items": [{"code": "M-OIL", "description": "oil change"}],
        "mileage_km": 12_000, "advisor_id": "SA-01", "region": "east",
        "customer": {"customer_id": p.customer_id, "name": p.name, "address": p.address, "region": "east",
                     "phone": p.phone, "email": p.email},
    }, at)


def _consulted(customer_id: str, consultation_id: str, summary: str, at: datetime) -> dict[str, Any]:
    """A consultation taken on the hotline: an inbound call on the register, with its summary."""
    return _intake("ConsultationRecorded", {
        "consultation_id": consultation_id, "customer_id": customer_id, "consulted_at": at, "topic": "保养咨询",
        "channel": "hotline", "summary": summary, "handled_by": "agent-01", "region": "east",
    }, at)


def _erased(ids: list[str], erasure_id: str, at: datetime) -> dict[str, Any]:
    return _intake("CustomerErased", {"customer_id": ids[0], "erasure_id": erasure_id, "erased_at": at,
                                      "requested_by": "supervisor-01", "merged_customer_ids": ids[1:]}, at)


async def _file(p: Person, agent: httpx.AsyncClient, supervisor: httpx.AsyncClient) -> None:
    """Everything an agent and a supervisor record about the customer through the API."""
    visit = await queue_item(agent, "first_visit", vin=p.vin, timeout=60)
    recorded = await agent.post(f"/v1/followups/{visit['followup_id']}/attempts", json={
        "outcome": "reached", "satisfaction": 2, "requests": p.note, "notes": f"{p.name}说车门异响",
        "talking_points": f"回访地址 {p.address}", "categories": ["noise"],
        "complaint": {"category": "repair_quality", "description": f"{p.name}投诉维修质量，地址{p.address}"}})
    assert recorded.status_code == 201, recorded.text
    item = recorded.json()["feedback_item"]
    assert item is not None, "a score of 2 with a request opens a feedback item"
    solved = await supervisor.post(f"/v1/feedback-items/{item}/solution",
                                   json={"solution": f"{p.solution}（{p.name}）", "tell_by": "call"})
    assert solved.status_code == 200, solved.text
    inbound = await agent.post("/v1/inbound-calls", headers={"Idempotency-Key": f"call-{p.customer_id}"}, json={
        "customer_id": p.customer_id, "kind": "request", "summary": f"客户来电，新号码{p.phone}", "received_at": T0.isoformat()})
    assert inbound.status_code == 201, inbound.text
    owner = await supervisor.put(f"/v1/customers/{p.customer_id}/owner",
                                 json={"owner": "agent-02", "reason": f"{p.name}要求换一位业务员"})
    assert owner.status_code == 200, owner.text
    consultation = [f for f in (await supervisor.get("/v1/followups", params={"customer": p.customer_id})).json()["items"]
                    if f["kind"] == "first_visit" and f["status"] in ("scheduled", "due")]
    assert consultation, "the hotline consultation's first tracking call"
    assigned = await supervisor.post(f"/v1/followups/{consultation[0]['followup_id']}/assign",
                                     json={"agent": "agent-01", "reason": f"{p.name}只接受agent-01来电"})
    assert assigned.status_code == 200, assigned.text


async def _figures(supervisor: httpx.AsyncClient, since: datetime, until: datetime, week: str) -> dict[str, Any]:
    """The KPIs, the registers' counts and the weekly report's figures (the quoted words left out)."""
    period = {"from": since.isoformat(), "to": until.isoformat()}
    out: dict[str, Any] = {}
    for name, path in (("kpis", "/v1/kpis"), ("feedback", "/v1/feedback-items/figures"),
                       ("return_visits", "/v1/reports/return-visits")):
        response = await supervisor.get(path, params=period)
        assert response.status_code == 200, response.text
        out[name] = response.json()
    for name, path in (("calls", "/v1/register/calls"), ("letters", "/v1/register/letters")):
        response = await supervisor.get(path, params={"limit": 200})
        assert response.status_code == 200, response.text
        out[name] = sorted((r.get("call_id") or r.get("letter_id"), r.get("outcome"), r["customer_id"])
                           for r in response.json()["items"])
    followups = await supervisor.get("/v1/followups", params={"limit": 200})
    out["followups"] = sorted((f["followup_id"], f["status"], f["outcome"], f["satisfaction"])
                              for f in followups.json()["items"])
    report = await supervisor.get("/v1/reports/weekly", params={"week": week})
    assert report.status_code == 200, report.text
    figures = report.json()["figures"]
    for part in figures["voices"].values():
        part["items"] = [{k: v for k, v in i.items() if k not in ("requests", "answer")} for i in part["items"]]
    out["weekly"] = figures
    return out


async def _settled(conn: Any, at: datetime) -> None:
    """Every deadline due by `at` has fired (the figures do not move under the test)."""
    await eventually(lambda: conn.fetchval(
        """SELECT (SELECT count(*) FROM followups WHERE next_step_at <= $1)
                + (SELECT count(*) FROM feedback_items WHERE state = 'open' AND due_at <= $1)
                + (SELECT count(*) FROM vehicles WHERE remind_at <= $1)
                + (SELECT count(*) FROM customers WHERE lost_check_at <= $1) = 0""", at), what="the deadlines")


async def _processed(conn: Any, n: int) -> None:
    await eventually(lambda: conn.fetchval("SELECT count(*) >= $1 FROM inbox", n), what="follow-up's consumer")


async def test_an_erased_customer_leaves_nothing_personal_and_every_figure_stays(ns: Namespace) -> None:
    clock = manual_clock(T0)
    stack = await Stack(ns, clock, services=("followup",)).start()
    conn = await db(ns, "followup")
    try:
        filed = [_registered(p, T0 - timedelta(hours=1)) for p in (C, D)] + \
                [_picked_up(p, T0 - timedelta(days=4)) for p in (C, D)] + \
                [_consulted(p.customer_id, f"CONS-{p.customer_id}", f"地址{p.address}，问保养套餐",
                            T0 - timedelta(days=2)) for p in (C, D)] + \
                [_consulted(C_OLD, "CONS-OLD", f"旧号码{C.phone}来电问价", T0 - timedelta(days=3))]
        await publish(ns.settings, "aftersales.intake", filed)
        await _processed(conn, len(filed))
        service = stack["followup"]
        async with api(service, "agent") as agent, api(service, "supervisor") as supervisor:
            for p in (C, D):
                await _file(p, agent, supervisor)

            # the weekly report of the week (with the customers' words in its voices)
            report_at = next_weekly_report(clock.now(), FollowUpRules())
            clock.set(report_at)
            week = await eventually(lambda: conn.fetchval("SELECT week FROM weekly_reports"), what="the weekly report")
            await _settled(conn, report_at)
            voices = [i for part in (await supervisor.get("/v1/reports/weekly", params={"week": week})).json()[
                "figures"]["voices"].values() for i in part["items"]]
            assert {i["customer_id"]: i["requests"] for i in voices} == {C.customer_id: C.note, D.customer_id: D.note}

            for p in (C, D):  # each value is where the scan looks
                for kind, value in p.values().items():
                    assert await find_in_schema(conn, "followup", [value]), f"{p.customer_id}'s {kind} is filed"
            since, until = T0 - timedelta(days=30), report_at + timedelta(hours=1)
            before = await _figures(supervisor, since, until, week)

            # the erasure
            erased_at = clock.now()
            await publish(ns.settings, "aftersales.intake", [_erased([C.customer_id, C_OLD], "ER-1", erased_at)])
            await _processed(conn, len(filed) + 1)
            assert await find_in_schema(conn, "followup", C.values().values()) == []
            for kind, value in D.values().items():
                assert await find_in_schema(conn, "followup", [value]), f"D's {kind} must still be found"
            assert await _figures(supervisor, since, until, week) == before, "every figure stays"
            register = {r[0]: tuple(r) for r in await conn.fetch(
                "SELECT customer_id, erasure_id, erased_at FROM erased_customers ORDER BY 1")}
            assert set(register) == {C.customer_id, C_OLD} and register[C.customer_id][2] == erased_at

            # a second CustomerErased is harmless (the same figures, the same register row)
            await publish(ns.settings, "aftersales.intake", [_erased([C.customer_id, C_OLD], "ER-1", erased_at)])
            await _processed(conn, len(filed) + 2)
            assert await find_in_schema(conn, "followup", C.values().values()) == []
            assert await _figures(supervisor, since, until, week) == before
            assert [tuple(r) for r in await conn.fetch(
                "SELECT customer_id, erasure_id, erased_at FROM erased_customers ORDER BY 1")] == list(register.values())

            # the agents' queue and pages work for C's follow-ups (nothing personal shown)
            clock.set(report_at + timedelta(hours=2))  # Monday's calling hours
            queue = (await agent.get("/v1/queue", params={"limit": 200})).json()["items"]
            mine = [i for i in queue if i["customer_id"] == C.customer_id]
            assert mine, "C's open consultation call is still in the queue"
            assert (await agent.get(f"/v1/followups/{mine[0]['followup_id']}")).status_code == 200
            conversation = await agent.get(f"/v1/customers/{C.customer_id}/conversation")
            assert conversation.status_code == 200, conversation.text
            assert conversation.json()["contact_flags"] == {}
            calls = await agent.get(f"/v1/customers/{C.customer_id}/calls")
            assert calls.status_code == 200 and calls.json()["items"], calls.text
            assert {c["notes"] for c in calls.json()["items"]} == {None}
            register_calls = (await supervisor.get("/v1/register/calls", params={"customer": C.customer_id})).json()
            assert [r["summary"] for r in register_calls["items"] if r["direction"] == "inbound"] == [None, None]
            owner = (await supervisor.get(f"/v1/customers/{C.customer_id}/owner")).json()
            assert owner["owner"] == "agent-02" and [h["reason"] for h in owner["history"]][-1] == ""
            retried = await agent.post("/v1/inbound-calls", headers={"Idempotency-Key": f"call-{C.customer_id}"},
                                       json={"customer_id": C.customer_id, "kind": "request",
                                             "summary": f"客户来电，新号码{C.phone}", "received_at": T0.isoformat()})
            assert retried.status_code in (200, 201) and C.phone not in retried.text, retried.text


            # C's old events again (a replay: new event ids) and a late one: nothing of C comes back
            again = [_registered(C, T0 - timedelta(hours=1)), _consulted(C.customer_id, f"CONS-{C.customer_id}",
                                                                          f"地址{C.address}，问保养套餐",
                                                                          T0 - timedelta(days=2)),
                     _consulted(C.customer_id, "CONS-LATE", f"{C.name}迟到的咨询，电话{C.phone}", T0 - timedelta(days=1)),
                     _consulted(C_OLD, "CONS-OLD-2", f"旧号码{C.phone}又来电", T0 - timedelta(days=1))]
            await publish(ns.settings, "aftersales.intake", again)
            await _processed(conn, len(filed) + 2 + len(again))
            assert await conn.fetchval("SELECT count(*) FROM inbound_calls WHERE customer_id = ANY($1::text[]) "
                                       "AND summary IS NULL", [C.customer_id, C_OLD]) == 5, \
                "the late calls are on the register, without their words"
            assert await find_in_schema(conn, "followup", C.values().values()) == []

            # the customer came back after the erasure and gave data again: filed normally
            new_phone = "+8613600009999"
            back = [_registered(C, erased_at + timedelta(minutes=30), phone=new_phone),
                    _consulted(C.customer_id, "CONS-BACK", f"新地址{C.address}", erased_at + timedelta(minutes=40))]
            await publish(ns.settings, "aftersales.intake", back)
            await _processed(conn, len(filed) + 2 + len(again) + len(back))
            found = await find_in_schema(conn, "followup", [new_phone, C.address, C.email])
            assert {f.rsplit(": ", 1)[1] for f in found} == {new_phone, C.address, C.email}, found
    finally:
        await conn.close()
        await stack.stop()

