"""The canonical events the five services publish on `aftersales.*`, as msgspec Structs.

A consumer decodes a record's data straight into its Struct, once: types are checked (a string
is a string, a time has its zone), nothing is parsed again (intake normalised phones and VINs
before it published). A service builds the Structs it publishes and they are encoded as they
are. Unknown fields in a record are ignored, so a newer producer's extra field never breaks an
older consumer; a field is only ever added with a default (docs/events.md, "Compatibility policy").
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from shared.events.types import (
    AlertRule,
    CallOutcome,
    CampaignKind,
    Channel,
    ComplaintCategory,
    ComplaintChannel,
    DiscrepancyKind,
    FeedbackItemState,
    FeedbackReason,
    FollowUpKind,
    Locale,
    LostReason,
    ReportedBy,
    ServiceType,
    Severity,
)

Aware = Annotated[datetime, msgspec.Meta(tz=True)]


class Data(msgspec.Struct, kw_only=True):
    """Base of every canonical event's data."""


# ---------------------------------------------------------------------------------------
# aftersales.intake: the customer files' facts, and the upstream events intake filed


class Consent(Data, kw_only=True):
    sms: bool = True
    email: bool = True
    letter: bool = True


class InvalidContact(Data, kw_only=True):
    """A contact value the source sent that failed its check (the record was filed without it)."""

    value: str
    reason: str


class ContactFlag(Data, kw_only=True):
    """On a customer file: a contact value that cannot be used, why, and which fact brought it."""

    value: str
    reason: str
    flagged_at: Aware | None = None
    source: str | None = None


class CustomerInfo(Data, kw_only=True):
    customer_id: str
    name: str
    address: str
    region: str
    email: str | None = None
    person_in_charge: str | None = None
    locale: Locale = "zh-CN"
    timezone: str = "Asia/Shanghai"
    consent: Consent | None = None
    # None when the source's phone failed its check: it is in invalid_contacts instead.
    phone: str | None = None
    invalid_contacts: dict[str, InvalidContact] | None = None


class CustomerRegistered(Data, kw_only=True):
    customer_id: str
    registered_from: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    region: str | None = None
    person_in_charge: str | None = None
    locale: Locale = "zh-CN"
    timezone: str = "Asia/Shanghai"
    consent: Consent = msgspec.field(default_factory=Consent)
    # Contact values on file that cannot be used (field -> value, reason): agents correct them.
    contact_flags: dict[str, ContactFlag] | None = None


class FieldChange(Data, kw_only=True):
    old: Any = None
    new: Any = None


class CustomerUpdated(Data, kw_only=True):
    """The customer's current contact fields plus what changed."""

    customer_id: str
    changes: dict[str, FieldChange]
    phone: str | None = None
    email: str | None = None
    name: str | None = None
    address: str | None = None
    region: str | None = None
    person_in_charge: str | None = None
    locale: Locale = "zh-CN"
    timezone: str = "Asia/Shanghai"
    consent: Consent = msgspec.field(default_factory=Consent)
    # Files known only by a phone number that this customer's file took over (their ids retire).
    merged_customer_ids: list[str] | None = None
    contact_flags: dict[str, ContactFlag] | None = None


class CustomerContactCorrected(CustomerUpdated, kw_only=True):
    """An agent corrected the customer's contact data on the phone: the file's current contact
    fields, what changed, who corrected it and the flags that remain. Every service applies it
    as it applies a CustomerUpdated."""

    corrected_by: str
    corrected_at: Aware
    reason: str | None = None


class CustomerErased(Data, kw_only=True):
    """A supervisor erased the customer's personal data (PIPL Art. 47, GDPR Art. 17): every
    service removes the customer's name, phone, e-mail, address and free text it holds (tables,
    history, documents) and keeps ids, dates and counts for the KPIs. An event about the customer
    that occurred at or before `erased_at` (a replay, a late delivery) brings no personal field
    back; data collected later (a new purchase) is filed again. `merged_customer_ids` are the
    phone-only files this file took over, erased with it. The reason stays in intake's erasure
    register; it is not on the bus."""

    customer_id: str
    erasure_id: str
    erased_at: Aware
    requested_by: str
    merged_customer_ids: list[str] = msgspec.field(default_factory=list)


class ConsultationRecorded(Data, kw_only=True):
    """A business interview or consultation, filed on the customer's file (opened if needed)."""

    consultation_id: str
    customer_id: str
    consulted_at: Aware
    topic: str
    channel: str = "showroom"
    summary: str | None = None
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    handled_by: str | None = None
    timezone: str = "Asia/Shanghai"


class SoldPart(Data, kw_only=True):
    category: str
    part_no: str
    batch: str
    supplier_id: str


class VehicleSold(Data, kw_only=True):
    sale_id: str
    vin: str
    model: str
    sold_at: Aware
    dealer_id: str
    region: str
    warranty_months: int
    warranty_km: int
    customer: CustomerInfo
    parts: list[SoldPart] = []
    plate: str | None = None


class RepairItem(Data, kw_only=True):
    code: str
    description: str
    part_category: str | None = None


class VehiclePickedUp(Data, kw_only=True):
    repair_order_id: str
    vin: str
    dealer_id: str
    picked_up_at: Aware
    service_type: ServiceType
    items: list[RepairItem]
    mileage_km: int
    advisor_id: str
    customer: CustomerInfo
    next_service_due_at: Aware | None = None
    next_service_due_km: int | None = None
    plate: str | None = None
    model: str | None = None
    # What intake knows of the vehicle when the pickup is filed.
    sold_at: Aware | None = None
    warranty_months: int | None = None
    warranty_km: int | None = None
    under_warranty: bool | None = None
    region: str | None = None


class ReceiptRecorded(Data, kw_only=True):
    receipt_id: str
    repair_order_id: str
    vin: str
    returned_at: Aware
    rating: int | None = None
    comments: str | None = None
    customer_id: str | None = None
    dealer_id: str | None = None


class ShipmentLine(Data, kw_only=True):
    line_no: int
    part_no: str
    category: str
    qty: int
    batch: str
    supplier_id: str


class PartShipped(Data, kw_only=True):
    shipment_id: str
    order_id: str
    dealer_id: str
    shipped_at: Aware
    lines: list[ShipmentLine]


class PartShipmentDiscrepancy(Data, kw_only=True):
    shipment_id: str
    line_no: int
    kind: DiscrepancyKind
    reported_at: Aware
    notes: str | None = None


class PartDefectReported(Data, kw_only=True):
    report_id: str
    part_no: str
    category: str
    batch: str
    supplier_id: str
    model: str
    failure_mode: str
    reported_by: ReportedBy
    reported_at: Aware
    vin: str | None = None
    mileage_km: int | None = None
    description: str | None = None


class ComplaintFiled(Data, kw_only=True):
    complaint_ref: str
    customer_id: str
    channel: ComplaintChannel
    description: str
    filed_at: Aware
    phone: str | None = None
    vin: str | None = None
    category: ComplaintCategory | None = None
    part_category: str | None = None
    severity: Severity | None = None
    followup_id: str | None = None
    # The vehicle's dealer and region, when known (intake from the vehicle's file, follow-up from
    # the call): the complaints figures by region and dealer.
    dealer_id: str | None = None
    region: str | None = None


class CampaignAnnounced(Data, kw_only=True):
    campaign_id: str
    kind: CampaignKind
    title: str
    starts_at: Aware
    ends_at: Aware
    address: str
    regions: list[str]
    models: list[str] | None = None
    loyal_first: bool = True
    # A recall announced by quality (aftersales.quality) names the vehicles it targets: the
    # owners of exactly these VINs are called and written to, whatever their region.
    vins: list[str] | None = None
    alert_id: str | None = None
    category: str | None = None
    batch: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.followup


class FollowUpScheduled(Data, kw_only=True):
    followup_id: str
    kind: FollowUpKind
    customer_id: str
    due_from: Aware
    due_by: Aware
    priority: int
    reason_event_id: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    campaign_id: str | None = None
    complaint_id: str | None = None
    loyalty_tier: str | None = None
    # What the call follows: VehiclePickedUp, VehicleSold (a delivery), ConsultationRecorded,
    # InboundCallRecorded, … (None from older producers).
    reason_type: str | None = None


class InboundCallRecorded(Data, kw_only=True):
    """A call the customer made to the department, as the agent who took it recorded it."""

    call_id: str
    customer_id: str
    kind: Literal["consultation", "complaint", "request", "other"]
    summary: str
    handled_by: str
    received_at: Aware
    vin: str | None = None
    complaint_id: str | None = None
    followup_id: str | None = None  # the first tracking call a consultation scheduled


class CustomerOwnerAssigned(Data, kw_only=True):
    """A customer's tracking owner (the agent who follows the customer, "跟踪业务员") set or changed:
    by the owner rules when the customer first appears (or a more specific rule once the dealer is
    known), or by a supervisor. `previous_owner` is None for the first assignment."""

    customer_id: str
    owner: str
    previous_owner: str | None = None
    source: str  # rule:dealer, rule:region, rule:default (the rule that matched), or supervisor
    reason: str  # why: the rule that matched, or the supervisor's words
    assigned_by: str  # "system" for a rule, else the supervisor's id
    # when a supervisor changed it; a rule's assignment is as of the fact that named the customer
    # (the envelope's occurred_at)
    assigned_at: Aware | None = None
    region: str | None = None
    dealer_id: str | None = None


class FollowUpAssigned(Data, kw_only=True):
    """A supervisor assigned (or reassigned) an open follow-up call to an agent: it comes first in
    that agent's queue; another agent may take it only once it is overdue and unclaimed."""

    followup_id: str
    kind: FollowUpKind
    customer_id: str
    agent: str
    previous_agent: str | None = None
    reason: str
    assigned_by: str
    assigned_at: Aware
    due_by: Aware | None = None


class FollowUpTimerEvent(Data, kw_only=True):
    """FollowUpDue, FollowUpOverdue, FollowUpEscalated, FollowUpExpired."""

    followup_id: str
    kind: FollowUpKind
    customer_id: str
    vin: str | None = None
    due_from: Aware | None = None
    due_by: Aware | None = None
    escalated_to: str | None = None
    dealer_id: str | None = None
    region: str | None = None


class FollowUpAttemptRecorded(Data, kw_only=True):
    followup_id: str
    kind: FollowUpKind
    customer_id: str
    attempt_no: int
    agent_id: str
    outcome: CallOutcome
    attempted_at: Aware
    call_back_at: Aware | None = None
    satisfaction: int | None = None
    talking_points: str | None = None
    requests: str | None = None
    notes: str | None = None
    # A lost-customer call that reached the customer: why they stopped coming, and in their words.
    lost_reason: LostReason | None = None
    lost_reason_note: str | None = None
    # One conversation per customer: the call this attempt was recorded on, shared by the customer's
    # follow-ups worked on it (None: the follow-up was called alone).
    call_id: str | None = None


class FollowUpCompleted(Data, kw_only=True):
    followup_id: str
    kind: FollowUpKind
    customer_id: str
    outcome: Literal["reached", "unreachable", "wrong_number"]
    completed_at: Aware
    attempts: int
    vin: str | None = None
    satisfaction: int | None = None
    satisfied: bool | None = None
    agent_id: str | None = None
    complaint_id: str | None = None
    campaign_id: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    # A campaign call that reached the customer: the visit they booked (a recall's inspection).
    booked_at: Aware | None = None
    # A lost-customer call that reached the customer: why they stopped coming, and in their words.
    lost_reason: LostReason | None = None
    lost_reason_note: str | None = None
    # The conversation's call that completed it (FollowUpAttemptRecorded.call_id), when worked together.
    call_id: str | None = None


class FeedbackRecorded(Data, kw_only=True):
    customer_id: str
    followup_id: str
    recorded_at: Aware
    satisfaction: int | None = None
    requests: str | None = None
    comments: str | None = None
    talking_points: str | None = None
    categories: list[str] = []


class MaintenanceReminderDue(Data, kw_only=True):
    vin: str
    customer_id: str
    estimated_due_at: Aware
    basis: Literal["date", "km"]
    due_at: Aware | None = None
    due_km: int | None = None
    followup_id: str | None = None


class CampaignCallScheduled(Data, kw_only=True):
    customer_id: str
    campaign_id: str
    followup_id: str
    due_by: Aware
    loyal: bool = False
    campaign_kind: CampaignKind | None = None
    vin: str | None = None


class FeedbackItemEvent(Data, kw_only=True):
    """A feedback item (a customer concern): what a return-visit call found wrong or asked for,
    tracked until the customer has the answer. Every step is one of these on aftersales.followup,
    keyed by customer_id; each type adds its own fields."""

    item_id: str
    customer_id: str
    at: Aware
    state: FeedbackItemState
    owner: str  # the agent who made the call
    department: str  # the responsible department (the written notice goes there)
    followup_id: str
    vin: str | None = None
    dealer_id: str | None = None
    region: str | None = None
    actor: str | None = None  # who did this step (an agent, a supervisor, or the system)


class FeedbackItemOpened(FeedbackItemEvent, kw_only=True):
    reasons: list[FeedbackReason]
    attempt_no: int
    due_at: Aware | None  # escalated to the supervisor then unless answered (None: closed at once)
    satisfaction: int | None = None
    requests: str | None = None
    talking_points: str | None = None
    category: str | None = None
    serious: bool = False
    answered_on_call: bool = False
    complaint_ref: str | None = None  # the complaint case a serious item became


class FeedbackItemEscalated(FeedbackItemEvent, kw_only=True):
    escalated_to: str
    due_at: Aware  # the deadline that passed
    opened_at: Aware
    requests: str | None = None
    satisfaction: int | None = None


class FeedbackItemAnswered(FeedbackItemEvent, kw_only=True):
    solution: str
    told_by: Literal["on_call", "sms", "call"]
    in_time: bool  # answered on the call, or before the escalation deadline
    opened_at: Aware
    confirmation_followup_id: str | None = None
    answer_followup_id: str | None = None


class FeedbackItemClosed(FeedbackItemEvent, kw_only=True):
    closed_as: Literal["answered_on_call", "confirmed", "unconfirmed", "complaint"]
    satisfied: bool | None = None
    complaint_ref: str | None = None


class FeedbackItemReopened(FeedbackItemEvent, kw_only=True):
    reason: str
    due_at: Aware


class WeeklyReport(Data, kw_only=True):
    """FollowUpWeeklyReport, ComplaintWeeklyReport, QualityWeeklyReport, PartsAccuracyReport;
    FollowUpDepartmentReport is one department's part of the follow-up report (`department` set:
    the notifier mails it to that department only)."""

    week: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-W\d{2}$")]
    week_start: date
    generated_at: Aware
    figures: dict[str, Any] = {}
    department: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.complaints


class ComplaintEvent(Data, kw_only=True):
    """The lifecycle events of one case; each adds its own fields."""

    complaint_id: str
    at: Aware
    complaint_ref: str | None = None
    customer_id: str | None = None
    actor: str | None = None
    # The responsible department (notifier routes by it) and the clock round (0, then +1 per reopening).
    department: str | None = None
    round: int | None = None


class ComplaintOpened(ComplaintEvent, kw_only=True):
    channel: ComplaintChannel
    category: ComplaintCategory
    severity: Severity
    description: str
    filed_at: Aware
    ack_due_at: Aware
    resolve_due_at: Aware
    vin: str | None = None
    part_category: str | None = None
    followup_id: str | None = None
    handler: str | None = None  # who the department's new cases go to (directory.yaml); told by e-mail
    # The vehicle's dealer and region as the filing named them (the figures and scorecards by dealer).
    dealer_id: str | None = None
    region: str | None = None


class ComplaintAssigned(ComplaintEvent, kw_only=True):
    assignee: str


class ComplaintEscalated(ComplaintEvent, kw_only=True):
    level: int
    level_name: str
    role: str
    breach: Literal["acknowledge", "resolve"]
    deadline: Aware
    person: str | None = None
    next_deadline: Aware | None = None


class ComplaintResolved(ComplaintEvent, kw_only=True):
    resolution: str
    vin: str | None = None
    # The round's pending_customer intervals [from, to]: with the at fields of the other
    # events they make the SLA figures computable again from the log.
    pauses: list[tuple[Aware, Aware | None]] | None = None


class ComplaintClosed(ComplaintEvent, kw_only=True):
    satisfied: bool | None = None
    # confirmed | unreachable | wrong_number | closed_by_supervisor
    confirmation: str | None = None
    followup_id: str | None = None
    documents: int | None = None  # handling documents filed with the case


class ComplaintReopened(ComplaintEvent, kw_only=True):
    reason: str | None = None
    followup_id: str | None = None
    # The restarted clock's deadlines.
    ack_due_at: Aware | None = None
    resolve_due_at: Aware | None = None


class ComplaintPended(ComplaintEvent, kw_only=True):
    """Waiting for the customer (pending_customer): the SLA clock pauses from `at`."""

    reason: str | None = None


class ComplaintResumed(ComplaintEvent, kw_only=True):
    """The customer answered: the clock runs again; the deadlines moved by the pause."""

    ack_due_at: Aware | None = None
    resolve_due_at: Aware | None = None


class ComplaintPartDefectReported(Data, kw_only=True):
    """A product-quality complaint naming a part category; batch and supplier may be unknown
    (quality resolves them from the vehicle's parts list)."""

    report_id: str
    category: str
    failure_mode: str
    reported_at: Aware
    reported_by: ReportedBy = "complaint"
    part_no: str | None = None
    batch: str | None = None
    supplier_id: str | None = None
    model: str | None = None
    vin: str | None = None
    mileage_km: int | None = None
    complaint_id: str | None = None
    description: str | None = None


class MeasureEvent(Data, kw_only=True):
    """A rectification measure (docs/measures.md): what it answers — a complaint category, or
    a quality alert and the alert's part category — its owner and due date."""

    measure_id: str
    target_kind: Literal["category", "alert"]
    # The complaint category, or the part category of the alert answered.
    category: str
    title: str
    owner: str
    due_at: Aware
    alert_id: str | None = None


class MeasureRecorded(MeasureEvent, kw_only=True):
    action: str
    recorded_at: Aware
    recorded_by: str


class MeasureDue(MeasureEvent, kw_only=True):
    """The due date came and the measure is not verified yet: the owner is reminded."""


class MeasureVerified(MeasureEvent, kw_only=True):
    """Checked: carried out and effective or not, by whom, with what was seen; the measured
    effect at that moment (per 100 workshop visits, before vs after; `change` is the test's
    verdict: decreased, increased, no_significant_change, not_enough_data, after_not_started)."""

    verdict: Literal["effective", "not_effective"]
    verified_by: str
    verified_at: Aware
    note: str
    events_before: int | None = None
    visits_before: int | None = None
    events_after: int | None = None
    visits_after: int | None = None
    rate_ratio: float | None = None
    p_value: float | None = None
    change: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.quality


class QualityAlertRaised(Data, kw_only=True):
    alert_id: str
    cell: dict[str, str]
    rule: AlertRule
    observed: int
    expected: float
    report_ids: list[str]
    vins: list[str]
    raised_at: Aware
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    updated: bool = False
    # Context: the look the figures are as of, where monitoring of the cell started, the
    # exposure and the test's settings, the burst behind a burst alert.
    state: Literal["raised", "acknowledged"] | None = None
    title: str | None = None
    as_of: Aware | None = None
    since: Aware | None = None
    units: int | None = None
    unit_months: float | None = None
    baseline_rate: float | None = None
    alpha_month: float | None = None
    critical_count: int | None = None
    rules_firing: list[str] | None = None
    failure_mode: str | None = None
    burst_count: int | None = None
    burst_window_days: int | None = None
    revision: int | None = None


class QualityAlertStateChanged(Data, kw_only=True):
    alert_id: str
    at: Aware
    actor: str
    note: str | None = None
    # Context: the alert's cell, rule and state after the change.
    cell: dict[str, str] | None = None
    rule: AlertRule | None = None
    state: Literal["acknowledged", "closed"] | None = None
    title: str | None = None


class BatchProblemConfirmed(Data, kw_only=True):
    """A quality engineer confirmed an alert as a batch problem, with the containment action;
    the vehicles carrying the batch (from the sales parts lists) are the recall's targets."""

    alert_id: str
    confirmed_at: Aware
    actor: str
    containment: str
    category: str
    batch: str
    vins: list[str]  # at most the alert's listing limit; `vehicles` counts them all
    cell: dict[str, str] | None = None
    vehicles: int | None = None
    supplier_id: str | None = None
    title: str | None = None
    campaign_id: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.notifier


class MonthlyWorkSummary(Data, kw_only=True):
    """The month's work summary a supervisor issued (assembled by the console from the services'
    figures: targets against results, complaint categories, measures and their effect); the
    notifier mails it to customer service and the superior leader."""

    month: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}$")]
    issued_at: Aware
    issued_by: str
    figures: dict[str, Any] = {}


class NotificationEvent(Data, kw_only=True):
    notification_id: str
    rule: str
    channel: Channel
    recipient: str
    recipient_kind: Literal["customer", "role", "department", "person"]
    template: str
    locale: Locale
    source_event_id: str
    source_event_type: str
    at: Aware
    attempts: int = 0
    reason: str | None = None


# ---------------------------------------------------------------------------------------
# aftersales.deadletter


class DeadLetterRecord(Data, kw_only=True):
    key: str | None
    value_b64: str
    headers: dict[str, str]


class DeadLettered(Data, kw_only=True):
    service: str
    topic: str
    partition: int
    offset: int
    error: str
    reason: str
    record: DeadLetterRecord
    event_type: str | None = None
    original_event_id: str | None = None

