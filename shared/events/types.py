"""The vocabulary events share: the closed lists a field may take (docs/events.md)."""

from __future__ import annotations

from typing import Literal

Locale = Literal["zh-CN", "en"]
ServiceType = Literal["maintenance", "repair", "warranty", "accident", "recall"]
DiscrepancyKind = Literal["wrong_part", "short", "damaged", "late"]
ReportedBy = Literal["dealer", "warehouse", "field_service", "complaint"]
ComplaintChannel = Literal["hotline", "dealer", "web", "letter", "return_visit"]
ComplaintCategory = Literal[
    "product_quality", "service_attitude", "repair_quality", "parts_supply", "delay", "price", "other"
]
CampaignKind = Literal["free_inspection_week", "preferential_service_month", "tech_knowledge_party", "recall"]
FollowUpKind = Literal[
    "first_visit", "second_visit", "complaint_confirmation", "campaign_call", "lost_customer", "maintenance_reminder",
    "feedback_answer", "feedback_confirmation",
]
CallOutcome = Literal["reached", "unreachable", "wrong_number", "call_back_later"]
# Why a lost customer (no visit for 12 months) stopped coming, as the agent hears it on the call.
LostReason = Literal["moved_away", "switched_dealer", "sold_the_car", "price", "service_quality", "other"]
Severity = Literal["low", "medium", "high", "critical"]
Channel = Literal["sms", "email", "letter"]
# Why a return-visit call opened a feedback item: a score at or below the threshold, a request.
FeedbackReason = Literal["low_score", "request"]
FeedbackItemState = Literal["open", "escalated", "answered", "closed"]
AlertRule = Literal["poisson", "failure_mode_burst"]

IMPORTANT_PART_CATEGORIES: tuple[str, ...] = (
    "motor", "controller", "rear_axle", "differential", "frame", "front_shock_absorber", "rim_welding",
)
