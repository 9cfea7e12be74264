"""What the union of a batch cell's tests spends per month (issue 20), by simulation.

A problem-free batch cell of constant size: unit-rate reports in operational time (one unit =
one expected report), failure modes 40 / 30 / 20 / 10 %, a month = a window of W expected
reports. The tests are those the service runs on a batch cell (services/quality/warning.py):
the 3x likelihood-ratio test at alpha x likelihood_ratio_share, one per-mode test at
alpha x failure_mode_share / 4 each, both calibrated by statistics.likelihood_ratio_calibration
with the configured factors, and the sequential test at alpha x sequential_share
(statistics.sequential_p_value), every one from the third report on. It is the model of
`_joint_first_alarm_months` in tests/unit/test_quality_v2.py, vectorised with numpy (that
helper loops report by report in Python; `--check N` runs both on the same N cells and stops
unless they agree cell by cell). Prints, per W and first-month factor, the probability of the
first alarm in each month with its binomial standard error and exact (Clopper-Pearson, two-sided
95 %) upper bound.

    .venv/bin/python -m tools.bench.quality_union --cells 120000 --windows 0.5 2 8 30 --factors 1.1 1.05 1.0

The same seed gives every factor the same cells (a paired comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
from scipy.stats import beta

from services.quality.config import QualityRules
from services.quality.statistics import likelihood_ratio_calibration, mode_shift
from services.quality.warning import EarlyWarning

SHARES = (0.4, 0.3, 0.2, 0.1)
MIN_REPORTS = 3


def _critical(cal, expected: np.ndarray) -> np.ndarray:
    """Calibration.critical_count over an array of expectations."""
    levels = np.asarray(cal.levels)
    month = np.minimum((expected / cal.window).astype(np.int64), len(levels) - 1)
    raw = np.ceil((levels[month] + (cal.shift - 1.0) * expected) / math.log(cal.shift) - 1e-12)
    return np.maximum(MIN_REPORTS, raw)


def draw(rng: np.random.Generator, cells: int, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Report times (operational time, +inf past the horizon) and failure modes, cells x reports."""
    width = int(horizon + 8 * math.sqrt(horizon) + 20)
    times = np.cumsum(rng.exponential(1.0, (cells, width)), axis=1)
    modes = rng.choice(len(SHARES), (cells, width), p=SHARES)
    times[times >= horizon] = np.inf
    return times, modes


def first_alarm_times(times: np.ndarray, modes: np.ndarray, window: float, alpha: float,
                      warning: EarlyWarning) -> np.ndarray:
    """The first alarm of the union of the tests per cell (operational time; inf: none)."""
    valid = np.isfinite(times)
    t = np.where(valid, times, 1.0)
    n = np.arange(1, times.shape[1] + 1)[None, :]
    f, f0 = warning.later_month_factor, warning.first_month_factor
    # Sequential test: window x P(X = n - 1 | t) <= alpha x its share, with n - 1 >= t.
    log_fact = np.array([math.lgamma(k + 1) for k in range(times.shape[1] + 1)])
    log_p = math.log(window) + (n - 1) * np.log(t) - t - log_fact[n - 1]
    alarm = (n >= MIN_REPORTS) & (n - 1 >= t) & (np.exp(log_p) <= alpha * warning.sequential_share)
    # The 3x likelihood-ratio test on the cell's count.
    if warning.likelihood_ratio_share > 0:
        cal = likelihood_ratio_calibration(window, warning.shift, alpha * warning.likelihood_ratio_share,
                                           MIN_REPORTS, f, f0)
        alarm |= (n >= MIN_REPORTS) & (n >= _critical(cal, t))
    # One test per failure mode, on that mode's reports.
    if warning.failure_mode_share > 0:
        a = alpha * warning.failure_mode_share / len(SHARES)
        for m, share in enumerate(SHARES):
            cal = likelihood_ratio_calibration(window * share, mode_shift(share, warning.mode_shift_tuned), a,
                                               MIN_REPORTS, f, f0)
            mine = modes == m
            count = np.cumsum(mine, axis=1)
            alarm |= mine & (count >= MIN_REPORTS) & (count >= _critical(cal, t * share))
    alarm &= valid
    hit = alarm.any(axis=1)
    first = np.argmax(alarm, axis=1)
    return np.where(hit, times[np.arange(len(times)), first], np.inf)


def simulate(window: float, factors: list[float], cells: int, months: int, seed: int, alpha: float,
             base: EarlyWarning, chunk: int = 10_000) -> dict[float, np.ndarray]:
    """Counts of cells whose first alarm falls in each month, per first-month factor."""
    rng = np.random.default_rng(seed)
    counts = {f0: np.zeros(months, dtype=np.int64) for f0 in factors}
    done = 0
    while done < cells:
        size = min(chunk, cells - done)
        times, modes = draw(rng, size, months * window)
        for f0 in factors:
            first = first_alarm_times(times, modes, window, alpha, dataclasses.replace(base, first_month_factor=f0))
            month = np.floor(first[np.isfinite(first)] / window).astype(np.int64)
            counts[f0] += np.bincount(month, minlength=months)[:months]
        done += size
    return counts


def check(window: float, cells: int, seed: int, alpha: float, base: EarlyWarning, months: int) -> tuple[int, int]:
    """The vectorised union against the test helper's loop (its model, by the service's own
    functions) on the same cells: the first-alarm month must agree cell by cell. Returns the
    cells with an alarm and the cells where the two disagree."""
    from services.quality.statistics import sequential_p_value
    from services.quality.warning import likelihood_ratio_crossings

    rng = np.random.default_rng(seed)
    times, modes = draw(rng, cells, months * window)
    fast = first_alarm_times(times, modes, window, alpha, base)
    names = "abcd"
    shares = dict(zip(names, SHARES, strict=True))
    mismatches = 0
    for i in range(cells):
        ts = times[i][np.isfinite(times[i])]
        first = math.inf
        if len(ts) >= MIN_REPORTS:
            ms = [names[m] for m in modes[i][: len(ts)]]
            for k, x in enumerate(ts, start=1):
                if k >= MIN_REPORTS and sequential_p_value(k, x, window) <= alpha * base.sequential_share:
                    first = x
                    break
            found = likelihood_ratio_crossings(base, alpha, list(ts), ms, list(ts), [window] * len(ts), shares,
                                               MIN_REPORTS)
            if found:
                first = min(first, found[0].at)
        slow_month = int(first // window) if math.isfinite(first) else -1
        fast_month = int(fast[i] // window) if math.isfinite(fast[i]) else -1
        mismatches += slow_month != fast_month
    return int(np.isfinite(fast).sum()), mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=120_000)
    parser.add_argument("--windows", type=float, nargs="+", default=[0.5, 2.0, 8.0, 30.0])
    parser.add_argument("--factors", type=float, nargs="+", default=None,
                        help="first-month factors (default: the configured one)")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--check", type=int, default=0, help="first compare with the test helper's loop on N cells")
    args = parser.parse_args()
    base = QualityRules().early_warning()
    factors = args.factors or [base.first_month_factor]
    print(f"split {base.likelihood_ratio_share:.0%} / {base.failure_mode_share:.0%} / {base.sequential_share:.0%}, "
          f"mode tests at {base.mode_shift_tuned}x, later_month_factor {base.later_month_factor}, "
          f"alpha {args.alpha:.2%}, modes 40/30/20/10 %, {args.cells} cells per W, seed {args.seed}")
    if args.check:
        for window in args.windows:
            alarms, mismatches = check(window, args.check, args.seed + 1, args.alpha, base, args.months)
            print(f"check W={window:g}: {args.check} cells, {alarms} with an alarm, "
                  f"{mismatches} disagreeing with the loop")
            if mismatches:
                raise SystemExit(1)
    for window in args.windows:
        started = time.monotonic()
        counts = simulate(window, factors, args.cells, args.months, args.seed, args.alpha, base)
        for f0 in factors:
            cells = []
            for c in counts[f0]:
                p = c / args.cells
                se = math.sqrt(p * (1 - p) / args.cells)
                upper = float(beta.ppf(0.975, c + 1, args.cells - c))
                cells.append(f"{p:.3%} (se {se:.3%}, upper {upper:.3%})")
            print(f"W={window:g} first_month_factor {f0:g}: " + "; ".join(
                f"month {m} {text}" for m, text in enumerate(cells)), flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
