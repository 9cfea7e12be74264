"""The Poisson statistics the early warning rests on, written by hand (no SciPy at runtime).

The upper tail of a Poisson count is a regularised incomplete gamma function:

    P(X >= n | lam) = P(n, lam) = gamma_lower(n, lam) / Gamma(n)        (n >= 1)

`regularized_gamma_p` evaluates it by the power series when lam < n + 1 and through the
complement Q = 1 - P by Lentz's continued fraction otherwise (Numerical Recipes, 3rd ed.,
§6.2), with the prefactor lam**n * exp(-lam) / Gamma(n) taken in logarithms, so neither
large n nor large lam overflows and a tail of 1e-300 stays accurate rather than rounding
to 0. Relative accuracy is better than 1e-11 over the range the detector uses (the unit
tests check it against SciPy).

The sequential test (the service's detector, docs/quality-early-warning.md §3) compares the
count N(t) of a cell's reports with a boundary that rises with the expectation L(t). A count
process crosses a boundary c(t) that never falls only by a report arriving when N = c(t) - 1,
which happens at rate P(N(t) = c(t) - 1) dL(t). Keeping that rate at or under alpha per
window of `expected_per_window` expected reports bounds the probability that a cell without a
problem crosses the boundary within the window by alpha:

    c(L, w, alpha) = the smallest c with c - 1 >= L and w * P(X = c - 1 | L) <= alpha

and the attained level of a count n is `sequential_p_value` = w * P(X = n - 1 | L).

The Poisson CUSUM (the alternative the benchmark compares, not the service's detector) is
calibrated with the stationary tail of its statistic, a classical ruin probability with
claims of one size (`cusum_exceedance`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import lru_cache

import numpy as np

_EPS = 1e-16
_TINY = 1e-300
_MAX_ITERATIONS = 100_000


def _log_prefactor(a: float, x: float) -> float:
    """log(x**a * exp(-x) / Gamma(a))."""
    return a * math.log(x) - x - math.lgamma(a)


def _series_p(a: float, x: float) -> float:
    """P(a, x) by its power series; converges fast for x < a + 1."""
    term = 1.0 / a
    total = term
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * math.exp(_log_prefactor(a, x))
    raise ArithmeticError(f"the incomplete gamma series did not converge for a={a}, x={x}")


def _continued_fraction_q(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz); converges fast for x >= a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h * math.exp(_log_prefactor(a, x))
    raise ArithmeticError(f"the incomplete gamma continued fraction did not converge for a={a}, x={x}")


def regularized_gamma_p(a: float, x: float) -> float:
    """The regularised lower incomplete gamma function P(a, x) = gamma(a, x) / Gamma(a)."""
    if a <= 0:
        raise ValueError(f"a must be positive, got {a}")
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")
    if x == 0:
        return 0.0
    if x < a + 1.0:
        return min(1.0, _series_p(a, x))
    return max(0.0, 1.0 - _continued_fraction_q(a, x))


def regularized_gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) = 1 - P(a, x)."""
    if a <= 0:
        raise ValueError(f"a must be positive, got {a}")
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")
    if x == 0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _series_p(a, x))
    return min(1.0, _continued_fraction_q(a, x))


def poisson_sf(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam): the p-value of observing n or more when lam are expected."""
    if lam < 0:
        raise ValueError(f"the expected count must not be negative, got {lam}")
    if n <= 0:
        return 1.0
    if lam == 0:
        return 0.0
    return regularized_gamma_p(float(n), lam)


def poisson_cdf(n: int, lam: float) -> float:
    """P(X <= n) for X ~ Poisson(lam)."""
    if lam < 0:
        raise ValueError(f"the expected count must not be negative, got {lam}")
    if n < 0:
        return 0.0
    if lam == 0:
        return 1.0
    return regularized_gamma_q(float(n + 1), lam)


def poisson_pmf(n: int, lam: float) -> float:
    """P(X = n) for X ~ Poisson(lam), through logarithms (no overflow for large n or lam)."""
    if lam < 0:
        raise ValueError(f"the expected count must not be negative, got {lam}")
    if n < 0:
        return 0.0
    if lam == 0:
        return 1.0 if n == 0 else 0.0
    return math.exp(n * math.log(lam) - lam - math.lgamma(n + 1))


def poisson_critical_count(lam: float, alpha: float) -> int:
    """The smallest n with P(X >= n | lam) <= alpha: the count at which the test alarms."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if lam == 0:
        return 1
    # The tail falls below alpha somewhere above the mean; bracket, then bisect (sf is decreasing in n).
    low = max(1, math.floor(lam))
    if poisson_sf(low, lam) <= alpha:
        return low
    step = max(1, math.ceil(math.sqrt(lam)))
    high = low + step
    while poisson_sf(high, lam) > alpha:
        low, high = high, high + step
        step *= 2
    while high - low > 1:
        middle = (low + high) // 2
        if poisson_sf(middle, lam) <= alpha:
            high = middle
        else:
            low = middle
    return high


def sequential_p_value(observed: int, expected: float, expected_per_window: float) -> float:
    """The attained level of `observed` reports at an expectation of `expected` in the
    sequential test: the rate, per window of `expected_per_window` expected reports, at which a
    cell without a problem reaches this count, w * P(X = observed - 1 | expected), capped at 1.
    A count at or below the mean is no evidence (1.0). The test alarms when it is <= alpha, so
    it reads as a p-value on the scale the false-alarm budget is set on (per cell per window)."""
    if expected < 0 or expected_per_window < 0:
        raise ValueError(f"expectations must not be negative, got {expected} and {expected_per_window}")
    if observed < 1 or observed - 1 < expected:
        return 1.0
    return min(1.0, expected_per_window * poisson_pmf(observed - 1, expected))


def sequential_critical_count(expected: float, expected_per_window: float, alpha: float) -> int:
    """The boundary of the sequential test: the smallest count c with c - 1 >= expected and
    expected_per_window * P(X = c - 1 | expected) <= alpha. It never falls as the expectation
    or the exposure grows (P(X = n | L) rises with L for L <= n), which the bound needs."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if expected < 0 or expected_per_window < 0:
        raise ValueError(f"expectations must not be negative, got {expected} and {expected_per_window}")

    def within(c: int) -> bool:
        return expected_per_window * poisson_pmf(c - 1, expected) <= alpha

    low = math.ceil(expected) + 1  # c - 1 >= expected; above the mode the pmf falls with c
    if within(low):
        return low
    step = max(1, math.ceil(math.sqrt(expected)))
    high = low + step
    while not within(high):
        low, high = high, high + step
        step *= 2
    while high - low > 1:
        middle = (low + high) // 2
        if within(middle):
            high = middle
        else:
            low = middle
    return high


def cusum_exceedance(h: float, shift: float) -> float:
    """P(sup_s [log(shift) N(s) - (shift - 1) s] >= h) for a unit-rate Poisson process N: the
    stationary tail of the Poisson CUSUM for a `shift`-fold rate, in operational time (one unit
    = one expected report). It is the ruin probability of a risk process with premium rate
    shift - 1 and claims of size log(shift), exact by the classical series for claims of one
    size (checked in the unit tests against simulation and the Cramer-Lundberg asymptote)

        1 - psi(u) = (1 - rho) sum_{k <= u/a} exp(x_k) (-x_k)^k / k!,  x_k = (u - k a) / c,

    with a = log(shift), c = shift - 1, rho = a / c. The terms alternate and grow like exp(u/c),
    so the sum is taken in decimal arithmetic with digits to spare."""
    if shift <= 1:
        raise ValueError(f"the shift to detect must exceed 1, got {shift}")
    if h <= 0:
        return 1.0
    with localcontext() as context:
        context.prec = 50 + int(h)
        a, c, u = Decimal(math.log(shift)), Decimal(shift - 1.0), Decimal(h)
        total, k = Decimal(0), 0
        while k * a <= u:
            x = (u - k * a) / c
            total += x.exp() * ((-x) ** k if k else Decimal(1)) / math.factorial(k)
            k += 1
        return float(1 - (1 - a / c) * total)


@lru_cache(maxsize=4096)
def _cusum_level(p: float, shift: float) -> float:
    """The smallest u >= 0 with cusum_exceedance(u, shift) <= p (bisection to 1e-9)."""
    if cusum_exceedance(1e-12, shift) <= p:
        return 0.0
    low, high = 0.0, 1.0
    while cusum_exceedance(high, shift) > p:
        low, high = high, high * 2.0
    while high - low > 1e-9:
        middle = (low + high) / 2.0
        if cusum_exceedance(middle, shift) > p:
            low = middle
        else:
            high = middle
    return high


def cusum_threshold(expected_per_window: float, alpha: float, shift: float) -> float:
    """The Poisson CUSUM threshold h that bounds a problem-free cell's probability of an alarm
    within a window of `expected_per_window` expected reports by alpha: the alarm needs a report
    arriving while the statistic is >= h - log(shift), which it is with probability at most
    cusum_exceedance(h - log(shift)) (the statistic started at 0 never exceeds its stationary
    version), so w * cusum_exceedance(h - log(shift)) <= alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if expected_per_window <= 0:
        return math.log(shift)
    return math.log(shift) + _cusum_level(min(1.0, alpha / expected_per_window), shift)


def poisson_mean_upper_bound(observed: int, confidence: float = 0.95) -> float:
    """The exact (Garwood) one-sided upper confidence bound of a Poisson mean after `observed`
    events: the mean mu with P(X <= observed | mu) = 1 - confidence."""
    if observed < 0:
        raise ValueError(f"observed must not be negative, got {observed}")
    target = 1.0 - confidence
    low, high = 0.0, max(1.0, 2.0 * observed + 10.0)
    while poisson_cdf(observed, high) > target:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if poisson_cdf(observed, middle) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return high


def poisson_variate(rng: random.Random, lam: float) -> int:
    """A Poisson(lam) draw (for simulations): counting unit-rate exponential gaps."""
    if lam < 0:
        raise ValueError(f"the mean must not be negative, got {lam}")
    count, total = 0, rng.expovariate(1.0)
    while total < lam:
        count += 1
        total += rng.expovariate(1.0)
    return count


# ---------------------------------------------------------------------------------------
# Exact calibration of a likelihood-ratio boundary (issue 20)
#
# The likelihood ratio of a `shift`-fold rate against the baseline after n reports at an
# expectation L is shift**n * exp(-(shift - 1) L); the test alarms when its logarithm reaches
# a level h, i.e. when the count reaches b(L) = max(min_reports, ceil((h + (shift - 1) L) / log(shift))).
# Instead of bounding the crossing rate (the union bound of the sequential test, which spends
# a fraction of the budget exactly in a batch's first months), the level is set month by month
# so that the probability of the first crossing in each month is at most alpha and as close
# to it as the integer counts allow, computed exactly: within a stretch of expectation where
# the boundary is constant, the count crosses it iff it ends the stretch at or above it
# (counts never fall), so the sub-distribution of counts not yet crossed is carried from one
# boundary step to the next by a convolution with a Poisson law, and what leaves it is the
# crossing probability. The boundary steps every log(shift) / (shift - 1) expected reports,
# so a month costs a few dozen short convolutions.
#
# Operational time: one unit = one expected report. A "month" is a window of `window`
# expected reports (the cell's units in service x rate x 31 days); month m of the calibration
# is the expectation [m W, (m + 1) W]. Each level h_m is the lowest that keeps both the month
# [m W, (m + 1) W] and the window straddling it [(m - 1/2) W, (m + 1/2) W] within alpha, so a
# calendar month that does not start where the calibration's months do (a batch whose sales
# ramp up over its first month) is covered too.

LR_MONTHS = 36  # months calibrated; later months keep the last level (their crossing rate only falls)
_GRID_STEPS_PER_DOUBLING = 8  # window sizes are rounded up to 2**(k/8) (at most 9 % up) for caching


def mode_shift(share: float, shift: float) -> float:
    """The shift of one failure mode carrying `share` of a category's baseline reports when the
    category's rate is multiplied by `shift` and all the excess is of that mode:
    (share + shift - 1) / share (a 3x shift in a mode of 10 % is 21x for that mode)."""
    if not 0 < share <= 1:
        raise ValueError(f"a failure mode's share must lie in (0, 1], got {share}")
    if shift <= 1:
        raise ValueError(f"the shift to detect must exceed 1, got {shift}")
    return (share + shift - 1.0) / share


def window_grid(window: float) -> float:
    """`window` rounded up to the calibration grid (2**(k/8), from 2**-12)."""
    if window <= 0:
        raise ValueError(f"the window's expected reports must be positive, got {window}")
    k = max(-12 * _GRID_STEPS_PER_DOUBLING, math.ceil(math.log2(window) * _GRID_STEPS_PER_DOUBLING - 1e-9))
    return float(2.0 ** (k / _GRID_STEPS_PER_DOUBLING))


def _poisson_weights(delta: float, length: int) -> np.ndarray:
    """P(X = n | delta) for n < length (truncated where the terms vanish)."""
    if delta <= 0:
        return np.ones(1)
    upper = min(length, int(delta + 12.0 * math.sqrt(delta) + 30.0))
    n = np.arange(upper)
    weights: np.ndarray = np.exp(n * math.log(delta) - delta - _log_factorials(upper))
    return weights


@lru_cache(maxsize=64)
def _log_factorial_table(size: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, size)))))


def _log_factorials(upper: int) -> np.ndarray:
    size = 1 << max(10, (upper - 1).bit_length())
    return _log_factorial_table(size)[:upper]


def likelihood_ratio_count(level: float, expected: float, shift: float, min_reports: int) -> int:
    """The count at which the log likelihood ratio n log(shift) - (shift - 1) L reaches `level`."""
    return max(min_reports, math.ceil((level + (shift - 1.0) * expected) / math.log(shift) - 1e-12))


def advance_not_crossed(alive: np.ndarray, start: float, end: float, level: float, shift: float,
                        min_reports: int) -> tuple[np.ndarray, float]:
    """Carry the sub-distribution of counts that have not crossed the boundary of `level`
    (alive[n] = P(N = n, no crossing yet) at expectation `start`) to `end`; returns it and the
    probability of a first crossing in (start, end] (including the counts a lower boundary at
    `start` already holds, when the level falls there)."""
    a, c = math.log(shift), shift - 1.0
    crossed = 0.0
    expected = start
    bound = likelihood_ratio_count(level, expected, shift, min_reports)
    if len(alive) > bound:
        crossed += float(alive[bound:].sum())
        alive = alive[:bound]
    while expected < end:
        step_at = (bound * a - level) / c  # beyond it the boundary is bound + 1
        stop = min(end, step_at) if step_at > expected else end
        if stop > expected:
            before = float(alive.sum())
            alive = np.convolve(alive, _poisson_weights(stop - expected, bound))[:bound]
            crossed += before - float(alive.sum())
            expected = stop
        if expected >= step_at:
            bound += 1
            alive = np.concatenate((alive, np.zeros(bound - len(alive)))) if len(alive) < bound else alive
    return alive, max(0.0, crossed)


@dataclass(frozen=True)
class Calibration:
    """Levels per month of a likelihood-ratio boundary and the exact first-crossing
    probability they give each month (and each window straddling two months)."""

    window: float
    shift: float
    alpha: float
    min_reports: int
    levels: tuple[float, ...]
    month_probability: tuple[float, ...]
    straddle_probability: tuple[float, ...]

    def level(self, expected: float) -> float:
        return self.levels[min(int(expected / self.window), len(self.levels) - 1)]

    def critical_count(self, expected: float) -> int:
        return likelihood_ratio_count(self.level(expected), expected, self.shift, self.min_reports)


@lru_cache(maxsize=4096)
def calibrate_likelihood_ratio(window: float, shift: float, alpha: float, min_reports: int = 3,
                               months: int = LR_MONTHS, later: float = 1.0, first: float = 1.0) -> Calibration:
    """The lowest level per month that keeps each month's (and each straddling window's)
    first-crossing probability of a problem-free cell within alpha (month 0: alpha x `first`,
    months 1 and later: alpha x `later`, for a test that shares the budget with others whose
    alarms overlap, as measured on their union), by the exact recursion."""
    if not 0 < alpha < 1 or not 0 < alpha * later < 1 or not 0 < alpha * first < 1:
        raise ValueError(f"alpha (and alpha x later, alpha x first) must lie strictly between 0 and 1, got {alpha}, "
                         f"{later} and {first}")
    if window <= 0 or shift <= 1:
        raise ValueError(f"need a positive window and a shift above 1, got {window} and {shift}")
    c = shift - 1.0
    alive = np.ones(1)
    levels: list[float] = []
    months_p: list[float] = []
    straddles: list[float] = []
    carried = 0.0  # the crossing in [(m - 1/2) W, m W] under the previous month's level
    budget = alpha
    for m in range(months):
        lo_e, mid_e, hi_e = m * window, (m + 0.5) * window, (m + 1) * window
        budget = alpha * first if m == 0 else alpha * later

        def risk(level: float, state: np.ndarray = alive, before: float = carried, opening: bool = m == 0,
                 lo: float = lo_e, mid: float = mid_e, hi: float = hi_e) -> tuple[float, float]:
            half, early = advance_not_crossed(state, lo, mid, level, shift, min_reports)
            _, late = advance_not_crossed(half, mid, hi, level, shift, min_reports)
            return early + late, (0.0 if opening else before + early)

        low = -c * hi_e - 1.0  # the boundary sits at min_reports throughout the month
        if max(risk(low)) <= budget:
            level = low
        else:
            high = math.log(shift) * (hi_e + 12.0 * math.sqrt(hi_e) + 30.0)
            while max(risk(high)) > budget:
                high *= 2.0
            for _ in range(60):
                middle = (low + high) / 2.0
                if max(risk(middle)) > budget:
                    low = middle
                else:
                    high = middle
                if high - low < 1e-6 * max(1.0, abs(high)):
                    break
            level = high
        month, straddle = risk(level)
        levels.append(level)
        months_p.append(month)
        straddles.append(straddle)
        half, _ = advance_not_crossed(alive, lo_e, mid_e, level, shift, min_reports)
        alive, carried = advance_not_crossed(half, mid_e, hi_e, level, shift, min_reports)
    return Calibration(window, shift, alpha, min_reports, tuple(levels), tuple(months_p), tuple(straddles))


def likelihood_ratio_calibration(window: float, shift: float, alpha: float, min_reports: int = 3,
                                 later: float = 1.0, first: float = 1.0) -> Calibration:
    """The calibration for a cell expecting `window` reports in a month's window, on the grid."""
    return calibrate_likelihood_ratio(window_grid(window), shift, alpha, min_reports, later=later, first=first)
