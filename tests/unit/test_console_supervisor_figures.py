"""The supervisors' figures the console puts together itself: a dealer's region (for parts
accuracy by region), the region's parts accuracy from the quality service's dealer lines, where
each target's figure drills down to, and the week before a week."""

from __future__ import annotations

import pytest

from services.console.supervisor_pages import drill_down, parts_by_region, region_of_dealers, week_before


def test_a_dealer_belongs_to_the_region_most_of_its_vehicles_are_in() -> None:
    rows = [{"dealer_id": "D1", "region": "east", "n": 5}, {"dealer_id": "D1", "region": "west", "n": 2},
            {"dealer_id": "D2", "region": "west", "n": 1}, {"dealer_id": None, "region": "east", "n": 9}]
    assert region_of_dealers(rows) == {"D1": "east", "D2": "west"}


def test_a_regions_parts_accuracy_sums_its_dealers_lines() -> None:
    parts = {"by_dealer": [{"dealer_id": "D1", "lines": 10, "discrepant_lines": 0},
                           {"dealer_id": "D2", "lines": 8, "discrepant_lines": 1},
                           {"dealer_id": "D3", "lines": 0, "discrepant_lines": 0},
                           {"dealer_id": "D9", "lines": 4, "discrepant_lines": 2}]}
    regions = parts_by_region(parts, {"D1": "east", "D2": "east", "D3": "west"})
    assert regions["east"] == {"lines": 18, "discrepant_lines": 1, "accuracy": pytest.approx(17 / 18)}
    assert regions["west"]["accuracy"] is None  # nothing shipped: no figure
    assert regions[""]["accuracy"] == 0.5  # a dealer with no known region


def test_every_target_drills_down_to_what_is_behind_it() -> None:
    assert drill_down("warranty_return_visit_rate", "2026-W47", "east", "") == \
        "/supervisor/calls?week=2026-W47&region=east"
    assert drill_down("satisfaction_rate", "2026-W47", "", "D1") == "/supervisor/calls?week=2026-W47&dealer=D1&scored=1"
    assert drill_down("complaint_sla_compliance", "2026-W47", "华东", "") == \
        "/supervisor/sla-cases?week=2026-W47&region=%E5%8D%8E%E4%B8%9C"
    assert drill_down("parts_accuracy", "2026-W47", "", "") == "/supervisor/parts?week=2026-W47"


def test_the_week_before_crosses_the_year() -> None:
    assert week_before("2026-W47") == "2026-W46"
    assert week_before("2027-W01") == "2026-W53"
