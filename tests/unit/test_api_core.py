"""The convention's parts (shared/api.py): problem details, cursor pages and sort, ETags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from shared.api import (
    IfMatch,
    Page,
    PageParams,
    Sort,
    SortKey,
    check_if_match,
    decode_cursor,
    encode_cursor,
    etag_of,
    install,
    keyset,
    make_page,
    page_params,
    sort_param,
)

KEYS = {"opened_at": SortKey("c.opened_at", "timestamptz"), "case_id": SortKey("c.case_id")}


class Row(BaseModel):
    case_id: str
    opened_at: datetime


def _app() -> httpx.AsyncClient:
    app = FastAPI()
    install(app)

    @app.get("/v1/cases")
    async def cases(page: Annotated[PageParams, Depends(page_params(20, 100))],
                    sort: Annotated[Sort, Depends(sort_param(KEYS, "-opened_at"))]) -> Page[Row]:
        ks = keyset(sort, "c.case_id", page.cursor, 3)
        return Page[Row](items=[], next_cursor=None, limit=page.limit) if ks.where else Page[Row](items=[], limit=0)

    @app.get("/v1/cases/{case_id}")
    async def case(case_id: str) -> Row:
        if case_id == "conflict":
            raise HTTPException(409, {"message": "closed cases cannot be assigned", "allowed": ["reopen"]})
        raise HTTPException(404, f"case {case_id} not found")

    @app.post("/v1/cases/{case_id}/close")
    async def close(case_id: str, if_match: IfMatch = None) -> Row:
        row = Row(case_id=case_id, opened_at=datetime(2026, 11, 20, tzinfo=UTC))
        check_if_match(if_match, etag_of(row))
        return row

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_errors_are_problem_details_with_the_fields_and_extensions() -> None:
    async with _app() as client:
        missing = await client.get("/v1/cases/C-9")
        invalid = await client.get("/v1/cases", params={"limit": 0})
        conflict = await client.get("/v1/cases/conflict")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {"type": "urn:aftersales:problem:not-found", "title": "Not Found", "status": 404,
                              "detail": "case C-9 not found", "instance": "/v1/cases/C-9"}
    body = invalid.json()
    assert invalid.status_code == 422 and body["type"] == "urn:aftersales:problem:invalid-request"
    assert [e["field"] for e in body["errors"]] == ["query.limit"] and body["detail"].startswith("1 invalid field")
    assert conflict.json()["detail"] == "closed cases cannot be assigned" and conflict.json()["allowed"] == ["reopen"]


async def test_an_unknown_sort_and_a_bad_cursor_are_422_naming_the_parameter() -> None:
    async with _app() as client:
        sort = await client.get("/v1/cases", params={"sort": "-colour"})
        cursor = await client.get("/v1/cases", params={"cursor": "not-a-cursor"})
        other_sort = await client.get("/v1/cases", params={
            "sort": "case_id", "cursor": encode_cursor({"s": "-opened_at", "k": ["2026-11-20T00:00:00+00:00", "C-1"]})})
        fine = await client.get("/v1/cases", params={"sort": "case_id", "limit": 5})
    assert sort.status_code == 422 and sort.json()["errors"][0]["field"] == "query.sort"
    assert "case_id, opened_at" in sort.json()["detail"]
    assert cursor.status_code == 422 and cursor.json()["errors"][0]["type"] == "cursor_invalid"
    assert other_sort.status_code == 422 and "made for sort '-opened_at'" in other_sort.json()["detail"]
    assert fine.status_code == 200 and fine.json() == {"items": [], "next_cursor": None, "limit": 5}


def test_keyset_continues_after_the_cursor_in_the_sort_direction() -> None:
    newest = Sort("opened_at", "c.opened_at", "timestamptz", descending=True)
    first = keyset(newest, "c.case_id", None, 3)
    assert (first.where, first.order_by, first.params) == ("TRUE", "c.opened_at DESC, c.case_id DESC", [])
    rows = [Row(case_id=f"C-{i}", opened_at=datetime(2026, 11, 20 - i, tzinfo=UTC)) for i in range(3)]
    page = make_page(rows, 2, newest, lambda r: (r.opened_at, r.case_id))
    assert [r.case_id for r in page.items] == ["C-0", "C-1"] and page.next_cursor is not None
    after = keyset(newest, "c.case_id", decode_cursor(page.next_cursor), 3)
    assert after.where == "(c.opened_at, c.case_id::text) < ($3::text::timestamptz, $4::text)"
    assert after.params == ["2026-11-19T00:00:00+00:00", "C-1"]
    last = make_page(rows[2:], 2, newest, lambda r: (r.opened_at, r.case_id))
    assert last.next_cursor is None, "no cursor after the last page"


def test_only_plain_names_can_become_sql() -> None:
    with pytest.raises(ValueError, match="not a plain SQL name"):
        SortKey("opened_at; DROP TABLE cases")
    with pytest.raises(ValueError, match="tiebreak"):
        keyset(Sort("k", "c.k", "text", False), "id)--", None, 1)
    with pytest.raises(ValueError, match="default sort"):
        sort_param(KEYS, "-colour")


async def test_if_match_refuses_a_stale_etag_and_accepts_the_current_one() -> None:
    current = etag_of(Row(case_id="C-1", opened_at=datetime(2026, 11, 20, tzinfo=UTC)))
    assert current.startswith('"') and current == etag_of({"opened_at": "2026-11-20T00:00:00Z", "case_id": "C-1"})
    async with _app() as client:
        stale = await client.post("/v1/cases/C-1/close", headers={"If-Match": '"0000"'})
        right = await client.post("/v1/cases/C-1/close", headers={"If-Match": f'"0000", {current}'})
        star = await client.post("/v1/cases/C-1/close", headers={"If-Match": "*"})
        none = await client.post("/v1/cases/C-1/close")
    assert stale.status_code == 412 and stale.headers["etag"] == current
    assert stale.json()["type"] == "urn:aftersales:problem:precondition-failed"
    assert right.status_code == star.status_code == none.status_code == 200


async def test_the_openapi_document_describes_problems_pages_and_if_match() -> None:
    async with _app() as client:
        doc = (await client.get("/openapi.json")).json()
    listed = doc["paths"]["/v1/cases"]["get"]
    assert {p["name"] for p in listed["parameters"]} == {"cursor", "limit", "sort"}
    assert listed["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
    assert {"401", "403", "413", "429", "503"} <= set(listed["responses"])
    close = doc["paths"]["/v1/cases/{case_id}/close"]["post"]
    assert "If-Match" in {p["name"] for p in close["parameters"]}
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_a_forged_cursor_whose_position_is_not_of_the_columns_type_is_422_not_a_database_error() -> None:
    newest = Sort("opened_at", "c.opened_at", "timestamptz", descending=True)
    forged = decode_cursor(encode_cursor({"s": "-opened_at", "k": ["yesterday", "C-1"]}))
    with pytest.raises(HTTPException) as refused:
        keyset(newest, "c.case_id", forged, 1)
    assert refused.value.status_code == 422 and "is not a timestamptz" in str(refused.value.detail)
    by_level = Sort("level", "c.level", "bigint", descending=False)
    with pytest.raises(HTTPException):
        keyset(by_level, "c.case_id", {"s": "level", "k": ["2; DROP", "C-1"]}, 1)
    assert keyset(by_level, "c.case_id", {"s": "level", "k": [3, "C-1"]}, 1).params == ["3", "C-1"]


def test_page_doc_documents_a_page_with_the_models_own_example() -> None:
    from shared.api import page_doc

    class Item(BaseModel):
        model_config = {"json_schema_extra": {"examples": [{"name": "王芳"}]}}
        name: str

    doc = page_doc(Item, 20)[200]["content"]["application/json"]["example"]
    assert doc["items"] == [{"name": "王芳"}] and doc["limit"] == 20 and decode_cursor(doc["next_cursor"])["s"]
    with pytest.raises(ValueError, match="no example"):
        page_doc(Row)
