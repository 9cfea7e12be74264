"""Issue 19: failed sign-ins to the console are limited per computer (client address) across
accounts, on the console's clock: password spraying gets 429 with Retry-After and a page that says
how long to wait (zh-CN), while the per-account lock-out stays as it was. Real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from shared.clock import ManualClock
from tests.console_support import PASSWORD, STAFF, add_staff, console_namespace, console_stack, sign_in
from tests.support import Namespace, Stack, drop_namespace, manual_clock

pytestmark = pytest.mark.infra


@pytest.fixture
async def console(infra: None) -> AsyncIterator[tuple[Namespace, Stack, ManualClock]]:
    ns = await console_namespace()
    clock = manual_clock("2026-11-20T10:00:00+08:00")
    stack = await console_stack(ns, clock, services=()).start(consume=False)
    try:
        await add_staff(ns)
        yield ns, stack, clock
    finally:
        await stack.stop()
        await drop_namespace(ns)


def _from(stack: Stack, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=stack["console"].app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_ten_failed_sign_ins_from_one_computer_across_accounts_then_429_until_the_window_passes(
        console: tuple[Namespace, Stack, ManualClock]) -> None:
    _, stack, clock = console
    accounts = [username for username, *_ in STAFF]
    async with _from(stack, "192.0.2.10") as sprayer, _from(stack, "192.0.2.11") as colleague:
        results = [await sign_in(sprayer, accounts[n % len(accounts)], f"guess number {n}") for n in range(10)]
        assert [r.status_code for r in results[:9]] == [303] * 9
        assert all("error=wrong" in r.headers["location"] for r in results[:9]), "no account reached its lock-out"
        tenth = results[9]
        assert tenth.status_code == 429 and tenth.headers["retry-after"] == str(15 * 60)
        assert "这台电脑登录失败次数过多，请 15 分钟后再试。" in tenth.text
        clock.advance(timedelta(minutes=10))
        right = await sign_in(sprayer, "wang.fang", PASSWORD)
        assert right.status_code == 429 and right.headers["retry-after"] == str(5 * 60), "even the right password waits"
        assert "aftersales_session" not in right.headers.get("set-cookie", "")
        assert (await sign_in(colleague, "liu.yang", PASSWORD)).headers["location"] == "/desk", "other computers sign in"
        clock.advance(timedelta(minutes=5))
        assert (await sign_in(sprayer, "wang.fang", PASSWORD)).headers["location"] == "/desk"
