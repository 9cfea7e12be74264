"""HTTP for every service: /health, /ready, /metrics, bearer-token roles (static machine tokens,
and the short-lived EdDSA tokens the console signs for a person), body-size limits."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

import asyncpg
import jwt
import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, AwareDatetime
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.api import install as install_convention
from shared.api import problem_response, read_body
from shared.errors import TransientError, is_transient
from shared.privacy import OpsSeeNoPersonalData
from shared.ratelimit import FailureLimiter, client_address
from shared.tracing import TraceRequests
from shared.validation import nul_path

log = structlog.get_logger("aftersales.http")

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

ROLES = ("agent", "supervisor", "quality", "ops", "producer")
# Upper bounds for paging parameters: (page - 1) * page_size or an offset past a bigint failed in
# Postgres as a 500; no list is that long, so a larger value is refused with 422 instead.
MAX_PAGE = 100_000
MAX_OFFSET = 10_000_000


# The moments an API takes (back-dated steps, report windows, call-backs). Outside them, date
# arithmetic (a window of 30 days before year 1) or the conversion to UTC overflowed into a 500.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def moment_in_range(value: datetime, name: str = "the time") -> datetime:
    """The moment, if it has a timezone and lies in [EARLIEST, LATEST]; else ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no timezone; add an offset such as +08:00")
    try:
        inside = EARLIEST <= value <= LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise ValueError(f"{name} {value.isoformat()} is outside {EARLIEST.year}-{LATEST.year}")
    return value


# A request-model field: an ISO 8601 date-time with an offset, within the years above.
Moment = Annotated[AwareDatetime, AfterValidator(moment_in_range)]


def check_moments(**moments: datetime | None) -> None:
    """Refuse (422) query moments without a timezone or outside the years above."""
    for name, value in moments.items():
        if value is not None:
            try:
                moment_in_range(value, name)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None


def check_paging(*, page: int | None = None, offset: int | None = None) -> None:
    """Refuse (422) a page or offset no list reaches, before it overflows a query's bigint."""
    if page is not None and page > MAX_PAGE:
        raise HTTPException(422, f"page {page} is past any list (at most {MAX_PAGE}); narrow the search instead")
    if offset is not None and offset > MAX_OFFSET:
        raise HTTPException(422, f"offset {offset} is past any list (at most {MAX_OFFSET}); narrow the search instead")


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str
    # A `department` person's department (the console token's `department` claim): such a
    # person sees and works only the cases routed to it.
    department: str | None = None
    # An agent's scope (the console token's `regions` and `dealers` claims, from their account):
    # they see only customers of these regions or dealers. Both empty: the whole group (the central
    # hotline, and static tokens, which are not people's).
    regions: tuple[str, ...] = ()
    dealers: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        return self.role == "agent" and bool(self.regions or self.dealers)

    def scope_params(self) -> tuple[list[str] | None, list[str] | None]:
        """The regions and dealers as the two text[] parameters of `SCOPE_SQL` (both None: everything)."""
        return (list(self.regions), list(self.dealers)) if self.scoped else (None, None)

    def covers(self, region: str | None, dealer: str | None) -> bool:
        """A record of this region and dealer is in the person's scope (always, when unscoped)."""
        return not self.scoped or (region is not None and region in self.regions) or (
            dealer is not None and dealer in self.dealers)


# The SQL condition that a row's region / dealer columns are in a person's scope: the one rule
# follow-up, complaints and the notifier hold a scoped agent to (intake and the console apply it to a
# customer's file and vehicles). A template for str.format with constants only: `region`, `dealer`
# (the columns) and `regions`, `dealers` (the $n of the two text[] parameters that carry
# `Principal.scope_params`; both NULL: every row). A row with neither a region nor a dealer is
# outside every scope. The scope itself always goes in as parameters, never into the SQL text.
SCOPE_SQL = ("(({regions}::text[] IS NULL AND {dealers}::text[] IS NULL) OR {region} = ANY({regions}::text[]) "
             "OR {dealer} = ANY({dealers}::text[]))")


def outside_scope(who: Principal, what: str) -> HTTPException:
    """The 403 a scoped agent gets for a record outside their regions and dealers."""
    return HTTPException(403, f"{what} is outside your scope (regions: {', '.join(who.regions) or '-'}; dealers: "
                              f"{', '.join(who.dealers) or '-'}); ask a colleague of that region or a supervisor")


_bearer = HTTPBearer(auto_error=False, description="A token issued to a person or system, bound to one role")

# The tokens the console signs for the person signed in (DESIGN.md section 11).
CONSOLE_ISSUER = "aftersales-console"
CONSOLE_AUDIENCE = "aftersales"
CONSOLE_TOKEN_MAX_SECONDS = 15 * 60
PERSON_ROLES = ("agent", "supervisor", "quality", "department")  # machines (ops, producer) keep static tokens


class ConsoleKeyError(ValueError):
    """The configured console key cannot be read."""


def decode_ed25519_key(text: str, what: str) -> bytes:
    """32 raw key bytes from base64 (standard or URL-safe, padded or not)."""
    raw = text.strip()
    try:
        data = base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        data = b""
    if len(data) != 32:
        raise ConsoleKeyError(f"{what} is neither PEM nor the 32 bytes of an Ed25519 key in base64; "
                              "make a pair with `aftersales console keys`")
    return data


@lru_cache(maxsize=4)
def console_public_key(text: str) -> Ed25519PublicKey:
    """The console's public key from AFTERSALES_CONSOLE_PUBLIC_KEY (PEM or base64 raw)."""
    if text.strip().startswith("-----BEGIN"):
        key = load_pem_public_key(text.strip().encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ConsoleKeyError("AFTERSALES_CONSOLE_PUBLIC_KEY is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(decode_ed25519_key(text, "AFTERSALES_CONSOLE_PUBLIC_KEY"))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def verify_person_token(token: str, public_key: Ed25519PublicKey) -> Principal:
    """The person of a console token (role, subject, department); ValueError saying why it is refused."""
    try:
        claims = jwt.decode(
            token, public_key, algorithms=["EdDSA"], audience=CONSOLE_AUDIENCE, issuer=CONSOLE_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]}, leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise ValueError("the console token has expired; sign in to the console again") from None
    except jwt.InvalidTokenError as exc:
        raise ValueError(f"the console token is not valid ({exc})") from None
    if not isinstance(claims.get("iat"), int) or claims["exp"] - claims["iat"] > CONSOLE_TOKEN_MAX_SECONDS:
        raise ValueError(f"the console token lives longer than {CONSOLE_TOKEN_MAX_SECONDS // 60} minutes; "
                         "such tokens are refused")
    role, person = claims.get("role"), claims.get("sub")
    if role not in PERSON_ROLES or not isinstance(person, str) or not person:
        raise ValueError(f"the console token's role {role!r} is not one of {', '.join(PERSON_ROLES)}")
    department = claims.get("department")
    if role == "department" and (not isinstance(department, str) or not department):
        raise ValueError("a department person's console token must name the department (claim `department`); "
                         "sign in to the console again")
    scope: dict[str, tuple[str, ...]] = {}
    for claim in ("regions", "dealers"):
        value = claims.get(claim, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"the console token's `{claim}` claim must be a list of codes; sign in to the console again")
        scope[claim] = tuple(value) if role == "agent" else ()
    return Principal(role=role, subject=person, department=department if role == "department" else None, **scope)


def _person(request: Request, token: str) -> Principal | None:
    """A console token's person, None when it is not one; 401 when it is a bad one."""
    configured = request.app.state.runtime.settings.console_public_key
    if not configured or not looks_like_jwt(token):
        return None
    try:
        return verify_person_token(token, console_public_key(configured))
    except ConsoleKeyError as exc:
        log.error("console tokens cannot be checked", reason=str(exc))
        raise HTTPException(401, "console tokens cannot be checked here: the service's console key is "
                                 "misconfigured", headers={"WWW-Authenticate": "Bearer"}) from None
    except ValueError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def _auth_failures(app: Any, settings: Any) -> FailureLimiter:
    limiter: FailureLimiter | None = getattr(app.state, "auth_failures", None)
    if limiter is None:  # an app not made by create_app (the console mounts routes of its own)
        limiter = app.state.auth_failures = FailureLimiter(settings.auth_failures_per_client,
                                                           timedelta(seconds=settings.auth_failure_window_seconds))
    return limiter


def _too_many_bad_tokens(wait: int, limiter: FailureLimiter) -> HTTPException:
    return HTTPException(
        429, f"too many requests with a bad bearer token from this address ({limiter.limit} within "
             f"{limiter.window.total_seconds():.0f} s); try again in {wait} s with a valid token",
        headers={"Retry-After": str(wait)},
    )


def require(*roles: str) -> Any:
    """A dependency that admits only bearer tokens of the given roles: a static machine token,
    or a console token for a person (the principal's subject is then that person)."""
    allowed = tuple(roles)

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        runtime = request.app.state.runtime
        limiter = _auth_failures(request.app, runtime.settings)
        client = client_address(request.scope.get("client"), request.headers.get("x-forwarded-for"),
                                runtime.settings.trust_forwarded_for)
        now = runtime.clock.now()
        wait = limiter.retry_after(client, now)
        if wait is not None:
            raise _too_many_bad_tokens(wait, limiter)
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                401, "missing bearer token: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            found = _person(request, credentials.credentials)
        except HTTPException:
            limiter.failed(client, now)
            raise
        if found is None:
            tokens: dict[str, tuple[str, str]] = runtime.settings.parsed_api_tokens()
            for token, (role, subject) in tokens.items():  # constant-time comparison against every token
                if hmac.compare_digest(token.encode(), credentials.credentials.encode()):
                    found = Principal(role=role, subject=subject)
        if found is None:
            wait = limiter.failed(client, now)
            if wait is not None:
                log.warning("bad bearer tokens from one client: refused for a while", client=client, seconds=wait)
                raise _too_many_bad_tokens(wait, limiter)
            raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        if found.role not in allowed:
            raise HTTPException(
                403, f"role {found.role!r} may not use this endpoint; it is for: {', '.join(allowed)}"
            )
        request.state.principal = found  # shared.privacy masks what ops is answered
        return found

    return Depends(dependency)


class BodySizeLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            # Middlewares between here and the endpoint may wrap the signal in an ExceptionGroup.
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = problem_response(413, f"request body is larger than the limit of {self.max_bytes} bytes")
        await response({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


class RefuseNul:
    """Refuse with 422 a request holding U+0000 (NUL) in its path, its query or its body (JSON,
    whatever the Content-Type says: the webhook reads its body as JSON regardless).

    Postgres text cannot store the character: a NUL that reached a query (a path id, a search
    term, a body field) failed there as a 500. No endpoint has a use for it, so it is refused at
    the door, saying where it is. The body is read whole (BodySizeLimit, outside, bounds it) and
    handed on unchanged, so a signature over it still verifies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is None:
            body = await read_body(receive)
            where = _nul_in_json(body)
            receive = _replay(body)
        if where is not None:
            refusal = f"{where} holds the character U+0000 (NUL), which cannot be stored; remove it"
            response = problem_response(422, refusal, instance=scope.get("path"),
                                        errors=[{"field": where, "message": refusal, "type": "nul_character"}])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in scope.get("path", ""):
        return "the path"
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"query parameter {name.replace(chr(0), '<NUL>')!r}"
    return None


def _nul_in_json(body: bytes) -> str | None:
    if b"\\u0000" not in body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # not JSON: the endpoint says so
    return nul_path(document, "body")


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(runtime: ServiceRuntime[Any], router: APIRouter | None, *, description: str = "") -> FastAPI:
    name = runtime.definition.name
    app = FastAPI(
        title=f"Aftersales {name}",
        version="1.0.0",
        description=description or runtime.definition.description,
        openapi_tags=[{"name": "operations", "description": "health, readiness and metrics"}],
    )
    app.state.runtime = runtime
    _auth_failures(app, runtime.settings)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # the template, e.g. /v1/cases/{case_id}
        metrics.HTTP_REQUESTS.labels(name, request.method, path, str(response.status_code)).inc()
        metrics.HTTP_REQUEST_SECONDS.labels(name, request.method, path).observe(elapsed)
        return response

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/ready", tags=["operations"], summary="Kafka and Postgres are reachable")
    async def ready() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def unavailable(request: Request, exc: Exception) -> Response:
        """A database or broker outage is not a bug in the request: 503 with Retry-After, so
        clients retry and monitoring does not count it as a server error."""
        if not is_transient(exc):
            raise exc
        log.warning("request refused while a dependency is down", path=request.url.path,
                    error=f"{type(exc).__name__}: {exc}"[:200])
        return problem_response(503, f"{name} is temporarily unavailable (its database or broker is down); "
                                     "retry shortly", instance=request.url.path, headers={"Retry-After": "5"})

    for transient in (TransientError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        app.add_exception_handler(transient, unavailable)
    if router is not None:
        app.include_router(router)
    # The one convention (shared/api.py): problem details, Idempotency-Key on POSTs, documented.
    install_convention(app, pool_of=lambda: getattr(runtime, "pool", None), now=lambda: runtime.clock.now())
    app.add_middleware(RefuseNul)
    app.add_middleware(OpsSeeNoPersonalData)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.http_max_body_bytes)
    app.add_middleware(TraceRequests, service=name, settings=runtime.settings)  # outermost: a span per request
    return app


def runtime_of(request: Request) -> ServiceRuntime[Any]:
    return request.app.state.runtime  # type: ignore[no-any-return]
