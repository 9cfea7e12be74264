"""The measuring harness the benchmarks share: events published to an input topic at full
speed or a fixed rate, each one's arrival on an output topic timed, and the same measured for a
baseline in the same run (an aiokafka consume→produce pass-through process, no database)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from aftersales.sandbox import Namespace, ServiceProcess, create_namespace, drop_namespace
from aftersales.simulate import CST, Fleet
from shared.kafka.clients import TOPIC_CONFIG, make_admin, stop_consumer
from shared.settings import project_home

console = Console()


@dataclass
class Pass:
    name: str
    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _records(count: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    """(upstream event_id, key, value) of `count` valid pickups, picked up in the last hour: the
    steady state, where a pickup's return-visit timers lie days ahead. (Pickups dated on a fixed
    day made the follow-up service fire their due and overdue timers too, more of them the later
    the benchmark was run.)"""
    fleet = Fleet(seed=seed)
    start = datetime.now(CST).replace(microsecond=0) - timedelta(hours=1)
    step = timedelta(hours=1) / max(count, 1)
    out = []
    for i, env in enumerate(fleet.pickups(count, start)):
        env["data"]["picked_up_at"] = (start + step * i).isoformat()
        out.append((env["event_id"], env["key"].encode(), orjson.dumps(env)))
    return out


async def _publish(ns: Namespace, topic: str, records: list[tuple[str, bytes, bytes]], rate: float,
                   sent: dict[str, float]) -> None:
    producer = AIOKafkaProducer(**ns.settings.kafka_client_options(), linger_ms=5, acks="all",  # type: ignore[arg-type]
                                enable_idempotence=True, max_batch_size=512 * 1024)
    await producer.start()
    try:
        started = time.monotonic()
        for i, (event_id, key, value) in enumerate(records):
            if rate:
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent[event_id] = time.monotonic()
            await producer.send(topic, value=value, key=key,
                                headers=[("event_type", b"VehiclePickedUp"), ("event_id", event_id.encode())])
        await producer.flush()
    finally:
        await producer.stop()


async def _collect(ns: Namespace, topic: str, expect: set[str], by: str, received: dict[str, float],
                   timeout: float) -> None:
    """Read `topic` until every id in `expect` has arrived: `by` is "event_id" (the baseline's
    copies) or the output event type whose correlation_id names the upstream event."""
    consumer = AIOKafkaConsumer(**ns.settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False, fetch_max_wait_ms=20, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or range(12))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while not expect <= received.keys():
            if time.monotonic() > deadline:
                missing = len(expect - received.keys())
                raise TimeoutError(f"{missing} of {len(expect)} events did not arrive on {topic} in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    envelope = orjson.loads(record.value)
                    if by == "event_id":  # the pass-through copies records unchanged
                        received.setdefault(envelope["event_id"], now)
                    elif envelope.get("event_type") == by:  # a service's output, caused by the upstream event
                        received.setdefault(envelope["correlation_id"], now)
    finally:
        await stop_consumer(consumer)


async def _measure(ns: Namespace, name: str, in_topic: str, out_topic: str, by: str,
                   records: list[tuple[str, bytes, bytes]], rate: float, timeout: float) -> Pass:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    collector = asyncio.ensure_future(_collect(ns, out_topic, {r[0] for r in records}, by, received, timeout))
    await asyncio.sleep(0.5)
    await _publish(ns, in_topic, records, rate, sent)
    await collector
    first = min(sent.values())
    last = max(received.values())
    latencies = [received[i] - sent[i] for i in sent]
    return Pass(name, len(records), last - first, latencies)


def _peak_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None



@dataclass
class Comparison:
    """Baseline and system measured in one run: full speed, then latency at a fixed rate."""

    name: str
    events: int
    baseline: Pass
    system: Pass
    baseline_at_rate: Pass
    system_at_rate: Pass
    rate: float
    peak_rss_mb: dict[str, float | None]

    def table(self) -> Table:
        table = Table(title=f"{self.name} benchmark, {self.events:,} events (one run, same broker)")
        for column in ("", "events/s", f"p50 ms @{self.rate:,.0f}/s", f"p99 ms @{self.rate:,.0f}/s",
                       "p50 ms full speed", "p99 ms full speed"):
            table.add_column(column, justify="right")
        for label, full, lat in (("baseline (pass-through)", self.baseline, self.baseline_at_rate),
                                 (self.name, self.system, self.system_at_rate)):
            table.add_row(label, f"{full.rate:,.0f}", f"{lat.pct(0.5):.1f}", f"{lat.pct(0.99):.1f}",
                          f"{full.pct(0.5):.0f}", f"{full.pct(0.99):.0f}")
        table.add_row("ratio to baseline", f"{self.system.rate / self.baseline.rate:.2f}", "", "", "", "")
        return table

    def figures(self) -> dict[str, object]:
        return {
            "events": self.events, "baseline_eps": round(self.baseline.rate), "system_eps": round(self.system.rate),
            "ratio": round(self.system.rate / self.baseline.rate, 3), "latency_rate": round(self.rate),
            "system_p50_ms": round(self.system_at_rate.pct(0.5), 1),
            "system_p99_ms": round(self.system_at_rate.pct(0.99), 1),
            "baseline_p50_ms": round(self.baseline_at_rate.pct(0.5), 1),
            "baseline_p99_ms": round(self.baseline_at_rate.pct(0.99), 1),
            "peak_rss_mb": self.peak_rss_mb,
        }


def _profilers(running: list[ServiceProcess], log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each service process (collapsed stacks, `<service>.folded`)."""
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(s.pid), "--rate", "250", "--format", "raw",
                              "--nonblocking", "--output", str(log_dir / f"{s.service}.folded")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in running]


def _stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for p in profilers:
        p.send_signal(signal.SIGINT)
    for p in profilers:
        p.wait(timeout=60)


async def start_passthrough(ns: Namespace) -> tuple[str, str, asyncio.subprocess.Process]:
    """The baseline: its two topics and the aiokafka consume→produce process between them (no
    database), started and given a moment to join its group."""
    in_topic, out_topic = ns.topic("bench.passthrough.in"), ns.topic("bench.passthrough.out")
    admin = make_admin(ns.settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 12, 1, topic_configs=TOPIC_CONFIG) for t in (in_topic, out_topic)])
    finally:
        await admin.close()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aftersales.bench.passthrough", in_topic, out_topic, f"{ns.prefix}passthrough",
        env=ns.env(),
    )
    await asyncio.sleep(3)
    return in_topic, out_topic, process


async def stop_bench(ns: Namespace, running: list[ServiceProcess], passthrough: asyncio.subprocess.Process | None,
                     *, keep: bool) -> None:
    """Stop the services and the pass-through; drop the run's topics and database unless kept."""
    for service in running:
        service.terminate()
    if passthrough is not None and passthrough.returncode is None:
        passthrough.terminate()
        await passthrough.wait()
    if not keep:
        await drop_namespace(ns)


async def compare(name: str, events: int, *, services: tuple[str, ...], output_topic: str, output_type: str,
                  rate: float = 0, latency_rate: float | None = None, keep: bool = False,
                  profile: bool = False, record: bool = True) -> Comparison:
    """Run `services` (as processes) on VehiclePickedUp from upstream.dms until `output_type`
    appears on `output_topic` for each, beside the pass-through baseline. `record` writes the
    figures to .local/bench/<name>-latest.json."""
    console.print(f"[bold]bench {name}[/bold]: {events:,} pickups, upstream.dms → {output_type} on {output_topic}")
    ns = await create_namespace("bench", partitions=12)
    log_dir = project_home() / ".local" / "bench" / ns.prefix.rstrip(".")
    running: list[ServiceProcess] = []
    passthrough: asyncio.subprocess.Process | None = None
    try:
        with console.status("generating events"):
            latency_count = max(1000, events // 5)
            records = {"base": _records(events, seed=4), "system": _records(events, seed=1),
                       "base_lat": _records(latency_count, seed=3), "system_lat": _records(latency_count, seed=2)}
        in_topic, out_topic, passthrough = await start_passthrough(ns)
        with console.status("baseline: pass-through at full speed"):
            base = await _measure(ns, "baseline", in_topic, out_topic, "event_id", records["base"], 0, 600)
        running = [ServiceProcess(ns, s, log_dir, AFTERSALES_LOG_LEVEL="WARNING").start() for s in services]
        for service in running:
            service.wait_ready(120)
        await asyncio.sleep(2)
        system_in, system_out = ns.topic("upstream.dms"), ns.topic(output_topic)
        profilers = _profilers(running, log_dir) if profile else []
        with console.status(f"{name} at full speed"):
            system = await _measure(ns, name, system_in, system_out, output_type, records["system"], rate, 3600)
        _stop_profilers(profilers)
        if profilers:
            console.print(f"profiles (collapsed stacks) in {log_dir}/")
        target = latency_rate or round(system.rate / 2)
        with console.status(f"latency at {target:,.0f} events/s"):
            base_lat = await _measure(ns, "baseline", in_topic, out_topic, "event_id", records["base_lat"], target, 600)
            system_lat = await _measure(ns, name, system_in, system_out, output_type, records["system_lat"], target,
                                        600)
        rss = {s.service: _peak_rss_mb(s.pid) for s in running}
    finally:
        await stop_bench(ns, running, passthrough, keep=keep)
    result = Comparison(name, events, base, system, base_lat, system_lat, target, rss)
    console.print(result.table())
    console.print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items() if v is not None))
    if not record:
        return result
    out = project_home() / ".local" / "bench" / f"{name}-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result.figures(), option=orjson.OPT_INDENT_2))
    console.print(f"figures written to {out}")
    return result
