"""The registry of the event contract (docs/events.md): which event types belong on which
topic, the structure of each one's data, what it is keyed by, and which schema versions this
code understands.

Upstream topics carry pydantic models (`upstream`: intake validates them, the edge); the
`aftersales.*` topics carry msgspec Structs (`canonical`: decoded once, never validated again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from shared.events import canonical as c
from shared.events import upstream as u
from shared.events.types import IMPORTANT_PART_CATEGORIES

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
# Each upstream producer and the topic it writes (its envelopes' `source`).
PRODUCER_TOPICS = {"sales": UPSTREAM_SALES, "dms": UPSTREAM_DMS, "erp": UPSTREAM_ERP, "crm": UPSTREAM_CRM}
CANONICAL_TOPICS = (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY, NOTIFIER)
ALL_TOPICS = UPSTREAM_TOPICS + CANONICAL_TOPICS + (DEADLETTER,)
SERVICE_TOPIC = {
    "intake": INTAKE, "followup": FOLLOWUP, "complaints": COMPLAINTS, "quality": QUALITY, "notifier": NOTIFIER,
}


def field(data: Any, name: str) -> Any:
    """A field of event data, whether a Struct, a pydantic model or a plain mapping."""
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


@dataclass(frozen=True)
class EventSpec:
    topic: str
    event_type: str
    model: type[Any]
    key: Callable[[Any], str]
    key_doc: str
    max_version: int = 1

    @property
    def upstream(self) -> bool:
        """Validated at the edge with pydantic (intake), not decoded as a trusted Struct."""
        return self.topic in UPSTREAM_TOPICS

    def validate(self, data: Any) -> Any:
        """`data` (builtins or Python values) as this event type's structure, checked: for tools
        and tests that build events by hand. Raises pydantic's or msgspec's ValidationError."""
        if self.upstream:
            return self.model.model_validate(data)
        return msgspec.convert(data, self.model, strict=False)


def _by(name: str) -> Callable[[Any], str]:
    return lambda data: str(field(data, name))


def _vin_or_part(data: Any) -> str:
    return str(field(data, "vin") or field(data, "part_no") or field(data, "category"))


def _customer_ref(data: Any) -> str:
    return str(field(data, "customer_id") or field(data, "phone"))


def _dead_letter_key(data: Any) -> str:
    return f"{field(data, 'topic')}:{field(data, 'partition')}:{field(data, 'offset')}"


_SPECS: list[EventSpec] = [
    EventSpec(UPSTREAM_SALES, "VehicleSold", u.VehicleSold, _by("vin"), "vin"),
    EventSpec(UPSTREAM_DMS, "VehiclePickedUp", u.VehiclePickedUp, _by("vin"), "vin"),
    EventSpec(UPSTREAM_DMS, "ReceiptReturned", u.ReceiptReturned, _by("vin"), "vin"),
    EventSpec(UPSTREAM_ERP, "PartShipped", u.PartShipped, _by("shipment_id"), "shipment_id"),
    EventSpec(UPSTREAM_ERP, "PartShipmentDiscrepancy", u.PartShipmentDiscrepancy, _by("shipment_id"), "shipment_id"),
    EventSpec(UPSTREAM_ERP, "PartDefectReported", u.PartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(UPSTREAM_CRM, "ComplaintFiled", u.ComplaintFiled, _customer_ref, "customer_id (or phone)"),
    EventSpec(UPSTREAM_CRM, "CampaignAnnounced", u.CampaignAnnounced, _by("campaign_id"), "campaign_id"),
    EventSpec(UPSTREAM_CRM, "CustomerUpdated", u.CustomerUpdatedUpstream, _by("customer_id"), "customer_id"),
    EventSpec(UPSTREAM_CRM, "ConsultationRecorded", u.ConsultationRecorded, _customer_ref, "customer_id (or phone)"),
    EventSpec(UPSTREAM_CRM, "CustomerContactCorrected", u.CustomerContactCorrected, _by("customer_id"),
              "customer_id"),
    EventSpec(INTAKE, "CustomerRegistered", c.CustomerRegistered, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CustomerUpdated", c.CustomerUpdated, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CustomerContactCorrected", c.CustomerContactCorrected, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "ConsultationRecorded", c.ConsultationRecorded, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CustomerErased", c.CustomerErased, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "VehicleSold", c.VehicleSold, _by("vin"), "vin"),
    EventSpec(INTAKE, "VehiclePickedUp", c.VehiclePickedUp, _by("vin"), "vin"),
    EventSpec(INTAKE, "ReceiptRecorded", c.ReceiptRecorded, _by("vin"), "vin"),
    EventSpec(INTAKE, "PartShipped", c.PartShipped, _by("shipment_id"), "shipment_id"),
    EventSpec(INTAKE, "PartShipmentDiscrepancy", c.PartShipmentDiscrepancy, _by("shipment_id"), "shipment_id"),
    EventSpec(INTAKE, "PartDefectReported", c.PartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(INTAKE, "ComplaintFiled", c.ComplaintFiled, _by("customer_id"), "customer_id"),
    EventSpec(INTAKE, "CampaignAnnounced", c.CampaignAnnounced, _by("campaign_id"), "campaign_id"),
    *(
        EventSpec(FOLLOWUP, name, c.FollowUpTimerEvent, _by("customer_id"), "customer_id")
        for name in ("FollowUpDue", "FollowUpOverdue", "FollowUpEscalated", "FollowUpExpired")
    ),
    EventSpec(FOLLOWUP, "FollowUpScheduled", c.FollowUpScheduled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpAttemptRecorded", c.FollowUpAttemptRecorded, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpCompleted", c.FollowUpCompleted, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackRecorded", c.FeedbackRecorded, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "ComplaintFiled", c.ComplaintFiled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "InboundCallRecorded", c.InboundCallRecorded, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "MaintenanceReminderDue", c.MaintenanceReminderDue, _by("vin"), "vin"),
    EventSpec(FOLLOWUP, "CustomerOwnerAssigned", c.CustomerOwnerAssigned, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpAssigned", c.FollowUpAssigned, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "CampaignCallScheduled", c.CampaignCallScheduled, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FollowUpWeeklyReport", c.WeeklyReport, _by("week"), "week"),
    EventSpec(FOLLOWUP, "FollowUpDepartmentReport", c.WeeklyReport, _by("week"), "week"),
    EventSpec(FOLLOWUP, "FeedbackItemOpened", c.FeedbackItemOpened, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackItemEscalated", c.FeedbackItemEscalated, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackItemAnswered", c.FeedbackItemAnswered, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackItemClosed", c.FeedbackItemClosed, _by("customer_id"), "customer_id"),
    EventSpec(FOLLOWUP, "FeedbackItemReopened", c.FeedbackItemReopened, _by("customer_id"), "customer_id"),
    EventSpec(COMPLAINTS, "ComplaintOpened", c.ComplaintOpened, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintAcknowledged", c.ComplaintEvent, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintAssigned", c.ComplaintAssigned, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintEscalated", c.ComplaintEscalated, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintResolved", c.ComplaintResolved, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintClosed", c.ComplaintClosed, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintReopened", c.ComplaintReopened, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintPended", c.ComplaintPended, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "ComplaintResumed", c.ComplaintResumed, _by("complaint_id"), "complaint_id"),
    EventSpec(COMPLAINTS, "PartDefectReported", c.ComplaintPartDefectReported, _vin_or_part, "vin or part_no"),
    EventSpec(COMPLAINTS, "ComplaintWeeklyReport", c.WeeklyReport, _by("week"), "week"),
    EventSpec(COMPLAINTS, "MeasureRecorded", c.MeasureRecorded, _by("measure_id"), "measure_id"),
    EventSpec(COMPLAINTS, "MeasureDue", c.MeasureDue, _by("measure_id"), "measure_id"),
    EventSpec(COMPLAINTS, "MeasureVerified", c.MeasureVerified, _by("measure_id"), "measure_id"),
    EventSpec(QUALITY, "QualityAlertRaised", c.QualityAlertRaised, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "QualityAlertAcknowledged", c.QualityAlertStateChanged, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "QualityAlertClosed", c.QualityAlertStateChanged, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "PartsAccuracyReport", c.WeeklyReport, _by("week"), "week"),
    EventSpec(QUALITY, "QualityWeeklyReport", c.WeeklyReport, _by("week"), "week"),
    EventSpec(QUALITY, "BatchProblemConfirmed", c.BatchProblemConfirmed, _by("alert_id"), "alert_id"),
    EventSpec(QUALITY, "CampaignAnnounced", c.CampaignAnnounced, _by("campaign_id"), "campaign_id"),
    EventSpec(NOTIFIER, "MonthlyWorkSummary", c.MonthlyWorkSummary, _by("month"), "month"),
    *(
        EventSpec(NOTIFIER, name, c.NotificationEvent, _by("recipient"), "recipient")
        for name in ("NotificationSent", "NotificationFailed", "NotificationSuppressed")
    ),
    EventSpec(DEADLETTER, "DeadLettered", c.DeadLettered, _dead_letter_key, "topic:partition:offset"),
]

CATALOG: dict[tuple[str, str], EventSpec] = {(s.topic, s.event_type): s for s in _SPECS}


def spec_for(topic: str, event_type: str) -> EventSpec | None:
    return CATALOG.get((topic, event_type))


def event_types_on(topic: str) -> list[str]:
    return [s.event_type for s in _SPECS if s.topic == topic]


__all__ = [
    "ALL_TOPICS", "CANONICAL_TOPICS", "CATALOG", "COMPLAINTS", "DEADLETTER", "FOLLOWUP", "IMPORTANT_PART_CATEGORIES",
    "INTAKE", "NOTIFIER", "PRODUCER_TOPICS", "QUALITY", "SERVICE_TOPIC", "UPSTREAM_CRM", "UPSTREAM_DMS", "UPSTREAM_ERP",
    "UPSTREAM_SALES", "UPSTREAM_TOPICS", "EventSpec", "event_types_on", "field", "spec_for",
]
