"""A pydantic model for every event type of the catalog (DESIGN.md §3), and the registry
that says which event types belong on which topic, what they are keyed by, and which
schema versions this code understands.

Models keep unknown fields (`extra="allow"`): a newer producer's extra field passes through
intake into the canonical event untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.validation import check_timezone, normalize_email, normalize_phone, normalize_vin

# ---------------------------------------------------------------------------------------
# Field types


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\s]+$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Vin = Annotated[str, AfterValidator(normalize_vin)]
Phone = Annotated[str, AfterValidator(normalize_phone)]
Email = Annotated[str, AfterValidator(normalize_email)]
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
Locale = Literal["zh-CN", "en"]
Km = Annotated[int, Field(ge=0, le=5_000_000)]

ServiceType = Literal["maintenance", "repair", "warranty", "accident", "recall"]
DiscrepancyKind = Literal["wrong_part", "short", "damaged", "late"]
ReportedBy = Literal["dealer", "warehouse", "field_service", "complaint"]
ComplaintChannel = Literal["hotline", "dealer", "web", "letter", "return_visit"]
ComplaintCategory = Literal[
    "product_quality", "service_attitude", "repair_quality", "parts_supply", "delay", "price", "other"
]
CampaignKind = Literal["free_inspection_week", "preferential_service_month", "tech_knowledge_party", "recall"]
FollowUpKind = Literal[
    "first_visit", "second_visit", "complaint_confirmation", "campaign_call", "lost_customer", "maintenance_reminder"
]
CallOutcome = Literal["reached", "unreachable", "wrong_number", "call_back_later"]
Severity = Literal["low", "medium", "high", "critical"]
Channel = Literal["sms", "email", "letter"]

IMPORTANT_PART_CATEGORIES: tuple[str, ...] = (
    "motor", "controller", "rear_axle", "differential", "frame", "front_shock_absorber", "rim_welding",
)


class Consent(EventData):
    """Per-channel consent; absent means the customer has not objected."""

    sms: bool = True
    email: bool = True
    letter: bool = True


class CustomerInfo(EventData):
    customer_id: Id | None = None
    name: Name
    phone: Phone
    email: Email | None = None
    address: Name
    region: Name
    person_in_charge: Name | None = None
    locale: Locale = "zh-CN"
    timezone: TimeZoneName = "Asia/Shanghai"
    consent: Consent | None = None


# ---------------------------------------------------------------------------------------
# Upstream (sales, DMS, ERP, CRM) — intake validates these and re-publishes canonical ones


class SoldPart(EventData):
    category: Name
    part_no: Id
    batch: Id
    supplier_id: Id


class VehicleSold(EventData):
    sale_id: Id
    vin: Vin
    model: Name
    sold_at: AwareDatetime
    dealer_id: Id
    region: Name
    warranty_months: int = Field(ge=0, le=240)
    warranty_km: Km
    customer: CustomerInfo
    parts: list[SoldPart] = Field(default_factory=list, max_length=500)
    plate: Name | None = None


class RepairItem(EventData):
    code: Id
    description: Text
    part_category: Name | None = None


class VehiclePickedUp(EventData):
    repair_order_id: Id
    vin: Vin
    dealer_id: Id
    picked_up_at: AwareDatetime
    service_type: ServiceType
    items: list[RepairItem] = Field(max_length=500)
    mileage_km: Km
    advisor_id: Id
    next_service_due_at: AwareDatetime | None = None
    next_service_due_km: Km | None = None
    customer: CustomerInfo
    plate: Name | None = None
    model: Name | None = None


class ReceiptReturned(EventData):
    receipt_id: Id
    repair_order_id: Id
    vin: Vin
    returned_at: AwareDatetime
    rating: int | None = Field(None, ge=1, le=5)
    comments: Text | None = None


class ShipmentLine(EventData):
    line_no: int = Field(ge=1)
    part_no: Id
    category: Name
    qty: int = Field(ge=1)
    batch: Id
    supplier_id: Id


class PartShipped(EventData):
    shipment_id: Id
    order_id: Id
    dealer_id: Id
    shipped_at: AwareDatetime
    lines: list[ShipmentLine] = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _line_numbers_are_unique(self) -> PartShipped:
        seen: set[int] = set()
        for line in self.lines:
            if line.line_no in seen:
                raise ValueError(f"lines: line_no {line.line_no} appears twice; each line needs its own number")
            seen.add(line.line_no)
        return self


class PartShipmentDiscrepancy(EventData):
    shipment_id: Id
    line_no: int = Field(ge=1)
    kind: DiscrepancyKind
    reported_at: AwareDatetime
    notes: Text | None = None


class PartDefectReported(EventData):
    report_id: Id
    part_no: Id
    category: Name
    batch: Id
    supplier_id: Id
    model: Name
    vin: Vin | None = None
    failure_mode: Name
    mileage_km: Km | None = None
    reported_by: ReportedBy
    reported_at: AwareDatetime
    description: Text | None = None


class ComplaintFiled(EventData):
    complaint_ref: Id
    customer_id: Id | None = None
    phone: Phone | None = None
    vin: Vin | None = None
    channel: ComplaintChannel
    category: ComplaintCategory | None = None
    description: Text = Field(min_length=1)
    filed_at: AwareDatetime
    part_category: Name | None = None
    severity: Severity | None = None
    followup_id: Id | None = None

    @model_validator(mode="after")
    def _names_the_customer(self) -> ComplaintFiled:
        if not self.customer_id and not self.phone:
            raise ValueError("customer_id or phone is required to know who complains")
        return self


class CampaignAnnounced(EventData):
    campaign_id: Id
    kind: CampaignKind
    title: Name
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    address: Name
    regions: list[Name] = Field(min_length=1)
    models: list[Name] | None = None
    loyal_first: bool = True

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> CampaignAnnounced:
        if self.ends_at <= self.starts_at:
            raise ValueError(f"ends_at {self.ends_at.isoformat()} must be after starts_at {self.starts_at.isoformat()}")
        return self


_CUSTOMER_CHANGE_FIELDS = ("phone", "address", "person_in_charge", "email", "consent", "name", "region", "locale", "timezone")


class CustomerUpdatedUpstream(EventData):
    customer_id: Id
    phone: Phone | None = None
    address: Name | None = None
    person_in_charge: Name | None = None
    email: Email | None = None
    consent: Consent | None = None
    name: Name | None = None
    region: Name | None = None
    locale: Locale | None = None
    timezone: TimeZoneName | None = None
    changed_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> CustomerUpdatedUpstream:
        if not any(getattr(self, name) is not None for name in _CUSTOMER_CHANGE_FIELDS):
            raise ValueError(f"a CustomerUpdated needs at least one of: {', '.join(_CUSTOMER_CHANGE_FIELDS)}")
        return self


# ---------------------------------------------------------------------------------------
# aftersales.intake (canonical)


class CustomerRegistered(EventData):
    customer_id: Id
    name: Name | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Name | None = None
    region: Name | None = None
    person_in_charge: Name | None = None
    locale: Locale = "zh-CN"
    timezone: TimeZoneName = "Asia/Shanghai"
    consent: Consent = Field(default_factory=Consent)
    registered_from: str


class FieldChange(EventData):
    old: Any = None
    new: Any = None


class CustomerUpdated(EventData):
    """Canonical: the customer's current contact fields plus what changed."""

    customer_id: Id
    changes: dict[str, FieldChange]
    phone: Phone | None = None
    email: Email | None = None
    name: Name | None = None
    address: Name | None = None
    region: Name | None = None
    person_in_charge: Name | None = None
    locale: Locale = "zh-CN"
    timezone: TimeZoneName = "Asia/Shanghai"
    consent: Consent = Field(default_factory=Consent)
    # Files known only by a phone number that this customer's file took over (their ids retire).
    merged_customer_ids: list[Id] | None = None


class CanonicalCustomerInfo(CustomerInfo):
    customer_id: Id


class CanonicalVehicleSold(VehicleSold):
    customer: CanonicalCustomerInfo


class CanonicalVehiclePickedUp(VehiclePickedUp):
    customer: CanonicalCustomerInfo
    sold_at: AwareDatetime | None = None
    warranty_months: int | None = None
    warranty_km: int | None = None
    under_warranty: bool | None = None
    region: Name | None = None


class ReceiptRecorded(ReceiptReturned):
    customer_id: Id | None = None
    dealer_id: Id | None = None


class CanonicalComplaintFiled(ComplaintFiled):
    customer_id: Id


# ---------------------------------------------------------------------------------------
# aftersales.followup


class FollowUpScheduled(EventData):
    followup_id: Id
    kind: FollowUpKind
    customer_id: Id
    vin: Vin | None = None
    due_from: AwareDatetime
    due_by: AwareDatetime
    priority: int = Field(ge=0, le=100)
    reason_event_id: str
    dealer_id: Id | None = None
    region: Name | None = None
    campaign_id: Id | None = None
    complaint_id: Id | None = None
    loyalty_tier: str | None = None


class FollowUpTimerEvent(EventData):
    """FollowUpDue, FollowUpOverdue, FollowUpEscalated, FollowUpExpired."""

    followup_id: Id
    kind: FollowUpKind
    customer_id: Id
    vin: Vin | None = None
    due_from: AwareDatetime | None = None
    due_by: AwareDatetime | None = None
    escalated_to: str | None = None
    dealer_id: Id | None = None
    region: Name | None = None


class FollowUpAttemptRecorded(EventData):
    followup_id: Id
    kind: FollowUpKind
    customer_id: Id
    attempt_no: int = Field(ge=1)
    agent_id: Id
    outcome: CallOutcome
    attempted_at: AwareDatetime
    call_back_at: AwareDatetime | None = None
    satisfaction: int | None = Field(None, ge=1, le=5)
    talking_points: Text | None = None
    requests: Text | None = None
    notes: Text | None = None


class FollowUpCompleted(EventData):
    followup_id: Id
    kind: FollowUpKind
    customer_id: Id
    vin: Vin | None = None
    outcome: Literal["reached", "unreachable", "wrong_number"]
    completed_at: AwareDatetime
    attempts: int = Field(ge=0)
    satisfaction: int | None = Field(None, ge=1, le=5)
    satisfied: bool | None = None
    agent_id: Id | None = None
    complaint_id: Id | None = None
    campaign_id: Id | None = None
    dealer_id: Id | None = None
    region: Name | None = None


class FeedbackRecorded(EventData):
    customer_id: Id
    followup_id: Id
    satisfaction: int | None = Field(None, ge=1, le=5)
    requests: Text | None = None
    comments: Text | None = None
    talking_points: Text | None = None
    categories: list[str] = Field(default_factory=list)
    recorded_at: AwareDatetime


class MaintenanceReminderDue(EventData):
    vin: Vin
    customer_id: Id
    due_at: AwareDatetime | None = None
    due_km: int | None = None
    estimated_due_at: AwareDatetime
    basis: Literal["date", "km"]
    followup_id: Id | None = None


class CampaignCallScheduled(EventData):
    customer_id: Id
    campaign_id: Id
    followup_id: Id
    due_by: AwareDatetime
    loyal: bool = False


class WeeklyReport(EventData):
    """FollowUpWeeklyReport, ComplaintWeeklyReport, QualityWeeklyReport, PartsAccuracyReport."""

    week: str = Field(pattern=r"^\d{4}-W\d{2}$")
    week_start: date
    generated_at: AwareDatetime
    figures: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# aftersales.complaints


class ComplaintEvent(EventData):
    """The lifecycle events of one case; each adds its own fields."""

    complaint_id: Id
    complaint_ref: Id | None = None
    customer_id: Id | None = None
    at: AwareDatetime
    actor: str | None = None
    # The responsible department (notifier routes by it) and the clock round (0, then +1 per reopening).
    department: Name | None = None
    round: int | None = Field(None, ge=0)


class ComplaintOpened(ComplaintEvent):
    vin: Vin | None = None
    channel: ComplaintChannel
    category: ComplaintCategory
    severity: Severity
    department: Name
    description: Text
    filed_at: AwareDatetime
    ack_due_at: AwareDatetime
    resolve_due_at: AwareDatetime
    part_category: Name | None = None
    followup_id: Id | None = None


class ComplaintAssigned(ComplaintEvent):
    assignee: Name


class ComplaintEscalated(ComplaintEvent):
    level: int = Field(ge=1)
    level_name: str
    role: str
    person: str | None = None
    breach: Literal["acknowledge", "resolve"]
    deadline: AwareDatetime
    next_deadline: AwareDatetime | None = None


class ComplaintResolved(ComplaintEvent):
    resolution: Text = Field(min_length=1)
    vin: Vin | None = None
    # The round's pending_customer intervals [from, to]: with the at fields of the other
    # events they make the SLA figures computable again from the log.
    pauses: list[tuple[AwareDatetime, AwareDatetime | None]] | None = None


class ComplaintClosed(ComplaintEvent):
    satisfied: bool | None = None
    # confirmed | unreachable | wrong_number | closed_by_supervisor
    confirmation: str | None = None
    followup_id: Id | None = None
    documents: int | None = Field(None, ge=0)  # handling documents filed with the case


class ComplaintReopened(ComplaintEvent):
    reason: Text | None = None
    followup_id: Id | None = None
    # The restarted clock's deadlines.
    ack_due_at: AwareDatetime | None = None
    resolve_due_at: AwareDatetime | None = None


class ComplaintPended(ComplaintEvent):
    """Waiting for the customer (pending_customer): the SLA clock pauses from `at`."""

    reason: Text | None = None


class ComplaintResumed(ComplaintEvent):
    """The customer answered: the clock runs again; the deadlines moved by the pause."""

    ack_due_at: AwareDatetime | None = None
    resolve_due_at: AwareDatetime | None = None


class ComplaintPartDefectReported(EventData):
    """A product-quality complaint naming a part category; batch and supplier may be unknown
    (quality resolves them from the vehicle's parts list)."""

    report_id: Id
    category: Name
    part_no: Id | None = None
    batch: Id | None = None
    supplier_id: Id | None = None
    model: Name | None = None
    vin: Vin | None = None
    failure_mode: Name
    mileage_km: Km | None = None
    reported_by: ReportedBy = "complaint"
    reported_at: AwareDatetime
    complaint_id: Id | None = None
    description: Text | None = None


# ---------------------------------------------------------------------------------------
# aftersales.quality


class QualityAlertRaised(EventData):
    alert_id: Id
    cell: dict[str, str]
    rule: Literal["poisson", "failure_mode_burst"]
    observed: int = Field(ge=0)
    expected: float = Field(ge=0)
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    report_ids: list[str]
    vins: list[str]
    raised_at: AwareDatetime
    updated: bool = False
    # Optional context (quality service): the look the figures are as of, where monitoring of
    # the cell started, the exposure and the test's settings, the burst behind a burst alert.
    state: Literal["raised", "acknowledged"] | None = None
    title: str | None = None
    as_of: AwareDatetime | None = None
    since: AwareDatetime | None = None
    units: int | None = Field(None, ge=0)
    unit_months: float | None = Field(None, ge=0)
    baseline_rate: float | None = Field(None, ge=0)
    alpha_month: float | None = None
    critical_count: int | None = None
    rules_firing: list[str] | None = None
    failure_mode: str | None = None
    burst_count: int | None = None
    burst_window_days: int | None = None
    revision: int | None = Field(None, ge=0)


class QualityAlertStateChanged(EventData):
    alert_id: Id
    at: AwareDatetime
    actor: str
    note: Text | None = None
    # Optional context (quality service): the alert's cell, rule and state after the change.
    cell: dict[str, str] | None = None
    rule: Literal["poisson", "failure_mode_burst"] | None = None
    state: Literal["acknowledged", "closed"] | None = None
    title: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.notifier


class NotificationEvent(EventData):
    notification_id: Id
    rule: str
    channel: Channel
    recipient: str
    recipient_kind: Literal["customer", "role", "department", "person"]
    template: str
    locale: Locale
    source_event_id: str
    source_event_type: str
    attempts: int = Field(0, ge=0)
    reason: str | None = None
    at: AwareDatetime


# ---------------------------------------------------------------------------------------
# aftersales.deadletter


class DeadLetterRecord(EventData):
    key: str | None
    value_b64: str
    headers: dict[str, str]


class DeadLettered(EventData):
    service: str
    topic: str
    partition: int
    offset: int
    error: str
    reason: str
    record: DeadLetterRecord
    event_type: str | None = None
    original_event_id: str | None = None


# ---------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class EventSpec:
    topic: str
    event_type: str
    model: type[EventData]
    key: Callable[[Any], str]
    key_doc: str
    max_version: int = 1


UPSTREAM_SALES = "upstream.sales"
UPSTREAM_DMS = "upstream.dms"
UPSTREAM_ERP = "upstream.erp"
UPSTREAM_CRM = "upstream.crm"
INTAKE = "aftersales.intake"
FOLLOWUP = "aftersales.followup"
COMPLAINTS = "aftersales.complaints"
QUALITY = "aftersales.quality"
NOTIFIER = "aftersales.notifier"
DEADLETTER = "aftersales.deadletter"

UPSTREAM_TOPICS = (UPSTREAM_SALES, UPSTREAM_DMS, UPSTREAM_ERP, UPSTREAM_CRM)
CANONICAL_TOPICS = (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY, NOTIFIER)
ALL_TOPICS = UPSTREAM_TOPICS + CANONICAL_TOPICS + (DEADLETTER,)
SERVICE_TOPIC = {
    "intake": INTAKE, "followup": FOLLOWUP, "complaints": COMPLAINTS, "quality": QUALITY, "notifier": NOTIFIER,
}


def _by(field: str) -> Callable[[Any], str]:
    return lambda data: str(getattr(data, field))


def _vin_or_part(data: Any) -> str:
    return str(data.vin or data.part_no or data.category)


def _customer_ref(data: Any) -> str:
    return str(data.customer_id or data.phone)


_SPECS: list[EventSpec] = [
    EventSpec(UPSTREAM_SALES, "VehicleSold", VehicleSold, _by("vin"), "vin"),
    EventSpec(UPSTREAM_DMS, "VehiclePickedUp", VehiclePickedUp, _by("vin"), "vin"),
    EventSpec(UPSTREAM_DMS, "ReceiptReturned", ReceiptReturned, _by("vin"), "vin"),
    EventSpec(UPSTREAM_ERP, "PartShipped", PartShipped, _by("shipment_id"), "shipment_id"),
    EventSpec(UPSTREAM_ERP, "PartShipmentDiscrepancy", PartShipmentDiscrepancy, _by("shipment_id"), "shipment_id"),
    EventSpec(UPSTREAM_ERP, "PartDefectReported", PartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(UPSTREAM_CRM, "ComplaintFiled", ComplaintFiled, _customer_ref, "customer_id (or phone)"),
    EventSpec(UPSTREAM_CRM, "CampaignAnnounced", CampaignAnnounced, _by("campaign_id"), "campaign_id"),
    EventSpec(UPSTREAM_CRM, "CustomerUpdated", CustomerUpdatedUpstream, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CustomerRegistered", CustomerRegistered, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CustomerUpdated", CustomerUpdated, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "VehicleSold", CanonicalVehicleSold, _by("vin"), "vin"),
    EventSpec(INTAKE, "VehiclePickedUp", CanonicalVehiclePickedUp, _by("vin"), "vin"),
    EventSpec(INTAKE, "ReceiptRecorded", ReceiptRecorded, _by("vin"), "vin"),
    EventSpec(INTAKE, "PartShipped", PartShipped, _by("shipment_id"), "shipment_id"),
    EventSpec(INTAKE, "PartShipmentDiscrepancy", PartShipmentDiscrepancy, _by("shipment_id"), "shipment_id"),
    EventSpec(INTAKE, "PartDefectReported", PartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(INTAKE, "ComplaintFiled", CanonicalComplaintFiled, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CampaignAnnounced", CampaignAnnounced, _by("campaign_id"), "campaign_id"),
    *(
        EventSpec(FOLLOWUP, name, FollowUpTimerEvent, _by("customer_id"), "customer_id")
        for name in ("FollowUpDue", "FollowUpOverdue", "FollowUpEscalated", "FollowUpExpired")
    ),
    EventSpec(FOLLOWUP, "FollowUpScheduled", FollowUpScheduled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpAttemptRecorded", FollowUpAttemptRecorded, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpCompleted", FollowUpCompleted, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackRecorded", FeedbackRecorded, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "ComplaintFiled", CanonicalComplaintFiled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "MaintenanceReminderDue", MaintenanceReminderDue, _by("vin"), "vin"),
    EventSpec(FOLLOWUP, "CampaignCallScheduled", CampaignCallScheduled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpWeeklyReport", WeeklyReport, _by("week"), "week"),
    EventSpec(COMPLAINTS, "ComplaintOpened", ComplaintOpened, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintAcknowledged", ComplaintEvent, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintAssigned", ComplaintAssigned, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintEscalated", ComplaintEscalated, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintResolved", ComplaintResolved, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintClosed", ComplaintClosed, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintReopened", ComplaintReopened, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintPended", ComplaintPended, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintResumed", ComplaintResumed, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "PartDefectReported", ComplaintPartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(COMPLAINTS, "ComplaintWeeklyReport", WeeklyReport, _by("week"), "week"),
    EventSpec(QUALITY, "QualityAlertRaised", QualityAlertRaised, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "QualityAlertAcknowledged", QualityAlertStateChanged, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "QualityAlertClosed", QualityAlertStateChanged, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "PartsAccuracyReport", WeeklyReport, _by("week"), "week"),
    EventSpec(QUALITY, "QualityWeeklyReport", WeeklyReport, _by("week"), "week"),
    *(
        EventSpec(NOTIFIER, name, NotificationEvent, _by("recipient"), "recipient")
        for name in ("NotificationSent", "NotificationFailed", "NotificationSuppressed")
    ),
    EventSpec(DEADLETTER, "DeadLettered", DeadLettered, lambda d: f"{d.topic}:{d.partition}:{d.offset}", "topic:partition:offset"),
]

CATALOG: dict[tuple[str, str], EventSpec] = {(s.topic, s.event_type): s for s in _SPECS}


def spec_for(topic: str, event_type: str) -> EventSpec | None:
    return CATALOG.get((topic, event_type))


def event_types_on(topic: str) -> list[str]:
    return [s.event_type for s in _SPECS if s.topic == topic]
