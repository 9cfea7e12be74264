"""The hand-written Poisson statistics against values worked out by hand and against SciPy
(SciPy is a test-only dependency; the service does not import it)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import special, stats

from services.quality.statistics import (
    poisson_cdf,
    poisson_critical_count,
    poisson_mean_upper_bound,
    poisson_sf,
    poisson_variate,
    regularized_gamma_p,
    regularized_gamma_q,
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
