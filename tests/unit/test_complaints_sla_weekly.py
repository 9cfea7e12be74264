"""SLA compliance per ISO week (the supervisors' trend): each SLA step counts in the week its
deadline fell in, met against breached; a week without any step due has no figure (None, shown
as "—"), not 100 %. And the KPI mean times in working time on the case's calendar beside the
elapsed time, across a weekend and a public holiday."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.complaints.config import ComplaintRules
from services.complaints.reports import (
    DueRound,
    kpi_figures,
    report_month,
    report_week,
    sla_compliance_between,
    sla_compliance_by_week,
    step_outcomes,
)
from services.complaints.sla import SlaFact, compute, working_seconds
from shared.workcal import WorkingCalendar
from tests.support import in_test_week, iso_week

SH = "Asia/Shanghai"
H = timedelta(hours=1)
WEEK = timedelta(days=7)


def due(ref: str, ack_due: datetime | None, resolve_due: datetime | None, *, acknowledged: datetime | None = None,
        resolved: datetime | None = None, ack_breached: bool = False, resolve_breached: bool = False,
        region: str | None = "华东", rnd: int = 0) -> DueRound:
    return DueRound(ref, f"CS-{ref}", rnd, "after_sales", "medium", "assigned", "DLR-001", region, ack_due,
                    resolve_due, acknowledged, resolved, ack_breached, resolve_breached)


def weeks(*offsets: int) -> list:
    return [report_week(iso_week(in_test_week(0, 0) + k * WEEK), SH) for k in offsets]


@pytest.mark.dates
def test_each_step_counts_in_the_week_its_deadline_fell_in() -> None:
    fri = in_test_week(4, 15)  # Friday 15:00 of the test week
    rounds = [
        # Filed Friday: acknowledged in time this week, resolution due next Tuesday and missed.
        due("a", fri + 2 * H, fri + 4 * 24 * H, acknowledged=fri + H, resolve_breached=True),
        # Acknowledgement missed this week, resolved in time next week.
        due("b", fri + 2 * H, fri + 4 * 24 * H, acknowledged=fri + 3 * H, resolved=fri + 3 * 24 * H,
            ack_breached=True),
        # Resolved before it was acknowledged: the acknowledgement counts as done.
        due("c", fri + 2 * H, fri + 4 * 24 * H, resolved=fri + H, region=None),
    ]
    this, following = sla_compliance_by_week(weeks(0, 1), rounds, SH)
    assert (this["week"], this["met"], this["breached"]) == (iso_week(fri), 2, 1)
    assert this["compliance"] == pytest.approx(2 / 3, abs=1e-4)
    assert this["by_step"]["acknowledge"] == {"met": 2, "breached": 1, "compliance": pytest.approx(2 / 3, abs=1e-4)}
    assert this["by_step"]["resolve"]["compliance"] is None
    assert (following["met"], following["breached"], following["compliance"]) == (2, 1, pytest.approx(0.6667))
    assert following["by_region"] == {"": {"met": 1, "breached": 0, "compliance": 1.0},
                                      "华东": {"met": 1, "breached": 1, "compliance": 0.5}}


@pytest.mark.dates
def test_a_deadline_at_sunday_midnight_shanghai_belongs_to_the_next_week() -> None:
    monday = in_test_week(0, 0) + WEEK
    rounds = [due("a", monday - timedelta(seconds=1), None, ack_breached=True),
              due("b", monday, None, acknowledged=monday - H)]
    this, following = sla_compliance_by_week(weeks(0, 1), rounds, SH)
    assert (this["met"], this["breached"]) == (0, 1) and this["compliance"] == 0.0
    assert (following["met"], following["breached"]) == (1, 0) and following["compliance"] == 1.0


@pytest.mark.dates
def test_a_week_without_a_step_due_has_no_figure_not_a_hundred_percent() -> None:
    fri = in_test_week(4, 15)
    # Not yet due and not done; paused (no deadline); a round reopened before its resolution
    # was due: none of them is decided, so none counts.
    rounds = [due("a", fri + 2 * H, fri + 4 * 24 * H), due("b", None, None),
              due("c", fri - 24 * H, fri + 24 * H, acknowledged=fri - 25 * H, rnd=0)]
    [before, this] = sla_compliance_by_week(weeks(-1, 0), rounds, SH)
    assert (before["due"], before["compliance"], before["by_region"]) == (0, None, {})
    assert (this["due"], this["met"], this["compliance"]) == (1, 1, 1.0)  # only c's acknowledgement
    assert [s.step for s in step_outcomes(rounds)] == ["acknowledge"]
    assert sla_compliance_by_week(weeks(0), [], SH)[0]["compliance"] is None


def test_a_week_is_written_like_2026_w47() -> None:
    week = report_week("2026-W47", SH)
    assert (week.week_start.isoformat(), week.starts_at.isoformat()) == ("2026-11-16", "2026-11-16T00:00:00+08:00")
    assert week.ends_at - week.starts_at == WEEK
    for bad in ("2026-47", "2026-W60", "", "W47"):
        with pytest.raises(ValueError, match="write it like 2026-W47"):
            report_week(bad, SH)


# Working time on the case's calendar: fixed dates of the 2026 holiday schedule (National Day
# 1-7 October, Saturday 10 October a make-up working day); business hours 08:30-12:00, 13:00-17:30.

CN = ZoneInfo(SH)
CALENDAR = WorkingCalendar.load(None)
MEDIUM = ComplaintRules().sla.medium


def at(m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, m, d, hh, mm, tzinfo=CN)


def test_the_mean_times_across_a_weekend_count_only_business_hours() -> None:
    # Filed Friday 11 September 16:30, acknowledged Monday 14 September 09:30.
    figures = compute([SlaFact("filed", at(9, 11, 16, 30), 1), SlaFact("acknowledged", at(9, 14, 9, 30), 2)],
                      MEDIUM, at(9, 14, 12))
    r = figures.current
    assert r.ack_seconds == 65 * 3600  # elapsed
    assert working_seconds(r, r.acknowledged_at, CALENDAR) == 2 * 3600  # Friday 1 h + Monday 1 h
    assert working_seconds(r, r.resolved_at, CALENDAR) is None


def test_the_mean_times_across_national_day_skip_the_holiday_and_count_the_make_up_day() -> None:
    facts = [SlaFact("filed", at(9, 30, 17), 1), SlaFact("acknowledged", at(10, 8, 9), 2),
             SlaFact("pended", at(10, 8, 10), 3), SlaFact("resumed", at(10, 8, 14), 4),
             SlaFact("resolved", at(10, 10, 9), 5)]
    r = compute(facts, MEDIUM, at(10, 12, 9)).current
    # 30 Sep 17:00-17:30, then nothing until Thursday 8 October 08:30.
    assert working_seconds(r, r.acknowledged_at, CALENDAR) == 1 * 3600
    # To resolve: 0.5 h + 8 Oct (8 h less the pause 10:00-14:00, 3 h of it business hours)
    # + 9 Oct 8 h + Saturday 10 Oct (make-up day) 08:30-09:00 0.5 h.
    assert working_seconds(r, r.resolved_at, CALENDAR) == (0.5 + 5 + 8 + 0.5) * 3600
    assert r.resolve_seconds == (10 * 24 - 8 - 4) * 3600  # elapsed active: 9 days 16 h less the pause


def test_the_kpis_name_elapsed_and_working_time_apart() -> None:
    figures = kpi_figures({"mean_ack_seconds": 65 * 3600, "mean_ack_working_seconds": 2 * 3600,
                           "mean_resolve_seconds": None, "mean_resolve_working_seconds": None})
    assert figures["mean_seconds_to_acknowledge"] == 65 * 3600.0
    assert figures["mean_working_seconds_to_acknowledge"] == 7200.0
    assert figures["mean_working_hours_to_acknowledge"] == 2.0
    assert figures["mean_working_seconds_to_resolve"] is None and figures["mean_working_hours_to_resolve"] is None


@pytest.mark.dates
def test_a_months_figure_counts_the_steps_due_in_the_month_only() -> None:
    fri = in_test_week(4, 15)
    start, end = report_month(fri.strftime("%Y-%m"), SH)
    assert start.day == 1 and start <= fri < end and (end.month - start.month) % 12 == 1
    rounds = [due("in", fri + 2 * H, None, acknowledged=fri + H),
              due("before", start - H, None, ack_breached=True),  # the month before
              due("after", end, None, ack_breached=True)]  # the month after's first instant
    figure = sla_compliance_between(start, end, rounds)
    assert (figure["met"], figure["breached"], figure["compliance"]) == (1, 0, 1.0)
    with pytest.raises(ValueError, match="write it like 2026-11"):
        report_month("2026-13", SH)
