"""One request followed across services and Kafka: intake and follow-up run as real service
processes on the real broker and database; a DMS posts a vehicle pickup to intake's signed
webhook with a W3C `traceparent`. With OTLP export pointed at a receiver in this test (a small
HTTP server decoding the protobuf ExportTraceServiceRequest), intake's request span, its relay's
sends, its consumer and handler, follow-up's consumer and handler and its relay all report spans
of that one trace, and the FollowUpScheduled record follow-up publishes carries a `traceparent`
of that trace. With export off (the default), every record still carries the trace (the given
context as it came, or one generated for a request without a header) and nothing reaches any
OTLP receiver, not even one on the default port 4318."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from services.intake.api import signature
from shared.tracing import TraceContext, from_headers, parse
from tests.support import (
    API_TOKENS,
    TEST_NOW,
    TOKENS,
    Namespace,
    ServiceProcess,
    TopicReader,
    count,
    create_namespace,
    drop_namespace,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.slow]

SECRET = "dms-secret-tracing-0123456789abcdef"
OTLP_DEFAULT_PORT = 4318


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (POST /v1/traces, protobuf), keeping what it is sent."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests += 1
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(ReceivedSpan(
                                resource.get("service.name", "?"), span.name, span.kind, span.trace_id.hex(),
                                span.span_id.hex(), span.parent_span_id.hex(),
                                {a.key: _value(a.value) for a in span.attributes}))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "int_value", "bool_value", "double_value") else kind


@contextlib.contextmanager
def receiver_on(port: int = 0) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(port)
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
async def hook_ns(infra: None) -> AsyncIterator[Namespace]:
    ns = await create_namespace(webhook_secrets=f"dms={SECRET}")
    try:
        yield ns
    finally:
        await drop_namespace(ns)


def _services(ns: Namespace, logs_dir: Path, **env: str) -> dict[str, ServiceProcess]:
    common = {
        "AFTERSALES_API_TOKENS": API_TOKENS, "AFTERSALES_WEBHOOK_SECRETS": f"dms={SECRET}",
        "AFTERSALES_CONSUMER_POLL_TIMEOUT_MS": "50", "AFTERSALES_DB_POOL_MIN": "1", "AFTERSALES_DB_POOL_MAX": "4",
        "AFTERSALES_LOG_LEVEL": "WARNING", **env,
    }
    processes = {name: ServiceProcess(ns, name, logs_dir, **common) for name in ("intake", "followup")}
    for process in processes.values():
        # nothing inherited from the shell running the tests decides whether spans are exported
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "AFTERSALES_OTLP_ENDPOINT",
                     "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
            if name not in env:
                process.env.pop(name, None)
    return processes


@contextlib.contextmanager
def running(processes: dict[str, ServiceProcess]) -> Iterator[None]:
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            process.wait_ready(timeout=90)
        yield
    finally:
        for process in processes.values():
            process.terminate()  # SIGTERM: a graceful stop flushes the spans still buffered


async def _post_pickup(intake: ServiceProcess, seed: int, traceparent: str | None) -> str:
    """A DMS's signed webhook request with one pickup; the pickup's VIN."""
    fleet = Fleet(seed=seed)
    vehicle = fleet.vehicle(TEST_NOW - timedelta(days=300))
    body = orjson.dumps([fleet.pickup(vehicle, TEST_NOW - timedelta(days=1))])
    timestamp = str(int(time.time()))  # wall time: intake checks a signature's age against the real clock
    headers = {"Authorization": f"Bearer {TOKENS['producer']}", "X-Aftersales-Producer": "dms",
               "X-Aftersales-Timestamp": timestamp, "X-Aftersales-Signature": signature(SECRET, timestamp, body),
               "Content-Type": "application/json"}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{intake.port}", timeout=10) as client:
        answer = await client.post("/v1/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return vehicle.vin


def _new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def _records(ns: Namespace, topic: str, event_type: str, n: int) -> list[Any]:
    async with TopicReader(ns.settings, topic) as reader:
        await reader.wait_for(count(event_type, n), timeout=60)
        return reader.of_type(event_type)


def _trace_of(read: Any) -> TraceContext:
    found = from_headers(list(read.record.headers or ()))
    assert found is not None, f"{read.event_type} has no valid traceparent header: {read.record.headers}"
    return found


async def test_one_webhook_request_is_one_trace_across_intake_kafka_and_followup(
        hook_ns: Namespace, logs_dir: Path) -> None:
    ns = hook_ns
    traceparent, trace_id, caller_span = _new_traceparent()
    with receiver_on() as receiver:
        processes = _services(ns, logs_dir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100")
        with running(processes):
            vin = await _post_pickup(processes["intake"], seed=31, traceparent=traceparent)
            (scheduled,) = [r for r in await _records(ns, "aftersales.followup", "FollowUpScheduled", 1)
                            if r.data["vin"] == vin]
            (picked_up,) = await _records(ns, "aftersales.intake", "VehiclePickedUp", 1)
            (forwarded,) = await _records(ns, "upstream.dms", "VehiclePickedUp", 1)

            def complete() -> bool:
                names = {(s.service, s.name.rsplit(".", 1)[-1]) for s in receiver.of_trace(trace_id)}
                return {("followup", "followup"), ("followup", "handle VehiclePickedUp")} <= names

            deadline = time.monotonic() + 30
            while not complete() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        spans = receiver.of_trace(trace_id)  # after the graceful stop: every buffered span flushed

    by = {(s.service, s.name): s for s in spans}  # the last of a name (follow-up sends twice: two handlers)
    names = sorted(by)
    prefix = ns.settings.topic_prefix
    # intake: the request (continuing the caller's span), the relay sending the forwarded record,
    # the consumer's poll of upstream.dms and its handler, the relay sending VehiclePickedUp
    request = by.get(("intake", "POST /v1/events"))
    assert request is not None, names
    assert request.parent_span_id == caller_span and request.kind == 2  # SERVER
    assert request.attributes["http.route"] == "/v1/events" and request.attributes["http.response.status_code"] == 200
    for expected in (("intake", f"send {prefix}upstream.dms"), ("intake", "process batch"),
                     ("intake", "handle VehiclePickedUp"), ("intake", f"send {prefix}aftersales.intake"),
                     ("followup", "process batch"), ("followup", "handle VehiclePickedUp"),
                     ("followup", f"send {prefix}aftersales.followup")):
        assert expected in by, f"{expected} missing from the trace's spans {names}"
    assert by[("intake", f"send {prefix}upstream.dms")].parent_span_id == request.span_id
    assert by[("followup", "handle VehiclePickedUp")].parent_span_id == by[("followup", "process batch")].span_id
    # every record on the way carries the trace; each names the relay's send span as its parent
    for read, sender in ((forwarded, ("intake", f"send {prefix}upstream.dms")),
                         (picked_up, ("intake", f"send {prefix}aftersales.intake")),
                         (scheduled, ("followup", f"send {prefix}aftersales.followup"))):
        carried = _trace_of(read)
        assert carried.trace_id == trace_id, read.event_type
        assert carried.traceparent[36:52] in {s.span_id for s in spans if (s.service, s.name) == sender}, read.event_type
    # the consumers continue from the record they read
    assert by[("followup", "process batch")].parent_span_id == _trace_of(picked_up).traceparent[36:52]
    assert {s.service for s in spans} == {"intake", "followup"}


async def test_with_export_off_records_still_carry_the_trace_and_nothing_is_sent(
        hook_ns: Namespace, logs_dir: Path) -> None:
    ns = hook_ns
    traceparent, trace_id, caller_span = _new_traceparent()
    try:
        default_port = receiver_on(OTLP_DEFAULT_PORT)
        receiver = default_port.__enter__()
    except OSError:  # someone else listens on 4318: a receiver on another port, still watched
        default_port = receiver_on()
        receiver = default_port.__enter__()
    try:
        processes = _services(ns, logs_dir)
        with running(processes):
            given = await _post_pickup(processes["intake"], seed=41, traceparent=traceparent)
            generated = await _post_pickup(processes["intake"], seed=42, traceparent=None)
            scheduled = {r.data["vin"]: r for r in await _records(ns, "aftersales.followup", "FollowUpScheduled", 2)}
            picked_up = {r.data["vin"]: r for r in await _records(ns, "aftersales.intake", "VehiclePickedUp", 2)}
            forwarded = {r.data["vin"]: r for r in await _records(ns, "upstream.dms", "VehiclePickedUp", 2)}
        await asyncio.sleep(0.5)
    finally:
        default_port.__exit__(None, None, None)

    # no spans are made: the caller's context is carried on every hop as it came
    hops = [_trace_of(r[given]) for r in (forwarded, picked_up, scheduled)]
    assert [h.traceparent for h in hops] == [traceparent] * 3
    assert caller_span in traceparent
    # a request without a traceparent starts a trace of its own, carried all the way just the same
    started = [_trace_of(r[generated]) for r in (forwarded, picked_up, scheduled)]
    assert len({h.traceparent for h in started}) == 1 and started[0].trace_id != trace_id
    assert parse(started[0].traceparent) == started[0]
    assert receiver.requests == 0 and receiver.spans == []
