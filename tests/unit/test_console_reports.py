"""The monthly work summary's rules (no infrastructure): targets met or missed, complaint
categories most first against the month before, a measure as the summary shows it, the month
before across a year's turn, and the whole summary assembled from the services' answers (a
complaints service without measures leaves the section empty, not an error)."""

from __future__ import annotations

from typing import Any

import pytest

from services.console import report_pages as rp


def test_a_target_is_met_at_or_above_it_and_none_without_a_figure_or_a_target() -> None:
    assert rp.met(0.98, 0.98) is True and rp.met(0.9799, 0.98) is False
    assert rp.met(None, 0.98) is None and rp.met(0.5, None) is None


def test_the_month_before_crosses_the_year() -> None:
    assert rp.previous_month("2027-01") == "2026-12" and rp.previous_month("2026-11") == "2026-10"


def test_categories_most_this_month_first_with_last_months_and_the_share() -> None:
    rows = rp.category_rows({"repair_quality": 3, "price": 1, "delay": 0},
                            {"repair_quality": 1, "service_attitude": 2, "price": 1})
    assert [(r["category"], r["count"], r["before"], r["change"]) for r in rows] == [
        ("repair_quality", 3, 1, 2), ("price", 1, 1, 0), ("service_attitude", 0, 2, -2)]
    assert rows[0]["share"] == pytest.approx(0.75) and rows[2]["share"] == 0
    assert rp.category_rows({}, {}) == []


def test_a_measure_as_the_summary_shows_it() -> None:
    shown = rp.measure_view({"measure_id": "M-1", "category": "repair_quality", "title": "复检制度", "owner": "as-head-01",
                             "due_at": "2026-11-10T01:00:00+00:00", "status": "verified",
                             "effect": {"before": {"rate_per_100_visits": 4.2}, "after": {"rate_per_100_visits": 1.1},
                                        "change": "decreased"}})
    assert (shown["action"], shown["before"], shown["after"], shown["change"]) == ("复检制度", 4.2, 1.1, "decreased")
    bare = rp.measure_view({"measure_id": "M-2", "alert_id": "QA-1", "action": "隔离批次", "effect": None})
    assert (bare["before"], bare["after"], bare["change"], bare["alert_id"]) == (None, None, None, "QA-1")


def _answers(measures: Any) -> Any:
    complaints = {("2026-11", "repair_quality"): 2, ("2026-11", "price"): 1, ("2026-10", "repair_quality"): 1}

    async def fetch(service: str, path: str, params: dict[str, Any], missing_ok: bool = False) -> Any:
        if path == "/v1/kpis":
            return {"warranty_return_visit_rate": 1.0, "warranty_visited": 4, "warranty_pickups": 4,
                    "satisfaction_rate": 0.9, "satisfied_calls": 9, "scored_calls": 10}
        if path == "/v1/reports/return-visits":
            assert params["from"].startswith("2026-11-01T00:00:00+08:00")
            return {"reach_rate": 0.8, "reached": 8, "calls_due": 10}
        if path == "/v1/feedback-items/figures":
            return {"answered_in_time_rate": 0.5, "answered_in_time": 1, "answered_late": 1}
        if path == "/v1/reports/sla-compliance":
            assert params["month"] == "2026-11" and params["until"] == "2026-W49"  # Monday 30 November
            return {"month": {"compliance": 0.75, "met": 3, "due": 4}}
        if path == "/v1/reports/monthly":
            return {"parts_accuracy": {"accuracy": 0.99, "lines": 100, "discrepant_lines": 1}}
        if path == "/v1/reports/categories":
            return {"counts": {c: n for (m, c), n in complaints.items() if m == params["from"][:7]}}
        if path == "/v1/measures":  # a Page: two items a page, walked with next_cursor
            assert missing_ok and params["month"] == "2026-11"
            if measures is None:
                return None
            start = int(params.get("cursor") or 0)
            return {"items": measures[start:start + 2], "limit": 2,
                    "next_cursor": str(start + 2) if start + 2 < len(measures) else None}
        raise AssertionError(path)
    return fetch


async def test_the_summary_is_assembled_from_the_services_answers() -> None:
    found = await rp.monthly_summary(_answers([
        {"measure_id": f"M-{i}", "category": "repair_quality", "title": f"复检制度 {i}", "status": "open"}
        for i in range(1, 4)]), "2026-11")
    by_name = {t["name"]: t for t in found["targets"]}
    assert (by_name["satisfaction_rate"]["value"], by_name["satisfaction_rate"]["met"]) == (0.9, False)
    assert by_name["parts_accuracy"]["met"] is True and by_name["reach_rate"]["met"] is None
    assert (by_name["complaint_sla_compliance"]["count"], by_name["complaint_sla_compliance"]["out_of"]) == (3, 4)
    assert by_name["feedback_answered_in_time"]["out_of"] == 2
    assert [(c["category"], c["count"], c["before"]) for c in found["categories"]] == [
        ("repair_quality", 2, 1), ("price", 1, 0)]
    assert (found["complaints"], found["complaints_before"]) == (3, 1)
    assert [m["action"] for m in found["measures"]] == ["复检制度 1", "复检制度 2", "复检制度 3"], "every page"
    without = await rp.monthly_summary(_answers(None), "2026-11")
    assert without["measures"] is None
