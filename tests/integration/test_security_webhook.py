"""The signed webhook (POST /v1/events on intake), attacked: a forged or tampered signature, a
timestamp outside the 5-minute replay window (old or ahead), an unknown producer, another
producer's token or secret, a request replayed. Each refused request stores nothing (no
webhook receipt, no outbox row) and publishes nothing (the upstream topics stay empty); the one
request that is properly signed at the edges of the window is the positive control."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from services.intake.api import signature
from tests.integration.test_fuzz_intake import _examples
from tests.support import Namespace, Stack, TopicReader, api, count, create_namespace, db, drop_namespace, manual_clock
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

SECRETS = {"dms": "dms-secret-sec-0123456789", "crm": "crm-secret-sec-0123456789"}
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
WINDOW = 300  # IntakeRules.webhook_max_age_seconds


@pytest.fixture
async def hook(infra: None) -> AsyncIterator[tuple[Namespace, Stack]]:
    ns = await create_namespace(webhook_secrets=",".join(f"{p}={s}" for p, s in SECRETS.items()))
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        yield ns, stack
    finally:
        await stack.stop()
        await drop_namespace(ns)


def _headers(body: bytes, *, producer: str = "dms", secret: str | None = None, timestamp: str | None = None,
             sign: bytes | None = None, sign_timestamp: str | None = None) -> dict[str, str]:
    """Headers as a producer sends them; `sign`/`sign_timestamp` sign something else than what is sent."""
    # wall time: intake checks a signature's timestamp against the real clock
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    secret = secret if secret is not None else SECRETS.get(producer, "no-secret")
    return {"X-Aftersales-Producer": producer, "X-Aftersales-Timestamp": timestamp,
            "X-Aftersales-Signature": signature(secret, sign_timestamp or timestamp, body if sign is None else sign),
            "Content-Type": "application/json"}


def _body(seed: int, n: int = 2) -> bytes:
    fleet = Fleet(seed=seed)
    return orjson.dumps([fleet.pickup(fleet.vehicle(NOW - timedelta(days=300)), NOW - timedelta(days=1, minutes=i))
                         for i in range(n)])


async def _stored_and_published(ns: Namespace) -> tuple[int, int, int]:
    conn = await db(ns, "intake")
    try:
        receipts = await conn.fetchval("SELECT count(*) FROM webhook_receipts")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()
    published = 0
    for topic in ("upstream.dms", "upstream.crm"):
        async with TopicReader(ns.settings, topic) as reader:
            await reader.wait_for(lambda r: True, settle=1.0)
        published += len(reader.records)
    return receipts, outbox, published


async def test_forged_stale_future_foreign_and_unknown_requests_are_refused_and_leave_no_trace(
    hook: tuple[Namespace, Stack],
) -> None:
    ns, stack = hook
    body = _body(1)
    other = _body(2)
    now = int(time.time())  # wall time: intake checks a signature's timestamp against the real clock
    cases: dict[str, tuple[dict[str, str], int, str]] = {
        "no signature at all": ({k: v for k, v in _headers(body).items() if k != "X-Aftersales-Signature"}, 422,
                                "x-aftersales-signature"),
        "a random signature": ({**_headers(body), "X-Aftersales-Signature": "sha256=" + "ab" * 32}, 401,
                               "signature does not match"),
        "the signature of another body": (_headers(body, sign=other), 401, "signature does not match"),
        "the body signed under another timestamp": (
            _headers(body, timestamp=str(now), sign_timestamp=str(now - 1)), 401, "signature does not match"),
        "a signature without its scheme": ({**_headers(body), "X-Aftersales-Signature":
                                            _headers(body)["X-Aftersales-Signature"].removeprefix("sha256=")}, 401,
                                           "signature does not match"),
        "the signature in upper case": ({**_headers(body), "X-Aftersales-Signature":
                                         _headers(body)["X-Aftersales-Signature"].upper()}, 401,
                                        "signature does not match"),
        "signed with the producer's secret plus a byte": (
            _headers(body, secret=SECRETS["dms"] + "x"), 401, "signature does not match"),
        "signed with another producer's secret": (_headers(body, secret=SECRETS["crm"]), 401,
                                                  "signature does not match"),
        "stale by a second over the window": (_headers(body, timestamp=str(now - WINDOW - 2)), 401, "stale timestamp"),
        "stale by a day": (_headers(body, timestamp=str(now - 86_400)), 401, "stale timestamp"),
        "from the future beyond the window": (_headers(body, timestamp=str(now + WINDOW + 2)), 401,
                                              "stale timestamp"),
        "from the far future": (_headers(body, timestamp="9" * 30), 401, "stale timestamp"),
        "a negative timestamp": (_headers(body, timestamp="-1"), 401, "stale timestamp"),
        "a timestamp in milliseconds": (_headers(body, timestamp=str(now * 1000)), 401, "stale timestamp"),
        "a timestamp with a fraction": (_headers(body, timestamp=f"{now}.5"), 401, "unix seconds"),
        "a timestamp as a date": (_headers(body, timestamp="2026-11-20T10:00:00Z"), 401, "unix seconds"),
        "an unknown producer": (_headers(body, producer="fleet-hq", secret="guess"), 401, "unknown producer"),
        "an empty producer": (_headers(body, producer=""), 401, "unknown producer"),
        "another producer, its own secret, but the dms token": (_headers(body, producer="crm"), 403,
                                                                "belongs to producer 'dms'"),
    }
    async with api(stack["intake"], "producer") as client:
        for label, (headers, status, fragment) in cases.items():
            response = await client.post("/v1/events", content=body, headers=headers)
            assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
            assert fragment in response.text.lower(), f"{label}: {response.text}"
    for role in ("agent", "supervisor", "quality", "ops", None):
        async with api(stack["intake"], role) as client:
            response = await client.post("/v1/events", content=body, headers=_headers(body))
        assert response.status_code == (401 if role is None else 403), f"{role}: {response.text}"
    assert await _stored_and_published(ns) == (0, 0, 0)


async def test_the_replay_window_is_five_minutes_either_way(hook: tuple[Namespace, Stack]) -> None:
    """Offsets drawn by hypothesis (derandomized): outside ±300 s refused, inside accepted."""
    ns, stack = hook
    outside = _examples(st.integers(min_value=WINDOW + 2, max_value=10**9).map(lambda s: s * (-1) ** (s % 2)), 12)
    inside = _examples(st.integers(min_value=-(WINDOW - 5), max_value=WINDOW - 5), 4)
    body = _body(3)
    async with api(stack["intake"], "producer") as client:
        for offset in outside:
            response = await client.post("/v1/events", content=body,
                                         headers=_headers(body, timestamp=str(int(time.time()) + offset)))
            assert response.status_code == 401 and "stale timestamp" in response.text, (offset, response.text)
        assert await _stored_and_published(ns) == (0, 0, 0)
        statuses: list[list[str]] = []
        for offset in inside:
            response = await client.post("/v1/events", content=body,
                                         headers=_headers(body, timestamp=str(int(time.time()) + offset)))
            assert response.status_code == 200, (offset, response.text)
            statuses.append([r["status"] for r in response.json()["results"]])
    # The first is taken; the same events again (a replay inside the window) change nothing.
    assert statuses == [["accepted", "accepted"]] + [["duplicate", "duplicate"]] * (len(inside) - 1)
    async with TopicReader(ns.settings, "aftersales.intake") as canonical:
        await canonical.wait_for(count("VehiclePickedUp", 2), timeout=60, settle=2.0)
    assert len(canonical.of_type("VehiclePickedUp")) == 2
    receipts, _, published = await _stored_and_published(ns)
    assert (receipts, published) == (2, 2)


async def test_a_captured_request_replayed_after_the_window_is_refused(hook: tuple[Namespace, Stack]) -> None:
    """What an eavesdropper holds: body and headers exactly as sent, just too late."""
    ns, stack = hook
    body = _body(4)
    captured: dict[str, Any] = _headers(body, timestamp=str(int(time.time()) - WINDOW - 1))
    async with api(stack["intake"], "producer") as client:
        response = await client.post("/v1/events", content=body, headers=captured)
    assert response.status_code == 401 and "stale timestamp" in response.text
    assert await _stored_and_published(ns) == (0, 0, 0)


async def test_a_request_replayed_inside_the_window_writes_nothing_new_not_even_its_rejected_events(
    hook: tuple[Namespace, Stack],
) -> None:
    """Issue 19: a captured request (headers and body exactly as sent) replayed within the window.
    One event of it is rejected: without de-duplication by signature it was dead-lettered again
    on every replay, under a fresh id each time."""
    ns, stack = hook
    events = orjson.loads(_body(5))
    events[1]["data"]["vin"] = "NOT-A-VIN"  # rejected: dead-lettered with the reason
    body = orjson.dumps(events)
    captured = _headers(body)
    async with api(stack["intake"], "producer") as client:
        first = await client.post("/v1/events", content=body, headers=captured)
        assert first.status_code == 200, first.text
        assert [r["status"] for r in first.json()["results"]] == ["accepted", "rejected"]
        async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
            await dead.wait_for(count("DeadLettered", 1), timeout=60, settle=1.0)
        before = await _stored_and_published(ns)
        assert (before[0], before[2]) == (1, 2), "one receipt and two upstream records after the first request"
        replays = [await client.post("/v1/events", content=body, headers=captured) for _ in range(3)]
    for replay in replays:
        assert replay.status_code == 200, replay.text
        assert replay.json()["accepted"] == 0 and replay.json()["rejected"] == 0 and replay.json()["duplicate"] == 2
        assert "same signature" in replay.json()["results"][1]["reason"]
    assert await _stored_and_published(ns) == before
    async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
        await dead.wait_for(count("DeadLettered", 1), timeout=30, settle=3.0)
    assert len(dead.of_type("DeadLettered")) == 1
    conn = await db(ns, "intake")
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhook_requests") == 1
    finally:
        await conn.close()
