"""Idempotency-Key on every POST (shared/api.py), on the real Postgres: a retried request is done
once, a reused key with another body is refused, a request still running answers 409, and a
failure is forgotten so the retry does the work."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from shared.clock import ManualClock
from shared.http import Principal, create_app, require
from shared.runtime import ServiceDefinition
from shared.settings import Settings
from tests.support import TEST_NOW, Namespace

MIGRATION = Path(__file__).resolve().parents[2] / "shared" / "migrations" / "0010_http_idempotency.sql"


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    definition: ServiceDefinition = field(
        default_factory=lambda: ServiceDefinition(name="intake", description="test", migrations=None))
    clock: ManualClock = field(default_factory=lambda: ManualClock(TEST_NOW))

    async def readiness(self) -> dict[str, str]:
        return {"postgres": "ok", "kafka": "ok"}


class Created(BaseModel):
    thing_id: str
    name: str


@pytest.fixture
async def made(ns: Namespace) -> AsyncIterator[tuple[httpx.AsyncClient, list[str], asyncio.Event, Runtime]]:
    schema = f"idem_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ns.settings.database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    await admin.execute(f"SET search_path TO {schema}")
    await admin.execute(MIGRATION.read_text())
    pool = await asyncpg.create_pool(ns.settings.database_url, min_size=1, max_size=4,
                                     server_settings={"search_path": schema})
    assert pool is not None
    things: list[str] = []
    release = asyncio.Event()
    router = APIRouter()

    @router.post("/v1/things", response_model=Created, status_code=201)
    async def create(body: dict[str, Any], who: Principal = require("agent")) -> Created:
        if body.get("wait"):
            await release.wait()
        if body.get("fail"):
            raise HTTPException(409, "refused this time")
        if body.get("crash"):
            raise RuntimeError("a bug")
        things.append(body["name"])
        return Created(thing_id=f"T-{len(things)}", name=body["name"])

    settings = Settings(api_tokens="a-token=agent:a1,b-token=agent:b1")  # type: ignore[arg-type]
    runtime = Runtime(settings, pool)
    app = create_app(runtime, router)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                 headers={"Authorization": "Bearer a-token"}) as client:
        yield client, things, release, runtime
    await pool.close()
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    await admin.close()


async def test_a_retried_post_is_done_once_and_answered_the_same(made: Any) -> None:
    client, things, _, _ = made
    key = {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/things", json={"name": "王芳"}, headers=key)
    again = await client.post("/v1/things", json={"name": "王芳"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"thing_id": "T-1", "name": "王芳"}
    assert again.headers["idempotency-replayed"] == "true" and "idempotency-replayed" not in first.headers
    assert things == ["王芳"], "the retry did not create a second thing"
    # Without a key, or with another key, each request is its own.
    await client.post("/v1/things", json={"name": "王芳"})
    await client.post("/v1/things", json={"name": "王芳"}, headers={"Idempotency-Key": "k-2"})
    assert len(things) == 3
    # The key is the caller's: another credential's same key is another request.
    other = await client.post("/v1/things", json={"name": "王芳"},
                              headers={**key, "Authorization": "Bearer b-token"})
    assert other.status_code == 201 and "idempotency-replayed" not in other.headers and len(things) == 4


async def test_a_key_reused_for_another_body_is_refused_and_does_nothing(made: Any) -> None:
    client, things, _, _ = made
    key = {"Idempotency-Key": "k-reuse"}
    assert (await client.post("/v1/things", json={"name": "李雷"}, headers=key)).status_code == 201
    reused = await client.post("/v1/things", json={"name": "韩梅梅"}, headers=key)
    assert reused.status_code == 422 and reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"] == "urn:aftersales:problem:idempotency-key-reused"
    assert things == ["李雷"]
    too_long = await client.post("/v1/things", json={"name": "x"}, headers={"Idempotency-Key": "k" * 300})
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "header.Idempotency-Key"


async def test_a_request_still_running_makes_its_retry_wait_with_409(made: Any) -> None:
    client, things, release, _ = made
    key = {"Idempotency-Key": "k-slow"}
    slow = asyncio.create_task(client.post("/v1/things", json={"name": "慢", "wait": True}, headers=key))
    for _ in range(100):
        await asyncio.sleep(0.02)
        meanwhile = await client.post("/v1/things", json={"name": "慢", "wait": True}, headers=key)
        if meanwhile.status_code == 409:
            break
    assert meanwhile.status_code == 409 and meanwhile.headers["retry-after"] == "1"
    release.set()
    assert (await slow).status_code == 201
    after = await client.post("/v1/things", json={"name": "慢", "wait": True}, headers=key)
    assert after.status_code == 201 and after.headers["idempotency-replayed"] == "true" and things == ["慢"]


async def test_a_refusal_or_a_failure_is_not_kept_so_the_retry_does_the_work(made: Any) -> None:
    client, things, _, runtime = made
    key = {"Idempotency-Key": "k-fail"}
    refused = await client.post("/v1/things", json={"name": "张三", "fail": True}, headers=key)
    assert refused.status_code == 409 and refused.json()["detail"] == "refused this time"
    crashed = await client.post("/v1/things", json={"name": "张三", "crash": True}, headers={"Idempotency-Key": "k-c"})
    assert crashed.status_code == 500
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM http_idempotency") == 0, "nothing kept of either"
    done = await client.post("/v1/things", json={"name": "张三"}, headers={"Idempotency-Key": "k-c"})
    assert done.status_code == 201 and "idempotency-replayed" not in done.headers and things == ["张三"]


async def test_a_stored_answer_expires_after_a_day_by_the_services_clock(made: Any) -> None:
    from datetime import timedelta

    client, things, _, runtime = made
    key = {"Idempotency-Key": "k-old"}
    assert (await client.post("/v1/things", json={"name": "旧"}, headers=key)).status_code == 201
    runtime.clock.advance(timedelta(hours=25))
    fresh = await client.post("/v1/things", json={"name": "旧"}, headers=key)  # a POST with a key sweeps first
    assert fresh.status_code == 201 and "idempotency-replayed" not in fresh.headers and things == ["旧", "旧"]
