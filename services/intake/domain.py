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
