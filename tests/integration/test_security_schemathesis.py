"""Schemathesis against each service's OpenAPI document: no request it can make gets a 5xx.

The five services run as a Stack against the real database and broker, seeded through the
upstream topics (sales, pickups, complaints, defect reports, a campaign) so that handlers find
rows. For every operation of every service, schemathesis generates positive cases (valid by the
schema), negative cases (violating it: wrong types, missing or extra fields, out-of-range
numbers, odd path and query values) and positive cases aimed at ids that exist (complaints,
follow-ups, customers, documents). Each case is sent in process to the service's ASGI app with a
bearer token of a role the endpoint admits (the roles rotate case by case; read from the route's
`require(...)`), and schemathesis's `not_a_server_error` check judges the answer.

The Stack lives on an event loop of its own thread: schemathesis and hypothesis are synchronous,
asyncpg's pool belongs to the loop that made it, so every request is handed to that loop.
Generation is derandomized (the same cases on every run); counts are kept moderate for CI.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from services.notifier.config import NotifierSettings
from shared.settings import SERVICES
from tests.complaints_fixtures import complaints_state
from tests.integration.test_fuzz_intake import _examples
from tests.integration.test_security_endpoints import PUBLIC, declared_roles
from tests.support import TOKENS, Namespace, Stack, create_namespace, db, drop_namespace, manual_clock, publish
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.simulate import CST, Fleet

pytestmark = [
    pytest.mark.infra,
    # schemathesis's own strategies draw path parameters with `random`; not ours to change.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

T = TypeVar("T")
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
POSITIVE, NEGATIVE, AT_KNOWN_IDS = 16, 16, 4  # cases per operation (the last: per existing id, 3 ids)
# Path parameters and where the ids that exist are found (service schema, query).
KNOWN = {
    "customer_id": ("intake", "SELECT customer_id FROM customers ORDER BY customer_id LIMIT 3"),
    "followup_id": ("followup", "SELECT followup_id FROM followups ORDER BY followup_id LIMIT 3"),
    "complaint_id": ("complaints", "SELECT complaint_id FROM cases ORDER BY complaint_id LIMIT 3"),
    "document_id": ("complaints", "SELECT document_id FROM documents ORDER BY document_id LIMIT 3"),
    "alert_id": ("quality", "SELECT alert_id FROM alerts ORDER BY alert_id LIMIT 3"),
    "letter_id": ("notifier", "SELECT letter_id::text FROM letters ORDER BY letter_id LIMIT 3"),
}


class LoopThread:
    """An asyncio loop running in a thread; `run` hands it a coroutine and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stack-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Platform:
    thread: LoopThread
    ns: Namespace
    stack: Stack
    gateway: SmsGatewaySink
    mail: MailSink
    known: dict[str, list[str]] = field(default_factory=dict)


async def _start(thread: LoopThread, tmp: Path) -> Platform:
    ns = await create_namespace()
    gateway = await SmsGatewaySink(PeerStore()).start()
    mail = MailSink(gateway.store).start()
    notifier = NotifierSettings(sms_gateway_url=gateway.url, smtp_port=mail.port, dispatch_tick_seconds=0.1)
    state = {**complaints_state(tmp), "notifier": {"settings": notifier}}
    stack = await Stack(ns, manual_clock(NOW.isoformat()), services=SERVICES, state=state).start()
    return Platform(thread, ns, stack, gateway, mail)


async def _seed(platform: Platform) -> None:
    """Data for the handlers to find: files, visits, follow-ups, complaints, defect reports."""
    ns = platform.ns
    fleet = Fleet(seed=4242)
    sales, dms, erp, crm = [], [], [], []
    for n in range(6):
        vehicle = fleet.vehicle(NOW - timedelta(days=300 + n))
        sales.append(fleet.sale(vehicle))
        dms.append(fleet.pickup(vehicle, NOW - timedelta(days=2, hours=n)))
        erp.append(fleet.defect(vehicle, "controller", NOW - timedelta(days=1, hours=n)))
        crm.append(fleet.complaint(vehicle.customer, NOW - timedelta(hours=3 + n), "刹车异响 brakes squeal",
                                   vin=vehicle.vin))
    erp.append(fleet.shipment("D001", NOW - timedelta(days=3)))
    crm.append(fleet.campaign("free_inspection_week", "免费检测周", NOW + timedelta(days=5), 7, ["east", "south"],
                              NOW - timedelta(days=1)))
    for topic, records in (("upstream.sales", sales), ("upstream.dms", dms), ("upstream.erp", erp),
                           ("upstream.crm", crm)):
        await publish(ns.settings, topic, records)
    for _ in range(300):
        counts = []
        for schema, query in (("complaints", "SELECT count(*) FROM cases"), ("followup", "SELECT count(*) FROM followups"),
                              ("quality", "SELECT count(*) FROM reports")):
            conn = await db(ns, schema)
            try:
                counts.append(await conn.fetchval(query))
            finally:
                await conn.close()
        if all(c >= 6 for c in counts):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the seed did not arrive: complaints, follow-ups, reports = {counts}")
    # A handling document, so the document route has one to find.
    conn = await db(ns, "complaints")
    try:
        complaint_id = await conn.fetchval("SELECT complaint_id FROM cases ORDER BY complaint_id LIMIT 1")
    finally:
        await conn.close()
    transport = httpx.ASGITransport(app=platform.stack["complaints"].app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                 headers={"Authorization": f"Bearer {TOKENS['agent']}"}) as client:
        response = await client.post(f"/v1/complaints/{complaint_id}/documents",
                                     json={"title": "handling report", "content": "checked the brakes"})
        assert response.status_code == 201, response.text
    for name, (schema, query) in KNOWN.items():
        conn = await db(ns, schema)
        try:
            platform.known[name] = [str(v) for (v,) in await conn.fetch(query)]
        finally:
            await conn.close()


async def _stop(platform: Platform) -> None:
    try:
        await platform.stack.stop()
    finally:
        await platform.gateway.stop()
        platform.mail.stop()
        await drop_namespace(platform.ns)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    thread = LoopThread()
    started = thread.run(_start(thread, tmp_path_factory.mktemp("documents")))
    try:
        thread.run(_seed(started))
        yield started
    finally:
        thread.run(_stop(started))
        thread.close()


def _request_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests-style keyword arguments (what schemathesis prepares) as httpx takes them."""
    out: dict[str, Any] = {"method": kwargs["method"], "url": kwargs["url"], "headers": dict(kwargs.get("headers") or {}),
                           "params": kwargs.get("params") or None, "cookies": kwargs.get("cookies") or None}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, (bytes, str)):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    if kwargs.get("files"):
        out["files"] = kwargs["files"]
    return out


async def _send_all(app: Any, requests: list[dict[str, Any]]) -> list[httpx.Response | Exception]:
    answers: list[httpx.Response | Exception] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://test") as client:
        for request in requests:
            try:
                answers.append(await client.request(**request))
            except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError, ValueError, TypeError) as exc:
                # A case the HTTP layer cannot put on the wire (a header with a newline …): no request.
                answers.append(exc)
    return answers


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_no_server_error(platform: Platform, service: str) -> None:
    runtime = platform.stack[service]
    schema = schemathesis.openapi.from_dict(runtime.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    sent = unsendable = 0
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for operation in operations:
        path = operation.path
        roles = [None] if path in PUBLIC else \
            [r for r in TOKENS if ("agent" if r == "agent2" else r) in declared_roles(runtime, operation.method, path)[0]]
        cases = list(_examples(operation.as_strategy(GenerationMode.POSITIVE), POSITIVE))
        try:
            cases += _examples(operation.as_strategy(GenerationMode.NEGATIVE), NEGATIVE)
        except Exception as exc:  # noqa: BLE001 - an operation with nothing to violate (no parameters, no body)
            if re.findall(r"{(\w+)}", path) or operation.body:
                raise AssertionError(f"{operation.label}: no negative cases could be generated: {exc!r}") from exc
        ids = [name for name in re.findall(r"{(\w+)}", path) if platform.known.get(name)]
        for n in range(3 if ids else 0):
            fixed = {name: platform.known[name][n % len(platform.known[name])] for name in ids}
            cases += _examples(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed), AT_KNOWN_IDS)
        requests = []
        for i, case in enumerate(cases):
            role = roles[i % len(roles)]
            token = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
            requests.append(_request_kwargs(case.as_transport_kwargs(base_url="http://test", headers=token)))
        answers = platform.thread.run(_send_all(runtime.app, requests))
        for case, answer in zip(cases, answers, strict=True):
            if isinstance(answer, Exception):
                unsendable += 1
                continue
            sent += 1
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            try:
                case.validate_response(answer, checks=[not_a_server_error])
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - schemathesis raises a FailureGroup
                failures.append(f"{operation.label}: {answer.status_code} {answer.text[:300]!r}\n"
                                f"    {case.as_curl_command(headers={'Authorization': 'Bearer <token>'})[:600]}\n"
                                f"    {type(exc).__name__}")
    assert sent >= 10 * len(operations), (sent, unsendable)
    assert not failures, f"{len(failures)} server errors (statuses {statuses}):\n" + "\n".join(failures[:15])
