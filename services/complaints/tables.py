"""The tables people edit, loaded from YAML at start: keyword classification, routing to the
responsible department, and the directory of who holds each role of the ladder.

Loading validates everything (unknown categories, severities or roles are refused with the
file and the entry named); matching is pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import cast, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events.types import ComplaintCategory, Severity

CATEGORIES: tuple[str, ...] = get_args(ComplaintCategory)
SEVERITIES: tuple[str, ...] = get_args(Severity)
LADDER_ROLES: tuple[str, ...] = ("supervisor", "department_head", "superior_leader")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Keywords(_Strict):
    zh_cn: list[str] = Field(default_factory=list, alias="zh-CN")
    en: list[str] = Field(default_factory=list)


class _KeywordRule(_Strict):
    keywords: Keywords

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Chinese keywords match anywhere; English ones match whole words."""
        parts = [re.escape(k) for k in self.keywords.zh_cn if k.strip()]
        parts += [rf"\b{re.escape(k)}\b" for k in self.keywords.en if k.strip()]
        return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)

    def matches(self, text: str) -> bool:
        return self.pattern.search(text) is not None


class CategoryRule(_KeywordRule):
    category: ComplaintCategory


class SeverityRule(_KeywordRule):
    severity: Severity


class PartRule(_KeywordRule):
    category: str = Field(min_length=1, max_length=200)


class FailureModeRule(_KeywordRule):
    mode: str = Field(min_length=1, max_length=200)


class ClassificationTable(_Strict):
    categories: list[CategoryRule]
    fallback: ComplaintCategory = "other"
    severities: list[SeverityRule] = Field(default_factory=list)
    default_by_category: dict[ComplaintCategory, Severity] = Field(default_factory=dict)
    severity_fallback: Severity = "medium"
    parts: list[PartRule] = Field(default_factory=list)
    failure_modes: list[FailureModeRule] = Field(default_factory=list)
    failure_mode_fallback: str = "reported_by_customer"


class RoutingOverride(_Strict):
    category: ComplaintCategory
    severity: Severity | None = None
    department: str = Field(min_length=1, max_length=200)


class RoutingTable(_Strict):
    departments: dict[ComplaintCategory, str]
    overrides: list[RoutingOverride] = Field(default_factory=list)
    fallback: str = Field(min_length=1, max_length=200)


class RoleHolders(_Strict):
    handler: str | None = None  # who a new case of the department is told to (ComplaintOpened)
    supervisor: str | None = None
    department_head: str | None = None
    superior_leader: str | None = None


class DirectoryTable(_Strict):
    default: RoleHolders
    departments: dict[str, RoleHolders] = Field(default_factory=dict)


@dataclass(frozen=True)
class Classification:
    category: str
    severity: str
    department: str
    part_category: str | None
    failure_mode: str
    # Which of the above came from the filer and which from the rules (kept on the case).
    category_source: str
    severity_source: str


@dataclass(frozen=True)
class Tables:
    classification: ClassificationTable
    routing: RoutingTable
    directory: DirectoryTable

    def classify(
        self, description: str, *, category: str | None = None, severity: str | None = None,
        part_category: str | None = None,
    ) -> Classification:
        """The category given, else the first keyword rule, else the fallback; likewise the
        severity (then the category's default); the department from the routing table."""
        table = self.classification
        category_source = "given" if category else "keywords"
        if category is None:
            category = next((r.category for r in table.categories if r.matches(description)), None)
            if category is None:
                category, category_source = table.fallback, "fallback"
        severity_source = "given" if severity else "keywords"
        if severity is None:
            severity = next((r.severity for r in table.severities if r.matches(description)), None)
            if severity is None:
                severity = table.default_by_category.get(category)  # type: ignore[call-overload]
                severity_source = "category_default"
            if severity is None:
                severity, severity_source = table.severity_fallback, "fallback"
        if part_category is None:
            part_category = next((r.category for r in table.parts if r.matches(description)), None)
        failure_mode = next((r.mode for r in table.failure_modes if r.matches(description)), table.failure_mode_fallback)
        return Classification(
            category=category, severity=severity, department=self.department_for(category, severity),
            part_category=part_category, failure_mode=failure_mode,
            category_source=category_source, severity_source=severity_source,
        )

    def department_for(self, category: str, severity: str) -> str:
        for rule in self.routing.overrides:
            if rule.category == category and rule.severity in (None, severity):
                return rule.department
        return self.routing.departments.get(cast(ComplaintCategory, category), self.routing.fallback)

    def person_for(self, department: str, role: str) -> str | None:
        """Who holds `role` in `department`; the default holder when the department has none."""
        holders = self.directory.departments.get(department)
        person = getattr(holders, role, None) if holders else None
        return person or getattr(self.directory.default, role, None)


def _load(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; point the setting at the table file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ValueError(f"{path}: {problems}") from None


def load_tables(classification: Path, routing: Path, directory: Path) -> Tables:
    routing_table = _load(routing, RoutingTable)
    assert isinstance(routing_table, RoutingTable)
    missing = [c for c in CATEGORIES if c not in routing_table.departments]
    if missing:
        raise ValueError(f"{routing}: departments must name one for every category; missing: {', '.join(missing)}")
    classification_table = _load(classification, ClassificationTable)
    directory_table = _load(directory, DirectoryTable)
    assert isinstance(classification_table, ClassificationTable) and isinstance(directory_table, DirectoryTable)
    unheld = [role for role in LADDER_ROLES if not getattr(directory_table.default, role)]
    if unheld:
        raise ValueError(f"{directory}: default must name a holder for every ladder role; missing: {', '.join(unheld)}")
    return Tables(classification_table, routing_table, directory_table)
