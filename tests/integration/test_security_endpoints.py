"""Every HTTP endpoint of every service refuses a request without a valid bearer token (401)
and a token of a role the endpoint is not for (403), and admits exactly the roles of the
policy below.

POLICY is who may do what, written down here from the README and docs (docs/complaints.md's
table, docs/quality.md's "quality may do everything, supervisors and ops may read", the README's
table of who uses which service), independently of the code: the roles an endpoint admits are NOT read from
its `require(...)` and then checked against themselves. Three checks hold the code to it:
- the routes each service serves (from its OpenAPI document and its router, so a new route is
  seen the day it is added) are exactly the routes of its POLICY: a route the table does not
  list fails, and so does a row of the table for a route that is gone;
- each route's `require(...)` names exactly the policy's roles (this also covers roles without
  a static token here, such as a console person's role);
- the running endpoint, asked with each role's token (agent, agent2, supervisor, quality, ops,
  producer), refuses a role outside the policy with 403 naming the role, and lets a role inside
  it past the door (whatever the handler then answers: 200, 404, 422 …).

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
from shared.http import PERSON_ROLES, ROLES
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES
from tests.complaints_fixtures import complaints_state
from tests.support import TOKENS, Namespace, Stack, api, manual_clock

pytestmark = pytest.mark.infra

PUBLIC = {"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
METHODS = ("get", "post", "put", "patch", "delete")

# Who may do what, per service and (method, path): the README's "who uses what", docs/complaints.md
# (HTTP table), docs/quality.md (quality does everything, supervisors and ops read). Change it together with the docs.
AGENT, SUPERVISOR, QUALITY, OPS, PRODUCER = "agent", "supervisor", "quality", "ops", "producer"
DEPARTMENT = "department"  # a console person of a department (no static token here)
POLICY: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "intake": {
        ("POST", "/v1/events"): frozenset({PRODUCER}),  # the upstream systems' webhook
        ("GET", "/v1/customers"): frozenset({AGENT, SUPERVISOR}),  # customer files: the staff on the phone
        ("GET", "/v1/customers/incomplete"): frozenset({AGENT, SUPERVISOR}),
        ("GET", "/v1/customers/flagged"): frozenset({AGENT, SUPERVISOR}),  # contact values to correct
        ("GET", "/v1/customers/{customer_id}"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/customers/{customer_id}/contact"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/consultations"): frozenset({AGENT, SUPERVISOR}),  # a caller with no file, on the phone
        ("GET", "/v1/customer-file-reads"): frozenset({SUPERVISOR}),  # the access log (docs/security.md)
        # erasure (docs/security.md 'Erasure'): supervisors erase with a reason; ops see the register without it
        ("POST", "/v1/customers/{customer_id}/erasure"): frozenset({SUPERVISOR}),
        ("GET", "/v1/erasures"): frozenset({SUPERVISOR, OPS}),
    },
    "followup": {
        ("GET", "/v1/queue"): frozenset({AGENT, SUPERVISOR}),  # the agents' calls
        ("GET", "/v1/queue/conversations"): frozenset({AGENT, SUPERVISOR}),  # the same, one row per customer
        ("GET", "/v1/followups"): frozenset({AGENT, SUPERVISOR}),
        ("GET", "/v1/followups/{followup_id}"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/followups/{followup_id}/claim"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/followups/{followup_id}/release"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/followups/{followup_id}/attempts"): frozenset({AGENT, SUPERVISOR}),
        # one conversation per customer: the calling staff claim, record and read it
        ("GET", "/v1/customers/{customer_id}/conversation"): frozenset({AGENT, SUPERVISOR}),
        ("GET", "/v1/customers/{customer_id}/calls"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/customers/{customer_id}/conversation/claim"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/customers/{customer_id}/conversation/release"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/customers/{customer_id}/calls"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/inbound-calls"): frozenset({AGENT, SUPERVISOR}),  # the calls customers make
        ("GET", "/v1/register/calls"): frozenset({AGENT, SUPERVISOR, OPS}),  # the registers: read by ops too
        ("GET", "/v1/register/letters"): frozenset({AGENT, SUPERVISOR, OPS}),
        ("GET", "/v1/kpis"): frozenset({SUPERVISOR, OPS}),  # the supervisors' figures
        ("GET", "/v1/reports/weekly"): frozenset({SUPERVISOR, OPS, DEPARTMENT}),  # a department: its own part
        ("GET", "/v1/reports/return-visits"): frozenset({SUPERVISOR, OPS}),  # the weekly headline, any period
        ("GET", "/v1/feedback-items"): frozenset({AGENT, SUPERVISOR}),  # an agent's own, a supervisor's all
        ("GET", "/v1/feedback-items/figures"): frozenset({SUPERVISOR, OPS}),
        ("GET", "/v1/reports/lost-reasons"): frozenset({SUPERVISOR, OPS}),  # counts, no names
        ("GET", "/v1/customers/at-risk"): frozenset({AGENT, SUPERVISOR}),  # names and phones: the staff who call
        # tracking owners (docs/followup.md "Owners"): the calling staff read them, a supervisor changes them
        ("GET", "/v1/owners"): frozenset({AGENT, SUPERVISOR}),
        ("GET", "/v1/customers/{customer_id}/owner"): frozenset({AGENT, SUPERVISOR}),
        ("PUT", "/v1/customers/{customer_id}/owner"): frozenset({SUPERVISOR}),
        ("POST", "/v1/followups/{followup_id}/assign"): frozenset({SUPERVISOR}),
        ("GET", "/v1/feedback-items/{item_id}"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/feedback-items/{item_id}/solution"): frozenset({AGENT, SUPERVISOR}),
    },
    "complaints": {  # docs/complaints.md, "HTTP"; a department person only on the cases routed to it
        ("POST", "/v1/complaints"): frozenset({AGENT, SUPERVISOR}),
        ("GET", "/v1/complaints"): frozenset({AGENT, SUPERVISOR, DEPARTMENT, OPS}),
        ("GET", "/v1/complaints/{complaint_id}"): frozenset({AGENT, SUPERVISOR, DEPARTMENT, OPS}),
        ("POST", "/v1/complaints/{complaint_id}/acknowledge"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/assign"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/comments"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/pend"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/resume"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/resolve"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("POST", "/v1/complaints/{complaint_id}/close"): frozenset({SUPERVISOR}),
        ("POST", "/v1/complaints/{complaint_id}/reopen"): frozenset({SUPERVISOR}),
        ("POST", "/v1/complaints/{complaint_id}/documents"): frozenset({AGENT, SUPERVISOR, DEPARTMENT}),
        ("GET", "/v1/complaints/{complaint_id}/documents/{document_id}"): frozenset({AGENT, SUPERVISOR, DEPARTMENT, OPS}),
        ("GET", "/v1/complaints/{complaint_id}/documents/{document_id}/content"):
            frozenset({AGENT, SUPERVISOR, DEPARTMENT, OPS}),
        ("GET", "/v1/kpis"): frozenset({AGENT, SUPERVISOR, OPS}),
        ("GET", "/v1/reports/sla-compliance"): frozenset({AGENT, SUPERVISOR, OPS}),  # the figures, as the KPIs
        ("GET", "/v1/reports/sla-compliance/cases"): frozenset({AGENT, SUPERVISOR, OPS}),
        ("GET", "/v1/reports/categories"): frozenset({AGENT, SUPERVISOR, OPS}),  # counts, as the KPIs
        # rectification measures (docs/measures.md): supervisors, quality engineers and departments record
        # them, a supervisor or quality engineer verifies; everyone who reads complaints reads them
        ("POST", "/v1/measures"): frozenset({SUPERVISOR, QUALITY, DEPARTMENT}),
        ("GET", "/v1/measures"): frozenset({AGENT, SUPERVISOR, QUALITY, DEPARTMENT, OPS}),
        ("GET", "/v1/measures/{measure_id}"): frozenset({AGENT, SUPERVISOR, QUALITY, DEPARTMENT, OPS}),
        ("GET", "/v1/reports/measures"): frozenset({AGENT, SUPERVISOR, QUALITY, DEPARTMENT, OPS}),
        ("POST", "/v1/measures/{measure_id}/verify"): frozenset({SUPERVISOR, QUALITY}),
    },
    "quality": {  # docs/quality.md: quality may do everything, supervisors and ops may read
        ("GET", "/v1/alerts"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/alerts/{alert_id}"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("POST", "/v1/alerts/{alert_id}/acknowledge"): frozenset({QUALITY}),
        ("POST", "/v1/alerts/{alert_id}/close"): frozenset({QUALITY}),
        ("POST", "/v1/alerts/{alert_id}/confirm"): frozenset({QUALITY}),  # a batch problem: its recall
        ("GET", "/v1/alerts/{alert_id}/affected-vehicles"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/recalls"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/recalls/{campaign_id}"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/stats"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/reports/weekly"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/reports/monthly"): frozenset({QUALITY, SUPERVISOR, OPS}),
        ("GET", "/v1/kpis"): frozenset({QUALITY, SUPERVISOR, OPS}),
    },
    "notifier": {
        ("GET", "/v1/notifications"): frozenset({SUPERVISOR, OPS}),  # what was sent to whom: not every agent
        ("GET", "/v1/letters"): frozenset({AGENT, SUPERVISOR, OPS}),  # the letter register to print and post
        ("POST", "/v1/letters/{letter_id}/printed"): frozenset({AGENT, SUPERVISOR}),
        ("POST", "/v1/opt-outs"): frozenset({AGENT, SUPERVISOR}),  # a customer's opt-outs, on the phone
        ("GET", "/v1/opt-outs/{customer_id}"): frozenset({AGENT, SUPERVISOR}),
        ("DELETE", "/v1/opt-outs/{customer_id}/{channel}"): frozenset({AGENT, SUPERVISOR}),
        # who changed which channel of a customer's consent, when and why (issue 19)
        ("GET", "/v1/consent-log/{customer_id}"): frozenset({AGENT, SUPERVISOR}),
        # the month's work summary issued to be mailed (docs/reports.md): a supervisor issues it
        ("POST", "/v1/reports/monthly-summary"): frozenset({SUPERVISOR}),
    },
}


def admitted(service: str, method: str, path: str) -> frozenset[str]:
    """The roles POLICY admits to an endpoint."""
    return POLICY[service][(method.upper(), path)]


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


def test_the_policy_lists_exactly_the_routes_each_service_serves_with_the_roles_its_code_requires(
    ns: Namespace,
) -> None:
    assert set(POLICY) == set(SERVICES), "a service without a policy, or a policy for no service"
    problems: list[str] = []
    for name in SERVICES:
        runtime = ServiceRuntime(load(name), ns.settings)
        served = {(method.upper(), path) for method, path, _ in operations(runtime) if path not in PUBLIC}
        listed = set(POLICY[name])
        problems += [f"{name}: {m} {p} is served but not in POLICY (who may use it?)" for m, p in sorted(served - listed)]
        problems += [f"{name}: {m} {p} is in POLICY but not served" for m, p in sorted(listed - served)]
        for method, path in sorted(served & listed):
            requires = declared_roles(runtime, method, path)
            if len(requires) != 1 or set(requires[0]) != POLICY[name][(method, path)]:
                problems.append(f"{name}: {method} {path} requires {requires}, the policy admits "
                                f"{sorted(POLICY[name][(method, path)])}")
    assert sum(len(routes) for routes in POLICY.values()) >= 40
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


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
            if (method.upper(), path) not in POLICY[name]:
                problems.append(f"{label}: not in POLICY")
                continue
            allowed = admitted(name, method, path)
            assert allowed <= set(ROLES) | set(PERSON_ROLES), allowed
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
                        problems.append(f"{label}: role {role} is admitted by the policy but got {response.status_code} "
                                        f"{response.text[:200]}")
                elif not refused:
                    problems.append(f"{label}: role {role} is not admitted by the policy but got {response.status_code} "
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
