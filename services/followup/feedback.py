"""Feedback items (customer concerns) as plain rules: which reached call opens one, who owns it,
when it goes to the supervisor, and the states it moves through. No I/O here.

    open ──(solution recorded)──▶ answered ──(confirmation call: satisfied / unreachable)──▶ closed
     │  ╲                          ▲   │
     │   (2 days, unanswered)      │   └──(confirmation call: not satisfied)──▶ open (reopened)
     │     ▼                       │
     │   escalated ──(solution)────┘
     └──(answered on the call, or serious: a complaint case)──▶ closed at once
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.followup.config import FollowUpRules
from services.followup.domain import CallingDays, Window, next_callable
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import FeedbackItemState, FeedbackReason
from shared.workcal import WorkingCalendar

# Calls that do not open items of their own: a complaint's confirmation belongs to the complaint's
# loop, and an item's own answer and confirmation calls act on that item.
NOT_OPENING = frozenset({"complaint_confirmation", "feedback_answer", "feedback_confirmation"})
ClosedAs = Literal["answered_on_call", "confirmed", "unconfirmed", "complaint"]


class FeedbackRefused(Exception):
    """A step the item's state does not allow: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Opening:
    """What a reached call found: why an item opens, and how it starts."""

    reasons: list[FeedbackReason]
    serious: bool
    department: str
    answered_on_call: bool


def opening(kind: str, satisfaction: int | None, requests: str | None, *, category: str | None = None,
            serious_flag: bool = False, answered_on_call: bool = False, department: str | None = None,
            rules: FollowUpRules) -> Opening | None:
    """A score at or below the threshold, or a request written on the call, opens an item (None:
    nothing to track). A score at or below the serious score, or the agent's flag, makes it serious."""
    if kind in NOT_OPENING:
        return None
    reasons: list[FeedbackReason] = []
    if satisfaction is not None and satisfaction <= rules.feedback_score_threshold:
        reasons.append("low_score")
    if requests is not None and requests.strip():
        reasons.append("request")
    if not reasons and not serious_flag:
        return None
    serious = serious_flag or (satisfaction is not None and satisfaction <= rules.feedback_serious_score)
    return Opening(reasons or ["request"], serious, department or responsible_department(category, rules),
                   answered_on_call and not serious)


def responsible_department(category: str | None, rules: FollowUpRules) -> str:
    return rules.feedback_departments.get(category or "", rules.feedback_department_fallback)


def item_id(attempt_id: str) -> str:
    """One item per call: a repeated request records nothing new."""
    return str(uuid5(AFTERSALES_NAMESPACE, f"feedback-item:{attempt_id}"))


def escalate_at(opened_at: datetime, rules: FollowUpRules, calendar: WorkingCalendar | None = None) -> datetime:
    """Not answered within 2 days: the business supervisor is asked for a solution. On a working
    calendar the 2 days are working days (business hours; nights, weekends and public holidays
    stand still): a call on a Friday afternoon reaches the supervisor on Tuesday afternoon."""
    within = timedelta(days=rules.feedback_escalate_within_days)
    if calendar is None:
        return opened_at + within
    return calendar.add_working_time(opened_at, calendar.working_duration(within))


def answer_call_window(answered_at: datetime, zone: str, rules: FollowUpRules, days: CallingDays) -> Window:
    """The customer without SMS is called on the day the solution is found: from now to the end of
    today's calling hours (the next calling day's, when today's are over or today is a holiday)."""
    start = next_callable(answered_at, zone, rules, days)
    local = start.astimezone(ZoneInfo(zone))
    end = datetime.combine(local.date(), rules.calling_hours_end, tzinfo=local.tzinfo)
    return Window(answered_at, max(end, start + timedelta(hours=1)))


def confirmation_window(answered_at: datetime, rules: FollowUpRules) -> Window:
    """The customer is called again a few days after the answer to confirm they are satisfied."""
    due_from = answered_at + timedelta(days=rules.feedback_confirm_after_days)
    return Window(due_from, due_from + timedelta(days=rules.feedback_confirm_within_days))


@dataclass
class Item:
    """A feedback item's state and the moves it allows (each returns what changed; the caller
    writes it and publishes the event)."""

    item_id: str
    state: FeedbackItemState
    owner: str
    opened_at: datetime
    due_at: datetime | None
    answered_at: datetime | None = None
    closed_as: ClosedAs | None = None
    history: list[dict[str, object]] = field(default_factory=list)

    def note(self, at: datetime, action: str, by: str, **more: object) -> None:
        self.history.append({"at": at.isoformat(), "action": action, "by": by,
                             **{k: v for k, v in more.items() if v is not None}})

    def may_answer(self, who: str, supervisor: bool) -> None:
        if self.state not in ("open", "escalated"):
            raise FeedbackRefused(409, f"feedback item {self.item_id} is {self.state}"
                                       f"{' (' + self.closed_as + ')' if self.closed_as else ''}; "
                                       "only an open or escalated item takes a solution")
        if not supervisor and who != self.owner:
            raise FeedbackRefused(403, f"feedback item {self.item_id} belongs to {self.owner}; only its owner "
                                       "or a supervisor records its solution")

    def answer(self, at: datetime, by: str, *, supervisor: bool) -> bool:
        """The solution is recorded; True when in time (before the escalation deadline)."""
        self.may_answer(by, supervisor)
        in_time = self.state == "open" and (self.due_at is None or at <= self.due_at)
        self.state, self.answered_at, self.due_at = "answered", at, None
        self.note(at, "answered", by, in_time=in_time)
        return in_time

    def escalate(self, at: datetime, to: str) -> bool:
        """The deadline passed unanswered: False when the item has moved on (nothing to do)."""
        if self.state != "open" or self.due_at is None or at < self.due_at:
            return False
        self.state = "escalated"
        self.note(at, "escalated", "system", to=to)
        return True

    def confirm(self, at: datetime, by: str, satisfied: bool | None, reached: bool,
                rules: FollowUpRules, calendar: WorkingCalendar | None = None) -> ClosedAs | None:
        """The confirmation call's outcome: closed (confirmed, or unconfirmed when the customer
        could not be reached), or, not satisfied, reopened with a new deadline (None)."""
        if self.state != "answered":
            raise FeedbackRefused(409, f"feedback item {self.item_id} is {self.state}; it has no answer to confirm")
        if reached and satisfied is False:
            self.state, self.due_at, self.answered_at = "open", escalate_at(at, rules, calendar), None
            self.note(at, "reopened", by)
            return None
        self.state, self.closed_as = "closed", "confirmed" if reached else "unconfirmed"
        self.note(at, "closed", by, closed_as=self.closed_as, satisfied=satisfied)
        return self.closed_as

    def close_at_once(self, at: datetime, by: str, how: ClosedAs) -> None:
        """Answered on the call, or handed to the complaints service as a case."""
        self.state, self.closed_as, self.due_at = "closed", how, None
        self.note(at, "closed", by, closed_as=how)
