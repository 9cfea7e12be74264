"""The one HTTP convention (docs/api-convention.md, shared/api.py), checked on every operation of
every service's OpenAPI document as the code builds it (what /docs serves and docs/api/ holds)."""

from __future__ import annotations

from typing import Any

import pytest

SERVICES = ("intake", "followup", "complaints", "quality", "notifier", "console")
PROBLEM = "application/problem+json"
# Old list keys: a list answered under one of them instead of a Page.
LIST_KEYS = {"items", "customers", "followups", "alerts", "cases", "notifications", "letters", "results", "rows",
             "measures", "campaigns", "consents", "calls", "receipts", "owners", "entries", "defects", "units"}
# The actions on a complaint case, a rectification measure or a follow-up: they change it, so they
# honour If-Match.
ACTION_PREFIXES = ("/v1/cases/{", "/v1/followups/{", "/v1/complaints/{", "/v1/measures/{")

# Operations not converted yet, by service: each engineer removes their service's entries as they
# convert them. An entry here is a known gap, not an exception to the convention.
NOT_YET: dict[str, set[str]] = {
}


def _document(service: str) -> dict[str, Any]:
    from services import load
    from shared.runtime import ServiceRuntime
    from shared.settings import Settings

    return ServiceRuntime(load(service), Settings.model_construct()).app.openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(doc, media.get("schema", {}))
    return bool(schema.get("examples") or schema.get("example") is not None)


def _is_page(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    props = _resolve(doc, schema).get("properties", {})
    return {"items", "next_cursor", "limit"} <= set(props)


def violations(doc: dict[str, Any], *, api_only: bool = True) -> dict[str, list[str]]:
    """What each operation ("METHOD path") does against the convention."""
    found: dict[str, list[str]] = {}
    for path, operations in doc.get("paths", {}).items():
        if api_only and not path.startswith("/v1/"):
            continue  # /health, /ready, /metrics: the operations' probes, not the API
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            name = f"{method.upper()} {path}"
            problems: list[str] = []
            params = {p["name"]: p for p in op.get("parameters", [])}
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if status.startswith("2") and status != "204":
                    media = content.get("application/json")
                    if media is None:
                        if not any(k.startswith(("text/", "application/")) for k in content):
                            problems.append(f"{status}: no content documented")
                        continue
                    schema = _resolve(doc, media.get("schema", {}))
                    if schema.get("type") == "array":
                        problems.append(f"{status}: a bare array; answer a Page")
                    elif not schema.get("properties") and not schema.get("anyOf") and not schema.get("oneOf"):
                        problems.append(f"{status}: untyped object; give the operation a response model")
                    elif not _is_page(doc, schema) and "ETag" not in response.get("headers", {}) and LIST_KEYS & {
                            k for k, v in schema.get("properties", {}).items() if v.get("type") == "array"}:
                        # (a GET answering an ETag is one resource, e.g. a customer's conversation, not a list)
                        if method == "get" and not path.endswith("}"):
                            problems.append(f"{status}: a list under an old key; answer a Page")
                    if not _has_example(doc, media):
                        problems.append(f"{status}: no example")
                    if method == "get" and _is_page(doc, schema):
                        missing = {"cursor", "limit", "sort"} - set(params)
                        if missing:
                            problems.append(f"a Page without the parameters {sorted(missing)}")
                elif status[0] in "45":
                    media = content.get(PROBLEM)
                    if media is None or media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] != "Problem":
                        problems.append(f"{status}: not a problem+json Problem")
                    elif not _has_example(doc, media):
                        problems.append(f"{status}: no example")
            if "{" in path and "404" not in op["responses"]:
                problems.append("a path parameter but no 404 documented")
            if method == "post" and "Idempotency-Key" not in params:
                problems.append("POST without Idempotency-Key")
            if method in ("post", "put", "patch") and path.startswith(ACTION_PREFIXES) and path.count("/") >= 4:
                if "If-Match" not in params:
                    problems.append("an action on a case / follow-up without If-Match")
                if "412" not in op["responses"]:
                    problems.append("an action on a case / follow-up without 412 documented")
            if problems:
                found[name] = problems
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_follows_the_convention(service: str) -> None:
    found = violations(_document(service))
    allowed = NOT_YET.get(service, set())
    unexpected = {op: why for op, why in found.items() if op not in allowed}
    assert not unexpected, "\n".join(f"{op}: {'; '.join(why)}" for op, why in sorted(unexpected.items()))
    fixed = sorted(allowed - set(found))
    assert not fixed, f"these now follow the convention: remove them from NOT_YET[{service!r}]: {fixed}"


def test_the_walker_finds_each_kind_of_violation() -> None:
    """The checks can fail: a document with one operation breaking each rule is reported on each."""
    untyped = {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}
    doc: dict[str, Any] = {"components": {"schemas": {}}, "paths": {
        "/v1/things": {"get": {"responses": {
            "200": {"content": {"application/json": {"schema": {"type": "array", "items": {}}}}},
            "404": {"content": {"application/json": {"schema": {}}}}}}},
        "/v1/cases/{case_id}/close": {"post": {"parameters": [], "responses": {"200": {"content": untyped}}}},
    }}
    found = violations(doc)
    assert found["GET /v1/things"] == ["200: a bare array; answer a Page", "200: no example",
                                       "404: not a problem+json Problem"]
    assert found["POST /v1/cases/{case_id}/close"] == [
        "200: untyped object; give the operation a response model", "200: no example",
        "a path parameter but no 404 documented", "POST without Idempotency-Key",
        "an action on a case / follow-up without If-Match", "an action on a case / follow-up without 412 documented"]
