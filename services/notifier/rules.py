"""The rule table (rules.yaml): event type + condition → channel, template, recipient, delay.

A recipient is `customer` (the event's customer_id), or `person:`, `role:` or `department:`
followed by a name, which may name a field of the event in braces (`person:{person}`).
`fallback_recipient` is used when the first names nobody in the staff directory;
`fallback_channel` when the customer has no address or consent for the first channel
("a letter or an e-mail").
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

ChannelName = Literal["sms", "email", "letter"]
_DELAY = re.compile(r"^(\d+)([dhm])$")
_RECIPIENT = re.compile(r"^(customer|(person|role|department):([a-z0-9_\-]+|\{[a-z_]+\}))$")
_FIELD = re.compile(r"\{([a-z_]+)\}")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    event: str
    topic: str | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    channel: ChannelName
    recipient: str
    template: str = Field(pattern=r"^[a-z0-9_]+$")
    delay: str | None = None
    fallback_channel: ChannelName | None = None
    fallback_recipient: str | None = None

    @field_validator("recipient", "fallback_recipient")
    @classmethod
    def _recipient_kind(cls, value: str | None) -> str | None:
        if value is not None and not _RECIPIENT.match(value):
            raise ValueError(
                f"recipient {value!r} must be 'customer', or 'person:', 'role:' or 'department:' followed by a name "
                "or an event field in braces, e.g. 'person:{person}'"
            )
        return value

    @field_validator("delay")
    @classmethod
    def _delay_format(cls, value: str | None) -> str | None:
        if value is not None and not _DELAY.match(value):
            raise ValueError(f"delay {value!r} must look like '2d', '4h' or '30m'")
        return value

    @property
    def delay_td(self) -> timedelta:
        if not self.delay:
            return timedelta(0)
        match = _DELAY.match(self.delay)
        assert match
        amount, unit = int(match.group(1)), match.group(2)
        return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]

    @property
    def recipient_kind(self) -> str:
        return self.recipient.split(":", 1)[0]

    def matches(self, event_type: str, topic: str, data: dict[str, Any]) -> bool:
        if event_type != self.event or (self.topic and self.topic != topic):
            return False
        for name, expected in self.when.items():
            actual = _lookup(data, name)
            if isinstance(expected, list):
                if actual not in expected:
                    return False
            elif actual != expected:
                return False
        return True


def fill(recipient: str, data: dict[str, Any]) -> str | None:
    """`person:{person}` with the event's person field; None when the field is empty."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = data.get(match.group(1))
        if not found:
            missing = True
            return ""
        return str(found)

    filled = _FIELD.sub(value, recipient)
    return None if missing else filled


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class RuleTable(BaseModel):
    rules: list[Rule]

    def matching(self, event_type: str, topic: str, data: dict[str, Any]) -> list[Rule]:
        return [rule for rule in self.rules if rule.matches(event_type, topic, data)]

    @property
    def event_types(self) -> set[str]:
        return {rule.event for rule in self.rules}


def load_rules(path: Path) -> RuleTable:
    table = RuleTable.model_validate(yaml.safe_load(path.read_text()))
    ids = [r.id for r in table.rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"{path}: rule ids must be unique; repeated: {', '.join(sorted(duplicates))}")
    return table
