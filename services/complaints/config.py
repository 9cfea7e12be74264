"""The complaint rules and their defaults, named as the work plan and DESIGN.md §4 name them.

Every number is overridable from the environment (prefix AFTERSALES_COMPLAINTS_, nested
fields with `__`), e.g. a tighter clock for critical cases:

    AFTERSALES_COMPLAINTS_SLA__CRITICAL__ACKNOWLEDGE_WITHIN=PT1H
    AFTERSALES_COMPLAINTS_SLA__CRITICAL__RESOLVE_WITHIN=P1D

Durations are ISO 8601 (PT4H, P2D) or seconds. The tables people edit (keywords, routing,
who holds each role) are YAML files beside this module, loaded at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import project_home
from shared.validation import check_timezone

if TYPE_CHECKING:
    from services.complaints.documents import DocumentFiles
    from services.complaints.tables import Tables

HERE = Path(__file__).parent


class SlaPolicy(BaseModel):
    """One severity's clock. Time in pending_customer does not count.

    `clock: working` counts business hours of working days on the working calendar
    (shared/calendars: nights, weekends and public holidays stand still, make-up working days
    run; a whole day of an allowance is a working day, PT4H four business hours);
    `continuous` counts calendar time around the clock."""

    clock: Literal["working", "continuous"] = "working"
    # The region whose working calendar the clock runs on (shared/calendars/regions.yaml).
    calendar_region: str | None = None
    # "reflected to the superior leaders in time": acknowledge within 4 h, resolve within 2 days.
    acknowledge_within: timedelta = timedelta(hours=4)
    resolve_within: timedelta = timedelta(days=2)
    # Past the resolve deadline each level has its own deadline before the next one up is told.
    supervisor_within: timedelta = timedelta(days=1)
    department_head_within: timedelta = timedelta(days=1)

    @model_validator(mode="after")
    def _positive_and_ordered(self) -> SlaPolicy:
        for name in ("acknowledge_within", "resolve_within", "supervisor_within", "department_head_within"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration such as PT4H or P2D")
        if self.acknowledge_within > self.resolve_within:
            raise ValueError(
                f"acknowledge_within ({self.acknowledge_within}) must not be longer than resolve_within "
                f"({self.resolve_within}): a case is acknowledged before it is resolved"
            )
        return self


# The SLA table per severity. low and medium keep the work plan's clock (acknowledge 4 h,
# resolve 2 days, a day for each level above) in working time. A high case (a repeated fault,
# a vehicle off the road) moves twice as fast. A critical case (fire, injury, brake failure)
# cannot wait for Monday or the end of a holiday: its clock runs around the clock and it reaches
# the superior leader 6 hours after filing if it is not resolved by then.
HIGH_SLA = SlaPolicy(acknowledge_within=timedelta(hours=2), resolve_within=timedelta(days=1),
                     supervisor_within=timedelta(hours=4), department_head_within=timedelta(hours=4))
CRITICAL_SLA = SlaPolicy(clock="continuous", acknowledge_within=timedelta(hours=1), resolve_within=timedelta(hours=4),
                         supervisor_within=timedelta(hours=1), department_head_within=timedelta(hours=1))


class SlaTable(BaseModel):
    low: SlaPolicy = Field(default_factory=SlaPolicy)
    medium: SlaPolicy = Field(default_factory=SlaPolicy)
    high: SlaPolicy = Field(default_factory=lambda: HIGH_SLA.model_copy())
    critical: SlaPolicy = Field(default_factory=lambda: CRITICAL_SLA.model_copy())

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, value: object) -> object:
        """An override names only what it changes (SLA__CRITICAL__ACKNOWLEDGE_WITHIN=PT2H keeps
        the rest of the critical row), not the whole row."""
        if not isinstance(value, dict):
            return value
        defaults = {"high": HIGH_SLA, "critical": CRITICAL_SLA}
        merged = dict(value)
        for severity, given in value.items():
            if isinstance(given, dict) and severity in defaults:
                merged[severity] = {**defaults[severity].model_dump(), **given}
        return merged

    def for_severity(self, severity: str) -> SlaPolicy:
        return getattr(self, severity)  # type: ignore[no-any-return]


class MeasureRules(BaseModel):
    """Rectification measures (docs/measures.md): "rectification measures by category and
    checking that they are carried out". The effect compares equal windows before and after."""

    # The rate before: the weeks up to the day the measure was recorded; after: as many weeks
    # from its due date (when it should be in place), cut at today while they run.
    window: timedelta = timedelta(weeks=8)
    # A change is called a decrease or an increase only when the exact test of the two rates
    # rejects "no change" at this confidence; otherwise it is "no significant change".
    confidence: float = Field(0.95, gt=0.5, lt=1)
    # Listed as "due" (the owner's to-do) this long before the due date.
    due_soon: timedelta = timedelta(days=7)

    @model_validator(mode="after")
    def _positive(self) -> MeasureRules:
        if self.window <= timedelta(0):
            raise ValueError("measures.window must be a positive duration such as P56D")
        return self


class ComplaintRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_COMPLAINTS_", env_nested_delimiter="__", extra="ignore")

    sla: SlaTable = Field(default_factory=SlaTable)

    # The customer is contacted again to confirm satisfaction (follow-up's complaint_confirmation
    # call). A score of at least this many points out of 5 counts as satisfied when the call
    # recorded a score but no yes/no (the same bar as the satisfaction rate).
    satisfied_min_score: int = Field(4, ge=1, le=5)
    # What a confirmation call that never reached the customer (after follow-up's retries and
    # its SMS/letter) does: close the case as "closed, unconfirmed", or keep it resolved for a
    # supervisor to decide.
    unreachable_confirmation: Literal["close_unconfirmed", "keep_resolved"] = "close_unconfirmed"

    # Handling documents ("file all kinds of handling documents"): stored here, relative
    # paths under AFTERSALES_HOME (or the working directory).
    documents_dir: Path = Path(".local/complaints/documents")
    # A document's size after decoding; 1 MiB leaves a base64 photo or recording inside the HTTP
    # body limit (AFTERSALES_HTTP_MAX_BODY_BYTES, 2 MiB by default).
    max_document_bytes: int = Field(1024 * 1024, ge=1024)

    # The weekly report, "in writing every week": Monday 08:00 Shanghai time by default.
    weekly_report_weekday: int = Field(0, ge=0, le=6)  # 0 = Monday
    weekly_report_time: time = time(8, 0)
    report_timezone: str = "Asia/Shanghai"

    # The YAML tables.
    classification_file: Path = HERE / "classification.yaml"
    routing_file: Path = HERE / "routing.yaml"
    directory_file: Path = HERE / "directory.yaml"

    max_page_size: int = Field(200, ge=1)

    measures: MeasureRules = Field(default_factory=MeasureRules)

    @field_validator("report_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_timezone(value)

    def documents_root(self) -> Path:
        root = self.documents_dir if self.documents_dir.is_absolute() else project_home() / self.documents_dir
        return root.resolve()


@dataclass(frozen=True)
class ComplaintsDeps:
    rules: ComplaintRules
    tables: Tables
    documents: DocumentFiles
