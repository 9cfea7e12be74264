"""The early-warning detector's decisions: the sequential test (its boundary over a cell's
reports, its level per cell-month), the repeated test's budget split over looks (and cells),
the look schedule, the burst rule, one open alert per cell, the alert lifecycle, units in
service. Calendar moments come from the test moment."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.quality.domain import (
    Cell,
    CellEvidence,
    Exposure,
    IllegalTransition,
    MonitorPolicy,
    ReportPoint,
    alert_id_for,
    allowed_actions,
    cell_look,
    cells_for,
    decide,
    find_burst,
    poisson_look,
    sequential_look,
    transition,
)
from services.quality.statistics import poisson_pmf, poisson_sf, sequential_critical_count
from tests.support import TEST_NOW, day_at

pytestmark = pytest.mark.dates


# --- the false-alarm budget ------------------------------------------------------------


@pytest.mark.parametrize(("interval", "looks"), [(1, 31), (2, 16), (7, 5), (10, 4), (14, 3), (31, 1)])
def test_the_monthly_alpha_is_split_evenly_over_the_looks_a_month_can_hold(interval: int, looks: int) -> None:
    policy = MonitorPolicy(alpha_month=0.01, look_interval_days=interval)
    assert policy.looks_per_month == looks
    assert policy.alpha_look() == pytest.approx(0.01 / looks)


@pytest.mark.parametrize("interval", [1, 2, 3, 5, 7, 10, 14, 30, 31])
def test_no_31_day_window_holds_more_look_instants_than_the_budget_was_split_over(interval: int) -> None:
    """The Bonferroni bound needs this: count the look instants in every 31-day window of a year."""
    policy = MonitorPolicy(look_interval_days=interval)
    instants = []
    moment = policy.look_at(day_at(0))
    while moment < day_at(0, days=425):
        instants.append(moment)
        moment = policy.look_at(moment)
    for start in (day_at(0) + timedelta(hours=h) for h in range(0, 24 * 365, 7)):
        inside = [t for t in instants if start < t <= start + timedelta(days=31)]
        assert len(inside) <= policy.looks_per_month


def test_controlling_across_cells_also_divides_the_budget_by_the_cells_monitored() -> None:
    per_cell = MonitorPolicy(alpha_month=0.01, look_interval_days=7)
    family = MonitorPolicy(alpha_month=0.01, look_interval_days=7, control_across_cells=True)
    assert per_cell.alpha_look(400) == pytest.approx(0.002)
    assert family.alpha_look(400) == pytest.approx(0.002 / 400)
    assert family.alpha_look(0) == pytest.approx(0.002)


def test_weekly_looks_end_on_monday_midnight_local_the_iso_week_boundary() -> None:
    weekly = MonitorPolicy(look_interval_days=7)
    monday = 7 - TEST_NOW.weekday()  # days to the next Monday (a Monday's look is the next one)
    assert weekly.look_at(day_at(10)) == day_at(0, days=monday)
    assert weekly.look_at(day_at(0, days=monday)) == day_at(0, days=monday + 7)
    assert weekly.look_at(day_at(0, days=monday) - timedelta(microseconds=1)) == day_at(0, days=monday)
    # Sunday 23:30 in Shanghai is Sunday 15:30 UTC: same look.
    assert weekly.look_at(day_at(23, 30, days=monday - 1).astimezone(UTC)) == day_at(0, days=monday)
    daily = MonitorPolicy(look_interval_days=1)
    assert daily.look_at(day_at(23)) == day_at(0, days=1)
    assert daily.look_at(day_at(0)) == day_at(0, days=1)


# --- one look ----------------------------------------------------------------------------


def test_a_look_alarms_when_the_p_value_is_within_the_per_look_alpha() -> None:
    # 200 controllers for 2.5 unit-months each at 0.0015: 0.75 expected.
    look = poisson_look(6, 200, 500.0, 0.0015, 0.002, 3)
    assert look.expected == pytest.approx(0.75)
    assert look.p_value == pytest.approx(poisson_sf(6, 0.75))
    assert look.alarm and look.p_value <= 0.002
    assert look.statistic == pytest.approx(8.0)
    assert look.critical_count == 5  # P(X>=5 | 0.75) = 0.0011 <= 0.002 < P(X>=4 | 0.75) = 0.0073
    quiet = poisson_look(4, 200, 500.0, 0.0015, 0.002, 3)
    assert not quiet.alarm and quiet.p_value > 0.002


def test_too_few_reports_never_alarm_however_small_the_expectation() -> None:
    look = poisson_look(2, 10, 0.5, 0.0015, 0.002, 3)
    assert look.p_value < 1e-6 and not look.alarm
    assert look.critical_count == 3


def test_a_cell_with_no_unit_known_in_service_is_not_tested() -> None:
    look = poisson_look(5, 0, 0.0, 0.0015, 0.002, 3)
    assert look.p_value is None and not look.alarm and look.statistic is None


# --- the sequential test -------------------------------------------------------------------

DAY = 86_400.0
MONTH = 30.4375 * DAY
T0 = day_at(0).timestamp()


def test_the_sequential_test_is_the_default_with_daily_looks_and_the_whole_budget_per_31_days() -> None:
    policy = MonitorPolicy()
    assert (policy.test, policy.look_interval_days, policy.window_days) == ("sequential", 1, 31)
    assert policy.threshold() == pytest.approx(0.01)
    assert MonitorPolicy(look_interval_days=7).window_days == 35  # five weekly looks cover 35 days
    assert MonitorPolicy(control_across_cells=True).threshold(400) == pytest.approx(0.01 / 400)
    repeated = MonitorPolicy(test="repeated", look_interval_days=7)
    assert repeated.threshold() == pytest.approx(0.002) == repeated.alpha_look()


def test_a_sequential_look_alarms_when_a_report_brings_the_count_over_the_boundary() -> None:
    # 100 controllers in service from day 0 at 0.0015 a unit-month: L(t) = 0.15 t (months);
    # a 31-day window expects w = 0.15 x 31 / 30.4375 = 0.1528 reports.
    exposure = Exposure([T0] * 100)
    reports = [T0 + d * DAY for d in (2, 6, 10)]
    look = sequential_look(reports, exposure, None, T0 + 11 * DAY, 0.0015, 30.4375, 0.01, 31, 3)
    third = 0.15 * 10 / 30.4375
    w = 0.15 * 31 / 30.4375
    assert look.test == "sequential" and look.alarm
    assert look.p_value == pytest.approx(w * poisson_pmf(2, third), rel=1e-9)  # 1.8e-4: the third report
    assert look.p_value <= look.threshold == 0.01
    assert look.crossed_at == datetime.fromtimestamp(reports[2], UTC)
    assert look.expected == pytest.approx(0.15 * 11 / 30.4375) and look.observed == 3 and look.units == 100
    assert look.expected_per_window == pytest.approx(w)
    assert look.critical_count == max(3, sequential_critical_count(look.expected, w, 0.01))
    assert look.tail_p_value == pytest.approx(poisson_sf(3, look.expected))
    assert look.statistic == pytest.approx(3 / look.expected)


def test_reports_spread_thinly_enough_do_not_cross_and_two_reports_never_alarm() -> None:
    exposure = Exposure([T0] * 100)
    # Three reports over ten months: 1.48 expected, w P(X = 2 | 1.48) = 0.038 > 0.01.
    spread = [T0 + d * DAY for d in (100, 200, 300)]
    look = sequential_look(spread, exposure, None, T0 + 301 * DAY, 0.0015, 30.4375, 0.01, 31, 3)
    assert not look.alarm and look.crossed_at is None and 0.01 < look.p_value < 0.05
    quick_pair = [T0 + DAY, T0 + 2 * DAY]
    assert sequential_look(quick_pair, exposure, None, T0 + 3 * DAY, 0.0015, 30.4375, 0.01, 31, 3).p_value == 1.0


def test_the_boundary_follows_the_units_in_service_at_each_report() -> None:
    """Units sold after a report do not count for it: the same three reports cross the
    boundary of a batch of 100 and not of the same batch with 100,000 units sold by the look."""
    few = Exposure([T0] * 100)
    many = Exposure([T0] * 100 + [T0 + 20 * DAY] * 99_900)
    reports = [T0 + d * DAY for d in (2, 6, 10)]
    at = T0 + 30 * DAY
    assert sequential_look(reports, few, None, at, 0.0015, 30.4375, 0.01, 31, 3).alarm
    assert sequential_look(reports, many, None, at, 0.0015, 30.4375, 0.01, 31, 3).alarm
    later = [T0 + d * DAY for d in (21, 22, 23)]
    assert sequential_look(later, few, None, at, 0.0015, 30.4375, 0.01, 31, 3).alarm
    assert not sequential_look(later, many, None, at, 0.0015, 30.4375, 0.01, 31, 3).alarm


def test_points_tested_at_earlier_looks_and_reports_before_any_sale_are_not_tested_again() -> None:
    exposure = Exposure([T0 + 5 * DAY] * 100)
    reports = [T0 + d * DAY for d in (1, 2, 3)]  # before any unit is in service
    look = sequential_look(reports, exposure, None, T0 + 4 * DAY, 0.0015, 30.4375, 0.01, 31, 3)
    assert look.p_value is None and not look.alarm  # no exposure yet: nothing to test
    crossing = [T0 + d * DAY for d in (6, 7, 8)]
    assert sequential_look(crossing, exposure, None, T0 + 9 * DAY, 0.0015, 30.4375, 0.01, 31, 3).alarm
    assert not sequential_look(crossing, exposure, None, T0 + 9 * DAY, 0.0015, 30.4375, 0.01, 31, 3,
                               tested_from=T0 + 8.5 * DAY).alarm


def test_cell_look_runs_the_configured_test_on_the_cells_evidence() -> None:
    exposure = Exposure([T0] * 100)
    times = tuple(T0 + d * DAY for d in (2, 6, 10, 12))
    evidence = CellEvidence(None, datetime.fromtimestamp(T0 + 14 * DAY, UTC), times, exposure)
    sequential = cell_look(MonitorPolicy(), evidence, 0.0015, 30.4375, 0.01)
    assert sequential == sequential_look(times, exposure, None, T0 + 14 * DAY, 0.0015, 30.4375, 0.01, 31, 3)
    repeated = cell_look(MonitorPolicy(test="repeated", look_interval_days=7), evidence, 0.0015, 30.4375, 0.002)
    assert repeated == poisson_look(4, 100, 100 * 14 / 30.4375, 0.0015, 0.002, 3)
    assert repeated.test == "repeated" and repeated.p_value == repeated.tail_p_value


def test_a_problem_free_batch_alarms_in_at_most_one_percent_of_its_months_as_the_service_runs_it() -> None:
    """1,500 units sold over 30 days at 0.0015 (2.25 reports a month once all are in service),
    Poisson reports for a year, daily looks, the cell restarted at each alarm as when the quality
    department closes it: the share of cell-months with an alarm stays within 1 %."""
    rng = random.Random(41)
    units = [T0 + 30 * DAY * i / 1500 for i in range(1500)]
    exposure = Exposure(units)
    rate, months, paths = 0.0015, 12, 1500
    alarm_months = 0
    for _ in range(paths):
        reports: list[float] = []
        for sold in units:
            at = sold + rng.expovariate(rate / MONTH)
            while at < T0 + months * MONTH:
                reports.append(at)
                at += rng.expovariate(rate / MONTH)
        reports.sort()
        since, previous, alarmed = None, T0, set()
        for moment in reports:
            look_at = T0 + math.ceil((moment - T0) / DAY) * DAY  # the next daily look
            inside = [r for r in reports if (since is None or r > since) and r < look_at]
            if sequential_look(inside, exposure, since, look_at, rate, 30.4375, 0.01, 31, 3,
                               tested_from=max(previous, since or T0)).alarm:
                alarmed.add(int((look_at - T0) // MONTH))
                since = look_at
            previous = look_at
        alarm_months += len(alarmed)
    assert alarm_months / (paths * months) <= 0.01


# --- the burst rule ------------------------------------------------------------------------


def points(mode: str, days: list[int], prefix: str = "R") -> list[ReportPoint]:
    return [ReportPoint(f"{prefix}{i}", day_at(10, days=-40) + timedelta(days=d), mode) for i, d in enumerate(days)]


def test_seven_reports_of_one_failure_mode_in_one_batch_within_30_days_are_a_burst() -> None:
    reports = points("no_power", [0, 3, 5, 9, 14, 20, 29])
    burst = find_burst(reports, ["R6"], 7, timedelta(days=30))
    assert burst is not None and burst.count == 7 and burst.failure_mode == "no_power"
    assert burst.report_ids == tuple(f"R{i}" for i in range(7))


def test_no_burst_when_the_reports_spread_over_more_than_30_days_or_over_failure_modes() -> None:
    window = timedelta(days=30)
    assert find_burst(points("no_power", [0, 3, 5, 9, 14, 20, 30]), ["R6"], 7, window) is None
    mixed = points("no_power", [0, 1, 2, 3]) + points("overheat", [4, 5, 6], prefix="O")
    assert find_burst(mixed, ["O2"], 7, window) is None


def test_a_burst_needs_a_new_report_so_an_old_burst_is_not_raised_again() -> None:
    reports = points("leak", [0, 1, 2, 3, 4, 5, 6, 60])
    assert find_burst(reports, ["R7"], 7, timedelta(days=30)) is None
    assert find_burst(reports, ["R3"], 7, timedelta(days=30)) is not None


def test_the_burst_rule_can_be_switched_off() -> None:
    assert find_burst(points("leak", [0] * 10), ["R0"], 0, timedelta(days=30)) is None


# --- decisions and one open alert per cell -----------------------------------------------


def test_an_alarm_raises_an_alert_when_the_cell_has_none_open() -> None:
    alarm = poisson_look(6, 200, 500.0, 0.0015, 0.002, 3)
    burst = find_burst(points("leak", [0, 1, 2, 3, 4, 5, 6]), ["R6"], 7, timedelta(days=30))
    assert decide(False, alarm, None).action == "raise" and decide(False, alarm, None).rule == "poisson"
    assert decide(False, None, burst).rule == "failure_mode_burst"
    both = decide(False, alarm, burst)
    assert both.rule == "poisson" and both.firing == ("poisson", "failure_mode_burst")


def test_new_evidence_in_a_cell_with_an_open_alert_updates_it_instead_of_raising_another() -> None:
    alarm = poisson_look(6, 200, 500.0, 0.0015, 0.002, 3)
    quiet = poisson_look(1, 200, 500.0, 0.0015, 0.002, 3)
    assert decide(True, alarm, None).action == "update"
    assert decide(True, None, None).action == "update"
    assert decide(False, quiet, None).action == "none"
    assert decide(False, None, None).action == "none"


def test_an_alert_id_is_fixed_by_its_cell_and_monitoring_period() -> None:
    cell = Cell("batch", "controller", batch="B1")
    assert alert_id_for(cell.key, None) == alert_id_for(cell.key, None)
    assert alert_id_for(cell.key, None) != alert_id_for(cell.key, TEST_NOW)  # after a close, a new alert
    assert alert_id_for(cell.key, None) != alert_id_for(Cell("batch", "controller", batch="B2").key, None)


# --- the alert lifecycle -----------------------------------------------------------------


def test_alerts_move_raised_then_acknowledged_then_closed() -> None:
    assert transition("A1", "raised", "acknowledge") == "acknowledged"
    assert transition("A1", "acknowledged", "close") == "closed"
    assert allowed_actions("raised") == ["acknowledge"] and allowed_actions("closed") == []


@pytest.mark.parametrize(("state", "action", "allowed"), [
    ("raised", "close", ["acknowledge"]),
    ("acknowledged", "acknowledge", ["close"]),
    ("closed", "close", []),
])
def test_an_illegal_transition_names_what_is_allowed(state: str, action: str, allowed: list[str]) -> None:
    with pytest.raises(IllegalTransition) as raised:
        transition("A1", state, action)
    assert raised.value.allowed == allowed
    assert f"alert A1 is {state}; it cannot {action}" in str(raised.value)


# --- cells and units in service ------------------------------------------------------------


def test_a_part_belongs_to_its_batch_cell_and_its_supplier_model_cell_as_far_as_known() -> None:
    both = cells_for("controller", "B1", "SUP-A", "EV-100")
    assert [c.kind for c in both] == ["batch", "supplier_model"]
    assert cells_for("controller", None, "SUP-A", "EV-100") == [both[1]]
    assert cells_for("controller", "B1", "SUP-A", None) == [both[0]]
    assert cells_for("controller", None, None, "EV-100") == []
    for cell in both:
        assert Cell.from_key(cell.key) == cell
    assert Cell("batch", "frame", batch='B"1,2').key != Cell("batch", "frame,B", batch="1,2").key


def test_unit_months_sum_each_units_time_in_service_within_the_window() -> None:
    rng = random.Random(5)
    sold = [rng.uniform(0, 1000) for _ in range(300)]
    exposure = Exposure(sold)
    for since, until in ((None, 500.0), (None, 2000.0), (100.0, 700.0), (600.0, 650.0), (900.0, 100.0)):
        brute = sum(max(0.0, until - max(s, since if since is not None else s)) for s in sold if s < until)
        assert exposure.unit_seconds(since, until) == pytest.approx(brute, rel=1e-12, abs=1e-9)
    assert exposure.units(500.0) == sum(1 for s in sold if s < 500.0)
