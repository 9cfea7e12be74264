"""Intake's rules, as plain functions: customer matching, merging facts that may arrive out of
order, VIN check digits, and what makes a customer file complete. No I/O here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from shared.validation import check_vin_check_digit

CUSTOMER_FIELDS = (
    "name", "phone", "email", "address", "region", "person_in_charge", "locale", "timezone", "consent",
)
# Fields whose changes the work plan wants applied at once and kept as history.
HISTORY_FIELDS = ("name", "phone", "email", "address", "region", "person_in_charge", "consent")
# A customer file needs these; the plan wants a complete file within 2 days of a visit.
REQUIRED_CUSTOMER_FIELDS = ("phone", "address")
REQUIRED_VEHICLE_FIELDS = ("plate", "model")


def derived_customer_id(phone: str) -> str:
    """A stable id for a customer known only by phone, so replays and reorders agree."""
    return "C" + hashlib.sha256(phone.encode()).hexdigest()[:15].upper()


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass
class Record:
    """Values with the world time each was last set (customer file or vehicle file)."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)
    field_times: dict[str, datetime] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    source: str | None = None
    is_new: bool = False
    dirty: bool = False

    def touch(self, at: datetime) -> None:
        self.dirty = True
        self.created_at = self.created_at or at
        self.updated_at = max(self.updated_at, at) if self.updated_at else at

    def merge(self, incoming: Mapping[str, Any], at: datetime) -> list[Change]:
        """Last writer wins by world time (`at`), not by arrival: a late, older fact never
        overwrites a newer one, so any arrival order ends in the same record. Ties at the
        same instant go to the larger value, for the same reason."""
        changes = []
        for name, value in incoming.items():
            if value is None:
                continue
            last = self.field_times.get(name)
            current = self.values.get(name)
            if last is not None:
                if at < last:
                    continue
                if at == last and current is not None and _rank(value) <= _rank(current):
                    continue
            self.field_times[name] = at
            if current != value:
                self.values[name] = value
                changes.append(Change(name, current, value))
        return changes


@dataclass
class CustomerBook:
    """The customer files one batch touches: matched by customer_id, else by normalised
    phone; a file is created from whatever names the customer first."""

    records: dict[str, Record] = field(default_factory=dict)
    _by_phone: dict[str, set[str]] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.records[record.key] = record
        self._index(record)

    def _index(self, record: Record) -> None:
        phone = record.values.get("phone")
        if phone:
            self._by_phone.setdefault(phone, set()).add(record.key)

    def find(self, customer_id: str | None, phone: str | None) -> Record | None:
        if customer_id and customer_id in self.records:
            return self.records[customer_id]
        if phone:
            same_phone = [
                self.records[key] for key in self._by_phone.get(phone, ())
                if self.records[key].values.get("phone") == phone
            ]
            if same_phone:  # the most recently updated file holding this phone
                return max(same_phone, key=lambda r: (r.updated_at, r.key))
        return None

    def resolve(self, customer_id: str | None, phone: str | None, stated: Mapping[str, Any], at: datetime,
                source: str) -> tuple[Record, bool, list[Change]]:
        record = self.find(customer_id, phone)
        created = record is None
        if record is None:
            assert customer_id or phone, "a customer is named by customer_id or phone"
            record = Record(key=customer_id or derived_customer_id(str(phone)), source=source, is_new=True)
            self.records[record.key] = record
        changes = record.merge(stated, at)
        if created or changes:
            record.touch(at)
        if any(c.field == "phone" for c in changes):
            self._index(record)
        return record, created, changes


def _rank(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)


def customer_fields(info: Any) -> dict[str, Any]:
    """The customer fields an upstream payload actually states (defaults are not facts)."""
    stated = info.model_fields_set if hasattr(info, "model_fields_set") else set(info)
    values = info.model_dump(mode="json") if hasattr(info, "model_dump") else dict(info)
    return {name: values.get(name) for name in CUSTOMER_FIELDS if name in stated and values.get(name) is not None}


def missing_fields(customer: Mapping[str, Any], vehicles: list[Mapping[str, Any]]) -> list[str]:
    missing = [f for f in REQUIRED_CUSTOMER_FIELDS if not customer.get(f)]
    if not vehicles:
        missing.append("vehicle")
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
