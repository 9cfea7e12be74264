"""The agents' commands (the HTTP routes call them): claiming a follow-up, and recording a call
with all it causes, in one transaction (the register row, the follow-up's new state, the
second visit, and the events)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from services.followup import conversation, feedback_items, owners, store
from services.followup.config import FollowUpDeps
from services.followup.domain import (
    LOST_REASONS,
    NewFollowUp,
    after_attempt,
    calling_days,
    followup_id,
    is_satisfied,
    second_visit_window,
)
from services.followup.handlers import schedule
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import ComplaintCategory, LostReason, Severity
from shared.http import Moment
from shared.uow import UnitOfWork

Uow = UnitOfWork[FollowUpDeps]


class ComplaintIn(BaseModel):
    category: ComplaintCategory | None = None
    description: str = Field(min_length=1, max_length=4000)
    severity: Severity | None = None


class ProductIssueIn(BaseModel):
    part_category: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=4000)


class AttemptIn(BaseModel):
    """One call to the customer, as the agent records it."""

    outcome: Literal["reached", "unreachable", "wrong_number", "call_back_later"]
    call_back_at: Moment | None = Field(None, description="required with call_back_later")
    satisfaction: int | None = Field(None, ge=1, le=5, description="the customer's score, 1-5, when reached")
    satisfied: bool | None = Field(None, description="for a complaint confirmation: did the resolution satisfy them")
    talking_points: str | None = Field(None, max_length=4000)
    requests: str | None = Field(None, max_length=4000)
    notes: str | None = Field(None, max_length=4000)
    categories: list[str] = Field(default_factory=list, max_length=20, description="feedback tags, e.g. price, praise")
    booked_at: Moment | None = Field(None, description="for a campaign call that reached the customer: the visit "
                                                        "they booked (a recall's inspection), when")
    complaint: ComplaintIn | None = None
    product_issue: ProductIssueIn | None = None
    feedback: feedback_items.FeedbackIn | None = Field(
        None, description="the customer's concern: answered on the call, serious, its category or department "
                          "(a score at or below the threshold, or a request, opens a feedback item anyway)")
    lost_reason: LostReason | None = Field(
        None, description="for a lost-customer call that reached the customer: why they no longer come "
                          f"(one of {', '.join(LOST_REASONS)})")
    lost_reason_note: str | None = Field(None, max_length=1000,
                                         description="the reason in the customer's words (required with `other`)")

    @model_validator(mode="after")
    def _fits_the_outcome(self) -> AttemptIn:
        if self.outcome == "call_back_later" and self.call_back_at is None:
            raise ValueError("call_back_at is required when the outcome is call_back_later")
        if self.outcome != "reached":
            given = [n for n in ("satisfaction", "satisfied", "complaint", "product_issue", "feedback", "booked_at",
                                 "lost_reason", "lost_reason_note") if getattr(self, n)]
            if given:
                raise ValueError(f"{', '.join(given)} can only be recorded when the customer was reached")
        if self.lost_reason == "other" and not (self.lost_reason_note or "").strip():
            raise ValueError("lost_reason `other` needs lost_reason_note: the reason in the customer's words")
        return self


class CallRefused(Exception):
    """The call cannot be recorded as asked: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Cause:
    event_id: Any
    correlation_id: Any


def _customer_held_message(f: Mapping[str, Any]) -> str:
    until = f["claim_expires_at"].astimezone().strftime("%H:%M")
    return (f"customer {f['customer_id']} is being called by {f['claimed_by']} (claim held until {until}, "
            f"follow-up {f['followup_id']}): one agent calls a customer at a time; take another customer from "
            "the queue, or ask a supervisor to release it")


def _holder_message(f: Mapping[str, Any]) -> str:
    until = f["claim_expires_at"].astimezone().strftime("%H:%M") if f["claim_expires_at"] else "?"
    return (f"follow-up {f['followup_id']} is being called by {f['claimed_by']} (claim held until {until}); "
            "take another one from the queue, or ask a supervisor to release it")


async def _lock_customer_of(uow: Uow, followup_id_: str) -> None:
    """The follow-up's customer's lock, before its row's (the order every path takes them in)."""
    found = await store.get_followup(uow.conn, followup_id_)
    if found is not None:
        await store.lock_customer(uow.conn, found["customer_id"])


async def claim(uow: Uow, followup_id_: str, agent: str, *, supervisor: bool) -> dict[str, Any]:
    await _lock_customer_of(uow, followup_id_)
    f = await store.get_followup(uow.conn, followup_id_, lock=True)
    if f is None:
        raise CallRefused(404, f"no follow-up {followup_id_!r}")
    if f["status"] not in ("scheduled", "due"):
        raise CallRefused(409, f"follow-up {followup_id_} is {f['status']} ({f['outcome'] or 'no outcome'}); "
                               "there is nothing left to call")
    now = uow.now()
    until = now + timedelta(minutes=uow.deps.rules.claim_minutes)
    if (refusal := owners.claim_refusal(f, agent, now, supervisor=supervisor)) is not None:
        raise CallRefused(409, refusal)  # assigned by a supervisor to another agent, not overdue yet
    if not supervisor:  # one agent per customer: another's claim on any of their follow-ups holds them all
        others = await store.open_followups_of(uow.conn, [f["customer_id"]])
        held = conversation.held_by_another(others.get(f["customer_id"], []), agent, now)
        if held is not None:
            raise CallRefused(409, _customer_held_message(held))
    taken = await store.claim(uow.conn, followup_id_, agent, now, until, force=supervisor)
    if taken is None:
        raise CallRefused(409, _holder_message(f))
    return taken


async def release(uow: Uow, followup_id_: str, agent: str, *, supervisor: bool) -> None:
    f = await store.get_followup(uow.conn, followup_id_, lock=True)
    if f is None:
        raise CallRefused(404, f"no follow-up {followup_id_!r}")
    if f["claimed_by"] not in (None, agent) and not supervisor and f["claim_expires_at"] > uow.now():
        raise CallRefused(409, _holder_message(f))
    await store.release(uow.conn, followup_id_)


async def record_attempt(uow: Uow, followup_id_: str, agent: str, body: AttemptIn,
                         call_id: str | None = None) -> dict[str, Any]:
    """One follow-up's attempt; `call_id`: the conversation's call it was recorded on."""
    r = uow.deps.rules
    now = uow.now()
    if call_id is None:  # on a conversation's call, record_call holds the customer's lock already
        await _lock_customer_of(uow, followup_id_)
    f = await store.get_followup(uow.conn, followup_id_, lock=True)
    if f is None:
        raise CallRefused(404, f"no follow-up {followup_id_!r}")
    if f["status"] not in ("scheduled", "due"):
        raise CallRefused(409, f"follow-up {followup_id_} is already {f['status']} ({f['outcome'] or 'no outcome'})")
    if f["claimed_by"] not in (None, agent) and f["claim_expires_at"] and f["claim_expires_at"] > now:
        raise CallRefused(409, _holder_message(f))
    if call_id is None:  # recorded alone: not while another agent holds the customer
        others = await store.open_followups_of(uow.conn, [f["customer_id"]])
        held = conversation.held_by_another(others.get(f["customer_id"], []), agent, now)
        if held is not None:
            raise CallRefused(409, _customer_held_message(held))
    if body.call_back_at is not None and body.call_back_at <= now:
        raise CallRefused(422, f"call_back_at {body.call_back_at.isoformat()} is not in the future")
    if f["kind"] in ("complaint_confirmation", "feedback_confirmation") and body.outcome == "reached" \
            and body.satisfied is None and body.satisfaction is None:
        raise CallRefused(422, f"a {f['kind'].replace('_', ' ')} needs `satisfied` (or a satisfaction score) when reached")
    if body.booked_at is not None and f["kind"] != "campaign_call":
        raise CallRefused(422, f"booked_at is for a campaign call's booked visit; follow-up {followup_id_} is a "
                               f"{f['kind'].replace('_', ' ')}")
    if (body.lost_reason or body.lost_reason_note) and f["kind"] != "lost_customer":
        raise CallRefused(422, f"lost_reason is for a lost-customer call; follow-up {followup_id_} is a "
                               f"{f['kind'].replace('_', ' ')}")

    decision = after_attempt(body.outcome, now, f["unreachable"], f["timezone"], body.call_back_at, r,
                             calling_days(f["region"], r, uow.deps.calendars))
    attempt_no = f["attempts"] + 1
    unreachable = f["unreachable"] + (1 if decision.counts_as_unreachable else 0)
    satisfied = is_satisfied(body.satisfaction, body.satisfied, r) if body.outcome == "reached" else None
    attempt_id = f"{followup_id_}:{attempt_no}"
    cause = _Cause(*_cause_ids(f, attempt_id))
    complaints = _complaints(f, body, attempt_id, now)
    await store.record_attempt(uow.conn, {
        "attempt_id": attempt_id, "followup_id": followup_id_, "customer_id": f["customer_id"], "kind": f["kind"],
        "attempt_no": attempt_no, "agent_id": agent, "attempted_at": now, "outcome": body.outcome,
        "call_back_at": body.call_back_at, "satisfaction": body.satisfaction, "satisfied": satisfied,
        "talking_points": body.talking_points, "requests": body.requests, "notes": body.notes,
        "categories": body.categories, "complaint": body.complaint.model_dump() if body.complaint else None,
        "product_issue": body.product_issue.model_dump() if body.product_issue else None,
        "complaint_ref": ",".join(c["complaint_ref"] for c in complaints) or None,
        "region": f["region"], "dealer_id": f["dealer_id"],
        "lost_reason": body.lost_reason, "lost_reason_note": body.lost_reason_note, "call_id": call_id,
    })
    uow.publish("FollowUpAttemptRecorded", {
        "followup_id": followup_id_, "kind": f["kind"], "customer_id": f["customer_id"], "attempt_no": attempt_no,
        "agent_id": agent, "outcome": body.outcome, "attempted_at": now, "call_back_at": body.call_back_at,
        "satisfaction": body.satisfaction, "talking_points": body.talking_points, "requests": body.requests,
        "notes": body.notes, "lost_reason": body.lost_reason, "lost_reason_note": body.lost_reason_note,
        "call_id": call_id,
    }, cause=cause, occurred_at=now, discriminator=attempt_no)
    for complaint in complaints:
        uow.publish("ComplaintFiled", complaint, cause=cause, occurred_at=now, discriminator=complaint["complaint_ref"])

    completed = None
    if decision.completes_as is not None:
        completed = {"outcome": decision.completes_as, "satisfaction": body.satisfaction, "satisfied": satisfied,
                     "at": now, "agent_id": agent, "lost_reason": body.lost_reason, "call_id": call_id}
        await _complete(uow, f, completed, attempt_no, cause, body)
        await feedback_items.after_confirmation(uow, f, agent, decision.completes_as, satisfied)
    item = None
    if body.outcome == "reached":  # a low score or a request: a feedback item, owned by the agent
        item = await feedback_items.open_from_call(uow, feedback_items.Call(
            f, agent, attempt_no, attempt_id, body.satisfaction, body.requests, body.talking_points, cause,
        ), body.feedback, [c["complaint_ref"] for c in complaints])
    await store.update_after_attempt(uow.conn, followup_id_, attempts=attempt_no, unreachable=unreachable,
                                     next_attempt_at=decision.next_attempt_at, completed=completed)
    return {
        "followup_id": followup_id_, "attempt_no": attempt_no, "outcome": body.outcome,
        "status": "completed" if completed else f["status"],
        "completed_as": decision.completes_as, "next_attempt_at": decision.next_attempt_at,
        "complaints_filed": [c["complaint_ref"] for c in complaints],
        "feedback_item": item["item_id"] if item else None, "lost_reason": body.lost_reason,
        "events": [e.event_type for e in uow.published],
    }


def _cause_ids(f: dict[str, Any], attempt_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A call's events follow from the follow-up it works (its FollowUpScheduled), in its chain."""
    cause = f["scheduled_event_id"] or uuid5(AFTERSALES_NAMESPACE, f"call:{attempt_id}")
    return cause, f["correlation_id"]


def _complaints(f: dict[str, Any], body: AttemptIn, attempt_id: str, now: datetime) -> list[dict[str, Any]]:
    """A requirement or complaint the agent could not solve on the call, and a product issue,
    each become a ComplaintFiled (the complaints service opens a case)."""
    filed = []
    base = {"customer_id": f["customer_id"], "vin": f["vin"], "channel": "return_visit", "filed_at": now,
            "followup_id": f["followup_id"], "dealer_id": f["dealer_id"], "region": f["region"]}
    short = attempt_id.split(":")[0][:8] + "-" + attempt_id.split(":")[1]
    if body.complaint is not None:
        filed.append(base | {"complaint_ref": f"RV-{short}", "category": body.complaint.category,
                             "description": body.complaint.description, "severity": body.complaint.severity})
    if body.product_issue is not None:
        filed.append(base | {"complaint_ref": f"RV-{short}-P", "category": "product_quality",
                             "part_category": body.product_issue.part_category,
                             "description": body.product_issue.description})
    return filed


async def _complete(uow: Uow, f: dict[str, Any], completed: dict[str, Any], attempts: int, cause: _Cause,
                    body: AttemptIn) -> None:
    r = uow.deps.rules
    now = completed["at"]
    uow.publish("FollowUpCompleted", {
        "followup_id": f["followup_id"], "kind": f["kind"], "customer_id": f["customer_id"], "vin": f["vin"],
        "outcome": completed["outcome"], "completed_at": now, "attempts": attempts,
        "satisfaction": completed["satisfaction"], "satisfied": completed["satisfied"],
        "agent_id": completed["agent_id"], "complaint_id": f["complaint_id"], "campaign_id": f["campaign_id"],
        "dealer_id": f["dealer_id"], "region": f["region"],
        "booked_at": body.booked_at if completed["outcome"] == "reached" else None,
        "lost_reason": body.lost_reason, "lost_reason_note": body.lost_reason_note,
        "call_id": completed.get("call_id"),
    }, cause=cause, occurred_at=now)
    if completed["outcome"] == "reached":
        categories = list(body.categories)
        if body.complaint is not None:
            categories.append(f"complaint:{body.complaint.category or 'unclassified'}")
        if body.product_issue is not None:
            categories.append(f"product:{body.product_issue.part_category}")
        uow.publish("FeedbackRecorded", {
            "customer_id": f["customer_id"], "followup_id": f["followup_id"], "satisfaction": completed["satisfaction"],
            "requests": body.requests, "comments": body.notes, "talking_points": body.talking_points,
            "categories": categories, "recorded_at": now,
        }, cause=cause, occurred_at=now)
    letter = {"unreachable": "unreachable_notice", "wrong_number": "wrong_number_notice"}.get(completed["outcome"])
    if letter is None and f["kind"] == "campaign_call" and completed["outcome"] == "reached":
        letter = "campaign_invitation"  # "then send the notification letter within two days"
    if letter is not None:
        await store.request_letter(uow.conn, {
            "letter_id": f"{f['followup_id']}:{letter}", "followup_id": f["followup_id"],
            "customer_id": f["customer_id"], "kind": letter, "reason": f"{f['kind']} {completed['outcome']}",
            "agent_id": completed["agent_id"], "requested_at": now,
        })
    if f["kind"] == "first_visit" and completed["outcome"] == "reached":
        window = second_visit_window(now, r)
        await schedule(uow, [(cause, NewFollowUp(
            followup_id=followup_id("second_visit", f["followup_id"]), kind="second_visit",
            customer_id=f["customer_id"], vin=f["vin"], dealer_id=f["dealer_id"], region=f["region"],
            reason_event_id=str(cause.event_id), due_from=window.due_from, due_by=window.due_by,
            priority=r.priority_second_visit, timezone=f["timezone"], under_warranty=f["under_warranty"],
            mileage_km=f["mileage_km"], event_at=now,
        ))])


# -- one conversation per customer (services/followup/conversation.py) ----------------------------


class FollowUpOutcomeIn(AttemptIn):
    """One follow-up's outcome on a conversation's call."""

    followup_id: str = Field(min_length=1, max_length=100)


class ConversationCallIn(BaseModel):
    """The call to the customer, recorded once with each follow-up's outcome."""

    call_id: str | None = Field(None, max_length=100, description="the claim's call id (from the claim); "
                                                                    "the same id is never recorded twice")
    outcomes: list[FollowUpOutcomeIn] = Field(min_length=1, max_length=20)


async def claim_conversation(uow: Uow, customer_id: str, agent: str, *, supervisor: bool) -> dict[str, Any]:
    """Claim all the follow-ups of the customer's conversation under one call id (renewing one's
    own claim keeps its id)."""
    now = uow.now()
    await store.lock_customer(uow.conn, customer_id)
    rows = (await store.open_followups_of(uow.conn, [customer_id], lock=True)).get(customer_id, [])
    talk = conversation.conversation_of(customer_id, rows, now, uow.deps.rules.conversation_days)
    if not talk.followups:
        raise CallRefused(404, f"customer {customer_id!r} has no follow-up to call in the next "
                               f"{uow.deps.rules.conversation_days} days")
    held = conversation.held_by_another(rows, agent, now)
    if held is not None and not supervisor:
        raise CallRefused(409, _customer_held_message(held))
    for f in talk.followups:  # a call a supervisor assigned to another agent, not overdue yet
        if (refusal := owners.claim_refusal(f, agent, now, supervisor=supervisor)) is not None:
            raise CallRefused(409, refusal)
    call_id = talk.call_id if talk.claimed_by == agent and talk.call_id else str(uuid.uuid4())
    until = now + timedelta(minutes=uow.deps.rules.claim_minutes)
    claimed = await store.claim_all(uow.conn, talk.followup_ids, agent, until, call_id)
    order = {fid: i for i, fid in enumerate(talk.followup_ids)}
    claimed.sort(key=lambda f: order[f["followup_id"]])
    return {"customer_id": customer_id, "call_id": call_id, "claimed_by": agent, "claim_expires_at": until,
            "followups": claimed}


async def release_conversation(uow: Uow, customer_id: str, agent: str, *, supervisor: bool) -> list[str]:
    """Give the customer's follow-ups back to the queue (those claimed by this agent; all of
    them for a supervisor)."""
    now = uow.now()
    await store.lock_customer(uow.conn, customer_id)
    rows = (await store.open_followups_of(uow.conn, [customer_id], lock=True)).get(customer_id, [])
    held = conversation.held_by_another(rows, agent, now)
    if held is not None and not supervisor:
        raise CallRefused(409, _customer_held_message(held))
    ids = [f["followup_id"] for f in rows if f["claimed_by"] is not None]
    await store.release_all(uow.conn, ids)
    return ids


async def record_call(uow: Uow, customer_id: str, agent: str, body: ConversationCallIn) -> dict[str, Any]:
    """The customer's call, once: each follow-up's attempt (its own events, with the call id),
    the call's record; every follow-up the agent claimed together needs its outcome. One
    transaction: a refused outcome stores nothing."""
    now = uow.now()
    given = [o.followup_id for o in body.outcomes]
    twice = conversation.duplicates(given)
    if twice:
        raise CallRefused(422, f"follow-up {', '.join(twice)} has two outcomes on one call; give one each")
    await store.lock_customer(uow.conn, customer_id)
    rows = (await store.open_followups_of(uow.conn, [customer_id], lock=True)).get(customer_id, [])
    open_ids = {f["followup_id"] for f in rows}
    for fid in given:
        if fid not in open_ids:
            f = await store.get_followup(uow.conn, fid)
            if f is None or f["customer_id"] != customer_id:
                raise CallRefused(422, f"follow-up {fid!r} is not one of customer {customer_id}'s follow-ups")
            raise CallRefused(409, f"follow-up {fid} is already {f['status']} ({f['outcome'] or 'no outcome'})")
    held = conversation.held_by_another(rows, agent, now)
    if held is not None:
        raise CallRefused(409, _customer_held_message(held))
    mine = [f for f in rows if f["claimed_by"] == agent and f["claim_expires_at"] and f["claim_expires_at"] > now]
    claim_ids = {f["call_id"] for f in mine if f["call_id"]}
    if body.call_id is not None and claim_ids and body.call_id not in claim_ids:
        raise CallRefused(409, f"call {body.call_id} is not the call you hold on customer {customer_id} "
                               f"({', '.join(sorted(claim_ids))}); claim the conversation again")
    call_id = body.call_id or (sorted(claim_ids)[0] if claim_ids else str(uuid.uuid4()))
    if await store.conversation_call(uow.conn, call_id) is not None:
        raise CallRefused(409, f"call {call_id} is recorded already")
    missing = conversation.missing_outcomes([f["followup_id"] for f in mine if f["call_id"] == call_id], given)
    if missing:
        kinds = {f["followup_id"]: f["kind"] for f in rows}
        raise CallRefused(422, "every follow-up claimed on this call needs its outcome; missing: "
                               + ", ".join(f"{fid} ({kinds[fid].replace('_', ' ')})" for fid in missing))
    results = [await record_attempt(uow, o.followup_id, agent, o, call_id=call_id) for o in body.outcomes]
    if not await store.record_conversation_call(uow.conn, {
            "call_id": call_id, "customer_id": customer_id, "agent_id": agent, "called_at": now,
            "followup_ids": given, "outcomes": {r["followup_id"]: r["outcome"] for r in results}}):
        raise CallRefused(409, f"call {call_id} is recorded already")
    # what was claimed with it and not on the record (none: checked above) goes back to the pool
    leftover = [f["followup_id"] for f in mine if f["followup_id"] not in given]
    if leftover:
        await store.release_all(uow.conn, leftover)
    for r in results:
        r.pop("events", None)
    return {"call_id": call_id, "customer_id": customer_id, "agent_id": agent, "called_at": now,
            "followups": results, "events": [e.event_type for e in uow.published]}
