"""`aftersales bench quality` on a small fleet: the simulation is faithful to the baseline,
seeded runs repeat exactly, and the service's detector keeps its false-alarm promise."""

from __future__ import annotations

import math

import pytest

from tools.bench.quality import SHIFTS, START, run, simulate_fleet
from services.quality.config import QualityRules, load_baseline_rates
from services.quality.domain import Cell


def test_the_simulated_reports_follow_the_baseline_rate_times_unit_months() -> None:
    rates = load_baseline_rates(QualityRules().baseline_rates_file)
    fleet = simulate_fleet(3, 20_000, 12, 18, rates)
    horizon = START.timestamp() + 18 * rates.unit_month_days * 86_400.0
    expected = sum(
        rates.rate(cell.category) * rates.unit_months(fleet.exposure[key].unit_seconds(None, horizon))
        for key, cell in fleet.cells.items() if cell.kind == "batch"
    )
    assert len(fleet.reports) == pytest.approx(expected, rel=0.05)
    assert all(r.batch_key == Cell("batch", r.category, batch=r.batch).key for r in fleet.reports[:50])


def test_a_seeded_run_repeats_exactly_and_keeps_false_alarms_within_the_configured_level() -> None:
    first = run(vehicles=20_000, null_fleets=2, shifted_fleets=2, seed=7, quiet=True)
    again = run(vehicles=20_000, null_fleets=2, shifted_fleets=2, seed=7, quiet=True)
    assert first.false_alarms == again.false_alarms and first.cell_months == again.cell_months
    for name in first.detections:
        assert [d.delay_days for d in first.detections[name]] == [d.delay_days for d in again.detections[name]]

    assert sum(first.cell_months.values()) > 8_000
    for detector in ("repeated", "cusum", "sequential", "previous", "configured"):
        assert first.false_alarm_rate(detector) <= first.alpha_month, detector
    # Every shifted batch is followed; the strongest shifts are found.
    for factor in SHIFTS:
        assert len(first.delays("configured", factor)) == 14
    five = [d.delay_days for d in first.delays("configured", 5.0)]
    assert sum(math.isfinite(d) for d in five) >= 11


def test_the_benchmark_runs_the_configured_test_beside_the_one_it_replaced() -> None:
    rules = QualityRules(early_warning_test="repeated")
    result = run(vehicles=10_000, null_fleets=1, shifted_fleets=1, seed=11, rules=rules, quiet=True)
    # Configured as the previous detector, the two rows are the same detector and agree exactly.
    assert result.false_alarms["configured"] == result.false_alarms["previous"]
    assert [d.delay_days for d in result.delays("configured", 3.0)] == \
        [d.delay_days for d in result.delays("previous", 3.0)]
    assert result.labels["configured"] == "configured (repeated weekly + burst)"
    # The burst rule alone never alarms on a supplier x model cell (it watches batches).
    assert result.false_alarms["burst"].get("supplier_model", 0) == 0
