"""Bearer tokens by role, body-size limits, and the operations endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import httpx
from fastapi import APIRouter, Request

from shared.clock import ManualClock
from shared.errors import DatabaseUnavailable
from shared.http import Principal, create_app, require
from shared.runtime import ServiceDefinition
from shared.settings import Settings


@dataclass
class FakeRuntime:
    settings: Settings
    definition: ServiceDefinition = field(
        default_factory=lambda: ServiceDefinition(name="intake", description="test", migrations=None)
    )
    ready: bool = True
    clock: ManualClock = field(default_factory=lambda: ManualClock(datetime(2026, 11, 20, 2, 0, tzinfo=UTC)))

    async def readiness(self) -> dict[str, str]:
        return {"postgres": "ok", "kafka": "ok" if self.ready else "unreachable: KafkaConnectionError"}


def _app(ready: bool = True) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/v1/queue")
    async def queue(who: Principal = require("agent", "supervisor")) -> dict[str, str]:
        return {"role": who.role, "subject": who.subject}

    @router.get("/v1/down")
    async def down(what: str) -> dict[str, str]:
        if what == "database":
            raise DatabaseUnavailable("connection refused")
        if what == "connection":
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        raise ValueError("a bug")

    @router.post("/v1/echo")
    async def echo(request: Request, who: Principal = require("producer")) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    settings = Settings(api_tokens="agent-token=agent:alice,quality-token=quality:q1,producer-token=producer:dms",  # type: ignore[arg-type]
                        http_max_body_bytes=2048)
    runtime = FakeRuntime(settings, ready=ready)
    definition = runtime.definition
    definition.router = lambda: router
    app = create_app(runtime, router)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_no_token_is_401_with_a_hint() -> None:
    async with _app() as client:
        response = await client.get("/v1/queue")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"] and response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_token_is_401() -> None:
    async with _app() as client:
        response = await client.get("/v1/queue", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_the_wrong_role_is_403_and_says_who_may() -> None:
    async with _app() as client:
        response = await client.get("/v1/queue", headers={"Authorization": "Bearer quality-token"})
    assert response.status_code == 403
    assert response.json()["detail"] == "role 'quality' may not use this endpoint; it is for: agent, supervisor"


async def test_the_right_role_passes_with_its_subject() -> None:
    async with _app() as client:
        response = await client.get("/v1/queue", headers={"Authorization": "Bearer agent-token"})
    assert response.status_code == 200 and response.json() == {"role": "agent", "subject": "alice"}


async def test_bodies_over_the_limit_are_413_even_without_content_length() -> None:
    headers = {"Authorization": "Bearer producer-token"}
    async with _app() as client:
        small = await client.post("/v1/echo", content=b"x" * 100, headers=headers)
        large = await client.post("/v1/echo", content=b"x" * 5000, headers=headers)

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"y" * 1000

        streamed = await client.post("/v1/echo", content=chunks(), headers=headers)
    assert small.status_code == 200 and small.json() == {"bytes": 100}
    assert large.status_code == 413 and "2048 bytes" in large.json()["detail"]
    assert streamed.status_code == 413


async def test_health_ready_and_metrics_are_served() -> None:
    async with _app() as client:
        assert (await client.get("/health")).json() == {"status": "ok", "service": "intake"}
        assert (await client.get("/ready")).status_code == 200
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "aftersales_events_consumed_total" in metrics.text
    async with _app(ready=False) as client:
        not_ready = await client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["kafka"].startswith("unreachable")


async def test_a_database_outage_is_503_with_retry_after_and_a_bug_is_still_500() -> None:
    async with _app() as client:
        for what in ("database", "connection"):
            r = await client.get("/v1/down", params={"what": what})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert "temporarily unavailable" in r.json()["detail"]
    transport = httpx.ASGITransport(app=_app()._transport.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/down", params={"what": "bug"})).status_code == 500
