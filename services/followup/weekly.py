"""The weekly return-visit report people read (issue 16, "weekly feedback of return-visit results
to the relevant departments"): the headline rates of the week, the same rates of the 4 weeks
before it (the trend), and the customers' own words (the week's feedback items: their requests and
complaints) with what was done about each, split by the department the item is routed to.

The figures sit in FollowUpWeeklyReport's `figures` under `headline`, `trend` and `voices`
(customer service, who runs the calls, reads them all); each other department gets
FollowUpDepartmentReport with the headline, the trend and only its own items.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

TREND_WEEKS = 4
# The most items an e-mail lists per department; the count says how many there were.
VOICES_LISTED = 50
# The department that runs the return visits: it reads the whole report, the others their part.
REPORT_OWNER = "customer_service"


def rates(due: int, reached: int, scored: int, satisfied: int, score_sum: int) -> dict[str, Any]:
    """A week's headline: calls due, reached, reach rate, satisfaction (the satisfied share of
    the scored calls), the average score and how many customers were dissatisfied."""
    return {
        "calls_due": due, "reached": reached, "reach_rate": reached / due if due else None,
        "scored": scored, "satisfied": satisfied, "satisfaction_rate": satisfied / scored if scored else None,
        "average_score": round(score_sum / scored, 2) if scored else None, "dissatisfied": scored - satisfied,
    }


def trend(current: dict[str, Any], previous: list[dict[str, Any]]) -> dict[str, Any]:
    """The week against the `previous` weeks (oldest first): each rate's change from the week
    before and from the previous weeks' mean (None when there is nothing to compare with)."""
    out: dict[str, Any] = {}
    for name in ("calls_due", "reached", "reach_rate", "satisfaction_rate", "average_score", "dissatisfied"):
        before = [w[name] for w in previous if w.get(name) is not None]
        now = current.get(name)
        last = previous[-1].get(name) if previous else None
        out[name] = {
            "change_from_last_week": now - last if now is not None and last is not None else None,
            "change_from_average": now - sum(before) / len(before) if now is not None and before else None,
        }
    return out


def split_by_department(items: list[dict[str, Any]], departments: list[str]) -> dict[str, dict[str, Any]]:
    """The week's items by department: every department named (an empty part says "nothing this
    week"), counts by what was done, and the items themselves (at most VOICES_LISTED)."""
    out: dict[str, dict[str, Any]] = {}
    for department in sorted({*departments, *(i["department"] for i in items if i.get("department"))}):
        mine = [i for i in items if i.get("department") == department]
        out[department] = {
            "total": len(mine),
            "answered": sum(1 for i in mine if i["done"] in ("answered", "answered_on_call", "confirmed")),
            "open": sum(1 for i in mine if i["done"] in ("open", "escalated")),
            "complaints": sum(1 for i in mine if i["done"] == "complaint"),
            "items": mine[:VOICES_LISTED],
        }
    return out


def done(row: dict[str, Any]) -> str:
    """What was done about an item, in one word the e-mail and the page label: answered on the
    call, answered (told the customer), confirmed (the customer confirmed on the call back),
    a complaint case, escalated (not answered in 2 days) or open."""
    if row["serious"] or row["closed_as"] == "complaint":
        return "complaint"
    if row["closed_as"] in ("answered_on_call", "confirmed"):
        return str(row["closed_as"])
    if row["answered_at"] is not None or row["state"] in ("answered", "closed"):
        return "answered"
    return "escalated" if row["state"] == "escalated" else "open"


async def headline(conn: asyncpg.Connection, since: datetime, until: datetime, satisfied_score: int) -> dict[str, Any]:
    """The rates of [since, until): return visits due in it and those reached (by `until`); the
    calls scored in it, satisfied ones at or above `satisfied_score`."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE due_by >= $1 AND due_by < $2) AS due,
                  count(*) FILTER (WHERE due_by >= $1 AND due_by < $2 AND outcome = 'reached'
                                     AND completed_at < $2) AS reached,
                  count(*) FILTER (WHERE satisfaction IS NOT NULL AND completed_at >= $1 AND completed_at < $2) AS scored,
                  count(*) FILTER (WHERE satisfaction >= $3 AND completed_at >= $1 AND completed_at < $2) AS satisfied,
                  coalesce(sum(satisfaction) FILTER (WHERE completed_at >= $1 AND completed_at < $2), 0) AS score_sum
             FROM followups WHERE (due_by >= $1 AND due_by < $2) OR (completed_at >= $1 AND completed_at < $2)""",
        since, until, satisfied_score)
    return rates(int(row["due"]), int(row["reached"]), int(row["scored"]), int(row["satisfied"]), int(row["score_sum"]))


async def voices(conn: asyncpg.Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The feedback items opened in [since, until): the customer's words and what was done, as of now."""
    rows = await conn.fetch(
        """SELECT item_id, customer_id, dealer_id, region, department, category, reasons, satisfaction, requests,
                  serious, complaint_ref, state, closed_as, answered_at, answered_in_time, solution, opened_at
             FROM feedback_items WHERE opened_at >= $1 AND opened_at < $2 ORDER BY department, opened_at, item_id""",
        since, until)
    return [{
        "item_id": r["item_id"], "customer_id": r["customer_id"], "dealer_id": r["dealer_id"], "region": r["region"],
        "department": r["department"], "category": r["category"], "satisfaction": r["satisfaction"],
        "requests": r["requests"], "low_score": "low_score" in (r["reasons"] or []), "done": done(dict(r)),
        "answer": r["solution"], "answered_in_time": r["answered_in_time"], "complaint_ref": r["complaint_ref"],
        "opened_at": r["opened_at"].isoformat(),
    } for r in rows]


async def report(conn: asyncpg.Connection, since: datetime, until: datetime, satisfied_score: int,
                 departments: list[str]) -> dict[str, Any]:
    """headline, trend (with the previous weeks' headlines, oldest first) and voices by department."""
    week = timedelta(days=7)
    current = await headline(conn, since, until, satisfied_score)
    previous = [await headline(conn, since - week * n, until - week * n, satisfied_score)
                for n in range(TREND_WEEKS, 0, -1)]
    for n, figures in zip(range(TREND_WEEKS, 0, -1), previous, strict=True):
        figures["from"] = (since - week * n).isoformat()
    return {"headline": current, "trend": trend(current, previous) | {"previous_weeks": previous},
            "voices": split_by_department(await voices(conn, since, until), departments)}


def department_part(figures: dict[str, Any], department: str) -> dict[str, Any]:
    """What one department is sent: the headline, the trend and its own items only."""
    return {"headline": figures["headline"], "trend": figures["trend"], "period": figures.get("period"),
            "voices": {department: figures["voices"][department]}}


__all__ = ["REPORT_OWNER", "TREND_WEEKS", "department_part", "done", "headline", "rates", "report",
           "split_by_department", "trend", "voices"]
