"""Quality's rules as pure code (no I/O): cells and units in service, the early-warning
detector, the alert lifecycle, resolving and de-duplicating defect reports, weekly figures.

The early warning (docs/quality-early-warning.md has the full argument)
-----------------------------------------------------------------------
A *cell* is a group of part units that share a cause: one production batch of a category
(category x batch), or one supplier's parts of a category fitted to one model
(category x supplier x model). For a cell with no problem, defect reports arrive as a Poisson
process whose intensity is the baseline rate of its category times the units in service, so
the count N(t) of reports since monitoring (re)started is Poisson with mean

    L(t) = rate(category) x unit-months in service of the cell up to t.

The sequential test (the default, `test="sequential"`) checks the count at every report
against a boundary that rises with L: it alarms at a report when

    N(t) >= c(t),   c(t) = the smallest c with c - 1 >= L(t) and w(t) P(X = c - 1 | L(t)) <= alpha,

where w(t) = rate x units in service at t x window (the expected reports of a window of
looks_per_month looks, 31 days for daily looks). N climbs one report at a time and c never
falls (units never leave service), so the count can only cross the boundary by a report
arriving while N = c(t) - 1, which happens at rate P(N(t) = c(t) - 1) dL(t) <= alpha / window
per day. Over the days whose looks fall in one month that adds up to at most alpha: the
probability that a problem-free cell raises an alert in a given month is at most alpha
(default 1 % per cell per month), for any exposure that grows with sales. How often the
detector looks does not enter the bound; looks (daily by default, at local midnight) only
decide when an alarm is raised, and wait for their instant so that every unit sold and every
report made before it is known.

The repeated test (`test="repeated"`, the detector before the sequential one) tests the count
at each scheduled look against P(X >= N | L) <= alpha_look = alpha_month / looks_per_month,
a Bonferroni split over the looks a month can hold (weekly looks: 1 % / 5).

With `control_across_cells` the budget is also divided by the number of cells monitored,
which bounds the probability of *any* false alarm across all cells in a month by alpha_month;
by default it is per cell, so across K cells the expected number of false alarms a month is
at most alpha_month x K. Only cells with new reports are looked at: without a new report the
count cannot cross (sequential) and its p-value can only rise (repeated).

Plus a plain rule, run on each report as it arrives: N reports of the same failure mode in
one batch within 30 days. Its false-alarm rate depends on batch size (the benchmark measures it).
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.quality.statistics import (
    poisson_critical_count,
    poisson_sf,
    sequential_critical_count,
    sequential_p_value,
)
from shared.events.envelope import AFTERSALES_NAMESPACE, uuid5

SECONDS_PER_DAY = 86_400.0
# Looks end on local midnights counted from this Monday, so weekly looks end as ISO weeks do.
LOOK_EPOCH = date(1970, 1, 5)

# ---------------------------------------------------------------------------------------
# Cells

CellKind = Literal["batch", "supplier_model"]


@dataclass(frozen=True, order=True)
class Cell:
    kind: CellKind
    category: str
    batch: str | None = None
    supplier_id: str | None = None
    model: str | None = None

    @property
    def key(self) -> str:
        """A stable text key; JSON, so no id can forge another cell's key."""
        return json.dumps([self.kind, *self._parts()], ensure_ascii=False, separators=(",", ":"))

    def _parts(self) -> list[str | None]:
        if self.kind == "batch":
            return [self.category, self.batch]
        return [self.category, self.supplier_id, self.model]

    @classmethod
    def from_key(cls, key: str) -> Cell:
        kind, *parts = json.loads(key)
        if kind == "batch":
            return cls("batch", parts[0], batch=parts[1])
        return cls("supplier_model", parts[0], supplier_id=parts[1], model=parts[2])

    def as_dict(self) -> dict[str, str]:
        names = ("category", "batch") if self.kind == "batch" else ("category", "supplier_id", "model")
        return {"kind": self.kind, **{name: str(getattr(self, name)) for name in names}}

    @property
    def label(self) -> str:
        if self.kind == "batch":
            return f"{self.category} batch {self.batch}"
        return f"{self.category} from {self.supplier_id} on {self.model}"


def cells_for(category: str, batch: str | None, supplier_id: str | None, model: str | None) -> list[Cell]:
    """The cells a part unit (or a report on it) belongs to, as far as its attributes are known."""
    cells = []
    if batch:
        cells.append(Cell("batch", category, batch=batch))
    if supplier_id and model:
        cells.append(Cell("supplier_model", category, supplier_id=supplier_id, model=model))
    return cells


# ---------------------------------------------------------------------------------------
# Units in service and baseline rates


@dataclass(frozen=True)
class BaselineRates:
    """Defect reports per unit-month in service, by part category (baseline_rates.yaml)."""

    default: float
    by_category: Mapping[str, float]
    unit_month_days: float = 30.4375

    def rate(self, category: str) -> float:
        return self.by_category.get(category, self.default)

    def unit_months(self, unit_seconds: float) -> float:
        return unit_seconds / (self.unit_month_days * SECONDS_PER_DAY)


class Exposure:
    """The units of one cell by the instant each went into service (epoch seconds), answering
    "unit-seconds in service between two instants" in O(log n).

    unit_seconds(S, T) = sum over units in service before T of (T - max(put_in_service, S)):
    the time in service each unit accumulated in (S, T]. The service builds it from the sale
    instants store.cell_evidence loads; the benchmark and the tests use it directly.
    """

    def __init__(self, in_service_at: Iterable[float] = ()) -> None:
        self._times = sorted(in_service_at)
        self._prefix = [0.0]
        for t in self._times:
            self._prefix.append(self._prefix[-1] + t)

    def __len__(self) -> int:
        return len(self._times)

    def units(self, until: float) -> int:
        return bisect.bisect_left(self._times, until)

    def unit_seconds(self, since: float | None, until: float) -> float:
        end = bisect.bisect_left(self._times, until)
        if since is None:
            return end * until - self._prefix[end]
        if since >= until:
            return 0.0
        start = bisect.bisect_right(self._times, since)
        before = start * (until - since)  # units already in service at `since`
        after = (end - start) * until - (self._prefix[end] - self._prefix[start])
        return before + after


# ---------------------------------------------------------------------------------------
# The detector


Test = Literal["sequential", "repeated"]


@dataclass(frozen=True)
class MonitorPolicy:
    alpha_month: float = 0.01
    look_interval_days: int = 1
    min_reports: int = 3
    burst_reports: int = 7
    burst_window_days: int = 30
    timezone: str = "Asia/Shanghai"
    control_across_cells: bool = False
    test: Test = "sequential"

    @property
    def looks_per_month(self) -> int:
        """The most look instants any month (up to 31 days) can hold."""
        return math.ceil(31 / self.look_interval_days)

    @property
    def window_days(self) -> int:
        """The span of report times the looks of one month cover (31 days for daily looks)."""
        return self.looks_per_month * self.look_interval_days

    def alpha_look(self, cells_monitored: int = 1) -> float:
        """The repeated test's level per look: the monthly budget split over the looks."""
        alpha = self.alpha_month / self.looks_per_month
        if self.control_across_cells:
            alpha /= max(1, cells_monitored)
        return alpha

    def threshold(self, cells_monitored: int = 1) -> float:
        """The level an alarm's p-value must reach: per window for the sequential test, per look
        for the repeated one; divided by the cells monitored when controlling across cells."""
        if self.test == "repeated":
            return self.alpha_look(cells_monitored)
        return self.alpha_month / (max(1, cells_monitored) if self.control_across_cells else 1)

    @property
    def burst_window(self) -> timedelta:
        return timedelta(days=self.burst_window_days)

    def look_at(self, at: datetime) -> datetime:
        """The end of the look interval holding `at` (a local midnight strictly after it)."""
        zone = ZoneInfo(self.timezone)
        day = at.astimezone(zone).date()
        index = (day - LOOK_EPOCH).days // self.look_interval_days + 1
        return datetime.combine(LOOK_EPOCH + timedelta(days=index * self.look_interval_days), time(0), tzinfo=zone)


@dataclass(frozen=True)
class PoissonLook:
    """One look at one cell: observed reports against the baseline expectation."""

    observed: int
    expected: float
    units: int
    unit_months: float
    rate: float
    threshold: float  # the p-value at or under which the test alarms
    p_value: float | None  # None while the cell has no exposure (no unit in service known)
    critical_count: int | None  # the fewest reports that would alarm at this expectation
    alarm: bool
    test: Test = "repeated"
    # P(X >= observed | expected): the p-value of one test at this instant (the repeated test's p_value).
    tail_p_value: float | None = None
    # Sequential test: expected reports in a window at the current exposure, and the report
    # whose count first crossed the boundary.
    expected_per_window: float | None = None
    crossed_at: datetime | None = None

    @property
    def statistic(self) -> float | None:
        """Observed / expected (the standardised defect ratio); 3.0 reads "three times the baseline"."""
        return self.observed / self.expected if self.expected > 0 else None


def poisson_look(
    observed: int, units: int, unit_months: float, rate: float, alpha_look: float, min_reports: int
) -> PoissonLook:
    """The repeated test at one look: P(X >= observed | expected) <= alpha_look."""
    expected = rate * unit_months
    if expected <= 0:
        # No unit of the cell is known to be in service (a report before its sale): nothing to test yet.
        return PoissonLook(observed, 0.0, units, unit_months, rate, alpha_look, None, None, False)
    p_value = poisson_sf(observed, expected)
    critical = max(min_reports, poisson_critical_count(expected, alpha_look))
    return PoissonLook(
        observed, expected, units, unit_months, rate, alpha_look, p_value, critical,
        alarm=observed >= min_reports and p_value <= alpha_look, tail_p_value=p_value,
    )


def sequential_look(
    report_times: Sequence[float], exposure: Exposure, since: float | None, until: float, rate: float,
    unit_month_days: float, alpha: float, window_days: float, min_reports: int, tested_from: float | None = None,
) -> PoissonLook:
    """The sequential test over a cell's monitoring period (since, until): every report in it
    (epoch seconds, ascending) is a point where the count may cross the boundary; the look
    alarms if one did (with at least `min_reports` counted). `p_value` is the smallest attained
    level over those points (sequential_p_value): the alarm fires when it is <= alpha.

    Points before `tested_from` were tested at earlier looks with the same data (the benchmark
    feeds reports in time order); the service tests them all, so a report or a sale that
    arrives late is judged as if it had been on time."""
    month_seconds = unit_month_days * SECONDS_PER_DAY
    per_unit_window = rate * window_days / unit_month_days  # a unit's expected reports in a window
    p_value, crossed = 1.0, None
    for index, moment in enumerate(report_times):
        count = index + 1
        if count < min_reports or (tested_from is not None and moment < tested_from):
            continue
        units = exposure.units(moment)
        if units == 0:
            continue  # a report before any unit of the cell is known in service: no expectation
        expected = rate * exposure.unit_seconds(since, moment) / month_seconds
        level = sequential_p_value(count, expected, per_unit_window * units)
        p_value = min(p_value, level)
        if crossed is None and level <= alpha:
            crossed = moment
    observed, units = len(report_times), exposure.units(until)
    unit_months = exposure.unit_seconds(since, until) / month_seconds
    expected = rate * unit_months
    if expected <= 0:
        return PoissonLook(observed, 0.0, units, unit_months, rate, alpha, None, None, False, test="sequential")
    per_window = per_unit_window * units
    return PoissonLook(
        observed, expected, units, unit_months, rate, alpha, p_value,
        max(min_reports, sequential_critical_count(expected, per_window, alpha)), crossed is not None,
        test="sequential", tail_p_value=poisson_sf(observed, expected), expected_per_window=per_window,
        crossed_at=datetime.fromtimestamp(crossed, UTC) if crossed is not None else None,
    )


@dataclass(frozen=True)
class CellEvidence:
    """A cell's evidence over its monitoring period (since, until): the times of its counted
    reports and its units by the instant each went into service (epoch seconds)."""

    since: datetime | None
    until: datetime
    report_times: tuple[float, ...]
    exposure: Exposure
    latest: datetime | None = None  # the latest counted report since `since`, up to any time

    @property
    def observed(self) -> int:
        return len(self.report_times)


def cell_look(policy: MonitorPolicy, evidence: CellEvidence, rate: float, unit_month_days: float,
              threshold: float) -> PoissonLook:
    """The configured test on one cell's evidence, at level `threshold` (policy.threshold)."""
    since = evidence.since.timestamp() if evidence.since else None
    until = evidence.until.timestamp()
    if policy.test == "repeated":
        unit_months = evidence.exposure.unit_seconds(since, until) / (unit_month_days * SECONDS_PER_DAY)
        return poisson_look(evidence.observed, evidence.exposure.units(until), unit_months, rate, threshold,
                            policy.min_reports)
    return sequential_look(evidence.report_times, evidence.exposure, since, until, rate, unit_month_days,
                           threshold, policy.window_days, policy.min_reports)


@dataclass(frozen=True)
class ReportPoint:
    report_id: str
    reported_at: datetime
    failure_mode: str
    vin: str | None = None


@dataclass(frozen=True)
class Burst:
    failure_mode: str
    count: int
    first_at: datetime
    last_at: datetime
    report_ids: tuple[str, ...]


def find_burst(points: Sequence[ReportPoint], new_ids: Iterable[str], reports: int, window: timedelta) -> Burst | None:
    """The largest group of at least `reports` reports of one failure mode lying within
    `window` of each other (last - first < window) that holds a new report; None if none."""
    if reports <= 0:
        return None
    fresh = set(new_ids)
    by_mode: dict[str, list[ReportPoint]] = defaultdict(list)
    for point in points:
        by_mode[point.failure_mode].append(point)
    best: Burst | None = None
    for mode, group in sorted(by_mode.items()):
        if len(group) < reports:
            continue
        group.sort(key=lambda p: (p.reported_at, p.report_id))
        start = 0
        for end, last in enumerate(group):
            while last.reported_at - group[start].reported_at >= window:
                start += 1
            members = group[start:end + 1]
            if len(members) >= reports and any(p.report_id in fresh for p in members):
                if best is None or len(members) > best.count:
                    best = Burst(mode, len(members), members[0].reported_at, last.reported_at,
                                 tuple(p.report_id for p in members))
    return best


Action = Literal["raise", "update", "none"]
Rule = Literal["poisson", "failure_mode_burst"]


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: Rule | None = None  # the rule that raises the alert
    firing: tuple[Rule, ...] = ()  # every rule alarming at this look


def decide(has_open_alert: bool, look: PoissonLook | None, burst: Burst | None) -> Decision:
    """One open alert per cell: new evidence in a cell with an open alert updates it; otherwise
    an alarming rule raises a new one. The Poisson test runs at scheduled looks (`look`), the
    burst rule on each report's arrival (`burst`)."""
    rules: tuple[tuple[Rule, bool], ...] = (("poisson", look is not None and look.alarm),
                                            ("failure_mode_burst", burst is not None))
    firing: tuple[Rule, ...] = tuple(rule for rule, on in rules if on)
    if has_open_alert:
        return Decision("update", None, firing)
    if firing:
        return Decision("raise", firing[0], firing)
    return Decision("none", None, firing)


# ---------------------------------------------------------------------------------------
# The alert lifecycle: raised -> acknowledged -> closed

OPEN_STATES = ("raised", "acknowledged")
ALERT_STATES = ("raised", "acknowledged", "closed")
_TRANSITIONS: dict[str, dict[str, str]] = {
    "raised": {"acknowledge": "acknowledged"},
    "acknowledged": {"close": "closed"},
    "closed": {},
}


class IllegalTransition(Exception):
    def __init__(self, alert_id: str, state: str, action: str) -> None:
        allowed = list(_TRANSITIONS.get(state, {}))
        self.allowed = allowed
        options = " or ".join(f"{a}" for a in allowed) if allowed else "nothing (it is closed)"
        super().__init__(f"alert {alert_id} is {state}; it cannot {action}. Allowed now: {options}")


def allowed_actions(state: str) -> list[str]:
    return list(_TRANSITIONS.get(state, {}))


def transition(alert_id: str, state: str, action: str) -> str:
    try:
        return _TRANSITIONS[state][action]
    except KeyError:
        raise IllegalTransition(alert_id, state, action) from None


def alert_id_for(cell_key: str, since: datetime | None) -> str:
    """One alert per cell and monitoring period: the same evidence always gives the same id."""
    period = since.isoformat() if since else "start"
    return str(uuid5(AFTERSALES_NAMESPACE, f"quality-alert:{cell_key}:{period}"))


# ---------------------------------------------------------------------------------------
# Defect reports: resolving batch and supplier from the vehicle, counting each defect once


@dataclass(frozen=True)
class FittedPart:
    category: str
    part_no: str
    batch: str
    supplier_id: str


@dataclass(frozen=True)
class DefectReport:
    report_id: str
    source: Literal["intake", "complaints"]
    category: str
    failure_mode: str
    reported_at: datetime
    reported_by: str
    vin: str | None = None
    part_no: str | None = None
    batch: str | None = None
    supplier_id: str | None = None
    model: str | None = None
    mileage_km: int | None = None
    complaint_id: str | None = None
    description: str | None = None
    resolution: str = "as_reported"
    resolution_note: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.batch and self.supplier_id and self.model)


def resolve(report: DefectReport, model: str | None, parts: Sequence[FittedPart] | None) -> DefectReport:
    """Fill the batch, supplier, part number and model a report lacks from its vehicle's parts
    list. `parts` is None when the vehicle's sale is not known yet. The result says how far
    it got, so a report counted in fewer cells says why."""
    if report.complete:
        return replace(report, resolution="as_reported", resolution_note=None)
    filled: dict[str, Any] = {}
    if not report.model and model:
        filled["model"] = model
    reasons: list[str] = []
    if not (report.batch and report.supplier_id):
        if parts is None:
            reasons.append(
                "the vehicle's sale is not known yet; its parts list will fill batch and supplier when it arrives"
                if report.vin else "the report names no VIN to look the part up by"
            )
        else:
            fitted = [p for p in parts if p.category == report.category]
            if report.part_no:
                fitted = [p for p in fitted if p.part_no == report.part_no] or fitted
            batches = sorted({p.batch for p in fitted})
            suppliers = sorted({p.supplier_id for p in fitted})
            if not fitted:
                reasons.append(f"the vehicle's parts list has no {report.category}")
            else:
                if not report.batch:
                    if len(batches) == 1:
                        filled["batch"] = batches[0]
                    else:
                        reasons.append(f"the vehicle carries {report.category} from batches {', '.join(batches)}")
                if not report.supplier_id:
                    if len(suppliers) == 1:
                        filled["supplier_id"] = suppliers[0]
                    else:
                        reasons.append(f"the vehicle carries {report.category} from suppliers {', '.join(suppliers)}")
                if not report.part_no and len({p.part_no for p in fitted}) == 1:
                    filled["part_no"] = fitted[0].part_no
    resolved = replace(report, **filled)
    if resolved.complete:
        return replace(resolved, resolution="from_vehicle", resolution_note=None)
    if not resolved.model:
        reasons.append("the model is unknown")
    cells = cells_for(resolved.category, resolved.batch, resolved.supplier_id, resolved.model)
    counted_in = " and ".join(f"the {c.kind.replace('_', ' x ')} cell" for c in cells) or "category totals only"
    status = "awaiting_sale" if parts is None and report.vin else ("partial" if cells else "unresolved")
    return replace(resolved, resolution=status, resolution_note=f"counted in {counted_in}: {'; '.join(reasons)}")


@dataclass(frozen=True)
class Counting:
    """How a report counts: once per defect, in the cells its episode's attributes name."""

    report_id: str
    counted: bool
    duplicate_of: str | None
    batch: str | None
    supplier_id: str | None
    model: str | None


def count_once(reports: Sequence[DefectReport], window: timedelta) -> dict[str, Counting]:
    """Reports on one vehicle's part category within `window` of the first are one defect
    (a dealer report and the customer's complaint about it): the earliest report counts, the
    others point to it, and attributes the counted one lacks are taken from the others.
    Ordered by time, so the outcome does not depend on the order reports arrive in."""
    result: dict[str, Counting] = {}
    groups: dict[tuple[str, str], list[DefectReport]] = defaultdict(list)
    for report in reports:
        if report.vin and window > timedelta(0):
            groups[(report.vin, report.category)].append(report)
        else:
            result[report.report_id] = Counting(report.report_id, True, None, report.batch, report.supplier_id,
                                                report.model)
    for group in groups.values():
        group.sort(key=lambda r: (r.reported_at, r.source != "intake", r.report_id))
        episode: list[DefectReport] = []
        following: list[DefectReport | None] = [*group, None]  # None closes the last episode
        for item in following:
            if item is not None and episode and item.reported_at - episode[0].reported_at < window:
                episode.append(item)
                continue
            if episode:
                lead = episode[0]

                def first(name: str, members: list[DefectReport] = episode) -> Any:
                    return next((getattr(m, name) for m in members if getattr(m, name)), None)

                result[lead.report_id] = Counting(lead.report_id, True, None, first("batch"), first("supplier_id"),
                                                  first("model"))
                for other in episode[1:]:
                    result[other.report_id] = Counting(other.report_id, False, lead.report_id, other.batch,
                                                       other.supplier_id, other.model)
            episode = [item] if item is not None else []
    return result


# ---------------------------------------------------------------------------------------
# Weeks, weekly reports, parts-shipment accuracy


def week_label(moment: datetime, zone: str) -> str:
    year, week, _ = moment.astimezone(ZoneInfo(zone)).isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week: str, zone: str) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) of an ISO week 'YYYY-Www', local time in `zone`."""
    try:
        year, number = week.split("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise ValueError(f"week {week!r} is not an ISO week; write it like 2026-W47") from None
    start = datetime.combine(monday, time(0), tzinfo=ZoneInfo(zone))
    return start, datetime.combine(monday + timedelta(days=7), time(0), tzinfo=ZoneInfo(zone))


def previous_week(moment: datetime, zone: str) -> str:
    return week_label(moment.astimezone(ZoneInfo(zone)) - timedelta(days=7), zone)


def next_weekly_report_at(after: datetime, weekday: int, at: time, zone: str) -> datetime:
    """The first weekly-report instant (weekday at local time `at`) at or after `after`."""
    tz = ZoneInfo(zone)
    here = after.astimezone(tz)
    day = here.date() + timedelta(days=(weekday - here.weekday()) % 7)
    candidate = datetime.combine(day, at, tzinfo=tz)
    if candidate < here:
        candidate = datetime.combine(day + timedelta(days=7), at, tzinfo=tz)
    return candidate


def accuracy(lines: int, discrepant: int) -> float | None:
    """Lines shipped without a discrepancy / lines shipped; None when nothing was shipped."""
    return (lines - discrepant) / lines if lines else None


@dataclass(frozen=True)
class DealerLines:
    dealer_id: str
    lines: int
    discrepant: int


def parts_accuracy_figures(rows: Sequence[DealerLines], by_kind: Mapping[str, int], target: float) -> dict[str, Any]:
    lines = sum(r.lines for r in rows)
    discrepant = sum(r.discrepant for r in rows)
    overall = accuracy(lines, discrepant)
    dealers = [
        {"dealer_id": r.dealer_id, "lines": r.lines, "discrepant_lines": r.discrepant,
         "accuracy": accuracy(r.lines, r.discrepant),
         "meets_target": (accuracy(r.lines, r.discrepant) or 0) >= target if r.lines else None}
        for r in sorted(rows, key=lambda r: (accuracy(r.lines, r.discrepant) or 1.0, r.dealer_id))
    ]
    return {
        "lines": lines, "discrepant_lines": discrepant, "accuracy": overall, "target": target,
        "meets_target": overall >= target if overall is not None else None,
        "discrepancies_by_kind": dict(sorted(by_kind.items())),
        "dealers_below_target": [d["dealer_id"] for d in dealers if d["meets_target"] is False],
        "by_dealer": dealers,
    }


@dataclass(frozen=True)
class CountedDefect:
    category: str
    batch: str | None
    supplier_id: str | None
    model: str | None
    failure_mode: str


def defect_figures(defects: Sequence[CountedDefect], important: Sequence[str]) -> dict[str, Any]:
    """Defects by category, batch, supplier and failure mode, most frequent first."""
    by_category = Counter(d.category for d in defects)
    by_batch = Counter((d.category, d.batch) for d in defects if d.batch)
    by_supplier = Counter((d.category, d.supplier_id) for d in defects if d.supplier_id)
    by_mode = Counter((d.category, d.failure_mode) for d in defects)
    return {
        "defects": len(defects),
        "by_category": dict(by_category.most_common()),
        "important_categories": {c: by_category.get(c, 0) for c in important},
        "by_batch": [{"category": c, "batch": b, "defects": n} for (c, b), n in by_batch.most_common()],
        "by_supplier": [{"category": c, "supplier_id": s, "defects": n} for (c, s), n in by_supplier.most_common()],
        "by_failure_mode": [{"category": c, "failure_mode": m, "defects": n} for (c, m), n in by_mode.most_common()],
        "without_batch": sum(1 for d in defects if not d.batch),
    }


@dataclass
class WeeklyInputs:
    """What the quality weekly report is built from (loaded by the store)."""

    defects: list[CountedDefect] = field(default_factory=list)
    open_alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_raised: int = 0
    alerts_closed: int = 0
    complaint_categories: dict[str, int] = field(default_factory=dict)
    complaint_part_categories: dict[str, int] = field(default_factory=dict)


def quality_weekly_figures(inputs: WeeklyInputs, important: Sequence[str]) -> dict[str, Any]:
    return {
        **defect_figures(inputs.defects, important),
        "open_alerts": inputs.open_alerts,
        "alerts_raised": inputs.alerts_raised,
        "alerts_closed": inputs.alerts_closed,
        "complaints": sum(inputs.complaint_categories.values()),
        "complaint_categories": dict(sorted(inputs.complaint_categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        "complaint_part_categories": dict(
            sorted(inputs.complaint_part_categories.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
    }
