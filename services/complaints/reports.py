"""What the complaints service reports, as pure functions: the weekly report's figures by
category and department, the KPI ratios, the complaint form filed at closing, and when the
next weekly report is due."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from statistics import fmean
from typing import Any
from zoneinfo import ZoneInfo

from services.complaints.domain import OPEN_STATES, Case
from services.complaints.sla import LEVELS
from services.complaints.tables import CATEGORIES
from shared.timeutil import iso_week, month_span, week_start

# ---------------------------------------------------------------------------------------
# When


def next_report_at(after: datetime, weekday: int, at: time, zone: str) -> datetime:
    """The first instant strictly after `after` that is `weekday` (0 = Monday) at `at`, local time."""
    tz = ZoneInfo(zone)
    day = after.astimezone(tz).date()
    for offset in range(8):
        candidate_day = day + timedelta(days=offset)
        if candidate_day.weekday() != weekday:
            continue
        candidate = datetime.combine(candidate_day, at, tzinfo=tz)
        if candidate > after:
            return candidate
    raise AssertionError("a weekday recurs within eight days")  # pragma: no cover


@dataclass(frozen=True)
class ReportWeek:
    week: str  # "YYYY-Www"
    week_start: date
    starts_at: datetime
    ends_at: datetime


def reported_week(due_at: datetime, zone: str) -> ReportWeek:
    """The last full ISO week (Monday–Sunday, local time) before the report's due instant."""
    tz = ZoneInfo(zone)
    monday = week_start(due_at.astimezone(tz)) - timedelta(days=7)
    starts_at = datetime.combine(monday, time(0), tzinfo=tz)
    ends_at = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz)
    return ReportWeek(iso_week(monday), monday, starts_at, ends_at)


# ---------------------------------------------------------------------------------------
# Weekly figures


@dataclass(frozen=True)
class CaseRow:
    complaint_id: str
    category: str
    department: str
    state: str
    filed_at: datetime


@dataclass(frozen=True)
class FactRow:
    complaint_id: str
    kind: str
    at: datetime
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class RoundRow:
    complaint_id: str
    round: int
    ack_due_at: datetime | None
    resolve_due_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    ack_breached: bool
    resolve_breached: bool
    ack_seconds: float | None
    resolve_seconds: float | None
    ack_working_seconds: float | None = None  # the same on the case's working calendar
    resolve_working_seconds: float | None = None


_COUNTS = ("filed", "acknowledged", "resolved", "closed", "closed_confirmed", "closed_unconfirmed", "reopened",
           "escalations", "ack_breaches", "resolve_breaches", "resolved_within_sla", "open_at_report")


def _within(moment: datetime | None, week: ReportWeek) -> bool:
    return moment is not None and week.starts_at <= moment < week.ends_at


def weekly_figures(
    week: ReportWeek, cases: Iterable[CaseRow], facts: Iterable[FactRow], rounds: Iterable[RoundRow],
) -> dict[str, Any]:
    """Totals, by category and by department: cases filed, acknowledged, resolved, closed
    (confirmed or not), reopened, escalations, SLA breaches, SLA compliance, mean hours to
    acknowledge and to resolve (elapsed active time, and working time on each case's calendar),
    and the cases still open when the report ran."""
    by_id = {c.complaint_id: c for c in cases}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTS, 0))
    hours: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
        lambda: {"ack": [], "resolve": [], "ack_working": [], "resolve_working": []})

    def add(case: CaseRow, name: str) -> None:
        for group in (("totals", "all"), ("by_category", case.category), ("by_department", case.department)):
            counts[group][name] += 1

    def add_hours(case: CaseRow, name: str, seconds: float) -> None:
        for group in (("totals", "all"), ("by_category", case.category), ("by_department", case.department)):
            hours[group][name].append(seconds / 3600)

    for case in by_id.values():
        if _within(case.filed_at, week):
            add(case, "filed")
        if case.state in OPEN_STATES:
            add(case, "open_at_report")
    for fact in facts:
        case = by_id.get(fact.complaint_id)
        if case is None or not _within(fact.at, week):
            continue
        if fact.kind in ("acknowledged", "resolved", "reopened"):
            add(case, fact.kind)
        elif fact.kind == "closed":
            add(case, "closed")
            add(case, "closed_confirmed" if fact.detail.get("satisfied") is True else "closed_unconfirmed")
        elif fact.kind == "escalated":
            add(case, "escalations")
    for r in rounds:
        case = by_id.get(r.complaint_id)
        if case is None:
            continue
        if r.ack_breached and _within(r.ack_due_at, week):
            add(case, "ack_breaches")
        if r.resolve_breached and _within(r.resolve_due_at, week):
            add(case, "resolve_breaches")
        if _within(r.resolved_at, week):
            if not r.resolve_breached:
                add(case, "resolved_within_sla")
            if r.resolve_seconds is not None:
                add_hours(case, "resolve", r.resolve_seconds)
            if r.resolve_working_seconds is not None:
                add_hours(case, "resolve_working", r.resolve_working_seconds)
        if _within(r.acknowledged_at, week):
            if r.ack_seconds is not None:
                add_hours(case, "ack", r.ack_seconds)
            if r.ack_working_seconds is not None:
                add_hours(case, "ack_working", r.ack_working_seconds)

    def summary(group: tuple[str, str]) -> dict[str, Any]:
        c, h = dict(counts[group]), hours[group]
        c["sla_compliance"] = round(c["resolved_within_sla"] / c["resolved"], 4) if c["resolved"] else None
        c["mean_hours_to_acknowledge"] = round(fmean(h["ack"]), 2) if h["ack"] else None
        c["mean_hours_to_resolve"] = round(fmean(h["resolve"]), 2) if h["resolve"] else None
        c["mean_working_hours_to_acknowledge"] = round(fmean(h["ack_working"]), 2) if h["ack_working"] else None
        c["mean_working_hours_to_resolve"] = round(fmean(h["resolve_working"]), 2) if h["resolve_working"] else None
        return c

    departments = sorted({c.department for c in by_id.values()})
    return {
        "timezone": str(week.starts_at.tzinfo),
        "from": week.starts_at.isoformat(),
        "to": week.ends_at.isoformat(),
        "totals": summary(("totals", "all")),
        "by_category": {category: summary(("by_category", category)) for category in CATEGORIES},
        "by_department": {department: summary(("by_department", department)) for department in departments},
    }


# ---------------------------------------------------------------------------------------
# KPIs


def kpi_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """The department's complaint KPIs from the counts the store aggregates."""
    open_by_level = {name: int(row.get(f"open_{name}") or 0) for name in LEVELS}

    def ratio(numerator: str, denominator: str) -> float | None:
        d = row.get(denominator) or 0
        return round((row.get(numerator) or 0) / d, 4) if d else None

    compliance = ratio("resolved_within_sla", "resolved_rounds")
    return {
        "open_by_level": open_by_level,
        "open": sum(open_by_level.values()),
        "sla_breaches": {"acknowledge": int(row.get("ack_breaches") or 0),
                         "resolve": int(row.get("resolve_breaches") or 0)},
        "sla_compliance": compliance,
        "sla_compliance_percent": round(compliance * 100, 2) if compliance is not None else None,
        # Elapsed active time (calendar time less pauses) …
        "mean_seconds_to_acknowledge": _maybe_round(row.get("mean_ack_seconds")),
        "mean_seconds_to_resolve": _maybe_round(row.get("mean_resolve_seconds")),
        # … and the same in working time on each case's calendar (business hours of working days).
        "mean_working_seconds_to_acknowledge": _maybe_round(row.get("mean_ack_working_seconds")),
        "mean_working_seconds_to_resolve": _maybe_round(row.get("mean_resolve_working_seconds")),
        "mean_working_hours_to_acknowledge": _hours(row.get("mean_ack_working_seconds")),
        "mean_working_hours_to_resolve": _hours(row.get("mean_resolve_working_seconds")),
        "reopen_rate": ratio("reopened_cases", "resolved_cases"),
        "escalations": int(row.get("escalations") or 0),
        "cases": int(row.get("cases") or 0),
    }


def _maybe_round(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


def _hours(seconds: Any) -> float | None:
    return round(float(seconds) / 3600, 2) if seconds is not None else None


# ---------------------------------------------------------------------------------------
# The complaint form, filed at closing


def complaint_form(case: Case, zone: str) -> str:
    """The case as one readable record (Markdown): what was complained about, how it was
    classified and routed, every step with who and when, the resolution, the confirmation,
    the escalations and the handling documents. Depends only on the case's history."""
    tz = ZoneInfo(zone)

    def when(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"

    filed_at = min(f.at for f in case.history if f.kind == "filed")
    lines = [
        f"# Complaint form {case.complaint_ref}",
        "",
        f"- Case: {case.complaint_id}",
        f"- Customer: {case.customer_id or '-'}" + (f" (vehicle {case.vin})" if case.vin else ""),
        f"- Channel: {case.channel}; filed {when(filed_at)} via {case.source}",
        f"- Category: {case.category} ({case.category_source}); severity: {case.severity} ({case.severity_source})"
        + (f"; part: {case.part_category}" if case.part_category else ""),
        f"- Responsible department: {case.department}; handler: {case.assignee or '-'}",
        f"- State: {case.state}; confirmation: {case.confirmation or '-'}"
        + ("" if case.satisfied is None else f"; satisfied: {'yes' if case.satisfied else 'no'}"),
        "",
        "## Complaint",
        "",
        case.description,
        "",
        "## Resolution",
        "",
        case.resolution or _last_resolution(case) or "-",
        "",
        "## Timeline",
        "",
    ]
    for fact in sorted(case.history, key=lambda f: (f.at, f.seq)):
        detail = "; ".join(f"{k}: {v}" for k, v in fact.detail.items() if v not in (None, "", [], {}))
        lines.append(f"- {when(fact.at)} — {fact.kind}" + (f" by {fact.actor}" if fact.actor else "")
                     + (f" — {detail}" if detail else ""))
    lines += ["", "## Escalations", ""]
    if case.escalations:
        for e in sorted(case.escalations.values(), key=lambda e: e.key):
            lines.append(f"- round {e.round}: level {e.level} {e.level_name} ({e.person or e.role}), "
                         f"{e.breach} deadline {when(e.deadline)}")
    else:
        lines.append("- none")
    lines += ["", "## Handling documents", ""]
    if case.documents:
        for d in sorted(case.documents, key=lambda d: (d.added_at, d.document_id)):
            lines.append(f"- {d.title} ({d.kind}, {d.size_bytes} bytes, sha256 {d.sha256[:12]}) "
                         f"added {when(d.added_at)} by {d.added_by or '-'}")
    else:
        lines.append("- none besides this form")
    return "\n".join(lines) + "\n"


def _last_resolution(case: Case) -> str | None:
    resolved = [f for f in case.history if f.kind == "resolved"]
    return resolved[-1].detail.get("resolution") if resolved else None


# ---------------------------------------------------------------------------------------
# SLA compliance per ISO week (the supervisors' trend)


@dataclass(frozen=True)
class DueRound:
    """A case's round with its two SLA steps' deadlines and what became of them."""

    complaint_id: str
    complaint_ref: str
    round: int
    department: str
    severity: str
    state: str
    dealer_id: str | None
    region: str | None
    ack_due_at: datetime | None
    resolve_due_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    ack_breached: bool
    resolve_breached: bool


@dataclass(frozen=True)
class StepOutcome:
    complaint_id: str
    complaint_ref: str
    round: int
    step: str  # acknowledge | resolve
    due_at: datetime
    done_at: datetime | None
    outcome: str  # met | breached
    department: str
    severity: str
    state: str
    dealer_id: str | None
    region: str | None

    def view(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def step_outcomes(rounds: Iterable[DueRound]) -> list[StepOutcome]:
    """Each SLA step (acknowledge, resolve) of each round that is decided: met when it was done
    by its deadline (acknowledging is done by an acknowledgement or a resolution), breached when
    the SLA calculator recorded the breach. A step still ahead, paused (no deadline), or whose
    round stopped before its deadline (closed unresolved, reopened) is neither and is not counted."""
    out = []
    for r in rounds:
        ack_done = min((t for t in (r.acknowledged_at, r.resolved_at) if t is not None), default=None)
        for step, due, done, breached in (("acknowledge", r.ack_due_at, ack_done, r.ack_breached),
                                          ("resolve", r.resolve_due_at, r.resolved_at, r.resolve_breached)):
            if due is None:
                continue
            if breached:
                outcome = "breached"
            elif done is not None and done <= due:
                outcome = "met"
            else:
                continue
            out.append(StepOutcome(r.complaint_id, r.complaint_ref, r.round, step, due, done, outcome,
                                   r.department, r.severity, r.state, r.dealer_id, r.region))
    return out


def week_of(moment: datetime, zone: str) -> str:
    return iso_week(moment.astimezone(ZoneInfo(zone)))


def _rate(met: int, breached: int) -> float | None:
    return round(met / (met + breached), 4) if met + breached else None


def compliance_summary(steps: Iterable[StepOutcome]) -> dict[str, Any]:
    """Met, breached and compliance = met / (met + breached) of the steps (None without any),
    split by step and by region (cases without a known region under "")."""
    tally: dict[str, int] = defaultdict(int)
    regions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in steps:
        tally[s.outcome] += 1
        tally[f"{s.step}_{s.outcome}"] += 1
        regions[s.region or ""][s.outcome] += 1
    return {
        "due": tally["met"] + tally["breached"], "met": tally["met"], "breached": tally["breached"],
        "compliance": _rate(tally["met"], tally["breached"]),
        "by_step": {step: {"met": tally[f"{step}_met"], "breached": tally[f"{step}_breached"],
                           "compliance": _rate(tally[f"{step}_met"], tally[f"{step}_breached"])}
                    for step in ("acknowledge", "resolve")},
        "by_region": {region: {"met": c["met"], "breached": c["breached"], "compliance": _rate(c["met"], c["breached"])}
                      for region, c in sorted(regions.items())},
    }


def sla_compliance_by_week(weeks: Iterable[ReportWeek], rounds: Iterable[DueRound], zone: str) -> list[dict[str, Any]]:
    """SLA compliance per ISO week: of the SLA steps that fell due in the week (their deadline
    inside Monday 00:00 to the next Monday 00:00, `zone`), met / (met + breached); None when no
    step fell due (no figure, not 100 %). A case whose acknowledgement fell due in one week and
    its resolution in the next counts in each week for that step."""
    wanted = list(weeks)
    steps: dict[str, list[StepOutcome]] = {w.week: [] for w in wanted}
    for s in step_outcomes(rounds):
        steps.get(week_of(s.due_at, zone), []).append(s)
    return [{"week": w.week, "from": w.starts_at.isoformat(), "to": w.ends_at.isoformat(),
             **compliance_summary(steps[w.week])} for w in wanted]


def sla_compliance_between(starts_at: datetime, ends_at: datetime, rounds: Iterable[DueRound]) -> dict[str, Any]:
    """The same for any span (a month): the steps due in [starts_at, ends_at)."""
    return {"from": starts_at.isoformat(), "to": ends_at.isoformat(),
            **compliance_summary(s for s in step_outcomes(rounds) if starts_at <= s.due_at < ends_at)}


report_month = month_span  # "2026-11" -> its span in the report's time zone


def report_week(week: str, zone: str) -> ReportWeek:
    """An ISO week written like 2026-W47 as its Monday-to-Monday span in `zone`; ValueError
    saying how to write it otherwise."""
    try:
        year, number = week.split("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
    except (ValueError, TypeError):
        raise ValueError(f"week {week!r} is not an ISO week; write it like 2026-W47") from None
    tz = ZoneInfo(zone)
    starts_at = datetime.combine(monday, time(0), tzinfo=tz)
    return ReportWeek(iso_week(monday), monday, starts_at, starts_at + timedelta(days=7))
