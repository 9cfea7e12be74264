"""The complaint SLA per severity, on the working calendar: business hours, weekends, public
holidays and make-up working days for low/medium/high; around the clock for critical cases.
Fixed dates (the 2026 holiday schedule), so no test moment is involved."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.complaints.config import ComplaintRules, SlaPolicy
from services.complaints.sla import SlaFact, compute

SH = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
RULES = ComplaintRules()


def at(m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, m, d, hh, mm, tzinfo=SH)


def ladder(severity: str, *steps: tuple[str, datetime]) -> list[tuple[int, datetime, str]]:
    facts = [SlaFact(kind, moment, seq) for seq, (kind, moment) in enumerate(steps, start=1)]
    figures = compute(facts, RULES.sla.for_severity(severity), steps[0][1] + timedelta(days=60))
    return [(s.level, s.due, s.breach) for s in figures.steps]


def test_the_severity_table_keeps_the_work_plan_clock_for_ordinary_cases_and_hours_for_critical() -> None:
    medium, critical = RULES.sla.medium, RULES.sla.critical
    assert (medium.clock, medium.acknowledge_within, medium.resolve_within) == ("working", 4 * H, timedelta(days=2))
    assert RULES.sla.low == medium
    assert (RULES.sla.high.acknowledge_within, RULES.sla.high.resolve_within) == (2 * H, timedelta(days=1))
    assert critical.clock == "continuous"
    to_the_top = critical.resolve_within + critical.supervisor_within + critical.department_head_within
    assert to_the_top <= 8 * H, "a fire or injury case reaches the superior leader within hours"


def test_an_ordinary_case_filed_on_a_friday_evening_before_qingming_waits_for_tuesday() -> None:
    # Friday 3 April 19:00; 4–6 April are off, Tuesday 7 April is the next working day (08:30).
    assert ladder("medium", ("filed", at(4, 3, 19))) == [
        (1, at(4, 7, 13, 30), "acknowledge"),  # 4 business hours, lunch 12:00–13:00 excluded
        (2, at(4, 8, 17, 30), "resolve"),  # two working days: all of Tuesday and Wednesday
        (3, at(4, 9, 17, 30), "resolve"),  # the department head's working day
    ]


def test_the_make_up_saturday_before_the_spring_festival_counts_and_the_festival_does_not() -> None:
    # Friday 13 February 19:00: Saturday 14 February is a make-up working day, 15–23 are off.
    assert ladder("medium", ("filed", at(2, 13, 19))) == [
        (1, at(2, 14, 13, 30), "acknowledge"),
        (2, at(2, 24, 17, 30), "resolve"),
        (3, at(2, 25, 17, 30), "resolve"),
    ]


def test_a_critical_case_climbs_through_the_night_and_the_holiday() -> None:
    filed = at(4, 3, 19)
    assert ladder("critical", ("filed", filed)) == [
        (1, filed + 1 * H, "acknowledge"), (2, filed + 4 * H, "resolve"), (3, filed + 5 * H, "resolve"),
    ]
    acknowledged = ladder("critical", ("filed", filed), ("acknowledged", filed + 0.5 * H))
    assert acknowledged == [(1, filed + 4 * H, "resolve"), (2, filed + 5 * H, "resolve"), (3, filed + 6 * H, "resolve")]


def test_a_pause_over_a_weekend_costs_no_working_time_twice() -> None:
    # Filed Thursday 19 Nov 10:00, pended Thursday 14:00 (3 business hours used), resumed Monday 10:00.
    steps = ladder("medium", ("filed", at(11, 19, 10)), ("acknowledged", at(11, 19, 11)),
                   ("pended", at(11, 19, 14)), ("resumed", at(11, 23, 10)))
    # 16 business hours to resolve: 3 before the pause; 13 from Monday 10:00 (6.5 on Monday,
    # 3.5 on Tuesday morning, 3 after lunch) → Tuesday 16:00.
    assert steps[0] == (1, at(11, 24, 16), "resolve")


def test_an_override_names_only_what_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSALES_COMPLAINTS_SLA__CRITICAL__ACKNOWLEDGE_WITHIN", "PT30M")
    monkeypatch.setenv("AFTERSALES_COMPLAINTS_SLA__LOW__CLOCK", "continuous")
    rules = ComplaintRules()
    assert rules.sla.critical.acknowledge_within == timedelta(minutes=30)
    assert rules.sla.critical.clock == "continuous" and rules.sla.critical.resolve_within == 4 * H
    assert rules.sla.low.clock == "continuous" and rules.sla.medium.clock == "working"


def test_a_bad_clock_is_refused_with_the_choices() -> None:
    with pytest.raises(ValidationError, match="'working' or 'continuous'"):
        SlaPolicy(clock="office")  # type: ignore[arg-type]
