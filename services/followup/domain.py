"""Return-visit rules as pure functions: when each call is due, who may be called now, what a
call's outcome does, how loyal a customer is, when maintenance is due. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal, Protocol, get_args
from zoneinfo import ZoneInfo

from services.followup.config import FollowUpRules
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5
from shared.events.types import LostReason
from shared.timeutil import add_months, next_time_within

Kind = Literal["first_visit", "second_visit", "complaint_confirmation", "campaign_call", "lost_customer",
               "maintenance_reminder", "feedback_answer", "feedback_confirmation"]
# A follow-up's deadlines, in order: it becomes due, then overdue, is escalated, and expires.
Step = Literal["due", "overdue", "escalate", "expire"]
Tier = Literal["gold", "silver", "standard"]
TIER_RANK: dict[str, int] = {"gold": 0, "silver": 1, "standard": 2}


@dataclass(frozen=True)
class Window:
    due_from: datetime
    due_by: datetime


@dataclass(slots=True)
class NewFollowUp:
    """A follow-up to schedule: why, for whom, and when it is due."""

    followup_id: str
    kind: Kind
    customer_id: str
    reason_event_id: str
    due_from: datetime
    due_by: datetime
    priority: int
    event_at: datetime  # when its reason happened (pickup, delivery, resolution …)
    timezone: str = "Asia/Shanghai"
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    campaign_id: str | None = None
    complaint_id: str | None = None
    under_warranty: bool | None = None
    mileage_km: int | None = None
    tier: str | None = None
    reason_type: str | None = None  # the event type it follows (VehiclePickedUp, VehicleSold, …)
    campaign_kind: str | None = None  # a campaign call's campaign kind (recall, free_inspection_week, …)


def next_step(step: Step | None, due_from: datetime, due_by: datetime,
              rules: FollowUpRules) -> tuple[Step | None, datetime | None]:
    """The deadline after `step` (None: just scheduled): due at due_from, overdue at due_by,
    escalated 2 days later, expired 14 days after due_by; nothing after expiry."""
    if step is None:
        return "due", due_from
    if step == "due":
        return "overdue", due_by
    if step == "overdue":
        return "escalate", due_by + timedelta(days=rules.escalate_after_overdue_days)
    if step == "escalate":
        return "expire", due_by + timedelta(days=rules.expire_after_overdue_days)
    return None, None


def followup_id(kind: str, reason: str) -> str:
    """One follow-up per (kind, reason): a replayed or repeated cause schedules nothing new."""
    return str(uuid5(AFTERSALES_NAMESPACE, f"followup:{kind}:{reason}"))


# -- when calls are due ----------------------------------------------------------------------
def first_visit_window(picked_up_at: datetime, rules: FollowUpRules) -> Window:
    """First return visit: between pickup + 3 days and pickup + 7 days."""
    return Window(picked_up_at + timedelta(days=rules.first_visit_after_days),
                  picked_up_at + timedelta(days=rules.first_visit_within_days))


def delivery_window(sold_at: datetime, rules: FollowUpRules) -> Window:
    """After a sale the first call follows the delivery as it follows a pickup: 3 to 7 days
    after the customer drives the car away ("picks up the car and leaves the factory")."""
    return first_visit_window(sold_at, rules)


def consultation_window(consulted_at: datetime, rules: FollowUpRules) -> Window:
    """"… or after business interview and consultation": the same 3 to 7 days."""
    return first_visit_window(consulted_at, rules)


def second_visit_window(first_completed_at: datetime, rules: FollowUpRules) -> Window:
    """Second visit: within 7 days after the first call completed (however late that was)."""
    return Window(first_completed_at + timedelta(days=rules.second_visit_after_days),
                  first_completed_at + timedelta(days=rules.second_visit_within_days))


def confirmation_window(resolved_at: datetime, rules: FollowUpRules) -> Window:
    """The customer is asked, soon after the resolution, whether it satisfied them."""
    return Window(resolved_at, resolved_at + timedelta(days=rules.confirmation_within_days))


def campaign_window(starts_at: datetime, announced_at: datetime, rules: FollowUpRules) -> Window | None:
    """A call 14 days before the campaign starts; if it was announced later than that, as soon
    as it is announced. None when the campaign has already started."""
    if announced_at >= starts_at:
        return None
    due_from = max(starts_at - timedelta(days=rules.campaign_call_days_before), announced_at)
    due_by = min(due_from + timedelta(days=rules.campaign_call_window_days), starts_at)
    return Window(due_from, due_by)


@dataclass(frozen=True)
class MaintenanceDue:
    due_at: datetime | None  # by date (from the DMS, or the default cycle)
    due_km: int | None  # by distance
    estimated_due_at: datetime  # the earlier of the date and the day the km is estimated to be reached
    basis: Literal["date", "km"]
    remind_at: datetime


def km_per_day(history: list[tuple[datetime, int]], rules: FollowUpRules) -> float:
    """Average daily distance from the mileage history (first to last reading), or the default
    while there is too little history to say."""
    readings = sorted(history)
    if len(readings) < 2:
        return rules.default_km_per_day
    (first_at, first_km), (last_at, last_km) = readings[0], readings[-1]
    days = (last_at - first_at).total_seconds() / 86400
    if days < 7 or last_km <= first_km:
        return rules.default_km_per_day
    return (last_km - first_km) / days


def maintenance_due(last_visit_at: datetime, mileage_km: int, next_due_at: datetime | None,
                    next_due_km: int | None, history: list[tuple[datetime, int]], rules: FollowUpRules) -> MaintenanceDue:
    """Next service by date or by km, whichever comes first; the reminder 10 days before."""
    due_at = next_due_at or add_months(last_visit_at, rules.maintenance_interval_months)
    due_km = next_due_km if next_due_km is not None else mileage_km + rules.maintenance_interval_km
    rate = km_per_day(history + [(last_visit_at, mileage_km)], rules)
    km_due_at = last_visit_at + timedelta(days=max(0.0, (due_km - mileage_km) / rate))
    basis: Literal["date", "km"] = "km" if km_due_at < due_at else "date"
    estimated = min(due_at, km_due_at)
    return MaintenanceDue(due_at, due_km, estimated,
                          basis, max(last_visit_at, estimated - timedelta(days=rules.maintenance_reminder_days_before)))


def lost_after(last_contact_at: datetime, rules: FollowUpRules) -> datetime:
    """A customer with no visit for 12 months is lost."""
    return add_months(last_contact_at, rules.lost_after_months)


def lost_window(at: datetime, rules: FollowUpRules) -> Window:
    return Window(at, at + timedelta(days=rules.lost_call_window_days))


# -- lost customers: why they left, and who may leave next -------------------------------------
LOST_REASONS: tuple[LostReason, ...] = get_args(LostReason)
RiskSign = Literal["overdue_maintenance", "falling_visit_frequency"]


@dataclass(frozen=True)
class AtRisk:
    """A customer not lost yet (a visit in the last 12 months) who shows a sign of leaving."""

    customer_id: str
    signs: list[RiskSign]
    last_visit_at: datetime
    lost_at: datetime  # the 12-month mark: a lost-customer call is scheduled then
    maintenance_due_at: datetime | None  # the earliest overdue service among their vehicles
    average_interval_days: float | None  # between their visits on file
    days_since_last_visit: float


def at_risk(customer_id: str, last_contact_at: datetime, visits: list[datetime],
            maintenance_due: list[datetime], now: datetime, rules: FollowUpRules) -> AtRisk | None:
    """Before the 12-month mark, a customer is at risk on either sign:
    overdue maintenance: a vehicle's next service (by date or estimated km, from its last visit)
    fell due `at_risk_overdue_maintenance_days` or more ago;
    falling visit frequency: with `at_risk_min_visits` visits on file, the time since the last one
    is longer than `at_risk_interval_factor` times their average interval. None: not at risk, or
    already lost (the lost-customer call takes over)."""
    lost_at = lost_after(last_contact_at, rules)
    if not visits or lost_at <= now:
        return None
    ordered = sorted(visits)
    last = ordered[-1]
    since = now - last
    signs: list[RiskSign] = []
    # each vehicle's due date is estimated from its own last visit: overdue means no visit since
    overdue = sorted(d for d in maintenance_due if d <= now - timedelta(days=rules.at_risk_overdue_maintenance_days))
    if overdue:
        signs.append("overdue_maintenance")
    average = None
    if len(ordered) >= rules.at_risk_min_visits:
        average = (last - ordered[0]) / (len(ordered) - 1)
        if average > timedelta(0) and since > average * rules.at_risk_interval_factor:
            signs.append("falling_visit_frequency")
    if not signs:
        return None
    return AtRisk(customer_id, signs, last, lost_at, overdue[0] if overdue else None,
                  None if average is None else round(average / timedelta(days=1), 1),
                  round(since / timedelta(days=1), 1))


# -- calling hours and attempts --------------------------------------------------------------
class CallingDays(Protocol):
    """Which days calls are placed on: a region's working calendar (shared/workcal.py:
    weekdays that are no public holiday, and the make-up working days, 调休上班)."""

    def is_working_day(self, day: date) -> bool: ...


class EveryDay:
    """Every day is a calling day (rules.calling_days = "every_day")."""

    def is_working_day(self, day: date) -> bool:
        return True


EVERY_DAY = EveryDay()


def calling_days(region: str | None, rules: FollowUpRules,
                 calendars: Callable[[str | None], CallingDays]) -> CallingDays:
    """The calling days of a customer in `region`: its working calendar, or every day."""
    return calendars(region) if rules.calling_days == "working" else EVERY_DAY
# A calendar with no working day in this many days is wrong, not a long holiday.
_MAX_IDLE_DAYS = 366


def in_calling_hours(moment: datetime, zone: str, rules: FollowUpRules, days: CallingDays) -> bool:
    """Inside calling hours of a calling day, both in the customer's zone."""
    local = moment.astimezone(ZoneInfo(zone))
    return days.is_working_day(local.date()) and \
        rules.calling_hours_start <= local.time().replace(tzinfo=None) < rules.calling_hours_end


def next_callable(moment: datetime, zone: str, rules: FollowUpRules, days: CallingDays) -> datetime:
    """The earliest instant >= moment inside calling hours of a calling day in the customer's
    zone: a public holiday or a weekend is skipped, a make-up working day is called."""
    tz = ZoneInfo(zone)
    at = next_time_within(moment, zone, rules.calling_hours_start, rules.calling_hours_end)
    for _ in range(_MAX_IDLE_DAYS):
        if days.is_working_day(at.astimezone(tz).date()):
            return at
        tomorrow = datetime.combine(at.astimezone(tz).date() + timedelta(days=1), time(0), tzinfo=tz)
        at = next_time_within(tomorrow, zone, rules.calling_hours_start, rules.calling_hours_end)
    raise ValueError(f"no calling day within {_MAX_IDLE_DAYS} days after {moment.isoformat()}: check the calendar")


def _end_of_calling_hours(day: date, zone: str, rules: FollowUpRules) -> datetime:
    tz = ZoneInfo(zone)
    return datetime.combine(day, rules.calling_hours_end, tzinfo=tz).astimezone(ZoneInfo("UTC")).astimezone(tz)


def calling_window(window: Window, zone: str, days: CallingDays, rules: FollowUpRules) -> Window:
    """A window as the plan counts it (calendar days: "3 to 7 days after pickup") placed on
    calling days: it opens at its first calling moment (a window opening on a holiday opens
    at 09:00 of the next working day), and a window ending on a day without calls (a public
    holiday, a weekend) is extended to the end of calling hours of the next working day. A
    window left with no calling time at all closes at the end of its first calling day."""
    due_from = next_callable(window.due_from, zone, rules, days)
    due_by = window.due_by
    last_day = due_by.astimezone(ZoneInfo(zone)).date()
    if not days.is_working_day(last_day):
        due_by = _end_of_calling_hours(next_callable(due_by, zone, rules, days).astimezone(ZoneInfo(zone)).date(),
                                       zone, rules)
    if due_by <= due_from:
        due_by = _end_of_calling_hours(due_from.astimezone(ZoneInfo(zone)).date(), zone, rules)
    return Window(due_from, due_by)


Outcome = Literal["reached", "unreachable", "wrong_number", "call_back_later"]


@dataclass(frozen=True)
class AfterAttempt:
    """What an attempt leaves behind: completed with an outcome, or the next attempt's time."""

    completes_as: Literal["reached", "unreachable", "wrong_number"] | None
    next_attempt_at: datetime | None
    counts_as_unreachable: bool


def after_attempt(outcome: Outcome, attempted_at: datetime, unreachable_before: int, zone: str,
                  call_back_at: datetime | None, rules: FollowUpRules, days: CallingDays) -> AfterAttempt:
    """Reached or a wrong number completes the follow-up. Unreachable is tried again at least
    4 hours later inside calling hours of a calling day (a retry that would fall on a holiday
    waits for the next working day), up to 3 attempts, then completes as unreachable (the
    notifier sends the SMS/letter). Call back later waits for the time the customer named."""
    if outcome in ("reached", "wrong_number"):
        return AfterAttempt(outcome, None, False)
    if outcome == "call_back_later":
        assert call_back_at is not None
        return AfterAttempt(None, call_back_at, False)
    if unreachable_before + 1 >= rules.unreachable_max_attempts:
        return AfterAttempt("unreachable", None, True)
    earliest = attempted_at + timedelta(hours=rules.unreachable_retry_hours)
    return AfterAttempt(None, next_callable(earliest, zone, rules, days), True)


def is_satisfied(satisfaction: int | None, explicit: bool | None, rules: FollowUpRules) -> bool | None:
    if explicit is not None:
        return explicit
    if satisfaction is None:
        return None
    return satisfaction >= rules.satisfied_score


# -- loyalty -----------------------------------------------------------------------------------
def loyalty_tier(visits_in_window: int, average_satisfaction: float | None, open_complaints: int,
                 rules: FollowUpRules) -> Tier:
    """Loyalty from return visits to the workshop in the last 24 months and the customer's
    feedback: gold from 4 visits, silver from 2, and never with an open complaint or poor
    feedback."""
    if open_complaints or (average_satisfaction is not None and average_satisfaction < rules.loyal_min_satisfaction):
        return "standard"
    if visits_in_window >= rules.gold_min_visits:
        return "gold"
    if visits_in_window >= rules.silver_min_visits:
        return "silver"
    return "standard"


def priority(kind: str, tier: Tier, rules: FollowUpRules) -> int:
    base = int(getattr(rules, f"priority_{kind}"))
    bonus = {"gold": rules.priority_gold_bonus, "silver": rules.priority_silver_bonus}.get(tier, 0)
    return min(100, base + bonus)


def queue_order(overdue: bool, tier: str, due_by: datetime, priority_: int) -> tuple[int, int, datetime, int]:
    """Overdue first, then loyalty tier, then due_by (then priority)."""
    return (0 if overdue else 1, TIER_RANK.get(tier, 2), due_by, -priority_)


# -- warranty --------------------------------------------------------------------------------
def under_warranty(sold_at: datetime | None, warranty_months: int | None, warranty_km: int | None,
                   at: datetime, mileage_km: int | None) -> bool | None:
    if sold_at is None or warranty_months is None or warranty_km is None:
        return None
    return at < add_months(sold_at, warranty_months) and (mileage_km or 0) < warranty_km


# -- weekly report -----------------------------------------------------------------------------
def next_weekly_report(after: datetime, rules: FollowUpRules) -> datetime:
    """The next report instant (Monday 08:00 in the report's zone) strictly after `after`."""
    zone = ZoneInfo(rules.weekly_report_timezone)
    local = after.astimezone(zone)
    day: date = local.date() + timedelta(days=(rules.weekly_report_weekday - local.weekday()) % 7)
    candidate = datetime.combine(day, rules.weekly_report_time, tzinfo=zone)
    if candidate <= after:
        candidate = datetime.combine(day + timedelta(days=7), rules.weekly_report_time, tzinfo=zone)
    return candidate


def report_week(report_at: datetime, rules: FollowUpRules) -> tuple[datetime, datetime]:
    """The week a report made at `report_at` covers: the seven days before it."""
    return report_at - timedelta(days=7), report_at

