"""`aftersales faults`: the fault-injection suite (issue 9). Nothing lost, nothing done twice,
measured while things break.

A run publishes a stream of upstream events (valid ones of every type, and bad ones of every
kind) through the five services running as real processes (`aftersales serve`, one or two
replicas each), and meanwhile SIGKILLs every service several times at random moments and
restarts it, SIGKILLs the Kafka broker once and crash-stops Postgres once (`-m immediate`).
Once the system is quiet it reads every topic, the services' databases and what the SMS
gateway and the SMTP server received, and checks the invariants (see `check`).

Isolation: the run never touches the shared broker (9092) or the shared Postgres (5432) that
other engineers' tests use. It runs its own KRaft broker (127.0.0.1:19092, controller 19093,
data under `.local/faults/kafka`) and its own Debian Postgres cluster (`faults`, port 15432),
both through `aftersales.infra`, and its own SMS-gateway and SMTP sinks on free ports. Each run
gets a topic prefix and a database of its own; the broker's data is wiped when the suite
starts it. A lock file keeps two runs from sharing the private instances.

Timers fire during the run without moving anyone's clock: the services run with a fixed
clock offset that puts them inside 09:00-17:00 in China (customer SMS are not held for quiet
hours), pickups are dated so that some follow-ups are overdue for escalation when they
arrive, complaints are filed in the past so that their SLA deadlines fall due while the run
is going on, and complaints raised by agents on return-visit calls are critical cases whose
SLA is configured in seconds (AFTERSALES_COMPLAINTS_SLA__CRITICAL__*), so they climb the
whole ladder during the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console

from aftersales.infra import InfraError, Kafka, Paths, Postgres
from aftersales.infra import _paths as shared_paths
from aftersales.progress import QUIET, Tracker, bars
from services.complaints.config import SlaTable
from services.complaints.sla import SlaFact, compute
from services.followup.config import FollowUpRules
from services.notifier.config import NotifierSettings
from shared import keyring
from shared.clock import offset_to
from shared.db import with_database
from shared.events import ALL_TOPICS, CANONICAL_TOPICS, DEADLETTER, UPSTREAM_TOPICS
from shared.kafka.clients import (
    delete_topics,
    ensure_topics,
    make_admin,
    partitions_of,
    stop_consumer,
)
from shared.settings import SERVICES, Settings, load_settings, project_home
from shared.timers import due_work
from shared.validation import vin_check_digit
from tools.peers import MailSink, PeerStore, SmsGatewaySink
from tools.sandbox import free_port
from tools.simulate import MODELS, REGIONS, Customer, Fleet, Vehicle

console = Console()
ROOT = Path(__file__).resolve().parent.parent

# The private instances. Never the shared ones: see FaultInfra.__init__.
KAFKA_PORT = 19092
CONTROLLER_PORT = 19093
POSTGRES_PORT = 15432
POSTGRES_CLUSTER = "faults"
SHARED_PORTS = frozenset({9092, 9093, 5432})

UPSTREAM = UPSTREAM_TOPICS
CANONICAL = (*CANONICAL_TOPICS, DEADLETTER)
SCHEMAS = SERVICES

# Complaints raised on a return-visit call are critical cases; their SLA runs in seconds during
# a fault run, so every level of the ladder is reached while services are being killed.
CRITICAL_SLA = {"acknowledge_within": 10, "resolve_within": 20, "supervisor_within": 10, "department_head_within": 10}
ESCALATE_AFTER_OVERDUE = timedelta(days=FollowUpRules().escalate_after_overdue_days)
MESSAGE_ID_DOMAIN = NotifierSettings.model_fields["message_id_domain"].default
QUIET_HORIZON = timedelta(seconds=60)  # quiet: nothing due within this long


# ---------------------------------------------------------------------------------------
# The private broker and database


class FaultInfra:
    """The suite's own Kafka node and Postgres cluster, started and stopped through
    `aftersales.infra` (the same code as `aftersales infra up`), and a lock so that two fault
    runs never share them."""

    def __init__(self, home: Path | None = None, *, kafka_port: int = KAFKA_PORT,
                 controller_port: int = CONTROLLER_PORT, postgres_port: int = POSTGRES_PORT) -> None:
        if {kafka_port, controller_port, postgres_port} & SHARED_PORTS:
            raise InfraError("the fault suite restarts its broker and database; it must not use the shared "
                             "ports 9092, 9093 or 5432")
        home = (home or project_home()).resolve()
        self.paths = Paths(home, local_dir=home / ".local" / "faults")
        self.settings = load_settings(
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            database_url=f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres",
            # the suite's own server has no per-service roles: one role for all, on loopback
            database_role_passwords="", dev_single_database_role=True,
        )
        self.kafka = Kafka(self.settings, self.paths, controller_port=controller_port,
                           libs=shared_paths().kafka / "libs")
        self.postgres = Postgres(self.settings, self.paths, cluster=POSTGRES_CLUSTER)
        self._lock: IO[str] | None = None

    @property
    def runs_dir(self) -> Path:
        return self.paths.local / "runs"

    def up(self) -> None:
        self.paths.ensure()
        self._take_lock()
        try:
            started = time.monotonic()
            with console.status("private Postgres (cluster faults)"):
                self.postgres.up()
            self._own_postgres()
            if self.kafka.running_pid() is None:
                if self.kafka.answers():
                    raise InfraError(f"something the fault suite did not start answers on 127.0.0.1:{self.kafka.port}; "
                                     "stop it or pick other ports")
                # A fresh broker for every suite: no topics, groups or producer state of old runs.
                shutil.rmtree(self.kafka.data, ignore_errors=True)
            with console.status("private Kafka"):
                self.kafka.up()
            asyncio.run(self._drop_old_databases())
            self._prune_runs(keep=20)
            console.print(f"private infra up in {time.monotonic() - started:.0f}s: kafka {self.kafka.address}, "
                          f"postgres {self.postgres.address} (cluster {POSTGRES_CLUSTER})")
        except BaseException:
            self._release_lock()
            raise

    def down(self) -> None:
        try:
            self.kafka.down()
            self.postgres.down()
        finally:
            self._release_lock()

    def __enter__(self) -> FaultInfra:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- faults -------------------------------------------------------------------------
    def restart_kafka(self, down_seconds: float) -> float:
        """SIGKILL the broker, leave it down, start it again; return the outage in seconds."""
        stopped = time.monotonic()
        self.kafka.kill()
        time.sleep(down_seconds)
        self.kafka.up()
        return time.monotonic() - stopped

    def restart_postgres(self, down_seconds: float) -> float:
        """Crash-stop the cluster (`pg_ctlcluster … stop -m immediate`: no checkpoint, WAL
        recovery at start), leave it down, start it; return the outage in seconds."""
        stopped = time.monotonic()
        self.postgres.stop_for_fault_test()
        time.sleep(down_seconds)
        self.postgres.start_after_fault_test()
        deadline = time.monotonic() + 60
        while not self.postgres.answers():
            if time.monotonic() > deadline:
                raise InfraError("the private Postgres did not come back within 60s")
            time.sleep(0.2)
        return time.monotonic() - stopped

    # -- internals ----------------------------------------------------------------------
    def _own_postgres(self) -> None:
        """`Postgres.up` leaves no state file when the server already answered (left running by
        an interrupted run, or started by hand): the suite restarts it, so it must be the
        `faults` cluster on its port, and nothing else."""
        if self.postgres.state_file.exists():
            return
        version = self.postgres._installed_version()
        cluster = self.postgres._find_cluster(version) if version else None
        if cluster is None or cluster["port"] != str(self.postgres.port) or cluster["status"] != "online":
            raise InfraError(f"a Postgres the fault suite did not start answers on {self.postgres.address}; "
                             f"stop it or pick another port")
        self.postgres.state_file.write_text(orjson.dumps({"version": version, "name": cluster["name"]}).decode())

    def _take_lock(self) -> None:
        path = self.paths.local / "lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise InfraError(f"another fault run (pid {holder}) is using the private broker and database; "
                             "wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _prune_runs(self, keep: int) -> None:
        """Reports and logs of the last `keep` runs stay under .local/faults/runs."""
        runs = sorted((p for p in self.runs_dir.glob("*") if p.is_dir()), key=lambda p: p.name)
        for old in runs[:-keep] if len(runs) > keep else []:
            shutil.rmtree(old, ignore_errors=True)

    async def _drop_old_databases(self) -> None:
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            names = [r[0] for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'aftersales\\_faults\\_%'")]
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # names we generated
        finally:
            await conn.close()


# ---------------------------------------------------------------------------------------
# Service processes


class Replica:
    """One `aftersales serve <service>` process; restarted on the same port, logging to one
    file across restarts."""

    def __init__(self, service: str, index: int, env: dict[str, str], log_path: Path) -> None:
        self.service = service
        self.index = index
        self.port = free_port()
        self.env = {**env, f"AFTERSALES_{service.upper()}_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.expect_exit = False

    @property
    def name(self) -> str:
        return f"{self.service}#{self.index}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n--- fault suite: start {self.starts + 1} at {datetime.now(UTC).isoformat()}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aftersales", "serve", self.service], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            )
        self.starts += 1
        self.expect_exit = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL; return the pid that was killed."""
        assert self.process is not None
        self.expect_exit = True
        pid = self.process.pid
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return pid

    def terminate(self, timeout: float = 40) -> int | None:
        if self.process is None:
            return None
        self.expect_exit = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(10)
                return None
        return self.process.returncode

    async def ready(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get(f"http://127.0.0.1:{self.port}/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------
# The message peers: a real SMTP server and the SMS-gateway sink, kept by this process


class Sinks:
    """aftersales.peers' SMTP server (its own thread) and SMS gateway (uvicorn, in a thread with
    its own event loop, so the runner's work never delays the notifier's sends)."""

    def __init__(self, directory: Path, api_key: str) -> None:
        self.store = PeerStore(directory=directory)
        self.api_key = api_key
        self.mail = MailSink(self.store)
        self.sms_port = free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sms-gateway", daemon=True)
        self._error: BaseException | None = None

    @property
    def sms_url(self) -> str:
        return f"http://127.0.0.1:{self.sms_port}/v1/sms"

    def start(self) -> Sinks:
        self.mail.start()
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the SMS gateway sink did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self.mail.stop()

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            gateway = SmsGatewaySink(self.store, port=self.sms_port, api_key=self.api_key)
            await gateway.start()
            self._ready.set()
            await self._stop.wait()
            await gateway.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()


# ---------------------------------------------------------------------------------------
# Traffic: what is published, and what each record is expected to do


@dataclass
class Item:
    """One upstream record the run publishes."""

    topic: str  # contract topic
    key: bytes | None
    value: bytes | None
    valid: bool
    kind: str  # event type (valid) or the kind of damage (bad)
    group: str  # e.g. pickup.recent, complaint.crm, bad
    event_id: str | None
    order: float  # position in the stream, 0..1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return record_digest(self.topic, self.key, self.value)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        if not self.valid or self.event_id is None:
            return []
        return [("event_type", self.kind.encode()), ("event_id", self.event_id.encode())]


def record_digest(topic: str, key: bytes | None, value: bytes | None) -> str:
    """Identifies a record by its content (every record the run makes is distinct)."""
    h = hashlib.sha256(topic.encode())
    h.update(b"\0")
    h.update(value if value is not None else b"<no value>:" + (key or b""))
    return h.hexdigest()[:32]


# How the stream is made up, in parts per thousand of the events (the rest are recent pickups).
MIX = {
    "sale.new": 150, "sale.of_pickup": 80, "pickup.old": 15, "pickup.worked": 6, "receipt": 80,
    "shipment": 70, "discrepancy": 20, "defect": 30, "complaint.crm": 16, "customer_update": 100, "bad": 30,
}
MIN_EVENTS = 500
# Bad records: (kind, weight). Decoding failures are cheap for the consumer; rejections by a
# handler make intake re-run its batch record by record, so they are rarer.
BAD_KINDS = (
    ("malformed_json", 5), ("not_an_object", 3), ("empty_value", 3), ("newer_schema_version", 4),
    ("unknown_event_type", 4), ("missing_field", 4), ("vin_length", 4), ("key_mismatch", 3),
    ("naive_datetime", 3), ("vin_check_digit", 1), ("in_the_future", 1), ("discrepancy_not_a_line", 1),
    ("receipt_before_pickup", 1),
)
CRM_COMPLAINTS = (  # none of these read as critical (classification.yaml)
    "the invoice price was too expensive for an oil change",
    "waited four hours for the car, far too slow",
    "the staff at the counter were unhelpful",
    "there is a noise from the motor at low speed",
    "the car broke down again on the highway",
)
AGENT_COMPLAINT = {"category": "product_quality", "severity": "critical",
                   "description": "brake failure two days after the service; the customer wants it inspected"}
# A CRM complaint is filed so long before "now" that one SLA step falls due during the run.
COMPLAINT_LAGS = (("acknowledge", timedelta(hours=4)), ("resolve", timedelta(days=2)),
                  ("superior_leader", timedelta(days=3)))


@dataclass
class Traffic:
    items: list[Item]
    t0: datetime  # the services' clock when the stream was made
    publish_seconds: float

    @property
    def by_group(self) -> Counter[str]:
        return Counter(i.group for i in self.items)

    @property
    def worked(self) -> list[Item]:
        return [i for i in self.items if i.group == "pickup.worked"]


def _allocate(events: int, campaigns: int) -> dict[str, int]:
    if events < MIN_EVENTS:
        raise ValueError(f"--events {events} is too small for the mix of record kinds; use at least {MIN_EVENTS}")
    counts = {group: max(1, round(events * per_mille / 1000)) for group, per_mille in MIX.items()}
    counts["campaign"] = campaigns
    counts["pickup.recent"] = events - sum(counts.values())
    return counts


def build_traffic(events: int, seed: int, t0: datetime, publish_seconds: float) -> Traffic:
    """A reproducible stream of `events` upstream records with its manifest."""
    fleet = Fleet(seed=seed, dealers=20)
    rng = random.Random(seed * 7919 + 1)
    counts = _allocate(events, campaigns=2 if events >= 10_000 else 1)
    items: list[Item] = []
    pool: list[Vehicle] = []
    customers: list[Customer] = []

    def ago(lo: timedelta, hi: timedelta) -> datetime:
        return t0 - lo - (hi - lo) * rng.random()

    def add(topic: str, env: dict[str, Any] | None, group: str, order: float, *, valid: bool = True,
            kind: str | None = None, key: bytes | None = None, value: bytes | None = None, **extra: Any) -> Item:
        if env is not None:
            key = key if key is not None else env["key"].encode()
            value = value if value is not None else orjson.dumps(env)
        item = Item(topic, key, value, valid, kind or (env or {}).get("event_type", "?"), group,
                    (env or {}).get("event_id") if valid else None, order, extra)
        items.append(item)
        return item

    def later(order: float) -> float:
        return order + (1 - order) * rng.random() * 0.5

    # Sales of new vehicles (units in service, customer files).
    for _ in range(counts["sale.new"]):
        v = fleet.vehicle(ago(timedelta(days=0.5), timedelta(days=25)))
        pool.append(v)
        customers.append(v.customer)
        add("upstream.sales", fleet.sale(v), "sale.new", rng.random())

    # Pickups: recent (a first visit and its SMS), old (overdue and escalated on arrival), and
    # worked (due now: an agent calls and records a critical complaint).
    pickups: list[tuple[Item, dict[str, Any], Vehicle]] = []
    windows = {"pickup.recent": (timedelta(hours=1), timedelta(days=2.5)),
               "pickup.old": (timedelta(days=10), timedelta(days=19)),
               "pickup.worked": (timedelta(days=3.3), timedelta(days=5))}
    sales_left = counts["sale.of_pickup"]
    for group in ("pickup.recent", "pickup.old", "pickup.worked"):
        for _ in range(counts[group]):
            # Sold less than 12 months ago: no lost-customer call comes due during the run.
            v = fleet.vehicle(ago(timedelta(days=30), timedelta(days=330)))
            pool.append(v)
            customers.append(v.customer)
            env = fleet.pickup(v, ago(*windows[group]), service_type=rng.choice(("maintenance", "repair", "warranty")))
            order = rng.random()
            item = add("upstream.dms", env, group, order, repair_order_id=env["data"]["repair_order_id"])
            pickups.append((item, env, v))
            if sales_left > 0:
                sales_left -= 1
                add("upstream.sales", fleet.sale(v), "sale.of_pickup", rng.random())
    receipt_candidates = [p for p in pickups if p[0].group == "pickup.recent"
                          and datetime.fromisoformat(p[1]["data"]["picked_up_at"]) < t0 - timedelta(hours=12)]
    for item, env, _ in rng.sample(receipt_candidates, min(counts["receipt"], len(receipt_candidates))):
        returned = datetime.fromisoformat(env["data"]["picked_up_at"]) + timedelta(hours=rng.uniform(1, 10))
        add("upstream.dms", fleet.receipt(env, returned), "receipt", later(item.order))

    # Parts: shipments, discrepancies on their lines (after them), defect reports.
    shipments: list[tuple[Item, dict[str, Any]]] = []
    for _ in range(counts["shipment"]):
        env = fleet.shipment(rng.choice(fleet.dealers), ago(timedelta(days=1), timedelta(days=20)))
        shipments.append((add("upstream.erp", env, "shipment", rng.random()), env))
    for item, env in rng.sample(shipments, min(counts["discrepancy"], len(shipments))):
        reported = datetime.fromisoformat(env["data"]["shipped_at"]) + timedelta(hours=rng.uniform(1, 20))
        add("upstream.erp", fleet.discrepancy(env, rng.randrange(1, len(env["data"]["lines"]) + 1),
                                              rng.choice(("wrong_part", "short", "damaged", "late")), reported),
            "discrepancy", later(item.order))
    for _ in range(counts["defect"]):
        v = rng.choice(pool)
        add("upstream.erp", fleet.defect(v, rng.choice([p["category"] for p in v.parts]),
                                         ago(timedelta(0), timedelta(days=10)), mileage_km=rng.randrange(100, 50_000)),
            "defect", rng.random())

    # CRM: complaints (dated so an SLA step falls due during the run), campaigns, customer updates.
    for n in range(counts["complaint.crm"]):
        c = rng.choice(customers)
        lag_name, lag = COMPLAINT_LAGS[n % len(COMPLAINT_LAGS)]
        add("upstream.crm", None, "complaint.crm", rng.random(), kind="ComplaintFiled",
            customer=c, description=CRM_COMPLAINTS[n % len(CRM_COMPLAINTS)], lag=lag, lag_name=lag_name)
    for n in range(counts["campaign"]):
        env = fleet.campaign("free_inspection_week", f"Free inspection week {n + 1}", t0 + timedelta(days=30), 7,
                             [REGIONS[n % len(REGIONS)]], t0 - timedelta(hours=1), models=[MODELS[n % len(MODELS)]])
        add("upstream.crm", env, "campaign", rng.random())
    for n, c in enumerate(rng.sample(customers, min(counts["customer_update"], len(customers)))):
        # The newest fact about the customer (pickups are at least an hour old, sales half a
        # day), so intake always has something to announce: CustomerUpdated, or CustomerRegistered
        # when the change overtakes the customer's first sale or pickup.
        env = fleet.customer_update(c, ago(timedelta(0), timedelta(minutes=30)),
                                    address=f"{c.region} district, new road {n + 1}")
        add("upstream.crm", env, "customer_update", rng.random())

    # Bad records, every kind, on every upstream topic where it makes sense.
    kinds = [k for k, w in BAD_KINDS for _ in range(w)]
    for n in range(counts["bad"]):
        _bad(add, fleet, rng, kinds[n % len(kinds)], t0, pickups, shipments, n)

    items.sort(key=lambda i: i.order)
    # Complaints get their filing time from their place in the stream: the SLA step `lag` after
    # it comes due a few seconds to half a minute after the complaint is expected to be published.
    for position, item in enumerate(items):
        if item.group == "complaint.crm" and item.value is None:
            e = item.extra
            due = t0 + timedelta(seconds=publish_seconds * position / len(items) + rng.uniform(3, 30))
            filed_at = due - e.pop("lag")
            env = fleet.complaint(e.pop("customer"), filed_at, e.pop("description"))
            item.key, item.value, item.event_id = env["key"].encode(), orjson.dumps(env), env["event_id"]
            e["filed_at"] = filed_at.isoformat()
    return Traffic(items, t0, publish_seconds)


def _bad(add: Any, fleet: Fleet, rng: random.Random, kind: str, t0: datetime,
         pickups: list[tuple[Item, dict[str, Any], Vehicle]], shipments: list[tuple[Item, dict[str, Any]]],
         n: int) -> None:
    topic = UPSTREAM[n % len(UPSTREAM)]
    order = rng.random()
    v = fleet.vehicle(t0 - timedelta(days=rng.uniform(30, 300)))
    pickup = fleet.pickup(v, t0 - timedelta(days=rng.uniform(0.1, 2)))
    marker = uuid.uuid4().hex
    if kind == "malformed_json":
        add(topic, None, "bad", order, valid=False, kind=kind, key=marker.encode(),
            value=b'{"event_id": "' + marker.encode() + b'", "event_type": "VehicleSold", "data": {')
    elif kind == "not_an_object":
        add(topic, None, "bad", order, valid=False, kind=kind, key=marker.encode(), value=orjson.dumps([marker, 1, 2]))
    elif kind == "empty_value":
        add(topic, None, "bad", order, valid=False, kind=kind, key=f"tombstone-{marker}".encode(), value=None)
    elif kind == "newer_schema_version":
        add("upstream.dms", pickup | {"schema_version": 2}, "bad", order, valid=False, kind=kind)
    elif kind == "unknown_event_type":
        add(topic, pickup | {"event_type": "VehicleTeleported"}, "bad", order, valid=False, kind=kind)
    elif kind == "missing_field":
        env = fleet.shipment(rng.choice(fleet.dealers), t0 - timedelta(days=2))
        del env["data"]["lines"]
        add("upstream.erp", env, "bad", order, valid=False, kind=kind)
    elif kind == "vin_length":
        sale = fleet.sale(v)
        sale["data"]["vin"] = sale["key"] = v.vin[:16]
        add("upstream.sales", sale, "bad", order, valid=False, kind=kind)
    elif kind == "key_mismatch":
        add("upstream.dms", pickup | {"key": fleet.vin()}, "bad", order, valid=False, kind=kind)
    elif kind == "naive_datetime":
        env = fleet.complaint(fleet.customer(), t0 - timedelta(hours=2), "the price was too expensive")
        env["data"]["filed_at"] = (t0 - timedelta(hours=2)).replace(tzinfo=None).isoformat()
        add("upstream.crm", env, "bad", order, valid=False, kind=kind)
    elif kind == "vin_check_digit":
        wrong = next(d for d in "0123456789" if d != vin_check_digit(v.vin))
        bad_vin = v.vin[:8] + wrong + v.vin[9:]
        pickup["data"]["vin"] = pickup["key"] = bad_vin
        add("upstream.dms", pickup, "bad", order, valid=False, kind=kind)
    elif kind == "in_the_future":
        future = t0 + timedelta(days=60)
        pickup["data"]["picked_up_at"] = pickup["occurred_at"] = future.isoformat()
        add("upstream.dms", pickup, "bad", order, valid=False, kind=kind)
    elif kind == "discrepancy_not_a_line":
        parent, env = rng.choice(shipments)
        reported = datetime.fromisoformat(env["data"]["shipped_at"]) + timedelta(hours=3)
        add("upstream.erp", fleet.discrepancy(env, 99, "short", reported), "bad",
            parent.order + (1 - parent.order) * rng.random(), valid=False, kind=kind)
    elif kind == "receipt_before_pickup":
        parent, env, _ = rng.choice([p for p in pickups if p[0].group == "pickup.recent"])
        returned = datetime.fromisoformat(env["data"]["picked_up_at"]) - timedelta(hours=5)
        receipt = fleet.receipt(env, returned)
        receipt["data"]["receipt_id"] = f"RC-BAD-{marker[:12]}"  # not the id of the pickup's real receipt
        add("upstream.dms", receipt, "bad", parent.order + (1 - parent.order) * rng.random(), valid=False, kind=kind)
    else:  # pragma: no cover - the table above names every kind
        raise ValueError(kind)


# ---------------------------------------------------------------------------------------
# What happened during the run


@dataclass
class Fault:
    at: float  # seconds since the fault window opened
    what: str  # SIGKILL, Kafka SIGKILL, Kafka back, Postgres crash, Postgres back, exited
    target: str
    detail: str = ""


@dataclass
class RunStats:
    published: int = 0
    publish_retries: int = 0
    publish_seconds: float = 0.0
    agent_done: int = 0
    agent_conflicts: int = 0
    agent_errors: dict[str, int] = field(default_factory=dict)  # failed tries by kind
    faults: list[Fault] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)  # services that exited by themselves, an agent that gave up
    shutdown_codes: dict[str, int | None] = field(default_factory=dict)
    quiet_after: float | None = None
    quiet_problem: str | None = None


# ---------------------------------------------------------------------------------------
# Reading back


@dataclass(frozen=True, slots=True)
class Rec:
    topic: str  # contract topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Ev:
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    key: str
    causation_id: str | None
    occurred_at: str
    data: dict[str, Any]


async def read_topic(settings: Settings, topic: str, timeout: float = 300) -> list[Rec]:
    """Every record of a topic, from the beginning to its end as of now, with its sealed personal
    fields opened with the run's keyring (shared/keyring.py), as the services read them."""
    physical = settings.topic(topic)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False,  # type: ignore[arg-type]
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    out: list[Rec] = []
    try:
        tps = [TopicPartition(physical, p) for p in await partitions_of(consumer, physical)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {physical} took longer than {timeout}s")
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500, max_records=20_000)).items():
                out.extend(Rec(topic, r.partition, r.offset, r.key, r.value) for r in records if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await stop_consumer(consumer)
    values = await keyring.open_at(settings.database_url, [r.value for r in out])
    return [replace(r, value=v) for r, v in zip(out, values, strict=True)]


def parse(records: Iterable[Rec]) -> tuple[list[Ev], int]:
    """Envelopes of canonical records, and how many were not envelopes at all."""
    events, broken = [], 0
    for r in records:
        try:
            env = orjson.loads(r.value or b"")
            events.append(Ev(r.topic, r.partition, r.offset, str(env["event_id"]), env["event_type"], env["key"],
                             env.get("causation_id"), env["occurred_at"], env.get("data") or {}))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            broken += 1
    return events, broken


@dataclass
class Observation:
    """Everything the checks look at, collected once the system is quiet."""

    upstream: list[Rec]
    events: dict[str, list[Ev]]
    broken: int
    sms: list[dict[str, Any]]
    sms_attempts: list[dict[str, Any]]
    mails: list[dict[str, Any]]
    db: dict[str, Any]
    lags: dict[str, int]
    checked_at: datetime


@dataclass
class Expectation:
    """What the run put in and how the services were configured."""

    manifest: dict[str, Item]
    worked: dict[str, str]  # followup_id -> repair_order_id
    sla: dict[str, dict[str, int]]  # severity -> seconds per allowance
    incidents: list[str] = field(default_factory=list)  # exits, an agent that gave up, no quiet
    shutdown_codes: dict[str, int | None] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# The invariants


@dataclass
class Invariant:
    name: str
    ok: bool
    figures: str
    problems: list[str] = field(default_factory=list)


def _first(problems: list[str], limit: int = 8) -> list[str]:
    return problems[:limit] + ([f"… and {len(problems) - limit} more"] if len(problems) > limit else [])


def _distinct(events: Iterable[Ev], by: Any) -> dict[Any, set[str]]:
    """Group events by `by(event)`; the distinct event ids of each group (a re-sent copy of an
    event carries its event_id, so it counts once)."""
    out: dict[Any, set[str]] = defaultdict(set)
    for e in events:
        out[by(e)].add(e.event_id)
    return out


CANONICAL_OF = {
    "VehicleSold": ("VehicleSold",), "VehiclePickedUp": ("VehiclePickedUp",), "ReceiptReturned": ("ReceiptRecorded",),
    "PartShipped": ("PartShipped",), "PartShipmentDiscrepancy": ("PartShipmentDiscrepancy",),
    "PartDefectReported": ("PartDefectReported",), "ComplaintFiled": ("ComplaintFiled",),
    "CampaignAnnounced": ("CampaignAnnounced",), "CustomerUpdated": ("CustomerUpdated", "CustomerRegistered"),
}


def escalation_steps(filed_at: datetime, severity: str, overrides: dict[str, int]) -> list[tuple[int, datetime]]:
    """The ladder of a case nobody acknowledges or resolves, as the service computes it: the
    severity's row of the SLA table with the run's overrides (seconds), on its clock (the
    working calendar, or around the clock for critical cases)."""
    row = {name: timedelta(seconds=seconds) for name, seconds in overrides.items()}
    policy = SlaTable.model_validate({severity: row} if row else {}).for_severity(severity)
    figures = compute([SlaFact("filed", filed_at)], policy, filed_at)
    return [(step.level, step.due) for step in figures.steps]


def check(obs: Observation, exp: Expectation) -> list[Invariant]:
    """Every invariant of the run; each says what it counted and what is wrong."""
    results: list[Invariant] = []
    ev = obs.events
    intake, followup = ev.get("aftersales.intake", []), ev.get("aftersales.followup", [])
    complaints, notifier = ev.get("aftersales.complaints", []), ev.get("aftersales.notifier", [])
    quality, deadletter = ev.get("aftersales.quality", []), ev.get("aftersales.deadletter", [])

    # -- what went in ------------------------------------------------------------------------
    on_topic: dict[str, list[Rec]] = defaultdict(list)
    foreign = []
    for r in obs.upstream:
        digest = record_digest(r.topic, r.key, r.value)
        if digest in exp.manifest:
            on_topic[digest].append(r)
        else:
            foreign.append(f"{r.topic}:{r.partition}:{r.offset}")
    missing = [f"{i.group}/{i.kind} {i.event_id or i.digest}" for d, i in exp.manifest.items() if d not in on_topic]
    copies = sum(len(v) - 1 for v in on_topic.values())
    valid = {i.event_id: i for d, i in exp.manifest.items() if i.valid and d in on_topic}
    bad_at = {(r.topic, r.partition, r.offset): exp.manifest[d] for d, rs in on_topic.items()
              if not exp.manifest[d].valid for r in rs}
    results.append(Invariant(
        "every injected record is on its upstream topic", not missing and not foreign,
        f"{len(exp.manifest):,} injected ({len(valid):,} valid, {len(exp.manifest) - len(valid):,} bad), "
        f"{len(obs.upstream):,} records on upstream.* ({copies} re-sent copies)",
        [f"not published: {m}" for m in missing] + [f"not ours: {f}" for f in foreign]))

    # -- dead letters ------------------------------------------------------------------------
    dead = _distinct(deadletter, lambda e: (e.data.get("topic"), e.data.get("partition"), e.data.get("offset")))
    by_service = Counter(e.data.get("service") for e in {e.event_id: e for e in deadletter}.values())
    problems = [f"bad record {t}:{p}:{o} ({bad_at[(t, p, o)].kind}) was not dead-lettered"
                for (t, p, o) in sorted(set(bad_at) - set(dead))]
    problems += [f"dead letter for {t}:{p}:{o}, which is not an injected bad record ({_reason(deadletter, (t, p, o))})"
                 for (t, p, o) in sorted(set(dead) - set(bad_at), key=str)]
    problems += [f"{k} dead-lettered {len(ids)} times" for k, ids in dead.items() if len(ids) > 1]
    results.append(Invariant(
        "the dead-letter topic holds exactly the injected bad records", not problems,
        f"{len(bad_at):,} bad records on upstream.* → {len(dead):,} dead letters "
        f"({', '.join(f'{s}: {n}' for s, n in sorted(by_service.items(), key=str)) or 'none'}); "
        f"kinds: {', '.join(f'{k} {n}' for k, n in sorted(Counter(i.kind for i in bad_at.values()).items()))}",
        problems))

    # -- upstream → canonical ----------------------------------------------------------------
    caused = _distinct(intake, lambda e: (e.causation_id, e.event_type))
    problems = []
    canonical_count = 0
    for event_id, item in valid.items():
        made = set().union(*(caused.get((event_id, t), set()) for t in CANONICAL_OF[item.kind]))
        canonical_count += len(made)
        if len(made) != 1:
            problems.append(f"{item.kind} {event_id} ({item.group}) → {len(made)} canonical "
                            f"{'/'.join(CANONICAL_OF[item.kind])}")
    results.append(Invariant(
        "every valid upstream event has exactly one canonical event", not problems,
        f"{len(valid):,} valid upstream events → {canonical_count:,} canonical events "
        f"({len(intake):,} records on aftersales.intake)", problems))

    # -- pickups → first-visit follow-ups -----------------------------------------------------
    pickups = _distinct((e for e in intake if e.event_type == "VehiclePickedUp"), lambda e: e.data["repair_order_id"])
    pickup_ids = {next(iter(ids)) for ids in pickups.values() if len(ids) == 1}
    scheduled = [e for e in followup if e.event_type == "FollowUpScheduled"]
    first = [e for e in scheduled if e.data.get("kind") == "first_visit"]  # after pickups and deliveries
    first_pickup = [e for e in first if e.data.get("reason_type") in (None, "VehiclePickedUp")]
    first_sale = [e for e in first if e.data.get("reason_type") == "VehicleSold"]
    first_by_reason = _distinct(first_pickup, lambda e: e.data.get("reason_event_id"))
    first_by_id = _distinct(first, lambda e: e.data["followup_id"])
    pickup_firsts = _distinct(first_pickup, lambda e: e.data["followup_id"])
    sale_firsts = _distinct(first_sale, lambda e: e.data["followup_id"])
    valid_pickups = [i for i in valid.values() if i.kind == "VehiclePickedUp"]
    problems = [f"repair order {ro}: {len(ids)} canonical VehiclePickedUp" for ro, ids in pickups.items() if len(ids) != 1]
    problems += [f"pickup {p}: {len(first_by_reason.get(p, ()))} first-visit FollowUpScheduled"
                 for p in sorted(pickup_ids) if len(first_by_reason.get(p, ())) != 1]
    problems += [f"first-visit follow-up {f} announced with {len(ids)} event ids" for f, ids in first_by_id.items()
                 if len(ids) != 1]
    problems += [f"first-visit follow-up for {r}, which is not a canonical pickup" for r in first_by_reason
                 if r not in pickup_ids]
    db_first = obs.db.get("followups_by_kind", {}).get("first_visit")
    if db_first != len(valid_pickups) + len(sale_firsts):
        problems.append(f"the followups table holds {db_first} first visits for {len(valid_pickups)} valid pickups "
                        f"and {len(sale_firsts)} deliveries")
    any_twice = [f"{f} ({len(ids)} event ids)" for f, ids in _distinct(scheduled, lambda e: e.data["followup_id"]).items()
                 if len(ids) > 1]
    problems += [f"follow-up scheduled twice: {x}" for x in any_twice]
    kinds_scheduled = Counter(e.data.get("kind") for e in {e.event_id: e for e in scheduled}.values())
    results.append(Invariant(
        "every valid pickup has exactly one first-visit FollowUpScheduled", not problems,
        f"{len(valid_pickups):,} valid pickups → {len(pickups):,} canonical → {len(pickup_firsts):,} first visits "
        f"(DB {db_first}); all follow-ups: {len(_distinct(scheduled, lambda e: e.data['followup_id'])):,} "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds_scheduled.items()))})",
        problems))

    # -- deliveries → first-visit follow-ups (a sale is called 3-7 days after it, like a pickup) ------
    sales = _distinct((e for e in intake if e.event_type == "VehicleSold"), lambda e: e.data["sale_id"])
    sale_ids = {i for ids in sales.values() for i in ids}
    by_sale = _distinct(first_sale, lambda e: e.data.get("reason_event_id"))
    new_sales = [(event_id, i) for event_id, i in valid.items() if i.group == "sale.new"]  # well inside the horizon
    problems = [f"first-visit follow-up for {r}, which is not a canonical sale" for r in by_sale if r not in sale_ids]
    problems += [f"sale {r}: {len(ids)} first-visit FollowUpScheduled" for r, ids in by_sale.items() if len(ids) != 1]
    problems += [f"recent sale {event_id}: no first-visit follow-up" for event_id, _ in new_sales
                 if not caused.get((event_id, "VehicleSold"), set()) & set(by_sale)]
    results.append(Invariant(
        "every recent delivery has exactly one first-visit FollowUpScheduled", not problems,
        f"{len(new_sales):,} recent sales, {len(sales):,} canonical sales → {len(sale_firsts):,} first visits",
        problems))

    # -- follow-up escalations ------------------------------------------------------------------
    escalated = _distinct((e for e in followup if e.event_type == "FollowUpEscalated"), lambda e: e.data["followup_id"])
    completed = {e.data["followup_id"] for e in followup if e.event_type == "FollowUpCompleted"}
    problems, expected_fu = [], 0
    first_by_event = {e.event_id: e for e in first}
    for fid, ids in first_by_id.items():
        e = first_by_event[next(iter(ids))]
        due = datetime.fromisoformat(e.data["due_by"]) + ESCALATE_AFTER_OVERDUE
        should = due <= obs.checked_at and fid not in completed
        expected_fu += should
        got = len(escalated.get(fid, ()))
        if got != (1 if should else 0):
            problems.append(f"first visit {fid} (escalation due {due.isoformat()}): {got} FollowUpEscalated")
    results.append(Invariant(
        "every overdue first visit escalated once", not problems,
        f"{expected_fu:,} first visits past due_by + 2 days → {sum(len(v) for v in escalated.values()):,} "
        "FollowUpEscalated", problems))

    # -- complaints: opened once, escalated once per (case, round, level) ------------------------
    filed_refs = {orjson.loads(i.value or b"{}")["data"]["complaint_ref"] for i in valid.values() if i.kind == "ComplaintFiled"}
    raised = _distinct((e for e in followup if e.event_type == "ComplaintFiled"), lambda e: e.data["complaint_ref"])
    opened = _distinct((e for e in complaints if e.event_type == "ComplaintOpened"), lambda e: e.data["complaint_ref"])
    opened_ev = {e.event_id: e for e in complaints if e.event_type == "ComplaintOpened"}
    problems = [f"complaint {ref}: {len(opened.get(ref, ()))} ComplaintOpened" for ref in sorted(filed_refs | set(raised))
                if len(opened.get(ref, ())) != 1]
    problems += [f"case opened for {ref}, which nobody filed" for ref in opened if ref not in filed_refs | set(raised)]
    db_cases = obs.db.get("cases")
    if db_cases != len(filed_refs | set(raised)):
        problems.append(f"the cases table holds {db_cases} cases for {len(filed_refs | set(raised))} complaints filed")
    steps = _distinct((e for e in complaints if e.event_type == "ComplaintEscalated"),
                      lambda e: (e.data["complaint_id"], e.data.get("round") or 0, e.data["level"]))
    expected_steps: set[tuple[str, int, int]] = set()
    for ids in opened.values():
        for eid in ids:
            case = opened_ev[eid].data
            sla = exp.sla.get(case["severity"], {})
            for level, due in escalation_steps(datetime.fromisoformat(case["filed_at"]), case["severity"], sla):
                if due <= obs.checked_at:
                    expected_steps.add((case["complaint_id"], 0, level))
    problems += [f"case {c} round {r} level {lvl}: escalated {len(steps.get((c, r, lvl), ()))} times"
                 for (c, r, lvl) in sorted(expected_steps) if len(steps.get((c, r, lvl), ())) != 1]
    problems += [f"case {c} round {r} level {lvl}: escalated before it was due" for (c, r, lvl) in sorted(steps)
                 if (c, r, lvl) not in expected_steps]
    results.append(Invariant(
        "every complaint opened once and escalated once per (case, round, level)", not problems,
        f"{len(filed_refs):,} CRM complaints + {len(raised):,} raised on calls → {len(opened):,} cases (DB {db_cases}); "
        f"{len(expected_steps):,} escalation steps due → {len(steps):,} ComplaintEscalated "
        f"(levels {dict(sorted(Counter(k[2] for k in steps).items()))})", problems))

    # -- agents' calls ---------------------------------------------------------------------------
    completions = _distinct((e for e in followup if e.event_type == "FollowUpCompleted"), lambda e: e.data["followup_id"])
    raised_by_fu = _distinct((e for e in followup if e.event_type == "ComplaintFiled"), lambda e: e.data.get("followup_id"))
    problems = [f"worked follow-up {fid} (RO {ro}): {len(completions.get(fid, ()))} FollowUpCompleted, "
                f"{len(raised_by_fu.get(fid, ()))} ComplaintFiled" for fid, ro in sorted(exp.worked.items())
                if len(completions.get(fid, ())) != 1 or len(raised_by_fu.get(fid, ())) != 1]
    results.append(Invariant(
        "every call an agent recorded completed its follow-up once and raised its complaint once", not problems,
        f"{len(exp.worked)} calls → {sum(len(completions.get(f, ())) for f in exp.worked)} completed, "
        f"{sum(len(raised_by_fu.get(f, ())) for f in exp.worked)} complaints raised", problems))

    # -- notifications: one each, delivered once ------------------------------------------------
    terminal = [e for e in notifier if e.event_type in ("NotificationSent", "NotificationFailed", "NotificationSuppressed")]
    outcomes = _distinct(terminal, lambda e: e.data["notification_id"])
    one = {e.event_id: e for e in terminal}
    problems = [f"notification {nid}: {len(ids)} outcomes ({', '.join(sorted(one[i].event_type for i in ids))})"
                for nid, ids in outcomes.items() if len(ids) != 1]
    per_cause = _distinct(terminal, lambda e: (e.data["rule"], e.data["source_event_id"], e.data["recipient"]))
    problems += [f"rule {r} for event {s} to {to}: {len(ids)} notifications" for (r, s, to), ids in per_cause.items()
                 if len({one[i].data['notification_id'] for i in ids}) != 1]
    sent = {e.data["notification_id"]: e for e in terminal if e.event_type == "NotificationSent"}
    by_rule_source = {(e.data["rule"], e.data["source_event_id"]): e for e in terminal}
    # What must have been notified: the rules the run's traffic triggers.
    must: list[tuple[str, str, str]] = []
    for e in {e.event_id: e for e in first}.values():
        must.append(("first_visit_notice", e.event_id, f"first visit {e.data['followup_id']}"))
    for e in {e.event_id: e for e in followup if e.event_type == "FollowUpEscalated"}.values():
        must.append(("followup_escalated", e.event_id, f"escalated follow-up {e.data['followup_id']}"))
    for e in {e.event_id: e for e in complaints if e.event_type == "ComplaintEscalated"}.values():
        must.append(("complaint_escalated", e.event_id, f"case {e.data['complaint_id']} level {e.data['level']}"))
    for e in {e.event_id: e for e in quality if e.event_type == "QualityAlertRaised"}.values():
        if not e.data.get("updated"):
            must.append(("quality_alert", e.event_id, f"alert {e.data.get('alert_id')}"))
    for rule, source, what in must:
        got = by_rule_source.get((rule, source))
        if got is None:
            problems.append(f"{rule} for {what}: no notification outcome")
        elif got.event_type != "NotificationSent":
            problems.append(f"{rule} for {what}: {got.event_type} ({got.data.get('reason')})")
    statuses = obs.db.get("notifications_by_status", {})
    unfinished = {s: n for s, n in statuses.items() if s not in ("sent", "failed", "suppressed")}
    if unfinished:
        problems.append(f"notifications not finished in the database: {unfinished}")
    if sum(statuses.values()) != len(outcomes):
        problems.append(f"the notifications table holds {sum(statuses.values())} rows for {len(outcomes)} on the topic")
    results.append(Invariant(
        "every notification decided once, with one outcome", not problems,
        f"{len(must):,} notifications the traffic calls for; {len(outcomes):,} outcomes on aftersales.notifier "
        f"({', '.join(f'{k} {n}' for k, n in sorted(Counter(e.event_type for e in one.values()).items()))}; "
        f"by rule: {', '.join(f'{k} {n}' for k, n in sorted(Counter(e.data['rule'] for e in one.values()).items()))})",
        problems))

    # Delivered: the SMS gateway keeps one message per Idempotency-Key; the SMTP server keeps
    # every message it accepted, so a repeated Message-ID is a repeated attempt, one delivery.
    sms_sent = {nid for nid, e in sent.items() if e.data["channel"] == "sms"}
    mail_sent = {nid for nid, e in sent.items() if e.data["channel"] == "email"}
    delivered = Counter(s.get("idempotency_key") for s in obs.sms)
    attempts = Counter(a.get("idempotency_key") for a in obs.sms_attempts)
    mail_ids = Counter(_notification_of(m.get("message_id") or "") for m in obs.mails)
    problems = [f"SMS notification {nid}: {delivered.get(nid, 0)} messages delivered" for nid in sorted(sms_sent)
                if delivered.get(nid, 0) != 1]
    problems += [f"the gateway delivered an SMS under key {k!r}, which is no sent notification" for k in delivered
                 if k not in sms_sent]
    problems += [f"an SMS attempt under key {k!r}, which is no notification" for k in attempts if k not in outcomes]
    problems += [f"e-mail notification {nid}: no message with its Message-ID" for nid in sorted(mail_sent)
                 if not mail_ids.get(nid)]
    problems += [f"a mail with Message-ID for {k!r}, which is no sent notification" for k in mail_ids if k not in mail_sent]
    results.append(Invariant(
        "every notification delivered once (SMS gateway and SMTP server)", not problems,
        f"SMS: {len(sms_sent):,} sent → {len(delivered):,} delivered, {len(obs.sms_attempts):,} attempts "
        f"({sum(n - 1 for n in attempts.values() if n > 1)} repeated with the same Idempotency-Key); e-mail: "
        f"{len(mail_sent):,} sent → {len(mail_ids):,} Message-IDs in {len(obs.mails):,} messages "
        f"({sum(n - 1 for n in mail_ids.values() if n > 1)} repeated with the same Message-ID)",
        problems))

    # -- counts, stage by stage ----------------------------------------------------------------
    stages = [
        ("valid upstream events → canonical events", len(valid), canonical_count),
        ("valid pickups → canonical VehiclePickedUp", len(valid_pickups), len(pickups)),
        ("canonical pickups → first-visit follow-ups", len(pickups), len(pickup_firsts)),
        ("first-visit follow-ups → first-visit SMS sent",
         len(first_by_id), sum(1 for e in sent.values() if e.data["rule"] == "first_visit_notice")),
        ("first-visit SMS sent → SMS delivered", sum(1 for e in sent.values() if e.data["rule"] == "first_visit_notice"),
         sum(1 for nid, e in sent.items() if e.data["rule"] == "first_visit_notice" and delivered.get(nid))),
        # pickups and deliveries alike: a sale's first visit is due 3-7 days after it
        ("overdue first visits → FollowUpEscalated", expected_fu, len(escalated)),
        ("FollowUpEscalated → e-mails sent", len(escalated),
         sum(1 for e in sent.values() if e.data["rule"] == "followup_escalated")),
        ("complaints filed → cases opened", len(filed_refs | set(raised)), len(opened)),
        ("escalation steps due → ComplaintEscalated", len(expected_steps), len(steps)),
        ("ComplaintEscalated → e-mails sent", len(steps),
         sum(1 for e in sent.values() if e.data["rule"] == "complaint_escalated")),
        ("e-mails sent → delivered", len(mail_sent), len([k for k in mail_ids if k in mail_sent])),
        ("bad records → dead letters", len(bad_at), len(dead)),
    ]
    results.append(Invariant(
        "counts match stage by stage", all(a == b for _, a, b in stages),
        "; ".join(f"{name}: {a:,} → {b:,}" for name, a, b in stages),
        [f"{name}: {a:,} → {b:,}" for name, a, b in stages if a != b]))

    # -- the platform itself ----------------------------------------------------------------------
    problems = list(exp.incidents)
    problems += [f"{name} exited with {code} on SIGTERM" for name, code in exp.shutdown_codes.items() if code != 0]
    problems += [f"consumer group {g} is {lag} records behind" for g, lag in obs.lags.items() if lag]
    for schema in SCHEMAS:
        for what in ("outbox_pending", "timers_due", "timers_parked"):
            n = obs.db.get(what, {}).get(schema)
            if n:
                problems.append(f"{schema}: {n} {what.replace('_', ' ')}")
    if obs.broken:
        problems.append(f"{obs.broken} records on aftersales.* are not envelopes")
    results.append(Invariant(
        "services recovered by themselves and left nothing behind", not problems,
        "no unexpected exits, graceful stops, lag 0, outboxes empty, no due or parked timers"
        if not problems else "", problems))
    return results


def _notification_of(message_id: str) -> str:
    return message_id.strip().strip("<>").split("@", 1)[0]


def _reason(deadletter: list[Ev], where: tuple[Any, Any, Any]) -> str:
    for e in deadletter:
        if (e.data.get("topic"), e.data.get("partition"), e.data.get("offset")) == where:
            return f"{e.data.get('service')}: {e.data.get('error')}: {str(e.data.get('reason'))[:160]}"
    return "?"


# ---------------------------------------------------------------------------------------
# The run


def next_victim(replicas: list[Replica], kills: Counter[str], rng: random.Random) -> Replica | None:
    """The replica of one service to SIGKILL next: one of those killed least so far, at random
    among them, once it is up; None while every such replica is down (try again shortly). So a
    service's kills are spread over its replicas and never all land on one."""
    fewest = min(kills[r.name] for r in replicas)
    up = [r for r in replicas if kills[r.name] == fewest and r.alive()]
    return rng.choice(up) if up else None


@dataclass
class FaultOptions:
    events: int = 20_000
    replicas: int = 1
    kills: int = 3  # SIGKILLs per service
    rate: float = 0.0  # upstream events per second; 0 = events / 100 s (at least 25/s)
    seed: int | None = None
    quiet_timeout: float = 1800.0
    keep: bool = False  # keep the run's database and topics even when it passes
    # The services' clock when the run starts. Default: now, moved into daytime in China; tests
    # fix it, so a seed gives the same run on any day.
    start: datetime | None = None

    def publish_rate(self) -> float:
        return self.rate or max(25.0, self.events / 100.0)


@dataclass
class Report:
    options: FaultOptions
    run_id: str
    seed: int
    invariants: list[Invariant]
    stats: RunStats
    traffic: dict[str, int]
    seconds: float
    logs: str

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    def failed(self) -> list[Invariant]:
        return [i for i in self.invariants if not i.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seed": self.seed, "ok": self.ok, "seconds": round(self.seconds, 1),
                "options": asdict(self.options), "traffic": self.traffic, "stats": asdict(self.stats),
                "invariants": [asdict(i) for i in self.invariants], "logs": self.logs}


class FaultRun:
    def __init__(self, infra: FaultInfra, options: FaultOptions) -> None:
        self.infra = infra
        self.options = options
        self.seed = options.seed if options.seed is not None else secrets.randbelow(1_000_000)
        self.rng = random.Random(self.seed)
        self.run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        self.dir = infra.runs_dir / self.run_id
        self.prefix = f"faults{self.run_id.replace('-', '')}."
        self.database = f"aftersales_faults_{self.run_id.replace('-', '_')}"
        self.settings = load_settings(
            topic_prefix=self.prefix, kafka_bootstrap=infra.settings.kafka_bootstrap,
            database_url=with_database(infra.settings.database_url, self.database),
            database_role_passwords="", dev_single_database_role=True,
        )
        self.stats = RunStats()
        self.replicas: list[Replica] = []
        self._kills: Counter[str] = Counter()  # SIGKILLs per replica name
        self.sinks: Sinks | None = None
        self.offset = 0.0
        self.agent_token = f"fault-agent-{secrets.token_urlsafe(24)}"  # long enough for start-up's check
        self.sms_key = secrets.token_urlsafe(32)
        self._window_start = 0.0
        self._stopping = False
        self._published_orders: float = -1.0
        self._faults_done = 0.0
        self.subscribed: dict[str, set[str]] = {}
        self.first_visit_of: Any = None  # Item -> the followup_id of its first visit (set in prepare)
        # bars for the long phases (publishing, catching up); drawn on stderr when it is a terminal
        self.progress: Tracker = QUIET
        self._behind = 0  # records the consumer groups have still to read (the last look)

    # -- setup ------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The services' clock."""
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def service_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_") or k == "AFTERSALES_HOME"}
        assert self.sinks is not None
        env = {
            **keep,
            "AFTERSALES_TOPIC_PREFIX": self.prefix,
            "AFTERSALES_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "AFTERSALES_DATABASE_URL": self.settings.database_url,
            "AFTERSALES_DATABASE_ROLE_PASSWORDS": "", "AFTERSALES_DEV_SINGLE_DATABASE_ROLE": "true",
            "AFTERSALES_CLOCK_OFFSET_SECONDS": str(self.offset),
            "AFTERSALES_API_TOKENS": f"{self.agent_token}=agent:agent-faults",
            "AFTERSALES_SMS_GATEWAY_URL": self.sinks.sms_url,
            "AFTERSALES_SMS_API_KEY": self.sms_key,
            "AFTERSALES_SMTP_HOST": "127.0.0.1",
            "AFTERSALES_SMTP_PORT": str(self.sinks.mail.port),
            # A sender killed mid-send is noticed after 30 s instead of 2 min. Shorter, and sends
            # slowed down by two loaded cores outlive their lease and go out twice (same key).
            "AFTERSALES_SENDING_LEASE_SECONDS": "30",
            "AFTERSALES_DISPATCH_TICK_SECONDS": "0.2",
            "AFTERSALES_RATE_LIMIT_SMS_PER_SECOND": "500",
            "AFTERSALES_RATE_LIMIT_EMAIL_PER_SECOND": "200",
            "AFTERSALES_OUTBOX_IDLE_POLL_SECONDS": "0.2",
            "AFTERSALES_TIMER_TICK_SECONDS": "0.2",
            "AFTERSALES_RETRY_MAX_BACKOFF_SECONDS": "2",
            "AFTERSALES_DB_POOL_MAX": "8",
            "AFTERSALES_COMPLAINTS_DOCUMENTS_DIR": str(self.dir / "documents"),
            "PYTHONUNBUFFERED": "1",
        }
        for name, seconds in CRITICAL_SLA.items():
            env[f"AFTERSALES_COMPLAINTS_SLA__CRITICAL__{name.upper()}"] = f"PT{seconds}S"
        return env

    async def prepare(self) -> Traffic:
        # What each service consumes, read once now: the working tree may change under a long
        # run, and a module imported later could be a newer one than the services run.
        from services import load
        from services.followup.domain import followup_id

        self.subscribed = {service: {s.topic for s in load(service).subscriptions} for service in SERVICES}
        self.first_visit_of = lambda item: followup_id("first_visit", item.extra["repair_order_id"])
        conn = await asyncpg.connect(self.infra.settings.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')  # a generated name
        finally:
            await conn.close()
        await ensure_topics(self.settings, ALL_TOPICS)
        self.sinks = Sinks(self.dir / "peers", self.sms_key).start()
        self.offset = (offset_to(self.options.start) if self.options.start is not None
                       else daytime_offset(datetime.now(UTC)))
        traffic = build_traffic(self.options.events, self.seed, self.now(),
                                self.options.events / self.options.publish_rate())
        env = self.service_env()
        for service in SERVICES:
            for index in range(self.options.replicas):
                self.replicas.append(Replica(service, index, env, self.dir / f"{service}-{index}.log"))
        return traffic

    async def start_services(self, timeout: float = 180) -> None:
        for replica in self.replicas:
            replica.start()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            pending = list(self.replicas)
            while pending:
                for replica in list(pending):
                    if not replica.alive():
                        raise RuntimeError(f"{replica.name} exited while starting:\n{replica.tail()}")
                    if await replica.ready(client):
                        pending.remove(replica)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready within {timeout:.0f}s: {', '.join(r.name for r in pending)}")
                await asyncio.sleep(0.3)

    # -- the fault window ----------------------------------------------------------------------
    def _at(self) -> float:
        return time.monotonic() - self._window_start

    def _fault(self, what: str, target: str, detail: str = "") -> None:
        fault = Fault(round(self._at(), 1), what, target, detail)
        self.stats.faults.append(fault)
        console.print(f"[dim]{fault.at:7.1f}s[/dim] {what:<15} {target:<12} {detail}")

    async def publish(self, traffic: Traffic) -> None:
        """Publish the stream at the planned rate, like upstream producers: retry what fails
        (a broker outage) with a new producer; a retried batch may land twice, and the checks
        read what is on the topics, so a re-sent copy is accounted for."""
        rate = self.options.publish_rate()
        chunk = max(1, int(rate / 5))
        producer: AIOKafkaProducer | None = None
        started = time.monotonic()
        i = 0
        items = traffic.items
        task = self.progress.add_task("publishing upstream records", total=len(items))
        while i < len(items):
            wait = started + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            batch = items[i:i + chunk]
            try:
                if producer is None:
                    producer = AIOKafkaProducer(**self.settings.kafka_client_options(), acks="all",  # type: ignore[arg-type]
                                                enable_idempotence=True, linger_ms=5, request_timeout_ms=15_000)
                    await producer.start()
                futures = [await producer.send(self.settings.topic(it.topic), value=it.value, key=it.key,
                                               headers=it.headers) for it in batch]
                await asyncio.gather(*futures)
            except Exception as exc:  # noqa: BLE001 - any failure: new producer, same batch again
                self.stats.publish_retries += 1
                console.print(f"[dim]{self._at():7.1f}s publish retry ({type(exc).__name__})[/dim]")
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(producer.stop(), 10)
                producer = None
                await asyncio.sleep(1)
                continue
            i += len(batch)
            self.stats.published = i
            self.progress.update(task, completed=i)
            self._published_orders = batch[-1].order
        if producer is not None:
            await producer.stop()
        self.stats.publish_seconds = round(time.monotonic() - started, 1)

    async def agent(self, traffic: Traffic, deadline: float) -> None:
        """The customer-service agent: calls each worked pickup's customer once its first visit
        is scheduled and records a critical complaint, over HTTP on any followup replica. A
        follow-up not scheduled yet (404), or a replica down, is tried again later, less and less
        often (up to every 5 s), so the agent does not add load while intake catches up."""
        todo = {self.first_visit_of(i): i for i in traffic.worked}
        wait = dict.fromkeys(todo, 1.0)
        next_try = dict.fromkeys(todo, 0.0)
        body = {"outcome": "reached", "satisfaction": 2, "notes": "fault-suite call", "complaint": AGENT_COMPLAINT}
        headers = {"Authorization": f"Bearer {self.agent_token}"}
        followups = [r for r in self.replicas if r.service == "followup"]
        agent_rng = random.Random(self.seed + 1)  # the fault schedule keeps self.rng to itself
        async with httpx.AsyncClient(headers=headers, timeout=10) as client:
            while todo and time.monotonic() < deadline:
                for fid, item in list(todo.items()):
                    if item.order > self._published_orders or next_try[fid] > time.monotonic():
                        continue
                    replica = agent_rng.choice(followups)
                    try:
                        response = await client.post(f"http://127.0.0.1:{replica.port}/v1/followups/{fid}/attempts",
                                                     json=body)
                        status = response.status_code
                    except httpx.HTTPError as exc:
                        status = 0
                        self._count_error(type(exc).__name__)
                    if status == 201:
                        self.stats.agent_done += 1
                        del todo[fid]
                    elif status == 409:  # recorded by an earlier try whose answer was lost
                        self.stats.agent_conflicts += 1
                        del todo[fid]
                    else:
                        if status and status != 404:  # 404: not scheduled yet
                            self._count_error(f"HTTP {status}")
                        wait[fid] = min(wait[fid] * 2, 5.0)
                        next_try[fid] = time.monotonic() + wait[fid]
                await asyncio.sleep(0.25)
        for fid in todo:
            self.stats.incidents.append(f"the agent could not record the call for follow-up {fid}")

    def _count_error(self, kind: str) -> None:
        self.stats.agent_errors[kind] = self.stats.agent_errors.get(kind, 0) + 1

    async def chaos(self, window: float) -> None:
        """Every service SIGKILLed `kills` times at random moments and restarted, the kills
        spread over its replicas (each goes to a replica killed least so far, at random among
        them, so with two replicas and two kills both are hit); the broker killed once and
        Postgres crash-stopped once, one after the other."""
        plans = []
        for service in SERVICES:
            moments = sorted(self.rng.uniform(0.03, 0.97) * window for _ in range(self.options.kills))
            plans.extend(self._kill_later(service, at) for at in moments)
        await asyncio.gather(*plans, self._infra_faults(window))

    async def _kill_later(self, service: str, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self._at()))
        while not self._stopping:
            replica = next_victim([r for r in self.replicas if r.service == service], self._kills, self.rng)
            if replica is not None:
                break
            await asyncio.sleep(0.2)  # the replica to hit is down already: kill it once it is back
        else:
            return
        self._kills[replica.name] += 1
        pid = replica.kill()
        down = self.rng.uniform(0.2, 2.5)
        self._fault("SIGKILL", replica.name, f"pid {pid}, restarted after {down:.1f}s")
        await asyncio.sleep(down)
        replica.start()

    async def _infra_faults(self, window: float) -> None:
        await asyncio.sleep(max(0.0, self.rng.uniform(0.2, 0.35) * window - self._at()))
        down = self.rng.uniform(3, 8)
        self._fault("Kafka SIGKILL", "broker", f"down for {down:.1f}s, then started")
        outage = await asyncio.to_thread(self.infra.restart_kafka, down)
        self._fault("Kafka back", "broker", f"outage {outage:.1f}s")
        await asyncio.sleep(max(5.0, self.rng.uniform(0.6, 0.75) * window - self._at()))
        down = self.rng.uniform(2, 6)
        self._fault("Postgres crash", "cluster", f"stop -m immediate, down for {down:.1f}s")
        outage = await asyncio.to_thread(self.infra.restart_postgres, down)
        self._fault("Postgres back", "cluster", f"outage {outage:.1f}s")

    async def watchdog(self) -> None:
        """A service that exits without being killed is a finding; it is restarted so the run
        goes on."""
        while not self._stopping:
            for replica in self.replicas:
                if replica.process is not None and not replica.alive() and not replica.expect_exit:
                    code = replica.process.returncode
                    self.stats.incidents.append(
                        f"{replica.name} exited by itself with {code} at {self._at():.0f}s; log:\n{replica.tail(15)}")
                    self._fault("exited", replica.name, f"code {code}; restarted")
                    replica.start()
            await asyncio.sleep(0.5)

    # -- quiet --------------------------------------------------------------------------------
    async def wait_quiet(self, timeout: float) -> None:
        started = time.monotonic()
        calm = 0
        last_ends: dict[str, int] | None = None
        problem = "never looked"
        shown, shown_at = problem, 0.0
        most = 0  # the largest lag seen: the bar's total, the records read since then its progress
        task = self.progress.add_task("consumers catching up", total=None)
        while time.monotonic() - started < timeout:
            try:
                problem, ends = await self._busy()
            except Exception as exc:  # noqa: BLE001 - the broker or database coming back
                problem, ends = f"{type(exc).__name__}: {exc}", None
            most = max(most, self._behind)
            self.progress.update(task, total=most or None, completed=most - self._behind)
            if problem != shown and time.monotonic() - shown_at > 10:
                console.print(f"[dim]{self._at():7.1f}s waiting: {problem or 'offsets still moving'}[/dim]",
                              soft_wrap=True)
                shown, shown_at = problem, time.monotonic()
            if problem is None and ends == last_ends:
                calm += 1
                if calm >= 2:
                    self.stats.quiet_after = round(time.monotonic() - self._faults_done, 1)
                    return
            else:
                calm = 0
            last_ends = ends
            await asyncio.sleep(2)
        self.stats.quiet_problem = f"not quiet after {timeout:.0f}s: {problem}"
        console.print(f"[red]{self.stats.quiet_problem}[/red]")

    async def _busy(self) -> tuple[str | None, dict[str, int]]:
        ends, lags = await self.lags()
        behind = {g: n for g, n in lags.items() if n}
        self._behind = sum(behind.values())
        if behind:
            return f"consumers behind: {behind}", ends
        db = await self.db_figures()
        for what in ("outbox_pending", "timers_soon"):
            busy = {s: n for s, n in db[what].items() if n}
            if busy:
                return f"{what}: {busy}", ends
        if db["notifications_open"]:
            return f"{db['notifications_open']} notifications not finished", ends
        return None, ends

    async def lags(self) -> tuple[dict[str, int], dict[str, int]]:
        """End offsets per topic, and each service's consumer group lag over its topics."""
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), group_id=None,  # type: ignore[arg-type]
                                    enable_auto_commit=False)
        admin = make_admin(self.settings)
        await consumer.start()
        await admin.start()
        try:
            tps = []
            for topic in ALL_TOPICS:
                physical = self.settings.topic(topic)
                tps += [TopicPartition(physical, p) for p in await partitions_of(consumer, physical)]
            ends = await consumer.end_offsets(tps)
            per_topic: dict[str, int] = defaultdict(int)
            for tp, end in ends.items():
                per_topic[tp.topic] += end
            lags = {}
            for service in SERVICES:
                topics = {self.settings.topic(t) for t in self.subscribed[service]}
                committed = await admin.list_consumer_group_offsets(f"{self.prefix}{service}")
                lags[service] = sum(max(0, end - (committed[tp].offset if tp in committed else 0))
                                    for tp, end in ends.items() if tp.topic in topics)
            return dict(per_topic), lags
        finally:
            await admin.close()
            await stop_consumer(consumer)

    async def db_figures(self) -> dict[str, Any]:
        from services import load

        conn = await asyncpg.connect(self.settings.database_url)
        soon = self.now() + QUIET_HORIZON
        now = self.now()
        try:
            out: dict[str, Any] = {"outbox_pending": {}, "timers_soon": {}, "timers_due": {}, "timers_parked": {}}
            for schema in SCHEMAS:
                out["outbox_pending"][schema] = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.outbox WHERE failed_at IS NULL")
                deadlines = load(schema).deadlines
                out["timers_soon"][schema] = await due_work(conn, schema, deadlines, soon)
                out["timers_due"][schema] = await due_work(conn, schema, deadlines, now)
                out["timers_parked"][schema] = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.timers WHERE error IS NOT NULL")
            out["notifications_open"] = await conn.fetchval(
                """SELECT count(*) FROM notifier.notifications
                    WHERE status IN ('sending', 'awaiting_contact') OR (status = 'pending' AND due_at <= $1)""", soon)
            out["notifications_by_status"] = dict(await conn.fetch(
                "SELECT status, count(*) FROM notifier.notifications GROUP BY status"))
            out["followups_by_kind"] = dict(await conn.fetch("SELECT kind, count(*) FROM followup.followups GROUP BY kind"))
            out["cases"] = await conn.fetchval("SELECT count(*) FROM complaints.cases")
            out["visits"] = await conn.fetchval("SELECT count(*) FROM intake.visits")
            return out
        finally:
            await conn.close()

    # -- observe ----------------------------------------------------------------------------------
    async def observe(self) -> Observation:
        checked_at = self.now()
        _, lags = await self.lags()
        db = await self.db_figures()
        upstream: list[Rec] = []
        for topic in UPSTREAM:
            upstream += await read_topic(self.settings, topic)
        events: dict[str, list[Ev]] = {}
        broken = 0
        for topic in CANONICAL:
            parsed, bad = parse(await read_topic(self.settings, topic))
            events[topic] = parsed
            broken += bad
        assert self.sinks is not None
        store = self.sinks.store
        return Observation(
            upstream=upstream, events=events, broken=broken,
            sms=[asdict(s) for s in list(store.sms)], sms_attempts=list(store.sms_attempts),
            mails=[{"message_id": m.message_id, "rcpt_to": m.rcpt_to, "subject": m.subject} for m in list(store.mails)],
            db=db, lags={f"{self.prefix}{s}": n for s, n in lags.items()}, checked_at=checked_at,
        )

    # -- teardown ------------------------------------------------------------------------------------
    async def stop_services(self) -> None:
        self._stopping = True
        results = await asyncio.gather(*(asyncio.to_thread(r.terminate) for r in self.replicas))
        self.stats.shutdown_codes = {r.name: code for r, code in zip(self.replicas, results, strict=True)}

    async def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            await delete_topics(self.settings, [self.settings.topic(t) for t in ALL_TOPICS])
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.infra.settings.database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await conn.close()

    # -- all of it ------------------------------------------------------------------------------------
    async def run(self) -> Report:
        began = time.monotonic()
        o = self.options
        console.rule(f"[bold]fault run {self.run_id}: {o.events:,} events, {o.replicas} replica(s) per service, "
                     f"{o.kills} SIGKILLs per service, seed {self.seed}")
        self.dir.mkdir(parents=True, exist_ok=True)
        quiet_clients = _client_logs_to(self.dir / "runner.log")
        try:
            traffic = await self.prepare()
            console.print(f"services' clock offset {self.offset / 3600:.1f} h; logs and peers under {self.dir}")
            await self.start_services()
            window = traffic.publish_seconds * 1.2 + 15
            console.print(f"{len(self.replicas)} service processes ready in {time.monotonic() - began:.0f}s; "
                          f"publishing {len(traffic.items):,} records at {o.publish_rate():.0f}/s; "
                          f"fault window {window:.0f}s")
            self._window_start = time.monotonic()
            watchdog = asyncio.ensure_future(self.watchdog())
            agent = asyncio.ensure_future(self.agent(traffic, time.monotonic() + window + o.quiet_timeout))
            await asyncio.gather(self.publish(traffic), self.chaos(window))
            console.print(f"[dim]{self._at():7.1f}s[/dim] faults done; {self.stats.published:,} records published in "
                          f"{self.stats.publish_seconds}s; waiting for the system to be quiet")
            self._faults_done = quiet_deadline = time.monotonic()
            quiet_deadline += o.quiet_timeout
            await agent
            await self.wait_quiet(max(30.0, quiet_deadline - time.monotonic()))
            self._stopping = True
            await watchdog
            console.print(f"[dim]{self._at():7.1f}s[/dim] quiet after {self.stats.quiet_after}s; reading the topics, "
                          "databases and message sinks")
            observation = await self.observe()
        finally:
            await self.stop_services()
            if self.sinks is not None:
                self.sinks.stop()
            quiet_clients()
        expectation = Expectation(
            manifest={i.digest: i for i in traffic.items},
            worked={self.first_visit_of(i): i.extra["repair_order_id"] for i in traffic.worked},
            sla={"critical": CRITICAL_SLA},
            incidents=self.stats.incidents + ([self.stats.quiet_problem] if self.stats.quiet_problem else []),
            shutdown_codes=self.stats.shutdown_codes,
        )
        invariants = check(observation, expectation)
        report = Report(o, self.run_id, self.seed, invariants, self.stats, dict(sorted(traffic.by_group.items())),
                        time.monotonic() - began, str(self.dir))
        (self.dir / "report.json").write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2,
                                                            default=str))
        if report.ok and not o.keep:
            await self.cleanup()
        return report


def _client_logs_to(path: Path) -> Any:
    """The runner's own Kafka clients complain loudly while the broker is down; that is the
    point of the run, so their logs go to a file. Returns the undo."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("aiokafka", "kafka", "httpx", "mail.log", "uvicorn")]
    saved = [(lg, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False

    def undo() -> None:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate
        handler.close()

    return undo


def daytime_offset(now: datetime, zone: str = "Asia/Shanghai") -> float:
    """Seconds to shift the services' clock so the run happens between 09:00 and 17:00 in China:
    customer SMS are never sent in quiet hours (21:00-08:00), and a run at night would only
    test the waiting."""
    local = now.astimezone(ZoneInfo(zone))
    if 9 <= local.hour < 17:
        return 0.0
    target = local.replace(hour=9, minute=30, second=0, microsecond=0)
    if local.hour >= 17:
        target += timedelta(days=1)
    return (target - local).total_seconds()


# ---------------------------------------------------------------------------------------
# Printing


def print_report(report: Report) -> None:
    """The faults injected, the traffic, and each invariant with its figures (plain lines, so a
    CI log keeps every word)."""
    s, o = report.stats, report.options
    out = console.print
    kills = Counter(f.target.split("#")[0] for f in s.faults if f.what == "SIGKILL")
    out(f"[bold]fault run {report.run_id}[/bold]: {o.events:,} events, {o.replicas} replica(s) per service, "
        f"seed {report.seed}, {report.seconds:.0f}s", soft_wrap=True)
    out(f"  SIGKILL + restart: {sum(kills.values())} ({', '.join(f'{k} {n}' for k, n in sorted(kills.items()))})",
        soft_wrap=True)
    for what in ("Kafka", "Postgres"):
        downs = [f for f in s.faults if f.what.startswith(what) and not f.what.endswith("back")]
        backs = [f for f in s.faults if f.what == f"{what} back"]
        for down, back in zip(downs, backs, strict=False):
            out(f"  {down.what} + restart: at {down.at:.0f}s, {back.detail}", soft_wrap=True)
    out(f"  services that exited by themselves: {sum(1 for f in s.faults if f.what == 'exited')}")
    out(f"  traffic: {', '.join(f'{g} {n:,}' for g, n in report.traffic.items())}", soft_wrap=True)
    out(f"  published {s.published:,} records in {s.publish_seconds}s ({s.publish_retries} producer retries); "
        f"agent calls {s.agent_done} (+{s.agent_conflicts} answered 409 after a lost reply; failed tries: "
        f"{dict(s.agent_errors) or 'none'}); quiet {s.quiet_after}s after the faults", soft_wrap=True)
    for inv in report.invariants:
        mark = "[green]PASS[/green]" if inv.ok else "[red]FAIL[/red]"
        out(f"{mark} {inv.name}\n       {inv.figures}", soft_wrap=True)
        for problem in _first(inv.problems):
            out(f"       [red]- {problem}[/red]", soft_wrap=True)
    verdict = "[green]all invariants hold[/green]" if report.ok else f"[red]{len(report.failed())} invariant(s) failed[/red]"
    out(f"{verdict}; report and logs: {report.logs}", soft_wrap=True)


def run(options: FaultOptions, infra: FaultInfra | None = None) -> Report:
    """One fault run. Starts and stops the private infra unless given one already up."""
    with contextlib.ExitStack() as stack:
        owned = infra if infra is not None else stack.enter_context(FaultInfra())
        fault_run = FaultRun(owned, options)
        fault_run.progress = stack.enter_context(bars())
        report = asyncio.run(fault_run.run())
    print_report(report)
    return report


__all__ = ["FaultInfra", "FaultOptions", "FaultRun", "Report", "build_traffic", "check", "print_report", "run"]
