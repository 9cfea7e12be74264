"""Complaints on the working calendar, on the real stack with the clock moved by hand, on fixed
dates (the 2026 holiday schedule; no test moment involved):

- Friday 3 April 2026, 19:00: a fire (critical) and a rattle (medium) are filed by phone just
  before the Qingming holiday (4–6 April). The critical case climbs the ladder through the night
  by the severity table (supervisor 20:00, department head 23:00, superior leader 00:00); the
  medium one waits: nothing over the holiday, the supervisor on Tuesday 13:30 (four business
  hours from 08:30, lunch excluded). Both openings are mailed to the department's handler and
  the department, the critical one to the superior leader at once.
- A department person (console token with the department claim) sees and works only the cases
  routed to the department.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.complaints.config import SlaTable
from services.console.tokens import person_token, signing_key
from services.notifier.config import NotifierSettings
from shared.clock import Clock
from tests.complaints_fixtures import complaints_state
from tests.console_support import console_namespace
from tests.support import Namespace, Stack, TopicReader, api, count, drop_namespace, manual_clock
from tools.peers import MailSink, PeerStore

pytestmark = [pytest.mark.infra]

SH = ZoneInfo("Asia/Shanghai")
COMPLAINTS = "aftersales.complaints"


def at(m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, m, d, hh, mm, tzinfo=SH)


FRIDAY_EVENING = at(4, 3, 19)  # the eve of Qingming (4–6 April off)


@dataclass
class Mailbox:
    store: PeerStore
    port: int


@pytest.fixture
async def mail() -> AsyncIterator[Mailbox]:
    store = PeerStore()
    sink = MailSink(store).start()
    try:
        yield Mailbox(store, sink.port)
    finally:
        sink.stop()


async def _stack(ns: Namespace, clock: Clock, documents: Path, mail: Mailbox | None = None) -> Stack:
    state = complaints_state(documents, sla=SlaTable())  # the shipped severity table, on the working calendar
    services: tuple[str, ...] = ("complaints",)
    if mail is not None:
        services += ("notifier",)
        state["notifier"] = {"settings": NotifierSettings(
            smtp_host="127.0.0.1", smtp_port=mail.port, dispatch_tick_seconds=0.05)}
    return await Stack(ns, clock, services=services, state=state).start()


def _escalations(topic: TopicReader, complaint_id: str) -> list[tuple[str, datetime]]:
    return [(r.data["role"], datetime.fromisoformat(r.data["deadline"]))
            for r in topic.of_type("ComplaintEscalated") if r.data["complaint_id"] == complaint_id]


async def test_a_critical_complaint_on_the_eve_of_a_holiday_climbs_in_hours_an_ordinary_one_waits_for_tuesday(
    ns: Namespace, tmp_path: Path, mail: Mailbox,
) -> None:
    clock = manual_clock(FRIDAY_EVENING)
    stack = await _stack(ns, clock, tmp_path / "documents", mail)
    try:
        async with api(stack["complaints"], "agent") as agent:
            fire = await agent.post("/v1/complaints", json={
                "complaint_ref": "CRM-FIRE", "customer_id": "CUST-1", "channel": "hotline", "severity": "critical",
                "category": "product_quality", "description": "车辆行驶中电机舱起火，驾驶员手部烧伤"})
            rattle = await agent.post("/v1/complaints", json={
                "complaint_ref": "CRM-RATTLE", "customer_id": "CUST-2", "channel": "hotline", "severity": "medium",
                "category": "repair_quality", "description": "修理后底盘仍有异响"})
        assert fire.status_code == rattle.status_code == 201, (fire.text, rattle.text)
        fire_id, rattle_id = fire.json()["complaint_id"], rattle.json()["complaint_id"]
        assert datetime.fromisoformat(fire.json()["sla"]["ack_due_at"]) == at(4, 3, 20)
        assert datetime.fromisoformat(rattle.json()["sla"]["ack_due_at"]) == at(4, 7, 13, 30)

        # Through the night: the critical case reaches the superior leader at midnight.
        clock.set(at(4, 4, 0, 1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 3), timeout=60, settle=1.0)
        assert _escalations(topic, fire_id) == [
            ("supervisor", at(4, 3, 20)), ("department_head", at(4, 3, 23)), ("superior_leader", at(4, 4, 0)),
        ]
        assert _escalations(topic, rattle_id) == []

        # The holiday and the nights stand still for the ordinary case; Tuesday morning too.
        clock.set(at(4, 7, 13, 29))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 3), timeout=30, settle=2.0)
        assert _escalations(topic, rattle_id) == []
        clock.set(at(4, 7, 13, 31))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 4), timeout=60, settle=1.0)
        [(role, deadline)] = _escalations(topic, rattle_id)
        assert (role, deadline) == ("supervisor", at(4, 7, 13, 30))
        [escalated] = [r.data for r in topic.of_type("ComplaintEscalated") if r.data["complaint_id"] == rattle_id]
        assert datetime.fromisoformat(escalated["next_deadline"]) == at(4, 8, 17, 30)  # two working days

        # Who heard of the openings, in writing.
        opened = {r.data["complaint_ref"]: r.data for r in topic.of_type("ComplaintOpened")}
        assert opened["CRM-FIRE"]["handler"] == "qi-handler-01"
        assert opened["CRM-RATTLE"]["handler"] == "as-handler-01"
        expected = {
            ("CRM-FIRE", "qi-handler-01@aftersales.example"), ("CRM-FIRE", "qi-head-01@aftersales.example"),
            ("CRM-FIRE", "aftersales-director-01@aftersales.example"),
            ("CRM-RATTLE", "as-handler-01@aftersales.example"), ("CRM-RATTLE", "as-head-01@aftersales.example"),
        }

        def received() -> set[tuple[str, str]]:
            return {(ref, to) for m in mail.store.mails if m.subject.startswith("【新投诉】")
                    for ref in ("CRM-FIRE", "CRM-RATTLE") if ref in m.subject for to in m.rcpt_to}

        for _ in range(200):
            if expected <= received():
                break
            await asyncio.sleep(0.1)
        assert expected <= received(), received()
        assert ("CRM-RATTLE", "aftersales-director-01@aftersales.example") not in received()
    finally:
        await stack.stop()


async def test_a_department_person_sees_and_works_only_the_cases_routed_to_the_department(tmp_path: Path) -> None:
    ns = await console_namespace()
    clock = manual_clock(FRIDAY_EVENING)
    stack = await _stack(ns, clock, tmp_path / "documents")
    try:
        key = signing_key(ns.settings.console_signing_key.get_secret_value())

        def person(name: str, department: str | None) -> dict[str, str]:
            token = person_token(key, name, "department", 5, department=department)
            return {"Authorization": f"Bearer {token}"}

        quality, sales = person("gao.feng", "quality_inspection"), person("liang.wei", "sales")
        async with api(stack["complaints"], "agent") as agent:
            motor = (await agent.post("/v1/complaints", json={
                "complaint_ref": "CRM-Q", "customer_id": "CUST-1", "category": "product_quality",
                "description": "电机异响"})).json()
            price = (await agent.post("/v1/complaints", json={
                "complaint_ref": "CRM-P", "customer_id": "CUST-2", "category": "price",
                "description": "保养收费过高"})).json()
        assert (motor["department"], price["department"]) == ("quality_inspection", "sales")

        async with api(stack["complaints"]) as client:
            listed = (await client.get("/v1/complaints", headers=quality)).json()
            assert [c["complaint_ref"] for c in listed["items"]] == ["CRM-Q"]
            other = await client.get("/v1/complaints", params={"department": "sales"}, headers=quality)
            assert other.status_code == 403 and "quality_inspection only" in other.json()["detail"]
            assert (await client.get(f"/v1/complaints/{price['complaint_id']}", headers=quality)).status_code == 404
            refused = await client.post(f"/v1/complaints/{price['complaint_id']}/acknowledge", headers=quality)
            assert refused.status_code == 404
            worked = await client.post(f"/v1/complaints/{motor['complaint_id']}/acknowledge", headers=quality)
            assert worked.status_code == 200 and worked.json()["state"] == "acknowledged"
            assert worked.json()["timeline"][-1]["actor"] == "gao.feng"
            mine = await client.post(f"/v1/complaints/{price['complaint_id']}/acknowledge", headers=sales)
            assert mine.status_code == 200
            unnamed = await client.get("/v1/complaints", headers=person("x", None))
            assert unnamed.status_code == 401 and "must name the department" in unnamed.json()["detail"]
    finally:
        await stack.stop()
        await drop_namespace(ns)
