"""Issue 19: bad bearer tokens are rate-limited per client address (429 with Retry-After), on the
service's clock; the limiter's window, its reset on success and its memory bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import APIRouter

from shared.clock import ManualClock
from shared.http import Principal, create_app, require
from shared.ratelimit import FailureLimiter, client_address
from shared.settings import Settings
from tests.unit.test_http import FakeRuntime

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_the_limit_th_failure_in_the_window_refuses_until_the_oldest_leaves_it() -> None:
    limiter = FailureLimiter(3, timedelta(minutes=5))
    assert limiter.failed("10.0.0.1", T0) is None
    assert limiter.failed("10.0.0.1", T0 + timedelta(minutes=1)) is None
    assert limiter.failed("10.0.0.1", T0 + timedelta(minutes=2)) == 180  # T0 + 5 min - (T0 + 2 min)
    assert limiter.retry_after("10.0.0.1", T0 + timedelta(minutes=4, seconds=59)) == 1
    assert limiter.retry_after("10.0.0.1", T0 + timedelta(minutes=5)) is None, "the first failure left the window"
    assert limiter.retry_after("10.0.0.2", T0 + timedelta(minutes=2)) is None, "another address is not affected"


def test_a_success_forgets_the_failures_and_memory_stays_bounded() -> None:
    limiter = FailureLimiter(2, timedelta(minutes=5), max_keys=100)
    limiter.failed("a", T0)
    limiter.succeeded("a")
    assert limiter.failed("a", T0) is None
    for n in range(1000):
        limiter.failed(f"10.1.{n // 256}.{n % 256}", T0 + timedelta(seconds=n))
    assert len(limiter._failures) <= 100


def test_the_client_address_comes_from_forwarded_for_only_behind_a_trusted_proxy() -> None:
    assert client_address(("10.0.0.9", 5000), "1.2.3.4, 10.0.0.1", trust_proxy=False) == "10.0.0.9"
    assert client_address(("10.0.0.9", 5000), "1.2.3.4, 10.0.0.1", trust_proxy=True) == "1.2.3.4"
    assert client_address(None, None, trust_proxy=True) == "unknown"


async def test_bad_tokens_from_one_address_get_429_with_retry_after_even_for_the_right_token_then() -> None:
    router = APIRouter()

    @router.get("/v1/queue")
    async def queue(who: Principal = require("agent")) -> dict[str, str]:
        return {"subject": who.subject}

    clock = ManualClock(T0)
    settings = Settings(_env_file=None, api_tokens="agent-token=agent:alice",  # type: ignore[call-arg]
                        auth_failures_per_client=5, auth_failure_window_seconds=60)
    runtime = FakeRuntime(settings, clock=clock)
    runtime.definition.router = lambda: router
    app = create_app(runtime, router)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    other = httpx.ASGITransport(app=app, client=("203.0.113.8", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client, \
            httpx.AsyncClient(transport=other, base_url="http://test") as neighbour:
        statuses = [(await client.get("/v1/queue", headers={"Authorization": f"Bearer guess-{n}"})).status_code
                    for n in range(4)]
        assert statuses == [401] * 4
        assert (await client.get("/v1/queue")).status_code == 401, "a missing token is no guess"
        fifth = await client.get("/v1/queue", headers={"Authorization": "Bearer guess-5"})
        assert fifth.status_code == 429 and fifth.headers["retry-after"] == "60"
        assert "too many requests with a bad bearer token" in fifth.json()["detail"]
        clock.advance(timedelta(seconds=20))
        right = await client.get("/v1/queue", headers={"Authorization": "Bearer agent-token"})
        assert right.status_code == 429 and right.headers["retry-after"] == "40", "refused until the window passes"
        assert (await neighbour.get("/v1/queue", headers={"Authorization": "Bearer agent-token"})).status_code == 200
        clock.advance(timedelta(seconds=40))
        again = await client.get("/v1/queue", headers={"Authorization": "Bearer agent-token"})
        assert again.status_code == 200 and again.json() == {"subject": "alice"}
