"""`aftersales demo`: infra up, the five services, simulated upstream traffic for a dealer
network, then the figures and where to look.

The services keep running afterwards so the APIs, metrics and message peers can be explored;
`aftersales infra down` stops everything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aftersales import infra
from aftersales.simulate import CST, Fleet
from shared.kafka.clients import stop_consumer
from shared.settings import DEFAULT_PORTS, SERVICES, Settings, load_settings, project_home

console = Console()
SERVICES_PID = "services.pid"


def services_running(settings: Settings) -> bool:
    for name in SERVICES:
        try:
            if httpx.get(f"http://127.0.0.1:{settings.port_for(name)}/health", timeout=1).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


def demo_clock_offset(now: datetime) -> float:
    """Seconds to shift the stack's clock so the demo runs inside calling hours in China
    (customer SMS waits through quiet hours, which would make a night-time demo look idle)."""
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    if 9 <= local.hour < 19:
        return 0.0
    target = local.replace(hour=10, minute=0, second=0, microsecond=0)
    if local.hour >= 19:
        target += timedelta(days=1)
    return (target - local).total_seconds()


def start_services(offset: float) -> subprocess.Popen[bytes]:
    home = project_home()
    log = (home / ".local" / "logs" / "services.log").open("ab")
    env = {**os.environ, "AFTERSALES_CLOCK_OFFSET_SECONDS": str(offset)}
    process = subprocess.Popen(
        [sys.executable, "-m", "aftersales", "serve", "all"], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=home,
    )
    (home / ".local" / "run" / SERVICES_PID).write_text(str(process.pid))
    return process


def stop_services() -> bool:
    pid_file = project_home() / ".local" / "run" / SERVICES_PID
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    pid_file.unlink(missing_ok=True)
    return True


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)


async def _count_from_now(settings: Settings, topics: list[str], correlation_ids: set[str], tally: Tally,
                          ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Count this run's events (matched by correlation id) from the current end of each topic."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(t), p) for t in topics
               for p in (consumer.partitions_for_topic(settings.topic(t)) or range(settings.topic_partitions))]
        consumer.assign(tps)
        for tp, offset in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, offset)
        ready.set()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    try:
                        env = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if env.get("event_type") == "DeadLettered" or env.get("correlation_id") in correlation_ids:
                        tally.add(f"{record.topic.removeprefix(settings.topic_prefix)}:{env.get('event_type')}")
    finally:
        await stop_consumer(consumer)


async def run(pickups: int = 400, dealers: int = 20) -> None:
    settings = load_settings()
    console.rule("[bold]Aftersales demo")
    await asyncio.to_thread(infra.up)
    settings = load_settings()
    if services_running(settings):
        console.print("services already running on ports " + ", ".join(str(p) for p in DEFAULT_PORTS.values()))
    else:
        offset = demo_clock_offset(datetime.now(UTC))
        if offset:
            console.print(f"outside calling hours in China: the stack's clock runs {offset / 3600:.1f} h ahead")
        start_services(offset)
        deadline = time.monotonic() + 90
        while not services_running(settings):
            if time.monotonic() > deadline:
                raise SystemExit("the services did not start; see .local/logs/services.log")
            await asyncio.sleep(0.5)
        console.print("five services started (logs: .local/logs/services.log)")

    fleet = Fleet(seed=int(time.time()), dealers=dealers)
    now = datetime.now(CST)
    traffic = []
    for i in range(pickups):
        vehicle = fleet.vehicle(now - timedelta(days=fleet.rng.randrange(60, 900)))
        traffic.append(fleet.pickup(vehicle, now - timedelta(days=7) + timedelta(seconds=i * 7 * 86400 // pickups)))
    bad = [b"{not json", orjson.dumps({**traffic[0], "schema_version": 99}),
           orjson.dumps({**traffic[1], "data": {**traffic[1]["data"], "vin": "TOO-SHORT"}})]
    correlation_ids = {env["correlation_id"] for env in traffic}

    tally, ready, stop = Tally(), asyncio.Event(), asyncio.Event()
    counter = asyncio.ensure_future(_count_from_now(
        settings, ["aftersales.intake", "aftersales.followup", "aftersales.notifier", "aftersales.deadletter"],
        correlation_ids, tally, ready, stop,
    ))
    await ready.wait()
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True, acks="all")  # type: ignore[arg-type]
    await producer.start()
    try:
        for env in traffic:
            await producer.send(settings.topic("upstream.dms"), orjson.dumps(env), key=env["key"].encode(),
                                headers=[("event_type", b"VehiclePickedUp"), ("event_id", env["event_id"].encode())])
        for value in bad:
            await producer.send(settings.topic("upstream.dms"), value, key=b"demo-bad-record")
        await producer.flush()
    finally:
        await producer.stop()

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        scheduled = progress.add_task("follow-ups scheduled", total=pickups)
        sent = progress.add_task("SMS sent", total=pickups)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            progress.update(scheduled, completed=tally["aftersales.followup:FollowUpScheduled"])
            progress.update(sent, completed=tally["aftersales.notifier:NotificationSent"])
            if tally["aftersales.notifier:NotificationSent"] >= pickups and tally["aftersales.deadletter:DeadLettered"] >= 3:
                break
            await asyncio.sleep(0.5)
    await asyncio.sleep(1)
    stop.set()
    await counter

    table = Table(title="what happened", show_header=True)
    table.add_column("step")
    table.add_column("count", justify="right")
    for label, key in (
        ("pickups published to upstream.dms", None),
        ("canonical VehiclePickedUp (intake)", "aftersales.intake:VehiclePickedUp"),
        ("customers registered (intake)", "aftersales.intake:CustomerRegistered"),
        ("first return visits scheduled (followup)", "aftersales.followup:FollowUpScheduled"),
        ("SMS sent to customers (notifier)", "aftersales.notifier:NotificationSent"),
        ("bad records dead-lettered, with reasons", "aftersales.deadletter:DeadLettered"),
    ):
        table.add_row(label, str(pickups) if key is None else str(tally[key]))
    console.print(table)
    console.print(
        "[bold]where to look[/bold]\n"
        "  APIs (OpenAPI):    http://127.0.0.1:8001/docs … http://127.0.0.1:8005/docs  (tokens: `aftersales tokens`)\n"
        "  metrics:           http://127.0.0.1:8001/metrics … :8005/metrics\n"
        "  SMS and e-mail:    http://127.0.0.1:8025/\n"
        "  logs:              .local/logs/\n"
        "  stop everything:   aftersales infra down"
    )
