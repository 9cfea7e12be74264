"""An alert's evidence per month in service (the inspectors' chart): each unit's unit-months
spread over the months it has been in service, reports counted in the month they came in."""

from __future__ import annotations

import pytest

from services.quality.api import by_month_in_service


def test_a_unit_aged_two_and_a_half_months_adds_one_one_and_a_half_unit_month() -> None:
    months = by_month_in_service([2.5, 0.5], [0.2, 2.1, 2.9], rate=0.1)
    assert [m["unit_months"] for m in months] == [1.5, 1.0, 0.5]
    assert [m["observed"] for m in months] == [1, 0, 2]
    assert [m["expected"] for m in months] == pytest.approx([0.15, 0.1, 0.05])


def test_no_units_and_no_reports_is_one_empty_month() -> None:
    assert by_month_in_service([], [], rate=0.1) == [{"month": 0, "unit_months": 0.0, "expected": 0.0, "observed": 0}]
