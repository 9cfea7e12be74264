"""The quality API's response models (issue 21): what each route answers, with a realistic example
each, so the OpenAPI document says it and the walker test can check it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.quality.domain import allowed_actions
from services.quality.monitor import alert_title
from shared.api import SortKey, etag_of

_WHEN = "2026-11-18T14:05:00+08:00"
_CELL = {"kind": "batch", "category": "controller", "batch": "CTL-2026-10-B"}

_ALERT = {
    "alert_id": "QA-2026-0042", "title": "controller batch CTL-2026-10-B: 9 reports, 1.8 expected", "cell": _CELL,
    "rule": "poisson", "state": "acknowledged", "allowed_actions": ["close", "confirm"], "observed": 9,
    "expected": 1.8, "statistic": 9.0, "p_value": 0.00004, "threshold": 0.0001, "as_of": _WHEN,
    "since": "2026-10-01T00:00:00+08:00", "details": {"failure_modes": {"无法启动": 6, "过热": 3}},
    "report_ids": ["RPT-1001", "RPT-1002"], "vins": ["LSVAU2180N2183456", "LSVAU2180N2183457"], "revision": 2,
    "raised_at": "2026-11-17T09:00:00+08:00", "updated_at": _WHEN, "acknowledged_at": _WHEN,
    "acknowledged_by": "zhao.min", "acknowledge_note": "质量部赵敏跟进，已通知供应商", "closed_at": None,
    "closed_by": None, "close_note": None,
}


class Alert(BaseModel):
    """An early-warning alert and the actions open to it now. Its ETag (answered by the GET of one
    alert and by each action) covers exactly these fields."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT]})
    alert_id: str
    title: str
    cell: dict[str, Any] = Field(description="what is watched: kind (batch | supplier_model), category, batch or "
                                             "supplier_id and model")
    rule: str = Field(description="poisson | failure_mode_burst")
    state: Literal["raised", "acknowledged", "closed"]
    allowed_actions: list[str]
    observed: int
    expected: float
    statistic: float | None
    p_value: float | None
    threshold: float | None
    as_of: datetime
    since: datetime | None
    details: dict[str, Any]
    report_ids: list[str]
    vins: list[str]
    revision: int
    raised_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledge_note: str | None
    closed_at: datetime | None
    closed_by: str | None
    close_note: str | None


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"], "title": alert_title(row), "cell": row["cell"], "rule": row["rule"],
        "state": row["state"], "allowed_actions": allowed_actions(row["state"]),
        "observed": row["observed"], "expected": row["expected"], "statistic": row["statistic"],
        "p_value": row["p_value"], "threshold": row["threshold"], "as_of": row["as_of"], "since": row["since"],
        "details": row["details"], "report_ids": row["report_ids"], "vins": row["vins"], "revision": row["revision"],
        "raised_at": row["raised_at"], "updated_at": row["updated_at"],
        "acknowledged_at": row["acknowledged_at"], "acknowledged_by": row["acknowledged_by"],
        "acknowledge_note": row["acknowledge_note"], "closed_at": row["closed_at"], "closed_by": row["closed_by"],
        "close_note": row["close_note"],
    }


def alert_etag(row: dict[str, Any]) -> str:
    """The alert's ETag: over its representation as `Alert` (what a GET of it and each action answer)."""
    return etag_of(Alert(**alert_json(row)))


class RecallInfo(BaseModel):
    campaign_id: str
    alert_id: str
    category: str
    batch: str
    supplier_id: str | None
    containment: str
    confirmed_at: datetime
    confirmed_by: str
    title: str
    address: str
    starts_at: datetime
    ends_at: datetime


_RECALL = {
    "campaign_id": "RC-QA-2026-0042", "alert_id": "QA-2026-0042", "category": "controller", "batch": "CTL-2026-10-B",
    "supplier_id": "SUP-7", "containment": "库存冻结，供应商8D报告", "confirmed_at": _WHEN, "confirmed_by": "zhao.min",
    "title": "控制器召回检查", "address": "上海市浦东新区世纪大道100号 服务站", "starts_at": "2026-12-02T14:05:00+08:00",
    "ends_at": "2027-03-02T14:05:00+08:00",
}


class MonthInService(BaseModel):
    month: int
    unit_months: float
    expected: float
    observed: int


class AlertDetail(Alert):
    """One alert with the reports and vehicles behind it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        **_ALERT,
        "reports": [{"report_id": "RPT-1001", "source": "dms", "vin": "LSVAU2180N2183456", "category": "controller",
                     "failure_mode": "无法启动", "part_no": "CTL-300", "batch": "CTL-2026-10-B", "supplier_id": "SUP-7",
                     "model": "EV-S", "mileage_km": 3200, "reported_by": "DLR-SH-01", "reported_at": _WHEN,
                     "complaint_id": None, "resolution": None, "resolution_note": None, "counted": True,
                     "duplicate_of": None, "inspected": False}],
        "reports_by_inspection": {"not_inspected": 1, "inspected": 0}, "recall": None,
        "by_month_in_service": [{"month": 0, "unit_months": 120.5, "expected": 0.9, "observed": 4}]}]})
    reports: list[dict[str, Any]]
    reports_by_inspection: dict[str, int]
    recall: RecallInfo | None
    by_month_in_service: list[MonthInService]


class Confirmed(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "alert_id": "QA-2026-0042", "category": "controller", "batch": "CTL-2026-10-B", "supplier_id": "SUP-7",
        "containment": "库存冻结，供应商8D报告", "confirmed_at": _WHEN, "confirmed_by": "zhao.min",
        "campaign_id": "RC-QA-2026-0042", "vehicles": 128, "starts_at": "2026-12-02T14:05:00+08:00",
        "ends_at": "2027-03-02T14:05:00+08:00"}]})
    alert_id: str
    category: str
    batch: str
    supplier_id: str | None
    containment: str
    confirmed_at: datetime
    confirmed_by: str
    campaign_id: str | None = Field(description="null: no vehicle carries the batch, so no recall")
    vehicles: int
    starts_at: datetime | None
    ends_at: datetime | None


class AffectedVehicles(BaseModel):
    """The vehicles carrying the alert's batch, with their owners: once the alert is confirmed the
    recall's vehicles (as of the confirmation) with their progress; before, a preview of what a
    confirmation would recall."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "alert_id": "QA-2026-0042", "confirmed": True, "campaign_id": "RC-QA-2026-0042", "category": "controller",
        "batch": "CTL-2026-10-B", "supplier_id": "SUP-7", "total": 1, "vehicles": [{
            "vin": "LSVAU2180N2183456", "customer_id": "CUST-000123", "owner_name": "王芳", "owner_erased": False,
            "region": "east", "dealer_id": "DLR-SH-01", "model": "EV-S", "sold_at": "2025-10-08T11:00:00+08:00",
            "reached_at": _WHEN, "booked_at": None, "inspected_at": None, "replaced_at": None,
            "repair_order_id": None}]}]})
    alert_id: str
    confirmed: bool
    campaign_id: str | None
    category: str
    batch: str
    supplier_id: str | None
    total: int
    vehicles: list[dict[str, Any]] = Field(description="vin, owner (customer_id, owner_name; owner_erased: "
                                                       "the owner's personal data was erased, no name), region, "
                                                       "dealer, model, sold_at; once confirmed the progress dates")


_PROGRESS = {"vehicles": 128, "reached": 90, "booked": 60, "inspected": 41, "replaced": 40,
             "rates": {"reached": 0.7031, "booked": 0.4688, "inspected": 0.3203, "replaced": 0.3125}}


class RecallSummary(RecallInfo):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_RECALL, "progress": _PROGRESS}]})
    progress: dict[str, Any] = Field(description="vehicles, reached, booked, inspected, replaced and their rates")


class RecallDetail(RecallInfo):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **_RECALL, "progress": {"total": _PROGRESS, "by_dealer": [{"dealer_id": "DLR-SH-01", **_PROGRESS}]},
        "vehicles": [{"vin": "LSVAU2180N2183456", "customer_id": "CUST-000123", "owner_name": "王芳",
                      "owner_erased": False, "region": "east",
                      "dealer_id": "DLR-SH-01", "model": "EV-S", "sold_at": "2025-10-08T11:00:00+08:00",
                      "reached_at": _WHEN, "booked_at": None, "inspected_at": None, "replaced_at": None,
                      "repair_order_id": None}],
        "reports_since_confirmation": {"not_inspected": 1, "inspected": 0, "not_inspected_reports": [
            {"report_id": "RPT-1100", "vin": "LSVAU2180N2183456", "category": "controller", "failure_mode": "无法启动",
             "reported_by": "DLR-SH-01", "reported_at": _WHEN, "counted": True, "inspected": False}],
            "inspected_reports": []}}]})
    progress: dict[str, Any] = Field(description="total and by_dealer")
    vehicles: list[dict[str, Any]]
    reports_since_confirmation: dict[str, Any]


class Stats(BaseModel):
    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [{
        "from": "2026-10-19T00:00:00+08:00", "to": "2026-11-18T00:00:00+08:00", "category": "controller",
        "defects": 12, "by_category": {"controller": 12}, "important_categories": {"controller": 12, "motor": 0},
        "by_batch": [{"category": "controller", "batch": "CTL-2026-10-B", "defects": 9}],
        "by_supplier": [{"category": "controller", "supplier_id": "SUP-7", "defects": 12}],
        "by_failure_mode": [{"category": "controller", "failure_mode": "无法启动", "defects": 8}],
        "without_batch": 1, "reports": {"counted": 12, "duplicates": 2},
        "units_in_service": {"baseline_rate": 0.002, "units": 900, "unit_months": 4500.0, "reports": 12,
                             "observed_rate": 0.00267, "cells": []}}]})
    from_: str = Field(alias="from")
    to: str
    category: str | None
    defects: int
    by_category: dict[str, int]
    important_categories: dict[str, int]
    by_batch: list[dict[str, Any]]
    by_supplier: list[dict[str, Any]]
    by_failure_mode: list[dict[str, Any]]
    without_batch: int
    reports: dict[str, Any]
    units_in_service: dict[str, Any] | None = Field(None, description="with a category: units, unit-months and "
                                                                      "rates per (batch, supplier, model)")


_PARTS = {"from": "2026-11-09T00:00:00+08:00", "to": "2026-11-16T00:00:00+08:00", "lines": 400,
          "discrepant_lines": 6, "accuracy": 0.985, "target": 0.98, "meets_target": True,
          "discrepancies_by_kind": {"short": 4, "wrong_part": 2}, "dealers_below_target": ["DLR-CD-02"],
          "by_dealer": [{"dealer_id": "DLR-CD-02", "lines": 50, "discrepant_lines": 3, "accuracy": 0.94,
                         "meets_target": False}]}


class PartsAccuracy(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    from_: str = Field(alias="from")
    to: str
    lines: int
    discrepant_lines: int
    accuracy: float | None
    target: float
    meets_target: bool | None
    discrepancies_by_kind: dict[str, int]
    dealers_below_target: list[str]
    by_dealer: list[dict[str, Any]]


class Weekly(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "week": "2026-W46",
        "quality": {"week": "2026-W46", "from": "2026-11-09T00:00:00+08:00", "to": "2026-11-16T00:00:00+08:00",
                    "defects": 5, "by_category": {"controller": 5}, "open_alerts": [], "alerts_raised": 1,
                    "alerts_closed": 0, "complaints": 3, "complaint_categories": {"product_quality": 3}},
        "parts_accuracy": {"week": "2026-W46", **_PARTS}}]})
    week: str
    quality: dict[str, Any] = Field(description="defects by category, batch, supplier, failure mode; open alerts; "
                                                "alerts raised and closed; complaint categories")
    parts_accuracy: PartsAccuracy


class Monthly(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"month": "2026-10", "parts_accuracy": _PARTS}]})
    month: str
    parts_accuracy: PartsAccuracy


class Kpis(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "as_of": _WHEN, "window_days": 30, "quality_alerts_open": 2,
        "quality_alerts_by_state": {"raised": 1, "acknowledged": 1}, "defect_reports": {"controller": 12, "motor": 1},
        "reports_unresolved": 4,
        "parts_shipment_accuracy": {"lines": 1600, "discrepant_lines": 20, "accuracy": 0.9875, "target": 0.98},
        "discrepancies_awaiting_shipment": 0}]})
    as_of: str
    window_days: int
    quality_alerts_open: int
    quality_alerts_by_state: dict[str, int]
    defect_reports: dict[str, int]
    reports_unresolved: int
    parts_shipment_accuracy: dict[str, Any]
    discrepancies_awaiting_shipment: int



ALERT_SORTS = {"raised_at": SortKey(column="raised_at", cast="timestamptz"),
               "updated_at": SortKey(column="updated_at", cast="timestamptz"),
               "alert_id": SortKey(column="alert_id", cast="text")}
RECALL_SORTS = {"confirmed_at": SortKey(column="confirmed_at", cast="timestamptz"),
                "campaign_id": SortKey(column="campaign_id", cast="text")}

__all__ = ["ALERT_SORTS", "alert_etag", "alert_json",
           "RECALL_SORTS", "AffectedVehicles", "Alert", "AlertDetail", "Confirmed",
           "Kpis", "Monthly", "RecallDetail", "RecallSummary", "Stats", "Weekly"]
