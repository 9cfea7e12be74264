"""Upstream events (sales, DMS, ERP, CRM) as intake validates them: pydantic models, at the
edge only. The checks that make a record acceptable live here (VIN check digit by region, phone
numbers normalised to E.164, time zones, the cross-field rules); once intake has filed a record
it publishes the canonical event (`canonical`), which no consumer validates again.

Models keep unknown fields (`extra="allow"`): a newer producer's extra field passes through
intake into the canonical event untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.events.types import (
    CampaignKind,
    ComplaintCategory,
    ComplaintChannel,
    DiscrepancyKind,
    Locale,
    ReportedBy,
    ServiceType,
    Severity,
)
from shared.validation import (
    check_person_name,
    check_reference,
    check_timezone,
    normalize_email,
    normalize_phone,
    normalize_vin,
)

# ---------------------------------------------------------------------------------------
# Field types


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\s]+$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=4000)]
# printed to customers (SMS, mail headers): only the characters such values hold (shared.validation)
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(check_person_name)]
Reference = Annotated[str, AfterValidator(check_reference)]
Vin = Annotated[str, AfterValidator(normalize_vin)]
Phone = Annotated[str, AfterValidator(normalize_phone)]
Email = Annotated[str, AfterValidator(normalize_email)]
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
Km = Annotated[int, Field(ge=0, le=5_000_000)]


class Consent(EventData):
    """Per-channel consent; absent means the customer has not objected."""

    sms: bool = True
    email: bool = True
    letter: bool = True


class InvalidContact(EventData):
    """A contact value the source sent that cannot be used (kept, with why, on the customer file)."""

    value: str
    reason: str


# The contact fields a record is still filed without: a bad one is flagged, not fatal.
FLAGGABLE_CONTACTS: dict[str, Callable[[str], str]] = {"phone": normalize_phone, "email": normalize_email}


class CustomerInfo(EventData):
    """The customer a sale or pickup names. A phone or e-mail that fails its check does not
    refuse the record (the sale or visit is real): the value moves to `invalid_contacts` with
    the reason, and the record is filed without it. A missing phone is still an error."""

    customer_id: Id | None = None
    name: PersonName
    phone: Phone | None = None
    email: Email | None = None
    address: Name
    region: Name
    person_in_charge: PersonName | None = None
    locale: Locale = "zh-CN"
    timezone: TimeZoneName = "Asia/Shanghai"
    consent: Consent | None = None
    invalid_contacts: dict[str, InvalidContact] | None = None

    @model_validator(mode="before")
    @classmethod
    def _flag_invalid_contacts(cls, raw: object) -> object:
        if not isinstance(raw, dict):
            return raw
        flagged: dict[str, dict[str, str]] = {}
        for name, check in FLAGGABLE_CONTACTS.items():
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                continue
            try:
                check(value)
            except ValueError as exc:
                # both kept on the file and in events: bounded, whatever the source sent
                flagged[name] = {"value": value.strip()[:200], "reason": str(exc)[:400]}
        out = {k: v for k, v in raw.items() if k not in flagged and k != "invalid_contacts"}
        if flagged:
            out["invalid_contacts"] = flagged
        return out

    @model_validator(mode="after")
    def _has_a_phone(self) -> CustomerInfo:
        if self.phone is None and "phone" not in (self.invalid_contacts or {}):
            raise ValueError("phone is missing; expected E.164 such as +8613812345678")
        return self


# ---------------------------------------------------------------------------------------
# Upstream (sales, DMS, ERP, CRM): intake validates these and publishes canonical ones


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
    complaint_ref: Reference
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


class ConsultationRecorded(EventData):
    """A business interview or consultation (showroom, hotline, web) the CRM recorded: the first
    tracking call follows it as it follows a pickup."""

    consultation_id: Id
    customer_id: Id | None = None
    phone: Phone | None = None
    name: PersonName | None = None
    vin: Vin | None = None
    dealer_id: Id | None = None
    region: Name | None = None
    channel: Name = "showroom"
    topic: Name
    summary: Text | None = None
    handled_by: Id | None = None
    consulted_at: AwareDatetime
    locale: Locale | None = None
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _names_the_customer(self) -> ConsultationRecorded:
        if not self.customer_id and not self.phone:
            raise ValueError("customer_id or phone is required to know who consulted")
        return self


class CustomerContactCorrected(EventData):
    """Contact data an agent learned on the phone (forwarded by intake's API): applied to the
    file at once, clearing the flags of the fields it corrects."""

    customer_id: Id
    phone: Phone | None = None
    email: Email | None = None
    address: Name | None = None
    person_in_charge: PersonName | None = None
    corrected_by: Id
    reason: Text | None = None
    corrected_at: AwareDatetime

    @model_validator(mode="after")
    def _corrects_something(self) -> CustomerContactCorrected:
        if not any(getattr(self, n) is not None for n in ("phone", "email", "address", "person_in_charge")):
            raise ValueError("a CustomerContactCorrected needs at least one of: phone, email, address, person_in_charge")
        return self


_CUSTOMER_CHANGE_FIELDS = ("phone", "address", "person_in_charge", "email", "consent", "name", "region", "locale", "timezone")


class CustomerUpdatedUpstream(EventData):
    customer_id: Id
    phone: Phone | None = None
    address: Name | None = None
    person_in_charge: PersonName | None = None
    email: Email | None = None
    consent: Consent | None = None
    name: PersonName | None = None
    region: Name | None = None
    locale: Locale | None = None
    timezone: TimeZoneName | None = None
    changed_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> CustomerUpdatedUpstream:
        if not any(getattr(self, name) is not None for name in _CUSTOMER_CHANGE_FIELDS):
            raise ValueError(f"a CustomerUpdated needs at least one of: {', '.join(_CUSTOMER_CHANGE_FIELDS)}")
        return self


