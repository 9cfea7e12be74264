"""Helpers for the console's tests: a namespace with a console key pair, the console and the
services it calls running in this process, the console served on a real port for a browser,
staff accounts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from aftersales.infra import console_key_pair
from services.console import users
from services.console.tokens import person_token, signing_key
from shared.clock import Clock
from tests.support import Namespace, Stack, create_namespace, drop_namespace, eventually

__all__ = ["eventually"]  # the console tests' poll, the same as every test's
from tools.sandbox import free_port

PASSWORD = "correct horse battery"  # every test account's password (10+ characters)
STAFF = (("wang.fang", "王芳", "agent"), ("li.qiang", "李强", "agent"), ("liu.yang", "刘洋", "supervisor"),
         ("zhao.lei", "赵磊", "quality"))


async def console_namespace() -> Namespace:
    private, public = console_key_pair()
    return await create_namespace(console_signing_key=private, console_public_key=public)


@pytest.fixture
async def keyed_ns(infra: None) -> AsyncIterator[Namespace]:
    """A namespace with the console's signing key pair, so tests can sign people's tokens."""
    namespace = await console_namespace()
    try:
        yield namespace
    finally:
        await drop_namespace(namespace)


def as_person(ns: Namespace, stack: Stack, service: str, person: str, role: str, **scope: list[str]) -> httpx.AsyncClient:
    """A client carrying a console token for this person (as the console signs it)."""
    key = signing_key(ns.settings.console_signing_key.get_secret_value())
    token = person_token(key, person, role, 5, **scope)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stack[service].app), base_url="http://test",
                             headers={"Authorization": f"Bearer {token}"})


class InProcess(httpx.AsyncBaseTransport):
    """The console's way to a service running in this process (resolved on each request)."""

    def __init__(self, stack: Stack, service: str) -> None:
        self.stack = stack
        self.service = service

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self.stack[self.service].app).handle_async_request(request)


def console_stack(ns: Namespace, clock: Clock, services: tuple[str, ...] = ("intake", "followup", "complaints"),
                  **state: Any) -> Stack:
    """The services, then the console calling them in process."""
    stack = Stack(ns, clock, services=(*services, "console"))
    stack.state = {"console": {"transports": {name: InProcess(stack, name) for name in services}, **state}}
    return stack


async def add_staff(ns: Namespace) -> None:
    for username, name, role in STAFF:
        await users.add(ns.settings, username, name, role, PASSWORD)


@contextlib.asynccontextmanager
async def served(stack: Stack) -> AsyncIterator[str]:
    """The console on a free loopback port (for a real browser); yields its base URL."""
    port = free_port()
    server = _Server(uvicorn.Config(stack["console"].app, host="127.0.0.1", port=port, log_config=None,
                                    access_log=False, lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class _Server(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving the signals alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def browser_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=20)


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in as a browser would: the form's token from the page, then the post."""
    page = await client.get("/sign-in")
    token = csrf_of(page.text)
    return await client.post("/sign-in", data={"username": username, "password": password, "csrf_token": token,
                                                "next": "/desk"})


def csrf_of(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)
