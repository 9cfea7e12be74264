"""A complaint end to end on the real broker and database, with a controlled clock: raised in
a dissatisfied return-visit call (ComplaintFiled on aftersales.followup) → case opened → not
acknowledged in 4 h → supervisor → not resolved in 2 days → department head → resolved over
the API → the follow-up's confirmation call → closed; or, still unhappy, reopened with the
clocks restarted."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.complaints_fixtures import complaint_filed, complaints_stack, confirmation_completed
from tests.support import Namespace, Stack, TopicReader, api, count, in_test_week, iso_week, manual_clock, publish

pytestmark = [pytest.mark.infra, pytest.mark.dates]

# Filed on Friday 10:00 of the test moment's week: the case's three days and a half cross the
# Monday 08:00 weekly report, which covers the filing's week.
T0 = in_test_week(4, 10)
COMPLAINTS = "aftersales.complaints"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _escalated_twice_then_resolved(ns: Namespace, stack: Stack, clock, ref: str) -> tuple[str, dict]:
    """The shared first half: filed from a call, escalated to the supervisor at 4 h and to the
    department head at 2 days, then resolved. Returns the complaint id and the filing."""
    # The return-visit call as the follow-up service publishes it: the call completed, the
    # customer unhappy (not ours to handle), and the complaint it raised, caused by the call.
    call = confirmation_completed("-", T0, satisfied=False, satisfaction=2, followup_id="FU-2041")
    call["data"].update(kind="first_visit", complaint_id=None)
    filed = complaint_filed(ref, T0, description="After the repair the car still makes a noise when braking",
                            followup_id="FU-2041")
    filed.update(causation_id=call["event_id"], correlation_id=call["correlation_id"])
    await publish(ns.settings, "aftersales.followup", [call, filed])
    async with TopicReader(ns.settings, COMPLAINTS) as topic:
        await topic.wait_for(count("ComplaintOpened", 1), timeout=60)
    opened = topic.of_type("ComplaintOpened")[0].data
    complaint_id = opened["complaint_id"]
    assert opened["complaint_ref"] == ref and opened["followup_id"] == "FU-2041"
    assert opened["category"] == "repair_quality" and opened["department"] == "after_sales_service"
    assert at(opened["ack_due_at"]) == T0 + timedelta(hours=4)
    assert at(opened["resolve_due_at"]) == T0 + timedelta(days=2)

    # Nobody acknowledges within 4 hours: the supervisor is told, once.
    clock.set(T0 + timedelta(hours=3, minutes=59))
    clock.set(T0 + timedelta(hours=4, minutes=1))
    async with TopicReader(ns.settings, COMPLAINTS) as topic:
        await topic.wait_for(count("ComplaintEscalated", 1), timeout=30, settle=1.0)
    [first] = [r.data for r in topic.of_type("ComplaintEscalated")]
    assert (first["level"], first["level_name"], first["role"], first["person"]) == (
        1, "supervisor", "supervisor", "as-supervisor-01")
    assert first["breach"] == "acknowledge" and at(first["deadline"]) == T0 + timedelta(hours=4)
    assert at(first["next_deadline"]) == T0 + timedelta(days=2)

    async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "supervisor") as supervisor:
        assert (await agent.post(f"/v1/complaints/{complaint_id}/acknowledge")).status_code == 200
        assigned = await supervisor.post(f"/v1/complaints/{complaint_id}/assign", json={"assignee": "agent-01"})
        assert assigned.status_code == 200, assigned.text
        # Still unresolved after 2 days: the department head is told.
        clock.set(T0 + timedelta(days=2, minutes=1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 2), timeout=30, settle=1.0)
        second = topic.of_type("ComplaintEscalated")[1].data
        assert (second["level"], second["role"], second["person"], second["breach"]) == (
            2, "department_head", "as-head-01", "resolve")
        assert at(second["deadline"]) == T0 + timedelta(days=2)
        assert at(second["next_deadline"]) == T0 + timedelta(days=3)

        resolved = await agent.post(f"/v1/complaints/{complaint_id}/resolve", json={
            "resolution": "Brake caliper replaced under warranty; test drive with the customer, no noise."})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["state"] == "resolved"

    # Resolution cancels what was pending: past the superior leader's deadline nothing comes.
    clock.set(T0 + timedelta(days=3, hours=1))
    async with TopicReader(ns.settings, COMPLAINTS) as topic:
        await topic.wait_for(count("ComplaintResolved", 1), timeout=30, settle=1.5)
    assert len(topic.of_type("ComplaintEscalated")) == 2
    return complaint_id, filed


def _of_case(records: list, complaint_id: str) -> list:
    return [r for r in records if r.record.key == complaint_id.encode()]


def _assert_one_chain(records: list, filed: dict) -> None:
    """Every event on aftersales.complaints names its cause and carries the filing's correlation."""
    assert records
    for r in records:
        assert r.envelope is not None and r.envelope.causation_id is not None, r.event_type
        assert str(r.envelope.correlation_id) == filed["correlation_id"], r.event_type


async def test_a_dissatisfied_call_is_escalated_twice_resolved_and_closed_once_the_customer_confirms(
    ns: Namespace, tmp_path: Path,
) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(ns, clock, tmp_path / "documents")
    try:
        complaint_id, filed = await _escalated_twice_then_resolved(ns, stack, clock, "CRM-E2E-1")
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintResolved", 1), timeout=30)
        resolved = topic.of_type("ComplaintResolved")[0]

        confirmed_at = T0 + timedelta(days=3, hours=2)
        clock.set(confirmed_at)
        await publish(ns.settings, "aftersales.followup", [
            confirmation_completed(complaint_id, confirmed_at, satisfied=True, satisfaction=5, caused_by=resolved)])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintClosed", 1), timeout=30, settle=1.0)
        closed = topic.of_type("ComplaintClosed")[0].data
        assert closed["satisfied"] is True and closed["confirmation"] == "confirmed"
        assert at(closed["at"]) == confirmed_at
        case_events = _of_case(topic.records, complaint_id)
        assert [r.event_type for r in case_events] == [
            "ComplaintOpened", "ComplaintEscalated", "ComplaintAcknowledged", "ComplaintAssigned",
            "ComplaintEscalated", "ComplaintResolved", "ComplaintClosed",
        ]
        _assert_one_chain(case_events, filed)
        # The clock crossed Monday 08:00 Shanghai: the weekly report for the week before went out.
        [report] = [r.data for r in topic.of_type("ComplaintWeeklyReport")]
        assert report["week"] == iso_week(T0) and report["figures"]["totals"]["filed"] == 1

        async with api(stack["complaints"], "ops") as ops:
            case = (await ops.get(f"/v1/complaints/{complaint_id}")).json()
            assert case["state"] == "closed" and case["satisfied"] is True
            assert case["sla"]["ack_breached"] and case["sla"]["resolve_breached"]
            assert [e["level"] for e in case["escalations"]] == [1, 2]
            kinds = [f["kind"] for f in case["timeline"]]
            assert kinds[0] == "filed" and "confirmation" in kinds and kinds.count("escalated") == 2
            # The complaint form is filed with the handling documents.
            [form] = case["documents"]
            assert form["kind"] == "complaint_form" and form["filed_at"] is not None
            # ops sees that it is filed, not what it says (docs/security.md, least privilege); the staff read it
            masked = (await ops.get(f"/v1/complaints/{complaint_id}/documents/{form['document_id']}")).json()
            assert masked["content"] == "***" and masked["kind"] == "complaint_form"
        async with api(stack["complaints"], "supervisor") as supervisor:
            document = (await supervisor.get(f"/v1/complaints/{complaint_id}/documents/{form['document_id']}")).json()
            assert "CRM-E2E-1" in document["content"] and "Brake caliper replaced" in document["content"]
            assert (tmp_path / "documents" / complaint_id).is_dir()
    finally:
        await stack.stop()


async def test_a_customer_still_unhappy_at_the_confirmation_call_reopens_the_case_with_the_clocks_restarted(
    ns: Namespace, tmp_path: Path,
) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(ns, clock, tmp_path / "documents")
    try:
        complaint_id, filed = await _escalated_twice_then_resolved(ns, stack, clock, "CRM-E2E-2")
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintResolved", 1), timeout=30)
        resolved = topic.of_type("ComplaintResolved")[0]

        called_at = T0 + timedelta(days=4)
        clock.set(called_at)
        await publish(ns.settings, "aftersales.followup", [
            confirmation_completed(complaint_id, called_at, satisfied=False, satisfaction=2, caused_by=resolved)])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintReopened", 1), timeout=30, settle=1.0)
        reopened = topic.of_type("ComplaintReopened")[0].data
        assert reopened["round"] == 1
        assert at(reopened["ack_due_at"]) == called_at + timedelta(hours=4)
        assert at(reopened["resolve_due_at"]) == called_at + timedelta(days=2)
        assert not topic.of_type("ComplaintClosed")

        # The restarted clock escalates again from the bottom of the ladder.
        clock.set(called_at + timedelta(hours=4, minutes=1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 3), timeout=30, settle=1.0)
        again = topic.of_type("ComplaintEscalated")[2].data
        assert (again["round"], again["level"], again["breach"]) == (1, 1, "acknowledge")
        assert at(again["deadline"]) == called_at + timedelta(hours=4)
        _assert_one_chain(_of_case(topic.records, complaint_id), filed)

        async with api(stack["complaints"], "supervisor") as supervisor:
            case = (await supervisor.get(f"/v1/complaints/{complaint_id}")).json()
            assert case["state"] == "reopened" and case["sla"]["round"] == 1 and case["sla"]["level"] == 1
            assert [r["round"] for r in case["sla"]["rounds"]] == [0, 1]
            kpis = (await supervisor.get("/v1/kpis")).json()
            assert kpis["reopen_rate"] == 1.0 and kpis["open_by_level"]["supervisor"] == 1
    finally:
        await stack.stop()
