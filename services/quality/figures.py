"""Read models assembled from the store: the weekly reports for the quality meeting, the
statistics page, the KPIs. Shared by the weekly timer, the HTTP API and the gauges."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.quality import store
from services.quality.config import QualityRules
from services.quality.domain import (
    BaselineRates,
    WeeklyInputs,
    accuracy,
    defect_figures,
    parts_accuracy_figures,
    quality_weekly_figures,
    week_bounds,
)


async def quality_weekly(conn: asyncpg.Connection, week: str, rules: QualityRules) -> dict[str, Any]:
    """Defects by category, batch and supplier; open alerts; complaint categories (ISO week,
    local time in the rules' zone)."""
    start, end = week_bounds(week, rules.timezone)
    raised, closed = await store.alert_counts(conn, start, end)
    categories, parts = await store.complaint_categories(conn, start, end)
    inputs = WeeklyInputs(
        defects=await store.counted_defects(conn, start, end),
        open_alerts=[_alert_summary(a) for a in await store.open_alert_summaries(conn)],
        alerts_raised=raised, alerts_closed=closed, complaint_categories=categories,
        complaint_part_categories=parts,
    )
    figures = quality_weekly_figures(inputs, rules.important_categories)
    figures["reports"] = await store.report_counts(conn, start, end)
    return {"week": week, "from": start.isoformat(), "to": end.isoformat(), **figures}


async def parts_accuracy(conn: asyncpg.Connection, start: datetime, end: datetime, rules: QualityRules) -> dict[str, Any]:
    """Lines shipped in [start, end) without a discrepancy / lines shipped, overall and per dealer."""
    rows = await store.shipment_lines_by_dealer(conn, start, end)
    kinds = await store.discrepancy_kinds(conn, start, end)
    return {"from": start.isoformat(), "to": end.isoformat(),
            **parts_accuracy_figures(rows, kinds, rules.parts_accuracy_target)}


async def parts_accuracy_week(conn: asyncpg.Connection, week: str, rules: QualityRules) -> dict[str, Any]:
    start, end = week_bounds(week, rules.timezone)
    return {"week": week, **await parts_accuracy(conn, start, end, rules)}


def _alert_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"], "cell": row["cell"], "rule": row["rule"], "state": row["state"],
        "observed": row["observed"], "expected": row["expected"], "statistic": row["statistic"],
        "p_value": row["p_value"], "raised_at": row["raised_at"].isoformat(),
    }


async def stats(conn: asyncpg.Connection, category: str | None, start: datetime, end: datetime, rules: QualityRules,
                rates: BaselineRates) -> dict[str, Any]:
    """Defects by category, batch, supplier and failure mode in [start, end); for one category
    also units in service, unit-months within the period and the observed rate per
    (batch, supplier, model), beside the baseline."""
    result: dict[str, Any] = {
        "from": start.isoformat(), "to": end.isoformat(), "category": category,
        **defect_figures(await store.counted_defects(conn, start, end, category), rules.important_categories),
        "reports": await store.report_counts(conn, start, end),
    }
    if category:
        cells = []
        for row in await store.exposure_by_cell(conn, category, start, end):
            unit_months = rates.unit_months(float(row["seconds"]))
            cells.append({
                "batch": row["batch"], "supplier_id": row["supplier_id"], "model": row["model"],
                "units": int(row["units"]), "unit_months": round(unit_months, 3), "reports": int(row["reports"]),
                "rate": row["reports"] / unit_months if unit_months > 0 else None,
                "expected": rates.rate(category) * unit_months,
                "first_sold_at": row["first_sold_at"].isoformat() if row["first_sold_at"] else None,
                "last_sold_at": row["last_sold_at"].isoformat() if row["last_sold_at"] else None,
            })
        unit_months = sum(c["unit_months"] for c in cells)
        reports = sum(c["reports"] for c in cells)
        result["units_in_service"] = {
            "baseline_rate": rates.rate(category), "units": sum(c["units"] for c in cells),
            "unit_months": round(unit_months, 3), "reports": reports,
            "observed_rate": reports / unit_months if unit_months > 0 else None,
            "cells": cells,
        }
    return result


async def kpis(conn: asyncpg.Connection, now: datetime, rules: QualityRules) -> dict[str, Any]:
    since = now - timedelta(days=rules.kpi_window_days)
    rows = await store.shipment_lines_by_dealer(conn, since, now)
    lines, discrepant = sum(r.lines for r in rows), sum(r.discrepant for r in rows)
    by_state = await store.alerts_open_by_state(conn)
    return {
        "as_of": now.isoformat(),
        "window_days": rules.kpi_window_days,
        "quality_alerts_open": sum(by_state.values()),
        "quality_alerts_by_state": {s: by_state.get(s, 0) for s in ("raised", "acknowledged")},
        "defect_reports": await store.defects_by_category_since(conn, since),
        "reports_unresolved": await store.unresolved_report_count(conn),
        "parts_shipment_accuracy": {
            "lines": lines, "discrepant_lines": discrepant, "accuracy": accuracy(lines, discrepant),
            "target": rules.parts_accuracy_target,
        },
        "discrepancies_awaiting_shipment": await store.unmatched_discrepancies(conn),
    }
