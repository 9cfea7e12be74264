"""The measuring harness the benchmarks share: events published to an input topic at full
speed or a fixed rate, each one's arrival on an output topic timed, and the same measured for a
baseline in the same run (an aiokafka consume→produce pass-through process, no database)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from aftersales.progress import QUIET, Tracker, bars
from shared.kafka.clients import TOPIC_CONFIG, make_admin, stop_consumer
from shared.settings import project_home
from tools.sandbox import Namespace, ServiceProcess, create_namespace, drop_namespace
from tools.simulate import CST, Fleet

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


NO_TASK = TaskID(0)  # a task of QUIET, which draws nothing


def _records(count: int, seed: int, now: datetime | None = None) -> list[tuple[str, bytes, bytes]]:
    """(upstream event_id, key, value) of `count` valid pickups, picked up in the hour before
    `now` (default: now): the steady state, where a pickup's return-visit deadlines lie days
    ahead. (Pickups dated on a fixed day made the follow-up service fire their due and overdue
    deadlines too, more of them the later the benchmark was run.)"""
    fleet = Fleet(seed=seed)
    start = (now or datetime.now(CST)).replace(microsecond=0) - timedelta(hours=1)
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
                   timeout: float, progress: Tracker = QUIET, task: TaskID = NO_TASK) -> None:
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
            progress.update(task, completed=len(expect & received.keys()))
    finally:
        await stop_consumer(consumer)


async def _measure(ns: Namespace, name: str, in_topic: str, out_topic: str, by: str,
                   records: list[tuple[str, bytes, bytes]], rate: float, timeout: float,
                   progress: Tracker = QUIET, label: str | None = None) -> Pass:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    task = progress.add_task(label or name, total=len(records))  # the outputs arrived
    collector = asyncio.ensure_future(_collect(ns, out_topic, {r[0] for r in records}, by, received, timeout,
                                               progress, task))
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


# -- what a pass costs: CPU per process, SQL statements and transactions per event -----------------
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of a process (0 when it is gone); with `reaped`, also that of its
    children that ended and were waited for (a Postgres backend's CPU moves to the postmaster
    when its connection closes, so without it a pass that closes connections counts less than 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15 if reaped else 13]) / _TICK


def _processes_named(predicate: Any) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if predicate(entry.name, (entry / "comm").read_text().strip(), (entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
    return found


def _cpu_snapshot(services: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each service process, of every Postgres process, of the Kafka
    broker and of this benchmark process (the publisher and the collector)."""
    snapshot = {name: _cpu_seconds(pid) for name, pid in services.items() if pid is not None}
    snapshot["postgres"] = sum(_cpu_seconds(pid, reaped=True)
                               for pid in _processes_named(lambda _, comm, __: comm == "postgres"))
    snapshot["kafka"] = sum(map(_cpu_seconds, _processes_named(lambda _, comm, cmd: b"kafka.Kafka" in cmd)))
    snapshot["bench"] = _cpu_seconds(os.getpid())
    return snapshot


async def _sql_snapshot(ns: Namespace) -> tuple[int | None, int]:
    """(statements run in the run's database so far, per pg_stat_statements, None where the
    extension is not loaded; transactions committed there so far)."""
    conn = await asyncpg.connect(ns.settings.database_url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = int(await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            statements = await conn.fetchval(
                """SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
                    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())""")
        except asyncpg.PostgresError:
            statements = None  # not in shared_preload_libraries: `aftersales infra up` configures it
        return (int(statements) if statements is not None else None), commits
    finally:
        await conn.close()


@dataclass
class Usage:
    """CPU microseconds per event by process, and SQL statements and transactions per event."""

    cpu_us_per_event: dict[str, float]
    statements_per_event: float | None
    transactions_per_event: float


async def _usage(ns: Namespace, pids: dict[str, int | None], run: Any, events: int) -> tuple[Pass, Usage]:
    """Run a pass and measure what it cost."""
    before_cpu = _cpu_snapshot(pids)
    before_sql = await _sql_snapshot(ns)
    result = await run()
    await asyncio.sleep(1.5)  # let the services' last commits reach the statistics
    after_cpu = _cpu_snapshot(pids)
    after_sql = await _sql_snapshot(ns)
    cpu = {name: (after_cpu[name] - before_cpu.get(name, 0.0)) * 1e6 / events for name in after_cpu}
    statements = (after_sql[0] - before_sql[0]) / events if after_sql[0] is not None and before_sql[0] is not None \
        else None
    return result, Usage(cpu, statements, (after_sql[1] - before_sql[1]) / events)


@dataclass
class Steady:
    """A steady feed at `rate`: did the system keep up, and its latencies."""

    rate: float
    achieved: float
    lag_seconds: float  # last output after the last input was published
    p50_ms: float
    p99_ms: float

    @property
    def kept_up(self) -> bool:
        return self.achieved >= 0.97 * self.rate and self.lag_seconds <= 1.0


@dataclass
class Comparison:
    """The baselines and the system measured in one run: full speed (a backlog), latency at a
    fixed rate, and the highest steady feed the system keeps up with."""

    name: str
    events: int
    baseline: Pass
    system: Pass
    baseline_at_rate: Pass
    system_at_rate: Pass
    rate: float
    peak_rss_mb: dict[str, float | None]
    transactional: Pass | None = None
    usage: Usage | None = None
    transactional_usage: Usage | None = None
    steady: list[Steady] = field(default_factory=list)

    @property
    def steady_max(self) -> float | None:
        kept = [s.rate for s in self.steady if s.kept_up]
        return max(kept) if kept else None

    def table(self) -> Table:
        table = Table(title=f"{self.name} benchmark, {self.events:,} events (one run, same broker)")
        for column in ("", "events/s", "ratio", f"p50 ms @{self.rate:,.0f}/s", f"p99 ms @{self.rate:,.0f}/s",
                       "p50 ms backlog", "p99 ms backlog"):
            table.add_column(column, justify="right")
        rows = [("baseline: pass-through", self.baseline, self.baseline_at_rate)]
        if self.transactional is not None:
            rows.append(("baseline: guarantees only", self.transactional, None))
        rows.append((self.name, self.system, self.system_at_rate))
        for label, full, lat in rows:
            table.add_row(label, f"{full.rate:,.0f}", f"{full.rate / self.baseline.rate:.3f}",
                          f"{lat.pct(0.5):.1f}" if lat else "", f"{lat.pct(0.99):.1f}" if lat else "",
                          f"{full.pct(0.5):.0f}", f"{full.pct(0.99):.0f}")
        if self.transactional is not None:
            table.add_row(f"{self.name} ÷ guarantees only", "", f"{self.system.rate / self.transactional.rate:.3f}",
                          "", "", "", "")
        return table

    def usage_table(self) -> Table:
        table = Table(title="what one event costs (CPU µs per event by process; SQL per event)")
        names = sorted({n for u in (self.usage, self.transactional_usage) if u for n in u.cpu_us_per_event})
        for column in ("", *names, "statements", "transactions"):
            table.add_column(column, justify="right")
        for label, usage in (("guarantees only", self.transactional_usage), (self.name, self.usage)):
            if usage is None:
                continue
            table.add_row(label, *(f"{usage.cpu_us_per_event.get(n, 0):,.0f}" for n in names),
                          "n/a" if usage.statements_per_event is None else f"{usage.statements_per_event:.2f}",
                          f"{usage.transactions_per_event:.3f}")
        return table

    def steady_table(self) -> Table:
        table = Table(title=f"{self.name} fed steadily (backlog rate {self.system.rate:,.0f}/s)")
        for column in ("fed at /s", "of backlog rate", "achieved /s", "last output after last input s", "p50 ms",
                       "p99 ms", "kept up"):
            table.add_column(column, justify="right")
        for s in self.steady:
            table.add_row(f"{s.rate:,.0f}", f"{s.rate / self.system.rate:.2f}", f"{s.achieved:,.0f}",
                          f"{s.lag_seconds:.2f}", f"{s.p50_ms:.0f}", f"{s.p99_ms:.0f}", "yes" if s.kept_up else "no")
        return table

    def figures(self) -> dict[str, object]:
        figures: dict[str, object] = {
            "events": self.events, "baseline_eps": round(self.baseline.rate), "system_eps": round(self.system.rate),
            "ratio": round(self.system.rate / self.baseline.rate, 3), "latency_rate": round(self.rate),
            "system_p50_ms": round(self.system_at_rate.pct(0.5), 1),
            "system_p99_ms": round(self.system_at_rate.pct(0.99), 1),
            "baseline_p50_ms": round(self.baseline_at_rate.pct(0.5), 1),
            "baseline_p99_ms": round(self.baseline_at_rate.pct(0.99), 1),
            "peak_rss_mb": self.peak_rss_mb,
        }
        if self.transactional is not None:
            figures["transactional_eps"] = round(self.transactional.rate)
            figures["ratio_to_transactional"] = round(self.system.rate / self.transactional.rate, 3)
        if self.usage is not None:
            figures["usage"] = asdict(self.usage)
        if self.transactional_usage is not None:
            figures["transactional_usage"] = asdict(self.transactional_usage)
        if self.steady:
            figures["steady"] = [asdict(s) | {"kept_up": s.kept_up} for s in self.steady]
            figures["steady_max_eps"] = self.steady_max
        return figures


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


async def _topics(ns: Namespace, *names: str) -> list[str]:
    topics = [ns.topic(n) for n in names]
    admin = make_admin(ns.settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 12, 1, topic_configs=TOPIC_CONFIG) for t in topics])
    finally:
        await admin.close()
    return topics


async def start_passthrough(ns: Namespace) -> tuple[str, str, asyncio.subprocess.Process]:
    """The raw baseline: its two topics and the aiokafka consume→produce process between them
    (no database), started and given a moment to join its group."""
    in_topic, out_topic = await _topics(ns, "bench.passthrough.in", "bench.passthrough.out")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.bench.passthrough", in_topic, out_topic, f"{ns.prefix}passthrough",
        env=ns.env(),
    )
    await asyncio.sleep(3)
    return in_topic, out_topic, process


async def start_transactional(ns: Namespace) -> tuple[str, str, list[asyncio.subprocess.Process]]:
    """The guarantees-only baseline: two kernel hops in a row (in → mid → out), each its own
    process with its own schema (inbox, outbox), consumer group and relay."""
    in_topic, _, out_topic = await _topics(ns, "bench.tx.in", "bench.tx.mid", "bench.tx.out")
    hops = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.bench.transactional", hop, source, target,
        env=ns.env(AFTERSALES_LOG_LEVEL="WARNING"),
    ) for hop, source, target in (("benchhop1", "bench.tx.in", "bench.tx.mid"),
                                  ("benchhop2", "bench.tx.mid", "bench.tx.out"))]
    await asyncio.sleep(6)  # migrations, group joins
    return in_topic, out_topic, hops


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        await process.wait()


async def stop_bench(ns: Namespace, running: list[ServiceProcess], passthrough: asyncio.subprocess.Process | None,
                     *, keep: bool) -> None:
    """Stop the services and the pass-through; drop the run's topics and database unless kept."""
    for service in running:
        service.terminate()
    if passthrough is not None:
        await _stop([passthrough])
    if not keep:
        await drop_namespace(ns)


async def _steady(ns: Namespace, name: str, in_topic: str, out_topic: str, by: str, rate: float, count: int,
                  seed: int, now: datetime | None, progress: Tracker = QUIET, label: str = "steady") -> Steady:
    records = _records(count, seed, now)
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    task = progress.add_task(label, total=count)
    collector = asyncio.ensure_future(_collect(ns, out_topic, {r[0] for r in records}, by, received, 600,
                                               progress, task))
    await asyncio.sleep(0.5)
    await _publish(ns, in_topic, records, rate, sent)
    await collector
    first, last_in, last_out = min(sent.values()), max(sent.values()), max(received.values())
    measured = Pass(name, count, last_out - first, [received[i] - sent[i] for i in sent])
    return Steady(rate, count / (last_out - first), last_out - last_in, measured.pct(0.5), measured.pct(0.99))


async def compare(name: str, events: int, *, services: tuple[str, ...], output_topic: str, output_type: str,
                  rate: float = 0, latency_rate: float | None = None, keep: bool = False,
                  profile: bool = False, record: bool = True, transactional: bool = True,
                  steady: tuple[float, ...] = (), now: datetime | None = None,
                  progress: Tracker | None = None) -> Comparison:
    """Run `services` (as processes) on VehiclePickedUp from upstream.dms until `output_type`
    appears on `output_topic` for each, beside the pass-through baseline and (with
    `transactional`) the guarantees-only baseline; then latency at a fixed rate, and steady
    feeds at the given fractions of the backlog rate. `record` writes the figures to
    .local/bench/<name>-latest.json. `progress` (default: bars on stderr when it is a terminal)
    counts each pass's outputs as they arrive."""
    console.print(f"[bold]bench {name}[/bold]: {events:,} pickups, upstream.dms → {output_type} on {output_topic}")
    with contextlib.nullcontext(progress) if progress is not None else bars() as tracker:
        result = await _compare(name, events, services, output_topic, output_type, rate, latency_rate, keep, profile,
                                transactional, steady, now, tracker)
    console.print(result.table())
    console.print(result.usage_table())
    if result.steady:
        console.print(result.steady_table())
    console.print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in result.peak_rss_mb.items() if v is not None))
    if not record:
        return result
    out = project_home() / ".local" / "bench" / f"{name}-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result.figures(), option=orjson.OPT_INDENT_2))
    console.print(f"figures written to {out}")
    return result


async def _compare(name: str, events: int, services: tuple[str, ...], output_topic: str, output_type: str,
                   rate: float, latency_rate: float | None, keep: bool, profile: bool, transactional: bool,
                   steady: tuple[float, ...], now: datetime | None, progress: Tracker) -> Comparison:
    ns = await create_namespace("bench", partitions=12)
    log_dir = project_home() / ".local" / "bench" / ns.prefix.rstrip(".")
    running: list[ServiceProcess] = []
    passthrough: asyncio.subprocess.Process | None = None
    tx_pass = tx_usage = None
    steady_runs: list[Steady] = []
    try:
        generating = progress.add_task("generating events", total=None)
        latency_count = max(1000, events // 5)
        records = {"base": _records(events, 4, now), "system": _records(events, 1, now),
                   "tx": _records(events, 5, now),
                   "base_lat": _records(latency_count, 3, now), "system_lat": _records(latency_count, 2, now)}
        progress.update(generating, total=len(records), completed=len(records))
        in_topic, out_topic, passthrough = await start_passthrough(ns)
        base = await _measure(ns, "baseline", in_topic, out_topic, "event_id", records["base"], 0, 600, progress,
                              "baseline: pass-through at full speed")
        if transactional:
            tx_in, tx_out, hops = await start_transactional(ns)
            try:
                pids = {"hop 1": hops[0].pid, "hop 2": hops[1].pid}
                tx_pass, tx_usage = await _usage(ns, pids, lambda: _measure(
                    ns, "guarantees only", tx_in, tx_out, "event_id", records["tx"], 0, 1800, progress,
                    "baseline: the guarantees only, at full speed"), events)
            finally:
                await _stop(hops)
        running = [ServiceProcess(ns, s, log_dir, AFTERSALES_LOG_LEVEL="WARNING").start() for s in services]
        for service in running:
            service.wait_ready(120)
        await asyncio.sleep(2)
        system_in, system_out = ns.topic("upstream.dms"), ns.topic(output_topic)
        profilers = _profilers(running, log_dir) if profile else []
        system, usage = await _usage(ns, {s.service: s.pid for s in running}, lambda: _measure(
            ns, name, system_in, system_out, output_type, records["system"], rate, 3600, progress,
            f"{name} at full speed"), events)
        _stop_profilers(profilers)
        if profilers:
            console.print(f"profiles (collapsed stacks) in {log_dir}/")
        target = latency_rate or round(system.rate / 2)
        base_lat = await _measure(ns, "baseline", in_topic, out_topic, "event_id", records["base_lat"], target, 600,
                                  progress, f"baseline: latency at {target:,.0f} events/s")
        system_lat = await _measure(ns, name, system_in, system_out, output_type, records["system_lat"], target,
                                    600, progress, f"{name}: latency at {target:,.0f} events/s")
        for n, fraction in enumerate(steady):
            feed = round(system.rate * fraction)
            steady_runs.append(await _steady(ns, name, system_in, system_out, output_type, feed,
                                             max(latency_count, int(feed * 8)), 100 + n, now, progress,
                                             f"fed steadily at {feed:,} events/s ({fraction:.2f} of the backlog rate)"))
        rss = {s.service: _peak_rss_mb(s.pid) for s in running}
    finally:
        await stop_bench(ns, running, passthrough, keep=keep)
    return Comparison(name, events, base, system, base_lat, system_lat, target, rss, tx_pass, usage, tx_usage,
                      steady_runs)
