"""The staff directory (staff.yaml): roles and departments → people → addresses."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.types import Locale


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    email: str | None = None
    phone: str | None = None
    locale: Locale = "zh-CN"


class StaffDirectory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: dict[str, Person]
    roles: dict[str, list[str]] = Field(default_factory=dict)
    departments: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _everyone_listed_exists(self) -> StaffDirectory:
        for kind, groups in (("role", self.roles), ("department", self.departments)):
            for group, members in groups.items():
                unknown = [m for m in members if m not in self.people]
                if unknown:
                    raise ValueError(f"{kind} {group!r} lists {', '.join(unknown)}, who are not under people:")
        return self

    def people_for(self, recipient: str) -> list[tuple[str, Person]]:
        """`person:<id>`, `role:<role>` or `department:<name>` → the people it means (maybe none)."""
        kind, _, name = recipient.partition(":")
        ids = {"person": [name] if name in self.people else [], "role": self.roles.get(name, []),
               "department": self.departments.get(name, [])}.get(kind, [])
        return [(i, self.people[i]) for i in ids]


def load_directory(path: Path) -> StaffDirectory:
    return StaffDirectory.model_validate(yaml.safe_load(path.read_text()))
