"""The return-visit rules and their defaults, named as the work plan names them
(DESIGN.md §4 "Return visits"). Every number here is overridable as AFTERSALES_FOLLOWUP_<NAME>."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.workcal import WorkingCalendar


class FollowUpRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_FOLLOWUP_", extra="ignore")

    # "within three days to one week after the customer picks up the car"
    first_visit_after_days: int = Field(3, ge=0)
    first_visit_within_days: int = Field(7, ge=1)
    # "within 7 days after the first tracking service" (not the same day as the first)
    second_visit_after_days: int = Field(1, ge=0)
    second_visit_within_days: int = Field(7, ge=1)
    # "inform the customer on the day of getting the solution … confirm customer satisfaction"
    confirmation_within_days: int = Field(2, ge=1)
    # "call the customer two weeks in advance" of a campaign
    campaign_call_days_before: int = Field(14, ge=1)
    campaign_call_window_days: int = Field(2, ge=1)
    # maintenance reminder 10 days before the next service is due, by date or km (whichever first)
    maintenance_reminder_days_before: int = Field(10, ge=0)
    # the maintenance cycle when the DMS gives no next due date or km
    maintenance_interval_months: int = Field(6, ge=1)
    maintenance_interval_km: int = Field(10_000, ge=100)
    # assumed daily distance while a vehicle's mileage history is too short to estimate it
    default_km_per_day: float = Field(40.0, gt=0)
    # a customer with no visit for 12 months is "lost": a call asks why
    lost_after_months: int = Field(12, ge=1)
    lost_call_window_days: int = Field(14, ge=1)
    # customers at risk before the 12-month mark (docs/followup.md "Customers at risk"): a vehicle
    # whose next service fell due this many days ago with no visit since (overdue maintenance) …
    at_risk_overdue_maintenance_days: int = Field(30, ge=0)
    # … or falling visit frequency: with at least this many visits on file, the time since the last
    # visit is longer than this factor times the customer's average interval between visits
    at_risk_min_visits: int = Field(3, ge=2)
    at_risk_interval_factor: float = Field(1.5, gt=1)
    # calling hours, customer local time
    calling_hours_start: time = time(9, 0)
    calling_hours_end: time = time(20, 0)
    # the days calls are placed on: "working": the working days of the customer's region's
    # working calendar (shared/calendars/regions.yaml: no public holidays, no weekends, make-up
    # working days 调休 included); "every_day": calling hours on every day
    calling_days: Literal["working", "every_day"] = "working"
    # an unreachable customer: 3 attempts, at least 4 hours apart, then SMS/letter
    unreachable_max_attempts: int = Field(3, ge=1)
    unreachable_retry_hours: float = Field(4, gt=0)
    # not completed by due_by: overdue; still open 2 days later: escalated to the supervisor
    escalate_after_overdue_days: int = Field(2, ge=0)
    escalate_to: str = "supervisor"
    # still open this long after due_by: expired (counted as missed)
    expire_after_overdue_days: int = Field(14, ge=1)
    # a pickup that arrives when its first-visit window closed longer ago than this is history
    # (a DMS import, a backfill): the visit is filed (loyalty, maintenance, lost-customer checks)
    # but no call is scheduled; a late pickup inside the horizon is still called, overdue first
    history_after_days: int = Field(30, ge=1)
    # a reminder or lost-customer check whose moment has already passed when its fact arrives
    # fires this long after now, so that a burst of old facts (an import) settles first: each
    # later visit re-arms it, and only the vehicle's or customer's latest state is acted on.
    # A maintenance reminder whose moment passed longer ago than history_after_days is dropped.
    late_timer_settle_minutes: int = Field(10, ge=0)
    # an agent's claim on a follow-up lasts this long unless renewed
    claim_minutes: int = Field(15, ge=1)
    # one conversation per customer (services/followup/conversation.py): the customer's open
    # follow-ups whose call window has started or starts within this many days are worked in one
    # call, with one claim and one record (0: only those due now)
    conversation_days: int = Field(3, ge=0, le=30)
    # satisfaction: a score of 4 or 5 of 5 counts as satisfied
    satisfied_score: int = Field(4, ge=1, le=5)
    # loyalty: visits in the last 24 months and feedback
    loyalty_window_months: int = Field(24, ge=1)
    gold_min_visits: int = Field(4, ge=1)
    silver_min_visits: int = Field(2, ge=1)
    loyal_min_satisfaction: float = Field(4.0, ge=1, le=5)
    # queue priority by kind (higher first after overdue), loyal customers get a bonus
    priority_complaint_confirmation: int = 90
    priority_first_visit: int = 60
    priority_second_visit: int = 50
    priority_campaign_call: int = 40
    priority_maintenance_reminder: int = 30
    priority_lost_customer: int = 20
    priority_gold_bonus: int = 8
    priority_silver_bonus: int = 4
    # the weekly written report to the departments: every Monday 08:00 (Asia/Shanghai)
    weekly_report_weekday: int = Field(0, ge=0, le=6)
    weekly_report_time: time = time(8, 0)
    weekly_report_timezone: str = "Asia/Shanghai"
    # Feedback items (customer concerns), work plan: "the customer's requirements, hopes or
    # complaints … must be clearly recorded and handled in time … if it still can't be solved, it
    # should be reported to the business supervisor within two days … and inform the customer on
    # the day of getting the solution"; "the customer service department will contact the
    # customer again … to confirm customer satisfaction". A reached call scored at or below the
    # threshold (1-5), or with a request written on it, opens an item.
    feedback_score_threshold: int = Field(3, ge=1, le=5)
    # a score at or below this one (or the agent's flag) is serious: it becomes a complaint case
    feedback_serious_score: int = Field(1, ge=1, le=5)
    feedback_escalate_within_days: float = Field(2, gt=0)
    # "working": the 2 days are working days on the customer's region's working calendar
    # (shared/calendars); "calendar": around the clock
    feedback_deadline_clock: Literal["working", "calendar"] = "working"
    feedback_escalate_to: str = "supervisor"
    # the confirmation call: from 3 days after the answer, within 4 more days
    feedback_confirm_after_days: int = Field(3, ge=0)
    feedback_confirm_within_days: int = Field(4, ge=1)
    # the responsible department by the item's category (as complaints route cases), else the fallback
    feedback_departments: dict[str, str] = {
        "product_quality": "quality_inspection", "repair_quality": "after_sales_service",
        "service_attitude": "customer_service", "parts_supply": "parts_warehouse", "delay": "after_sales_service",
        "price": "sales", "other": "customer_service",
    }
    feedback_department_fallback: str = "after_sales_service"
    priority_feedback_answer: int = 85
    priority_feedback_confirmation: int = 80
    # KPI gauges cover the last 30 days
    kpi_window_days: int = Field(30, ge=1)


@dataclass(frozen=True)
class FollowUpDeps:
    rules: FollowUpRules
    # a region's working calendar (its calling days); tests may hand in their own
    calendars: Callable[[str | None], WorkingCalendar] = WorkingCalendar.load
