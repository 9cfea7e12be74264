"""Erasure in the complaints service (issue 19, docs/complaints.md "Erasure"): intake's
CustomerErased takes every personal value of the customer (and of the phone-only file it took
over) out of every table of the `complaints` schema and deletes its cases' document files, while
a control customer filed and worked the same way keeps all of theirs; the KPIs and reports give
the same figures; the erased customer's cases still show and can be worked; replayed filings
bring nothing back, a second CustomerErased changes nothing, and a complaint made after the
erasure is filed as any other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.complaints import store
from services.complaints.domain import complaint_id_for
from services.complaints.reports import report_week, weekly_figures
from shared.runtime import ServiceRuntime
from tests.complaints_fixtures import complaint_filed, complaints_stack
from tests.privacy_scan import find_in_files, find_in_schema
from tests.support import TEST_NOW, Namespace, TopicReader, api, count, db, iso_week, manual_clock, publish
from tools.simulate import envelope

pytestmark = [pytest.mark.infra, pytest.mark.dates]

T0 = TEST_NOW
H = timedelta(hours=1)
COMPLAINTS = "aftersales.complaints"

# The erased customer C (and the phone-only file C took over) and the control customer D: one
# value of each kind, distinctive enough that a hit can only be theirs.
C_ID, C_MERGED, D_ID = "CUST-ERASE-C", "CUST-ERASE-C-PHONE", "CUST-KEEP-D"
C = {"name": "欧阳娜娜", "phone": "13912345678", "email": "nana.ouyang@example.cn",
     "address": "上海市徐汇区漕溪北路88号", "note": "左前轮毂刮花要求赔偿"}
D = {"name": "司马光明", "phone": "13798765432", "email": "guangming.sima@example.cn",
     "address": "广州市天河区体育西路123号", "note": "后备箱漏水地毯发霉"}


def _filed(ref: str, customer_id: str, who: dict[str, str], *, source: str = "intake",
           occurred_offset: timedelta = -2 * H, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The customer's ComplaintFiled: their phone, and a description quoting all their values."""
    env = complaint_filed(
        ref, T0 + occurred_offset, customer_id=customer_id, source=source,
        followup_id=None if source == "intake" else "FU-ERASE", channel="hotline" if source == "intake" else
        "return_visit", description=f"{who['name']}来电：{who['note']}，电话{who['phone']}，邮箱{who['email']}，"
                                    f"地址{who['address']}", event_id=event_id)
    env["data"]["phone"] = who["phone"]
    return env


def _erased(erasure_id: str, *, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    return envelope("CustomerErased", C_ID, {
        "customer_id": C_ID, "erasure_id": erasure_id, "erased_at": (T0 + 3 * H).isoformat(),
        "requested_by": "supervisor-01", "merged_customer_ids": [C_MERGED],
    }, T0 + 3 * H, "intake", event_id=event_id)


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not in {timeout}s: {what}"
        await asyncio.sleep(0.1)


async def _work(agent: Any, supervisor: Any, cid: str, who: dict[str, str]) -> None:
    """A handler's whole handling of the case, writing the customer's values everywhere a person
    can: step notes, a comment (sent with an Idempotency-Key: its answer is kept), the pend's
    reason, the resolution, a document's title, file name and text, the closing note."""
    steps: list[tuple[str, dict[str, Any] | None, dict[str, str]]] = [
        ("acknowledge", {"note": f"已联系{who['name']}"}, {}),
        ("assign", {"assignee": "agent-01"}, {}),
        ("comments", {"text": f"{who['name']}要求回电 {who['email']}"}, {"Idempotency-Key": str(uuid.uuid4())}),
        ("pend", {"reason": f"等{who['email']}发照片"}, {}),
        ("resume", None, {}),
        ("documents", {"title": f"{who['name']}的陈述", "kind": "customer_statement",
                       "filename": f"{who['name']}.txt",
                       "content": f"{who['name']} {who['phone']} {who['address']} {who['note']}"}, {}),
        ("resolve", {"resolution": f"已上门到{who['address']}更换轮毂"}, {}),
    ]
    for action, body, headers in steps:
        answer = await agent.post(f"/v1/complaints/{cid}/{action}", json=body, headers=headers)
        assert answer.status_code in (200, 201), (action, answer.text)
    closed = await supervisor.post(f"/v1/complaints/{cid}/close", json={"satisfied": True,
                                                                        "note": f"{who['name']}满意"})
    assert closed.status_code == 200, closed.text


async def _figures(runtime: ServiceRuntime[Any], client: Any) -> dict[str, Any]:
    """Every figure the service reports: the KPIs, the weekly report's figures, the SLA
    compliance by week and month, the counts by category."""
    kpis = (await client.get("/v1/kpis")).json()
    compliance = (await client.get("/v1/reports/sla-compliance", params={
        "until": iso_week(T0), "weeks": 2, "month": T0.strftime("%Y-%m")})).json()
    categories = (await client.get("/v1/reports/categories", params={
        "from": (T0 - 24 * H).isoformat(), "to": (T0 + 24 * H).isoformat()})).json()
    week = report_week(iso_week(T0), "Asia/Shanghai")
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        weekly = weekly_figures(week, *await store.week_rows(conn, week.starts_at, week.ends_at))
    for answer in (kpis, compliance):
        del answer["as_of"]
    return {"kpis": kpis, "compliance": compliance, "categories": categories, "weekly": weekly}


def _case_figures(case: dict[str, Any]) -> dict[str, Any]:
    """What of a case stays through its customer's erasure: ids, classification, state, SLA,
    escalations, how many steps and documents."""
    return {**{k: case[k] for k in ("complaint_id", "complaint_ref", "customer_id", "vin", "channel", "category",
                                    "severity", "department", "state", "assignee", "satisfied", "confirmation",
                                    "sla", "escalations")},
            "timeline": [(f["seq"], f["kind"], f["at"], f["actor"]) for f in case["timeline"]],
            "documents": [(d["document_id"], d["kind"], d["size_bytes"], d["filed_at"]) for d in case["documents"]]}


async def test_an_erased_customer_leaves_no_personal_value_in_complaints_and_every_figure_stays(
    ns: Namespace, tmp_path: Path,
) -> None:
    clock = manual_clock(T0)
    documents = tmp_path / "documents"
    stack = await complaints_stack(ns, clock, documents)
    runtime = stack["complaints"]
    conn = await db(ns, "complaints")
    c1, c2, d1 = (complaint_id_for(ref) for ref in ("ERASE-C-1", "ERASE-C-2", "KEEP-D-1"))
    try:
        # C's complaint by hotline, the complaint of the file C took over raised in a return-visit
        # call, D's by hotline.
        c_filed = _filed("ERASE-C-1", C_ID, C)
        merged_filed = _filed("ERASE-C-2", C_MERGED, C, source="followup")
        await publish(ns.settings, "aftersales.intake", [c_filed, _filed("KEEP-D-1", D_ID, D)])
        await publish(ns.settings, "aftersales.followup", [merged_filed])
        async with TopicReader(ns.settings, COMPLAINTS) as topic:
            await topic.wait_for(count("ComplaintOpened", 3), timeout=60)
        async with api(runtime, "agent") as agent, api(runtime, "supervisor") as supervisor:
            await _work(agent, supervisor, c1, C)
            await _work(agent, supervisor, d1, D)
            # C2 is never acknowledged: at T0 + 3 h its 4 h deadline (from T0 - 2 h) has passed.
            clock.set(T0 + 3 * H)
            async with TopicReader(ns.settings, COMPLAINTS) as topic:
                await topic.wait_for(count("ComplaintEscalated", 1), timeout=30)
            await _until(lambda: conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE failed_at IS NULL"),
                         "the relay published every event")

            before = await _figures(runtime, supervisor)
            cases_before = {cid: _case_figures((await agent.get(f"/v1/complaints/{cid}")).json())
                            for cid in (c1, c2, d1)}
            assert before["kpis"]["escalations"] == 1 and sum(before["categories"]["counts"].values()) == 3
            # The scan looks where the values are: C's are found before the erasure.
            assert len(await find_in_schema(conn, "complaints", C.values())) >= 5
            assert {hit.rsplit(": ", 1)[1] for hit in find_in_files(documents, C.values())} == set(C.values())

            # intake erases C (and the phone-only file C took over).
            erased = _erased("ERASURE-1")
            await publish(ns.settings, "aftersales.intake", [erased])
            await _until(lambda: conn.fetchval("SELECT count(*) = 2 FROM erased_customers"), "C erased")

            async def files_gone() -> bool:
                return not find_in_files(documents, C.values())

            await _until(files_gone, "C's document files deleted (after the erasure's commit)")

            assert await find_in_schema(conn, "complaints", C.values()) == []
            for value in D.values():  # the control: each of D's values is still where it was written
                assert await find_in_schema(conn, "complaints", [value]), value
                assert find_in_files(documents, [value]), value
            rows = await conn.fetch("SELECT customer_id, erasure_id FROM erased_customers ORDER BY 1")
            assert [tuple(r) for r in rows] == [(C_ID, "ERASURE-1"), (C_MERGED, "ERASURE-1")]
            # D's documents are untouched on disk and in their rows.
            d_docs = await conn.fetch("SELECT path, sha256, erased_at FROM documents WHERE complaint_id = $1", d1)
            assert len(d_docs) == 2 and all(r["erased_at"] is None and (documents / r["path"]).is_file()
                                            for r in d_docs)

            # Every figure is what it was, and so is every case but for what people wrote.
            assert await _figures(runtime, supervisor) == before
            for cid in (c1, c2, d1):
                answer = await agent.get(f"/v1/complaints/{cid}")
                assert answer.status_code == 200, answer.text
                assert _case_figures(answer.json()) == cases_before[cid]
            page = (await agent.get(f"/v1/complaints/{c1}")).json()
            assert (page["description"], page["resolution"]) == ("", None)
            [comment] = [f for f in page["timeline"] if f["kind"] == "comment"]
            assert comment["detail"] == {"text": None}
            assert all(d["erased_at"] and d["filename"] is None and d["title"] == "" for d in page["documents"])
            gone = await agent.get(f"/v1/complaints/{c1}/documents/{page['documents'][0]['document_id']}")
            assert gone.status_code == 404 and "erased with the customer's personal data" in gone.json()["detail"]
            kept = (await agent.get(f"/v1/complaints/{d1}")).json()["documents"][0]
            shown = await agent.get(f"/v1/complaints/{d1}/documents/{kept['document_id']}")
            assert shown.status_code == 200 and D["address"] in shown.json()["content"]
            listed = (await agent.get("/v1/complaints", params={"q": "ERASE-C"})).json()["items"]
            assert {i["complaint_id"] for i in listed} == {c1, c2}
            # The erased customer's case can still be worked: C2 is acknowledged as any other.
            assert (await agent.post(f"/v1/complaints/{c2}/acknowledge")).status_code == 200
            after_step = await _figures(runtime, supervisor)

            # Replays: C's filings again, under new event ids (they happened before the erasure),
            # and a filing of C never seen before that also happened before it (a late delivery).
            await publish(ns.settings, "aftersales.intake", [
                _filed("ERASE-C-1", C_ID, C, event_id=uuid.uuid4()),
                _filed("ERASE-C-LATE", C_ID, C, occurred_offset=-H)])
            await publish(ns.settings, "aftersales.followup", [
                _filed("ERASE-C-2", C_MERGED, C, source="followup", event_id=uuid.uuid4())])
            await _until(lambda: _fetch_true(conn, """
                SELECT (SELECT count(*) FROM case_history WHERE kind = 'note' AND complaint_id = ANY($1::text[])) = 2
                   AND EXISTS (SELECT 1 FROM cases WHERE complaint_ref = 'ERASE-C-LATE')""", [c1, c2]),
                "the replays handled (each a note on its case) and the late filing")
            assert await find_in_schema(conn, "complaints", C.values()) == []
            late = await conn.fetchrow(
                "SELECT customer_id, phone, description, category FROM cases WHERE complaint_ref = 'ERASE-C-LATE'")
            c1_category = await conn.fetchval("SELECT category FROM cases WHERE complaint_id = $1", c1)
            # filed without a personal value, classified as the same text was before
            assert tuple(late) == (C_ID, None, "", c1_category)
            # Its 4 h to acknowledge (from T0 - 1 h) ran out at T0 + 3 h: escalated at once, as the rest.
            await _until(lambda: conn.fetchval("SELECT count(*) = 2 FROM escalations"), "the late case escalated")
            await _until(lambda: conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE failed_at IS NULL"),
                         "the relay published the late case's events")
            assert await find_in_schema(conn, "complaints", C.values()) == []
            assert (await _figures(runtime, supervisor))["kpis"]["escalations"] == 2

            # C comes back after the erasure with a new complaint: it is filed as any other.
            clock.set(T0 + 4 * H)
            came_back = _filed("ERASE-C-NEW", C_ID, C, occurred_offset=4 * H)
            await publish(ns.settings, "aftersales.intake", [came_back])
            await _until(lambda: _fetch_true(conn, "SELECT EXISTS (SELECT 1 FROM cases WHERE complaint_ref = $1)",
                                             "ERASE-C-NEW"), "the new complaint filed")
            new = await conn.fetchrow("SELECT phone, description FROM cases WHERE complaint_ref = 'ERASE-C-NEW'")
            assert new["phone"] == C["phone"] and C["note"] in new["description"]
            await _until(lambda: conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE failed_at IS NULL"),
                         "the relay published the new case's events")

            # A second CustomerErased of the same erasure (a new event id) changes nothing: the
            # complaint C made since keeps its values, the figures stay.
            figures = await _figures(runtime, supervisor)
            again = _erased("ERASURE-1", event_id=uuid.uuid4())
            await publish(ns.settings, "aftersales.intake", [again])
            await _until(lambda: _fetch_true(conn, "SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)",
                                             uuid.UUID(again["event_id"])), "the second CustomerErased handled")
            assert await conn.fetchval("SELECT phone FROM cases WHERE complaint_ref = 'ERASE-C-NEW'") == C["phone"]
            assert sorted(await find_in_schema(conn, "complaints", [C["phone"]])) == [
                f"complaints.cases.description: {C['phone']}", f"complaints.cases.phone: {C['phone']}"]
            assert await _figures(runtime, supervisor) == figures
            assert figures["kpis"]["open"] == after_step["kpis"]["open"] + 2  # the late and the new case
            assert await conn.fetchval("SELECT count(*) FROM erased_customers") == 2
    finally:
        await conn.close()
        await stack.stop()


async def _fetch_true(conn: Any, sql: str, *args: Any) -> bool:
    return bool(await conn.fetchval(sql, *args))
