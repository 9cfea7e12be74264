"""From alert to recall, as plain rules (no I/O): which batch a confirmed alert recalls, the
campaign's identity and dates, what a workshop visit tells of a recalled vehicle (inspected,
part replaced), where a defect report stands against its vehicle's inspection, and the
campaign's progress per dealer.

How a visit is read (the DMS repair order, VehiclePickedUp): an item whose `code` is the
campaign id, or starts with it and a colon (`RC-…:inspect`), marks the vehicle inspected; such
an item naming the campaign's part category (`part_category`) marks the part replaced. A visit
of service type `recall` without the code counts as the inspection of the one recall of that
vehicle still short of it (and as a replacement when an item names the category).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.quality.domain import Cell


class NotRecallable(Exception):
    """The alert cannot be confirmed as asked (the message says why and what to send)."""


@dataclass(frozen=True)
class Target:
    """The part units a recall targets: a category's batch, from one supplier when the alert
    was on a supplier's parts (a supplier-model cell)."""

    category: str
    batch: str
    supplier_id: str | None = None

    @property
    def label(self) -> str:
        supplier = f" from {self.supplier_id}" if self.supplier_id else ""
        return f"{self.category} batch {self.batch}{supplier}"


def recall_target(cell: Cell, batch: str | None) -> Target:
    """A batch alert recalls its batch (a batch named in the request must be that one); a
    supplier-model alert names no batch, so the engineer names the batch found at fault."""
    if cell.kind == "batch":
        assert cell.batch is not None
        if batch is not None and batch != cell.batch:
            raise NotRecallable(f"the alert is on {cell.label}; batch {batch!r} is not the alert's batch "
                                "(leave it out, or confirm the alert of that batch)")
        return Target(cell.category, cell.batch)
    if not batch:
        raise NotRecallable(f"the alert is on {cell.label}, which names no batch: send `batch`, the batch found at "
                            "fault, so the vehicles carrying it can be found")
    return Target(cell.category, batch, cell.supplier_id)


def campaign_id_for(alert_id: str) -> str:
    """One recall per alert, so a repeated confirmation can never announce a second one."""
    return f"RC-{alert_id}"


def campaign_dates(now: datetime, starts_at: datetime | None, ends_at: datetime | None, lead_days: int,
                   length_days: int) -> tuple[datetime, datetime]:
    """The campaign starts `lead_days` after the confirmation unless the engineer says when (the
    calls are due 14 days before it starts, so by default at once) and lasts `length_days`."""
    start = starts_at or now + timedelta(days=lead_days)
    end = ends_at or start + timedelta(days=length_days)
    if start < now:
        raise NotRecallable(f"starts_at {start.isoformat()} is in the past; a recall starts now or later")
    if end <= start:
        raise NotRecallable(f"ends_at {end.isoformat()} must be after starts_at {start.isoformat()}")
    return start, end


# A recall's VINs go out in announcements of at most this many (one campaign id), so no record
# outgrows the broker's message size however large the batch (5,000 VINs: about 100 kB).
VINS_PER_ANNOUNCEMENT = 5000


def in_parts(vins: Sequence[str], size: int = VINS_PER_ANNOUNCEMENT) -> list[list[str]]:
    return [list(vins[i:i + size]) for i in range(0, len(vins), size)]


def default_title(target: Target) -> str:
    return f"Recall: {target.label}"


@dataclass(frozen=True)
class VisitItem:
    code: str
    part_category: str | None = None


@dataclass(frozen=True)
class OpenRecall:
    """A recalled vehicle's place in one campaign, as a visit finds it."""

    campaign_id: str
    category: str
    inspected: bool
    replaced: bool


@dataclass(frozen=True)
class VisitFinding:
    campaign_id: str
    inspected: bool
    replaced: bool


def _names(code: str, campaign_id: str) -> bool:
    return code == campaign_id or code.startswith(campaign_id + ":")


def read_visit(service_type: str, items: Sequence[VisitItem], recalls: Sequence[OpenRecall]) -> list[VisitFinding]:
    """What one workshop visit of a recalled vehicle did for each of its recalls (see the module
    docstring); recalls it did nothing for are left out."""
    found: dict[str, VisitFinding] = {}
    for recall in recalls:
        named = [i for i in items if _names(i.code, recall.campaign_id)]
        if named:
            found[recall.campaign_id] = VisitFinding(
                recall.campaign_id, True, any(i.part_category == recall.category for i in named))
    if service_type == "recall" and not found:
        pending = [r for r in recalls if not r.inspected]
        if len(pending) == 1:
            r = pending[0]
            found[r.campaign_id] = VisitFinding(r.campaign_id, True, any(i.part_category == r.category for i in items))
    return list(found.values())


def after_inspection(report_category: str, reported_at: datetime,
                     inspections: Iterable[tuple[str, datetime]]) -> bool:
    """A defect report from a vehicle already inspected in a recall of that part category: the
    recall's remedy did not hold, or the fault is another one; it is kept apart from the
    reports of vehicles not yet inspected."""
    return any(category == report_category and at <= reported_at for category, at in inspections)


PROGRESS = ("reached", "booked", "inspected", "replaced")


def progress_by_dealer(vehicles: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per dealer (the selling dealer; `null` when unknown) and overall: vehicles targeted, and how
    many owners were reached, booked a visit, had the vehicle inspected, had the part replaced,
    with the share of the vehicles for each."""
    dealers: dict[str | None, dict[str, int]] = {}
    for v in vehicles:
        counts = dealers.setdefault(v.get("dealer_id"), {"vehicles": 0, **{k: 0 for k in PROGRESS}})
        counts["vehicles"] += 1
        for step in PROGRESS:
            if v.get(f"{step}_at") is not None:
                counts[step] += 1
    total = {"vehicles": sum(d["vehicles"] for d in dealers.values()),
             **{k: sum(d[k] for d in dealers.values()) for k in PROGRESS}}

    def with_rates(counts: dict[str, int]) -> dict[str, Any]:
        n = counts["vehicles"]
        return {**counts, "rates": {k: round(counts[k] / n, 4) if n else None for k in PROGRESS}}

    return {
        "total": with_rates(total),
        "by_dealer": [{"dealer_id": dealer, **with_rates(counts)}
                      for dealer, counts in sorted(dealers.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))],
    }
