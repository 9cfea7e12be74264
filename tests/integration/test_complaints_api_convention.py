"""The complaints API on the one HTTP convention (issue 21) and least privilege (issue 19), on the
real broker and database: the case list walked with `next_cursor` answers every case once in the
order asked; a bad cursor or sort is a 422 problem naming the field; a stale If-Match on a case
action is a 412 problem that changes nothing while the current ETag works and a new one comes back;
a filing retried with the same Idempotency-Key opens one case; a scoped agent gets 403 on measures."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.complaints_fixtures import complaints_stack
from tests.console_support import as_person, keyed_ns
from tests.support import TEST_NOW, Namespace, api, db, manual_clock

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["keyed_ns"]

T0 = TEST_NOW
PROBLEM = "application/problem+json"
FAR = datetime(9999, 12, 31).astimezone()


async def _walk(client: httpx.AsyncClient, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every item of the list, following next_cursor; and how many pages that took."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        answer = await client.get("/v1/complaints", params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "next_cursor", "limit"} and len(page["items"]) <= params["limit"]
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


def _problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:aftersales:problem:") and body["detail"]
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field], body
    return body  # type: ignore[no-any-return]


async def test_the_case_list_walks_by_cursor_in_the_order_asked_and_refuses_bad_cursors_and_sorts(
        keyed_ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(keyed_ns, manual_clock(T0), tmp_path)
    try:
        async with api(stack["complaints"], "agent") as agent:
            filed = []
            # seven cases; two filed at the same minute (the id breaks the tie), one resolved (no deadline)
            for i, minutes in enumerate((50, 40, 40, 30, 20, 10, 5)):
                answer = await agent.post("/v1/complaints", json={
                    "complaint_ref": f"PG-{i}", "customer_id": f"CUST-PG-{i}", "description": "保养后异响",
                    "severity": ("low", "high", "medium")[i % 3], "filed_at": (T0 - timedelta(minutes=minutes)).isoformat()})
                assert answer.status_code == 201, answer.text
                filed.append(answer.json())
            done = filed[3]["complaint_id"]
            assert (await agent.post(f"/v1/complaints/{done}/acknowledge")).status_code == 200
            assert (await agent.post(f"/v1/complaints/{done}/assign", json={"assignee": "li.na"})).status_code == 200
            assert (await agent.post(f"/v1/complaints/{done}/resolve", json={"resolution": "已处理"})).status_code == 200

            newest, pages = await _walk(agent, {"q": "PG-", "limit": 2})
            assert pages == 4 and len(newest) == 7
            assert [c["complaint_id"] for c in newest] == [
                c["complaint_id"] for c in sorted(newest, key=lambda c: (c["filed_at"], c["complaint_id"]), reverse=True)]
            assert sorted(c["complaint_id"] for c in newest) == sorted(c["complaint_id"] for c in filed), "each once"

            by_deadline, _ = await _walk(agent, {"q": "PG-", "limit": 3, "sort": "deadline"})
            keys = [(datetime.fromisoformat(c["due_at"]) if c["due_at"] else FAR, c["complaint_id"]) for c in by_deadline]
            assert keys == sorted(keys) and len(keys) == 7 and by_deadline[-1]["complaint_id"] == done
            oldest, _ = await _walk(agent, {"q": "PG-", "limit": 4, "sort": "filed_at"})
            assert [c["complaint_id"] for c in oldest] == [c["complaint_id"] for c in reversed(newest)]

            # A cursor is the list's own: garbled, or made for another sort, is a 422 naming the cursor.
            first = (await agent.get("/v1/complaints", params={"q": "PG-", "limit": 2})).json()
            _problem(await agent.get("/v1/complaints", params={"q": "PG-", "cursor": "not-a-cursor"}), 422,
                     "query.cursor")
            other = _problem(await agent.get("/v1/complaints", params={"q": "PG-", "sort": "deadline",
                                                                      "cursor": first["next_cursor"]}), 422, "query.cursor")
            assert "-filed_at" in other["detail"]
            unknown = _problem(await agent.get("/v1/complaints", params={"q": "PG-", "sort": "oldest"}), 422,
                               "query.sort")
            assert "deadline" in unknown["errors"][0]["message"], "it names the sorts there are"
            _problem(await agent.get("/v1/complaints", params={"q": "PG-", "offset": 2, "limit": 500}), 422,
                     "query.limit")
            whole = _problem(await agent.get("/v1/complaints"), 422)
            assert "name a filter" in whole["detail"]
    finally:
        await stack.stop()


async def test_a_stale_if_match_changes_nothing_and_a_retried_filing_opens_one_case(
        keyed_ns: Namespace, tmp_path: Path) -> None:
    clock = manual_clock(T0)
    stack = await complaints_stack(keyed_ns, clock, tmp_path)
    try:
        async with api(stack["complaints"], "agent") as agent, api(stack["complaints"], "supervisor") as supervisor:
            # A filing retried with the same key (a timeout, a double click): one case, the same answer.
            body = {"customer_id": "CUST-IM", "description": "客户投诉维修后仍有异响", "channel": "web"}
            first = await agent.post("/v1/complaints", json=body, headers={"Idempotency-Key": "web-form-7781"})
            again = await agent.post("/v1/complaints", json=body, headers={"Idempotency-Key": "web-form-7781"})
            assert first.status_code == again.status_code == 201, (first.text, again.text)
            assert again.headers["idempotency-replayed"] == "true" and "idempotency-replayed" not in first.headers
            assert again.json() == first.json()
            reused = await agent.post("/v1/complaints", json={**body, "description": "另一件事"},
                                      headers={"Idempotency-Key": "web-form-7781"})
            _problem(reused, 422)
            cid = first.json()["complaint_id"]
            conn = await db(keyed_ns, "complaints")
            try:
                assert await conn.fetchval("SELECT count(*) FROM cases WHERE customer_id = 'CUST-IM'") == 1
            finally:
                await conn.close()

            shown = await agent.get(f"/v1/complaints/{cid}")
            etag = shown.headers["etag"]
            assert etag.startswith('"') and etag == first.headers["etag"], "the filing answers the same ETag"
            acknowledged = await agent.post(f"/v1/complaints/{cid}/acknowledge", headers={"If-Match": etag})
            assert acknowledged.status_code == 200, acknowledged.text
            newer = acknowledged.headers["etag"]
            assert newer != etag and (await agent.get(f"/v1/complaints/{cid}")).headers["etag"] == newer

            # Someone who read the case before the acknowledgement: refused, and nothing changes.
            stale = await supervisor.post(f"/v1/complaints/{cid}/assign", json={"assignee": "li.na"},
                                          headers={"If-Match": etag})
            refused = _problem(stale, 412)
            assert "fetch it again" in refused["detail"] and stale.headers["etag"] == newer
            after = await agent.get(f"/v1/complaints/{cid}")
            assert after.json()["state"] == "acknowledged" and after.json()["assignee"] is None
            assert [e["kind"] for e in after.json()["timeline"]] == [e["kind"] for e in acknowledged.json()["timeline"]]
            assert after.headers["etag"] == newer
            # With the current ETag (or *, or none) it goes through.
            assigned = await supervisor.post(f"/v1/complaints/{cid}/assign", json={"assignee": "li.na"},
                                             headers={"If-Match": f'"other", {newer}'})
            assert assigned.status_code == 200 and assigned.json()["assignee"] == "li.na"
            assert assigned.headers["etag"] not in (etag, newer)
            note = await agent.post(f"/v1/complaints/{cid}/comments", json={"text": "已联系客户"},
                                    headers={"If-Match": "*"})
            assert note.status_code == 200
            # Time passing moves the SLA figures, not the ETag: nobody changed the case.
            clock.set(T0 + timedelta(hours=2))
            assert (await agent.get(f"/v1/complaints/{cid}")).headers["etag"] == note.headers["etag"]
            # A document attached with a stale ETag is refused too.
            _problem(await agent.post(f"/v1/complaints/{cid}/documents", json={"title": "记录", "content": "x"},
                                      headers={"If-Match": newer}), 412)
    finally:
        await stack.stop()


async def test_a_scoped_agent_gets_403_on_measures_and_a_stale_verification_is_refused(
        keyed_ns: Namespace, tmp_path: Path) -> None:
    stack = await complaints_stack(keyed_ns, manual_clock(T0), tmp_path)
    try:
        async with api(stack["complaints"], "supervisor") as supervisor, api(stack["complaints"], "agent") as hotline, \
                as_person(keyed_ns, stack, "complaints", "wang.fang", "agent", regions=["east"]) as east_agent:
            recorded = await supervisor.post("/v1/measures", json={
                "target_kind": "category", "category": "repair_quality", "title": "维修后质检签字",
                "action": "维修完工后由质检员试车并签字", "owner": "as-supervisor-01",
                "due_at": (T0 + timedelta(days=10)).isoformat()})
            assert recorded.status_code == 201, recorded.text
            mid = recorded.json()["measure_id"]
            for path in ("/v1/measures", f"/v1/measures/{mid}", "/v1/reports/measures"):
                refused = _problem(await east_agent.get(path), 403)
                assert "outside your scope" in refused["detail"] and "维修" not in refused["detail"], path
                assert (await hotline.get(path)).status_code == 200, path  # the central hotline reads them
            listed = (await hotline.get("/v1/measures")).json()
            assert [m["measure_id"] for m in listed["items"]] == [mid] and listed["next_cursor"] is None

            shown = await supervisor.get(f"/v1/measures/{mid}")
            etag = shown.headers["etag"]
            _problem(await supervisor.post(f"/v1/measures/{mid}/verify", json={"verdict": "effective", "note": "x"},
                                           headers={"If-Match": '"not-this-one"'}), 412)
            assert (await supervisor.get(f"/v1/measures/{mid}")).json()["status"] == "open", "nothing changed"
            verified = await supervisor.post(f"/v1/measures/{mid}/verify", headers={"If-Match": etag},
                                             json={"verdict": "effective", "note": "抽查 10 台，签字齐全"})
            assert verified.status_code == 200 and verified.json()["status"] == "verified"
            assert verified.headers["etag"] != etag
    finally:
        await stack.stop()
