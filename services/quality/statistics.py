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
from decimal import Decimal, localcontext
from functools import lru_cache

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
