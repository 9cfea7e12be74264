"""The W3C trace context helpers (shared/tracing.py): parsing `traceparent`/`tracestate` as the
spec says, what an outbox row carries (the current span's context, or the causing record's when
the handler took records of several traces), the relay's headers and `send` spans, the consumer's
batch and handler spans, the HTTP span named by route template, and when export is on."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import structlog
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared import tracing
from shared.clock import ManualClock
from shared.events import new_event
from shared.logging import configure_logging
from shared.settings import Settings
from shared.tracing import TraceContext, Tracing
from shared.uow import UnitOfWork
from tools.simulate import CST, Fleet

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"
OTHER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Service `traced` exports to memory (as if an OTLP endpoint were set); `quiet` does not."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "traced"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing._services["traced"] = Tracing("traced", provider, "memory://")
    tracing._services["quiet"] = Tracing("quiet", None, None)
    try:
        yield memory
    finally:
        tracing._services.pop("traced", None)
        tracing._services.pop("quiet", None)


LOCAL = TracerProvider().get_tracer("test")  # spans of a test's own, exported nowhere


def _id(span: ReadableSpan) -> str:
    return f"{span.context.trace_id:032x}"


# -- parsing --------------------------------------------------------------------------------------

def test_a_valid_traceparent_is_read_with_its_tracestate() -> None:
    found = tracing.parse(PARENT, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
    assert found == TraceContext(PARENT, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
    assert found.trace_id == TRACE
    context = found.span_context()
    assert (context.trace_id, context.span_id, int(context.trace_flags)) == (int(TRACE, 16), 0xB7AD6B7169203331, 1)
    assert context.trace_state.get("rojo") == "00f067aa0ba902b7"
    assert found.headers() == [("traceparent", PARENT.encode()),
                               ("tracestate", b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")]


@pytest.mark.parametrize("value", [
    "", "garbage", f"00-{TRACE}-b7ad6b7169203331", f"00-{TRACE}-b7ad6b716920333-01",
    f"00-{'0' * 32}-b7ad6b7169203331-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"ff-{TRACE}-b7ad6b7169203331-01",  # version ff is invalid
    f"00-{TRACE}-b7ad6b7169203331-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE}-b7ad6b7169203331-0g", f"0-{TRACE}-b7ad6b7169203331-01",
])
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert tracing.parse(value) is None


def test_a_traceparent_is_read_case_insensitively_and_a_later_version_by_its_prefix() -> None:
    assert tracing.parse(PARENT.upper().encode(), b"") == TraceContext(PARENT)
    later = f"cc-{TRACE}-b7ad6b7169203331-01-what-the-future-adds"
    assert tracing.parse(later) is not None and tracing.parse(later).trace_id == TRACE  # type: ignore[union-attr]


def test_the_record_headers_give_the_first_traceparent_and_tracestate() -> None:
    headers = [("event_type", b"VehicleSold"), ("traceparent", PARENT.encode()), ("tracestate", b"a=1"),
               ("traceparent", OTHER.encode())]
    assert tracing.from_headers(headers) == TraceContext(PARENT, "a=1")
    assert tracing.from_headers([("event_type", b"x")]) is None
    assert tracing.from_headers(None) is None
    assert tracing.from_headers([("traceparent", b"not one")]) is None


# -- what an outbox row carries -----------------------------------------------------------------

def test_an_outbox_row_carries_the_current_span_or_the_causing_records_trace(exported: InMemorySpanExporter) -> None:
    assert tracing.for_outbox(None) is None  # outside any span: nothing
    cause = TraceContext(OTHER, "k=v")
    assert tracing.for_outbox(cause) == cause  # carried on as it came
    with LOCAL.start_as_current_span("work", context=tracing.parent(TraceContext(PARENT))) as span:
        here = tracing.current()
        assert here is not None and here.trace_id == TRACE
        assert here.traceparent == f"00-{TRACE}-{span.get_span_context().span_id:016x}-01"
        assert tracing.for_outbox(None) == here
        assert tracing.for_outbox(TraceContext(PARENT)) == here  # same trace: the current span is the parent
        assert tracing.for_outbox(cause) == cause  # a record of another trace keeps its own
    assert exported.get_finished_spans() == ()  # `quiet` exports nothing


def test_export_off_makes_no_spans_and_carries_the_context_as_it_came() -> None:
    tracing._services.pop("nowhere", None)
    found = tracing.setup("nowhere", Settings.model_construct(otlp_endpoint=""))
    try:
        assert not found.exporting and found.provider is None and found.tracer is None
        assert tracing.setup("nowhere") is found  # once per process
        with tracing.consuming("nowhere", [TraceContext(PARENT, "k=v"), None], group=None):
            assert tracing.current() == TraceContext(PARENT, "k=v")
            with tracing.handling("nowhere", print, ["VehicleSold"], [TraceContext(OTHER)]):
                assert tracing.current() == TraceContext(OTHER)
            with tracing.handling("nowhere", print, ["VehicleSold"], [TraceContext(PARENT), None]):
                assert tracing.current() == TraceContext(PARENT, "k=v")
        with tracing.consuming("nowhere", [TraceContext(PARENT), TraceContext(OTHER)], group=None):
            assert tracing.current() is None  # several traces: each row carries its cause's
        assert tracing.current() is None
    finally:
        tracing._services.pop("nowhere", None)


def test_a_new_trace_has_random_valid_ids() -> None:
    first, second = tracing.new_context(), tracing.new_context()
    assert tracing.parse(first.traceparent) == first and first.traceparent.endswith("-01")
    assert first.trace_id != second.trace_id


def _uow() -> UnitOfWork[None]:
    return UnitOfWork(None, service="intake", settings=Settings.model_construct(topic_prefix=""),  # type: ignore[arg-type]
                      clock=ManualClock(datetime(2026, 11, 20, tzinfo=UTC)), deps=None)


def test_the_unit_of_work_writes_each_rows_trace_context(exported: InMemorySpanExporter) -> None:
    fleet = Fleet(seed=3)
    env = fleet.sale(fleet.vehicle(datetime(2026, 11, 1, tzinfo=CST)))
    cause_a = new_event(topic="upstream.sales", event_type="VehicleSold", data=env["data"], source="sales",
                        occurred_at=datetime(2026, 11, 1, tzinfo=CST))
    cause_b = new_event(topic="upstream.sales", event_type="VehicleSold", data=env["data"], source="sales",
                        occurred_at=datetime(2026, 11, 2, tzinfo=CST))
    uow = _uow()
    uow.traces[cause_a.event_id] = TraceContext(PARENT)
    uow.traces[cause_b.event_id] = TraceContext(OTHER, "k=v")
    with LOCAL.start_as_current_span("handle", context=tracing.parent(TraceContext(PARENT))):
        here = tracing.current()
        uow.publish("VehicleSold", env["data"], cause=cause_a)
        uow.publish("VehicleSold", env["data"], cause=cause_b)
        uow.forward("upstream.sales", key="k", value=b"{}", event_id=cause_b.event_id, event_type="VehicleSold")
    uow.publish("VehicleSold", env["data"], cause=None, discriminator="outside")
    uow.dead_letter(topic="upstream.sales", partition=0, offset=7, key=None, value=b"x", headers=[],
                    error="MalformedJSON", reason="not JSON", trace=TraceContext(OTHER))  # the refused record's
    rows = uow._messages
    assert [r.trace for r in rows] == [here, TraceContext(OTHER, "k=v"), here, None, TraceContext(OTHER)]


# -- the relay -------------------------------------------------------------------------------------

def test_the_relay_sends_the_stored_headers_when_not_exporting(exported: InMemorySpanExporter) -> None:
    rows = [{"traceparent": PARENT, "tracestate": "k=v", "topic": "aftersales.intake"},
            {"traceparent": None, "tracestate": None, "topic": "aftersales.intake"}]
    with tracing.sending("quiet", rows):
        assert tracing.record_headers(PARENT, "k=v") == [("traceparent", PARENT.encode()), ("tracestate", b"k=v")]
        assert tracing.record_headers(None, None) == []
    assert exported.get_finished_spans() == ()


def test_the_relay_sends_one_span_per_trace_as_the_records_parent(exported: InMemorySpanExporter) -> None:
    rows = [{"traceparent": PARENT, "tracestate": None, "topic": "aftersales.intake"},
            {"traceparent": PARENT, "tracestate": None, "topic": "aftersales.intake"},
            {"traceparent": OTHER, "tracestate": "k=v", "topic": "aftersales.followup"},
            {"traceparent": None, "tracestate": None, "topic": "aftersales.intake"}]
    with tracing.sending("traced", rows):
        first = tracing.record_headers(PARENT, None)
        second = tracing.record_headers(OTHER, "k=v")
        assert tracing.record_headers(None, None) == []
    spans = {s.attributes["messaging.destination.name"]: s for s in exported.get_finished_spans()}
    assert set(spans) == {"aftersales.intake", "aftersales.followup"}
    intake, followup = spans["aftersales.intake"], spans["aftersales.followup"]
    assert (intake.name, intake.kind, intake.attributes["messaging.batch.message_count"]) == (
        "send aftersales.intake", SpanKind.PRODUCER, 2)
    assert _id(intake) == TRACE and intake.parent is not None and intake.parent.span_id == 0xB7AD6B7169203331
    assert first == [("traceparent", f"00-{TRACE}-{intake.context.span_id:016x}-01".encode())]
    assert second == [("traceparent", f"00-{OTHER[3:35]}-{followup.context.span_id:016x}-01".encode()),
                      ("tracestate", b"k=v")]
    assert tracing.record_headers(PARENT, None) == [("traceparent", PARENT.encode())]  # after the batch: as stored


def test_a_failed_send_marks_the_relays_spans(exported: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tracing.sending("traced", [{"traceparent": PARENT, "tracestate": None,
                                                                  "topic": "t"}]):
        raise RuntimeError("broker gone")
    (span,) = exported.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR


# -- the consumer ---------------------------------------------------------------------------------

def test_a_poll_of_one_trace_continues_it_and_its_handler_is_a_child(exported: InMemorySpanExporter) -> None:
    traces = [TraceContext(PARENT), None, TraceContext(f"00-{TRACE}-1111111111111111-01")]
    with tracing.consuming("traced", traces, group="t.followup"):
        with tracing.handling("traced", test_a_poll_of_one_trace_continues_it_and_its_handler_is_a_child,
                              ["VehicleSold", "VehicleSold"], traces[:2]):
            pass
    handle, process = exported.get_finished_spans()
    assert (process.name, process.kind) == ("process batch", SpanKind.CONSUMER)
    assert _id(process) == TRACE and process.parent.span_id == 0xB7AD6B7169203331  # type: ignore[union-attr]
    assert process.attributes["messaging.consumer.group.name"] == "t.followup"
    assert handle.name == "handle VehicleSold" and handle.parent.span_id == process.context.span_id  # type: ignore[union-attr]
    assert handle.attributes["aftersales.event_types"] == ("VehicleSold",)


def test_a_poll_of_several_traces_is_linked_to_each_and_a_handler_of_one_continues_it(
        exported: InMemorySpanExporter) -> None:
    traces = [TraceContext(PARENT), TraceContext(OTHER)]
    with tracing.consuming("traced", traces, group=None):
        with tracing.handling("traced", print, ["VehicleSold"], traces[1:]):
            pass
        with tracing.handling("traced", print, ["VehicleSold", "VehiclePickedUp"], traces):
            pass
    one, several, process = exported.get_finished_spans()
    assert process.parent is None and {f"{link.context.trace_id:032x}" for link in process.links} == {
        TRACE, OTHER[3:35]}
    assert _id(one) == OTHER[3:35] and one.parent.span_id == int(OTHER[36:52], 16)  # type: ignore[union-attr]
    assert several.name == "handle print" and _id(several) == _id(process) and len(several.links) == 2
    assert several.parent.span_id == process.context.span_id  # type: ignore[union-attr]


def test_without_an_exporter_the_consumer_makes_no_span(exported: InMemorySpanExporter) -> None:
    with tracing.consuming("quiet", [TraceContext(PARENT), None], group=None):
        with tracing.handling("quiet", print, ["VehicleSold"], [TraceContext(PARENT)]):
            assert tracing.current() == TraceContext(PARENT)
    assert exported.get_finished_spans() == ()


# -- HTTP -----------------------------------------------------------------------------------------

def _app(service: str = "traced") -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        if thing_id == "missing":
            raise HTTPException(404, "no such thing")
        here = tracing.current()
        return {"thing": thing_id, "traceparent": here.traceparent if here else None}

    @app.get("/metrics")
    async def scrape() -> dict[str, str]:
        return {}

    app.add_middleware(tracing.TraceRequests, service=service)
    return app


async def test_an_http_request_continues_the_incoming_trace_named_by_its_route(
        exported: InMemorySpanExporter) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as client:
        answer = await client.get("/v1/things/42", headers={"traceparent": PARENT, "tracestate": "k=v"})
        missing = await client.get("/v1/things/missing")
        unknown = await client.get("/nowhere", headers={"traceparent": "broken"})
        assert (await client.get("/metrics", headers={"traceparent": PARENT})).status_code == 200  # no span
    assert answer.status_code == 200 and missing.status_code == 404 and unknown.status_code == 404
    first, second, third = exported.get_finished_spans()
    assert (first.name, first.kind, first.attributes["http.route"], first.attributes["http.response.status_code"]) \
        == ("GET /v1/things/{thing_id}", SpanKind.SERVER, "/v1/things/{thing_id}", 200)
    assert _id(first) == TRACE and first.parent.span_id == 0xB7AD6B7169203331  # type: ignore[union-attr]
    assert first.context.trace_state.get("k") == "v"
    assert answer.json()["traceparent"] == f"00-{TRACE}-{first.context.span_id:016x}-01"
    assert second.name == "GET /v1/things/{thing_id}" and second.attributes["http.response.status_code"] == 404
    assert second.parent is None and _id(second) != TRACE  # no traceparent: a new trace
    assert third.name == "GET" and third.parent is None  # no route matched; a broken header starts a new trace


# -- configuration --------------------------------------------------------------------------------

def test_export_is_off_unless_an_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
                 "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    off = Settings.model_construct(otlp_endpoint="")
    assert tracing.export_endpoint(off) is None and tracing.export_endpoint(None) is None
    on = Settings.model_construct(otlp_endpoint="http://jaeger:4318/")
    assert tracing.export_endpoint(on) == "http://jaeger:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.export_endpoint(off) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4318/v1/traces")
    assert tracing.export_endpoint(off) == "http://tempo:4318/v1/traces"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.export_endpoint(on) is None
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.export_endpoint(on) is None


async def test_without_an_exporter_a_request_carries_its_trace_or_starts_one(exported: InMemorySpanExporter) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app("quiet")), base_url="http://test") as client:
        given = (await client.get("/v1/things/1", headers={"traceparent": PARENT})).json()["traceparent"]
        started = [(await client.get("/v1/things/2")).json()["traceparent"] for _ in range(2)]
    assert given == PARENT  # carried as it came: no span of ours in between
    assert all(tracing.parse(t) is not None for t in started) and started[0][3:35] != started[1][3:35]
    assert exported.get_finished_spans() == ()


def test_timers_firing_start_a_trace_of_their_own(exported: InMemorySpanExporter) -> None:
    with tracing.carrying(TraceContext(PARENT)):
        with tracing.firing("traced", "first_visit_due", 3):
            here = tracing.current()
        with tracing.firing("quiet", "first_visit_due", 3):
            quiet = tracing.current()
    (span,) = exported.get_finished_spans()
    assert (span.name, span.parent, span.attributes["aftersales.fired"]) == ("fire first_visit_due", None, 3)
    assert here is not None and here.trace_id == _id(span) != TRACE
    assert quiet is not None and quiet.trace_id not in (TRACE, _id(span))


def test_a_log_line_written_in_a_trace_names_it() -> None:
    configure_logging("INFO", "json")
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        log = structlog.get_logger("aftersales.test")
        with tracing.carrying(TraceContext(PARENT)):
            log.info("inside a trace", phone="13912345678")
        log.info("outside any trace")
    finally:
        root.removeHandler(handler)
    inside, outside = (orjson.loads(line) for line in buffer.getvalue().splitlines())
    assert (inside["trace_id"], inside["span_id"]) == (TRACE, "b7ad6b7169203331")
    assert "13912345678" not in buffer.getvalue()  # still masked
    assert "trace_id" not in outside


async def test_the_console_passes_its_pages_trace_on_to_the_services_it_calls() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.console.clients import Person, Services
    from services.console.config import ConsoleRules

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={})

    services = Services(Settings(_env_file=None), ConsoleRules(), Ed25519PrivateKey.generate(),
                        transports={"followup": httpx.MockTransport(answer)})
    person = Person("agent-01", "王伟", "agent", "zh-CN", "csrf")
    try:
        with tracing.carrying(TraceContext(PARENT)):
            await services.call(person, "GET", "followup", "/v1/queue")
        await services.call(person, "GET", "followup", "/v1/queue")
    finally:
        await services.close()
    assert seen == [PARENT, None]
