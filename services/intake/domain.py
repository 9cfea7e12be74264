"""Intake's rules as plain Python: customer matching, merging facts that arrive in any order,
VIN check digits, date order, and what makes a customer file complete. No I/O here.

A `FileSet` holds the customer files a batch of events touches. Each `apply_*` method takes one
validated upstream event, changes the files in memory and returns the canonical events to
publish. The handlers load the FileSet, apply the batch in order and store what changed, so the
same rules run in the service and in the property tests.

Order independence: every field remembers the world time (`occurred_at` of the fact) at which
it was last set, and a fact older than that never overwrites it (ties go to the larger value).
History keeps each distinct value with the earliest time it was seen. A file created from a
phone number alone (no customer_id yet) is adopted by the customer whose id later arrives with
that phone, so a pickup that overtakes the sale ends in the same file as one that follows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel

from shared.events import upstream as u
from shared.timeutil import add_months
from shared.validation import check_vin_check_digit

CUSTOMER_FIELDS = (
    "name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone", "consent",
)
# Contact values on file that cannot be used: {field: {value, reason, flagged_at, source}}.
FLAGS = "contact_flags"
# What an agent may correct on the phone.
CORRECTABLE_FIELDS = ("phone", "email", "address", "person_in_charge")
# Changes the work plan wants applied at once and kept as history.
HISTORY_FIELDS = ("name", "phone", "email", "address", "region", "person_in_charge", "consent")
# A customer file needs these; the plan wants a complete file within 2 days of a visit.
REQUIRED_CUSTOMER_FIELDS = ("phone", "address")
REQUIRED_VEHICLE_FIELDS = ("plate", "model")
VEHICLE_FIELDS = (
    "customer_id", "plate", "model", "dealer_id", "region", "sale_id", "sold_at", "warranty_months", "warranty_km",
    "parts",
)


class Rejected(Exception):
    """The event contradicts the files: the reason names the field and what was expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derived_customer_id(phone: str) -> str:
    """A stable id for a customer known only by phone, so replays and reorders agree."""
    return "C" + hashlib.sha256(phone.encode()).hexdigest()[:15].upper()


def _rank(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _rank(value).decode()


@dataclass(slots=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass(slots=True)
class Observation:
    """A value a history field was seen to hold at a world time (kept as history)."""

    field: str
    value: Any
    at: datetime


@dataclass
class Record:
    """Values with the world time each was last set (a customer file or a vehicle file).

    History: every distinct value a customer field has held, with the earliest time it was
    seen. While a field has only ever held one value, that entry is implicit (the value and
    `first_seen`); the field's history is `kept` as entries from the moment a second value
    appears (most fields of most customers never change, and their files carry no history
    rows). Either way the history is the same set, whatever order the facts arrive in."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)
    field_times: dict[str, datetime] = field(default_factory=dict)
    created_at: datetime | None = None
    source: str | None = None
    derived: bool = False
    dirty: bool = False
    # every phone this customer has been seen with (current and earlier): a late fact that
    # names an old phone still finds the file
    known_phones: set[str] = field(default_factory=set)
    # history fields: the earliest time the current value was seen, and those kept as entries
    first_seen: dict[str, datetime] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)

    @property
    def updated_at(self) -> datetime | None:
        return max(self.field_times.values()) if self.field_times else self.created_at

    def seen(self, at: datetime, source: str) -> None:
        """The file exists since the earliest fact about it (whatever arrived first)."""
        if self.created_at is None or at < self.created_at or (at == self.created_at and source < (self.source or "")):
            self.created_at, self.source = at, source
            self.dirty = True

    def _keep(self, name: str) -> list[Observation]:
        """Keep this field's history as entries from now on, starting with its current value's."""
        if name in self.kept:
            return []
        self.kept.add(name)
        self.dirty = True
        current = self.values.get(name)
        if current is None:
            return []
        return [Observation(name, current, self.first_seen.get(name) or self.field_times[name])]

    def saw(self, name: str, value: Any, at: datetime) -> list[Observation]:
        """A fact says the field held `value` at `at` (not necessarily its current value)."""
        if name not in HISTORY_FIELDS:
            return []
        if name in self.kept:
            return [Observation(name, value, at)]
        if value == self.values.get(name):
            if name not in self.first_seen or at < self.first_seen[name]:
                self.first_seen[name] = at
                self.dirty = True
            return []
        return [*self._keep(name), Observation(name, value, at)]

    def merge(self, incoming: Mapping[str, Any], at: datetime) -> tuple[list[Change], list[Observation]]:
        """Last writer wins by world time, not by arrival. Returns the changes to current values
        and the history entries they add (see the class)."""
        changes: list[Change] = []
        observations: list[Observation] = []
        for name, value in incoming.items():
            if value is None:
                continue
            if name == "phone":
                self.known_phones.add(value)
            last = self.field_times.get(name)
            current = self.values.get(name)
            late = last is not None and (
                at < last or (at == last and current is not None and _rank(value) <= _rank(current))
            )
            if late:
                observations.extend(self.saw(name, value, at))
                continue
            if last != at:
                self.field_times[name] = at
                self.dirty = True
            if current != value:
                if current is not None and name in HISTORY_FIELDS:
                    observations.extend(self._keep(name))  # the value it had: its entry, kept now
                self.values[name] = value
                self.dirty = True
                changes.append(Change(name, current, value))
                if name in HISTORY_FIELDS:
                    self.first_seen[name] = at
                    if name in self.kept:
                        observations.append(Observation(name, value, at))
        return changes, observations

    def absorb(self, other: Record) -> tuple[list[Change], list[Observation]]:
        """Take another file's facts (it described the same customer): its values, the earliest
        time each was seen, and its kept history (whose entries move to this file)."""
        changes: list[Change] = []
        observations: list[Observation] = []
        for name, value in other.values.items():
            at = other.field_times.get(name) or other.created_at
            assert at is not None
            changed, observed = self.merge({name: value}, at)
            changes.extend(changed)
            observations.extend(observed)
            earliest = other.first_seen.get(name)
            if earliest is not None and earliest < at:
                observations.extend(self.saw(name, value, earliest))
        for name in sorted(other.kept):
            observations.extend(self._keep(name))
        if other.created_at is not None:
            self.seen(other.created_at, other.source or "unknown")
        self.known_phones |= other.known_phones
        return changes, observations

    def implicit_history(self) -> list[Observation]:
        """The entries of the fields that have held one value only (not kept as entries)."""
        return [Observation(name, value, self.first_seen.get(name) or self.field_times[name])
                for name, value in self.values.items()
                if name in HISTORY_FIELDS and name not in self.kept and value is not None]


@dataclass(slots=True)
class Output:
    """A canonical event to publish."""

    event_type: str
    data: dict[str, Any]
    at: datetime


@dataclass
class FileSet:
    """The customer files one batch touches, changed in memory in event order."""

    customers: dict[str, Record] = field(default_factory=dict)
    vehicles: dict[str, Record] = field(default_factory=dict)
    # repair_order_id -> {vin, customer_id, dealer_id, picked_up_at, ...} for visits on file or new
    visits: dict[str, dict[str, Any]] = field(default_factory=dict)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # earliest pickup on file per VIN, to keep "picked up after sold"
    first_pickup: dict[str, datetime] = field(default_factory=dict)
    # (kind, ref) -> content hash of pass-through facts already published
    facts: dict[tuple[str, str], str] = field(default_factory=dict)
    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what to write
    new_visits: list[dict[str, Any]] = field(default_factory=list)
    new_receipts: list[dict[str, Any]] = field(default_factory=list)
    new_facts: dict[tuple[str, str], str] = field(default_factory=dict)
    new_shipments: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[str, Observation, Any]] = field(default_factory=list)  # (customer, observation, event id)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old key, new key): move visits, vehicles, history
    removed: set[str] = field(default_factory=set)
    # the version of each file as loaded (none: not on file); saving checks it is unchanged
    customer_versions: dict[str, int] = field(default_factory=dict)
    vehicle_versions: dict[str, int] = field(default_factory=dict)
    future_tolerance: timedelta = timedelta(days=1)
    event_id: Any = None  # the event being applied (history remembers where a value came from)
    # phone -> the files that have had it, built on first use (a batch's lookups stay O(1), not
    # a scan of every file in the batch); a file renamed or absorbed is checked on the way out
    _phones: dict[str, list[Record]] | None = field(default=None, repr=False, compare=False)

    # -- customers ------------------------------------------------------------------------
    def _index(self, record: Record) -> None:
        if self._phones is None:
            return  # built from every file when first needed
        for phone in record.known_phones:
            bucket = self._phones.setdefault(phone, [])
            if not any(r is record for r in bucket):
                bucket.append(record)

    def _with_phone(self, phone: str) -> list[Record]:
        """The files on hand that have had this phone (a file's current phone is among its
        known phones)."""
        if self._phones is None:
            self._phones = {}
            for record in self.customers.values():
                self._index(record)
        return [r for r in self._phones.get(phone, ()) if self.customers.get(r.key) is r]

    def find_customer(self, customer_id: str | None, phone: str | None) -> Record | None:
        """By customer_id; else by normalised phone (its current one first, then any it has
        had). A named customer who is not on file adopts a file known only by that phone;
        never another named customer's file."""
        candidates = self._with_phone(phone) if phone else []
        if customer_id:
            if customer_id in self.customers:
                return self.customers[customer_id]
            derived = [r for r in candidates if r.derived]
            return max(derived, key=lambda r: (r.updated_at, r.key)) if derived else None
        if candidates:  # named before phone-only, current phone before an old one, then the latest
            return max(candidates, key=lambda r: (not r.derived, r.values.get("phone") == phone, r.updated_at, r.key))
        return None

    def customer(self, stated: Mapping[str, Any], *, customer_id: str | None, at: datetime, source: str,
                 outputs: list[Output], invalid: Mapping[str, Any] | None = None) -> Record:
        """Match, create or update a customer's file; publish CustomerRegistered for a new file
        and CustomerUpdated only when something really changed. `invalid`: contact values the
        source sent that failed their checks (flagged on the file, see `_flag_contacts`)."""
        phone = stated.get("phone")
        record = self.find_customer(customer_id, phone)
        if record is None and not customer_id and not phone and invalid and "phone" in invalid:
            # known only by a number that is not one: the file is keyed by that value, so the
            # same bad number again finds it
            record = self.customers.get(derived_customer_id(str(_value(invalid["phone"]))))
        created = record is None
        merged_from: list[str] = []
        if record is None:
            bad_phone = _value((invalid or {}).get("phone"))
            if not customer_id and not phone and not bad_phone:
                raise Rejected("customer_id or phone is required to know whose file this is")
            record = Record(key=customer_id or derived_customer_id(str(phone or bad_phone)), derived=not customer_id)
            self.customers[record.key] = record
        elif customer_id and record.key != customer_id:  # a phone-only file learns its customer's id
            merged_from.append(self._rename(record, customer_id))
        record.seen(at, source)
        changes, observations = record.merge(stated, at)
        changes.extend(_flag_contacts(record, stated, invalid, at, source))
        self._index(record)
        self.history.extend((record.key, o, self.event_id) for o in observations)
        if not record.derived:
            sharing = {id(r): r for phone in sorted(record.known_phones) for r in self._with_phone(phone)
                       if r.derived and r is not record}
            for other in sorted(sharing.values(), key=lambda r: r.key):
                absorbed, observed = record.absorb(other)
                changes.extend(absorbed)
                self._move(other.key, record.key)
                self.history.extend((record.key, o, self.event_id) for o in observed)
                merged_from.append(other.key)
            self._index(record)
        self._announce(record, created, changes, merged_from, at, source, outputs)
        return record

    def _rename(self, record: Record, new_key: str) -> str:
        old = record.key
        del self.customers[old]
        record.key, record.derived, record.dirty = new_key, False, True
        self.customers[new_key] = record
        self._move(old, new_key, keep_record=True)
        return old

    def _move(self, old: str, new: str, keep_record: bool = False) -> None:
        """Everything filed under `old` now belongs to `new`."""
        if not keep_record:
            self.customers.pop(old, None)
        self.removed.add(old)
        self.renamed.append((old, new))
        for vehicle in self.vehicles.values():
            if vehicle.values.get("customer_id") == old:
                vehicle.values["customer_id"] = new
                vehicle.dirty = True
        for collection in (self.visits.values(), self.new_visits):
            for item in collection:
                if item.get("customer_id") == old:
                    item["customer_id"] = new
        self.history = [(new if key == old else key, o, e) for key, o, e in self.history]

    def _announce(self, record: Record, created: bool, changes: list[Change], merged_from: list[str],
                  at: datetime, source: str, outputs: list[Output]) -> None:
        current = {name: record.values.get(name) for name in CUSTOMER_FIELDS if record.values.get(name) is not None}
        if FLAGS in record.values:
            current[FLAGS] = record.values[FLAGS]
        if created:
            outputs.append(Output("CustomerRegistered",
                                  {"customer_id": record.key, **current, "registered_from": source}, at))
        elif changes or merged_from:
            data: dict[str, Any] = {
                "customer_id": record.key, **current,
                "changes": {c.field: {"old": c.old, "new": c.new} for c in changes},
            }
            if merged_from:
                data["merged_customer_ids"] = merged_from
                data["changes"]["customer_id"] = {"old": merged_from[0], "new": record.key}
            outputs.append(Output("CustomerUpdated", data, at))

    # -- vehicles -------------------------------------------------------------------------
    def vehicle(self, vin: str) -> Record:
        if vin not in self.vehicles:
            self.vehicles[vin] = Record(key=vin)
        return self.vehicles[vin]

    def _update_vehicle(self, vin: str, values: Mapping[str, Any], at: datetime, source: str) -> Record:
        record = self.vehicle(vin)
        record.seen(at, source)
        record.merge(values, at)
        return record

    def _not_in_future(self, name: str, at: datetime, now: datetime) -> None:
        if at > now + self.future_tolerance:
            raise Rejected(f"{name} {at.isoformat()} is in the future (now {now.isoformat()}); "
                           "send the time the event happened")

    # -- upstream events --------------------------------------------------------------------
    def apply_sale(self, d: u.VehicleSold, now: datetime) -> list[Output]:
        at = d.sold_at
        self._not_in_future("data.sold_at", at, now)
        earliest = self.first_pickup.get(d.vin)
        if earliest is not None and earliest < at:
            raise Rejected(f"data.sold_at {at.isoformat()} is after this vehicle's pickup at "
                           f"{earliest.isoformat()}; a vehicle is sold before it comes in for service")
        vehicle = self.vehicles.get(d.vin)
        if vehicle is not None and vehicle.values.get("sale_id") == d.sale_id and vehicle.values.get("sold_at") == at:
            return []  # the same sale again: on file already
        outputs: list[Output] = []
        customer = self.customer(_stated(d.customer), customer_id=d.customer.customer_id, at=at,
                                 source="VehicleSold", outputs=outputs, invalid=_invalid(d.customer))
        self._update_vehicle(d.vin, {
            "customer_id": customer.key, "plate": d.plate, "model": d.model, "dealer_id": d.dealer_id,
            "region": d.region, "sale_id": d.sale_id, "sold_at": at, "warranty_months": d.warranty_months,
            "warranty_km": d.warranty_km, "parts": [p.model_dump(mode="json") for p in d.parts],
        }, at, "VehicleSold")
        canonical = d.model_dump(mode="json")
        canonical["customer"]["customer_id"] = customer.key
        outputs.append(Output("VehicleSold", canonical, at))
        return outputs

    def apply_pickup(self, d: u.VehiclePickedUp, now: datetime) -> list[Output]:
        at = d.picked_up_at
        self._not_in_future("data.picked_up_at", at, now)
        sold_at = self.vehicles[d.vin].values.get("sold_at") if d.vin in self.vehicles else None
        if sold_at is not None and at < sold_at:
            raise Rejected(f"data.picked_up_at {at.isoformat()} is before the vehicle was sold "
                           f"({sold_at.isoformat()}); a pickup comes after the sale")
        if d.repair_order_id in self.visits:
            return []  # the same repair order again: on file already
        outputs: list[Output] = []
        canonical = d.model_dump(mode="json")  # once: the customer's stated fields and the items come from it
        customer = self.customer(_stated(d.customer, canonical["customer"]), customer_id=d.customer.customer_id,
                                 at=at, source="VehiclePickedUp", outputs=outputs, invalid=_invalid(d.customer))
        vehicle = self._update_vehicle(d.vin, {"customer_id": customer.key, "plate": d.plate, "model": d.model},
                                       at, "VehiclePickedUp")
        visit = {
            "repair_order_id": d.repair_order_id, "vin": d.vin, "customer_id": customer.key, "dealer_id": d.dealer_id,
            "picked_up_at": at, "service_type": d.service_type, "items": canonical["items"],
            "mileage_km": d.mileage_km, "advisor_id": d.advisor_id, "next_service_due_at": d.next_service_due_at,
            "next_service_due_km": d.next_service_due_km, "event_id": self.event_id,
        }
        self.visits[d.repair_order_id] = visit
        self.new_visits.append(visit)
        self.first_pickup[d.vin] = min(at, self.first_pickup.get(d.vin, at))
        v = vehicle.values
        canonical["customer"]["customer_id"] = customer.key
        canonical.update(
            model=d.model or v.get("model"), plate=d.plate or v.get("plate"),
            sold_at=v["sold_at"].isoformat() if v.get("sold_at") else None,
            warranty_months=v.get("warranty_months"), warranty_km=v.get("warranty_km"),
            under_warranty=under_warranty(v, at, d.mileage_km), region=d.customer.region,
        )
        outputs.append(Output("VehiclePickedUp", canonical, at))
        return outputs

    def apply_receipt(self, d: u.ReceiptReturned, now: datetime) -> list[Output]:
        self._not_in_future("data.returned_at", d.returned_at, now)
        if d.receipt_id in self.receipts:
            return []
        visit = self.visits.get(d.repair_order_id)
        if visit is not None:
            if visit["vin"] != d.vin:
                raise Rejected(f"data.vin {d.vin} is not the vehicle of repair order {d.repair_order_id} "
                               f"({visit['vin']}); a receipt names its own repair order's vehicle")
            if d.returned_at < visit["picked_up_at"]:
                raise Rejected(f"data.returned_at {d.returned_at.isoformat()} is before the pickup of repair order "
                               f"{d.repair_order_id} ({visit['picked_up_at'].isoformat()}); a receipt comes after it")
        vehicle = self.vehicles.get(d.vin)
        # A receipt belongs to its repair order's customer; the file joins it through the visit
        # (which may arrive later), the event names who we know now.
        customer_id = (visit or {}).get("customer_id") or (vehicle.values.get("customer_id") if vehicle else None)
        receipt = {
            "receipt_id": d.receipt_id, "repair_order_id": d.repair_order_id, "vin": d.vin,
            "returned_at": d.returned_at, "rating": d.rating, "comments": d.comments, "event_id": self.event_id,
        }
        self.receipts[d.receipt_id] = receipt
        self.new_receipts.append(receipt)
        canonical = {**d.model_dump(mode="json"), "customer_id": customer_id,
                     "dealer_id": (visit or {}).get("dealer_id")}
        return [Output("ReceiptRecorded", canonical, d.returned_at)]

    def apply_customer_update(self, d: u.CustomerUpdatedUpstream, occurred_at: datetime, now: datetime) -> list[Output]:
        at = d.changed_at or occurred_at
        self._not_in_future("data.changed_at", at, now)
        stated = {name: getattr(d, name) for name in CUSTOMER_FIELDS if getattr(d, name) is not None}
        if "consent" in stated and d.consent is not None:
            stated["consent"] = d.consent.model_dump()
        outputs: list[Output] = []
        self.customer(stated, customer_id=d.customer_id, at=at, source="CustomerUpdated", outputs=outputs)
        return outputs

    def apply_contact_correction(self, d: u.CustomerContactCorrected, now: datetime) -> list[Output]:
        """An agent's correction: applied to the file at once (a corrected field's flag goes) and
        published as CustomerContactCorrected, which every service applies."""
        at = d.corrected_at
        self._not_in_future("data.corrected_at", at, now)
        if d.customer_id not in self.customers:
            raise Rejected(f"data.customer_id {d.customer_id!r} has no customer file; a correction names a file "
                           "on record (search with GET /v1/customers?phone=…)")
        stated = {name: getattr(d, name) for name in CORRECTABLE_FIELDS if getattr(d, name) is not None}
        outputs: list[Output] = []
        record = self.customer(stated, customer_id=d.customer_id, at=at, source="CustomerContactCorrected",
                               outputs=outputs)
        updated = next((o for o in outputs if o.event_type == "CustomerUpdated"), None)
        data = dict(updated.data) if updated else {
            "customer_id": record.key, "changes": {},
            **{n: record.values[n] for n in CUSTOMER_FIELDS if record.values.get(n) is not None}}
        data.update(corrected_by=d.corrected_by, corrected_at=at.isoformat(), reason=d.reason,
                    contact_flags=record.values.get(FLAGS) or {})
        return [o for o in outputs if o is not updated] + [Output("CustomerContactCorrected", data, at)]

    def apply_consultation(self, d: u.ConsultationRecorded, now: datetime) -> list[Output]:
        """A consultation opens the customer's file if there is none and is filed once."""
        self._not_in_future("data.consulted_at", d.consulted_at, now)
        key = ("consultation", d.consultation_id)
        if key in self.facts or key in self.new_facts:
            return []
        outputs: list[Output] = []
        stated = {n: getattr(d, n) for n in ("name", "phone", "region", "locale", "timezone") if getattr(d, n)}
        record = self.customer(stated, customer_id=d.customer_id, at=d.consulted_at, source="ConsultationRecorded",
                               outputs=outputs)
        self.new_facts[key] = "filed"
        canonical = {k: v for k, v in d.model_dump(mode="json").items()
                     if k not in ("phone", "name", "locale", "timezone")}
        canonical.update(customer_id=record.key, region=d.region or record.values.get("region"),
                         timezone=record.values.get("timezone") or "Asia/Shanghai")
        outputs.append(Output("ConsultationRecorded", canonical, d.consulted_at))
        return outputs

    def apply_complaint(self, d: u.ComplaintFiled, now: datetime) -> list[Output]:
        self._not_in_future("data.filed_at", d.filed_at, now)
        if self.facts.get(("complaint", d.complaint_ref)) is not None or ("complaint", d.complaint_ref) in self.new_facts:
            return []
        outputs: list[Output] = []
        stated = {"phone": d.phone} if d.phone else {}
        customer = self.customer(stated, customer_id=d.customer_id, at=d.filed_at, source="ComplaintFiled",
                                 outputs=outputs)
        self.new_facts[("complaint", d.complaint_ref)] = "filed"
        canonical = {**d.model_dump(mode="json"), "customer_id": customer.key}
        vehicle = self.vehicles.get(d.vin) if d.vin else None
        if vehicle is not None:  # the complaints figures by region and dealer
            canonical.update(dealer_id=vehicle.values.get("dealer_id"), region=vehicle.values.get("region"))
        elif (last := self.last_visit(customer.key, d.filed_at)) is not None:
            # No known vehicle named: the dealer the customer last came to (the dealer scorecards'
            # complaint rate counts every complaint against a dealer).
            canonical.update(dealer_id=last["dealer_id"], region=customer.values.get("region"))
        outputs.append(Output("ComplaintFiled", canonical, d.filed_at))
        return outputs

    def last_visit(self, customer_key: str, at: datetime) -> dict[str, Any] | None:
        """The customer's latest visit on hand at or before `at` (None without one)."""
        visits = [v for v in self.visits.values() if v.get("customer_id") == customer_key and v["picked_up_at"] <= at]
        return max(visits, key=lambda v: (v["picked_up_at"], v["repair_order_id"])) if visits else None

    def apply_shipment(self, d: u.PartShipped, now: datetime) -> list[Output]:
        self._not_in_future("data.shipped_at", d.shipped_at, now)
        if d.shipment_id not in self.shipments:
            shipment = {"shipment_id": d.shipment_id, "dealer_id": d.dealer_id, "shipped_at": d.shipped_at,
                        "line_nos": sorted(line.line_no for line in d.lines)}
            self.shipments[d.shipment_id] = shipment
            self.new_shipments.append(shipment)
        return self.pass_through("PartShipped", d.shipment_id, d, d.shipped_at)

    def apply_discrepancy(self, d: u.PartShipmentDiscrepancy, now: datetime) -> list[Output]:
        self._not_in_future("data.reported_at", d.reported_at, now)
        shipment = self.shipments.get(d.shipment_id)
        if shipment is not None:
            if d.line_no not in shipment["line_nos"]:
                raise Rejected(f"data.line_no {d.line_no} is not a line of shipment {d.shipment_id} "
                               f"(its lines: {', '.join(map(str, shipment['line_nos']))})")
            if d.reported_at < shipment["shipped_at"]:
                raise Rejected(f"data.reported_at {d.reported_at.isoformat()} is before shipment {d.shipment_id} "
                               f"was shipped ({shipment['shipped_at'].isoformat()})")
        return self.pass_through("PartShipmentDiscrepancy", f"{d.shipment_id}:{d.line_no}:{d.kind}", d, d.reported_at)

    def pass_through(self, event_type: str, ref: str, d: BaseModel, at: datetime) -> list[Output]:
        """Events intake validates and re-publishes unchanged: once per business key, again
        only when their content changes (an amended campaign, a corrected report)."""
        data = d.model_dump(mode="json")
        digest = hashlib.sha256(_rank(data)).hexdigest()
        key = (event_type, ref)
        if self.new_facts.get(key, self.facts.get(key)) == digest:
            return []
        self.new_facts[key] = digest
        return [Output(event_type, data, at)]

    # -- snapshot for tests and replay --------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The files as a plain value: two FileSets that hold the same facts compare equal."""
        history: dict[tuple[str, str, str | None], datetime] = {}
        implicit = [(key, o) for key, r in self.customers.items() for o in r.implicit_history()]
        for key, o in [(key, o) for key, o, _ in self.history] + implicit:
            ident = (key, o.field, as_text(o.value))
            history[ident] = min(o.at, history.get(ident, o.at))
        return {
            "customers": {k: (r.values, r.field_times, r.created_at, r.source, r.derived, sorted(r.known_phones))
                          for k, r in sorted(self.customers.items())},
            "vehicles": {k: (r.values, r.field_times, r.created_at) for k, r in sorted(self.vehicles.items())},
            "visits": {k: v for k, v in sorted(self.visits.items())},
            "receipts": {k: v for k, v in sorted(self.receipts.items())},
            "history": sorted(history.items()),
        }


def _value(flag: Any) -> str | None:
    if flag is None:
        return None
    return str(flag["value"] if isinstance(flag, Mapping) else flag.value)


def _invalid(info: u.CustomerInfo) -> dict[str, dict[str, str]] | None:
    """The contact values the source sent that failed their checks."""
    if not info.invalid_contacts:
        return None
    return {name: {"value": bad.value, "reason": bad.reason} for name, bad in info.invalid_contacts.items()}


def _flag_contacts(record: Record, stated: Mapping[str, Any], invalid: Mapping[str, Any] | None, at: datetime,
                   source: str) -> list[Change]:
    """The file's contact flags after a fact: a usable value for a field clears its flag, a value
    that failed its check flags the field (kept with the reason and the fact that brought it)."""
    current: dict[str, Any] = dict(record.values.get(FLAGS) or {})
    flags = {name: flag for name, flag in current.items() if name not in stated}
    for name, bad in (invalid or {}).items():
        flags[name] = {"value": _value(bad), "reason": bad["reason"], "flagged_at": at.isoformat(), "source": source}
    if flags == current or (not flags and FLAGS not in record.values):
        return []
    changes, _ = record.merge({FLAGS: flags}, at)
    return changes


def _stated(info: u.CustomerInfo, dumped: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The customer fields an upstream payload actually states (defaults are not facts), as
    JSON values (`dumped`: the payload's JSON form, if already made)."""
    stated = info.model_fields_set
    values = dumped if dumped is not None else info.model_dump(mode="json")
    return {name: values[name] for name in CUSTOMER_FIELDS if name in stated and values.get(name) is not None}


def under_warranty(vehicle: Mapping[str, Any], at: datetime, mileage_km: int) -> bool | None:
    """Within sold_at + warranty_months and under warranty_km; None while the sale is unknown."""
    sold_at, months, km = vehicle.get("sold_at"), vehicle.get("warranty_months"), vehicle.get("warranty_km")
    if sold_at is None or months is None or km is None:
        return None
    return at < add_months(sold_at, months) and mileage_km < km


def missing_fields(customer: Mapping[str, Any], vehicles: list[Mapping[str, Any]]) -> list[str]:
    missing = [f for f in REQUIRED_CUSTOMER_FIELDS if not customer.get(f)]
    for vehicle in vehicles:
        missing.extend(f"{f} ({vehicle['vin']})" for f in REQUIRED_VEHICLE_FIELDS if not vehicle.get(f))
    return missing


def vin_check_digit_applies(vin: str, regions: str) -> bool:
    """Position 9 is a check digit for VINs whose first character is in `regions`
    (North America 1-5 and China L by default; Europe does not require it)."""
    return vin[:1] in set(regions.replace(",", "").replace(" ", ""))


def verify_vin(vin: str, regions: str) -> str:
    if vin_check_digit_applies(vin, regions):
        check_vin_check_digit(vin)
    return vin
