"""Tracing: the W3C trace context carried from HTTP through the outbox into Kafka and on, and
OpenTelemetry spans exported over OTLP/HTTP when an endpoint is configured (off by default).

One request can be followed across services: intake's webhook request → the record intake
forwards → intake's handler → the event it publishes → follow-up's handler → the event follow-up
publishes all share one trace id.

- **HTTP** (`TraceRequests`, in `shared.http.create_app`): a span per request, named by method
  and route template (`POST /v1/events`), with the status code; an incoming `traceparent`
  (and `tracestate`) header continues that trace. Probes and scrapes (/health, /ready,
  /metrics) get none.
- **Outbox**: a row written while handling a request or a record keeps the current trace
  context (`for_outbox`); an event caused by a consumed record continues that record's trace
  even when the handler took records of several traces in one call.
- **Relay** (`sending`): the row's context goes out as the Kafka headers `traceparent` and
  `tracestate`; while exporting, one `send <topic>` span per trace in the batch is its parent.
- **Consumer** (`consuming`, `handling`): a span per poll (`process batch`) and per handler
  call (`handle <event type>`), continuing the records' trace when they share one, else linked
  to each record's trace (spans are exported).
- **Timers** (`firing`): what fires in one transaction starts a trace of its own (`fire <kinds>`).

Propagation does not depend on exporting. Without an endpoint no span is made at all (no cost
beyond reading and writing the headers): an incoming context is made current as it came and
carried on, and a request without one gets fresh random ids, so its records carry a trace too;
nothing is sent anywhere. Exporting is on when `AFTERSALES_OTLP_ENDPOINT` or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; the resource's `service.name` is the
service. The SDK's own variables (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES` …) apply as documented by OpenTelemetry.
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from shared.settings import Settings

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# version 00 is exactly this; a later version may append fields after a '-' (W3C: parse the prefix)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
MAX_LINKS = 64  # links kept on a span that takes records of many traces
# Probes and scrapes (every few seconds each) get no span of their own: they would bury the traces.
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The W3C trace context carried with a request, an outbox row or a record: the two header
    values, `traceparent` checked, `tracestate` passed on as it came (None: none)."""

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    def span_context(self) -> SpanContext:
        return SpanContext(
            trace_id=int(self.traceparent[3:35], 16), span_id=int(self.traceparent[36:52], 16), is_remote=True,
            trace_flags=TraceFlags(int(self.traceparent[53:55], 16) & TraceFlags.SAMPLED),
            trace_state=TraceState.from_header([self.tracestate]) if self.tracestate else None,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        """As Kafka record headers."""
        if self.tracestate:
            return [(TRACEPARENT, self.traceparent.encode()), (TRACESTATE, self.tracestate.encode())]
        return [(TRACEPARENT, self.traceparent.encode())]


def parse(traceparent: str | bytes | None, tracestate: str | bytes | None = None) -> TraceContext | None:
    """The context of a `traceparent` (and `tracestate`) header; None when it is missing or not
    valid (W3C: a receiver that cannot parse it starts a new trace)."""
    if not traceparent:
        return None
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    value = traceparent.strip().lower()
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if isinstance(tracestate, bytes):
        tracestate = tracestate.decode("ascii", "replace")
    state = tracestate.strip() if tracestate else None
    return TraceContext(value[:55] if version == "00" else value, state or None)


def from_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> TraceContext | None:
    """The trace context of a Kafka record's headers (the first of each name), or None."""
    if not headers:
        return None
    traceparent = tracestate = None
    for name, value in headers:
        if name == TRACEPARENT and traceparent is None:
            traceparent = value
        elif name == TRACESTATE and tracestate is None:
            tracestate = value
    return parse(traceparent, tracestate) if traceparent else None


def of_span(span_context: SpanContext) -> TraceContext | None:
    """The context to send on for a span (None: no valid span)."""
    if not span_context.is_valid:
        return None
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    return TraceContext(f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}",
                        state or None)


def current() -> TraceContext | None:
    """The context of the current span (an HTTP request's, a handler call's), or None."""
    return of_span(trace.get_current_span().get_span_context())


def for_outbox(cause: TraceContext | None) -> TraceContext | None:
    """What an outbox row written now carries: the current span's context, unless the row was
    caused by a record of another trace than the current span's (a handler call that took
    records of several traces): then that record's own context, so its trace goes on."""
    here = trace.get_current_span().get_span_context()
    if cause is None:
        return of_span(here)
    if here.is_valid and f"{here.trace_id:032x}" == cause.trace_id:
        return of_span(here)
    return cause


def parent(context: TraceContext | None) -> otel_context.Context | None:
    """An OpenTelemetry context whose parent is the carried one (None: a new trace)."""
    if context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(context.span_context()), otel_context.Context())


def add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the current trace and span ids on every log line written in one,
    so a log line leads to its trace and a trace to its log lines (also while export is off)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", f"{context.trace_id:032x}")
        event_dict.setdefault("span_id", f"{context.span_id:016x}")
    return event_dict


# -- set-up, once per process (per service, as tests run several in one process) ---------------

def new_context() -> TraceContext:
    """A fresh trace (random ids, sampled) for a request that came without one, while no spans
    are made (with spans, the SDK generates the ids)."""
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return TraceContext(f"00-{trace_id:032x}-{span_id:016x}-01")


@contextmanager
def carrying(context: TraceContext | None) -> Iterator[None]:
    """The carried context made current (no span), for what is written meanwhile."""
    if context is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context.span_context())))
    try:
        yield
    finally:
        otel_context.detach(token)


@dataclass
class Tracing:
    service: str
    # None: export is off, and no span is made (the trace context is carried all the same)
    provider: TracerProvider | None
    endpoint: str | None  # where spans go

    def __post_init__(self) -> None:
        self.tracer: trace.Tracer | None = self.provider.get_tracer("aftersales") if self.provider else None

    @property
    def exporting(self) -> bool:
        return self.tracer is not None


_services: dict[str, Tracing] = {}
_lock = threading.Lock()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def export_endpoint(settings: Settings | None) -> str | None:
    """The OTLP/HTTP traces URL spans go to, or None (off: the default)."""
    if _truthy("OTEL_SDK_DISABLED") or os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    base = (settings.otlp_endpoint if settings is not None else "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def setup(service: str, settings: Settings | None = None) -> Tracing:
    """This service's tracer provider, made once per process: exporting over OTLP/HTTP when an
    endpoint is configured, else generating and carrying ids only."""
    found = _services.get(service)
    if found is not None:
        return found
    with _lock:
        found = _services.get(service)
        if found is not None:
            return found
        endpoint = export_endpoint(settings)
        provider = None
        if endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            resource = Resource.create({"service.name": service, "service.namespace": "aftersales"})
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        found = Tracing(service, provider, endpoint)
        _services[service] = found
        return found


def flush(service: str, timeout_seconds: float = 5.0) -> None:
    """Send what is still buffered (at a service's stop); the provider stays usable."""
    found = _services.get(service)
    if found is not None and found.provider is not None:
        found.provider.force_flush(int(timeout_seconds * 1000))


# -- HTTP --------------------------------------------------------------------------------------

class TraceRequests:
    """A span per HTTP request (SERVER), continuing an incoming `traceparent`; renamed to the
    method and route template once routing has matched, with the response's status code."""

    def __init__(self, app: ASGIApp, service: str, settings: Settings | None = None) -> None:
        self.app = app
        self.service = service
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        traceparent = tracestate = None
        for name, value in scope.get("headers") or ():
            if name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
        incoming = parse(traceparent, tracestate)
        tracer = setup(self.service, self.settings).tracer
        if tracer is None:  # export off: carry the caller's trace, or start one
            with carrying(incoming or new_context()):
                await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        span = tracer.start_span(
            method, context=parent(incoming), kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        status = 500

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            template = getattr(scope.get("route"), "path", None)
            if template:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(token)


# -- the outbox relay --------------------------------------------------------------------------

# stored traceparent -> the context sent instead (the relay's `send` span), while exporting
_sending: ContextVar[Mapping[str, TraceContext] | None] = ContextVar("aftersales_tracing_sending", default=None)


def record_headers(traceparent: str | None, tracestate: str | None) -> list[tuple[str, bytes]]:
    """The trace headers of an outbox row's Kafka record (none for a row outside any trace)."""
    if traceparent is None:
        return []
    sending = _sending.get()
    if sending is not None:
        sent = sending.get(traceparent)
        if sent is not None:
            return sent.headers()
    if tracestate:
        return [(TRACEPARENT, traceparent.encode()), (TRACESTATE, tracestate.encode())]
    return [(TRACEPARENT, traceparent.encode())]


@contextmanager
def sending(service: str, rows: Sequence[Mapping[str, Any]]) -> Iterator[None]:
    """Around the relay's publishing of outbox rows: while exporting, a PRODUCER span per trace
    among the rows (child of the stored context), which the records then carry as parent.
    Without an exporter, nothing (the stored headers go out as they are)."""
    found = _services.get(service)
    if found is None or found.tracer is None:
        yield
        return
    spans: dict[str, Span] = {}
    counts: dict[str, int] = {}
    topics: dict[str, set[str]] = {}
    for row in rows:
        traceparent = row.get("traceparent")
        if traceparent is None:
            continue
        counts[traceparent] = counts.get(traceparent, 0) + 1
        topics.setdefault(traceparent, set()).add(row["topic"])
    sent: dict[str, TraceContext] = {}
    for traceparent, n in counts.items():
        stored = parse(traceparent, _state_of(rows, traceparent))
        names = topics[traceparent]
        topic = next(iter(names)) if len(names) == 1 else None
        span = found.tracer.start_span(
            f"send {topic}" if topic else "send", context=parent(stored), kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                        "messaging.batch.message_count": n,
                        **({"messaging.destination.name": topic} if topic else {})},
        )
        spans[traceparent] = span
        context = of_span(span.get_span_context())
        if context is not None:
            sent[traceparent] = context
    token = _sending.set(sent)
    try:
        yield
    except BaseException as exc:
        for span in spans.values():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        _sending.reset(token)
        for span in spans.values():
            span.end()


def _state_of(rows: Sequence[Mapping[str, Any]], traceparent: str) -> str | None:
    for row in rows:
        if row.get("traceparent") == traceparent:
            return row.get("tracestate")
    return None


# -- durable timers and deadlines ----------------------------------------------------------------

@contextmanager
def firing(service: str, what: str, count: int) -> Iterator[None]:
    """Timers or deadlines firing in one transaction: a trace of their own (a root span
    `fire <kinds>`, or fresh ids while export is off), which the events they publish carry."""
    tracer = setup(service).tracer
    if tracer is None:
        with carrying(new_context()):
            yield
        return
    with tracer.start_as_current_span(f"fire {what}", context=otel_context.Context(),
                                      attributes={"aftersales.fired": count}):
        yield


# -- the consumer ------------------------------------------------------------------------------

def _common(traces: Sequence[TraceContext | None]) -> tuple[TraceContext | None, list[Link]]:
    """The context to continue (all records of one trace: the first's) and otherwise links to
    each distinct trace (at most MAX_LINKS)."""
    first = next((t for t in traces if t is not None), None)
    if first is None:
        return None, []
    if all(t is None or t.trace_id == first.trace_id for t in traces):
        return first, []
    links: dict[str, Link] = {}
    for t in traces:
        if t is not None and t.trace_id not in links and len(links) < MAX_LINKS:
            links[t.trace_id] = Link(t.span_context())
    return None, list(links.values())


@contextmanager
def consuming(service: str, traces: Sequence[TraceContext | None], *, group: str | None) -> Iterator[None]:
    """A CONSUMER span around one poll's records: a child of their trace when they share one,
    else a new trace linked to theirs. Export off: no span; their trace made current if one."""
    tracer = setup(service).tracer
    if tracer is None:
        with carrying(_first_if_one(traces)):
            yield
        return
    common, links = _common(traces)
    attributes: dict[str, Any] = {"messaging.system": "kafka", "messaging.operation.type": "process",
                                  "messaging.batch.message_count": len(traces)}
    if group:
        attributes["messaging.consumer.group.name"] = group
    with tracer.start_as_current_span("process batch", context=parent(common), kind=SpanKind.CONSUMER,
                                      links=links, attributes=attributes):
        yield


@contextmanager
def handling(service: str, handler: Any, event_types: Sequence[str],
             traces: Sequence[TraceContext | None]) -> Iterator[None]:
    """A span around one handler call: a child of its records' trace when they share one (even
    inside a batch span of another), else of the current span, linked to their traces. Export
    off: no span; their trace made current if the poll's is another."""
    tracer = setup(service).tracer
    common, links = _common(traces) if tracer is not None else (_first_if_one(traces), [])
    if common is not None and f"{trace.get_current_span().get_span_context().trace_id:032x}" == common.trace_id:
        common = None  # the poll's span (or context) continues that trace already: a child of it
    if tracer is None:
        with carrying(common):
            yield
        return
    kinds = sorted(set(event_types))
    name = f"handle {kinds[0]}" if len(kinds) == 1 else f"handle {getattr(handler, '__name__', 'events')}"
    attributes: dict[str, Any] = {"aftersales.handler": getattr(handler, "__qualname__", repr(handler)),
                                  "aftersales.event_types": kinds, "messaging.batch.message_count": len(traces)}
    with tracer.start_as_current_span(name, context=parent(common), links=links, attributes=attributes):
        yield


def _first_if_one(traces: Sequence[TraceContext | None]) -> TraceContext | None:
    """Without an exporter no links are made: only whether the records share one trace matters."""
    first = next((t for t in traces if t is not None), None)
    if first is None or any(t is not None and t.trace_id != first.trace_id for t in traces):
        return None
    return first
