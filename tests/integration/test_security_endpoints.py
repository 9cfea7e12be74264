"""Every HTTP endpoint of every service refuses a request without a valid bearer token (401)
and a token of a role the endpoint is not for (403).

The endpoints come from each service's OpenAPI document (`ServiceRuntime(...).app.openapi()`),
not from a list kept here, so a new route is covered the day it is added. The roles an
endpoint admits are read from its `require(...)` dependency, and checked against what the
running endpoint does with each role's token (agent, agent2, supervisor, quality, ops,
producer): a role outside the declared ones gets 403 with the role named, a role inside gets
past the door (whatever the handler then answers: 200, 404, 422 …).

Deliberately public, and so excepted (each checked to answer without a token):
- /health: the liveness probe of the orchestrator (says "ok" and the service name, nothing else);
- /ready: the readiness probe (which dependency is unreachable, no data);
- /metrics: the Prometheus scrape (counters and gauges; no personal data, see shared/metrics.py);
- /docs, /docs/oauth2-redirect, /redoc, /openapi.json: the API description, no data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from services import load
from shared.http import ROLES
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES
from tests.complaints_fixtures import complaints_state
from tests.support import TOKENS, Namespace, Stack, api, manual_clock

pytestmark = pytest.mark.infra

PUBLIC = {"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
METHODS = ("get", "post", "put", "patch", "delete")


def operations(runtime: ServiceRuntime) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the service's OpenAPI document."""
    document = runtime.app.openapi()
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()
            if method in METHODS]


def sample_path(path: str, op: dict[str, Any]) -> str:
    """The path with a plausible value for each path parameter (its enum's first, a UUID, or text)."""
    for param in op.get("parameters", []):
        if param["in"] != "path":
            continue
        schema = param.get("schema", {})
        choices = [s for s in [schema, *schema.get("anyOf", [])] if "enum" in s or s.get("format") == "uuid"]
        if choices and "enum" in choices[0]:
            value = str(choices[0]["enum"][0])
        elif choices:
            value = str(uuid.uuid4())
        else:
            value = "probe-1"
        path = path.replace("{" + param["name"] + "}", value)
    return path


def served_routes(routes: list[Any], prefix: str = "", dependencies: tuple[Any, ...] = ()
                  ) -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(full path, route, dependencies added by include_router) of every route the app serves,
    through the routers it includes (FastAPI keeps those as nested router objects)."""
    found: list[tuple[str, Any, tuple[Any, ...]]] = []
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None and hasattr(route, "original_router"):
            found += served_routes(route.original_router.routes, prefix + context.prefix,
                                   (*dependencies, *context.dependencies))
        else:
            found.append((prefix + route.path, route, dependencies))
    return found


def declared_roles(runtime: ServiceRuntime, method: str, path: str) -> list[tuple[str, ...]]:
    """The roles of each `require(...)` dependency of the route (read from its closure)."""
    [(route, included)] = [(r, d) for p, r, d in served_routes(runtime.app.routes)
                           if isinstance(r, APIRoute) and p == path and method.upper() in r.methods]
    calls = [d.dependency for d in included]
    found: list[tuple[str, ...]] = []

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            calls.append(sub.call)
            walk(sub)

    walk(route.dependant)
    for call in calls:
        if getattr(call, "__qualname__", "").startswith("require.<locals>."):
            cells = dict(zip(call.__code__.co_freevars, call.__closure__ or (), strict=True))
            found.append(tuple(cells["allowed"].cell_contents))
    return found


@pytest.fixture
async def stack(ns: Namespace, tmp_path: Path) -> AsyncIterator[Stack]:
    # The handlers of admitted roles run against the real database; nothing needs to be consumed.
    running = await Stack(ns, manual_clock(), services=SERVICES, state=complaints_state(tmp_path)).start(
        consume=False, relay=False, timers=False, workers=False)
    try:
        yield running
    finally:
        await running.stop()


def test_every_route_a_service_serves_is_in_its_openapi_document(ns: Namespace) -> None:
    """A route left out of the document (include_in_schema=False) would escape these tests."""
    for name in SERVICES:
        runtime = ServiceRuntime(load(name), ns.settings)
        documented = {(m, p) for m, p, _ in operations(runtime)}
        served = served_routes(runtime.app.routes)
        assert len(served) > 3, f"{name}: no routes found"
        for path, route, _ in served:
            if isinstance(route, APIRoute):
                for method in route.methods - {"HEAD", "OPTIONS"}:
                    assert (method.lower(), path) in documented, f"{name}: {method} {path} is undocumented"
            else:
                assert isinstance(route, Route) and path in PUBLIC, f"{name}: unexpected route {route!r}"


async def test_every_endpoint_refuses_no_token_401_and_other_roles_403(stack: Stack) -> None:
    problems: list[str] = []
    checked = 0
    for name in SERVICES:
        runtime = stack[name]
        for method, path, op in operations(runtime):
            if path in PUBLIC:
                continue
            checked += 1
            url = sample_path(path, op)
            label = f"{name} {method.upper()} {path}"
            requires = declared_roles(runtime, method, path)
            if len(requires) != 1 or not requires[0] or not set(requires[0]) <= set(ROLES):
                problems.append(f"{label}: expected one require(...) of known roles, found {requires}")
                continue
            allowed = set(requires[0])
            if op.get("security") != [{"HTTPBearer": []}]:
                problems.append(f"{label}: the OpenAPI operation does not declare the bearer scheme")

            async with api(runtime) as anonymous:
                for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWdlbnQ6eA=="},
                                {"Authorization": f"Bearer {TOKENS['agent']} extra"}, {"Authorization": "Bearer"}):
                    response = await anonymous.request(method, url, headers=headers)
                    if response.status_code != 401 or response.headers.get("www-authenticate") != "Bearer":
                        problems.append(f"{label} with {headers or 'no token'}: {response.status_code} "
                                        f"{response.text[:200]}")
            for role in TOKENS:
                async with api(runtime, role) as client:
                    response = await client.request(method, url)
                role_name = "agent" if role == "agent2" else role
                refused = response.status_code == 403 and \
                    f"role {role_name!r} may not use this endpoint" in response.text
                if role_name in allowed:
                    if response.status_code in (401, 403) or response.status_code >= 500:
                        problems.append(f"{label}: role {role} is declared but got {response.status_code} "
                                        f"{response.text[:200]}")
                elif not refused:
                    problems.append(f"{label}: role {role} is not declared but got {response.status_code} "
                                    f"{response.text[:200]}")
    assert checked >= 40, f"only {checked} endpoints found: is the OpenAPI document complete?"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


async def test_the_operations_endpoints_are_public_and_say_nothing_about_customers(stack: Stack) -> None:
    for name in SERVICES:
        runtime = stack[name]
        async with api(runtime) as anonymous:
            health = await anonymous.get("/health")
            ready = await anonymous.get("/ready")
            scrape = await anonymous.get("/metrics")
            docs = await anonymous.get("/docs")
            document = await anonymous.get("/openapi.json")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": name}
        # Not started with Kafka here: "not ready", but answered, and without a token.
        assert ready.status_code in (200, 503) and set(ready.json()) == {"status", "checks"}
        assert scrape.status_code == 200 and "aftersales_" in scrape.text
        assert docs.status_code == 200 and document.status_code == 200
        public = {p for p in document.json()["paths"] if p in PUBLIC}
        assert public == {"/health", "/ready", "/metrics"}, public
