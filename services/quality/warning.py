"""Quality v2 (issue 20): the likelihood-ratio tests that run on batch cells beside the
sequential test, pure code (docs/quality-early-warning.md §3a).

On a batch cell the monthly budget alpha is split three ways (the `early_warning` section of
baseline_rates.yaml; defaults 70 / 28 / 2 %):

- `likelihood_ratio_share` to a likelihood-ratio test tuned to the shift that matters
  (3x by default) on the cell's count, with its level set month by month by the exact
  recursion of statistics.calibrate_likelihood_ratio;
- `failure_mode_share` to one such test per failure mode of the category, each against the
  mode's own baseline share p (expectation p L) and tuned to the mode's shift when all the
  excess is of that mode, (p + k - 1) / p (statistics.mode_shift) for the category shift
  k = `mode_test_shift` (5x by default: a one-mode excess is found on few reports anyway, and
  tuned nearer 5x its boundary is lower where a 5x batch's reports pile up), the share split
  evenly over the category's modes;
- `sequential_share` to the sequential test of issue 6 (statistics.sequential_critical_count),
  which stays for 2x and for shifts that start late;
- the burst rule (7 same-mode reports in 30 days, no baseline) beside them. It applies only
  to batches whose baseline makes that many reports of *any* mode in the window rare
  (P(X >= 7 | the batch's expected reports in 30 days) <= `burst_gate`, 1e-3 by default:
  batches expecting up to about 1.2 reports a month); on larger batches a burst of 7
  same-mode reports happens by chance (0.4 % of their cell-months ungated) and the per-mode
  tests, which know the mode's baseline, take its place.

The likelihood-ratio tests run at `first_month_factor` (1.0) x their share in a batch's month
0 and `later_month_factor` (1.2) x their share from month 1 on. In month 0 the shares alone
keep the union within the budget (each test's month 0 is within its share, and the shares sum
to 1); measured by simulation (200,000 cells per window size, tools/bench/quality_union.py) the
union spends 0.735 to 0.949 % of a 1 % budget there at W = 0.5 to 30 expected reports a month,
and any factor above 1 that was tried (1.02 to 1.1) brought W = 30 to 0.97 to 1.05 %, over the
budget with its 95 % upper bound. From month 1 on the tests' alarms overlap (each test's level
is held by a different straddling window) and the factor 1.2 spends what that leaves: months 1
and 2 at 0.60 to 0.90 % (docs/quality-early-warning.md §6). Supplier x model cells keep the
sequential test at the whole budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.quality.statistics import likelihood_ratio_calibration, mode_shift, poisson_sf

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class EarlyWarning:
    """The split of a batch cell's budget and the shift its likelihood-ratio tests are tuned to."""

    shift: float = 3.0
    likelihood_ratio_share: float = 0.70
    failure_mode_share: float = 0.28
    sequential_share: float = 0.02
    # Baseline failure-mode shares by category (baseline_rates.yaml `failure_modes`), used
    # until a category has `mode_estimate_min_reports` counted reports; then the shares are
    # estimated from them (a mode seen in fewer than `mode_share_floor` of them counts at the floor).
    mode_shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    mode_estimate_min_reports: int = 200
    mode_share_floor: float = 0.02
    burst_gate: float = 1e-3
    # The likelihood-ratio tests' budget in months 1 and later is their share x this factor:
    # their alarms overlap there (each test's level is held by a different straddling window),
    # so the union spends 0.598 to 0.897 % of a 1 % budget in months 1 and 2 at 1.2 with the
    # shares above (upper bounds at most 0.939 %; 200,000 cells per W = 0.5 to 30,
    # docs/quality-early-warning.md §6; at 1.3 a month reached 1.09 % with an earlier split).
    later_month_factor: float = 1.2
    # The likelihood-ratio tests' budget in a batch's month 0 is their share x this factor:
    # their union there spends 0.735 to 0.949 % of a 1 % budget at factor 1 (W = 0.5 to 30),
    # 0.973 to 1.048 % at W = 30 with 1.02 to 1.1, over the budget with its upper bound
    # (simulation of 200,000 cells per W, docs §6): 1 is the largest factor that keeps it.
    first_month_factor: float = 1.0
    # The category shift the per-mode tests are tuned to (each mode's own shift is
    # statistics.mode_shift(share, this)); None: `shift`. Tuned nearer 5x than the category
    # test: a one-mode excess is found in few reports anyway, and the 5x batches need it sooner.
    mode_test_shift: float | None = 5.0

    def __post_init__(self) -> None:
        if self.shift <= 1:
            raise ValueError(f"the shift the likelihood-ratio tests are tuned to must exceed 1, got {self.shift}")
        if self.mode_test_shift is not None and self.mode_test_shift <= 1:
            raise ValueError(f"the shift the per-mode tests are tuned to must exceed 1, got {self.mode_test_shift}")
        shares = (self.likelihood_ratio_share, self.failure_mode_share, self.sequential_share)
        for name, factor in (("later months'", self.later_month_factor), ("first month's", self.first_month_factor)):
            if not 1 <= factor < 1 / max(shares):
                raise ValueError(f"the {name} factor must be >= 1 and keep each share times it below 1, got {factor}")
        if min(shares) < 0 or sum(shares) > 1 or self.sequential_share <= 0:
            raise ValueError("the shares of the budget (likelihood ratio, failure modes, sequential) must be >= 0, "
                             f"the sequential one > 0, and sum to at most 1; got {shares}")

    @property
    def mode_shift_tuned(self) -> float:
        return self.mode_test_shift or self.shift

    def shares_for(self, category: str, counts: Mapping[str, int] | None = None) -> dict[str, float]:
        """The baseline share of each failure mode of `category`: estimated from `counts` (the
        category's counted reports by mode) once they are `mode_estimate_min_reports` or more,
        else the configured ones (none configured: no per-mode test)."""
        total = sum(counts.values()) if counts else 0
        if counts and total >= self.mode_estimate_min_reports:
            raw = {m: max(self.mode_share_floor, n / total) for m, n in counts.items() if n > 0}
        else:
            raw = dict(self.mode_shares.get(category, {}))
        norm = sum(raw.values())
        return {m: s / norm for m, s in sorted(raw.items())} if norm > 0 else {}


@dataclass(frozen=True)
class LrCrossing:
    test: str  # "likelihood_ratio" or "failure_mode"
    failure_mode: str | None
    at: float  # epoch seconds of the report that crossed
    observed: int
    expected: float
    critical_count: int
    shift: float
    alpha: float


def first_crossing(times: Sequence[float], expected_at: Sequence[float], window_at: Sequence[float], shift: float,
                   alpha: float, min_reports: int, later: float = 1.0, first: float = 1.0) -> int | None:
    """The index of the first report whose count (index + 1) reaches the calibrated
    likelihood-ratio boundary at its expectation; None if none does. `expected_at` and
    `window_at` are the expectation since monitoring started and the window's expected reports
    at each report."""
    for index, (expected, window) in enumerate(zip(expected_at, window_at, strict=True)):
        count = index + 1
        if count < min_reports or window <= 0:
            continue
        cal = likelihood_ratio_calibration(window, shift, alpha, min_reports, later, first)
        if count >= cal.critical_count(expected):
            return index
    return None


def likelihood_ratio_crossings(
    warning: EarlyWarning, alpha: float, times: Sequence[float], modes: Sequence[str], expected_at: Sequence[float],
    window_at: Sequence[float], shares: Mapping[str, float], min_reports: int,
) -> list[LrCrossing]:
    """The crossings of a batch cell's likelihood-ratio tests over its reports (epoch seconds,
    ascending, with their failure modes): the category test at alpha x likelihood_ratio_share,
    and each mode's test at alpha x failure_mode_share / (number of modes)."""
    found: list[LrCrossing] = []
    if warning.likelihood_ratio_share > 0:
        a = alpha * warning.likelihood_ratio_share
        f, f0 = warning.later_month_factor, warning.first_month_factor
        index = first_crossing(times, expected_at, window_at, warning.shift, a, min_reports, f, f0)
        if index is not None:
            cal = likelihood_ratio_calibration(window_at[index], warning.shift, a, min_reports, f, f0)
            found.append(LrCrossing("likelihood_ratio", None, times[index], index + 1, expected_at[index],
                                    cal.critical_count(expected_at[index]), warning.shift, a))
    if warning.failure_mode_share > 0 and shares:
        a = alpha * warning.failure_mode_share / len(shares)
        for mode, share in shares.items():
            picks = [i for i, m in enumerate(modes) if m == mode]
            if len(picks) < min_reports:
                continue
            k = mode_shift(share, warning.mode_shift_tuned)
            exp_m = [expected_at[i] * share for i in picks]
            win_m = [window_at[i] * share for i in picks]
            f, f0 = warning.later_month_factor, warning.first_month_factor
            index = first_crossing([times[i] for i in picks], exp_m, win_m, k, a, min_reports, f, f0)
            if index is not None:
                cal = likelihood_ratio_calibration(win_m[index], k, a, min_reports, f, f0)
                found.append(LrCrossing("failure_mode", mode, times[picks[index]], index + 1, exp_m[index],
                                        cal.critical_count(exp_m[index]), k, a))
    return sorted(found, key=lambda c: (c.at, c.test, c.failure_mode or ""))


def burst_applies(warning: EarlyWarning, expected_in_window: float, reports: int) -> bool:
    """Whether the burst rule applies to a batch expecting `expected_in_window` reports (all
    modes) in the burst window: when `reports` of them would be rare anyway."""
    return poisson_sf(reports, expected_in_window) <= warning.burst_gate


def window_expected(rate: float, units: int, window_days: float, unit_month_days: float) -> float:
    """Expected reports of `units` units in service over a window of `window_days`."""
    return rate * units * window_days / unit_month_days


def crossing_details(crossings: Sequence[LrCrossing]) -> list[dict[str, object]]:
    return [{"test": c.test, "failure_mode": c.failure_mode, "observed": c.observed,
             "expected": round(c.expected, 6), "critical_count": c.critical_count,
             "shift": round(c.shift, 4), "alpha": c.alpha} for c in crossings]
