"""Dealer scorecards and receipts analysed (the work plan's section VI: supervise and evaluate the
dealers; receipts "for searching, statistics and analysis"). Pure rules, no I/O: the console's
read model hands in rows of one month, these functions make each dealer's figures.

Per dealer and month:
- return-visit reach: first return-visit calls after a pickup concluded in the month (completed or
  expired) that reached the customer / all of them. Target 98 %.
- satisfaction: completed calls with a score that scored >= 4 of 5 / calls with a score. Target 98 %
  (the work plan's satisfaction target).
- parts-shipment accuracy: lines shipped in the month without a discrepancy / lines shipped (the
  quality service's definition). Target 98 %.
- complaint rate per 100 visits: complaints filed in the month attributed to the dealer / its
  pickups in the month x 100. No target: shown beside the network's rate.
- repeat repairs: a repair-kind visit (repair, warranty, accident) repeating an item code of the
  same VIN's repair-kind visit at most 30 days earlier; counted in the month of the repeat, against
  the dealer of the earlier visit (whose repair did not hold). No target: shown per 100 visits.
- receipts' ratings: receipts returned in the month, their mean rating and the share rated >= 4.

A dealer is flagged on a measure with a target only when an exact binomial test rejects "the
dealer's true rate is at least the target" at the stated confidence (default 95 %): the p-value
is P(X <= misses' complement | n, target), the chance of seeing this few successes or fewer if the
dealer met the target. One miss in 20 (95 %) gives p = 0.33: no flag; 10 misses in 200 (also
95 %) gives p = 0.0075: flagged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scipy.stats import binom

TESTED = ("return_visit_reach", "satisfaction", "parts_accuracy")  # the measures with a 98 % target
REPAIR_KINDS = frozenset({"repair", "warranty", "accident"})  # maintenance and recalls are planned, not repairs


@dataclass(frozen=True)
class ScorecardRules:
    target: float = 0.98
    confidence: float = 0.95  # flag only when the test rejects "rate >= target" at this confidence
    repeat_days: int = 30  # the same VIN and item again within this many days is a repeat repair
    satisfied_score: int = 4  # a score (1-5) this high or higher is satisfied
    good_rating: int = 4  # a receipt rated this high or higher is a good one

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target {self.target} must be between 0 and 1 (0.98 is 98 %)")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence {self.confidence} must be at least 0.5 and below 1 (0.95 is 95 %)")


@dataclass(frozen=True)
class Test:
    """An exact one-sided binomial test of H0 "the true rate is at least the target"."""

    successes: int
    trials: int
    target: float
    confidence: float
    p_value: float | None  # None when there is nothing to test

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def below_target(self) -> bool:
        return self.trials > 0 and self.successes < self.target * self.trials

    @property
    def flagged(self) -> bool:
        """Below the target and the shortfall is beyond chance at the stated confidence."""
        return self.below_target and self.p_value is not None and self.p_value < 1 - self.confidence


def binomial_test(successes: int, trials: int, target: float, confidence: float) -> Test:
    """P(X <= successes) for X ~ Binomial(trials, target): small when so few successes would be
    unlikely if the dealer met the target."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials: successes must be between 0 and trials")
    p_value = float(binom.cdf(successes, trials, target)) if trials else None
    return Test(successes, trials, target, confidence, p_value)


# -- inputs (rows of the read model) ----------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    repair_order_id: str
    vin: str
    dealer_id: str | None
    picked_up_at: datetime
    service_type: str | None
    item_codes: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """A return-visit follow-up of the dealer concluded (completed or expired) at `at`."""

    dealer_id: str | None
    kind: str
    reached: bool
    satisfaction: int | None
    at: datetime


@dataclass(frozen=True)
class ComplaintRow:
    complaint_id: str
    dealer_id: str | None
    filed_at: datetime


@dataclass(frozen=True)
class LineRow:
    dealer_id: str
    shipped_at: datetime
    discrepant: bool


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    dealer_id: str | None
    returned_at: datetime
    rating: int | None
    comments: str | None = None
    comments_erased: bool = False  # the customer's words were erased (there were some)


@dataclass(frozen=True)
class RepeatRepair:
    vin: str
    item_code: str
    first_order: str
    repeat_order: str
    dealer_id: str | None  # the dealer of the first visit
    first_at: datetime
    repeat_at: datetime


def repeat_repairs(visits: Iterable[Visit], days: int = 30) -> list[RepeatRepair]:
    """Each repair-kind visit item repeating an item of the same VIN's repair-kind visit at most
    `days` earlier (the latest such earlier visit); one per (repeat visit, item)."""
    by_vin: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        if v.service_type in REPAIR_KINDS:
            by_vin[v.vin].append(v)
    window = timedelta(days=days)
    found = []
    for vin, seen in by_vin.items():
        seen.sort(key=lambda v: (v.picked_up_at, v.repair_order_id))
        for i, later in enumerate(seen):
            for code in sorted(set(later.item_codes)):
                earlier = next((e for e in reversed(seen[:i])
                                if code in e.item_codes and later.picked_up_at - e.picked_up_at <= window), None)
                if earlier is not None:
                    found.append(RepeatRepair(vin, code, earlier.repair_order_id, later.repair_order_id,
                                              earlier.dealer_id, earlier.picked_up_at, later.picked_up_at))
    return found


# -- the scorecard ------------------------------------------------------------------------------------


@dataclass
class Scorecard:
    dealer_id: str
    month: str
    visits: int = 0
    reach: Test | None = None
    satisfaction: Test | None = None
    parts: Test | None = None
    complaints: int = 0
    repeat_repairs: int = 0
    receipts: int = 0
    rated: int = 0
    rating_sum: int = 0
    good_ratings: int = 0
    repeats: list[RepeatRepair] = field(default_factory=list)

    @property
    def complaint_rate(self) -> float | None:
        """Complaints per 100 visits (None without a visit)."""
        return 100 * self.complaints / self.visits if self.visits else None

    @property
    def repeat_rate(self) -> float | None:
        return 100 * self.repeat_repairs / self.visits if self.visits else None

    @property
    def mean_rating(self) -> float | None:
        return self.rating_sum / self.rated if self.rated else None

    @property
    def good_rating_share(self) -> float | None:
        return self.good_ratings / self.rated if self.rated else None

    def tests(self) -> dict[str, Test | None]:
        return {"return_visit_reach": self.reach, "satisfaction": self.satisfaction, "parts_accuracy": self.parts}

    @property
    def flags(self) -> list[str]:
        """The measures on which the dealer is below target beyond chance."""
        return [name for name, t in self.tests().items() if t is not None and t.flagged]


def month_of(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m")


def scorecards(month: str, zone: ZoneInfo, *, visits: Sequence[Visit], history: Sequence[Visit],
               calls: Sequence[Call], complaints: Sequence[ComplaintRow], lines: Sequence[LineRow],
               receipts: Sequence[Receipt], rules: ScorecardRules) -> list[Scorecard]:
    """Every dealer's scorecard of `month` (YYYY-MM in `zone`): the inputs are the month's rows
    (`history` adds the visits of the `repeat_days` before it, for repeat repairs); a row of
    another month is left out, so a caller may hand in a wider window. Dealers sorted by flags
    (most first), then id."""
    cards: dict[str, Scorecard] = {}

    def card(dealer: str) -> Scorecard:
        return cards.setdefault(dealer, Scorecard(dealer, month))

    def inside(at: datetime) -> bool:
        return month_of(at, zone) == month

    for v in visits:
        if v.dealer_id and inside(v.picked_up_at):
            card(v.dealer_id).visits += 1
    for r in repeat_repairs([*history, *visits], rules.repeat_days):
        if r.dealer_id and inside(r.repeat_at):
            c = card(r.dealer_id)
            c.repeat_repairs += 1
            c.repeats.append(r)
    reach: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    scored: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for call in calls:
        if not call.dealer_id or not inside(call.at):
            continue
        if call.kind == "first_visit":
            reach[call.dealer_id][0] += call.reached
            reach[call.dealer_id][1] += 1
        if call.satisfaction is not None:
            scored[call.dealer_id][0] += call.satisfaction >= rules.satisfied_score
            scored[call.dealer_id][1] += 1
    for complaint in complaints:
        if complaint.dealer_id and inside(complaint.filed_at):
            card(complaint.dealer_id).complaints += 1
    shipped: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        if inside(line.shipped_at):
            shipped[line.dealer_id][0] += not line.discrepant
            shipped[line.dealer_id][1] += 1
    for receipt in receipts:
        if receipt.dealer_id and inside(receipt.returned_at):
            c = card(receipt.dealer_id)
            c.receipts += 1
            if receipt.rating is not None:
                c.rated += 1
                c.rating_sum += receipt.rating
                c.good_ratings += receipt.rating >= rules.good_rating
    for dealer, (ok, n) in reach.items():
        card(dealer).reach = binomial_test(ok, n, rules.target, rules.confidence)
    for dealer, (ok, n) in scored.items():
        card(dealer).satisfaction = binomial_test(ok, n, rules.target, rules.confidence)
    for dealer, (ok, n) in shipped.items():
        card(dealer).parts = binomial_test(ok, n, rules.target, rules.confidence)
    return sorted(cards.values(), key=lambda c: (-len(c.flags), c.dealer_id))


def network(cards: Sequence[Scorecard]) -> dict[str, float | None]:
    """The whole network's month: complaint and repeat rates per 100 visits (the yardstick the
    untargeted measures are read against)."""
    visits = sum(c.visits for c in cards)
    return {"visits": visits,
            "complaint_rate": 100 * sum(c.complaints for c in cards) / visits if visits else None,
            "repeat_rate": 100 * sum(c.repeat_repairs for c in cards) / visits if visits else None}


# -- receipts per dealer and week -----------------------------------------------------------------------


@dataclass
class ReceiptWeek:
    dealer_id: str
    week: str  # ISO week, 2026-W47
    receipts: int = 0
    rated: int = 0
    rating_sum: int = 0
    good: int = 0
    poor: int = 0  # rated 1 or 2
    with_comments: int = 0

    @property
    def mean_rating(self) -> float | None:
        return self.rating_sum / self.rated if self.rated else None

    @property
    def good_share(self) -> float | None:
        return self.good / self.rated if self.rated else None


def iso_week(at: datetime, zone: ZoneInfo) -> str:
    year, week, _ = at.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def receipts_by_week(receipts: Iterable[Receipt], zone: ZoneInfo, good_rating: int = 4) -> list[ReceiptWeek]:
    """Each dealer's receipts of each week: how many, rated, mean rating, good (>= good_rating)
    and poor (<= 2) ones, with a comment; newest week first, then dealer."""
    weeks: dict[tuple[str, str], ReceiptWeek] = {}
    for r in receipts:
        dealer = r.dealer_id or ""
        week = iso_week(r.returned_at, zone)
        w = weeks.setdefault((dealer, week), ReceiptWeek(dealer, week))
        w.receipts += 1
        if r.comments_erased or (r.comments and r.comments.strip()):
            w.with_comments += 1
        if r.rating is not None:
            w.rated += 1
            w.rating_sum += r.rating
            w.good += r.rating >= good_rating
            w.poor += r.rating <= 2
    return sorted(weeks.values(), key=lambda w: (_desc(w.week), w.dealer_id))


def _desc(week: str) -> tuple[int, int]:
    year, number = week.split("-W")
    return -int(year), -int(number)
