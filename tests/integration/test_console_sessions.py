"""The console's sessions on the real database: cookie attributes (HttpOnly, SameSite, Secure
unless the console is reached on the loopback address), the sign-in form's own CSRF token,
htmx requests carrying the token in a header, sign-out ending the session for good, and the
lock-out ended by `aftersales console users unlock`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.console import users
from tests.console_support import PASSWORD, add_staff, console_namespace, console_stack, csrf_of, sign_in
from tests.support import Namespace, Stack, drop_namespace, manual_clock

pytestmark = pytest.mark.infra


@pytest.fixture
async def console(infra: None) -> AsyncIterator[tuple[Namespace, Stack]]:
    ns = await console_namespace()
    stack = await console_stack(ns, manual_clock("2026-11-20T10:00:00+08:00"), services=()).start(consume=False)
    try:
        await add_staff(ns)
        yield ns, stack
    finally:
        await stack.stop()
        await drop_namespace(ns)


def _client(stack: Stack, host: str, scheme: str = "http") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stack["console"].app), base_url=f"{scheme}://{host}")


async def test_the_session_cookie_is_httponly_samesite_and_secure_outside_loopback(
        console: tuple[Namespace, Stack]) -> None:
    _, stack = console
    async with _client(stack, "127.0.0.1:8000") as local, _client(stack, "console.dealer-group.cn", "https") as remote:
        for client, secure in ((local, False), (remote, True)):
            signed = await sign_in(client, "wang.fang")
            assert signed.status_code == 303, signed.text
            cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("aftersales_session="))
            attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
            assert {"httponly", "samesite", "path"} <= attributes
            assert "samesite=strict" in cookie.lower()
            assert ("secure" in attributes) is secure, cookie
    async with _client(stack, "console.dealer-group.cn") as plain:
        refused = await sign_in(plain, "wang.fang")
        assert refused.status_code == 403, "over plain HTTP to another host the Secure form cookie never returns"


async def test_signing_in_needs_the_forms_own_token(console: tuple[Namespace, Stack]) -> None:
    _, stack = console
    async with _client(stack, "127.0.0.1") as client:
        await client.get("/sign-in")
        forged = await client.post("/sign-in", data={"username": "wang.fang", "password": PASSWORD})
        assert forged.status_code == 403 and "安全令牌缺失或已过期" in forged.text
        assert "aftersales_session" not in forged.headers.get("set-cookie", "")


async def test_htmx_requests_carry_the_token_in_a_header_and_sign_out_ends_the_session(
        console: tuple[Namespace, Stack]) -> None:
    _, stack = console
    async with _client(stack, "127.0.0.1") as client:
        await sign_in(client, "liu.yang")
        page = await client.get("/search")
        token = csrf_of(page.text)
        switched = await client.post("/language", data={"locale": "en", "back": "/search"},
                                     headers={"X-CSRF-Token": token, "HX-Request": "true"})
        assert switched.status_code == 303
        assert "Find a customer" in (await client.get("/search")).text, "the account reads English now"
        session = client.cookies["aftersales_session"]
        out = await client.post("/sign-out", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/sign-in"
        client.cookies.set("aftersales_session", session)  # the old cookie, kept by someone
        again = await client.get("/search")
        assert again.status_code == 303 and again.headers["location"].startswith("/sign-in"), "the session is over"


async def test_a_locked_account_signs_in_again_once_unlocked(console: tuple[Namespace, Stack]) -> None:
    ns, stack = console
    async with _client(stack, "127.0.0.1") as client:
        for _ in range(5):
            refused = await sign_in(client, "li.qiang", "wrong password!")
        assert "error=locked" in refused.headers["location"]
        assert "error=locked" in (await sign_in(client, "li.qiang")).headers["location"]
        await users.unlock(ns.settings, "li.qiang")
        assert (await sign_in(client, "li.qiang")).headers["location"] == "/desk"
        listed = {a["username"]: a for a in await users.listing(ns.settings)}
        assert listed["li.qiang"]["failed_attempts"] == 0 and listed["li.qiang"]["locked_until"] is None
