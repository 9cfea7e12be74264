"""The complaints service on the real broker and database: cases from ComplaintFiled, one case
per complaint_ref, defect reports to quality, the HTTP API (auth, 409s, documents, lists),
late and back-dated events, dead letters, KPIs and the weekly report."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services import load
from services.complaints.domain import complaint_id_for
from shared.runtime import ServiceRuntime
from tests.complaints_fixtures import complaint_filed, complaints_stack, complaints_state, confirmation_completed
from tests.support import (
    TEST_NOW,
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    db,
    in_test_week,
    iso_week,
    manual_clock,
    publish,
)

pytestmark = [pytest.mark.infra, pytest.mark.dates]

T0 = TEST_NOW  # the filing; the SLA's moments are offsets from it
H, D = timedelta(hours=1), timedelta(days=1)
COMPLAINTS = "aftersales.complaints"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)

async def _until_value(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Read until the value is what we wait for (work a consumer does in the background)."""
    deadline = time.monotonic() + timeout
    while not done(value := await read()):
        assert time.monotonic() < deadline, f"still {value!r}"
        await asyncio.sleep(0.1)
    return value


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for something refreshed in the background (the KPI gauges)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.1)


async def test_one_case_per_complaint_ref_whichever_channel_files_it_and_a_part_defect_goes_to_quality(
    ns: Namespace, tmp_path: Path,
) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(ns, clock, tmp_path)
    try:
        from_intake = complaint_filed("CRM-100", T0, source="intake", followup_id=None, channel="hotline",
                                      description="电机异响，车子开起来抖动", vin="LJ1EEAUU5N0123456")
        from_call = complaint_filed("CRM-100", T0 + H, source="followup", description="电机异响")
        await publish(ns.settings, "aftersales.intake", [from_intake, from_intake])  # a redelivery too
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("PartDefectReported", 1), timeout=60)
        await publish(ns.settings, "aftersales.followup", [from_call])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("PartDefectReported", 1), timeout=60, settle=2.0)
        assert sorted(r.event_type for r in topic.records) == ["ComplaintOpened", "PartDefectReported"]
        [opened], [defect] = topic.of_type("ComplaintOpened"), topic.of_type("PartDefectReported")
        assert opened.record.key.decode() == complaint_id_for("CRM-100")
        assert (opened.data["category"], opened.data["severity"], opened.data["department"]) == (
            "product_quality", "medium", "quality_inspection")
        assert defect.record.key.decode() == "LJ1EEAUU5N0123456"
        assert (defect.data["category"], defect.data["failure_mode"], defect.data["batch"]) == (
            "motor", "abnormal_noise", None)
        assert str(defect.envelope.causation_id) == from_intake["event_id"]

        conn = await db(ns, "complaints")
        try:
            assert await conn.fetchval("SELECT count(*) FROM cases") == 1
            kinds = await _until_value(
                lambda: conn.fetch("SELECT kind FROM case_history ORDER BY seq"), lambda rows: len(rows) == 2)
            assert [r["kind"] for r in kinds] == ["filed", "note"]  # the call's later filing: the same case
            assert await conn.fetchval("SELECT followup_id FROM cases") == "FU-1"  # learned from the call
        finally:
            await conn.close()
    finally:
        await stack.stop()


async def test_the_api_needs_a_token_and_the_right_role(ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(ns, manual_clock(T0), tmp_path)
    runtime = stack["complaints"]
    try:
        body = {"customer_id": "CUST-1", "description": "态度差"}
        async with api(runtime) as anonymous:
            for method, path in (("GET", "/v1/complaints"), ("POST", "/v1/complaints"), ("GET", "/v1/kpis"),
                                 ("POST", "/v1/complaints/x/acknowledge"), ("POST", "/v1/complaints/x/close")):
                response = await anonymous.request(method, path, json=body)
                assert response.status_code == 401, (method, path)
                assert "bearer token" in response.json()["detail"]
        async with api(runtime, "ops") as ops, api(runtime, "quality") as quality, \
                api(runtime, "producer") as producer, api(runtime, "agent") as agent:
            assert (await ops.get("/v1/complaints", params={"open": "true"})).status_code == 200  # ops may read
            assert (await ops.get("/v1/kpis")).status_code == 200
            denied = await ops.post("/v1/complaints", json=body)
            assert denied.status_code == 403 and "agent, supervisor" in denied.json()["detail"]
            assert (await quality.get("/v1/complaints", params={"open": "true"})).status_code == 403
            assert (await producer.post("/v1/complaints/x/resolve", json={"resolution": "x"})).status_code == 403
            created = (await agent.post("/v1/complaints", json=body)).json()
            # Closing without the confirmation call and reopening are the supervisor's.
            only_supervisor = await agent.post(f"/v1/complaints/{created['complaint_id']}/close", json={})
            assert only_supervisor.status_code == 403 and "supervisor" in only_supervisor.json()["detail"]
            assert (await agent.post(f"/v1/complaints/{created['complaint_id']}/reopen",
                                     json={"reason": "x"})).status_code == 403
    finally:
        await stack.stop()


async def test_an_illegal_step_is_refused_with_409_naming_the_allowed_ones(ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(ns, manual_clock(T0), tmp_path)
    try:
        async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "supervisor") as supervisor:
            case = (await agent.post("/v1/complaints", json={"customer_id": "CUST-1", "description": "等配件"})).json()
            cid = case["complaint_id"]
            refused = await agent.post(f"/v1/complaints/{cid}/resolve", json={"resolution": "done"})
            assert refused.status_code == 409
            assert refused.headers["content-type"] == "application/problem+json"
            assert "cannot resolve a case that is opened; from opened the allowed action is: acknowledge" \
                == refused.json()["detail"]
            assert (await agent.post(f"/v1/complaints/{cid}/acknowledge")).status_code == 200
            again = await agent.post(f"/v1/complaints/{cid}/acknowledge")
            assert again.status_code == 409 and again.json()["detail"].endswith("the allowed action is: assign")
            closing = await supervisor.post(f"/v1/complaints/{cid}/close", json={})
            assert closing.status_code == 409 and "allowed action is: assign" in closing.json()["detail"]
            # Words that are required, and cases that do not exist.
            assert (await agent.post(f"/v1/complaints/{cid}/assign", json={})).status_code == 422
            assert (await agent.post(f"/v1/complaints/{cid}/assign", json={"assignee": "agent-02"})).status_code == 200
            blank = await agent.post(f"/v1/complaints/{cid}/resolve", json={"resolution": "   "})
            assert blank.status_code == 422
            missing = await agent.post("/v1/complaints/nope/acknowledge")
            assert missing.status_code == 404 and "GET /v1/complaints" in missing.json()["detail"]
            ahead = await agent.post(f"/v1/complaints/{cid}/pend", json={
                "reason": "photos", "at": (T0 + D).isoformat()})
            assert ahead.status_code == 422 and "in the future" in ahead.json()["detail"]
    finally:
        await stack.stop()


async def test_handlers_file_work_and_document_a_case_over_http(ns: Namespace, tmp_path: Path) -> None:
    clock = manual_clock(T0)
    documents = tmp_path / "documents"
    stack = await complaints_stack(ns, clock, documents, max_document_bytes=2048)
    try:
        async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "ops") as ops:
            first = await agent.post("/v1/complaints", json={
                "complaint_ref": "WEB-1", "customer_id": "CUST-9", "channel": "web",
                "description": "The rear axle is leaking oil", "vin": "LJ1EEAUU5N0123456"})
            assert first.status_code == 201
            case = first.json()
            cid = case["complaint_id"]
            assert (case["category"], case["part_category"], case["state"]) == ("product_quality", "rear_axle", "opened")
            assert at(case["sla"]["ack_due_at"]) == T0 + 4 * H
            same = await agent.post("/v1/complaints", json={
                "complaint_ref": "WEB-1", "customer_id": "CUST-9", "description": "again"})
            assert same.status_code == 200 and same.json()["complaint_id"] == cid

            for i in range(3):
                assert (await agent.post("/v1/complaints", json={
                    "customer_id": f"CUST-{i}", "description": "服务态度差", "complaint_ref": f"WEB-S{i}"})).status_code == 201

            clock.set(T0 + H)
            assert (await agent.post(f"/v1/complaints/{cid}/acknowledge")).status_code == 200
            assert (await agent.post(f"/v1/complaints/{cid}/assign", json={"assignee": "agent-01"})).status_code == 200
            assert (await agent.post(f"/v1/complaints/{cid}/comments", json={"text": "called the dealer"})).status_code == 200
            clock.set(T0 + 2 * H)
            assert (await agent.post(f"/v1/complaints/{cid}/pend", json={"reason": "waiting for photos"})).status_code == 200
            clock.set(T0 + 12 * H)
            resumed = (await agent.post(f"/v1/complaints/{cid}/resume")).json()
            assert at(resumed["sla"]["resolve_due_at"]) == T0 + 2 * D + 10 * H  # ten paused hours do not count

            # A document: text stored under the configured directory, at a path the service chose.
            attached = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "Dealer inspection", "kind": "inspection_report", "filename": "../../../etc/passwd",
                "content": "Oil seal of the rear axle worn; replaced."})
            assert attached.status_code == 201
            doc = attached.json()
            assert doc["filename"] == "../../../etc/passwd" and doc["size_bytes"] == 41
            [stored] = list(documents.rglob("*.txt"))
            assert stored == documents / cid / f"{doc['document_id']}.txt"
            assert stored.read_text() == "Oil seal of the rear axle worn; replaced."
            fetched = (await agent.get(f"/v1/complaints/{cid}/documents/{doc['document_id']}")).json()
            assert fetched["content"] == "Oil seal of the rear axle worn; replaced."
            # ops reads the case's metadata, never what a person wrote (docs/security.md, least privilege)
            masked = (await ops.get(f"/v1/complaints/{cid}/documents/{doc['document_id']}")).json()
            assert masked["content"] == "***" and masked["document_id"] == doc["document_id"]
            too_big = await agent.post(f"/v1/complaints/{cid}/documents", json={"title": "big", "content": "x" * 3000})
            assert too_big.status_code == 413 and "limit is 2048" in too_big.json()["detail"]
            assert (await ops.get(f"/v1/complaints/{cid}/documents/not-a-doc")).status_code == 404

            view = (await ops.get(f"/v1/complaints/{cid}")).json()
            assert [f["kind"] for f in view["timeline"]] == [
                "filed", "note", "acknowledged", "assigned", "comment", "pended", "resumed", "document"]
            assert view["sla"]["rounds"][0]["paused_seconds"] == 36000.0

            # A photo: bytes sent as base64, checked against the declared type, stored with their
            # checksum and given back as they were.
            png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
            photo = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "Photo of the seal", "kind": "photo", "filename": "seal.png", "content_type": "image/png",
                "content_base64": base64.b64encode(png).decode()})
            assert photo.status_code == 201, photo.text
            pic = photo.json()
            assert (pic["size_bytes"], pic["sha256"], pic["content_type"]) == (
                len(png), hashlib.sha256(png).hexdigest(), "image/png")
            assert (documents / cid / f"{pic['document_id']}.png").read_bytes() == png
            described = (await ops.get(f"/v1/complaints/{cid}/documents/{pic['document_id']}")).json()
            assert described["content"] is None and described["content_url"].endswith("/content")
            refused = await ops.get(f"/v1/complaints/{cid}/documents/{pic['document_id']}/content")
            assert refused.status_code == 403 and "sees no personal data" in refused.json()["detail"]
            raw = await agent.get(f"/v1/complaints/{cid}/documents/{pic['document_id']}/content")
            assert (raw.status_code, raw.content, raw.headers["content-type"], raw.headers["x-content-sha256"]) == (
                200, png, "image/png", pic["sha256"])
            # A script called a JPEG, a photo sent as text, bad base64, a file over the limit: refused, nothing kept.
            script = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
            faked = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "x", "content_type": "image/jpeg", "content_base64": script})
            assert faked.status_code == 415 and "not image/jpeg" in faked.json()["detail"]
            as_text = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "x", "content_type": "image/png", "content": "not a picture"})
            assert as_text.status_code == 422 and "content_base64" in as_text.json()["detail"]
            garbled = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "x", "content_type": "image/png", "content_base64": "%%%"})
            assert garbled.status_code == 422 and "not valid base64" in garbled.json()["detail"]
            huge = await agent.post(f"/v1/complaints/{cid}/documents", json={
                "title": "x", "content_type": "application/pdf",
                "content_base64": base64.b64encode(b"%PDF-1.7" + b"0" * 3000).decode()})
            assert huge.status_code == 413
            assert len((await ops.get(f"/v1/complaints/{cid}")).json()["documents"]) == 2
            # A document changed on disk after it was stored is not served as if it were the original.
            (documents / cid / f"{pic['document_id']}.png").write_bytes(png + b"tampered")
            changed = await ops.get(f"/v1/complaints/{cid}/documents/{pic['document_id']}/content")
            assert changed.status_code == 500 and "does not match its sha256" in changed.json()["detail"]

            # Lists: filters and pages.
            clock.set(T0 + 5 * H)  # the three unacknowledged cases breach their 4 h; the first does not
            async with TopicReader(ns.settings, COMPLAINTS) as topic:
                await topic.wait_for(count("ComplaintEscalated", 3), timeout=30)
            listed = (await ops.get("/v1/complaints", params={"breached": "true"})).json()
            assert len(listed["items"]) == 3 and {i["level"] for i in listed["items"]} == {1}
            assert (await ops.get("/v1/complaints", params={"state": "pending_customer"})).json()["items"] == []
            assert (await ops.get("/v1/complaints", params={"state": "assigned"})).json()["items"][0]["complaint_id"] == cid
            assert len((await ops.get("/v1/complaints", params={"department": "customer_service", "level": 1})).json()[
                "items"]) == 3
            page = (await ops.get("/v1/complaints", params={"open": "true", "limit": 3})).json()
            assert len(page["items"]) == 3 and page["limit"] == 3 and page["next_cursor"]
            last = (await ops.get("/v1/complaints", params={"open": "true", "limit": 3,
                                                            "cursor": page["next_cursor"]})).json()
            assert len(last["items"]) == 1 and last["next_cursor"] is None
            assert (await ops.get("/v1/complaints", params={"open": "true", "limit": 1000})).status_code == 422
            # The whole list is not read at once: without a filter, 422 naming them.
            unfiltered = await ops.get("/v1/complaints")
            assert unfiltered.status_code == 422 and "name a filter" in unfiltered.json()["detail"]
            # The worklist's order: the nearest SLA deadline first; text, VIN and filing-date filters.
            by_deadline = (await ops.get("/v1/complaints", params={"open": "true", "sort": "deadline"})).json()["items"]
            dues = [at(i["due_at"]) for i in by_deadline]
            assert dues == sorted(dues)  # the three unacknowledged (their missed acknowledgement) first
            assert by_deadline[-1]["complaint_id"] == cid and dues[-1] == at(resumed["sla"]["resolve_due_at"])
            assert [i["complaint_id"] for i in (await ops.get("/v1/complaints", params={"q": "AXLE"})).json()[
                "items"]] == [cid]
            assert len((await ops.get("/v1/complaints", params={"vin": ["LJ1EEAUU5N0123456", "X"]})).json()[
                "items"]) == 1
            assert (await ops.get("/v1/complaints", params={"filed_from": (T0 + H).isoformat()})).json()["items"] == []
            assert len((await ops.get("/v1/complaints", params={"filed_before": (T0 + H).isoformat()})).json()[
                "items"]) == 4
            assert (await ops.get("/v1/complaints", params={"open": "true", "sort": "oldest"})).status_code == 422
            assert (await ops.get("/v1/complaints", params={"state": "lost"})).status_code == 422
    finally:
        await stack.stop()


def _figures(case: dict) -> dict:
    sla = case["sla"]
    return {k: sla[k] for k in ("ack_due_at", "resolve_due_at", "level", "ack_breached", "resolve_breached",
                                "escalation_schedule")} | {
        "breaches": sla["breaches"], "rounds": [{k: v for k, v in r.items()} for r in sla["rounds"]]}


async def test_an_acknowledgement_back_dated_before_the_deadline_and_recorded_after_it_gives_the_in_order_figures(
    ns: Namespace, tmp_path: Path,
) -> None:
    """Case A is acknowledged at 3 h as it happens. Case B's acknowledgement, also at 3 h, is
    recorded at 5 h while no timer was running (the replica that runs them was behind). When
    the timers run, B is not escalated, and both cases show the same deadlines and breaches.
    Case C, never acknowledged, proves the timers did run."""
    clock = manual_clock(T0)
    # This replica consumes and publishes but runs no timers (the one that does is behind).
    stack = await Stack(ns, clock, services=("complaints",), state=complaints_state(tmp_path)).start(timers=False)
    late_timers: ServiceRuntime | None = None
    try:
        await publish(ns.settings, "aftersales.intake", [
            complaint_filed(ref, T0, source="intake", followup_id=None, channel="hotline", description="态度差")
            for ref in ("LATE-A", "LATE-B", "LATE-C")])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintOpened", 3), timeout=60)
        a, b, c = (complaint_id_for(r) for r in ("LATE-A", "LATE-B", "LATE-C"))
        async with api(stack["complaints"], "agent") as agent:
            clock.set(T0 + 3 * H)
            assert (await agent.post(f"/v1/complaints/{a}/acknowledge")).status_code == 200
            clock.set(T0 + 5 * H)  # past the 4 h deadline on the wall clock
            back_dated = await agent.post(f"/v1/complaints/{b}/acknowledge", json={"at": (T0 + 3 * H).isoformat()})
            assert back_dated.status_code == 200

            late_timers = ServiceRuntime(load("complaints"), ns.settings, clock, replica="late-timers",
                                         overrides=complaints_state(tmp_path)["complaints"])
            await late_timers.start(consume=False, relay=False)
            async with TopicReader(ns.settings, COMPLAINTS) as topic:
                await topic.wait_for(count("ComplaintEscalated", 1), timeout=30, settle=2.0)
            assert [r.record.key.decode() for r in topic.of_type("ComplaintEscalated")] == [c]

            case_a = (await agent.get(f"/v1/complaints/{a}")).json()
            case_b = (await agent.get(f"/v1/complaints/{b}")).json()
        assert _figures(case_a) == _figures(case_b)
        assert not case_b["sla"]["ack_breached"] and case_b["sla"]["breaches"] == []
        assert at(case_b["sla"]["ack_due_at"]) == T0 + 4 * H
        [ack] = [f for f in case_b["timeline"] if f["kind"] == "acknowledged"]
        assert at(ack["at"]) == T0 + 3 * H and at(ack["recorded_at"]) == T0 + 5 * H
    finally:
        if late_timers is not None:
            await late_timers.stop()
        await stack.stop()


async def test_a_complaint_delivered_days_after_it_was_filed_escalates_at_once_as_it_would_have_in_order(
    ns: Namespace, tmp_path: Path,
) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(ns, clock, tmp_path)
    try:
        filed_at = T0 - 3 * D - H  # a letter, entered today
        await publish(ns.settings, "aftersales.intake", [complaint_filed(
            "LETTER-1", filed_at, source="intake", followup_id=None, channel="letter", description="收费太贵")])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintEscalated", 3), timeout=60, settle=1.5)
        opened = topic.of_type("ComplaintOpened")[0].data
        assert at(opened["ack_due_at"]) == filed_at + 4 * H and at(opened["resolve_due_at"]) == filed_at + 2 * D
        escalations = [r for r in topic.of_type("ComplaintEscalated")]
        assert [(e.data["level"], e.data["person"], at(e.data["deadline"]) - filed_at) for e in escalations] == [
            (1, "sales-supervisor-01", 4 * H), (2, "sales-head-01", 2 * D), (3, "aftersales-director-01", 3 * D)]
        # Each happened, in the world, at its deadline.
        assert [e.envelope.occurred_at - filed_at for e in escalations] == [4 * H, 2 * D, 3 * D]
    finally:
        await stack.stop()


async def test_confirmations_that_name_no_case_are_dead_lettered_with_the_reason(ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(ns, manual_clock(T0), tmp_path)
    try:
        unknown = confirmation_completed("no-such-case", T0)
        nameless = confirmation_completed("x", T0, followup_id="FU-NAMELESS")
        del nameless["data"]["complaint_id"]
        other_kind = confirmation_completed("x", T0, followup_id="FU-FIRST")
        other_kind["data"].update(kind="first_visit", complaint_id=None)
        await publish(ns.settings, "aftersales.followup", [other_kind, unknown, nameless])
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 2), timeout=60, settle=1.5)
        reasons = sorted(r.data["reason"] for r in dead.of_type("DeadLettered"))
        assert len(reasons) == 2
        assert "data.complaint_id 'no-such-case' names no complaint case" in reasons[0]
        assert "data.complaint_id is missing" in reasons[1] and "FU-NAMELESS" in reasons[1]
    finally:
        await stack.stop()


async def test_kpis_show_open_cases_per_level_breaches_compliance_and_mean_times(ns: Namespace, tmp_path: Path) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(ns, clock, tmp_path)
    try:
        async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "supervisor") as supervisor:
            ids = [(await agent.post("/v1/complaints", json={
                "customer_id": f"C{i}", "description": "交车晚了", "complaint_ref": f"K-{i}"})).json()["complaint_id"]
                for i in range(3)]
            clock.set(T0 + 2 * H)
            for action, body in (("acknowledge", None), ("assign", {"assignee": "agent-01"})):
                assert (await agent.post(f"/v1/complaints/{ids[0]}/{action}", json=body)).status_code == 200
            clock.set(T0 + 6 * H)
            assert (await agent.post(f"/v1/complaints/{ids[0]}/resolve", json={"resolution": "car delivered"})).status_code == 200
            async with TopicReader(ns.settings, COMPLAINTS) as topic:
                await topic.wait_for(count("ComplaintEscalated", 2), timeout=30)
            kpis = (await supervisor.get("/v1/kpis")).json()
        assert kpis["open_by_level"] == {"handler": 0, "supervisor": 2, "department_head": 0, "superior_leader": 0}
        assert kpis["sla_breaches"] == {"acknowledge": 2, "resolve": 0}
        assert kpis["sla_compliance"] == 1.0 and kpis["sla_compliance_percent"] == 100.0
        assert kpis["mean_seconds_to_acknowledge"] == 7200.0 and kpis["mean_seconds_to_resolve"] == 21600.0
        # The same spans in working time on the case's calendar: no longer than the elapsed ones.
        assert 0 <= kpis["mean_working_seconds_to_acknowledge"] <= 7200.0
        assert 0 <= kpis["mean_working_seconds_to_resolve"] <= 21600.0
        assert kpis["mean_working_hours_to_resolve"] == round(kpis["mean_working_seconds_to_resolve"] / 3600, 2)
        assert kpis["reopen_rate"] == 0.0 and kpis["escalations"] == 2
        # The same figures as Prometheus gauges (refreshed from the database every kpi_refresh_seconds).
        await _until(lambda: REGISTRY.get_sample_value("aftersales_complaints_open", {"level": "supervisor"}) == 2.0)
        assert REGISTRY.get_sample_value("aftersales_complaint_sla_breaches", {"breach": "acknowledge"}) == 2.0
        assert REGISTRY.get_sample_value("aftersales_complaint_sla_compliance") == 1.0
        assert REGISTRY.get_sample_value("aftersales_complaint_mean_seconds_to_resolve") == 21600.0
        assert REGISTRY.get_sample_value("aftersales_complaint_mean_working_seconds_to_resolve") == \
            kpis["mean_working_seconds_to_resolve"]
        assert REGISTRY.get_sample_value("aftersales_complaint_reopen_rate") == 0.0
    finally:
        await stack.stop()


async def test_the_weekly_report_goes_out_on_monday_morning_by_category_and_department(
    ns: Namespace, tmp_path: Path,
) -> None:
    # Filed on Thursday and Friday 10:00 of the test moment's ISO week (the ladder's steps that
    # fall before Monday 00:00 belong to it), reported the Monday after at 08:00.
    friday = in_test_week(4, 10)
    clock = manual_clock(friday)
    stack = await complaints_stack(ns, clock, tmp_path)
    try:
        await publish(ns.settings, "aftersales.intake", [
            complaint_filed("W-1", friday - D, source="intake", followup_id=None, channel="hotline", description="收费太贵"),
            complaint_filed("W-2", friday, source="intake", followup_id=None, channel="web", description="电机异响"),
        ])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintOpened", 2), timeout=60)
        monday = in_test_week(0, 8) + 7 * D
        week, following = iso_week(monday - 7 * D), iso_week(monday)
        clock.set(monday - timedelta(minutes=1))
        clock.set(monday + timedelta(seconds=1))
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintWeeklyReport", 1), timeout=30, settle=1.0)
        [report] = topic.of_type("ComplaintWeeklyReport")
        assert report.record.key.decode() == week and report.envelope.occurred_at == monday
        data = report.data
        assert (data["week"], data["week_start"]) == (week, in_test_week(0, 0).date().isoformat())
        figures = data["figures"]
        # W-1: supervisor, department head and superior leader within the week; W-2: the first two.
        assert figures["totals"]["filed"] == 2 and figures["totals"]["escalations"] == 5
        assert figures["by_category"]["price"]["filed"] == 1 and figures["by_category"]["product_quality"]["filed"] == 1
        assert figures["by_department"]["sales"]["ack_breaches"] == 1
        assert figures["by_department"]["quality_inspection"]["open_at_report"] == 1
        conn = await db(ns, "complaints")
        try:
            pending = await conn.fetch(
                "SELECT ref, due_at FROM timers WHERE kind = 'complaint.weekly_report' AND fired_at IS NULL")
        finally:
            await conn.close()
        assert [(r["ref"], r["due_at"]) for r in pending] == [(following, monday + 7 * D)]
    finally:
        await stack.stop()


async def test_the_weekly_sla_compliance_refuses_a_malformed_week_or_month_and_names_its_scope(
        ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(ns, manual_clock(T0), tmp_path)
    try:
        async with api(stack["complaints"], "supervisor") as supervisor, api(stack["complaints"], "quality") as other:
            for params in ({"until": "2026-47"}, {"until": "0001-W01", "weeks": 2}, {"until": "2026-W60"},
                           {"month": "2026-13"}, {"month": "0001-01"}, {"weeks": 0}):
                answer = await supervisor.get("/v1/reports/sla-compliance", params=params)
                assert answer.status_code == 422, (params, answer.text)
            assert (await supervisor.get("/v1/reports/sla-compliance/cases", params={"outcome": "late"})
                    ).status_code == 422
            found = (await supervisor.get("/v1/reports/sla-compliance", params={
                "until": iso_week(T0), "weeks": 3, "region": "east", "dealer": "D001"})).json()
            assert (found["region"], found["dealer"], [w["compliance"] for w in found["weeks"]]) == (
                "east", "D001", [None, None, None])  # no case: no figure, not 100 %
            assert found["weeks"][-1]["week"] == iso_week(T0) and found["month"] is None
            # The figures of all departments stay with customer service and operations.
            assert (await other.get("/v1/reports/sla-compliance")).status_code == 403
    finally:
        await stack.stop()
