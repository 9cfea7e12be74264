"""`aftersales demo`: a month in the life of a dealer network, through the live services.

The five services run as usual, except that their clock reads an offset from a file the demo
moves (`FileClock`). The demo walks the month day by day, twice a day:

  1. the upstream systems publish what happened in that half day (sales history first; then
     pickups, receipts, CRM complaints, defect reports with one bad controller batch, parts
     shipments and discrepancies, a campaign announced on day 3 that starts on day 24);
  2. the clock moves to the end of the half day and the demo waits until the system is settled
     (every consumer group at the end of its topics, outboxes drained, due timers fired, due
     notifications sent);
  3. people do their work through the APIs: agents call the follow-up queue, complaint handlers
     acknowledge, assign, pend and resolve cases (some too late, so the ladder escalates), the
     quality department acknowledges and closes alerts.

At the end the clock is back on wall time, a KPI table is printed from the services' own APIs,
and the services keep running to be looked at. The local stack is a sandbox: each run starts
it empty (topics truncated, service tables dropped), so the month it shows is its own.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from rich.console import Console
from rich.progress import TextColumn
from rich.table import Table

from aftersales import dlq, infra
from aftersales.infra import (
    any_service_answers,
    run_file,
    services_running,
    start_services,
    stop_services,
)
from aftersales.progress import bars
from services.followup.config import FollowUpRules
from services.followup.feedback import NOT_OPENING
from shared.clock import FileClock
from shared.db_roles import ensure_schemas, reader_database_url
from shared.events.catalog import ALL_TOPICS, PRODUCER_TOPICS
from shared.kafka.clients import make_admin, partitions_of, stop_consumer
from shared.settings import CONSOLE, PROCESSES, Settings, load_settings, project_home
from shared.timers import due_work
from tools.simulate import CST, Customer, Fleet, Vehicle

console = Console()
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the progress
CLOCK_FILE = "demo-clock.json"
# The complaints the progress line counts: filed at intake, raised on calls, product issues from calls.
COMPLAINT_TALLIES = ("ComplaintFiled", "complaints from calls", "product issues from calls")
# The working day in four stretches; after each, the upstream systems report and people work.
WINDOWS = tuple((timedelta(hours=h0, minutes=m0), timedelta(hours=h1, minutes=m1))
                for h0, m0, h1, m1 in ((8, 0, 10, 30), (10, 30, 13, 0), (13, 0, 15, 30), (15, 30, 18, 0)))


# --------------------------------------------------------------------------------------
# The services, started with the demo's clock


def clock_file(settings: Settings) -> Path:
    return run_file(settings, CLOCK_FILE)


async def reset_stack(settings: Settings) -> None:
    """Empty the local stack for a fresh month: every contract topic truncated to its end
    (consumer groups simply find nothing to read) and the services' schemas dropped (their
    migrations recreate them on start). Only ever called with the services stopped."""
    admin = make_admin(settings)
    reader = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)  # type: ignore[arg-type]
    await admin.start()
    await reader.start()
    try:
        tps = [TopicPartition(settings.topic(t), p) for t in ALL_TOPICS
               for p in await partitions_of(reader, settings.topic(t))]
        ends = {tp: end for tp, end in (await reader.end_offsets(tps)).items() if end > 0}
        if ends:
            await admin.delete_records({tp: RecordsToDelete(end) for tp, end in ends.items()})
    finally:
        await stop_consumer(reader)
        await admin.close()
    conn = await asyncpg.connect(settings.database_url)
    try:
        for service in PROCESSES:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{service}" CASCADE')  # our own names, not input
        await ensure_schemas(conn, settings)  # empty again, each its service's role's (shared/db_roles.py)
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------
# The world: what the upstream systems report, seeded and reproducible


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; the means here are small)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


COMPLAINTS = (
    ("repair_quality", "车辆维修后异响仍未消除 (the noise is still there after the repair)"),
    ("service_attitude", "服务顾问态度冷淡 (the service advisor was dismissive)"),
    ("delay", "交车时间比承诺晚了两天 (the vehicle was handed back two days late)"),
    ("parts_supply", "等待配件超过一周 (waiting more than a week for a part)"),
    ("price", "保养收费与报价不符 (the bill did not match the quote)"),
    ("product_quality", "电机控制器故障, 车辆无法启动 (controller fault, the vehicle will not start)"),
)


CONSULTATION_TOPICS = ("EV-100 试驾 (a test drive)", "以旧换新 (trade-in terms)", "保养套餐 (service packages)",
                       "充电桩安装 (home charger installation)")


@dataclass
class Plan:
    """The month: sizes and rates. The defaults make a 20-dealer network of 5,000 vehicles."""

    days: int = 30
    dealers: int = 20
    vehicles: int = 5000
    pickups_per_day: float = 35.0
    complaints_per_day: float = 1.5
    shipments_per_day: float = 12.0
    discrepancy_per_line: float = 0.012
    # One dealer's warehouse ships badly: its lines go wrong this often (the dealer scorecards flag
    # it at 95 % confidence; the others, at the network's 1.2 %, are within chance of 98 %).
    poor_shipping_dealer: str = "D002"
    poor_shipping_discrepancy_per_line: float = 0.15
    receipt_share: float = 0.65
    bad_batch_rate: float = 0.15      # reports per unit-month of the bad batch (~100x its category's): found within the month
    calls_per_agent_session: int = 14  # per agent, four sessions a day
    sales_per_day: float = 4.0        # deliveries in the month: each is called 3-7 days later, then again
    consultations_per_day: float = 3.0  # CRM consultations (prospects and customers): each is called
    unusable_phone_share: float = 0.1  # deliveries whose phone libphonenumber rejects (+86 144…): filed, flagged
    inbound_call_chance: float = 0.25  # per agent and session: a customer phones in (consultation or request)
    seed: int = field(default_factory=lambda: int(time.time()))
    # The day after the month's last: the month is the `days` before it. Default: today in
    # China (a person watching the demo sees "the last 30 days"); tests fix it, so a seed
    # gives the same month on any day.
    until: date | None = None

    def first_day(self) -> datetime:
        until = self.until or datetime.now(CST).date()
        return datetime(until.year, until.month, until.day, tzinfo=CST) - timedelta(days=self.days)

    def middle(self) -> datetime:
        """The middle of the demo's days: the month it mostly fell in is the month it reports
        (the scorecards, the work summary), which is not always the month of its last day."""
        return self.first_day() + timedelta(days=self.days) / 2


class World:
    """Generates the upstream traffic of the month, half a day at a time, in occurred order."""

    def __init__(self, plan: Plan, start: datetime, baseline: dict[str, Any]) -> None:
        self.plan, self.start = plan, start
        self.fleet = Fleet(seed=plan.seed, dealers=plan.dealers)
        self.rng = self.fleet.rng
        self.rates: dict[str, float] = baseline["categories"]
        self.default_rate: float = baseline["default"]
        self.unit_month_days: float = baseline["unit_month_days"]
        self.vehicles: list[Vehicle] = []
        self.bad_month = (start - timedelta(days=150)).replace(day=1)
        self.bad_batch = f"B{self.bad_month:%y%m}-3"
        self.bad_vehicles: list[Vehicle] = []
        self._later: list[tuple[datetime, int, dict[str, Any]]] = []  # receipts due to come back
        self._serial = 0
        self.campaign_day, self.campaign_start_day = 3, 24

    # -- before the month: the vehicles sold in the nine months before it -------------
    def history(self) -> list[dict[str, Any]]:
        sales = []
        for _ in range(self.plan.vehicles):
            sold_at = self.start - timedelta(days=self.rng.uniform(20, 270))
            sold_at = sold_at.replace(hour=self.rng.randrange(9, 18))
            vehicle = self.fleet.vehicle(sold_at)
            controller = next(p for p in vehicle.parts if p["category"] == "controller")
            if controller["batch"] == self.bad_batch:
                controller["supplier_id"] = "SUP-C"
                self.bad_vehicles.append(vehicle)
            self.vehicles.append(vehicle)
            sales.append(self.fleet.sale(vehicle))
        sales.sort(key=lambda e: e["occurred_at"])
        return sales

    def bad_records(self) -> list[tuple[str, bytes]]:
        """Three broken upstream records, to show dead-lettering with reasons."""
        pickup = self.fleet.pickup(self.rng.choice(self.vehicles), self.start + timedelta(hours=9))
        return [
            ("upstream.dms", b"{not json"),
            ("upstream.dms", orjson.dumps({**pickup, "schema_version": 99})),
            ("upstream.dms", orjson.dumps({**pickup, "data": {**pickup["data"], "vin": "TOO-SHORT"}})),
        ]

    # -- one half day ------------------------------------------------------------------
    def window(self, day: int, begin: datetime, end: datetime) -> list[dict[str, Any]]:
        share = (end - begin) / timedelta(hours=10)  # business hours 08:00-18:00
        events: list[dict[str, Any]] = []

        def at() -> datetime:
            return begin + (end - begin) * self.rng.random()

        for _ in range(poisson(self.rng, self.plan.pickups_per_day * share)):
            vehicle = self.rng.choice(self.vehicles)
            picked_up_at = at()
            service_type = self.rng.choices(("maintenance", "repair", "warranty", "accident"), (60, 22, 15, 3))[0]
            pickup = self.fleet.pickup(vehicle, picked_up_at, service_type=service_type,
                                       mileage_km=self._mileage(vehicle, picked_up_at))
            events.append(pickup)
            if self.rng.random() < self.plan.receipt_share:
                self._later_event(picked_up_at + timedelta(days=self.rng.uniform(0.1, 2.5)),
                                  self.fleet.receipt(pickup, picked_up_at))

        for _ in range(poisson(self.rng, self.plan.sales_per_day * share)):
            sold_at = at()
            vehicle = self.fleet.vehicle(sold_at)
            if self.rng.random() < self.plan.unusable_phone_share:  # upstream data is imperfect; the sale is real
                vehicle.customer.phone = "+86144" + "".join(self.rng.choice("0123456789") for _ in range(8))
            events.append(self.fleet.sale(vehicle))
            self.vehicles.append(vehicle)

        for _ in range(poisson(self.rng, self.plan.consultations_per_day * share)):
            prospect = self.rng.random() < 0.5
            customer = self.fleet.customer() if prospect else self.rng.choice(self.vehicles).customer
            events.append(self.fleet.consultation(customer, at(), self.rng.choice(CONSULTATION_TOPICS),
                                                  by_phone_only=prospect))

        for _ in range(poisson(self.rng, self.plan.complaints_per_day * share)):
            vehicle = self.rng.choice(self.vehicles)
            category, text = self.rng.choice(COMPLAINTS)
            part = "controller" if category == "product_quality" else None
            events.append(self.fleet.complaint(
                vehicle.customer, at(), text, vin=vehicle.vin, category=category, part_category=part,
                channel=self.rng.choice(("hotline", "hotline", "dealer", "web")),
                by_phone_only=self.rng.random() < 0.2))

        # defects at the baseline rate of each category, plus the bad controller batch
        for category in sorted({p["category"] for p in self.vehicles[0].parts}):
            rate = self.rates.get(category, self.default_rate)
            expected = rate * len(self.vehicles) * share / self.unit_month_days
            for _ in range(poisson(self.rng, expected)):
                events.append(self.fleet.defect(self.rng.choice(self.vehicles), category, at(),
                                                failure_mode=self.rng.choice(("no_start", "noise", "leak", "fault_code")),
                                                mileage_km=self.rng.randrange(500, 40_000)))
        expected = self.plan.bad_batch_rate * len(self.bad_vehicles) * share / self.unit_month_days
        for _ in range(poisson(self.rng, expected)):
            events.append(self.fleet.defect(self.rng.choice(self.bad_vehicles), "controller", at(),
                                            failure_mode="no_start", mileage_km=self.rng.randrange(500, 20_000)))

        for _ in range(poisson(self.rng, self.plan.shipments_per_day * share)):
            shipped_at = at()
            shipment = self.fleet.shipment(self.rng.choice(self.fleet.dealers), shipped_at,
                                           lines=self.rng.randrange(2, 8))
            events.append(shipment)
            miss = (self.plan.poor_shipping_discrepancy_per_line
                    if shipment["data"]["dealer_id"] == self.plan.poor_shipping_dealer else self.plan.discrepancy_per_line)
            for line in shipment["data"]["lines"]:
                if self.rng.random() < miss:
                    kind = self.rng.choice(("wrong_part", "short", "damaged", "late"))
                    self._later_event(shipped_at + timedelta(days=self.rng.uniform(1, 3)),
                                      self.fleet.discrepancy(shipment, line["line_no"], kind, shipped_at))

        if day == self.campaign_day and begin.hour == 8:
            starts = (self.start + timedelta(days=self.campaign_start_day)).replace(hour=9)
            events.append(self.fleet.campaign(
                "free_inspection_week", "免费检测周 Free inspection week", starts, 7, ["east"], at(),
                models=["Cargo-3T"]))

        while self._later and self._later[0][0] < end:
            when, _, env = heapq.heappop(self._later)
            events.append(self._dated(env, when))
        return sorted(events, key=lambda e: e["occurred_at"])

    def _later_event(self, when: datetime, env: dict[str, Any]) -> None:
        self._serial += 1
        heapq.heappush(self._later, (when, self._serial, env))

    @staticmethod
    def _dated(env: dict[str, Any], when: datetime) -> dict[str, Any]:
        data = dict(env["data"])
        for name in ("returned_at", "reported_at"):
            if name in data:
                data[name] = when.isoformat()
        return {**env, "occurred_at": when.isoformat(), "data": data}

    def _mileage(self, vehicle: Vehicle, at: datetime) -> int:
        days = max(1.0, (at - vehicle.sold_at).total_seconds() / 86400)
        return int(days * self.rng.uniform(40, 160))


# --------------------------------------------------------------------------------------
# The people, through the APIs


# Everything the demo counts: the upstream traffic it publishes and what its people do. The
# tally starts every one at zero, so a month in which no call raised a complaint reports 0.
UPSTREAM_TYPES: tuple[str, ...] = (
    "VehicleSold", "VehiclePickedUp", "ReceiptReturned", "ComplaintFiled", "PartDefectReported", "PartShipped",
    "PartShipmentDiscrepancy", "CampaignAnnounced", "CustomerUpdated", "ConsultationRecorded",
)
OFFICE_WORK: tuple[str, ...] = (
    "calls", "reached", "conflicts", "confirmed satisfied", "confirmed not satisfied", "complaints from calls",
    "product issues from calls", "complaints taken on", "complaints resolved", "alerts acknowledged", "alerts closed",
    "deliveries in the month", "deliveries with an unusable phone", "contacts corrected", "inbound calls taken",
)
# the dissatisfaction loop: requests written on calls, feedback items answered by their owners (or the
# supervisor), and the score-1 calls with no complaint raised that the item files as a complaint itself
OFFICE_WORK += ("requests on calls", "feedback items answered", "serious items filed as complaints")
# rectification measures: the supervisor answers the most frequent complaint category with one
OFFICE_WORK += ("measures recorded", "measures verified")
FEEDBACK_RULES = FollowUpRules()  # the threshold and the serious score the follow-up service applies


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=lambda: Counter({key: 0 for key in UPSTREAM_TYPES + OFFICE_WORK}))

    def add(self, key: str, n: int = 1) -> None:
        if key not in self.counts:
            raise KeyError(f"the demo does not count {key!r}; add it to UPSTREAM_TYPES or OFFICE_WORK")
        self.counts[key] += n

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def __getitem__(self, key: str) -> int:
        return self.counts[key]


class Office:
    """Agents, complaint handlers and quality engineers doing their day's work over HTTP."""

    def __init__(self, settings: Settings, plan: Plan, rng: random.Random, tally: Tally) -> None:
        self.settings, self.plan, self.rng, self.tally = settings, plan, rng, tally
        tokens = settings.parsed_api_tokens()
        by_role: dict[str, list[str]] = {}
        for token, (role, _subject) in sorted(tokens.items(), key=lambda kv: kv[1]):
            by_role.setdefault(role, []).append(token)
        self.agents = by_role.get("agent", [])
        self.supervisor = by_role["supervisor"][0]
        self.quality = by_role["quality"][0]
        self.ops = by_role["ops"][0]
        self.http = httpx.AsyncClient(timeout=30)
        self.plans: dict[str, datetime] = {}  # complaint id -> when the handler resolves it
        self.late: dict[str, datetime] = {}  # complaint id -> when someone finally picks it up
        self.solutions: dict[str, datetime] = {}  # feedback item id -> when its owner finds the solution
        self.corrected: set[str] = set()  # customers whose phone an agent has corrected
        self.measure: dict[str, Any] | None = None  # the month's rectification measure, once recorded

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.port_for(service)}{path}"

    async def call(self, method: str, service: str, path: str, token: str, body: Any = None,
                   params: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        response = await self.http.request(method, self.url(service, path), json=body, params=params,
                                           headers={"Authorization": f"Bearer {token}"})
        if response.status_code not in ok:
            if response.status_code == 409:  # someone else's claim, a state that moved on: a real office sees these
                self.tally.add("conflicts")
                return None
            raise RuntimeError(f"{method} {service}{path} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    async def every(self, service: str, path: str, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a list, page by page (the services' cursor Pages)."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.call("GET", service, path, token,
                                   params={**params, "limit": 200, **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    async def close(self) -> None:
        await self.http.aclose()

    # -- return-visit agents ------------------------------------------------------------
    async def agents_session(self, now: datetime) -> None:
        await asyncio.gather(*(self._agent(token, now) for token in self.agents))

    async def _agent(self, token: str, now: datetime) -> None:
        """Take the queue's top items one by one; another agent's claim is skipped."""
        capacity = self.plan.calls_per_agent_session
        queue = await self.call("GET", "followup", "/v1/queue", token,
                                params={"limit": min(200, capacity * len(self.agents))})  # a page holds 200 at most
        made = 0
        for item in queue["items"]:
            if made >= capacity:
                break
            if item["claimed_by"] is not None:
                continue
            if (item.get("contact_flags") or {}).get("phone"):
                # the number on file is not one: the agent finds the right one (the dealer, the
                # customer calling back) and corrects the file; the call is made once it applies
                if item["customer_id"] not in self.corrected:
                    self.corrected.add(item["customer_id"])
                    await self.call("POST", "intake", f"/v1/customers/{item['customer_id']}/contact", token,
                                    {"phone": "+86139" + "".join(self.rng.choice("0123456789") for _ in range(8)),
                                     "reason": "客户回电告知 (the customer called back)"}, ok=(202,))
                    self.tally.add("contacts corrected")
                continue
            if await self.call("POST", "followup", f"/v1/followups/{item['followup_id']}/claim", token) is None:
                continue
            await self.call("POST", "followup", f"/v1/followups/{item['followup_id']}/attempts", token,
                            self._call_outcome(item, now))
            self.tally.add("calls")
            made += 1
        await self._feedback_items(token, now)

    async def _feedback_items(self, token: str, now: datetime) -> None:
        """The agent's open feedback items: most get a solution within a day or two, a few lie
        until the supervisor is asked (after 2 days) and the supervisor answers those."""
        mine = await self.call("GET", "followup", "/v1/feedback-items", token, params={"state": "open", "limit": 200})
        escalated = await self.call("GET", "followup", "/v1/feedback-items", self.supervisor,
                                    params={"state": "escalated", "limit": 200})
        for item, who in [(i, token) for i in mine["items"]] + [(i, self.supervisor) for i in escalated["items"]]:
            when = self.solutions.setdefault(item["item_id"], now + timedelta(
                days=self.rng.uniform(2.5, 4) if self.rng.random() < 0.15 else self.rng.uniform(0.1, 1.5)))
            if when > now and item["state"] == "open":
                continue
            tell_by = "call" if self.rng.random() < 0.2 else "sms"
            if await self.call("POST", "followup", f"/v1/feedback-items/{item['item_id']}/solution", who,
                               {"solution": "经销商已安排免费复检，并为您预约了下次保养 (a free re-check is booked)",
                                "tell_by": tell_by}) is not None:
                self.tally.add("feedback items answered")

    def _call_outcome(self, item: dict[str, Any], now: datetime) -> dict[str, Any]:
        rng = self.rng
        outcome = rng.choices(("reached", "unreachable", "call_back_later", "wrong_number"), (78, 14, 6, 2))[0]
        if outcome == "call_back_later":
            return {"outcome": outcome, "call_back_at": (now + timedelta(hours=rng.choice((2, 20, 24)))).isoformat()}
        if outcome != "reached":
            return {"outcome": outcome}
        self.tally.add("reached")
        if item["kind"] in ("complaint_confirmation", "feedback_confirmation"):
            satisfied = rng.random() < 0.88
            self.tally.add("confirmed satisfied" if satisfied else "confirmed not satisfied")
            return {"outcome": "reached", "satisfied": satisfied, "satisfaction": rng.choice((4, 5)) if satisfied else 2,
                    "notes": "confirmation call"}
        score = rng.choices((5, 4, 3, 2, 1), (70, 26, 2.5, 1, 0.5))[0]
        body: dict[str, Any] = {"outcome": "reached", "satisfaction": score,
                                "categories": ["praise"] if score == 5 else (["price"] if score <= 3 else []),
                                "talking_points": "service quality, waiting time, staff"}
        if item["kind"] in ("first_visit", "second_visit") and score <= 2 and rng.random() < 0.6:
            body["complaint"] = {"category": "repair_quality", "description": "客户回访时投诉维修质量 (complaint on the call)"}
            self.tally.add("complaints from calls")
        elif item["kind"] == "first_visit" and rng.random() < 0.02:
            body["product_issue"] = {"part_category": "front_shock_absorber",
                                     "description": "客户反映减震器异响 (shock absorber noise)"}
            self.tally.add("product issues from calls")
        if item["kind"] in ("first_visit", "second_visit") and rng.random() < 0.04:  # a request written on the call
            body["requests"] = rng.choice(("希望下次保养提供代步车 (a loaner car next time)",
                                           "请寄回上次维修的发票 (please post the invoice)",
                                           "询问延保价格 (the price of an extended warranty)"))
            self.tally.add("requests on calls")
        if score <= FEEDBACK_RULES.feedback_serious_score and item["kind"] not in NOT_OPENING \
                and "complaint" not in body:
            self.tally.add("serious items filed as complaints")  # the feedback item files the case
        elif score <= FEEDBACK_RULES.feedback_score_threshold or "requests" in body:  # a feedback item opens
            body["feedback"] = {"category": rng.choice(("repair_quality", "price", "service_attitude", "parts_supply"))}
            if rng.random() < 0.4:  # answered there and then
                body["feedback"] |= {"answered_on_call": True, "answer": "已在电话中解答 (answered on the call)"}
        return body

    async def inbound_session(self, now: datetime, customers: list[Customer]) -> None:
        """Customers phone in: each agent may take a consultation or a request, on the register."""
        for token in self.agents:
            if self.rng.random() >= self.plan.inbound_call_chance:
                continue
            kind = self.rng.choice(("consultation", "request"))
            summary = ("咨询新车型和试驾 (asks about a new model)" if kind == "consultation"
                       else "希望预约周末保养 (a weekend slot)")
            await self.call("POST", "followup", "/v1/inbound-calls", token, {
                "customer_id": self.rng.choice(customers).customer_id, "kind": kind, "summary": summary,
                "received_at": now.isoformat()}, ok=(201,))
            self.tally.add("inbound calls taken")

    # -- complaint handlers --------------------------------------------------------------
    async def complaints_session(self, now: datetime, new_only: bool = False) -> None:
        token = self.supervisor
        opened = await self.every("complaints", "/v1/complaints", token, {"state": "opened"})
        for case in opened:
            cid = case["complaint_id"]
            if cid not in self.plans:  # first seen: how this case will go
                slow = self.rng.random() < 0.08
                days = self.rng.uniform(2.5, 5) if slow else self.rng.uniform(0.2, 1.6)
                self.plans[cid] = now + timedelta(days=days)
                if self.rng.random() < 0.06:  # left lying: the 4 h clock runs out and the ladder starts
                    self.late[cid] = now + timedelta(hours=self.rng.uniform(5, 30))
            if self.late.get(cid, now) > now:
                continue
            await self.call("POST", "complaints", f"/v1/complaints/{cid}/acknowledge", token, {})
            await self.call("POST", "complaints", f"/v1/complaints/{cid}/assign", token,
                            {"assignee": self.rng.choice(("cs-handler-01", "cs-handler-02", "cs-handler-03"))})
            self.tally.add("complaints taken on")
        if new_only:
            return
        for state in ("reopened", "assigned", "acknowledged", "pending_customer"):
            listed = await self.every("complaints", "/v1/complaints", token, {"state": state})
            for case in listed:
                cid = case["complaint_id"]
                due = self.plans.setdefault(cid, now + timedelta(days=self.rng.uniform(0.5, 2)))
                if state == "pending_customer":
                    await self.call("POST", "complaints", f"/v1/complaints/{cid}/resume", token, {})
                    continue
                if state == "reopened":
                    await self.call("POST", "complaints", f"/v1/complaints/{cid}/acknowledge", token, {})
                    self.plans[cid] = now + timedelta(days=self.rng.uniform(0.5, 2))
                    continue
                if due <= now:
                    await self.call("POST", "complaints", f"/v1/complaints/{cid}/resolve", token, {
                        "resolution": "检查并更换故障部件, 客户已取车 (inspected, faulty part replaced, vehicle returned)"})
                    self.tally.add("complaints resolved")
                elif self.rng.random() < 0.05:
                    await self.call("POST", "complaints", f"/v1/complaints/{cid}/pend", token,
                                    {"reason": "等待客户提供照片 (waiting for the customer's photos)"})

    # -- rectification measures -----------------------------------------------------------
    async def record_measure(self, since: datetime, now: datetime, due: datetime) -> None:
        """The supervisor answers the month's most frequent complaint category so far with a
        measure, owned by the after-sales supervisor (mailed on the due date)."""
        found = await self.call("GET", "complaints", "/v1/reports/categories", self.supervisor,
                                params={"from": since.isoformat(), "to": now.isoformat()})
        counts = Counter({c: n for c, n in found["counts"].items() if n})
        category = counts.most_common(1)[0][0] if counts else "repair_quality"
        self.measure = await self.call("POST", "complaints", "/v1/measures", self.supervisor, {
            "target_kind": "category", "category": category, "title": "完工质检与交车说明 (final check at handover)",
            "action": "每台车交车前由质检员试车签字, 服务顾问向客户说明维修内容 (a road test signed by the "
                      "inspector and the work explained to the customer at every handover)",
            "owner": "as-supervisor-01", "due_at": due.isoformat()})
        self.tally.add("measures recorded")

    async def verify_measure(self) -> None:
        """At the month's end a quality inspector checks it: effective only if the rate fell
        measurably (the service's exact test), else not effective yet."""
        if self.measure is None:
            return
        shown = await self.call("GET", "complaints", f"/v1/measures/{self.measure['measure_id']}", self.quality)
        change = shown["effect"]["change"]
        await self.call("POST", "complaints", f"/v1/measures/{self.measure['measure_id']}/verify", self.quality, {
            "verdict": "effective" if change == "decreased" else "not_effective",
            "note": f"抽查交车记录, 签字齐全; 投诉率变化: {change} ({shown['effect']['note']})"})
        self.tally.add("measures verified")

    # -- quality inspection ---------------------------------------------------------------
    async def quality_session(self, now: datetime) -> None:
        alerts = await self.call("GET", "quality", "/v1/alerts", self.quality, params={"state": "raised", "limit": 200})
        for alert in alerts["items"]:
            await self.call("POST", "quality", f"/v1/alerts/{alert['alert_id']}/acknowledge", self.quality,
                            {"note": "batch under investigation with the supplier"})
            self.tally.add("alerts acknowledged")
        alerts = await self.call("GET", "quality", "/v1/alerts", self.quality,
                                 params={"state": "acknowledged", "limit": 200})
        for alert in alerts["items"]:
            acknowledged = alert.get("acknowledged_at")
            if acknowledged and datetime.fromisoformat(acknowledged) < now - timedelta(days=3):
                await self.call("POST", "quality", f"/v1/alerts/{alert['alert_id']}/close", self.quality,
                                {"note": "batch quarantined at the warehouse; supplier 8D report requested"})
                self.tally.add("alerts closed")


# --------------------------------------------------------------------------------------
# Time and settling


class Stack:
    """The running system as the demo sees it: its clock, its topics, its backlog."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = clock_file(settings)
        self.offset = timedelta(0)
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self.reader: AIOKafkaConsumer | None = None
        self.db: asyncpg.Connection | None = None
        self.groups: dict[str, list[str]] = {}
        self.partitions: dict[str, list[TopicPartition]] = {}
        self.settling = 0.0  # seconds spent waiting for the services to finish their work

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set_clock(self, at: datetime) -> None:
        self.offset = at - datetime.now(UTC)
        FileClock.write(self.path, self.offset)

    async def start(self) -> None:
        from services import load

        options = self.settings.kafka_client_options()
        self.producer = AIOKafkaProducer(**options, enable_idempotence=True, acks="all", linger_ms=5)  # type: ignore[arg-type]
        await self.producer.start()
        self.admin = AIOKafkaAdminClient(**options)  # type: ignore[arg-type]
        await self.admin.start()
        self.reader = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)  # type: ignore[arg-type]
        await self.reader.start()
        self.db = await asyncpg.connect(reader_database_url(self.settings))  # it only reads
        for service in PROCESSES:
            definition = load(service)
            self.groups[f"{self.settings.topic_prefix}{service}"] = [
                self.settings.topic(s.topic) for s in definition.subscriptions]

    async def stop(self) -> None:
        if self.producer:
            await self.producer.stop()
        if self.admin:
            await self.admin.close()
        if self.reader:
            await stop_consumer(self.reader)
        if self.db:
            await self.db.close()

    async def publish(self, events: list[dict[str, Any]]) -> None:
        assert self.producer is not None
        for env in events:
            await self.producer.send(
                self.settings.topic(PRODUCER_TOPICS[env["source"]]), orjson.dumps(env), key=env["key"].encode(),
                headers=[("event_type", env["event_type"].encode()), ("event_id", env["event_id"].encode())])
        await self.producer.flush()

    async def publish_raw(self, records: list[tuple[str, bytes]]) -> None:
        assert self.producer is not None
        for topic, value in records:
            await self.producer.send(self.settings.topic(topic), value, key=b"demo-bad-record")
        await self.producer.flush()

    async def backlog(self) -> dict[str, int]:
        """What is still to be done: consumer lag per group, unpublished outbox rows, due
        timers not fired, due notifications not sent. All zero = settled."""
        from services import load

        assert self.admin is not None and self.reader is not None and self.db is not None
        work: dict[str, int] = {}
        for group, topics in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            if group not in self.partitions:
                self.partitions[group] = [TopicPartition(t, p) for t in topics
                                          for p in await partitions_of(self.reader, t)]
            tps = self.partitions[group]
            ends = await self.reader.end_offsets(tps)
            lag = sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                      for tp, end in ends.items())
            if lag:
                work[f"lag:{group}"] = lag
        now = self.now()
        for service in PROCESSES:
            outbox = await self.db.fetchval(
                f"SELECT count(*) FROM {service}.outbox WHERE failed_at IS NULL")
            timers = await due_work(self.db, service, load(service).deadlines, now)
            if outbox:
                work[f"outbox:{service}"] = outbox
            if timers:
                work[f"timers:{service}"] = timers
        sending = await self.db.fetchval(
            "SELECT count(*) FROM notifier.notifications WHERE status = 'sending' "
            "OR (status = 'pending' AND due_at <= $1)", now)
        if sending:
            work["notifications"] = sending
        return work

    async def settle(self, timeout: float = 120) -> dict[str, int]:
        """Wait until two looks in a row find nothing left to do."""
        began = time.monotonic()
        deadline = began + timeout
        quiet = 0
        left: dict[str, int] = {}
        while quiet < 2 and time.monotonic() < deadline:
            left = await self.backlog()
            quiet = 0 if left else quiet + 1
            await asyncio.sleep(0.1)
        self.settling += time.monotonic() - began
        return left


# --------------------------------------------------------------------------------------
# The run


async def run(plan: Plan | None = None, *, settings: Settings | None = None, env: dict[str, str] | None = None,
              bring_up: bool = True) -> dict[str, Any]:
    """The demo month. `settings`/`env` put it in another namespace (topic prefix, database,
    ports: the tests); by default it is the local stack `aftersales infra up` runs."""
    plan = plan or Plan()
    console.rule("[bold]Aftersales demo: one month of a dealer network")
    if bring_up:
        await asyncio.to_thread(infra.up)
    settings = settings or load_settings()
    home = project_home()

    start = plan.first_day()
    today = start + timedelta(days=plan.days)
    stack = Stack(settings)
    stack.set_clock(start + timedelta(hours=7))
    stop_services(settings)
    if any_service_answers(settings):
        raise SystemExit("some service ports answer, but not from services the demo started; "
                         "stop them (aftersales infra down) and run the demo again")
    console.print("starting from an empty local stack (topics truncated, service tables dropped)")
    await reset_stack(settings)
    start_services(settings, {**(env or os.environ), "AFTERSALES_CLOCK_FILE": str(stack.path),
                              "AFTERSALES_TIMER_TICK_SECONDS": "0.2", "AFTERSALES_DISPATCH_TICK_SECONDS": "0.2"})
    deadline = time.monotonic() + 120
    while not services_running(settings):
        if time.monotonic() > deadline:
            raise SystemExit("the services did not start; see .local/logs/services.log")
        await asyncio.sleep(0.5)
    console.print(f"five services and the console started, their clock at {start:%Y-%m-%d} "
                  "(logs: .local/logs/services.log)")
    sign_ins = await demo_accounts(settings)

    baseline = yaml.safe_load((home / "services" / "quality" / "baseline_rates.yaml").read_text())
    world = World(plan, start, baseline)
    tally = Tally()
    office = Office(settings, plan, random.Random(plan.seed + 1), tally)
    await stack.start()
    began = time.monotonic()
    measure_day, measure_gap = plan.days // 3, max(1, plan.days // 3)  # the month's rectification measure
    try:
        with bars(extra=(TextColumn("{task.fields[status]}"),)) as progress:
            history = world.history()
            task = progress.add_task(f"sales history ({len(history):,} vehicles)", total=plan.days, status="")
            await stack.publish(history)
            tally.add("VehicleSold", len(history))
            await stack.publish_raw(world.bad_records())
            await stack.settle(timeout=300)
            for day in range(plan.days):
                date = start + timedelta(days=day)
                progress.update(task, description=f"{date:%a %Y-%m-%d}")
                stack.set_clock(date + timedelta(hours=8, minutes=30))
                await stack.settle()
                await office.complaints_session(stack.now())  # what came in overnight
                for n, (begin, end) in enumerate(WINDOWS):
                    begin, end = date + begin, date + end
                    events = world.window(day, begin, end)
                    stack.set_clock(end + timedelta(minutes=5))
                    await stack.publish(events)
                    tally.update(e["event_type"] for e in events)
                    sales = [e for e in events if e["event_type"] == "VehicleSold"]
                    tally.add("deliveries in the month", len(sales))
                    tally.add("deliveries with an unusable phone",
                              sum(1 for e in sales if e["data"]["customer"]["phone"].startswith("+86144")))
                    await stack.settle()
                    await office.complaints_session(stack.now())
                    await office.agents_session(stack.now())
                    await office.inbound_session(stack.now(), [v.customer for v in world.vehicles])
                    if n == len(WINDOWS) - 1:
                        await office.quality_session(stack.now())
                        if day == measure_day:  # due a third of the month later, 09:00 that day
                            await office.record_measure(start, stack.now(),
                                                        start + timedelta(days=day + measure_gap, hours=9))
                        elif day == plan.days - 1:
                            await office.verify_measure()
                    await stack.settle()
                    await office.complaints_session(stack.now(), new_only=True)  # raised on the calls just made
                progress.update(task, advance=1, status=(
                    f"pickups {tally['VehiclePickedUp']:,}  calls {tally['calls']:,}  "
                    f"complaints {sum(tally[k] for k in COMPLAINT_TALLIES)}  "
                    f"defects {tally['PartDefectReported']}"))
            # The figures are read at the month's end (a fixed month, the tests', ends at its own end,
            # whatever today's date is); then the services go on at the real time.
            stack.set_clock(max(today, stack.now()))
            left = await stack.settle()
        elapsed = time.monotonic() - began
        console.print(f"the month took {elapsed:.0f} s ({stack.settling:.0f} s of it waiting for the services to "
                      f"settle)" + (f"; still busy: {left}" if left else ""))
        figures = await report(settings, office, tally, world, start, today)
        figures["measures"] = await measures_report(settings, office)
        figures["monthly_summary"] = await monthly_summary_report(settings, office, plan.middle())
        stack.set_clock(datetime.now(UTC))
        FileClock.write(stack.path, timedelta(0))
        print_sign_ins(settings, sign_ins)
        return figures | {"sign_ins": sign_ins}
    finally:
        await stack.stop()
        await office.close()


async def measures_report(settings: Settings, office: Office) -> dict[str, Any]:
    """The month's rectification measure with its effect, as the complaints service measures it."""
    measures = {"items": await office.every("complaints", "/v1/measures", office.ops, {})}
    for m in measures["items"]:
        e = m["effect"]
        console.print(f"  measure {m['title']} ({m['category']}, owner {m['owner']}, {m['status']}"
                      f"{', reminded' if m['reminded_at'] else ''}): {e['note']}; verified "
                      f"{(m['verification'] or {}).get('verdict', '-')}  "
                      f"http://127.0.0.1:{settings.port_for(CONSOLE)}/measures")
    return measures


async def monthly_summary_report(settings: Settings, office: Office, middle: datetime) -> dict[str, Any]:
    """The month's work summary as the console assembles it (services/console/report_pages.py):
    targets against results, complaint categories against the month before, measures."""
    from services.console.report_pages import MONTHLY, monthly_summary

    async def fetch(service: str, path: str, params: dict[str, Any], missing_ok: bool = False) -> Any:
        return await office.call("GET", service, path, office.ops, params=params)

    month = middle.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    found = await monthly_summary(fetch, month)
    console.print(f"monthly work summary {month}  http://127.0.0.1:{settings.port_for(CONSOLE)}"
                  f"/reports/monthly-summary?month={month}")
    for t in found["targets"]:
        verdict = "" if t["met"] is None else (" met" if t["met"] else " MISSED")
        console.print(f"  {MONTHLY[t['name']]}: {_pct(t['value'])} ({t['count']}/{t['out_of']})"
                      + (f", target {_pct(t['target'])}{verdict}" if t["target"] is not None else ""))
    console.print("  complaints by category: " + ", ".join(
        f"{c['category']} {c['count']} ({c['change']:+d} on the month before)" for c in found["categories"][:5]))
    for m in found["measures"] or []:
        console.print(f"  measure {m['action']}: {m['change']} (per 100 visits {m['before']} -> {m['after']})")
    return found


# The people of the demo office, as console accounts: the simulated agents' names are the ones
# their calls are recorded under, so a person signing in as agent-01 sees agent-01's calls.
DEMO_STAFF = (
    ("agent-01", "王芳", "agent"), ("agent-02", "李强", "agent"), ("handler-01", "陈静", "agent"),
    ("inspector-01", "赵磊", "quality"), ("supervisor-01", "刘洋", "supervisor"),
)


async def demo_accounts(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(user, name, role, password) of each demo account, with a new password every run."""
    from services.console import users

    made = []
    for username, name, role in DEMO_STAFF:
        password = f"demo-{secrets.token_urlsafe(9)}"
        await users.add(settings, username, name, role, password, replace=True)
        made.append((username, name, role, password))
    return made


def print_sign_ins(settings: Settings, sign_ins: list[tuple[str, str, str, str]]) -> None:
    table = Table(title=f"the console: http://127.0.0.1:{settings.port_for(CONSOLE)}/  (zh-CN; English at the top)",
                  show_header=True)
    for column in ("user", "name", "role", "password"):
        table.add_column(column)
    for username, name, role, password in sign_ins:
        table.add_row(username, name, role, password)
    console.print(table)
    console.print("[dim]new accounts: aftersales console users add <user> --name <name> --role agent|supervisor|"
                  "quality[/dim]")


REASONS = {"VehiclePickedUp": "pickups", "VehicleSold": "deliveries", "ConsultationRecorded": "consultations",
           "InboundCallRecorded": "inbound consultations"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


async def report(settings: Settings, office: Office, tally: Tally, world: World, start: datetime,
                 end: datetime) -> dict[str, Any]:
    """Print the month's traffic and KPIs as the services report them; return the figures."""
    window = {"from": start.isoformat(), "to": end.isoformat()}
    followup = await office.call("GET", "followup", "/v1/kpis", office.ops, params=window)
    complaints = await office.call("GET", "complaints", "/v1/kpis", office.ops)
    quality = await office.call("GET", "quality", "/v1/kpis", office.ops)
    concerns = await office.call("GET", "followup", "/v1/feedback-items/figures", office.ops, params=window)
    listed: list[dict[str, Any]] = []
    cursor = None
    while True:  # every alert, page by page
        page = await office.call("GET", "quality", "/v1/alerts", office.ops,
                                 params={"sort": "-raised_at", "limit": 200, **({"cursor": cursor} if cursor else {})})
        listed += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    alerts = {"total": len(listed), "alerts": listed}  # the report's own shape (figures["alerts"])
    db = await asyncpg.connect(reader_database_url(settings))  # read-only figures
    try:
        sent = dict(await db.fetch(
            "SELECT channel || ' ' || status, count(*) FROM notifier.notifications WHERE created_at >= $1 GROUP BY 1",
            start))
        notices = await db.fetchval(
            """SELECT count(*) FROM notifier.notifications WHERE rule = 'feedback_item_department_notice'
                 AND status = 'sent' AND created_at >= $1""", start)
    finally:
        await db.close()
    dead = Counter(letter.error for letter in await dlq.read(settings))

    traffic = Table(title="the month's traffic", show_header=True)
    traffic.add_column("upstream event")
    traffic.add_column("count", justify="right")
    for name in ("VehicleSold", "VehiclePickedUp", "ReceiptReturned", "ComplaintFiled", "PartDefectReported",
                 "PartShipped", "PartShipmentDiscrepancy", "CampaignAnnounced", "ConsultationRecorded"):
        traffic.add_row(name, f"{tally[name]:,}")
    traffic.add_row("  of the sales: deliveries in the month", f"{tally['deliveries in the month']:,}")
    traffic.add_row("  of those: an unusable phone (filed, flagged)", f"{tally['deliveries with an unusable phone']:,}")
    traffic.add_row("malformed records sent", "3")
    traffic.add_row("dead letters (aftersales dlq list)", ", ".join(f"{e} {n}" for e, n in sorted(dead.items())) or "0")
    console.print(traffic)

    def url(service: str) -> str:
        return f"http://127.0.0.1:{settings.port_for(service)}"

    trail_vin = next((a["vins"][0] for a in alerts["alerts"] if a.get("vins")), world.vehicles[0].vin)
    kpis = Table(title="KPIs of the month (from the services' APIs)", show_header=True)
    kpis.add_column("KPI")
    kpis.add_column("value", justify="right")
    kpis.add_column("target / note")
    kpis.add_row("warranty return-visit rate", _pct(followup["warranty_return_visit_rate"]),
                 f"100 %  ({followup['warranty_visited']} of {followup['warranty_pickups']} matured deliveries and pickups "
                 "under warranty reached)")
    kpis.add_row("satisfaction rate", _pct(followup["satisfaction_rate"]),
                 f"98 %  ({followup['satisfied_calls']} of {followup['scored_calls']} scored calls)")
    by_reason = followup.get("first_visits_by_reason", {})
    kpis.add_row("first calls by what they follow", f"{sum(r['scheduled'] for r in by_reason.values()):,}",
                 ", ".join(f"{REASONS.get(k, k)} {r['scheduled']} ({r['reached']} reached)"
                           for k, r in sorted(by_reason.items())))
    kpis.add_row("inbound calls taken", f"{sum(followup.get('inbound_calls', {}).values()):,}",
                 ", ".join(f"{k} {v}" for k, v in sorted(followup.get("inbound_calls", {}).items()))
                 + f"; contacts corrected on the phone: {tally['contacts corrected']}")
    kpis.add_row("calls made by the agents", f"{tally['calls']:,}",
                 ", ".join(f"{a}: {c['calls']}" for a, c in followup["calls_per_agent"].items()))
    kpis.add_row("follow-ups open / overdue", f"{sum(followup['open'].values())} / {sum(followup['overdue'].values())}",
                 ", ".join(f"{k} {v}" for k, v in followup["open"].items()))
    kpis.add_row("feedback items opened (score ≤ 3 or a request)", str(concerns["opened"]),
                 f"{concerns['low_score']} low scores, {concerns['with_request']} requests; "
                 f"{concerns['complaints']} serious → complaint cases; {concerns['still_open']} still open")
    kpis.add_row("feedback items answered in time", _pct(concerns["answered_in_time_rate"]),
                 f"{concerns['answered_in_time']} in time ({concerns['answered_on_call']} on the call), "
                 f"{concerns['answered_late']} late; {concerns['escalated']} escalated to the supervisor")
    kpis.add_row("departments notified in writing", f"{notices}",
                 f"e-mails sent of {concerns['departments_notified']} items: "
                 + ", ".join(f"{d} {n}" for d, n in concerns["by_department"].items()))
    kpis.add_row("complaints (cases)", str(complaints["cases"]),
                 f"open by level: {complaints['open_by_level']}")
    kpis.add_row("complaint SLA compliance", _pct(complaints["sla_compliance"]),
                 f"breaches ack {complaints['sla_breaches']['acknowledge']}, resolve "
                 f"{complaints['sla_breaches']['resolve']}; escalations {complaints['escalations']}")
    accuracy = quality["parts_shipment_accuracy"]
    kpis.add_row("parts-shipment accuracy", _pct(accuracy["accuracy"]),
                 f"98 %  ({accuracy['discrepant_lines']} discrepant of {accuracy['lines']} lines)")
    kpis.add_row("quality alerts", str(alerts["total"]),
                 "; ".join(f"{a['title']} ({a['state']})" for a in alerts["alerts"][:3])
                 + f"  [the bad batch: controller {world.bad_batch}]")
    kpis.add_row("notifications", str(sum(sent.values())),
                 ", ".join(f"{k}: {v}" for k, v in sorted(sent.items())))
    console.print(kpis)
    scorecards = await dealer_scorecards(settings, office, start + (end - start) / 2)
    console.print(
        "[bold]where to look[/bold]\n"
        f"  dealer scorecards: http://127.0.0.1:{settings.port_for(CONSOLE)}/dealers/scorecards?month="
        f"{scorecards['month']}  (supervisors)\n"
        f"  APIs (OpenAPI):    {url('intake')}/docs … {url('notifier')}/docs  (tokens: `aftersales tokens`)\n"
        f"  agents' queue:     {url('followup')}/v1/queue    complaints: {url('complaints')}/v1/complaints\n"
        f"  quality alerts:    {url('quality')}/v1/alerts\n"
        f"  metrics:           {url('intake')}/metrics … {url('notifier')}/metrics "
        "(Prometheus and Grafana: docker compose, or deploy/prometheus and deploy/grafana)\n"
        "  SMS and e-mail:    http://127.0.0.1:8025/\n"
        f"  a vehicle's trail: aftersales audit --vin {trail_vin}\n"
        "  dead letters:      aftersales dlq list\n"
        "  logs:              .local/logs/\n"
        "  stop everything:   aftersales infra down"
    )
    return {"traffic": dict(tally.counts), "followup": followup, "complaints": complaints, "quality": quality,
            "alerts": alerts, "notifications": sent, "scorecards": scorecards,
            "feedback_items": concerns | {"department_notices_sent": notices}, "dead_letters": dict(dead),
            "bad_batch": world.bad_batch}


async def dealer_scorecards(settings: Settings, office: Office, middle: datetime) -> dict[str, Any]:
    """The dealer scorecards of the month the demo mostly fell in, as the console computes them
    from its read model (services/console/scorecards.py), printed flagged dealers first; with the
    quality service's own count of that month's shipped lines per dealer beside them."""
    from rich import box

    from services.console import scorecard_store
    from services.console.config import ConsoleRules
    from services.console.i18n import DISPLAY_ZONE
    from services.console.scorecards import ScorecardRules, scorecards
    from shared.db import connect
    from shared.timeutil import month_span

    month = middle.astimezone(DISPLAY_ZONE).strftime("%Y-%m")
    start, end = month_span(month, DISPLAY_ZONE.key)
    r = ConsoleRules()
    rules = ScorecardRules(target=r.scorecard_target, confidence=r.scorecard_confidence,
                           repeat_days=r.repeat_repair_days)
    conn = await connect(settings, CONSOLE)
    try:
        cards = scorecards(month, DISPLAY_ZONE, rules=rules,
                           **await scorecard_store.month_inputs(conn, start, end, rules.repeat_days))
    finally:
        await conn.close()
    quality = (await office.call("GET", "quality", "/v1/reports/monthly", office.ops,
                                 params={"month": month}))["parts_accuracy"]

    short = {"return_visit_reach": "reach", "satisfaction": "satisfied", "parts_accuracy": "parts"}

    def tested(t: Any) -> str:
        return "-" if t is None else f"{t.rate * 100:.1f}%\n{t.successes}/{t.trials}"

    def flags(c: Any) -> str:
        return "\n".join(short[name] for name in c.flags) or "-"

    table = Table(title=f"dealer scorecards {month} (console; flagged when an exact binomial test rejects "
                        f"'>= {rules.target:.0%}' at {rules.confidence:.0%} confidence)", show_header=True,
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("dealer", "visits", "reach", "satisfied", "parts", "compl/100", "repeats", "flagged"):
        table.add_column(column, no_wrap=True)
    for c in cards[:12]:
        table.add_row(c.dealer_id, str(c.visits), tested(c.reach), tested(c.satisfaction), tested(c.parts),
                      "-" if c.complaint_rate is None else f"{c.complaint_rate:.1f}", str(c.repeat_repairs),
                      flags(c), style="bold red" if c.flags else None)
    console.print(table)
    console.print("  the flags' p-values: " + ("; ".join(
        f"{c.dealer_id} {short[name]} p={t.p_value:.4f}" for c in cards for name, t in c.tests().items()
        if t is not None and t.flagged) or "none") + "; the receipts' ratings are on the page")
    return {"month": month, "flagged": [c.dealer_id for c in cards if c.flags],
            "dealers": {c.dealer_id: {"visits": c.visits, "flags": c.flags, "complaints": c.complaints,
                                      "parts": None if c.parts is None else {"lines": c.parts.trials,
                                                                             "accurate": c.parts.successes,
                                                                             "p_value": c.parts.p_value}}
                        for c in cards},
            "quality_parts_by_dealer": {d["dealer_id"]: {"lines": d["lines"], "discrepant_lines": d["discrepant_lines"]}
                                        for d in quality["by_dealer"]}}
