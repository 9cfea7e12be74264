"""The hand-written Poisson statistics against values worked out by hand, against SciPy and
against simulation (SciPy and NumPy are test-only dependencies; the service imports neither)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest
from scipy import special, stats

from services.quality.statistics import (
    cusum_exceedance,
    cusum_threshold,
    poisson_cdf,
    poisson_critical_count,
    poisson_mean_upper_bound,
    poisson_pmf,
    poisson_sf,
    poisson_variate,
    regularized_gamma_p,
    regularized_gamma_q,
    sequential_critical_count,
    sequential_p_value,
)

COUNTS = (1, 2, 3, 5, 7, 10, 13, 30, 100, 500, 2000)
MEANS = (1e-6, 0.01, 0.2, 0.5, 1.0, 2.5, 4.3, 9.99, 10.0, 30.0, 99.5, 150.0, 1000.0, 5000.0)


def test_upper_tail_matches_values_worked_out_by_hand() -> None:
    # P(X >= 1) = 1 - e^-lam;  P(X >= 2 | 1) = 1 - 2/e;  P(X >= 3 | 2) = 1 - 5 e^-2
    assert poisson_sf(1, 0.5) == pytest.approx(1 - math.exp(-0.5), rel=1e-14)
    assert poisson_sf(2, 1.0) == pytest.approx(1 - 2 / math.e, rel=1e-14)
    assert poisson_sf(3, 2.0) == pytest.approx(1 - 5 * math.exp(-2), rel=1e-14)
    # 9 reports where 0.9 are expected: sum_{k>=9} e^-0.9 0.9^k / k!
    by_hand = sum(math.exp(-0.9) * 0.9**k / math.factorial(k) for k in range(9, 60))
    assert poisson_sf(9, 0.9) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("n", COUNTS)
def test_upper_tail_matches_scipy_across_counts_and_means(n: int) -> None:
    for lam in MEANS:
        expected = stats.poisson.sf(n - 1, lam)
        if expected < 1e-290:
            continue
        assert poisson_sf(n, lam) == pytest.approx(expected, rel=1e-10), (n, lam)
        assert poisson_cdf(n, lam) == pytest.approx(stats.poisson.cdf(n, lam), rel=1e-10, abs=1e-300), (n, lam)


def test_far_tails_keep_their_relative_accuracy_instead_of_rounding_to_zero() -> None:
    for n, lam in ((60, 1.0), (200, 10.0), (40, 0.01)):
        ours, theirs = poisson_sf(n, lam), stats.poisson.sf(n - 1, lam)
        assert 0 < theirs < 1e-60
        assert ours == pytest.approx(theirs, rel=1e-10)


def test_regularised_incomplete_gamma_matches_scipy_on_both_branches() -> None:
    rng = random.Random(3)
    for _ in range(500):
        a = rng.choice((rng.uniform(0.05, 5), rng.uniform(5, 500), float(rng.randint(1, 3000))))
        x = rng.uniform(0, 3 * a + 10)
        assert regularized_gamma_p(a, x) == pytest.approx(special.gammainc(a, x), rel=1e-10, abs=1e-300)
        assert regularized_gamma_q(a, x) == pytest.approx(special.gammaincc(a, x), rel=1e-10, abs=1e-300)


def test_edge_cases_need_no_special_handling_by_callers() -> None:
    assert poisson_sf(0, 3.0) == 1.0 and poisson_sf(-2, 3.0) == 1.0
    assert poisson_sf(1, 0.0) == 0.0 and poisson_cdf(0, 0.0) == 1.0
    assert poisson_cdf(-1, 2.0) == 0.0
    with pytest.raises(ValueError, match="must not be negative"):
        poisson_sf(3, -1.0)
    with pytest.raises(ValueError, match="positive"):
        regularized_gamma_p(0, 1.0)


@pytest.mark.parametrize("alpha", (0.01, 0.01 / 5, 0.01 / 31, 1e-6))
def test_critical_count_is_the_smallest_count_whose_tail_is_within_alpha(alpha: float) -> None:
    for lam in (0.0001, 0.3, 1.0, 2.0, 4.3, 10.0, 57.0, 400.0, 10_000.0):
        c = poisson_critical_count(lam, alpha)
        assert stats.poisson.sf(c - 1, lam) <= alpha * (1 + 1e-9)
        assert c == 1 or stats.poisson.sf(c - 2, lam) > alpha
    # by hand: 1 report expected, alpha 0.2 %: P(X>=5) = 0.00366 > 0.002 >= P(X>=6) = 0.000594
    assert poisson_critical_count(1.0, 0.002) == 6


def test_mean_upper_bound_is_the_garwood_bound() -> None:
    for observed in (0, 1, 5, 40):
        assert poisson_mean_upper_bound(observed, 0.95) == pytest.approx(stats.chi2.ppf(0.95, 2 * observed + 2) / 2,
                                                                         rel=1e-9)
    assert poisson_mean_upper_bound(0) == pytest.approx(-math.log(0.05), rel=1e-9)  # 2.9957, the "rule of three"


def test_poisson_variates_have_the_right_mean_and_variance() -> None:
    rng = random.Random(11)
    draws = [poisson_variate(rng, 3.5) for _ in range(20_000)]
    mean = sum(draws) / len(draws)
    variance = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    assert mean == pytest.approx(3.5, abs=0.06) and variance == pytest.approx(3.5, abs=0.15)


# --- the sequential test's boundary ------------------------------------------------------


def test_the_pmf_matches_scipy_including_far_tails() -> None:
    for n in (0, 1, 3, 10, 60, 400):
        for lam in (0.0, 1e-6, 0.3, 2.5, 40.0, 500.0):
            assert poisson_pmf(n, lam) == pytest.approx(stats.poisson.pmf(n, lam), rel=1e-10, abs=1e-300)
    assert poisson_pmf(-1, 2.0) == 0.0


@pytest.mark.parametrize("alpha", (0.01, 0.001, 0.05))
def test_the_boundary_is_the_smallest_count_above_the_mean_whose_crossing_rate_is_within_alpha(alpha: float) -> None:
    for lam in (0.0, 0.01, 0.4, 1.0, 2.0, 3.7, 12.0, 150.0, 4000.0):
        for per_window in (0.05, 0.3, 1.0, 6.0, 15.0, 200.0):
            c = sequential_critical_count(lam, per_window, alpha)
            brute = next(k for k in range(1, 10_000)
                         if k - 1 >= lam and per_window * stats.poisson.pmf(k - 1, lam) <= alpha)
            assert c == brute, (lam, per_window)
            # The p-value reads the same boundary: a count alarms exactly when its level is within alpha.
            for observed in range(max(0, c - 3), c + 3):
                assert (sequential_p_value(observed, lam, per_window) <= alpha) == (observed >= c), (lam, observed)


def test_by_hand_one_expected_and_three_a_month_needs_six_reports() -> None:
    # w P(X = 4 | 1) = 3 e^-1 / 24 = 0.046 > 0.01;  w P(X = 5 | 1) = 3 e^-1 / 120 = 0.0092 <= 0.01
    assert sequential_critical_count(1.0, 3.0, 0.01) == 6
    assert sequential_p_value(6, 1.0, 3.0) == pytest.approx(3 * math.exp(-1) / 120, rel=1e-12)
    assert sequential_p_value(1, 1.0, 3.0) == 1.0  # at the mean: no evidence
    assert sequential_p_value(3, 1.0, 1e6) == 1.0  # a level, capped at 1 like a p-value


def test_the_boundary_never_falls_as_expectation_and_exposure_grow() -> None:
    rng = random.Random(8)
    for _ in range(400):
        lam, per_window = rng.uniform(0, 50), rng.uniform(0.01, 40)
        more_lam, more_window = lam + rng.uniform(0, 5), per_window * rng.uniform(1, 3)
        lower = sequential_critical_count(lam, per_window, 0.01)
        assert lower <= sequential_critical_count(more_lam, more_window, 0.01)


def _ramp_then_flat(full_per_month: float, window_months: float) -> tuple[
    Callable[[float], float], Callable[[float], float], Callable[[np.ndarray], np.ndarray]
]:
    """A cell whose units are sold evenly over its first month, then stay: the expectation
    L(t) and the window's expected reports w(t), t in months."""
    def expected(t: float) -> float:
        return full_per_month * (t * t / 2 if t <= 1 else t - 0.5)

    def per_window(t: float) -> float:
        return full_per_month * min(t, 1.0) * window_months

    def time_of(level: np.ndarray) -> np.ndarray:
        half = full_per_month / 2
        return np.where(level <= half, np.sqrt(2 * level / full_per_month), level / full_per_month + 0.5)

    return expected, per_window, time_of


@pytest.mark.parametrize("full_per_month", (0.3, 3.0, 15.0))
def test_a_problem_free_cell_crosses_the_boundary_in_any_month_with_probability_at_most_alpha(
    full_per_month: float,
) -> None:
    """The guarantee, checked two ways on a cell whose exposure grows then levels off: the
    expected number of entries into the alarm region in each month (exact, by the crossing
    rate) is <= alpha, and simulated Poisson reports agree with it."""
    alpha, months, window = 0.01, 8, 31 / 30.4375
    expected, per_window, time_of = _ramp_then_flat(full_per_month, window)

    def boundary(t: float) -> int:
        return sequential_critical_count(expected(t), per_window(t), alpha)

    # The boundary is a rising step function: level n holds until T[n] = the last instant with c(t) <= n.
    top = int(expected(months) + 12 * math.sqrt(expected(months) + 1) + 15)
    last_at = []
    for n in range(1, top + 1):
        if boundary(months) <= n:
            last_at.append(float(months))
            continue
        low, high = 0.0, float(months)
        if boundary(1e-12) > n:
            last_at.append(0.0)
            continue
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if boundary(middle) <= n else (low, middle)
        last_at.append(low)
    limits = np.array(last_at)

    # Exact: the count enters the alarm region (N >= c) while the boundary is c only by a report
    # arriving at N = c - 1, at rate P(N = c - 1 | L) dL, so a month expects
    # sum over c of [P(N >= c | L(end)) - P(N >= c | L(start))] over the span the boundary is c.
    exact = []
    for month in range(months):
        entries = 0.0
        for c in range(1, top + 1):
            start = max(month, limits[c - 2] if c >= 2 else 0.0)
            end = min(month + 1, limits[c - 1])
            if end > start:
                entries += stats.poisson.sf(c - 1, expected(end)) - stats.poisson.sf(c - 1, expected(start))
        assert entries <= alpha * (1 + 1e-9), (month, entries)
        exact.append(entries)
    assert max(exact) > alpha / 2, "the boundary spends a good part of its budget, not a sliver"

    # Simulated: reports at unit rate in expectation time; report n enters the alarm region when
    # the boundary stands at n then (T[n-1] < t_n <= T[n]). Entries per month agree with the exact
    # figure, and a month holds one at most that often: P(alarm in a month) <= alpha.
    rng = np.random.default_rng(20261120)
    paths = 60_000
    arrivals = time_of(np.cumsum(rng.exponential(size=(paths, top)), axis=1))
    entry = (arrivals <= limits[None, :]) & (arrivals > np.concatenate(([-1.0], limits[:-1]))[None, :])
    for month in range(months):
        inside = entry & (arrivals >= month) & (arrivals < month + 1)
        mean, share = float(inside.sum(axis=1).mean()), float(inside.any(axis=1).mean())
        assert mean == pytest.approx(exact[month], abs=5 * math.sqrt(exact[month] / paths) + 1e-4), month
        assert share <= mean <= alpha + 4 * math.sqrt(alpha / paths), (month, share, mean)


# --- the Poisson CUSUM (the alternative the benchmark compares) -----------------------------


def test_the_cusum_tail_matches_simulation_and_the_cramer_lundberg_asymptote() -> None:
    jump, drift = math.log(3.0), 2.0
    assert cusum_exceedance(0.0, 3.0) == 1.0
    assert cusum_exceedance(1e-12, 3.0) == pytest.approx(jump / drift, rel=1e-9)  # P(sup > 0) = a / c
    # Far out psi(u) e^u tends to C = (c - a) / (a e^a - c): the exact series agrees to 1e-9.
    for shift in (2.0, 3.0, 5.0):
        a, c = math.log(shift), shift - 1.0
        assert cusum_exceedance(25.0, shift) * math.exp(25.0) == pytest.approx((c - a) / (a * shift - c), rel=1e-9)
    rng = np.random.default_rng(3)
    paths = 200_000
    walk = jump * np.arange(1, 241)[None, :] - drift * np.cumsum(rng.exponential(size=(paths, 240)), axis=1)
    peak = walk.max(axis=1)
    for u in (0.5, 2.0, 4.0):
        p = cusum_exceedance(u, 3.0)
        assert float(np.mean(peak >= u)) == pytest.approx(p, abs=4 * math.sqrt(p / paths))


def test_the_cusum_threshold_spends_the_budget_over_the_window() -> None:
    for per_window in (0.3, 3.0, 15.0):
        h = cusum_threshold(per_window, 0.01, 3.0)
        margin = h - math.log(3.0)
        assert per_window * cusum_exceedance(margin, 3.0) <= 0.01
        assert per_window * cusum_exceedance(margin - 1e-6, 3.0) > 0.01 * (1 - 1e-4)
    assert cusum_threshold(3.0, 0.01, 3.0) < cusum_threshold(6.0, 0.01, 3.0)
