"""`aftersales bench quality` on a small fleet: the simulation is faithful to the baseline,
seeded runs repeat exactly, and the service's detector keeps its false-alarm promise."""

from __future__ import annotations

import math

import pytest

from aftersales.bench.quality import SHIFTS, START, run, simulate_fleet
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
    assert [d.delay_days for d in first.detections["both"]] == [d.delay_days for d in again.detections["both"]]

    assert sum(first.cell_months.values()) > 8_000
    for detector in ("poisson", "both"):
        assert first.false_alarm_rate(detector) <= first.alpha_month
    # Every shifted batch is followed; the strongest shifts are found.
    for factor in SHIFTS:
        assert len(first.delays("both", factor)) == 14
    five = [d.delay_days for d in first.delays("both", 5.0)]
    assert sum(math.isfinite(d) for d in five) >= 11
