"""Issue 19 on a real service process (`aftersales serve intake` on the real broker and database,
over TCP): bad bearer tokens from one address are answered 429 with Retry-After once the limit is
reached, the right token included, until the window passes; the weak test secrets pass start-up
only because the namespace is loopback with the development flag, and the same process bound to
all interfaces refuses to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import API_TOKENS, TOKENS, Namespace
from tools.sandbox import ServiceProcess

pytestmark = pytest.mark.infra


@pytest.fixture
def intake(ns: Namespace, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(ns, "intake", tmp_path, AFTERSALES_API_TOKENS=API_TOKENS,
                             AFTERSALES_AUTH_FAILURES_PER_CLIENT="5", AFTERSALES_AUTH_FAILURE_WINDOW_SECONDS="120")
    process.start().wait_ready()
    try:
        yield process
    finally:
        process.terminate()


def test_the_fifth_bad_token_from_an_address_gets_429_and_the_right_token_waits_too(intake: ServiceProcess) -> None:
    url = f"http://127.0.0.1:{intake.port}/v1/customers/incomplete"
    with httpx.Client(timeout=10) as client:
        assert client.get(url, headers={"Authorization": f"Bearer {TOKENS['agent']}"}).status_code == 200
        guesses = [client.get(url, headers={"Authorization": f"Bearer guess-{n}"}) for n in range(5)]
        assert [g.status_code for g in guesses] == [401, 401, 401, 401, 429]
        refused = guesses[-1]
        assert 110 <= int(refused.headers["retry-after"]) <= 120
        assert "too many requests with a bad bearer token from this address (5 within 120 s)" in refused.json()["detail"]
        right = client.get(url, headers={"Authorization": f"Bearer {TOKENS['agent']}"})
        assert right.status_code == 429 and int(right.headers["retry-after"]) <= 120
        assert client.get(f"http://127.0.0.1:{intake.port}/health").status_code == 200, "health stays open"


def test_the_same_weak_secrets_are_refused_when_the_service_listens_on_every_interface(
    ns: Namespace, tmp_path: Path
) -> None:
    process = ServiceProcess(ns, "intake", tmp_path, AFTERSALES_API_TOKENS=API_TOKENS,
                             AFTERSALES_HTTP_HOST="0.0.0.0").start()
    assert process.wait_exit(timeout=60) == 78
    log = process.tail()
    assert "refusing to start with default, placeholder or short secrets" in log
    assert "only applies while AFTERSALES_HTTP_HOST and AFTERSALES_KAFKA_BOOTSTRAP are loopback" in log
