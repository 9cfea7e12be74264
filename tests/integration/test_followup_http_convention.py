"""Follow-up's API under the one HTTP convention (issue 21) and people's least privilege on the owner
routes (issue 19), on the real broker and database (intake and followup): walking the queue and
the follow-ups with `next_cursor` answers every row once in the requested sort; a bad cursor and
an unknown sort are 422 problems with `errors`; a stale If-Match on a follow-up's or a
conversation's action is a 412 problem and changes nothing, the current one works and answers a
new ETag; a call retried with the same Idempotency-Key is recorded once and answered again with
`Idempotency-Replayed: true`; an agent outside the customer's regions gets 403 on the owner routes
and sees only their customers' owners."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console_support import as_person, eventually, keyed_ns
from tests.support import Namespace, Stack, TopicReader, api, day_at, manual_clock, publish, working_day
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]
__all__ = ["keyed_ns"]

PROBLEM = "application/problem+json"


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, page by page through `next_cursor`, and the number of pages."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        response = await client.get(path, params=params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor", "limit"} and len(page["items"]) <= params["limit"]
        items += page["items"]
        pages += 1
        if (cursor := page["next_cursor"]) is None:
            return items, pages
        assert pages < 50, "the walk does not end"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:aftersales:problem:") and body["detail"]
    return body


async def test_followup_lists_pages_etags_idempotency_and_the_owner_routes_scope(keyed_ns: Namespace) -> None:
    ns = keyed_ns
    d = working_day()
    stack = await Stack(ns, manual_clock(day_at(10, days=d)), services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=2121)
        vehicles = [fleet.vehicle(day_at(0, days=-400 + i)) for i in range(7)]
        for i, v in enumerate(vehicles):
            v.customer.region = "west" if i == 6 else "east"
        west_id = vehicles[6].customer.customer_id
        east_ids = {v.customer.customer_id for v in vehicles[:6]}
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, day_at(9, 7 * i, days=d - 4))
                                                    for i, v in enumerate(vehicles)])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: len({r.data["customer_id"] for r in rs if r.event_type == "FollowUpScheduled"
                                                 and r.data["kind"] == "first_visit"}) >= 7, timeout=60)
        service = stack["followup"]
        async with api(service, "agent") as hotline, api(service, "supervisor") as supervisor, \
                as_person(ns, stack, "followup", "wang.fang", "agent", regions=["east"]) as east_agent:

            async def all_due() -> list[dict[str, Any]] | None:
                rows = (await supervisor.get("/v1/followups", params={"status": "due", "limit": 200})).json()["items"]
                return rows if len(rows) == 7 else None

            due = await eventually(all_due, what="the seven first visits due")
            ids = {f["followup_id"] for f in due}

            # -- cursor pages in the requested sort: every row once --------------------------------------
            whole = (await hotline.get("/v1/queue", params={"limit": 200})).json()
            assert whole["next_cursor"] is None and {i["followup_id"] for i in whole["items"]} == ids
            walked, pages = await walk(hotline, "/v1/queue", limit=2)
            assert pages == 4 and [i["followup_id"] for i in walked] == [i["followup_id"] for i in whole["items"]], \
                "the queue's own order (the default sort), page by page"
            by_deadline, _ = await walk(hotline, "/v1/queue", limit=3, sort="-due_by")
            assert len(by_deadline) == 7 and {i["followup_id"] for i in by_deadline} == ids
            assert [i["due_by"] for i in by_deadline] == sorted((i["due_by"] for i in by_deadline), reverse=True)
            newest, pages = await walk(supervisor, "/v1/followups", limit=2, sort="-created_at")
            assert pages == 4 and [f["followup_id"] for f in newest] == [
                f["followup_id"] for f in sorted(due, key=lambda f: (f["created_at"], f["followup_id"]), reverse=True)]
            talks, _ = await walk(hotline, "/v1/queue/conversations", limit=2)
            assert sorted(t["customer_id"] for t in talks) == sorted(east_ids | {west_id})

            # -- a bad cursor, an unknown sort, a cursor of another sort: 422 problems ----------------
            bad = problem(await hotline.get("/v1/queue", params={"cursor": "not-a-cursor"}), 422)
            assert [e["field"] for e in bad["errors"]] == ["query.cursor"]
            forged = problem(await supervisor.get("/v1/followups", params={"cursor": "eyJzIjoxfQ"}), 422)
            assert forged["errors"][0]["field"] == "query.cursor"
            unknown = problem(await supervisor.get("/v1/followups", params={"sort": "-customer_name"}), 422)
            assert unknown["errors"][0]["field"] == "query.sort" and "created_at" in unknown["errors"][0]["message"]
            first = (await supervisor.get("/v1/followups", params={"limit": 2})).json()["next_cursor"]
            other = problem(await supervisor.get("/v1/followups", params={"limit": 2, "sort": "due_by",
                                                                         "cursor": first}), 422)
            assert other["errors"][0]["field"] == "query.cursor" and "-created_at" in other["detail"]

            # -- ETag and If-Match on a follow-up's actions --------------------------------------------
            fid = next(f["followup_id"] for f in due if f["customer_id"] in east_ids)
            read = await hotline.get(f"/v1/followups/{fid}")
            tag = read.headers["ETag"]
            stale = '"0000000000000000"'
            problem(await hotline.post(f"/v1/followups/{fid}/claim", headers={"If-Match": stale}), 412)
            unchanged = await hotline.get(f"/v1/followups/{fid}")
            assert unchanged.json()["claimed_by"] is None and unchanged.headers["ETag"] == tag, "the 412 changed nothing"
            claimed = await hotline.post(f"/v1/followups/{fid}/claim", headers={"If-Match": tag})
            assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "agent-01", claimed.text
            new_tag = claimed.headers["ETag"]
            assert new_tag != tag and (await hotline.get(f"/v1/followups/{fid}")).headers["ETag"] == new_tag

            # -- a call retried with the same Idempotency-Key: one attempt, the same answer -----------
            call = {"outcome": "reached", "satisfaction": 5, "talking_points": "车辆使用正常"}
            refused = await hotline.post(f"/v1/followups/{fid}/attempts", json=call, headers={"If-Match": tag})
            problem(refused, 412)
            assert (await hotline.get(f"/v1/followups/{fid}")).json()["attempts"] == [], "the stale call stored nothing"
            headers = {"If-Match": new_tag, "Idempotency-Key": "call-2121-1"}
            recorded = await hotline.post(f"/v1/followups/{fid}/attempts", json=call, headers=headers)
            assert recorded.status_code == 201 and recorded.json()["status"] == "completed", recorded.text
            assert "Idempotency-Replayed" not in recorded.headers and recorded.headers["ETag"] not in (tag, new_tag)
            again = await hotline.post(f"/v1/followups/{fid}/attempts", json=call, headers=headers)
            assert again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
            assert again.json() == recorded.json()
            after = (await hotline.get(f"/v1/followups/{fid}")).json()
            assert [a["attempt_no"] for a in after["attempts"]] == [1], "the retry recorded no second attempt"
            reused = await hotline.post(f"/v1/followups/{fid}/attempts", json=call | {"satisfaction": 4},
                                        headers=headers)
            problem(reused, 422)

            # -- the conversation's ETag on its claim and call record ---------------------------------
            customer_id = next(f["customer_id"] for f in due if f["followup_id"] != fid
                               and f["customer_id"] in east_ids)
            talk = await hotline.get(f"/v1/customers/{customer_id}/conversation")
            talk_tag = talk.headers["ETag"]
            problem(await hotline.post(f"/v1/customers/{customer_id}/conversation/claim",
                                       headers={"If-Match": stale}), 412)
            assert (await hotline.get(f"/v1/customers/{customer_id}/conversation")).json()["claimed_by"] is None
            taken = await hotline.post(f"/v1/customers/{customer_id}/conversation/claim",
                                       headers={"If-Match": talk_tag})
            assert taken.status_code == 200 and taken.headers["ETag"] != talk_tag, taken.text
            outcomes = {"call_id": taken.json()["call_id"], "outcomes": [
                {"followup_id": f["followup_id"], "outcome": "reached", "satisfaction": 5}
                for f in taken.json()["followups"]]}
            problem(await hotline.post(f"/v1/customers/{customer_id}/calls", json=outcomes,
                                       headers={"If-Match": talk_tag}), 412)
            done = await hotline.post(f"/v1/customers/{customer_id}/calls", json=outcomes,
                                      headers={"If-Match": taken.headers["ETag"]})
            assert done.status_code == 201, done.text
            calls, _ = await walk(hotline, f"/v1/customers/{customer_id}/calls", limit=50)
            assert [c["call_id"] for c in calls] == [outcomes["call_id"]]

            # -- issue 19: the owner routes hold a scoped agent to their customers ---------------------
            refused_owner = problem(await east_agent.get(f"/v1/customers/{west_id}/owner"), 403)
            assert "outside your scope" in refused_owner["detail"]
            east_id = sorted(east_ids)[0]
            assert (await east_agent.get(f"/v1/customers/{east_id}/owner")).status_code == 200
            theirs, _ = await walk(east_agent, "/v1/owners", limit=200)
            assert {o["customer_id"] for o in theirs} == east_ids
            assert (await east_agent.get("/v1/owners", params={"customer": west_id})).json()["items"] == []
            everyone, _ = await walk(supervisor, "/v1/owners", limit=3, sort="customer_id")
            assert [o["customer_id"] for o in everyone] == sorted(east_ids | {west_id})
            unnamed = problem(await hotline.get("/v1/owners"), 422)
            assert {e["field"] for e in unnamed["errors"]} == {"query.owner", "query.customer"}
            assert (await hotline.get("/v1/owners", params={"customer": west_id})).json()["items"][0][
                "customer_id"] == west_id
    finally:
        await stack.stop()
