"""HTTP for every service: /health, /ready, /metrics, bearer-token roles, body-size limits."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime

ROLES = ("agent", "supervisor", "quality", "ops", "producer")


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str


_bearer = HTTPBearer(auto_error=False, description="A token issued to a person or system, bound to one role")


def require(*roles: str) -> Any:
    """A dependency that admits only bearer tokens of the given roles."""
    allowed = tuple(roles)

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                401, "missing bearer token: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
            )
        tokens: dict[str, tuple[str, str]] = request.app.state.runtime.settings.parsed_api_tokens()
        found: tuple[str, str] | None = None
        for token, who in tokens.items():  # constant-time comparison against every token
            if hmac.compare_digest(token.encode(), credentials.credentials.encode()):
                found = who
        if found is None:
            raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        role, subject = found
        if role not in allowed:
            raise HTTPException(
                403, f"role {role!r} may not use this endpoint; it is for: {', '.join(allowed)}"
            )
        return Principal(role=role, subject=subject)

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
        response = JSONResponse(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"}, status_code=413
        )
        await response({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(runtime: ServiceRuntime, router: APIRouter | None, *, description: str = "") -> FastAPI:
    name = runtime.definition.name
    app = FastAPI(
        title=f"Aftersales {name}",
        version="1.0.0",
        description=description or runtime.definition.description,
        openapi_tags=[{"name": "operations", "description": "health, readiness and metrics"}],
    )
    app.state.runtime = runtime

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_REQUESTS.labels(name, request.method, path, str(response.status_code)).inc()
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

    if router is not None:
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.http_max_body_bytes)
    return app


def runtime_of(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]
