"""Values at the edges of their types, in every parameter of every operation, never get a 5xx.

Schemathesis's random cases rarely reach the edges where the 5xx were: a page or offset that
overflows a bigint, a date in year 1 or 9999 (a 30-day window before it, or its conversion to
UTC, overflows), a date-time without a timezone, U+0000 in a path, a query or a body. So every
operation of every service (from its OpenAPI document) gets them directly: each integer query
parameter 2**63, 10**30 and -1; each date-time query parameter (and `from`/`to`/`week`, which the
quality API parses itself) years 1 and 9999 with the extreme offsets, a naive one, and
nonsense; each path parameter and string query parameter a NUL; and each date-time of a valid
request body (built by schemathesis) the same extremes. Handlers run against the real database.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from schemathesis.generation.modes import GenerationMode

from shared.settings import SERVICES
from tests.integration.test_fuzz_intake import _examples
from tests.integration.test_security_endpoints import (
    PUBLIC,
    declared_roles,
    sample_path,
    stack,  # noqa: F401  (the fixture: all five services, nothing consumed)
)
from tests.integration.test_security_sql import _set, _strings
from tests.support import TOKENS, Stack

pytestmark = [
    pytest.mark.infra,
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

INTEGERS = [str(2**63), str(10**30), "-1", "0"]
MOMENTS = ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "0001-01-02T00:00:00-12:00", "0001-01-01",
           "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59Z", "9999-12-31", "2026-11-20T10:00:00", "0001-W01",
           "9999-W52", "2026-W53", "tomorrow", ""]
DATE_LIKE = ("from", "to", "since", "until", "week")


def _schema_types(param: dict[str, Any]) -> set[str]:
    schema = param.get("schema", {})
    return {f"{s.get('type')}:{s.get('format', '')}" for s in [schema, *schema.get("anyOf", [])]}


def _edge_requests(runtime: Any) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    """(method, route path, url, query, json body) for every edge of every operation."""
    document = runtime.app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    requests: list[tuple[str, str, str, dict[str, Any], Any]] = []
    for path, item in document["paths"].items():
        if path in PUBLIC:
            continue
        for method, op in item.items():
            url = sample_path(path, op)
            for param in op.get("parameters", []):
                kinds = _schema_types(param)
                if param["in"] == "query":
                    values = []
                    if any(k.startswith("integer") for k in kinds):
                        values += INTEGERS
                    if any(k == "string:date-time" for k in kinds) or param["name"] in DATE_LIKE:
                        values += MOMENTS
                    if any(k.startswith("string") for k in kinds):
                        values.append("a\x00b")
                    requests += [(method, path, url, {param["name"]: v}, None) for v in values]
                elif param["in"] == "path":
                    others = {"parameters": [p for p in op.get("parameters", []) if p is not param]}
                    nul = sample_path(path, others).replace("{" + param["name"] + "}", quote("a\x00b", safe=""))
                    requests.append((method, path, nul, {}, None))
            if "requestBody" not in op:
                continue
            operation = schema[path][method.upper()]
            for case in _examples(operation.as_strategy(GenerationMode.POSITIVE), 3):
                body = case.body if isinstance(case.body, (dict, list)) else None
                if body is None:
                    continue
                strings = _strings(body)
                for place, _ in strings[:1]:
                    changed = copy.deepcopy(body)
                    _set(changed, place, "a\x00b")
                    requests.append((method, path, url, {}, changed))
                for key in ("at", "filed_at", "call_back_at"):
                    if isinstance(body, dict):
                        for moment in MOMENTS:
                            requests.append((method, path, url, {}, {**body, key: moment}))
    return requests


async def test_edge_values_in_every_parameter_never_get_a_5xx(stack: Stack) -> None:
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for service in SERVICES:
        runtime = stack[service]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app, raise_app_exceptions=False),
                                     base_url="http://test") as client:
            for method, route, url, query, body in _edge_requests(runtime):
                role = declared_roles(runtime, method, route)[0][0]
                response = await client.request(method.upper(), url, params=query, json=body,
                                                headers={"Authorization": f"Bearer {TOKENS[role]}"})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{service} {method.upper()} {url} {query} {str(body)[:200]}: "
                                    f"{response.status_code} {response.text[:200]}")
    assert sum(statuses.values()) >= 300 and statuses.get(422, 0) >= 150, statuses
    assert not failures, f"{len(failures)} server errors (statuses {statuses}):\n" + "\n".join(failures[:20])

