"""Follow-up's HTTP response models (issue 21, docs/api/followup.openapi.json): what each route
answers, with a realistic example. Row models allow the columns they do not name (a column added
later shows up without a change here); the named fields are the contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FID = "6f1c2a9e-3b7d-5e41-9a0c-2d8e4b6f1a37"
FID2 = "0b9d7c55-1e2f-5a63-8c4d-7e6f5a4b3c21"
CUSTOMER = "CUST-3301"
AGENT = "wang.fang"
T = "2026-11-23T10:15:00+08:00"


def _example(example: dict[str, Any], *, extra: str = "ignore") -> ConfigDict:
    return ConfigDict(extra=extra, json_schema_extra={"examples": [example]})  # type: ignore[typeddict-item]


_FOLLOWUP = {
    "followup_id": FID, "kind": "first_visit", "customer_id": CUSTOMER, "vin": "LSVAU2180N2183301",
    "dealer_id": "D-SH-PUDONG", "region": "east", "campaign_id": None, "complaint_id": None,
    "due_from": "2026-11-22T00:00:00+08:00", "due_by": "2026-11-26T23:59:59+08:00", "priority": 50,
    "timezone": "Asia/Shanghai", "status": "due", "attempts": 1, "next_attempt_at": None, "claimed_by": AGENT,
    "claim_expires_at": "2026-11-23T10:45:00+08:00", "outcome": None, "satisfaction": None, "satisfied": None,
    "completed_at": None, "completed_by": None, "assigned_to": None, "call_id": None, "reason_type": "pickup",
    "lost_reason": None, "created_at": "2026-11-19T16:02:11+08:00",
}
_ATTEMPT = {
    "attempt_id": f"{FID}:1", "followup_id": FID, "customer_id": CUSTOMER, "kind": "first_visit", "attempt_no": 1,
    "agent_id": AGENT, "attempted_at": "2026-11-22T15:30:00+08:00", "outcome": "unreachable", "call_back_at": None,
    "satisfaction": None, "satisfied": None, "talking_points": None, "requests": None, "notes": "无人接听",
    "categories": [], "complaint_ref": None, "lost_reason": None, "lost_reason_note": None, "call_id": None,
}


class FollowUp(BaseModel):
    """A follow-up (one call to make) as stored; columns not named here are passed on too."""

    model_config = _example(_FOLLOWUP, extra="allow")
    followup_id: str
    kind: str = Field(description="first_visit, second_visit, complaint_confirmation, campaign_call, lost_customer, "
                                  "maintenance_reminder, feedback_answer, feedback_confirmation")
    customer_id: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    campaign_id: str | None = None
    complaint_id: str | None = None
    due_from: datetime
    due_by: datetime
    priority: int
    status: str = Field(description="scheduled, due, completed, expired")
    attempts: int = Field(description="call attempts made")
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    outcome: str | None = None
    assigned_to: str | None = None
    call_id: str | None = None
    created_at: datetime


class Attempt(BaseModel):
    """One call attempt on the phone register."""

    model_config = _example(_ATTEMPT, extra="allow")
    attempt_id: str
    followup_id: str
    customer_id: str
    kind: str
    attempt_no: int
    agent_id: str
    attempted_at: datetime
    outcome: str
    satisfaction: int | None = None
    notes: str | None = None
    call_id: str | None = None


class FollowUpDetail(BaseModel):
    """A follow-up with its attempts (`attempts` is the list here), the customer's loyalty tier and
    flagged contact values. Its `ETag` covers the follow-up as stored."""

    model_config = _example({**_FOLLOWUP, "attempts": [_ATTEMPT], "loyalty_tier": "gold",
                             "contact_flags": {"phone": "wrong_number"}}, extra="allow")
    followup_id: str
    kind: str
    customer_id: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    due_from: datetime
    due_by: datetime
    status: str
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    attempts: list[Attempt]
    loyalty_tier: str
    contact_flags: dict[str, Any]


_QUEUE_ITEM = {
    "followup_id": FID, "kind": "first_visit", "customer_id": CUSTOMER, "vin": "LSVAU2180N2183301",
    "dealer_id": "D-SH-PUDONG", "region": "east", "campaign_id": None, "complaint_id": None,
    "due_from": "2026-11-22T00:00:00+08:00", "due_by": "2026-11-26T23:59:59+08:00", "priority": 50, "attempts": 0,
    "claimed_by": None, "reason_type": "pickup", "overdue": False, "loyalty_tier": "gold", "contact_flags": {},
    "owner": AGENT, "assigned_to": None, "mine": True,
}


class QueueItem(BaseModel):
    """A follow-up the calling agent can call now."""

    model_config = _example(_QUEUE_ITEM)
    followup_id: str
    kind: str
    customer_id: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    campaign_id: str | None = None
    complaint_id: str | None = None
    due_from: datetime
    due_by: datetime
    priority: int
    attempts: int
    claimed_by: str | None = None
    reason_type: str | None = None
    overdue: bool
    loyalty_tier: str = Field(description="platinum, gold, silver, standard: who is called first among the overdue")
    contact_flags: dict[str, Any] = Field(description="the customer's contact values flagged wrong or unreachable")
    owner: str | None = Field(None, description="the customer's tracking owner")
    assigned_to: str | None = Field(None, description="the agent a supervisor assigned the call to")
    mine: bool = Field(description="the calling agent's own call (their customer's, or assigned to them)")


class ConversationQueueItem(QueueItem):
    model_config = _example(_QUEUE_ITEM | {"due_now": True, "callable_now": True})
    due_now: bool = Field(description="its window has started (else brought forward into the conversation)")
    callable_now: bool = Field(description="not waiting for a retry: in the queue on its own too")


class QueueConversation(BaseModel):
    """One customer's follow-ups due in the same days, worked on one call."""

    model_config = _example({"customer_id": CUSTOMER, "claimed_by": None, "claim_expires_at": None, "call_id": None,
                             "loyalty_tier": "gold", "overdue": False,
                             "followups": [_QUEUE_ITEM | {"due_now": True, "callable_now": True}]})
    customer_id: str
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    call_id: str | None = None
    loyalty_tier: str
    overdue: bool
    followups: list[ConversationQueueItem]


class Claimed(BaseModel):
    model_config = _example({"followup_id": FID, "claimed_by": AGENT, "claim_expires_at": "2026-11-23T10:45:00+08:00"})
    followup_id: str
    claimed_by: str
    claim_expires_at: datetime


class Released(BaseModel):
    model_config = _example({"followup_id": FID, "status": "released"})
    followup_id: str
    status: str = Field(description="always `released`")


class AttemptRecorded(BaseModel):
    """What recording a call did to the follow-up."""

    model_config = _example({"followup_id": FID, "attempt_no": 2, "outcome": "reached", "status": "completed",
                             "completed_as": "reached", "next_attempt_at": None, "complaints_filed": [],
                             "feedback_item": None, "lost_reason": None,
                             "events": ["FollowUpAttemptRecorded", "FollowUpCompleted", "FollowUpScheduled"]})
    followup_id: str
    attempt_no: int
    outcome: str
    status: str
    completed_as: str | None = None
    next_attempt_at: datetime | None = None
    complaints_filed: list[str]
    feedback_item: str | None = None
    lost_reason: str | None = None
    events: list[str] = Field(default_factory=list, description="the events the call published")


class ConversationFollowUp(BaseModel):
    model_config = _example({**{k: _FOLLOWUP[k] for k in (
        "followup_id", "kind", "vin", "dealer_id", "region", "campaign_id", "complaint_id", "due_from", "due_by",
        "priority", "attempts", "status", "next_attempt_at", "claimed_by", "reason_type")},
        "overdue": False, "due_now": True, "attempts_made": [_ATTEMPT]})
    followup_id: str
    kind: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    campaign_id: str | None = None
    complaint_id: str | None = None
    due_from: datetime
    due_by: datetime
    priority: int
    attempts: int
    status: str
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    reason_type: str | None = None
    overdue: bool
    due_now: bool
    attempts_made: list[Attempt]


_PREVIOUS_CALL = {**{k: _ATTEMPT[k] for k in (
    "attempt_id", "followup_id", "kind", "attempt_no", "agent_id", "attempted_at", "outcome", "call_back_at",
    "satisfaction", "satisfied", "talking_points", "requests", "notes", "categories", "complaint_ref", "lost_reason",
    "lost_reason_note", "call_id")}, "campaign_id": None, "vin": "LSVAU2180N2183301"}
_OPEN_ITEM = {"item_id": "FB-7d2c", "followup_id": FID2, "state": "open", "reasons": ["low_score"], "satisfaction": 2,
              "requests": "希望下次保养提前预约", "category": "service", "department": "after_sales_service",
              "serious": False, "complaint_ref": None, "opened_at": "2026-11-20T11:00:00+08:00",
              "due_at": "2026-11-22T11:00:00+08:00", "owner": AGENT, "solution": None, "answered_at": None}


class PreviousCall(BaseModel):
    """A call made to the customer earlier (any follow-up)."""

    model_config = _example(_PREVIOUS_CALL, extra="allow")
    attempt_id: str
    followup_id: str
    kind: str
    attempt_no: int
    agent_id: str
    attempted_at: datetime
    outcome: str
    talking_points: str | None = None
    requests: str | None = None
    notes: str | None = None


class OpenFeedbackItem(BaseModel):
    model_config = _example(_OPEN_ITEM, extra="allow")
    item_id: str
    followup_id: str
    state: str
    department: str
    owner: str
    opened_at: datetime
    due_at: datetime | None = None


class Conversation(BaseModel):
    """The customer's conversation. Its `ETag` covers the open follow-ups in it as stored (who holds
    them, their attempts and windows), not the history or `now`."""

    model_config = _example({"now": T, "customer_id": CUSTOMER, "claimed_by": None, "claim_expires_at": None,
                             "call_id": None, "conversation_days": 7, "loyalty_tier": "gold", "contact_flags": {},
                             "followups": [ConversationFollowUp.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
                             "previous_calls": [_PREVIOUS_CALL], "open_feedback_items": [_OPEN_ITEM]})
    now: datetime
    customer_id: str
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    call_id: str | None = None
    conversation_days: int
    loyalty_tier: str
    contact_flags: dict[str, Any]
    followups: list[ConversationFollowUp]
    previous_calls: list[PreviousCall] = Field(description="the customer's latest 100 calls, newest first (all of "
                                                           "them, paged: GET /v1/customers/{customer_id}/calls)")
    open_feedback_items: list[OpenFeedbackItem]


class ClaimedFollowUp(BaseModel):
    followup_id: str
    kind: str
    due_from: datetime
    due_by: datetime


class ConversationClaimed(BaseModel):
    model_config = _example({"customer_id": CUSTOMER, "call_id": "9a4e1f7c-2b3d-4c5e-8f6a-1b2c3d4e5f60",
                             "claimed_by": AGENT, "claim_expires_at": "2026-11-23T10:45:00+08:00",
                             "followups": [{"followup_id": FID, "kind": "first_visit",
                                            "due_from": "2026-11-22T00:00:00+08:00",
                                            "due_by": "2026-11-26T23:59:59+08:00"}]})
    customer_id: str
    call_id: str
    claimed_by: str
    claim_expires_at: datetime
    followups: list[ClaimedFollowUp]


class ConversationReleased(BaseModel):
    model_config = _example({"customer_id": CUSTOMER, "released": [FID, FID2]})
    customer_id: str
    released: list[str] = Field(description="the follow-ups given back to the queue")


class CallRecorded(BaseModel):
    model_config = _example({"call_id": "9a4e1f7c-2b3d-4c5e-8f6a-1b2c3d4e5f60", "customer_id": CUSTOMER,
                             "agent_id": AGENT, "called_at": T,
                             "followups": [AttemptRecorded.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
                                           | {"events": []}],
                             "events": ["FollowUpAttemptRecorded", "FollowUpCompleted"]})
    call_id: str
    customer_id: str
    agent_id: str
    called_at: datetime
    followups: list[AttemptRecorded]
    events: list[str]


class InboundCallRecorded(BaseModel):
    model_config = _example({"call_id": "IC-2f8e6d4c", "customer_id": CUSTOMER, "kind": "consultation",
                             "summary": "询问保养套餐价格", "handled_by": AGENT, "received_at": T,
                             "vin": "LSVAU2180N2183301", "complaint_id": None, "followup_id": FID,
                             "duplicate": False, "complaint_ref": None,
                             "events": ["InboundCallRecorded", "FollowUpScheduled"]})
    call_id: str
    customer_id: str
    kind: str
    summary: str | None = None
    handled_by: str
    received_at: datetime
    vin: str | None = None
    complaint_id: str | None = None
    followup_id: str | None = None
    duplicate: bool = Field(description="this Idempotency-Key's call was recorded before: nothing new happened")
    complaint_ref: str | None = None
    events: list[str] = Field(default_factory=list)


class RegisterCall(BaseModel):
    """A row of the phone register: a call made (outbound attempt) or taken (inbound)."""

    model_config = _example({"direction": "outbound", "call_id": f"{FID}:1", "attempt_id": f"{FID}:1",
                             "followup_id": FID, "customer_id": CUSTOMER, "kind": "first_visit", "attempt_no": 1,
                             "agent_id": AGENT, "attempted_at": "2026-11-22T15:30:00+08:00", "outcome": "reached",
                             "satisfaction": 5, "talking_points": "车辆使用正常", "notes": None, "region": "east",
                             "dealer_id": "D-SH-PUDONG", "summary": None, "vin": None, "complaint_id": None},
                            extra="allow")
    direction: str = Field(description="outbound (an agent's call) or inbound (the customer's)")
    call_id: str
    followup_id: str | None = None
    customer_id: str
    kind: str
    agent_id: str
    attempted_at: datetime = Field(description="when the call was made or taken")
    outcome: str | None = None


class Letter(BaseModel):
    model_config = _example({"letter_id": "LT-51c0e2", "followup_id": FID, "customer_id": CUSTOMER,
                             "kind": "unreachable_notice", "reason": "three calls unanswered", "agent_id": AGENT,
                             "requested_at": T})
    letter_id: str
    followup_id: str
    customer_id: str
    kind: str = Field(description="unreachable_notice, campaign_invitation, wrong_number_notice")
    reason: str
    agent_id: str | None = None
    requested_at: datetime


class Kpis(BaseModel):
    model_config = _example({
        "from": "2026-10-24T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00", "region": None, "dealer": None,
        "warranty_pickups": 120, "warranty_visited": 118, "scored_calls": 96, "satisfied_calls": 94,
        "warranty_return_visit_rate": 0.9833, "satisfaction_rate": 0.9792,
        "targets": {"warranty_return_visit_rate": 1.0, "satisfaction_rate": 0.98},
        "open": {"first_visit": 14}, "overdue": {"first_visit": 2},
        "calls_per_agent": {AGENT: {"calls": 41, "reached": 35}},
        "first_visits_by_reason": {"pickup": {"scheduled": 120, "reached": 110}}, "inbound_calls": {"consultation": 9},
    }, extra="allow")
    since: datetime = Field(alias="from")
    to: datetime
    region: str | None = None
    dealer: str | None = None
    warranty_pickups: int
    warranty_visited: int
    scored_calls: int
    satisfied_calls: int
    warranty_return_visit_rate: float | None = None
    satisfaction_rate: float | None = None
    targets: dict[str, float]
    open: dict[str, int]
    overdue: dict[str, int]
    calls_per_agent: dict[str, dict[str, int]]


class LostReasons(BaseModel):
    model_config = _example({"from": "2026-10-24T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00",
                             "region": "east", "dealer": None, "reasons": {"moved_away": 3, "price": 2, "not_given": 1},
                             "total": 6, "known_reasons": ["moved_away", "price", "service", "other"]})
    since: datetime = Field(alias="from")
    to: datetime
    region: str | None = None
    dealer: str | None = None
    reasons: dict[str, int]
    total: int = Field(description="the lost-customer calls counted (a sum of `reasons`, not a list total)")
    known_reasons: list[str]


class AtRiskCustomer(BaseModel):
    model_config = _example({"customer_id": CUSTOMER, "region": "east", "signs": ["maintenance_overdue"],
                             "last_visit_at": "2026-03-02T10:00:00+08:00", "lost_at": "2027-03-02T10:00:00+08:00",
                             "days_since_last_visit": 266, "average_interval_days": 150.5,
                             "maintenance_due_at": "2026-09-02T10:00:00+08:00", "vehicles": ["LSVAU2180N2183301"]})
    customer_id: str
    region: str | None = None
    signs: list[str]
    last_visit_at: datetime | None = None
    lost_at: datetime
    days_since_last_visit: int | None = None
    average_interval_days: float | None = None
    maintenance_due_at: datetime | None = None
    vehicles: list[str]


class WeeklyReport(BaseModel):
    model_config = _example({"week": "2026-W47", "generated_at": "2026-11-23T08:00:00+08:00",
                             "figures": {"headline": {"due": 130, "reached": 126, "scored": 98, "satisfied": 96},
                                         "by_region": {"east": {"done": 80, "missed": 2, "scored": 60,
                                                                "satisfied": 59}}}}, extra="allow")
    week: str
    generated_at: datetime
    figures: dict[str, Any] = Field(description="the report's figures (a department gets its own part only)")
    department: str | None = None


class ReturnVisits(BaseModel):
    model_config = _example({"from": "2026-11-16T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00", "due": 130,
                             "reached": 126, "scored": 98, "satisfied": 96}, extra="allow")
    since: datetime = Field(alias="from")
    to: datetime


_ITEM = {"item_id": "FB-7d2c", "followup_id": FID2, "attempt_no": 1, "customer_id": CUSTOMER,
         "vin": "LSVAU2180N2183301", "dealer_id": "D-SH-PUDONG", "region": "east", "timezone": "Asia/Shanghai",
         "owner": AGENT, "department": "after_sales_service", "reasons": ["low_score"], "satisfaction": 2,
         "requests": "希望下次保养提前预约", "category": "service", "serious": False, "complaint_ref": None,
         "state": "answered", "closed_as": None, "opened_at": "2026-11-20T11:00:00+08:00",
         "due_at": "2026-11-22T11:00:00+08:00", "escalated_at": None, "answered_at": T, "answered_by": AGENT,
         "answered_in_time": True, "solution": "已为客户预约周六上午保养", "told_by": "sms",
         "confirmation_followup_id": FID, "closed_at": None,
         "history": [{"action": "opened", "at": "2026-11-20T11:00:00+08:00", "by": AGENT}]}


class FeedbackItem(BaseModel):
    model_config = _example(_ITEM, extra="allow")
    item_id: str
    followup_id: str
    customer_id: str
    owner: str
    department: str
    reasons: list[str]
    state: str = Field(description="open, escalated, answered, closed")
    opened_at: datetime
    due_at: datetime | None = None
    solution: str | None = None
    history: list[dict[str, Any]]


class FeedbackFigures(BaseModel):
    model_config = _example({"from": "2026-10-24T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00", "opened": 12,
                             "low_score": 9, "with_request": 5, "answered_on_call": 3, "answered_in_time": 7,
                             "answered_late": 1, "escalated": 1, "still_open": 1, "confirmed": 6, "complaints": 1,
                             "departments_notified": 11, "answered_in_time_rate": 0.875,
                             "by_department": {"after_sales_service": 8, "sales": 3}})
    since: datetime = Field(alias="from")
    to: datetime
    opened: int
    low_score: int
    with_request: int
    answered_on_call: int
    answered_in_time: int
    answered_late: int
    escalated: int
    still_open: int
    confirmed: int
    complaints: int
    departments_notified: int
    answered_in_time_rate: float | None = None
    by_department: dict[str, int]


class OpenCall(BaseModel):
    followup_id: str
    kind: str
    due_by: datetime
    assigned_to: str | None = None
    claimed_by: str | None = None


_OWNER = {"customer_id": CUSTOMER, "owner": AGENT, "source": "rule:dealer", "reason": "dealer D-SH-PUDONG's agent",
          "assigned_by": "system", "assigned_at": "2026-11-19T16:02:11+08:00", "region": "east",
          "dealer_id": "D-SH-PUDONG", "rule_owner": AGENT, "rule_source": "rule:dealer"}


class CustomerOwner(BaseModel):
    model_config = _example(_OWNER | {"open_calls": [{"followup_id": FID, "kind": "first_visit",
                                                      "due_by": "2026-11-26T23:59:59+08:00", "assigned_to": None,
                                                      "claimed_by": None}]})
    customer_id: str
    owner: str
    source: str = Field(description="rule:dealer, rule:region, rule:default or supervisor")
    reason: str
    assigned_by: str
    assigned_at: datetime
    region: str | None = None
    dealer_id: str | None = None
    rule_owner: str | None = None
    rule_source: str | None = None
    open_calls: list[OpenCall]


class OwnerChange(BaseModel):
    owner: str
    previous_owner: str | None = None
    source: str
    reason: str
    assigned_by: str
    assigned_at: datetime


class OwnerDetail(BaseModel):
    model_config = _example(_OWNER | {"history": [{"owner": AGENT, "previous_owner": None, "source": "rule:dealer",
                                                   "reason": "dealer D-SH-PUDONG's agent", "assigned_by": "system",
                                                   "assigned_at": "2026-11-19T16:02:11+08:00"}]}, extra="allow")
    customer_id: str
    owner: str
    source: str
    reason: str
    assigned_by: str
    assigned_at: datetime
    region: str | None = None
    dealer_id: str | None = None
    history: list[OwnerChange]


class OwnerSet(BaseModel):
    model_config = _example({"customer_id": CUSTOMER, "owner": "li.qiang", "previous_owner": AGENT,
                             "source": "supervisor", "reason": "客户要求换专属顾问", "assigned_by": "liu.yang",
                             "assigned_at": T})
    customer_id: str
    owner: str
    previous_owner: str | None = None
    source: str
    reason: str
    assigned_by: str
    assigned_at: datetime


class CallAssigned(BaseModel):
    model_config = _example({"followup_id": FID, "customer_id": CUSTOMER, "assigned_to": "li.qiang",
                             "previous_agent": None, "reason": "王芳休假", "assigned_by": "liu.yang",
                             "assigned_at": T})
    followup_id: str
    customer_id: str
    assigned_to: str
    previous_agent: str | None = None
    reason: str
    assigned_by: str
    assigned_at: datetime
