"""The quality rules and their defaults, named as the work plan and DESIGN.md §4 name them,
and the loader of the baseline-rate table (baseline_rates.yaml) that quality engineers edit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.quality.domain import BaselineRates, MonitorPolicy, Test
from services.quality.warning import EarlyWarning
from shared.events.types import IMPORTANT_PART_CATEGORIES
from shared.validation import check_timezone

HERE = Path(__file__).parent


class QualityRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_QUALITY_", extra="ignore")

    # "monitor important parts such as motor, controller, rear axle, differential, frame,
    # front shock absorber and rim welding" (others are tracked too).
    important_categories: tuple[str, ...] = IMPORTANT_PART_CATEGORIES

    # Early warning: the probability that a cell with no problem raises an alert in a given
    # month (the design's default: "1% per cell per month").
    false_alarm_probability_per_cell_month: float = Field(0.01, gt=0, lt=1)
    # sequential: every report is checked against a boundary calibrated per cell so that the
    # monthly probability holds whatever the look interval (docs/quality-early-warning.md §3);
    # repeated: the count is tested at each look with the budget split over the looks.
    early_warning_test: Test = "sequential"
    # Alarms are raised at the end of every look interval (local midnight; 7 aligns with ISO
    # weeks). Unset: daily for the sequential test, weekly for the repeated one.
    look_interval_days: int | None = Field(None, ge=1, le=31)
    # Also split the budget over the cells monitored (family-wise control across cells).
    control_across_cells: bool = False
    # No Poisson alert on fewer reports than this, however small the expectation.
    min_reports_for_alert: int = Field(3, ge=1)
    # The plain rule: N reports of the same failure mode in one batch within 30 days (0 = off).
    burst_reports: int = Field(7, ge=0)
    burst_window_days: int = Field(30, ge=1)
    # Reports of one vehicle's part category this close together are one defect seen through
    # two channels (a dealer report and a customer complaint); counted once (0 = off).
    duplicate_window_days: int = Field(30, ge=0)
    # Quality v2 (docs/quality-early-warning.md §3a): on batch cells the monthly budget is
    # split between a likelihood-ratio test tuned to this shift of the category's rate (its
    # levels set month by month by exact recursion), one such test per failure mode against
    # the mode's baseline share (all the excess in that mode), and the sequential test; the
    # rest is left to the burst rule (its false alarms are measured, not bounded).
    # These and the months' factors live in the `early_warning` section of the baseline table
    # (baseline_rates.yaml, beside the rates and the failure-mode shares); an environment
    # variable, when set, overrides the table; neither: the EarlyWarning defaults.
    likelihood_ratio_shift: float | None = Field(None, gt=1)
    likelihood_ratio_share: float | None = Field(None, ge=0, le=1)
    failure_mode_share: float | None = Field(None, ge=0, le=1)
    sequential_share: float | None = Field(None, gt=0, le=1)
    # The category shift the per-mode tests are tuned to (each mode's own shift follows from it).
    failure_mode_test_shift: float | None = Field(None, gt=1)
    # The likelihood-ratio tests' budget in a batch's month 0 and in its later months, as a
    # factor on their share (measured on the union of the tests, docs §3a).
    first_month_factor: float | None = Field(None, ge=1)
    later_month_factor: float | None = Field(None, ge=1)
    # A category's failure-mode shares are estimated from its counted reports once there are
    # this many (before that: `failure_modes` of the baseline table; none there: no per-mode test).
    failure_mode_estimate_min_reports: int = Field(200, ge=1)
    # The burst rule applies to a batch only while P(X >= burst_reports) for its expected
    # reports (all modes) in the burst window is at most this (1 = always): on larger batches
    # a same-mode burst happens by chance and the per-mode tests take its place.
    burst_gate_probability: float = Field(1e-3, gt=0, le=1)
    # The table of baseline defect rates per category (reports per unit-month in service).
    baseline_rates_file: Path = HERE / "baseline_rates.yaml"
    # An alert lists at most this many report ids and VINs (the API lists them all).
    alert_listed_reports_max: int = Field(2000, ge=1)
    # A recall announced from a confirmed batch problem starts this many days after the
    # confirmation unless the engineer says when ("call the customer two weeks in advance":
    # the campaign calls are then due at once) and lasts this many days.
    recall_lead_days: int = Field(14, ge=0)
    recall_length_days: int = Field(90, ge=1)

    # Day and week boundaries (looks, weekly reports) are taken in this zone.
    timezone: str = "Asia/Shanghai"
    # "the weekly quality meeting": the reports for the past ISO week go out Monday 08:00.
    weekly_report_weekday: int = Field(0, ge=0, le=6)  # Monday = 0
    weekly_report_time: time = time(8, 0)

    # "The accuracy rate of parts shipment is over 98%."
    parts_accuracy_target: float = Field(0.98, gt=0, le=1)
    # KPI gauges look back this many days.
    kpi_window_days: int = Field(30, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_timezone(value)

    def policy(self) -> MonitorPolicy:
        interval = self.look_interval_days or (1 if self.early_warning_test == "sequential" else 7)
        return MonitorPolicy(
            alpha_month=self.false_alarm_probability_per_cell_month,
            test=self.early_warning_test,
            look_interval_days=interval,
            min_reports=self.min_reports_for_alert,
            burst_reports=self.burst_reports,
            burst_window_days=self.burst_window_days,
            timezone=self.timezone,
            control_across_cells=self.control_across_cells,
        )

    def early_warning(self) -> EarlyWarning:
        """The likelihood-ratio tests of batch cells and their share of the budget: the
        `early_warning` section of the baseline table, each setting overridden by its
        environment variable when that is set. A split or factor that does not add up stops the
        service at start with the file and the reason."""
        path = self.baseline_rates_file
        table = _read_table(path)
        chosen: dict[str, float] = dict(table.early_warning.model_dump(exclude_none=True)) if table.early_warning \
            else {}
        for setting, name in _EARLY_WARNING_SETTINGS.items():
            value = getattr(self, setting)
            if value is not None:
                chosen[name] = value
        try:
            return EarlyWarning(**chosen, mode_shares=_mode_shares(table),
                                mode_estimate_min_reports=self.failure_mode_estimate_min_reports,
                                burst_gate=self.burst_gate_probability)
        except ValueError as exc:
            raise ValueError(f"{path} (early_warning) with AFTERSALES_QUALITY_* overrides {sorted(chosen)}: {exc}") \
                from exc


# QualityRules setting -> EarlyWarning field (and key of the table's `early_warning` section).
_EARLY_WARNING_SETTINGS = {
    "likelihood_ratio_shift": "shift",
    "likelihood_ratio_share": "likelihood_ratio_share",
    "failure_mode_share": "failure_mode_share",
    "sequential_share": "sequential_share",
    "failure_mode_test_shift": "mode_test_shift",
    "first_month_factor": "first_month_factor",
    "later_month_factor": "later_month_factor",
}


class _EarlyWarningTable(BaseModel):
    """The `early_warning` section of the baseline table: the split of a batch cell's monthly
    budget and the factors on it (docs/quality-early-warning.md §3a, §7)."""

    model_config = ConfigDict(extra="forbid")

    shift: float | None = Field(None, gt=1)
    likelihood_ratio_share: float | None = Field(None, ge=0, le=1)
    failure_mode_share: float | None = Field(None, ge=0, le=1)
    sequential_share: float | None = Field(None, gt=0, le=1)
    mode_test_shift: float | None = Field(None, gt=1)
    first_month_factor: float | None = Field(None, ge=1)
    later_month_factor: float | None = Field(None, ge=1)


class _RateTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_month_days: float = Field(30.4375, gt=0)
    default: float = Field(gt=0)
    categories: dict[str, float] = Field(default_factory=dict)
    # Baseline share of each failure mode's reports, by category (normalised on load).
    failure_modes: dict[str, dict[str, float]] = Field(default_factory=dict)
    # The split of a batch cell's budget between its tests and the months' factors.
    early_warning: _EarlyWarningTable | None = None

    @field_validator("failure_modes")
    @classmethod
    def _shares(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        bad = {c: m for c, modes in value.items() for m, v in modes.items() if not v > 0}
        if bad:
            raise ValueError(f"failure-mode shares must be positive; fix: {bad}")
        return value

    @field_validator("categories")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"baseline rates must be positive reports per unit-month; fix: {bad}")
        return value


def _read_table(path: Path) -> _RateTable:
    try:
        return _RateTable.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:
        raise ValueError(f"{path}: not a valid baseline-rate table: {exc}") from exc


def load_baseline_rates(path: Path) -> BaselineRates:
    """Read the baseline table; a malformed file stops the service at start with the reason."""
    table = _read_table(path)
    return BaselineRates(default=table.default, by_category=dict(table.categories), unit_month_days=table.unit_month_days)


def _mode_shares(table: _RateTable) -> dict[str, dict[str, float]]:
    return {c: {m: v / sum(modes.values()) for m, v in modes.items()} for c, modes in table.failure_modes.items()
            if modes}


def load_failure_mode_shares(path: Path) -> dict[str, dict[str, float]]:
    """The `failure_modes` of the baseline table, each category's shares normalised to 1."""
    return _mode_shares(_read_table(path))


@dataclass(frozen=True)
class QualityDeps:
    rules: QualityRules
    rates: BaselineRates
    policy: MonitorPolicy
