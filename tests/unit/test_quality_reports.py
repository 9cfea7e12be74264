"""Defect reports: filling batch and supplier from the vehicle, counting each defect once
whatever the arrival order; weeks (on the test moment's calendar), weekly figures and
parts-shipment accuracy."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from services.quality.config import QualityRules, load_baseline_rates
from services.quality.domain import (
    CountedDefect,
    DealerLines,
    DefectReport,
    FittedPart,
    accuracy,
    count_once,
    defect_figures,
    next_weekly_report_at,
    parts_accuracy_figures,
    previous_week,
    resolve,
    week_bounds,
    week_label,
)
from tests.support import SHANGHAI, TEST_NOW, day_at

pytestmark = pytest.mark.dates
PARTS = [
    FittedPart("controller", "P-CTRL-1", "B2609-3", "SUP-B"),
    FittedPart("rim_welding", "P-RIM-1", "B2609-1", "SUP-A"),
    FittedPart("rim_welding", "P-RIM-1", "B2609-2", "SUP-A"),
]


def report(report_id: str = "R1", source: str = "complaints", day: int = 10, **fields: object) -> DefectReport:
    base: dict[str, object] = {"category": "controller", "failure_mode": "no_power", "reported_by": "complaint",
                               "vin": "LJ1TESTVIN0000001"}
    base.update(fields)
    return DefectReport(report_id=report_id, source=source,  # type: ignore[arg-type]
                        reported_at=day_at(9, days=-30 + day), **base)  # type: ignore[arg-type]


# --- resolution ----------------------------------------------------------------------------


def test_a_complete_report_is_taken_as_reported() -> None:
    r = resolve(report(batch="B9", supplier_id="SUP-Z", model="EV-100"), "EV-200", PARTS)
    assert (r.batch, r.supplier_id, r.model, r.resolution) == ("B9", "SUP-Z", "EV-100", "as_reported")


def test_a_complaint_takes_batch_supplier_part_and_model_from_the_vehicles_parts_list() -> None:
    r = resolve(report(), "EV-200", PARTS)
    assert (r.batch, r.supplier_id, r.part_no, r.model) == ("B2609-3", "SUP-B", "P-CTRL-1", "EV-200")
    assert r.resolution == "from_vehicle" and r.resolution_note is None


def test_a_report_before_its_sale_waits_for_it_and_says_so() -> None:
    r = resolve(report(), None, None)
    assert r.resolution == "awaiting_sale" and r.batch is None
    assert "sale is not known yet" in (r.resolution_note or "")
    assert "category totals only" in (r.resolution_note or "")


def test_two_batches_of_a_category_on_one_vehicle_leave_the_batch_open_but_fill_the_supplier() -> None:
    r = resolve(report(category="rim_welding"), "EV-200", PARTS)
    assert (r.batch, r.supplier_id, r.model) == (None, "SUP-A", "EV-200")
    assert r.resolution == "partial"
    assert "supplier x model cell" in (r.resolution_note or "") and "B2609-1, B2609-2" in (r.resolution_note or "")


def test_a_category_the_vehicle_does_not_carry_or_no_vin_leaves_the_report_unresolved() -> None:
    missing = resolve(report(category="frame"), "EV-200", PARTS)
    assert missing.resolution == "unresolved" and "has no frame" in (missing.resolution_note or "")
    anonymous = resolve(report(vin=None), None, None)
    assert anonymous.resolution == "unresolved" and "names no VIN" in (anonymous.resolution_note or "")


# --- counting each defect once --------------------------------------------------------------


def test_a_dealer_report_and_a_complaint_on_one_vehicles_part_within_30_days_count_once() -> None:
    complaint = report("C1", "complaints", day=10)
    dealer = report("D1", "intake", day=12, batch="B2609-3", supplier_id="SUP-B", model="EV-200")
    counted = count_once([dealer, complaint], timedelta(days=30))
    assert counted["C1"].counted and not counted["D1"].counted and counted["D1"].duplicate_of == "C1"
    # the counted report lacks the batch; its episode supplies it
    assert (counted["C1"].batch, counted["C1"].supplier_id, counted["C1"].model) == ("B2609-3", "SUP-B", "EV-200")


def test_counting_does_not_depend_on_the_order_reports_arrive_in() -> None:
    reports = [report("C1", day=1), report("D1", "intake", day=3, batch="B1", supplier_id="S", model="M"),
               report("C2", day=40), report("D2", "intake", day=41), report("X1", day=3, category="frame")]
    outcomes = {tuple(sorted(count_once(list(order), timedelta(days=30)).items()))
                for order in itertools.permutations(reports)}
    assert len(outcomes) == 1
    counted = count_once(reports, timedelta(days=30))
    assert [rid for rid, c in sorted(counted.items()) if c.counted] == ["C1", "C2", "X1"]


def test_reports_far_apart_or_without_a_vin_are_separate_defects() -> None:
    counted = count_once([report("A", day=1), report("B", day=1, vin=None), report("C", day=1, vin=None)],
                         timedelta(days=30))
    assert all(c.counted for c in counted.values())
    apart = count_once([report("A", day=1), report("B", day=25)], timedelta(days=0))
    assert all(c.counted for c in apart.values()), "a zero window switches de-duplication off"


# --- weeks, weekly figures, accuracy ----------------------------------------------------------


def _label(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


MONDAY = -TEST_NOW.weekday()  # days from the test day back to its week's Monday


def test_iso_weeks_are_taken_in_the_report_zone() -> None:
    label = _label(TEST_NOW)
    start, end = week_bounds(label, "Asia/Shanghai")
    assert start == day_at(0, days=MONDAY) and end == day_at(0, days=MONDAY + 7)
    assert week_label(TEST_NOW, "Asia/Shanghai") == label
    # Sunday 20:00 UTC is Monday 04:00 in Shanghai: the next week there.
    monday_early = day_at(4, days=MONDAY + 7)
    assert week_label(monday_early.astimezone(UTC), "Asia/Shanghai") == _label(monday_early) != label
    assert previous_week(day_at(8, days=MONDAY + 7), "Asia/Shanghai") == label
    with pytest.raises(ValueError, match="like 2026-W47"):
        week_bounds("2026-47", "Asia/Shanghai")


def test_a_year_of_53_iso_weeks_ends_in_the_next_calendar_year() -> None:
    """A calendar fact, not the test moment: 2026 has 53 ISO weeks, 2027 has 52."""
    start, end = week_bounds("2026-W53", "Asia/Shanghai")
    assert start == datetime(2026, 12, 28, tzinfo=SHANGHAI) and end == datetime(2027, 1, 4, tzinfo=SHANGHAI)
    assert week_label(datetime(2027, 1, 3, 23, 59, tzinfo=SHANGHAI), "Asia/Shanghai") == "2026-W53"
    assert previous_week(datetime(2027, 1, 4, 8, tzinfo=SHANGHAI), "Asia/Shanghai") == "2026-W53"
    assert previous_week(datetime(2027, 1, 11, 8, tzinfo=SHANGHAI), "Asia/Shanghai") == "2027-W01"
    with pytest.raises(ValueError, match="like 2026-W47"):
        week_bounds("2027-W53", "Asia/Shanghai")


def test_the_weekly_report_is_due_monday_0800_local() -> None:
    assert next_weekly_report_at(day_at(10, days=MONDAY + 4), 0, time(8), "Asia/Shanghai") == day_at(
        8, days=MONDAY + 7)  # Friday -> Monday
    monday_early = day_at(7, days=MONDAY + 7)
    assert next_weekly_report_at(monday_early, 0, time(8), "Asia/Shanghai") == day_at(8, days=MONDAY + 7)
    assert next_weekly_report_at(day_at(8, days=MONDAY + 7), 0, time(8), "Asia/Shanghai") == day_at(
        8, days=MONDAY + 7), "at the instant itself: that one"
    monday_late = day_at(9, days=MONDAY + 7)
    assert next_weekly_report_at(monday_late, 0, time(8), "Asia/Shanghai") == day_at(8, days=MONDAY + 14)
    # 00:30 Monday in Shanghai is Sunday in UTC: still that Monday's report
    assert next_weekly_report_at(day_at(0, 30, days=MONDAY + 7).astimezone(UTC), 0, time(8),
                                 "Asia/Shanghai") == day_at(8, days=MONDAY + 7)


def test_parts_accuracy_is_lines_without_a_discrepancy_over_lines_shipped_per_dealer() -> None:
    figures = parts_accuracy_figures(
        [DealerLines("D001", 100, 1), DealerLines("D002", 50, 3), DealerLines("D003", 0, 0)],
        {"short": 3, "damaged": 1}, 0.98,
    )
    assert figures["lines"] == 150 and figures["discrepant_lines"] == 4
    assert figures["accuracy"] == pytest.approx(146 / 150) and figures["meets_target"] is False
    dealers = {d["dealer_id"]: d for d in figures["by_dealer"]}
    assert dealers["D001"]["accuracy"] == pytest.approx(0.99) and dealers["D001"]["meets_target"] is True
    assert dealers["D002"]["accuracy"] == pytest.approx(0.94) and dealers["D002"]["meets_target"] is False
    assert dealers["D003"]["accuracy"] is None and dealers["D003"]["meets_target"] is None
    assert figures["dealers_below_target"] == ["D002"]
    assert figures["by_dealer"][0]["dealer_id"] == "D002", "worst first"
    assert accuracy(0, 0) is None


def test_defects_are_grouped_by_category_batch_supplier_and_failure_mode_most_frequent_first() -> None:
    defects = [CountedDefect("controller", "B1", "SUP-A", "EV-100", "no_power")] * 3 + [
        CountedDefect("frame", "B7", "SUP-C", "EV-200", "crack"), CountedDefect("frame", None, None, None, "crack"),
    ]
    figures = defect_figures(defects, ("controller", "frame", "motor"))
    assert figures["defects"] == 5
    assert figures["by_category"] == {"controller": 3, "frame": 2}
    assert figures["important_categories"] == {"controller": 3, "frame": 2, "motor": 0}
    assert figures["by_batch"][0] == {"category": "controller", "batch": "B1", "defects": 3}
    assert figures["by_supplier"][1] == {"category": "frame", "supplier_id": "SUP-C", "defects": 1}
    assert figures["without_batch"] == 1


def test_the_baseline_table_in_the_service_folder_covers_the_important_categories() -> None:
    rules = QualityRules()
    rates = load_baseline_rates(rules.baseline_rates_file)
    for category in rules.important_categories:
        assert category in rates.by_category and 0 < rates.rate(category) < 0.01
    assert rates.rate("a_new_category") == rates.default
    assert rates.unit_month_days == pytest.approx(365.25 / 12)


def test_a_broken_baseline_table_stops_the_service_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "rates.yaml"
    path.write_text("default: 0.001\ncategories:\n  motor: -1\n")
    with pytest.raises(ValueError, match="must be positive"):
        load_baseline_rates(path)
