"""Rectification measures (work plan: "rectification measures by category … checking that
they are carried out"): what a measure answers, its status, and its measured effect. Pure
rules, no I/O; the store counts, this module decides.

A measure answers a complaint category (the complaints' classification) or a quality alert
(quality's QualityAlertRaised; it answers the alert's part category). It has an owner (a
person of the escalation directory), a due date by which it should be in place, and, once
checked, a verification: effective or not, by whom, with a note.

The effect is the change in the answered category's rate between two windows of equal length:
*before* — the `window` up to the day the measure was recorded; *after* — the `window` from
its due date (when it should be in place), cut at the moment of the figures while it runs.
The rate is per 100 workshop visits (intake's VehiclePickedUp) in the same window: complaints
of the category for a complaint category, defect reports of the part category (from the
workshop, intake, and from complaints) for an alert. Visits are the exposure for both because
complaints and defect reports both arise at visits, and they grow and shrink with the season.

A change from 3 complaints to 2 is not an effect: the two counts are compared with the exact
conditional test of two Poisson rates (given n = before + after events, the after count is
Binomial(n, p0) under "no change", p0 = the after window's share of the visits) and the
rate ratio's exact confidence interval (Clopper-Pearson on that binomial, mapped to a ratio).
Only when the test rejects "no change" at the configured confidence is the verdict a decrease
or an increase.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from scipy.stats import binomtest

TargetKind = Literal["category", "alert"]
Verdict = Literal["effective", "not_effective"]
Status = Literal["open", "due", "overdue", "verified"]
STATUSES: tuple[Status, ...] = ("open", "due", "overdue", "verified")
Change = Literal["decreased", "increased", "no_significant_change", "not_enough_data", "after_not_started"]


class MeasureRefused(ValueError):
    """A measure or its verification that cannot be recorded as asked (422, nothing stored)."""


@dataclass(frozen=True, slots=True)
class Window:
    starts_at: datetime
    ends_at: datetime  # exclusive

    @property
    def empty(self) -> bool:
        return self.ends_at <= self.starts_at


def windows(recorded_at: datetime, due_at: datetime, as_of: datetime, length: timedelta) -> tuple[Window, Window]:
    """The before window (up to the recording) and the after window (from the due date, cut
    at `as_of` while it runs; empty until the due date)."""
    before = Window(recorded_at - length, recorded_at)
    after_start = max(due_at, recorded_at)
    after = Window(after_start, max(after_start, min(after_start + length, as_of)))
    return before, after


def status(*, due_at: datetime, verified: bool, now: datetime, due_soon: timedelta) -> Status:
    """verified once checked; overdue past its due date unchecked; due within `due_soon` of
    it; open before that."""
    if verified:
        return "verified"
    if now >= due_at:
        return "overdue"
    if now >= due_at - due_soon:
        return "due"
    return "open"


@dataclass(frozen=True, slots=True)
class Period:
    """One window's counts: the category's events and the workshop visits."""

    starts_at: datetime
    ends_at: datetime
    events: int
    visits: int

    @property
    def rate_per_100_visits(self) -> float | None:
        return None if self.visits == 0 else 100.0 * self.events / self.visits

    def as_dict(self) -> dict[str, object]:
        rate = self.rate_per_100_visits
        return {"starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat(),
                "events": self.events, "visits": self.visits,
                "rate_per_100_visits": None if rate is None else round(rate, 3)}


@dataclass(frozen=True, slots=True)
class Effect:
    before: Period
    after: Period
    confidence: float
    rate_ratio: float | None  # after / before
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    change: Change

    def as_dict(self) -> dict[str, object]:
        def r(v: float | None) -> float | None:
            return None if v is None or v != v else round(v, 4)

        return {"before": self.before.as_dict(), "after": self.after.as_dict(), "confidence": self.confidence,
                "rate_ratio": r(self.rate_ratio), "ci_low": r(self.ci_low),
                "ci_high": None if self.ci_high is None or self.ci_high == float("inf") else r(self.ci_high),
                "p_value": r(self.p_value), "change": self.change, "note": note(self)}


def effect(before: Period, after: Period, confidence: float) -> Effect:
    """The change in rate from `before` to `after`, with the exact test and the rate ratio's
    exact confidence interval (see the module docstring)."""
    if after.ends_at <= after.starts_at:
        return Effect(before, after, confidence, None, None, None, None, "after_not_started")
    n = before.events + after.events
    if before.visits == 0 or after.visits == 0 or n == 0:
        return Effect(before, after, confidence, None, None, None, None, "not_enough_data")
    share = after.visits / (before.visits + after.visits)  # p0: the after window's share of the exposure
    test = binomtest(after.events, n, share, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    exposure = before.visits / after.visits

    def ratio(p: float) -> float:
        return float("inf") if p >= 1 else p / (1 - p) * exposure

    rate_ratio = None if before.events == 0 else (after.events / after.visits) / (before.events / before.visits)
    p_value = float(test.pvalue)
    change: Change = "no_significant_change"
    if p_value < 1 - confidence:
        change = "decreased" if after.events / after.visits < before.events / before.visits else "increased"
    return Effect(before, after, confidence, rate_ratio, ratio(ci.low), ratio(ci.high), p_value, change)


def note(e: Effect) -> str:
    """One line a supervisor can read (en; the console words it in zh-CN from the figures)."""
    level = f"{round(e.confidence * 100)} %"
    if e.change == "after_not_started":
        return "the after window starts at the due date; no figures after the measure yet"
    if e.change == "not_enough_data":
        return "not enough data: a window without visits, or no event in either window"
    interval = (f"rate ratio {e.rate_ratio:.2f}" if e.rate_ratio is not None else "no event before") + (
        f", {level} interval {e.ci_low:.2f}–" + ("∞" if e.ci_high in (None, float("inf")) else f"{e.ci_high:.2f}")
    )
    counts = f"{e.before.events} in {e.before.visits} visits before, {e.after.events} in {e.after.visits} after"
    if e.change == "no_significant_change":
        return f"{counts}: no significant change at {level} (p = {e.p_value:.3f}; {interval})"
    return f"{counts}: {e.change.replace('_', ' ')} at {level} (p = {e.p_value:.3g}; {interval})"


def check_due(recorded_at: datetime, due_at: datetime) -> None:
    if due_at <= recorded_at:
        raise MeasureRefused(f"due_at {due_at.isoformat()} is not after the recording ({recorded_at.isoformat()}); "
                             "a measure is due some time after it is decided")


def check_target(kind: TargetKind, category: str | None, alert_id: str | None, categories: tuple[str, ...]) -> None:
    """A category measure names one complaint category; an alert measure names one alert."""
    if kind == "category":
        if alert_id is not None:
            raise MeasureRefused("a measure answering a complaint category names no alert_id")
        if category not in categories:
            raise MeasureRefused(f"category {category!r} is not a complaint category; use one of {', '.join(categories)}")
    elif category is not None or not alert_id:
        raise MeasureRefused("a measure answering a quality alert names its alert_id (and no category: the alert's "
                             "part category is taken from the alert)")


def check_owner(owner: str, people: frozenset[str]) -> None:
    if owner not in people:
        raise MeasureRefused(f"owner {owner!r} is not in the complaints directory; use one of {', '.join(sorted(people))}")
