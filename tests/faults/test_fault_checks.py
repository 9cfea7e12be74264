"""The fault suite's invariants, on a small world built by hand: a run where everything went
right passes, and each way of losing or doubling something fails the invariant that is meant
to catch it. No infrastructure needed."""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tools.faults import CRITICAL_SLA, Ev, Expectation, Invariant, Item, Observation, Rec, check
from tools.simulate import CST, Fleet

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
EVERY = {
    "every injected record is on its upstream topic",
    "the dead-letter topic holds exactly the injected bad records",
    "every valid upstream event has exactly one canonical event",
    "every valid pickup has exactly one first-visit FollowUpScheduled",
    "every recent delivery has exactly one first-visit FollowUpScheduled",
    "every overdue first visit escalated once",
    "every complaint opened once and escalated once per (case, round, level)",
    "every call an agent recorded completed its follow-up once and raised its complaint once",
    "every notification decided once, with one outcome",
    "every notification delivered once (SMS gateway and SMTP server)",
    "counts match stage by stage",
    "services recovered by themselves and left nothing behind",
}


class World:
    """A run as the checks see it: upstream records, canonical events, sink records, DB figures."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.upstream: list[Rec] = []
        self.events: dict[str, list[Ev]] = defaultdict(list)
        self.offsets: dict[str, int] = defaultdict(int)
        self.sms: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        self.worked: dict[str, str] = {}

    def inject(self, topic: str, env: dict[str, Any] | None, group: str, *, valid: bool = True,
               value: bytes | None = None, kind: str | None = None) -> Item:
        value = value if value is not None else orjson.dumps(env)
        key = env["key"].encode() if env else b"bad"
        item = Item(topic, key, value, valid, kind or (env or {})["event_type"], group,
                    env["event_id"] if valid and env else None, 0.5)
        self.items.append(item)
        self.upstream.append(Rec(topic, 0, len(self.upstream), key, value))
        return item

    def emit(self, topic: str, event_type: str, data: dict[str, Any], *, cause: str | None = None,
             event_id: str | None = None) -> Ev:
        ev = Ev(topic, 0, self.offsets[topic], event_id or str(uuid.uuid4()), event_type, "k", cause,
                NOW.isoformat(), data)
        self.offsets[topic] += 1
        self.events[topic].append(ev)
        return ev

    def notify(self, rule: str, source: Ev, channel: str, recipient: str) -> str:
        nid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}:{source.event_id}:{recipient}"))
        self.emit("aftersales.notifier", "NotificationSent", {
            "notification_id": nid, "rule": rule, "channel": channel, "recipient": recipient,
            "source_event_id": source.event_id, "reason": None})
        if channel == "sms":
            self.attempts.append({"idempotency_key": nid})
            self.sms.append({"idempotency_key": nid, "message_id": str(uuid.uuid4())})
        else:
            self.mails.append({"message_id": f"<{nid}@aftersales.example>", "rcpt_to": ["x@y"], "subject": "s"})
        return nid

    def observation(self, **db: Any) -> tuple[Observation, Expectation]:
        sent = [e for e in self.events["aftersales.notifier"] if e.event_type == "NotificationSent"]
        figures = {
            "followups_by_kind": {"first_visit": len({e.data["followup_id"] for e in self.events["aftersales.followup"]
                                                      if e.event_type == "FollowUpScheduled"})},
            "cases": len({e.data["complaint_ref"] for e in self.events["aftersales.complaints"]
                          if e.event_type == "ComplaintOpened"}),
            "notifications_by_status": {"sent": len({e.data["notification_id"] for e in sent})},
            "outbox_pending": {}, "timers_due": {}, "timers_parked": {},
        } | db
        obs = Observation(upstream=list(self.upstream), events=dict(self.events), broken=0, sms=list(self.sms),
                          sms_attempts=list(self.attempts), mails=list(self.mails), db=figures,
                          lags={"intake": 0}, checked_at=NOW)
        exp = Expectation(manifest={i.digest: i for i in self.items}, worked=dict(self.worked),
                          sla={"critical": CRITICAL_SLA})
        return obs, exp


def perfect() -> World:
    """Two pickups (one overdue long enough to be escalated), a complaint filed two days ago
    (two escalation steps due), a bad record; everything handled once."""
    fleet = Fleet(seed=3)
    w = World()
    for group, days in (("pickup.recent", 1), ("pickup.old", 12)):
        picked = NOW - timedelta(days=days)
        up = fleet.pickup(fleet.vehicle(picked - timedelta(days=100)), picked.astimezone(CST))
        w.inject("upstream.dms", up, group)
        canon = w.emit("aftersales.intake", "VehiclePickedUp",
                       {"repair_order_id": up["data"]["repair_order_id"]}, cause=up["event_id"])
        fid = f"fu-{group}"
        scheduled = w.emit("aftersales.followup", "FollowUpScheduled", {
            "followup_id": fid, "kind": "first_visit", "reason_event_id": canon.event_id,
            "due_by": (picked + timedelta(days=7)).isoformat()}, cause=canon.event_id)
        w.notify("first_visit_notice", scheduled, "sms", "C-1")
        if group == "pickup.old":
            escalated = w.emit("aftersales.followup", "FollowUpEscalated", {"followup_id": fid})
            w.notify("followup_escalated", escalated, "email", "role:supervisor")
    sold = NOW - timedelta(days=1)  # a delivery: called 3-7 days later, like a pickup
    sale = fleet.sale(fleet.vehicle(sold.astimezone(CST)))
    w.inject("upstream.sales", sale, "sale.new")
    canon = w.emit("aftersales.intake", "VehicleSold", {"sale_id": sale["data"]["sale_id"]}, cause=sale["event_id"])
    scheduled = w.emit("aftersales.followup", "FollowUpScheduled", {
        "followup_id": "fu-sale.new", "kind": "first_visit", "reason_event_id": canon.event_id,
        "reason_type": "VehicleSold", "due_by": (sold + timedelta(days=7)).isoformat()}, cause=canon.event_id)
    w.notify("first_visit_notice", scheduled, "sms", "C-2")
    filed = NOW - timedelta(days=2, hours=1)
    crm = fleet.complaint(fleet.customer(), filed.astimezone(CST), "too expensive")
    w.inject("upstream.crm", crm, "complaint.crm")
    w.emit("aftersales.intake", "ComplaintFiled", {"complaint_ref": crm["data"]["complaint_ref"]},
           cause=crm["event_id"])
    w.emit("aftersales.complaints", "ComplaintOpened", {
        "complaint_id": "CASE-1", "complaint_ref": crm["data"]["complaint_ref"], "severity": "low",
        "filed_at": filed.isoformat()})
    for level in (1, 2):
        step = w.emit("aftersales.complaints", "ComplaintEscalated",
                      {"complaint_id": "CASE-1", "round": 0, "level": level})
        w.notify("complaint_escalated", step, "email", "person:cs-supervisor-01")
    bad = w.inject("upstream.erp", None, "bad", valid=False, value=b"{not json", kind="malformed_json")
    w.emit("aftersales.deadletter", "DeadLettered", {"service": "intake", "topic": bad.topic, "partition": 0,
                                                     "offset": len(w.upstream) - 1, "error": "MalformedJSON"})
    return w


def failing(results: list[Invariant]) -> set[str]:
    return {r.name for r in results if not r.ok}


def test_a_run_where_everything_happened_once_passes_every_invariant() -> None:
    results = check(*perfect().observation())
    assert {r.name for r in results} == EVERY
    assert failing(results) == set(), [(r.name, r.problems) for r in results if not r.ok]


def test_a_re_sent_copy_of_an_event_with_the_same_event_id_counts_once() -> None:
    w = perfect()
    for topic in ("aftersales.followup", "aftersales.complaints", "aftersales.notifier", "aftersales.deadletter"):
        w.events[topic] = w.events[topic] + [replace(e, offset=e.offset + 100) for e in w.events[topic]]
    assert failing(check(*w.observation())) == set()


def test_a_second_first_visit_for_one_pickup_fails() -> None:
    w = perfect()
    first = next(e for e in w.events["aftersales.followup"] if e.event_type == "FollowUpScheduled")
    w.events["aftersales.followup"].append(replace(first, event_id=str(uuid.uuid4()), offset=99))
    assert "every valid pickup has exactly one first-visit FollowUpScheduled" in failing(check(*w.observation()))


def test_a_pickup_without_its_follow_up_fails_stage_by_stage() -> None:
    w = perfect()
    w.events["aftersales.followup"] = [e for e in w.events["aftersales.followup"]
                                       if e.data.get("reason_event_id") is None
                                       or e.data["followup_id"] != "fu-pickup.recent"]
    failed = failing(check(*w.observation()))
    assert {"every valid pickup has exactly one first-visit FollowUpScheduled", "counts match stage by stage"} <= failed


def test_a_recent_delivery_without_its_first_call_fails_and_is_no_pickup() -> None:
    w = perfect()
    w.events["aftersales.followup"] = [e for e in w.events["aftersales.followup"]
                                       if e.data.get("followup_id") != "fu-sale.new"]
    w.events["aftersales.notifier"] = [e for e in w.events["aftersales.notifier"] if e.data.get("recipient") != "C-2"]
    w.sms = w.sms[:-1]
    w.attempts = w.attempts[:-1]
    failed = failing(check(*w.observation()))
    assert failed == {"every recent delivery has exactly one first-visit FollowUpScheduled"}, failed


def test_a_valid_event_intake_never_announced_fails() -> None:
    w = perfect()
    w.events["aftersales.intake"] = w.events["aftersales.intake"][1:]
    assert "every valid upstream event has exactly one canonical event" in failing(check(*w.observation()))


def test_an_sms_delivered_twice_under_two_keys_fails_and_a_repeated_attempt_with_one_key_does_not() -> None:
    w = perfect()
    key = w.sms[0]["idempotency_key"]
    w.attempts.append({"idempotency_key": key})  # the gateway recognised it: one delivery
    assert failing(check(*w.observation())) == set()
    w.sms.append({"idempotency_key": f"{key}-again", "message_id": "m2"})
    assert "every notification delivered once (SMS gateway and SMTP server)" in failing(check(*w.observation()))


def test_a_mail_repeated_with_its_message_id_is_one_delivery_but_a_missing_mail_fails() -> None:
    w = perfect()
    w.mails.append(copy.deepcopy(w.mails[0]))
    results = check(*w.observation())
    assert failing(results) == set()
    assert "1 repeated with the same Message-ID" in next(r for r in results if "delivered once" in r.name).figures
    w.mails = w.mails[1:-1]
    assert "every notification delivered once (SMS gateway and SMTP server)" in failing(check(*w.observation()))


def test_two_outcomes_for_one_notification_fail() -> None:
    w = perfect()
    sent = w.events["aftersales.notifier"][0]
    w.events["aftersales.notifier"].append(replace(sent, event_id=str(uuid.uuid4()), event_type="NotificationFailed"))
    assert "every notification decided once, with one outcome" in failing(check(*w.observation()))


def test_a_notification_left_pending_in_the_database_fails() -> None:
    w = perfect()
    obs, exp = w.observation(notifications_by_status={"sent": 4, "pending": 1})
    assert "every notification decided once, with one outcome" in failing(check(obs, exp))


def test_an_escalation_fired_twice_or_before_it_was_due_fails() -> None:
    w = perfect()
    step = next(e for e in w.events["aftersales.complaints"] if e.event_type == "ComplaintEscalated")
    twice = copy.deepcopy(w)
    twice.events["aftersales.complaints"].append(replace(step, event_id=str(uuid.uuid4())))
    assert "every complaint opened once and escalated once per (case, round, level)" in failing(
        check(*twice.observation()))
    early = copy.deepcopy(w)
    early.events["aftersales.complaints"].append(replace(step, event_id=str(uuid.uuid4()),
                                                         data={**step.data, "level": 3}))
    assert "every complaint opened once and escalated once per (case, round, level)" in failing(
        check(*early.observation()))


def test_a_missing_follow_up_escalation_fails() -> None:
    w = perfect()
    w.events["aftersales.followup"] = [e for e in w.events["aftersales.followup"] if e.event_type != "FollowUpEscalated"]
    assert "every overdue first visit escalated once" in failing(check(*w.observation()))


def test_the_dead_letter_topic_must_hold_exactly_the_bad_records() -> None:
    w = perfect()
    lost = copy.deepcopy(w)
    lost.events["aftersales.deadletter"] = []
    assert "the dead-letter topic holds exactly the injected bad records" in failing(check(*lost.observation()))
    extra = copy.deepcopy(w)
    extra.emit("aftersales.deadletter", "DeadLettered", {"service": "complaints", "topic": "aftersales.intake",
                                                         "partition": 0, "offset": 0, "error": "KeyError"})
    assert "the dead-letter topic holds exactly the injected bad records" in failing(check(*extra.observation()))


def test_an_injected_record_that_never_reached_its_topic_fails() -> None:
    w = perfect()
    w.upstream = w.upstream[1:]
    assert "every injected record is on its upstream topic" in failing(check(*w.observation()))


@pytest.mark.parametrize("db", [{"outbox_pending": {"intake": 3}}, {"timers_due": {"complaints": 1}},
                                {"timers_parked": {"followup": 1}}])
def test_work_left_behind_in_a_service_fails(db: dict[str, Any]) -> None:
    obs, exp = perfect().observation(**db)
    assert failing(check(obs, exp)) == {"services recovered by themselves and left nothing behind"}


def test_a_service_that_exited_by_itself_fails() -> None:
    obs, exp = perfect().observation()
    exp.incidents.append("intake#0 exited by itself with 1")
    assert failing(check(obs, exp)) == {"services recovered by themselves and left nothing behind"}


def test_a_call_the_agent_recorded_that_never_completed_its_follow_up_fails() -> None:
    w = perfect()
    w.worked["fu-worked"] = "RO-1"
    assert "every call an agent recorded completed its follow-up once and raised its complaint once" in failing(
        check(*w.observation()))
    w.emit("aftersales.followup", "FollowUpCompleted", {"followup_id": "fu-worked"})
    w.emit("aftersales.followup", "ComplaintFiled", {"followup_id": "fu-worked", "complaint_ref": "RV-1"})
    w.emit("aftersales.complaints", "ComplaintOpened", {"complaint_id": "CASE-2", "complaint_ref": "RV-1",
                                                       "severity": "critical", "filed_at": NOW.isoformat()})
    assert failing(check(*w.observation())) == set()
