"""`aftersales bench console`: the console's pages timed on the server with a realistic load.

A scratch namespace gets `customers` customers' stories written on the aftersales.* topics as the
services write them (registration, sale, pickups, receipts, follow-up calls, messages, some
complaint cases), `events` events in all. The console (its read model) and followup (the queue)
consume them as processes, then both are opened in this process on the same database with the
bench's fixed clock, and each page is requested through the console's ASGI app (server time,
no network): the desk (which asks followup for the queue), a customer's page, search (a phone's
last four digits, a plate fragment, a name, pinyin, a VIN fragment), beside the /health route
of the same app, the baseline of the same run. Target: p95 <= 300 ms per page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import shutil
import statistics
import string
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from aftersales.infra import console_key_pair
from aftersales.progress import QUIET, Tracker, bars
from services.console import users
from shared.clock import ManualClock
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE, NOTIFIER
from shared.kafka.clients import partitions_of
from shared.runtime import ServiceRuntime
from shared.validation import with_check_digit
from tools.sandbox import ROOT, Namespace, ServiceProcess, create_namespace, drop_namespace
from tools.simulate import CST, GIVEN, MODELS, REGIONS, SURNAMES

console = Console()
BENCH_NOW = datetime(2026, 11, 20, 10, 0, tzinfo=CST)  # a Friday morning in Shanghai: calling hours
TARGET_P95_MS = 300.0
PASSWORD = "bench console password"
CASES = 200  # complaint cases raised from customer pages before the handlers' pages are timed
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
PROVINCES = "沪粤京苏浙川鄂湘"


class Story:
    """Canonical events for a scratch log, in the shapes the catalog requires."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _env(self, event_type: str, key: str, at: datetime, data: dict[str, Any], source: str) -> dict[str, Any]:
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return {"event_id": event_id, "event_type": event_type, "schema_version": 1, "occurred_at": at.isoformat(),
                "source": source, "correlation_id": event_id, "causation_id": None, "key": key, "data": data}

    def customer(self, n: int) -> dict[str, Any]:
        rng = self.rng
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        return {"customer_id": f"C{n:08d}", "name": name, "phone": f"+861{rng.choice('358')}{n:09d}",
                "address": f"{rng.choice(REGIONS)} district, road {rng.randrange(1, 999)}",
                "region": rng.choice(REGIONS)}

    def events(self, n: int, extra_pickups: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """One customer's story: (contract topic, envelope)."""
        rng = self.rng
        c = self.customer(n)
        cid = c["customer_id"]
        vin = with_check_digit("LJ1" + "".join(rng.choice(_VIN_CHARS) for _ in range(14)))
        plate = f"{rng.choice(PROVINCES)}{rng.choice(string.ascii_uppercase)}{rng.randrange(10000, 99999)}"
        sold = BENCH_NOW - timedelta(days=rng.uniform(200, 900))
        model = rng.choice(MODELS)
        dealer = f"D{rng.randrange(1, 60):03d}"
        yield INTAKE, self._env("CustomerRegistered", cid, sold, {
            **c, "locale": "zh-CN", "timezone": "Asia/Shanghai", "registered_from": "VehicleSold"}, "intake")
        yield INTAKE, self._env("VehicleSold", vin, sold, {
            "sale_id": f"S-{n}", "vin": vin, "model": model, "sold_at": sold.isoformat(), "dealer_id": dealer,
            "region": c["region"], "warranty_months": 36, "warranty_km": 100_000, "customer": c, "parts": [],
            "plate": plate}, "intake")
        recent = n % 50 == 0  # one customer in fifty was in the workshop this week: a call is due now
        visits = 2 + extra_pickups
        for v in range(visits):
            last = v == visits - 1
            at = (BENCH_NOW - timedelta(days=rng.uniform(3.2, 6))) if (last and recent) else \
                sold + timedelta(days=60 + 90 * v + rng.uniform(0, 30))
            ro = f"RO-{dealer}-{n:08d}-{v}"
            yield INTAKE, self._env("VehiclePickedUp", vin, at, {
                "repair_order_id": ro, "vin": vin, "dealer_id": dealer, "picked_up_at": at.isoformat(),
                "service_type": rng.choice(("maintenance", "repair", "warranty")),
                "items": [{"code": "M-OIL", "description": "机油机滤更换"}], "mileage_km": 5_000 + 7_000 * v,
                "advisor_id": f"SA-{rng.randrange(1, 40):02d}", "customer": c, "plate": plate, "model": model,
                "region": c["region"]}, "intake")
            if last and recent:
                continue  # followup schedules this one's call itself
            yield INTAKE, self._env("ReceiptRecorded", vin, at + timedelta(days=1), {
                "receipt_id": f"RC-{n}-{v}", "repair_order_id": ro, "vin": vin,
                "returned_at": (at + timedelta(days=1)).isoformat(), "rating": rng.choice((4, 5, 5, 3)),
                "comments": "服务不错", "customer_id": cid, "dealer_id": dealer}, "intake")
            if v == 0:
                yield from self._call_history(cid, vin, ro, at, dealer, c["region"])
        if n % 10 == 3:
            yield from self._complaint(cid, vin, sold + timedelta(days=120))

    def _call_history(self, cid: str, vin: str, ro: str, at: datetime, dealer: str, region: str
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
        rng = self.rng
        fid = f"F-{ro}"
        called = at + timedelta(days=4)
        yield FOLLOWUP, self._env("FollowUpScheduled", cid, at, {
            "followup_id": fid, "kind": "first_visit", "customer_id": cid, "vin": vin,
            "due_from": (at + timedelta(days=3)).isoformat(), "due_by": (at + timedelta(days=7)).isoformat(),
            "priority": 50, "reason_event_id": str(uuid.uuid4()), "dealer_id": dealer, "region": region}, "followup")
        score = rng.choice((5, 5, 4, 3))
        yield FOLLOWUP, self._env("FollowUpAttemptRecorded", cid, called, {
            "followup_id": fid, "kind": "first_visit", "customer_id": cid, "attempt_no": 1, "agent_id": "agent-01",
            "outcome": "reached", "attempted_at": called.isoformat(), "satisfaction": score,
            "talking_points": "车辆使用正常", "requests": None}, "followup")
        yield FOLLOWUP, self._env("FollowUpCompleted", cid, called, {
            "followup_id": fid, "kind": "first_visit", "customer_id": cid, "vin": vin, "outcome": "reached",
            "completed_at": called.isoformat(), "attempts": 1, "satisfaction": score, "agent_id": "agent-01"},
            "followup")
        yield NOTIFIER, self._env("NotificationSent", cid, at + timedelta(hours=1), {
            "notification_id": f"N-{ro}", "rule": "first_visit_notice", "channel": "sms", "recipient": cid,
            "recipient_kind": "customer", "template": "first_visit_notice", "locale": "zh-CN",
            "source_event_id": str(uuid.uuid4()), "source_event_type": "FollowUpScheduled", "attempts": 1,
            "at": (at + timedelta(hours=1)).isoformat()}, "notifier")

    def _complaint(self, cid: str, vin: str, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        kid = f"K-{cid}"
        yield COMPLAINTS, self._env("ComplaintOpened", kid, at, {
            "complaint_id": kid, "complaint_ref": f"CRM-{cid}", "customer_id": cid, "at": at.isoformat(),
            "actor": "crm", "vin": vin, "channel": "hotline", "category": "repair_quality", "severity": "medium",
            "department": "after_sales", "description": "维修后仍有异响", "filed_at": at.isoformat(),
            "ack_due_at": (at + timedelta(hours=4)).isoformat(),
            "resolve_due_at": (at + timedelta(days=2)).isoformat()}, "complaints")
        yield COMPLAINTS, self._env("ComplaintAcknowledged", kid, at + timedelta(hours=1), {
            "complaint_id": kid, "customer_id": cid, "at": (at + timedelta(hours=1)).isoformat(),
            "actor": "handler-01"}, "complaints")


def plan(customers: int, events: int) -> tuple[int, int]:
    """(extra pickups every customer gets, customers that get one more) to reach `events`."""
    base = 9.2  # a story without extra pickups: about nine events
    per_extra = 2  # a pickup and its receipt
    missing = max(0.0, events - base * customers)
    extra_each = int(missing // (per_extra * customers))
    remainder = int((missing - extra_each * per_extra * customers) // per_extra)
    return extra_each, min(remainder, customers)


async def publish(ns: Namespace, customers: int, events: int, seed: int,
                  progress: Tracker = QUIET) -> tuple[int, dict[str, Any]]:
    """Write the stories; return how many events and a sample of what to search for."""
    task = progress.add_task("writing the stories", total=events)
    story = Story(seed)
    extra_each, one_more = plan(customers, events)
    producer = AIOKafkaProducer(**ns.settings.kafka_client_options(), acks=1, linger_ms=20,  # type: ignore[arg-type]
                                max_batch_size=512 * 1024)
    await producer.start()
    written = 0
    sample: dict[str, list[str]] = {"customers": [], "phones": [], "plates": [], "names": [], "vins": []}
    try:
        pending = []
        for n in range(customers):
            for topic, env in story.events(n, extra_each + (1 if n < one_more else 0)):
                pending.append(await producer.send(
                    ns.topic(topic), orjson.dumps(env), key=env["key"].encode(),
                    headers=[("event_type", env["event_type"].encode()), ("event_id", env["event_id"].encode())]))
                written += 1
                if env["event_type"] == "VehicleSold" and n % max(1, customers // 400) == 0:
                    d = env["data"]
                    sample["customers"].append(d["customer"]["customer_id"])
                    sample["phones"].append(d["customer"]["phone"][-4:])
                    sample["plates"].append(d["plate"][2:6].lower())
                    sample["names"].append(d["customer"]["name"][:2])
                    sample["vins"].append(d["vin"][-8:-2])
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                progress.update(task, completed=written)
        await asyncio.gather(*pending)
        await producer.flush()
        progress.update(task, total=written, completed=written)  # whole stories: the plan's count, near `events`
    finally:
        await producer.stop()
    return written, sample


async def _lag(ns: Namespace, admin: AIOKafkaAdminClient, reader: Any, group: str, topics: list[str]) -> int:
    committed = await admin.list_consumer_group_offsets(group)
    tps = [TopicPartition(ns.topic(t), p) for t in topics for p in await partitions_of(reader, ns.topic(t))]
    ends = await reader.end_offsets(tps)
    return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
               for tp, end in ends.items())


async def wait_loaded(ns: Namespace, timeout: float, progress: Tracker = QUIET) -> float:
    """Seconds until the console and followup have consumed everything (twice in a row)."""
    task = progress.add_task("console and followup consuming", total=None)
    most = 0  # the largest lag seen: the bar's total
    from aiokafka import AIOKafkaConsumer

    admin = AIOKafkaAdminClient(**ns.settings.kafka_client_options())  # type: ignore[arg-type]
    reader = AIOKafkaConsumer(**ns.settings.kafka_client_options(), group_id=None)  # type: ignore[arg-type]
    await admin.start()
    await reader.start()
    began = time.monotonic()
    quiet = 0
    try:
        while quiet < 2:
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"the console and followup did not catch up within {timeout:.0f} s")
            lag = await _lag(ns, admin, reader, f"{ns.prefix}console", [INTAKE, FOLLOWUP, COMPLAINTS, NOTIFIER])
            lag += await _lag(ns, admin, reader, f"{ns.prefix}followup", [INTAKE, COMPLAINTS])
            most = max(most, lag)
            progress.update(task, total=most, completed=most - lag)
            quiet = quiet + 1 if lag == 0 else 0
            await asyncio.sleep(1.0)
    finally:
        await reader.stop()
        await admin.close()
    return time.monotonic() - began


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _time(call: Callable[[], Awaitable[httpx.Response]], n: int) -> list[float]:
    timings = []
    for _ in range(n):
        began = time.perf_counter()
        response = await call()
        timings.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")
    return timings


class _Local(httpx.AsyncBaseTransport):
    """The console's way to followup in this process."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.transport = httpx.ASGITransport(app=runtime.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)


async def measure(customers: int = 100_000, events: int = 1_000_000, requests: int = 200, seed: int = 17,
                  keep: bool = False, load_timeout: float = 3600, progress: Tracker | None = None) -> dict[str, Any]:
    """`progress` (default: bars on stderr when it is a terminal) counts the events written and consumed."""
    with contextlib.nullcontext(progress) if progress is not None else bars() as tracker:
        return await _measure(customers, events, requests, seed, keep, load_timeout, tracker)


async def _measure(customers: int, events: int, requests: int, seed: int, keep: bool, load_timeout: float,
                   progress: Tracker) -> dict[str, Any]:
    from services import load

    logging.getLogger("httpx").setLevel(logging.WARNING)
    private, public = console_key_pair()
    ns = await create_namespace("b", console_signing_key=private, console_public_key=public, db_pool_max=8)
    log_dir = ROOT / ".local" / "logs" / "bench-console"
    running: list[ServiceProcess] = []
    try:
        offset = (BENCH_NOW - datetime.now(CST)).total_seconds()
        env = {"AFTERSALES_CONSOLE_SIGNING_KEY": private, "AFTERSALES_CONSOLE_PUBLIC_KEY": public,
               "AFTERSALES_CLOCK_OFFSET_SECONDS": str(offset)}
        for name in ("followup", "console"):
            running.append(ServiceProcess(ns, name, log_dir, **env).start())
        for process in running:
            process.wait_ready(120)
        began = time.monotonic()
        written, sample = await publish(ns, customers, events, seed, progress)
        published_s = time.monotonic() - began
        await wait_loaded(ns, load_timeout, progress)
        loaded_s = time.monotonic() - began
        for process in running:
            process.terminate()
        running.clear()

        clock = ManualClock(BENCH_NOW)
        followup = ServiceRuntime(load("followup"), ns.settings, clock, replica="bench-followup")
        await followup.start(consume=False, relay=False, timers=False, workers=False)
        # The complaint handlers', inspectors' and supervisors' pages call these two as well.
        documents = Path(tempfile.mkdtemp(prefix="bench-complaints-"))
        from services.complaints.config import ComplaintRules

        complaints = ServiceRuntime(load("complaints"), ns.settings, clock, replica="bench-complaints",
                                    overrides={"rules": ComplaintRules(documents_dir=documents)})
        await complaints.start(consume=False, relay=False, timers=False, workers=False)
        quality = ServiceRuntime(load("quality"), ns.settings, clock, replica="bench-quality")
        await quality.start(consume=False, relay=False, timers=False, workers=False)
        console_rt = ServiceRuntime(load("console"), ns.settings, clock, replica="bench-console",
                                    overrides={"transports": {"followup": _Local(followup),
                                                              "complaints": _Local(complaints),
                                                              "quality": _Local(quality)}})
        await console_rt.start(consume=False, relay=False, timers=False, workers=False)
        try:
            assert console_rt.pool is not None
            async with console_rt.pool.acquire() as conn:
                counts = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))  # our own table names
                          for t in ("customers", "vehicles", "visits", "calls", "complaints", "notifications")}
                consumed = int(await conn.fetchval("SELECT count(*) FROM inbox"))
            assert followup.pool is not None
            async with followup.pool.acquire() as conn:
                callable_now = int(await conn.fetchval(
                    "SELECT count(*) FROM followups WHERE status IN ('scheduled', 'due') AND due_from <= $1",
                    BENCH_NOW))
            await users.add(ns.settings, "bench.agent", "压测专员", "agent", PASSWORD)
            await users.add(ns.settings, "bench.supervisor", "压测主管", "supervisor", PASSWORD)
            timings = await _pages(console_rt, sample, requests, seed)
        finally:
            await console_rt.stop()
            await quality.stop()
            await complaints.stop()
            await followup.stop()
            shutil.rmtree(documents, ignore_errors=True)
        return {"customers": counts["customers"], "events_written": written, "events_consumed": consumed,
                "rows": counts, "calls_due": callable_now, "publish_seconds": published_s, "load_seconds": loaded_s,
                "pages": timings, "requests": requests, "target_p95_ms": TARGET_P95_MS}
    finally:
        for process in running:
            process.terminate()
        if not keep:
            await drop_namespace(ns)
        else:
            console.print(f"kept: database {ns.database}, topics {ns.prefix}*")


async def _signed_in(client: httpx.AsyncClient, username: str) -> str:
    """Sign in as a browser would; the session's CSRF token."""
    page = await client.get("/sign-in")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = await client.post("/sign-in", data={"username": username, "password": PASSWORD,
                                                 "csrf_token": token, "next": "/desk"})
    if signed.status_code != 303 or "error" in signed.headers.get("location", ""):
        raise RuntimeError(f"{username} could not sign in: {signed.status_code} {signed.headers}")
    return (await client.get("/search")).text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def _pages(runtime: ServiceRuntime, sample: dict[str, list[str]], n: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client, \
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as supervisor:
        csrf = await _signed_in(client, "bench.agent")
        await _signed_in(supervisor, "bench.supervisor")
        # Complaint cases in the complaints service, raised from the customer page as an agent would.
        for cid in sample["customers"][:CASES]:
            raised = await client.post(f"/customers/{cid}/complaints", data={
                "csrf_token": csrf, "description": "维修后刹车仍有异响，要求复查", "category": "repair_quality"})
            if "error=" in raised.headers.get("location", ""):
                raise RuntimeError(f"a bench complaint was refused: {raised.headers['location']}")
        listed = await client.get("/cases")
        case_ids = re.findall(r'href="/cases/([0-9a-f-]{36})"', listed.text) or ["none"]
        cases = iter(case_ids * (n // len(case_ids) + 1))
        queries = [q for kind in ("phones", "plates", "names", "vins") for q in sample[kind]]
        rng.shuffle(queries)
        pinyin_queries = ["wang", "zhangw", "liuy", "chen"]
        searches = iter((queries + pinyin_queries) * (n // max(1, len(queries)) + 1))
        people = iter(sample["customers"] * (n // max(1, len(sample["customers"])) + 1))
        for warm in ("/health", "/desk", f"/customers/{sample['customers'][0]}", "/search?q=1234"):
            await client.get(warm)
        for name, path in (("targets by region", "/supervisor/regions"), ("SLA cases behind a week",
                                                                          "/supervisor/sla-cases")):
            answer = await supervisor.get(path)
            if answer.status_code != 200:  # a refused page would time the error page
                raise RuntimeError(f"{name} answered {answer.status_code}: {answer.text[:300]}")
        pages = {
            "baseline: /health": await _time(lambda: client.get("/health"), n),
            "desk (queue from followup)": await _time(lambda: client.get("/desk"), n),
            "customer page": await _time(lambda: client.get(f"/customers/{next(people)}"), n),
            "search": await _time(lambda: client.get("/search", params={"q": next(searches)}), n),
            "complaint worklist (from complaints)": await _time(lambda: client.get("/cases"), n),
            "complaint case page": await _time(lambda: client.get(f"/cases/{next(cases)}"), n),
            "quality alerts": await _time(lambda: supervisor.get("/quality/alerts"), n),
            "parts accuracy, 8 weeks": await _time(lambda: supervisor.get("/quality/parts-accuracy"), n),
            "supervisor targets and workload": await _time(lambda: supervisor.get("/supervisor/dashboard"), n),
            "weekly report as XLSX": await _time(lambda: supervisor.get(
                "/supervisor/reports/weekly", params={"format": "xlsx"}), n),
            "monthly report as XLSX": await _time(lambda: supervisor.get(
                "/supervisor/reports/monthly", params={"format": "xlsx"}), n),
            "targets by region": await _time(lambda: supervisor.get("/supervisor/regions"), n),
            "SLA cases behind a week": await _time(lambda: supervisor.get("/supervisor/sla-cases"), n),
            "scored calls behind a week": await _time(lambda: supervisor.get(
                "/supervisor/calls", params={"scored": 1}), n),
            "shipments behind a week": await _time(lambda: supervisor.get("/supervisor/parts"), n),
        }
    return {name: {"p50": statistics.median(t), "p95": percentile(t, 0.95), "max": max(t)} for name, t in pages.items()}


def run(customers: int = 100_000, events: int = 1_000_000, requests: int = 200, seed: int = 17,
        keep: bool = False) -> dict[str, Any]:
    console.print(f"loading {customers:,} customers' stories ({events:,} events) into a scratch namespace …")
    figures = asyncio.run(measure(customers, events, requests, seed, keep))
    console.print(f"written {figures['events_written']:,} events in {figures['publish_seconds']:.0f} s; the console "
                  f"consumed {figures['events_consumed']:,} (with followup's own) and both caught up after "
                  f"{figures['load_seconds']:.0f} s; read model: "
                  + ", ".join(f"{k} {v:,}" for k, v in figures["rows"].items()))
    table = Table(title=f"console pages, server time over {figures['requests']} requests each (ms)")
    for column in ("page", "p50", "p95", "max", "p95 / baseline p95", f"p95 <= {TARGET_P95_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    baseline = figures["pages"]["baseline: /health"]["p95"]
    for name, t in figures["pages"].items():
        table.add_row(name, f"{t['p50']:.1f}", f"{t['p95']:.1f}", f"{t['max']:.1f}", f"{t['p95'] / baseline:.1f}",
                      "—" if name.startswith("baseline") else ("yes" if t["p95"] <= TARGET_P95_MS else "[red]no[/red]"))
    console.print(table)
    return figures

