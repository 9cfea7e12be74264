"""The Poisson statistics the early warning rests on, written by hand (no SciPy at runtime).

The upper tail of a Poisson count is a regularised incomplete gamma function:

    P(X >= n | lam) = P(n, lam) = gamma_lower(n, lam) / Gamma(n)        (n >= 1)

`regularized_gamma_p` evaluates it by the power series when lam < n + 1 and through the
complement Q = 1 - P by Lentz's continued fraction otherwise (Numerical Recipes, 3rd ed.,
§6.2), with the prefactor lam**n * exp(-lam) / Gamma(n) taken in logarithms, so neither
large n nor large lam overflows and a tail of 1e-300 stays accurate rather than rounding
to 0. Relative accuracy is better than 1e-11 over the range the detector uses (the unit
tests check it against SciPy).
"""

from __future__ import annotations

import math
import random

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
