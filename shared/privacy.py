"""Least privilege for people (issue 19, docs/security.md "Least privilege"):

- `ops` (the machine role that runs the platform: registers, KPIs, notifications, alerts) sees
  no personal data. Every answer a service gives to an ops token passes through
  `OpsSeeNoPersonalData`: in JSON, the value of every personal field (names, phones, e-mails,
  addresses, plates, and free text a person wrote: call notes, summaries, descriptions, letter
  bodies …) is replaced by `***` (null stays null, so "missing" is still visible); ids, regions,
  dealers, states, times and counts stay. An answer that is not JSON (a complaint's document) is
  refused with 403. One rule for every route, present and future, so a new route cannot forget it.
- an agent's scope: the regions and dealers a person works for travel in the console's signed
  token (claims `regions`, `dealers`; `shared.http.Principal`); intake's store and the console's
  store hold the agent to them (a customer whose file or vehicle is in one of the regions, or
  whose vehicle one of the dealers sold or serviced)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MASK = "***"
# Keys whose values are personal data or free text a person wrote about a customer.
PERSONAL_KEYS = frozenset({
    "name", "customer_name", "addressee",
    "phone", "phones", "mobile", "email", "address", "postal_address", "person_in_charge", "contact",
    "recipient", "plate",
    "summary", "notes", "note", "comments", "comment", "body", "text", "description", "content", "talking_points",
    "requests", "resolution", "handling", "answer", "solution", "feedback", "remarks", "transcript",
})


def mask_personal(value: Any) -> Any:
    """The document with every personal field's value masked (recursively; lists of rows too)."""
    if isinstance(value, dict):
        return {k: (_masked(v) if isinstance(k, str) and k.lower() in PERSONAL_KEYS else mask_personal(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_personal(v) for v in value]
    return value


def _masked(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [MASK for _ in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (bool, int, float)):
        return value  # a flag or a count named like a field (e.g. "phone": true) says nothing of the person
    return MASK


class OpsSeeNoPersonalData:
    """ASGI middleware: answers to an `ops` principal lose their personal data (see above).
    The principal is the one `shared.http.require` admitted (it leaves it in the request's state)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        def is_ops() -> bool:
            principal = (scope.get("state") or {}).get("principal")
            return getattr(principal, "role", None) == "ops"

        async def guarded_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if not is_ops():
                    await send(message)
                    return
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status, body, content_type = _for_ops(start, b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k.lower() not in (b"content-length", b"content-type", b"content-disposition")]
                headers += [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, guarded_send)


def _for_ops(start: Message, body: bytes) -> tuple[int, bytes, bytes]:
    status = int(start["status"])
    content_type = dict(start.get("headers", [])).get(b"content-type", b"")
    if content_type.startswith(b"application/json") or content_type.startswith(b"application/problem+json"):
        try:
            document = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            document = None
        return status, orjson.dumps(mask_personal(document)), content_type
    if status >= 400 or not body:
        return status, body, content_type or b"text/plain"
    refusal = {"detail": "role 'ops' sees no personal data: this answer is a document or file, which only the "
                         "staff working the case may read"}
    return 403, orjson.dumps(refusal), b"application/json"
