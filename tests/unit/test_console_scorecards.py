"""Dealer scorecards and receipts analysed (services/console/scorecards.py): the exact binomial
test behind a flag, the repeat-repair rule, each figure of a dealer's month, the receipts per
dealer and week, and the filters' refusals."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.console.scorecard_pages import BadFilter, card_json, days, month_span_of, months_before, rating
from services.console.scorecards import (
    Call,
    ComplaintRow,
    LineRow,
    Receipt,
    ScorecardRules,
    Visit,
    binomial_test,
    network,
    receipts_by_week,
    repeat_repairs,
    scorecards,
)

CST = ZoneInfo("Asia/Shanghai")
RULES = ScorecardRules()
T = datetime(2026, 11, 10, 10, 0, tzinfo=CST)


def visit(order: str, vin: str, dealer: str, at: datetime, kind: str = "repair", *codes: str) -> Visit:
    return Visit(order, vin, dealer, at, kind, codes or ("BRK-01",))


def lines(dealer: str, good: int, bad: int, at: datetime = T) -> list[LineRow]:
    return [LineRow(dealer, at, False)] * good + [LineRow(dealer, at, True)] * bad


def cards(**inputs: object) -> dict[str, object]:
    found = scorecards("2026-11", CST, **{"visits": [], "history": [], "calls": [], "complaints": [], "lines": [],
                                          "receipts": [], **inputs}, rules=RULES)  # type: ignore[arg-type]
    return {c.dealer_id: c for c in found}


# -- the binomial test ------------------------------------------------------------------------------


def test_one_miss_in_twenty_is_not_flagged_it_is_within_chance_of_a_98_percent_dealer() -> None:
    t = binomial_test(19, 20, 0.98, 0.95)
    assert t.rate == 0.95 and t.below_target
    assert t.p_value == pytest.approx(1 - 0.98 ** 20)  # P(X <= 19) = 1 - P(X = 20)
    assert t.p_value == pytest.approx(0.3324, abs=1e-4)
    assert not t.flagged


def test_the_same_95_percent_on_200_is_flagged_at_95_percent_confidence() -> None:
    t = binomial_test(190, 200, 0.98, 0.95)
    assert t.rate == 0.95
    assert t.p_value == pytest.approx(0.00748, abs=1e-5)
    assert t.flagged
    assert not binomial_test(190, 200, 0.98, 0.995).flagged, "at 99.5 % confidence p = 0.0075 is not enough"


def test_a_dealer_at_or_above_the_target_is_never_flagged_and_nothing_to_test_is_no_flag() -> None:
    assert not binomial_test(98, 100, 0.98, 0.95).flagged
    assert not binomial_test(100, 100, 0.98, 0.95).flagged
    empty = binomial_test(0, 0, 0.98, 0.95)
    assert empty.p_value is None and empty.rate is None and not empty.flagged
    assert binomial_test(0, 5, 0.98, 0.95).flagged, "five misses of five are not chance"


def test_the_p_value_is_the_exact_binomial_tail() -> None:
    from math import comb

    n, k, p = 60, 55, 0.98
    exact = sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
    assert binomial_test(k, n, p, 0.95).p_value == pytest.approx(exact, rel=1e-9)


def test_impossible_counts_and_rules_are_refused_with_what_to_write() -> None:
    with pytest.raises(ValueError, match="successes must be between 0 and trials"):
        binomial_test(21, 20, 0.98, 0.95)
    with pytest.raises(ValueError, match="0.98 is 98 %"):
        ScorecardRules(target=98)
    with pytest.raises(ValueError, match="0.95 is 95 %"):
        ScorecardRules(confidence=95)


# -- repeat repairs ---------------------------------------------------------------------------------


def test_the_same_vin_and_item_within_30_days_is_a_repeat_of_the_first_dealers_repair() -> None:
    found = repeat_repairs([
        visit("RO-1", "VIN-A", "D-1", T, "repair", "BRK-01", "OIL-01"),
        visit("RO-2", "VIN-A", "D-2", T + timedelta(days=30), "warranty", "BRK-01"),
    ])
    [r] = found
    assert (r.vin, r.item_code, r.first_order, r.repeat_order, r.dealer_id) == ("VIN-A", "BRK-01", "RO-1", "RO-2", "D-1")


def test_not_a_repeat_after_30_days_on_another_item_another_vehicle_or_at_a_maintenance() -> None:
    assert repeat_repairs([visit("RO-1", "VIN-A", "D-1", T),
                           visit("RO-2", "VIN-A", "D-1", T + timedelta(days=30, seconds=1))]) == []
    assert repeat_repairs([visit("RO-1", "VIN-A", "D-1", T, "repair", "BRK-01"),
                           visit("RO-2", "VIN-A", "D-1", T + timedelta(days=3), "repair", "SUS-02")]) == []
    assert repeat_repairs([visit("RO-1", "VIN-A", "D-1", T), visit("RO-2", "VIN-B", "D-1", T + timedelta(days=3))]) == []
    assert repeat_repairs([visit("RO-1", "VIN-A", "D-1", T, "maintenance"),
                           visit("RO-2", "VIN-A", "D-1", T + timedelta(days=3), "maintenance")]) == []


def test_a_third_visit_repeats_the_latest_earlier_one_and_counts_once_per_item() -> None:
    found = repeat_repairs([visit("RO-1", "VIN-A", "D-1", T), visit("RO-2", "VIN-A", "D-1", T + timedelta(days=10)),
                            visit("RO-3", "VIN-A", "D-1", T + timedelta(days=20))])
    assert [(r.first_order, r.repeat_order) for r in found] == [("RO-1", "RO-2"), ("RO-2", "RO-3")]


def test_a_repeat_in_the_month_of_a_repair_done_the_month_before_counts_in_the_month_of_the_return() -> None:
    october = visit("RO-1", "VIN-A", "D-1", datetime(2026, 10, 25, 9, tzinfo=CST))
    november = visit("RO-2", "VIN-A", "D-2", datetime(2026, 11, 3, 9, tzinfo=CST))
    found = cards(visits=[november], history=[october])
    assert found["D-1"].repeat_repairs == 1 and found["D-1"].visits == 0
    assert found["D-2"].repeat_repairs == 0 and found["D-2"].visits == 1


# -- each figure --------------------------------------------------------------------------------------


def test_reach_is_first_visit_calls_that_reached_the_customer_of_those_concluded_in_the_month() -> None:
    calls = [Call("D-1", "first_visit", True, 5, T)] * 9 + [Call("D-1", "first_visit", False, None, T)] + [
        Call("D-1", "second_visit", False, None, T),  # not a first visit: not in the reach
        Call("D-1", "first_visit", False, None, datetime(2026, 10, 31, 23, 59, tzinfo=CST)),  # October in Shanghai
    ]
    c = cards(calls=calls)["D-1"]
    assert (c.reach.successes, c.reach.trials) == (9, 10)


def test_satisfaction_is_scores_of_4_or_5_of_the_scored_calls() -> None:
    calls = [Call("D-1", "first_visit", True, s, T) for s in (5, 4, 4, 3, None)] + [
        Call("D-1", "second_visit", True, 2, T)]
    c = cards(calls=calls)["D-1"]
    assert (c.satisfaction.successes, c.satisfaction.trials) == (3, 5)


def test_complaint_rate_is_per_100_visits_and_the_network_rate_beside_it() -> None:
    visits = [visit(f"RO-{i}", f"VIN-{i}", "D-1", T, "maintenance") for i in range(40)] + [
        visit(f"RO-X{i}", f"VIN-X{i}", "D-2", T, "maintenance") for i in range(10)]
    complaints = [ComplaintRow(f"C-{i}", "D-1", T) for i in range(2)] + [ComplaintRow("C-X", "D-2", T),
                                                                         ComplaintRow("C-none", None, T)]
    found = cards(visits=visits, complaints=complaints)
    assert found["D-1"].complaint_rate == pytest.approx(5.0)
    assert found["D-2"].complaint_rate == pytest.approx(10.0)
    assert network(list(found.values()))["complaint_rate"] == pytest.approx(6.0)


def test_a_dealer_with_complaints_and_no_visit_has_no_rate_rather_than_a_division_by_zero() -> None:
    c = cards(complaints=[ComplaintRow("C-1", "D-9", T)])["D-9"]
    assert c.complaints == 1 and c.complaint_rate is None


def test_parts_accuracy_counts_lines_without_a_discrepancy_shipped_in_the_month() -> None:
    c = cards(lines=lines("D-1", 47, 3) + lines("D-1", 0, 5, datetime(2026, 12, 1, 0, 0, tzinfo=CST)))["D-1"]
    assert (c.parts.successes, c.parts.trials, c.parts.rate) == (47, 50, 0.94)


def test_receipts_ratings_mean_and_share_of_good_ones() -> None:
    receipts = [Receipt(f"R-{i}", "D-1", T, r) for i, r in enumerate((5, 4, 2, None))]
    c = cards(receipts=receipts)["D-1"]
    assert (c.receipts, c.rated, c.mean_rating, c.good_rating_share) == (4, 3, pytest.approx(11 / 3), pytest.approx(2 / 3))


def test_two_dealers_at_the_same_95_percent_on_different_volumes_one_flagged_one_not() -> None:
    found = cards(lines=lines("D-SMALL", 19, 1) + lines("D-LARGE", 190, 10))
    small, large = found["D-SMALL"], found["D-LARGE"]
    assert small.parts.rate == large.parts.rate == 0.95
    assert small.flags == [] and large.flags == ["parts_accuracy"]
    ordered = scorecards("2026-11", CST, visits=[], history=[], calls=[], complaints=[], receipts=[], rules=RULES,
                         lines=lines("D-SMALL", 19, 1) + lines("D-LARGE", 190, 10))
    assert [c.dealer_id for c in ordered] == ["D-LARGE", "D-SMALL"], "flagged dealers first"
    shown = card_json(large)
    assert shown["parts_accuracy"]["flagged"] and shown["parts_accuracy"]["misses"] == 10
    assert shown["parts_accuracy"]["p_value"] == pytest.approx(0.00748, abs=1e-5)


# -- receipts per dealer and week ------------------------------------------------------------------------


def test_receipts_are_summarised_per_dealer_and_iso_week_newest_first() -> None:
    monday = datetime(2026, 11, 16, 9, tzinfo=CST)
    weeks = receipts_by_week([
        Receipt("R-1", "D-1", monday, 5, "很好"), Receipt("R-2", "D-1", monday + timedelta(days=6), 1, "等太久"),
        Receipt("R-3", "D-1", monday + timedelta(days=7), 4, None), Receipt("R-4", "D-2", monday, None, "  "),
    ], CST)
    assert [(w.week, w.dealer_id) for w in weeks] == [("2026-W48", "D-1"), ("2026-W47", "D-1"), ("2026-W47", "D-2")]
    w47 = weeks[1]
    assert (w47.receipts, w47.rated, w47.mean_rating, w47.good, w47.poor, w47.with_comments) == (2, 2, 3.0, 1, 1, 2)
    assert weeks[2].mean_rating is None and weeks[2].with_comments == 0


# -- the filters ------------------------------------------------------------------------------------------


def test_malformed_filters_say_how_to_write_them() -> None:
    with pytest.raises(BadFilter, match="2026-11"):
        month_span_of("2026-13")
    with pytest.raises(BadFilter, match="2026-11"):
        month_span_of("Nov")
    with pytest.raises(BadFilter, match="1 to 5"):
        rating("6", "rating_min")
    with pytest.raises(BadFilter, match="2026-11-01"):
        days("yesterday", "", T, 28)
    with pytest.raises(BadFilter, match="not be after"):
        days("2026-11-20", "2026-11-01", T, 28)
    assert months_before("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    start, end = days("", "", T, 28)
    assert (end - start).days == 28 and end.date().isoformat() == "2026-11-11"
