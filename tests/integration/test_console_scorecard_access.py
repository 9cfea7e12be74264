"""Who may open the dealer scorecards and the receipts in the console (on the real database).
The console's pages are not bearer-token APIs (tests/integration/test_security_endpoints.py
covers the five services'); their policy is written down here, independently of the code:
the scorecards judge dealers, so they are the supervisors'; the receipts are read by the staff
who call the customers (agents) and their supervisors; quality inspectors see neither. Without
a session every route sends the person to sign in; a malformed filter is a 422 saying how to
write it, as problem+json for format=json."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.console_support import add_staff, console_namespace, console_stack, sign_in
from tests.support import Namespace, Stack, drop_namespace, manual_clock

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="module")]

POLICY = {  # route -> the console roles that may open it
    "/dealers/scorecards": {"supervisor"},
    "/dealers/D001/scorecard": {"supervisor"},
    "/receipts": {"agent", "supervisor"},
    "/receipts/weeks": {"agent", "supervisor"},  # JSON only
}
PEOPLE = {"agent": "wang.fang", "supervisor": "liu.yang", "quality": "zhao.lei"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(infra: None) -> AsyncIterator[Stack]:
    ns: Namespace = await console_namespace()
    stack = await console_stack(ns, manual_clock("2026-11-20T10:00:00+08:00"), services=()).start(consume=False)
    try:
        await add_staff(ns)
        yield stack
    finally:
        await stack.stop()
        await drop_namespace(ns)


def _client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stack["console"].app), base_url="http://127.0.0.1")


async def test_each_role_opens_exactly_the_scorecard_and_receipt_pages_of_the_policy(console: Stack) -> None:
    problems = []
    async with _client(console) as anonymous:
        for route in POLICY:
            answer = await anonymous.get(route)
            if answer.status_code != 303 or not answer.headers["location"].startswith("/sign-in"):
                problems.append(f"anonymous {route}: {answer.status_code}")
    for role, username in PEOPLE.items():
        async with _client(console) as client:
            assert (await sign_in(client, username)).status_code == 303
            for route, allowed in POLICY.items():
                for fmt in ("html", "json"):
                    answer = await client.get(route, params={"format": fmt})
                    expected = 200 if role in allowed else 403
                    if answer.status_code != expected:
                        problems.append(f"{role} {route} ({fmt}): {answer.status_code}, expected {expected}")
    assert not problems, "\n".join(problems)


async def test_an_empty_month_is_an_empty_scorecard_and_bad_filters_say_how_to_write_them(console: Stack) -> None:
    async with _client(console) as client:
        await sign_in(client, "liu.yang")
        empty = (await client.get("/dealers/scorecards", params={"format": "json"})).json()
        assert empty["month"] == "2026-11" and empty["dealers"] == [] and empty["flagged"] == []
        assert (empty["target"], empty["confidence"]) == (0.98, 0.95)
        for route, params, words in (
            ("/dealers/scorecards", {"month": "2026-13"}, "2026-11"),
            ("/dealers/D001/scorecard", {"month": "November"}, "2026-11"),
            ("/receipts", {"rating_min": "0"}, "1 to 5"),
            ("/receipts", {"rating_min": "5", "rating_max": "2"}, "lowest rating"),
            ("/receipts", {"since": "2026-11-31"}, "2026-11-01"),
        ):
            answer = await client.get(route, params={**params, "format": "json"})
            assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
            assert words in answer.json()["detail"], (route, answer.json())
            assert [e["field"] for e in answer.json()["errors"]] == [f"query.{next(iter(params))}"], answer.json()
            page = await client.get(route, params=params)
            assert page.status_code == 422, (route, params)
        assert (await client.get("/receipts", params={"format": "pdf"})).status_code == 404
        # The receipts as JSON are a cursor page: a bad cursor, sort or limit is a problem naming it.
        for params, field in (({"cursor": "nope"}, "query.cursor"), ({"sort": "rating"}, "query.sort"),
                              ({"limit": "0"}, "query.limit")):
            answer = await client.get("/receipts", params={**params, "format": "json"})
            assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == [field], answer.text
        empty = (await client.get("/receipts", params={"format": "json"})).json()
        assert empty == {"items": [], "next_cursor": None, "limit": 50}
    async with _client(console) as anonymous:  # the JSON answers are an API: 401 problem, not the sign-in page
        answer = await anonymous.get("/receipts", params={"format": "json"})
        assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"
    async with _client(console) as quality:
        await sign_in(quality, "zhao.lei")
        answer = await quality.get("/dealers/scorecards", params={"format": "json"})
        assert answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
