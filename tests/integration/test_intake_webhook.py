"""The signed webhook for producers that cannot write to Kafka, on the real broker and
database: refused requests store and publish nothing; accepted events take exactly the Kafka
path (same validation, same dedup, same dead-letter record)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import orjson
import pytest

from services.intake.api import signature
from tests.support import Namespace, Stack, TopicReader, api, count, create_namespace, db, drop_namespace, manual_clock
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra

SECRETS = "dms=dms-secret-0123456789,crm=crm-secret-0123456789"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)


@pytest.fixture
async def hook(infra: None) -> AsyncIterator[tuple[Namespace, Stack]]:
    ns = await create_namespace(webhook_secrets=SECRETS, http_max_body_bytes=1024 * 1024)
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=("intake",)).start()
    try:
        yield ns, stack
    finally:
        await stack.stop()
        await drop_namespace(ns)


def _signed(body: bytes, *, producer: str = "dms", secret: str = "dms-secret-0123456789",
            at: float | None = None) -> dict[str, str]:
    # wall time: intake checks a signature's timestamp against the real clock
    timestamp = str(int(at if at is not None else time.time()))
    return {"X-Aftersales-Producer": producer, "X-Aftersales-Timestamp": timestamp,
            "X-Aftersales-Signature": signature(secret, timestamp, body), "Content-Type": "application/json"}


def _pickups(n: int, seed: int = 41) -> list[dict]:
    fleet = Fleet(seed=seed)
    return [fleet.pickup(fleet.vehicle(NOW - timedelta(days=300)), NOW - timedelta(days=2, minutes=i)) for i in range(n)]


async def _nothing_stored_or_published(ns: Namespace) -> None:
    conn = await db(ns, "intake")
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhook_receipts") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()
    async with TopicReader(ns.settings, "upstream.dms") as upstream:
        await upstream.wait_for(lambda r: True, settle=1.0)
    assert upstream.records == []


async def test_refused_requests_say_why_and_store_and_publish_nothing(hook: tuple[Namespace, Stack]) -> None:
    ns, stack = hook
    body = orjson.dumps(_pickups(2))
    async with api(stack["intake"], "producer") as client:
        cases = {
            "bad signature": await client.post("/v1/events", content=body, headers={
                **_signed(body), "X-Aftersales-Signature": "sha256=" + "0" * 64}),
            "stale timestamp": await client.post("/v1/events", content=body,
                                                 headers=_signed(body, at=time.time() - 600)),
            "unknown producer": await client.post("/v1/events", content=body,
                                                  headers=_signed(body, producer="fleet-hq", secret="x")),
            "signed with another producer's secret": await client.post(
                "/v1/events", content=body, headers=_signed(body, secret="crm-secret-0123456789")),
            "oversized body": await client.post("/v1/events", content=b"[" + b" " * 1_200_000 + b"]",
                                                headers=_signed(b"[]")),
            "malformed JSON": await client.post("/v1/events", content=b"[{oops", headers=_signed(b"[{oops")),
            "not an array": await client.post("/v1/events", content=b'{"a": 1}', headers=_signed(b'{"a": 1}')),
        }
        too_many = orjson.dumps(_pickups(501))
        cases["more than 500 events"] = await client.post("/v1/events", content=too_many, headers=_signed(too_many))
        crm = orjson.dumps([])
        cases["a token of another producer"] = await client.post(
            "/v1/events", content=crm, headers=_signed(crm, producer="crm", secret="crm-secret-0123456789"))
    async with api(stack["intake"]) as anonymous:
        cases["no token"] = await anonymous.post("/v1/events", content=body, headers=_signed(body))
    async with api(stack["intake"], "agent") as agent:
        cases["an agent's token"] = await agent.post("/v1/events", content=body, headers=_signed(body))

    expected = {
        "bad signature": (401, "signature does not match"),
        "stale timestamp": (401, "stale timestamp"),
        "unknown producer": (401, "unknown producer 'fleet-hq'"),
        "signed with another producer's secret": (401, "signature does not match"),
        "oversized body": (413, "larger than the limit"),
        "malformed JSON": (422, "not JSON"),
        "not an array": (422, "JSON array"),
        "more than 500 events": (422, "at most 500"),
        "a token of another producer": (403, "belongs to producer 'dms', not 'crm'"),
        "no token": (401, "bearer"),
        "an agent's token": (403, "role 'agent'"),
    }
    for label, response in cases.items():
        status, fragment = expected[label]
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        assert fragment.lower() in response.json()["detail"].lower(), f"{label}: {response.json()['detail']}"
    await _nothing_stored_or_published(ns)


async def test_a_good_batch_with_one_bad_event_accepts_the_others_and_reports_the_bad_one(
    hook: tuple[Namespace, Stack],
) -> None:
    ns, stack = hook
    events = _pickups(3, seed=42)
    events[1]["data"]["vin"] = events[1]["data"]["vin"][:16]
    body = orjson.dumps(events)
    async with api(stack["intake"], "producer") as client:
        first = await client.post("/v1/events", content=body, headers=_signed(body))
        # sent again, signed anew (the identical signed request again is a replay: test_security_webhook.py)
        again = await client.post("/v1/events", content=body, headers=_signed(body, at=time.time() - 30))
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["accepted"], report["duplicate"], report["rejected"]) == (2, 0, 1)
    bad = report["results"][1]
    assert bad["status"] == "rejected" and bad["event_id"] == events[1]["event_id"]
    assert "data.vin" in bad["reason"] and "16 characters" in bad["reason"]
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "rejected", "duplicate"]

    # The accepted events follow the Kafka path: canonical events, once each.
    async with TopicReader(ns.settings, "aftersales.intake") as canonical:
        await canonical.wait_for(count("VehiclePickedUp", 2), timeout=60, settle=2.0)
    assert sorted(str(r.envelope.causation_id) for r in canonical.of_type("VehiclePickedUp")) == sorted(  # type: ignore[union-attr]
        [events[0]["event_id"], events[2]["event_id"]])
    # The rejected one is dead-lettered with the same record as if it had come on Kafka (twice: it was sent twice).
    async with TopicReader(ns.settings, "aftersales.deadletter") as dead:
        await dead.wait_for(count("DeadLettered", 2), timeout=60, settle=1.0)
    letters = dead.of_type("DeadLettered")
    assert len(letters) == 2
    for letter in letters:
        assert letter.data["topic"] == "upstream.dms" and letter.data["service"] == "intake"
        assert letter.data["original_event_id"] == events[1]["event_id"]
        assert letter.data["reason"] == bad["reason"]
