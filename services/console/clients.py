"""The console's calls to the services' HTTP APIs, each with a fresh token for the person
signed in (so the service records the action under that person). The console has no
write path of its own into another service's tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.console.config import ConsoleRules
from services.console.tokens import person_token
from shared import tracing
from shared.settings import Settings


@dataclass(frozen=True)
class Person:
    username: str
    display_name: str
    role: str
    locale: str
    csrf_token: str
    department: str | None = None  # a department user's department (the cases routed to it)
    # an agent's scope (their account's regions and dealers; both empty: the whole group). It travels
    # in the person's token, so every service holds the agent to it as the console's pages do.
    regions: tuple[str, ...] = ()
    dealers: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        return self.role == "agent" and bool(self.regions or self.dealers)


async def _pass_trace(request: httpx.Request) -> None:
    """The console page's trace goes on to the service it calls (W3C traceparent, shared/tracing.py):
    an agent's action and the events it causes are one trace."""
    context = tracing.current()
    if context is not None:
        for name, value in context.headers():
            request.headers[name] = value.decode()


class ServiceError(Exception):
    """A service refused or could not be reached; `message` says what to do."""

    def __init__(self, service: str, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.message = message
        self.fields = fields or {}  # a validation error's fields (of the body) and what the service said of each


class Services:
    def __init__(self, settings: Settings, rules: ConsoleRules, key: Ed25519PrivateKey,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.rules = rules
        self.key = key
        self._clients = {
            name: httpx.AsyncClient(
                base_url=settings.service_url(name) if name not in (transports or {}) else "http://" + name,
                transport=(transports or {}).get(name), timeout=httpx.Timeout(10.0, connect=3.0),
                event_hooks={"request": [_pass_trace]})
            for name in ("intake", "followup", "complaints", "quality", "notifier")
        }

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def call(self, person: Person, method: str, service: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201),
                   headers: dict[str, str] | None = None) -> Any:
        token = person_token(self.key, person.username, person.role, self.rules.token_minutes,
                             department=person.department, regions=person.regions, dealers=person.dealers)
        try:
            response = await self._clients[service].request(
                method, path, json=json, params=params,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ServiceError(service, 503, f"the {service} service cannot be reached ({type(exc).__name__}); "
                                             "try again in a moment") from None
        if response.status_code not in ok:
            raise ServiceError(service, response.status_code, _detail(response), _fields(response))
        return response.json() if response.content else None

    async def read(self, person: Person, service: str, path: str) -> tuple[Any, str | None]:
        """A GET of one resource and its ETag (to send back as If-Match with an action on it)."""
        response = await self.fetch(person, service, path)
        return response.json(), response.headers.get("etag")

    async def every(self, person: Person, service: str, path: str, params: dict[str, Any] | None = None, *,
                    limit: int = 200, pages: int = 20) -> tuple[list[Any], bool]:
        """The items of a list walked page by page (its `next_cursor`), at most `pages` pages; and
        whether more were left unread."""
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(pages):
            answer = await self.call(person, "GET", service, path,
                                     params={**(params or {}), "limit": limit, **({"cursor": cursor} if cursor else {})})
            items += answer["items"]
            cursor = answer.get("next_cursor")
            if not cursor:
                return items, False
        return items, True

    async def fetch(self, person: Person, service: str, path: str) -> httpx.Response:
        """A GET whose answer is a file (a case's photo, a report): the response as it came."""
        token = person_token(self.key, person.username, person.role, self.rules.token_minutes,
                             department=person.department, regions=person.regions, dealers=person.dealers)
        try:
            response = await self._clients[service].get(path, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise ServiceError(service, 503, f"the {service} service cannot be reached ({type(exc).__name__}); "
                                             "try again in a moment") from None
        if response.status_code != 200:
            raise ServiceError(service, response.status_code, _detail(response))
        return response


def _detail(response: httpx.Response) -> str:
    """The problem's text (RFC 9457 `detail`, every service's error shape; shared/api.py)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)


def _fields(response: httpx.Response) -> dict[str, str]:
    """A 422 problem's field errors by the body's field: {"phone": "Value error, phone '12' is not …"}."""
    if response.status_code != 422:
        return {}
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(errors, list):
        return {}
    found: dict[str, str] = {}
    for e in errors:
        field = e.get("field") if isinstance(e, dict) else None
        if isinstance(field, str) and field.startswith("body.") and len(field) > 5:
            found.setdefault(field[5:].split(".")[0], str(e.get("message") or ""))
    return found
