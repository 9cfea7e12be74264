"""HTTP latency per route: every request is timed into aftersales_http_request_seconds under its
route template (never the raw path, so ids do not multiply the series), scraped from /metrics
like every other metric."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families

from shared.clock import ManualClock
from shared.http import create_app
from shared.runtime import ServiceDefinition
from shared.settings import Settings

SERVICE = "latency-probe"  # a service name of its own, so other tests' requests do not count here
TEMPLATE = "/v1/things/{thing_id}"


@dataclass
class FakeRuntime:
    settings: Settings
    definition: ServiceDefinition = field(
        default_factory=lambda: ServiceDefinition(name=SERVICE, description="test", migrations=None)
    )
    clock: ManualClock = field(default_factory=lambda: ManualClock(datetime(2026, 11, 20, 2, 0, tzinfo=UTC)))

    async def readiness(self) -> dict[str, str]:
        return {"postgres": "ok", "kafka": "ok"}


def _client() -> httpx.AsyncClient:
    router = APIRouter()

    @router.get(TEMPLATE)
    async def thing(thing_id: str) -> dict[str, str]:
        await asyncio.sleep(0.03)  # at least 30 ms: lands above the 25 ms bucket, whatever the machine's load
        return {"id": thing_id}

    app = create_app(FakeRuntime(Settings()), router)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _histogram(text: str) -> dict[tuple[str, str, str], float]:
    """(sample name, route, le) -> value for this test's service in aftersales_http_request_seconds."""
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "aftersales_http_request_seconds":
            continue
        assert family.type == "histogram"
        for sample in family.samples:
            if sample.labels.get("service") == SERVICE:
                found[(sample.name, sample.labels["route"], sample.labels.get("le", ""))] = sample.value
    return found


async def test_a_request_is_timed_under_its_route_template_not_its_path() -> None:
    async with _client() as client:
        before = _histogram((await client.get("/metrics")).text)
        for thing_id in ("A-1001", "B-2002"):
            assert (await client.get(f"/v1/things/{thing_id}")).status_code == 200
        after = _histogram((await client.get("/metrics")).text)

    def grew(name: str, le: str = "") -> float:
        key = (f"aftersales_http_request_seconds{name}", TEMPLATE, le)
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("_count") == 2, after
    assert grew("_sum") >= 0.06  # two requests of at least 30 ms each
    assert grew("_bucket", "0.025") == 0 and grew("_bucket", "+Inf") == 2
    routes = {route for _, route, _ in after}
    assert not any("A-1001" in r or "B-2002" in r for r in routes), f"a raw path became a label: {routes}"


async def test_paths_no_route_serves_share_one_series() -> None:
    async with _client() as client:
        before = _histogram((await client.get("/metrics")).text)
        for path in ("/nothing/here", "/nor/here/42"):
            assert (await client.get(path)).status_code == 404
        text = (await client.get("/metrics")).text
    after = _histogram(text)
    key = ("aftersales_http_request_seconds_count", "unmatched", "")
    assert after[key] - before.get(key, 0.0) == 2
    assert "/nothing/here" not in text and "/nor/here/42" not in text
    # The existing request counter is still there, with the status beside the same template.
    assert f'aftersales_http_requests_total{{method="GET",route="unmatched",service="{SERVICE}",status="404"}}' in text
