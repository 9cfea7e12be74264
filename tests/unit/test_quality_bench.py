"""`aftersales bench quality` on a small run: the simulation is faithful to the baseline,
seeded runs repeat exactly, the detectors keep their false-alarm promise, and the vectorised
tests agree with the service's own code report by report."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from services.quality.config import QualityRules, load_baseline_rates
from services.quality.statistics import likelihood_ratio_calibration
from services.quality.warning import EarlyWarning
from tools.bench.quality import KINDS, SHIFTS, Cells, Setup, alarms, fleet_cells, lr_alarm, run, simulate


def test_the_simulated_reports_follow_the_baseline_rate_times_unit_months() -> None:
    rates = load_baseline_rates(QualityRules().baseline_rates_file)
    table = {c: rates.rate(c) for c in ("motor", "controller", "rear_axle", "differential", "frame",
                                        "front_shock_absorber", "rim_welding")}
    batch, _ = fleet_cells(20_000, 12, table, rates.unit_month_days)
    sim = simulate(np.random.default_rng(3), batch, 540, rates.unit_month_days)
    assert sim.daily.sum() == pytest.approx(sim.expected[:, -1].sum(), rel=0.03)
    # A batch sold over a month: its expectation grows as t^2 / 2 in the month, then linearly.
    one = Cells(np.array([1000.0]), np.array([0.001]), np.zeros(1), np.array([30.4375]), ["x"], "batch")
    s = simulate(np.random.default_rng(1), one, 100, 30.4375)
    assert s.expected[0, 30] < 0.5 * 1000 * 0.001 and math.isclose(s.expected[0, -1] - s.expected[0, -2],
                                                                     1000 * 0.001 / 30.4375, rel_tol=1e-9)


def test_a_seeded_run_repeats_exactly_and_keeps_false_alarms_within_the_configured_level() -> None:
    first = run(vehicles=20_000, null_fleets=3, batches=60, seed=7, quiet=True)
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        again = run(vehicles=20_000, null_fleets=3, batches=60, seed=7, quiet=True, progress=progress)
    assert [(t.total, t.completed) for t in progress.tasks] == [(3, 3), (len(KINDS) * len(SHIFTS),) * 2], \
        "a bar counts the null fleets, another the shifted-batch sets"
    assert first.false_alarms == again.false_alarms and first.cell_months == again.cell_months
    for name in first.detections:
        assert [d.delay for d in first.detections[name]] == [d.delay for d in again.detections[name]]
    for detector in ("configured", "today", "lr"):
        assert first.false_alarm_rate(detector) <= first.alpha_month, detector
    for kind in ("one-mode", "spread"):
        five = first.found("configured", kind, 5.0)
        assert len(five) == 60 and sum(math.isfinite(d.delay) for d in five) >= 50


def test_the_vectorised_likelihood_ratio_boundary_is_the_services() -> None:
    rng = np.random.default_rng(4)
    expected = np.sort(rng.uniform(0, 20, (1, 300)), axis=1)
    window = np.full((1, 300), 2.5)
    count = np.arange(1, 301)[None, :] // 2 + rng.integers(0, 4, (1, 300))
    for later in (1.0, 1.3):  # the later months' factor of the batch cells' tests is passed through too
        alarm = lr_alarm(count, expected, window, {}, 3.0, 0.004, 3, later)
        cal = likelihood_ratio_calibration(2.5, 3.0, 0.004, 3, later)
        for j in range(300):
            assert bool(alarm[0, j]) == (count[0, j] >= max(3, cal.critical_count(float(expected[0, j])))), j


def test_the_configured_detector_adds_the_likelihood_ratio_tests_to_the_sequential_test_on_batch_cells() -> None:
    cells = Cells(np.array([3000.0, 3000.0]), np.array([0.001, 0.001]), np.zeros(2), np.full(2, 30.4375),
                  ["motor", "motor"], "batch")
    sim = simulate(np.random.default_rng(2), cells, 300, 30.4375, np.array([5.0, 5.0]), np.array([3, -1]))
    setup = Setup(0.01, 3, 0, 30, EarlyWarning())
    since = np.zeros(2, dtype=np.int64)
    configured, _ = alarms("configured", sim, since, "batch", setup, {})
    today, _ = alarms("today", sim, since, "batch", setup, {})
    # A 5x batch is found by both detectors, one-mode and spread.
    assert configured.any(axis=1).all() and today.any(axis=1).all()
