"""Builders the complaints tests share: the events other services publish (a ComplaintFiled
from intake or from a return-visit call, the follow-up's confirmation call result) and a
complaints stack with its documents under a temporary directory."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from services.complaints.config import ComplaintRules
from shared.clock import Clock
from tests.support import Namespace, Read, Stack
from tools.simulate import envelope


def complaint_filed(
    ref: str, filed_at: datetime, *, customer_id: str = "CUST-0000001", description: str = "电机异响，开车时抖动",
    source: str = "followup", followup_id: str | None = "FU-1", category: str | None = None,
    severity: str | None = None, part_category: str | None = None, vin: str | None = None,
    channel: str = "return_visit", occurred_at: datetime | None = None, event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A canonical ComplaintFiled as intake (source intake) or follow-up (source followup) publish it."""
    data: dict[str, Any] = {
        "complaint_ref": ref, "customer_id": customer_id, "channel": channel, "description": description,
        "filed_at": filed_at.isoformat(),
    }
    for name, value in (("followup_id", followup_id), ("category", category), ("severity", severity),
                        ("part_category", part_category), ("vin", vin)):
        if value is not None:
            data[name] = value
    return envelope("ComplaintFiled", customer_id, data, occurred_at or filed_at, source, event_id=event_id)


def confirmation_completed(
    complaint_id: str, completed_at: datetime, *, outcome: str = "reached", satisfied: bool | None = True,
    satisfaction: int | None = None, customer_id: str = "CUST-0000001", followup_id: str = "FU-CONF-1",
    caused_by: Read | None = None,
) -> dict[str, Any]:
    """FollowUpCompleted(kind=complaint_confirmation) as the follow-up service publishes it when
    the confirmation call it scheduled on ComplaintResolved ends: caused by (and correlated
    with) that ComplaintResolved."""
    data: dict[str, Any] = {
        "followup_id": followup_id, "kind": "complaint_confirmation", "customer_id": customer_id,
        "outcome": outcome, "completed_at": completed_at.isoformat(), "attempts": 1, "complaint_id": complaint_id,
        "agent_id": "agent-07",
    }
    if satisfied is not None:
        data["satisfied"] = satisfied
    if satisfaction is not None:
        data["satisfaction"] = satisfaction
    env = envelope("FollowUpCompleted", customer_id, data, completed_at, "followup")
    if caused_by is not None and caused_by.envelope is not None:
        env["causation_id"] = str(caused_by.envelope.event_id)
        env["correlation_id"] = str(caused_by.envelope.correlation_id)
    return env


# The tests that measure the ladder as offsets from the test moment (marked `dates`, run on
# holidays and late evenings too) run every severity on the work plan's numbers around the
# clock (acknowledge 4 h, resolve 2 d, a day per level); the severity table and the working
# calendar's clock are tested on fixed dates (test_complaints_sla_calendar.py,
# test_complaint_sla_on_the_working_calendar.py).
AROUND_THE_CLOCK = {
    severity: {"clock": "continuous", "acknowledge_within": "PT4H", "resolve_within": "P2D",
               "supervisor_within": "P1D", "department_head_within": "P1D"}
    for severity in ("low", "medium", "high", "critical")
}


def complaints_state(documents: Path, **rules: Any) -> dict[str, dict[str, Any]]:
    rules.setdefault("sla", AROUND_THE_CLOCK)
    return {"complaints": {"rules": ComplaintRules(documents_dir=documents, **rules)}}


async def complaints_stack(ns: Namespace, clock: Clock, documents: Path, **rules: Any) -> Stack:
    return await Stack(ns, clock, services=("complaints",), state=complaints_state(documents, **rules)).start()
