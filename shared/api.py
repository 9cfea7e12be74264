"""The one HTTP convention of the five services and the console's API (docs/api-convention.md).

- Errors are RFC 9457 problem details (`application/problem+json`); routes keep raising
  `HTTPException(status, "what went wrong")` and `install` renders it.
- Lists are cursor pages: `{"items": [...], "next_cursor": "…" | null, "limit": 50}`, walked with
  `?cursor=` and `?limit=`, ordered with `?sort=key` / `?sort=-key` (keyset paging: a row inserted
  while a client walks a list is never answered twice, and none is skipped).
- Every POST honours `Idempotency-Key`: the first response is stored per key, credential and
  route, and a retry with the same key gets it again (`Idempotency-Replayed: true`).
- Actions that change a case or a follow-up honour `If-Match` against the resource's ETag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("aftersales.api")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:aftersales:problem:"


# ---------------------------------------------------------------- problems (RFC 9457)


class FieldError(BaseModel):
    field: str = Field(description="where: `body.phone`, `query.limit`, `header.If-Match`")
    message: str
    type: str = Field(description="the kind of error, e.g. `string_pattern_mismatch`, `missing`")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (some add extension members, e.g. a refused action's
    `allowed`: the actions its state allows)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:aftersales:problem:not-found", "title": "Not Found", "status": 404,
        "detail": "case C-2026-000123 not found", "instance": "/v1/cases/C-2026-000123"}]})
    type: str = Field(description="a URN naming the kind of problem; `urn:aftersales:problem:<slug>`")
    title: str = Field(description="the HTTP status's phrase")
    status: int
    detail: str = Field(description="what went wrong with this request, for a person to read")
    instance: str | None = Field(None, description="the request's path")
    errors: list[FieldError] | None = Field(None, description="validation errors, one per field (422)")


# The slug of each status's problem type; a route may raise a more specific one with `problem()`.
_SLUGS = {400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          409: "conflict", 412: "precondition-failed", 413: "too-large", 415: "unsupported-media-type",
          422: "invalid-request", 428: "precondition-required", 429: "too-many-requests",
          500: "internal-error", 502: "bad-gateway", 503: "unavailable", 504: "gateway-timeout"}

_EXAMPLES = {
    400: "the request could not be read",
    401: "missing or invalid bearer token",
    403: "role agent may not call this endpoint",
    404: "the resource was not found",
    409: "the state changed: the call is claimed by another agent until 10:15",
    412: 'If-Match "3f1c…" does not match the current ETag "9ab0…"; fetch it again and retry',
    413: "the request body is larger than 1048576 bytes",
    422: "1 invalid field: body.phone: String should match pattern '^\\+?[0-9]{6,20}$'",
    429: "too many failed sign-ins from this address; retry in 60 s",
    503: "the service is temporarily unavailable (its database or broker is down); retry shortly",
}


def problem_type(status: int) -> str:
    return PROBLEM_BASE + _SLUGS.get(status, f"http-{status}")


def problem_body(status: int, detail: str, *, instance: str | None = None, type_: str | None = None,
                 errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = f"HTTP {status}"
    body: dict[str, Any] = {"type": type_ or problem_type(status), "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(status: int, detail: str, *, instance: str | None = None,
                     headers: dict[str, str] | None = None, errors: list[dict[str, str]] | None = None,
                     type_: str | None = None) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, instance=instance, errors=errors, type_=type_),
                        status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _detail_text(detail: Any) -> tuple[str, list[dict[str, str]] | None, dict[str, Any]]:
    """A route's HTTPException detail as the problem's text, field errors (a list of them) and
    extension members (a dict's other keys: `{"message": …, "allowed": [...]}` answers `allowed`)."""
    if isinstance(detail, str):
        return detail, None, {}
    if isinstance(detail, list):
        errors = [_field_error(e) if isinstance(e, dict) else {"field": "", "message": str(e), "type": "error"}
                  for e in detail]
        return _summary(errors), errors, {}
    if isinstance(detail, dict):
        text = detail.get("detail") or detail.get("message") or json.dumps(detail, ensure_ascii=False, default=str)
        extensions = {k: v for k, v in detail.items() if k not in _MEMBERS and k != "message"}
        return str(text), None, extensions
    return str(detail), None, {}


_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    loc = error.get("loc") or ()
    field = ".".join(str(p) for p in loc) if isinstance(loc, (list, tuple)) else str(loc)
    return {"field": field or str(error.get("field", "")), "message": str(error.get("msg") or error.get("message", "")),
            "type": str(error.get("type", "invalid"))}


def _summary(errors: list[dict[str, str]]) -> str:
    if not errors:
        return "the request is invalid"
    shown = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {shown}{more}"


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail, errors, extensions = _detail_text(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=headers)
    body = problem_body(exc.status_code, detail, instance=request.url.path, errors=errors) | extensions
    return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=PROBLEM_JSON)


async def _validation_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(dict(e)) for e in exc.errors()]
    return problem_response(422, _summary(errors), instance=request.url.path, errors=errors)


def problems(*statuses: int, examples: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: these error statuses, documented as problems with an example."""
    examples = examples or {}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        detail = examples.get(status, _EXAMPLES.get(status, HTTPStatus(status).phrase.lower()))
        out[status] = {
            "model": Problem, "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"example": problem_body(status, detail, instance="/v1/…")}},
        }
    return out


# ---------------------------------------------------------------- cursor pages and sort

T = TypeVar("T")
MAX_CURSOR_CHARS = 1024


class Page(BaseModel, Generic[T]):
    """One page of a list; follow `next_cursor` (as `?cursor=`) until it is null."""

    items: list[T]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")
    limit: int = Field(description="the most items a page holds (the request's `limit`)")


def page_doc(model: type[BaseModel], limit: int = 50, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The `responses=` documenting a page of `model`, with the model's own first example as its item."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if not isinstance(examples, list) or not examples:
        raise ValueError(f"{model.__name__} has no example (model_config json_schema_extra examples)")
    cursor = encode_cursor({"s": "-created_at", "k": ["2026-11-20T10:00:00+08:00", "X-1"]})
    return {status: {"content": {"application/json": {"example": {
        "items": [examples[0]], "next_cursor": cursor, "limit": limit}}}}}


@dataclass(frozen=True)
class PageParams:
    cursor: dict[str, Any] | None
    limit: int


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values, default=str)).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, Any]:
    """The cursor's values; a 422 problem when it is not one this API wrote."""
    if len(text) > MAX_CURSOR_CHARS:
        raise bad_cursor("it is too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad_cursor("it is not a cursor this API wrote") from None
    if not isinstance(values, dict) or "s" not in values or "k" not in values:
        raise bad_cursor("it is not a cursor this API wrote")
    return values


def bad_cursor(why: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", "cursor"], "msg": f"invalid cursor: {why}; pass the `next_cursor` "
                                                                    "of the previous page unchanged",
                                "type": "cursor_invalid"}])


def page_params(default_limit: int = 50, max_limit: int = 200) -> Callable[..., PageParams]:
    def dependency(
        cursor: str | None = Query(None, description="the `next_cursor` of the previous page; omit for the first"),
        limit: int = Query(default_limit, ge=1, le=max_limit, description=f"items per page (1-{max_limit})"),
    ) -> PageParams:
        return PageParams(decode_cursor(cursor) if cursor else None, limit)

    return dependency


# What a sort column, tiebreak and cast may be: spliced into SQL, so never anything but a name.
_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


def _sql_name(text: str, what: str) -> str:
    if not _SQL_NAME.match(text):
        raise ValueError(f"{what} {text!r} is not a plain SQL name")
    return text


@dataclass(frozen=True)
class SortKey:
    column: str  # the SQL column (NOT NULL), e.g. "c.opened_at"
    cast: str = "text"  # its Postgres type, for the cursor's value: timestamptz, bigint, numeric, date, text

    def __post_init__(self) -> None:
        _sql_name(self.column, "sort column")
        _sql_name(self.cast, "sort cast")


@dataclass(frozen=True)
class Sort:
    key: str
    column: str
    cast: str
    descending: bool

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key


def sort_param(keys: dict[str, SortKey], default: str) -> Callable[..., Sort]:
    allowed = ", ".join(sorted(keys))
    default_key = default.lstrip("-")
    if default_key not in keys:
        raise ValueError(f"the default sort {default!r} is not one of the keys ({allowed})")

    def dependency(sort: str = Query(default, description=f"`key` ascending or `-key` descending; keys: {allowed}",
                                     max_length=64)) -> Sort:
        key = sort.strip().lstrip("-")
        if key not in keys:
            raise HTTPException(422, [{"loc": ["query", "sort"], "msg": f"unknown sort {sort!r}; sort by one of: "
                                                                         f"{allowed} (prefix - for descending)",
                                       "type": "sort_invalid"}])
        spec = keys[key]
        return Sort(key, spec.column, spec.cast, sort.strip().startswith("-"))

    return dependency


@dataclass(frozen=True)
class Keyset:
    where: str
    order_by: str
    params: list[Any]


def keyset(sort: Sort, tiebreak: str, cursor: dict[str, Any] | None, first_param: int) -> Keyset:
    """The WHERE condition and ORDER BY that continue after `cursor` in `sort` order, the tiebreak
    column (unique, text) making the order total. Query `limit + 1` rows and pass them to make_page."""
    _sql_name(tiebreak, "tiebreak column")
    direction = "DESC" if sort.descending else "ASC"
    order_by = f"{sort.column} {direction}, {tiebreak} {direction}"
    if cursor is None:
        return Keyset("TRUE", order_by, [])
    if cursor.get("s") != sort.text:
        raise bad_cursor(f"it was made for sort {cursor.get('s')!r}, not {sort.text!r}; start again without a cursor")
    value, last = cursor["k"] if isinstance(cursor["k"], list) and len(cursor["k"]) == 2 else (None, None)
    if value is None or last is None:
        raise bad_cursor("it is not a cursor this API wrote")
    _check_cursor_value(str(value), sort.cast)
    op = "<" if sort.descending else ">"
    a, b = first_param, first_param + 1
    where = f"({sort.column}, {tiebreak}::text) {op} (${a}::text::{sort.cast}, ${b}::text)"
    return Keyset(where, order_by, [str(value), str(last)])


def _check_cursor_value(value: str, cast: str) -> None:
    """A cursor's sort value must read as its column's type, or Postgres would fail on it (a 500)."""
    parsers: dict[str, Callable[[str], Any]] = {
        "timestamptz": datetime.fromisoformat, "timestamp": datetime.fromisoformat, "date": date.fromisoformat,
        "bigint": int, "integer": int, "int": int, "smallint": int, "numeric": Decimal, "real": float,
        "double": float}
    parse = parsers.get(cast)
    if parse is None:
        return
    try:
        parse(value)
    except (ValueError, ArithmeticError):
        raise bad_cursor(f"its position {value!r} is not a {cast}") from None


def make_page(rows: Sequence[T], limit: int, sort: Sort, key_of: Callable[[T], tuple[Any, Any]]) -> Page[T]:
    """The first `limit` of `rows` (queried with limit + 1) and the cursor after the last of them."""
    items = list(rows[:limit])
    next_cursor = None
    if len(rows) > limit and items:
        value, last = key_of(items[-1])
        if isinstance(value, datetime):
            value = value.isoformat()
        next_cursor = encode_cursor({"s": sort.text, "k": [value, str(last)]})
    return Page[Any](items=items, next_cursor=next_cursor, limit=limit)


# ---------------------------------------------------------------- ETag / If-Match

IfMatch = Annotated[str | None, Header(alias="If-Match", description=(
    "the ETag of the resource as last read; the action is refused with 412 when it has changed since"))]


def etag_of(representation: BaseModel | dict[str, Any]) -> str:
    data = representation.model_dump(mode="json") if isinstance(representation, BaseModel) else representation
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:32]
    return f'"{digest}"'


def check_if_match(if_match: str | None, current: str) -> None:
    """412 when If-Match is given and names none of the resource's current ETag (`*` matches any)."""
    if if_match is None:
        return
    tags = [t.strip().removeprefix("W/") for t in if_match.split(",") if t.strip()]
    if "*" in tags or current in tags:
        return
    raise HTTPException(412, f"If-Match {if_match} does not match the current ETag {current}: it changed since you "
                             "read it; fetch it again, check, and retry", headers={"ETag": current})


# ---------------------------------------------------------------- Idempotency-Key

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255
MAX_STORED_BODY = 1024 * 1024


class Idempotency:
    """ASGI middleware: a POST with `Idempotency-Key` is answered once per key, credential and
    route; a retry gets the stored response. Only successes are kept: a refused request (409, 412,
    422, …) changed nothing, so its retry is simply tried again. The table is in each service's schema
    (shared/migrations/0010_http_idempotency.sql)."""

    def __init__(self, app: ASGIApp, pool_of: Callable[[], asyncpg.Pool | None], now: Callable[[], datetime]) -> None:
        self.app = app
        self.pool_of = pool_of
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        pool = self.pool_of()
        if key is None or pool is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not key.strip() or len(key) > MAX_KEY_CHARS:
            await problem_response(422, f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters", instance=path,
                                   errors=[{"field": "header.Idempotency-Key", "message": "1-255 characters",
                                            "type": "string_length"}])(scope, receive, send)
            return
        body = await read_body(receive)
        credential = hashlib.sha256(headers.get("authorization", "").encode()).hexdigest()
        fingerprint = hashlib.sha256(f"{path}?{scope.get('query_string', b'').decode('latin-1')}".encode()
                                     + b"\n" + body).hexdigest()
        now = self.now()
        async with pool.acquire() as conn:
            await conn.execute(  # what has expired, a few rows at a time
                "DELETE FROM http_idempotency WHERE ctid IN (SELECT ctid FROM http_idempotency WHERE created_at < $1 "
                "LIMIT 100)", now - IDEMPOTENCY_TTL)
            row = await conn.fetchrow(
                """INSERT INTO http_idempotency (key, credential, route, fingerprint, created_at)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key, credential) DO NOTHING RETURNING key""",
                key, credential, path, fingerprint, now)
            stored = None if row is not None else await conn.fetchrow(
                "SELECT route, fingerprint, status, headers, body FROM http_idempotency WHERE key = $1 AND credential = $2",
                key, credential)
        if stored is not None:
            await self._answer_again(stored, path, fingerprint, scope, receive, send)
            return
        await self._first(pool, key, credential, body, scope, send)

    async def _answer_again(self, stored: asyncpg.Record, path: str, fingerprint: str, scope: Scope,
                            receive: Receive, send: Send) -> None:
        if stored["route"] != path or stored["fingerprint"] != fingerprint:
            response: Response = problem_response(
                422, "this Idempotency-Key was used for a different request (another route or body); use a new key "
                     "for a new request", instance=path, type_=PROBLEM_BASE + "idempotency-key-reused")
        elif stored["status"] is None:
            response = problem_response(409, "a request with this Idempotency-Key is still being processed; retry "
                                             "shortly", instance=path, headers={"Retry-After": "1"},
                                        type_=PROBLEM_BASE + "idempotency-in-progress")
        else:
            hdrs = dict(orjson.loads(stored["headers"]))
            hdrs["Idempotency-Replayed"] = "true"
            response = Response(stored["body"], status_code=stored["status"], headers=hdrs)
        await response(scope, receive, send)

    async def _first(self, pool: asyncpg.Pool, key: str, credential: str, body: bytes, scope: Scope,
                     send: Send) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def replay_receive() -> Message:
            nonlocal body
            out, body = body, b""
            return {"type": "http.request", "body": out, "more_body": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            await _forget(pool, key, credential)
            raise
        status = int(start.get("status", 500))
        content = b"".join(chunks)
        if not 200 <= status < 300 or len(content) > MAX_STORED_BODY:
            await _forget(pool, key, credential)  # nothing was done, or not for sure: a retry tries again
            return
        kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
                if k.decode("latin-1").lower() in ("content-type", "location", "etag")}
        async with pool.acquire() as conn:
            await conn.execute("UPDATE http_idempotency SET status = $3, headers = $4, body = $5 "
                               "WHERE key = $1 AND credential = $2", key, credential, status,
                               orjson.dumps(kept).decode(), content)


async def _forget(pool: asyncpg.Pool, key: str, credential: str) -> None:
    try:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM http_idempotency WHERE key = $1 AND credential = $2", key, credential)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # the row expires with the TTL
        log.warning("could not forget an idempotency key", error=f"{type(exc).__name__}: {exc}"[:200])


async def read_body(receive: Receive) -> bytes:
    """A request's whole body (the caller bounds its size; BodySizeLimit does, outside)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


# ---------------------------------------------------------------- installing it on an app

# Statuses every /v1 operation can answer whatever it does: the bearer token (401, 403, 429 after
# failed tokens), the body limit (413), validation (422) and a dependency outage (503).
COMMON_PROBLEMS = (401, 403, 413, 422, 429, 503)


def install(app: FastAPI, *, pool_of: Callable[[], asyncpg.Pool | None] | None = None,
            now: Callable[[], datetime] | None = None) -> None:
    """Problem details for every error, Idempotency-Key on every POST (when the app has a
    database), and an OpenAPI document that says so on every operation."""
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    if pool_of is not None:
        app.add_middleware(Idempotency, pool_of=pool_of, now=now or (lambda: datetime.now(UTC)))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                                 tags=app.openapi_tags)
            _document_convention(schema, idempotent=pool_of is not None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_convention(schema: dict[str, Any], *, idempotent: bool) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
                          | {"title": "Problem"})
    for name, sub in Problem.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items():
        components.setdefault(name, sub)
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            if path.startswith("/v1/"):
                for status in COMMON_PROBLEMS:
                    responses.setdefault(str(status), {})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    detail = _EXAMPLES.get(int(status), HTTPStatus(int(status)).phrase.lower())
                    response["description"] = response.get("description") or HTTPStatus(int(status)).phrase
                    if response.get("description") == "Validation Error":
                        response["description"] = "Unprocessable Content"
                    content = response.get("content", {}).get(PROBLEM_JSON) or {}
                    example = content.get("example") or problem_body(int(status), detail, instance=path)
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"},
                                                          "example": example}}
            if method == "post" and idempotent and path.startswith("/v1/"):
                params = op.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in params):
                    params.append({
                        "name": "Idempotency-Key", "in": "header", "required": False,
                        "description": "a unique key per intended request (e.g. a UUID); a retry with the same key "
                                       "and body gets the first response again (`Idempotency-Replayed: true`) "
                                       "instead of doing it twice; kept 24 h",
                        "schema": {"type": "string", "maxLength": MAX_KEY_CHARS},
                        "example": "5f0c1e1e-8c1b-4d0e-9a53-0d7c6a1b2f10"})
