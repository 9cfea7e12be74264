"""The complaints service's SQL. Nothing else touches the `complaints` schema.

Batch-shaped: a batch's cases are loaded with a few queries (locked in id order, so two
transactions never lock the same cases in opposite orders) and written back with one statement
per table (`shared.bulk.Table`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.complaints.config import SlaPolicy
from services.complaints.domain import OPEN_STATES, Case, Document, Escalation, Fact, erase_detail
from services.complaints.reports import CaseRow, DueRound, FactRow, RoundRow
from services.complaints.sla import LEVELS, working_seconds
from shared.api import Sort, SortKey, keyset
from shared.bulk import Table
from shared.http import SCOPE_SQL
from shared.workcal import WorkingCalendar

CASES = Table("cases", {
    "complaint_id": "text", "complaint_ref": "text", "customer_id": "text", "phone": "text", "vin": "text",
    "channel": "text", "category": "text", "category_source": "text", "severity": "text", "severity_source": "text",
    "department": "text", "description": "text", "part_category": "text", "followup_id": "text", "source": "text",
    "state": "text", "round": "int", "assignee": "text", "resolution": "text", "satisfied": "boolean",
    "confirmation": "text", "filed_at": "timestamptz", "level": "int", "ack_due_at": "timestamptz",
    "resolve_due_at": "timestamptz", "next_due_at": "timestamptz", "breached": "boolean", "timer_ref": "text",
    "correlation_id": "uuid", "last_event_id": "uuid", "created_at": "timestamptz", "updated_at": "timestamptz",
    "dealer_id": "text", "region": "text",
})
# What changes on an existing case (the rest is fixed at opening).
_MUTABLE = ("customer_id", "phone", "vin", "followup_id", "state", "round", "assignee", "resolution", "satisfied",
            "confirmation", "filed_at", "level", "ack_due_at", "resolve_due_at", "next_due_at", "breached",
            "timer_ref", "correlation_id", "last_event_id", "updated_at", "dealer_id", "region")
HISTORY = Table("case_history", {
    "complaint_id": "text", "seq": "int", "kind": "text", "at": "timestamptz", "recorded_at": "timestamptz",
    "actor": "text", "detail": "jsonb",
})
ESCALATIONS = Table("escalations", {
    "complaint_id": "text", "round": "int", "level": "int", "level_name": "text", "role": "text", "person": "text",
    "breach": "text", "deadline": "timestamptz", "announced_at": "timestamptz",
})
DOCUMENTS = Table("documents", {
    "document_id": "text", "complaint_id": "text", "kind": "text", "title": "text", "filename": "text",
    "content_type": "text", "size_bytes": "int", "sha256": "text", "path": "text", "added_by": "text",
    "added_at": "timestamptz", "filed_at": "timestamptz",
})
ROUNDS = Table("case_rounds", {
    "complaint_id": "text", "round": "int", "started_at": "timestamptz", "ack_due_at": "timestamptz",
    "resolve_due_at": "timestamptz", "acknowledged_at": "timestamptz", "resolved_at": "timestamptz",
    "ack_breached": "boolean", "resolve_breached": "boolean", "ack_seconds": "float8", "resolve_seconds": "float8",
    "level": "int", "ack_working_seconds": "float8", "resolve_working_seconds": "float8",
})


def _case_values(case: Case, now: datetime) -> dict[str, Any]:
    figures = case.figures
    assert figures is not None, "refresh the case's figures before saving it"
    current = figures.current
    return {
        "complaint_id": case.complaint_id, "complaint_ref": case.complaint_ref, "customer_id": case.customer_id,
        "phone": case.phone, "vin": case.vin, "channel": case.channel, "category": case.category,
        "category_source": case.category_source, "severity": case.severity, "severity_source": case.severity_source,
        "department": case.department, "description": case.description, "part_category": case.part_category,
        "followup_id": case.followup_id, "source": case.source, "state": case.state, "round": case.round,
        "assignee": case.assignee, "resolution": case.resolution, "satisfied": case.satisfied,
        "confirmation": case.confirmation, "filed_at": figures.rounds[0].started_at, "level": figures.level,
        "ack_due_at": current.ack_due_at, "resolve_due_at": current.resolve_due_at, "next_due_at": case.next_wakeup(),
        "breached": bool(figures.breaches()), "timer_ref": case.timer_ref, "correlation_id": case.correlation_id,
        "last_event_id": case.last_event_id, "created_at": case.created_at, "updated_at": now,
        "dealer_id": case.dealer_id, "region": case.region,
    }


async def insert_cases(conn: asyncpg.Connection, cases: Sequence[Case], now: datetime) -> set[str]:
    """Insert new cases; return the ids inserted. An id another transaction inserted first
    (the same complaint_ref filed through two channels at once) is not returned."""
    inserted = await CASES.insert(conn, [_case_values(c, now) for c in cases],
                                  on_conflict="(complaint_id) DO NOTHING", returning="complaint_id")
    return {r[0] for r in inserted}


async def load_cases(
    conn: asyncpg.Connection, ids: Iterable[str], policy: Callable[[str], SlaPolicy], *, lock: bool,
) -> dict[str, Case]:
    """The cases with their history, escalations and documents; locked for update if asked."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await conn.fetch(
        f"""SELECT * FROM cases WHERE complaint_id = ANY($1::text[]) ORDER BY complaint_id
            {"FOR UPDATE" if lock else ""}""",
        wanted,
    )
    if not rows:
        return {}
    found = [r["complaint_id"] for r in rows]
    cases: dict[str, Case] = {}
    for r in rows:
        cases[r["complaint_id"]] = Case(
            complaint_id=r["complaint_id"], complaint_ref=r["complaint_ref"], customer_id=r["customer_id"],
            phone=r["phone"], vin=r["vin"], channel=r["channel"], category=r["category"], severity=r["severity"],
            department=r["department"], description=r["description"], part_category=r["part_category"],
            followup_id=r["followup_id"], source=r["source"], category_source=r["category_source"],
            severity_source=r["severity_source"], state=r["state"], policy=policy(r["severity"]),
            created_at=r["created_at"], correlation_id=r["correlation_id"], last_event_id=r["last_event_id"],
            assignee=r["assignee"], resolution=r["resolution"], satisfied=r["satisfied"],
            confirmation=r["confirmation"], timer_ref=r["timer_ref"], dealer_id=r["dealer_id"], region=r["region"],
        )
    for h in await conn.fetch(
        """SELECT complaint_id, seq, kind, at, recorded_at, actor, detail FROM case_history
            WHERE complaint_id = ANY($1::text[]) ORDER BY complaint_id, seq""",
        found,
    ):
        cases[h["complaint_id"]].history.append(
            Fact(h["seq"], h["kind"], h["at"], h["recorded_at"], h["actor"], dict(h["detail"] or {}))
        )
    for e in await conn.fetch("SELECT * FROM escalations WHERE complaint_id = ANY($1::text[])", found):
        escalation = Escalation(e["round"], e["level"], e["level_name"], e["role"], e["person"], e["breach"],
                                e["deadline"], e["announced_at"])
        cases[e["complaint_id"]].escalations[escalation.key] = escalation
    for d in await conn.fetch(
        "SELECT * FROM documents WHERE complaint_id = ANY($1::text[]) ORDER BY added_at, document_id", found
    ):
        cases[d["complaint_id"]].documents.append(_document(d))
    return cases


def _document(d: asyncpg.Record) -> Document:
    return Document(d["document_id"], d["kind"], d["title"], d["filename"], d["content_type"], d["size_bytes"],
                    d["sha256"], d["path"], d["added_by"], d["added_at"], d["filed_at"], d["erased_at"])


async def save_cases(conn: asyncpg.Connection, cases: Sequence[Case], now: datetime) -> None:
    """Write back what the cases' unit of work changed: the rows, the new history lines,
    escalations and documents, and every round's SLA figures (one statement per table)."""
    if not cases:
        return
    await CASES.update(conn, [_case_values(c, now) for c in cases], key=("complaint_id",), columns=_MUTABLE)
    await HISTORY.insert(conn, [
        {"complaint_id": c.complaint_id, "seq": f.seq, "kind": f.kind, "at": f.at, "recorded_at": f.recorded_at,
         "actor": f.actor, "detail": f.detail}
        for c in cases for f in c.new_facts
    ])
    await ESCALATIONS.insert(conn, [
        {"complaint_id": c.complaint_id, "round": e.round, "level": e.level, "level_name": e.level_name,
         "role": e.role, "person": e.person, "breach": e.breach, "deadline": e.deadline,
         "announced_at": e.announced_at}
        for c in cases for e in c.new_escalations
    ])
    await DOCUMENTS.insert(conn, [
        {"document_id": d.document_id, "complaint_id": c.complaint_id, "kind": d.kind, "title": d.title,
         "filename": d.filename, "content_type": d.content_type, "size_bytes": d.size_bytes, "sha256": d.sha256,
         "path": d.path, "added_by": d.added_by, "added_at": d.added_at, "filed_at": d.filed_at}
        for c in cases for d in c.new_documents
    ], on_conflict="(document_id) DO NOTHING")
    # A case closed in this unit of work files all its handling documents.
    await DOCUMENTS.update(conn, [{"complaint_id": c.complaint_id, "filed_at": c.closed_at}
                                  for c in cases if c.closed_at is not None],
                           key=("complaint_id",), columns=("filed_at",), where="t.filed_at IS NULL")
    rounds = []
    for c in cases:
        if c.figures is None:
            continue
        now_of = c.figures.now
        calendar = WorkingCalendar.load(c.policy.calendar_region)  # the case's working calendar
        rounds += [
            {"complaint_id": c.complaint_id, "round": r.number, "started_at": r.started_at,
             "ack_due_at": r.ack_due_at, "resolve_due_at": r.resolve_due_at, "acknowledged_at": r.acknowledged_at,
             "resolved_at": r.resolved_at, "ack_breached": r.breached("acknowledge", now_of),
             "resolve_breached": r.breached("resolve", now_of), "ack_seconds": r.ack_seconds,
             "resolve_seconds": r.resolve_seconds, "level": r.level_at(now_of),
             "ack_working_seconds": working_seconds(r, r.acknowledged_at, calendar),
             "resolve_working_seconds": working_seconds(r, r.resolved_at, calendar)}
            for r in c.figures.rounds
        ]
    await ROUNDS.upsert(conn, rounds, key=("complaint_id", "round"))


# ---------------------------------------------------------------------------------------
# Erasure (issue 19): a customer's personal values out of every table of this schema


async def erasures(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, datetime]:
    """When each of these customers was erased (those never erased are absent)."""
    rows = await conn.fetch("SELECT customer_id, erased_at FROM erased_customers WHERE customer_id = ANY($1::text[])",
                            sorted(set(customer_ids)))
    return {r["customer_id"]: r["erased_at"] for r in rows}


async def record_erasure(conn: asyncpg.Connection, customer_ids: Sequence[str], erasure_id: str,
                         erased_at: datetime) -> list[str]:
    """Enter the customers as erased; return those that were not (a redelivered CustomerErased
    returns none, and changes nothing)."""
    rows = await conn.fetch(
        """INSERT INTO erased_customers (customer_id, erasure_id, erased_at)
           SELECT DISTINCT unnest($1::text[]), $2::text, $3::timestamptz ORDER BY 1
           ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id""",
        list(customer_ids), erasure_id, erased_at)
    return sorted(r["customer_id"] for r in rows)


@dataclass(frozen=True)
class Erased:
    """What an erasure scrubbed: the customers' cases, and the document files to delete once
    the transaction has committed (paths relative to the documents root)."""

    complaint_ids: list[str]
    document_paths: list[str]


async def erase_customers(conn: asyncpg.Connection, customer_ids: Sequence[str], now: datetime) -> Erased:
    """Scrub every personal value of these customers' cases: the phone, the description (to
    the neutral '': the column is NOT NULL and the list's text search reads it), the resolution,
    what people wrote in the history (domain.erase_detail), the documents' file names, titles
    and checksums (the files themselves are deleted after commit), the stored answers of POSTs
    on the cases (http_idempotency) and set-aside outbox rows about them. Ids, categories,
    states, SLA times, rounds and escalations stay, so every KPI and report figure does."""
    ids = [r["complaint_id"] for r in await conn.fetch(
        "SELECT complaint_id FROM cases WHERE customer_id = ANY($1::text[]) ORDER BY complaint_id FOR UPDATE",
        list(customer_ids))]
    if not ids:
        return Erased([], [])
    await conn.execute(
        "UPDATE cases SET phone = NULL, description = '', resolution = NULL, updated_at = $2 "
        "WHERE complaint_id = ANY($1::text[])", ids, now)
    history = await conn.fetch(
        "SELECT complaint_id, seq, kind, detail FROM case_history WHERE complaint_id = ANY($1::text[])", ids)
    changed = [(r["complaint_id"], r["seq"], erased) for r in history
               if (erased := erase_detail(r["kind"], dict(r["detail"] or {}))) != dict(r["detail"] or {})]
    if changed:
        await conn.executemany("UPDATE case_history SET detail = $3 WHERE complaint_id = $1 AND seq = $2", changed)
    paths = [r["path"] for r in await conn.fetch(
        """UPDATE documents SET filename = NULL, title = '', sha256 = '', erased_at = $2
            WHERE complaint_id = ANY($1::text[]) AND erased_at IS NULL RETURNING path""", ids, now)]
    # A retry's stored answer (24 h) would give the case's old text back: the POSTs on these
    # cases, and the filings that opened them (their answer is the case, naming the customer).
    await conn.execute(
        """DELETE FROM http_idempotency
            WHERE route LIKE ANY($1::text[])
               OR CASE WHEN route = '/v1/complaints' AND status BETWEEN 200 AND 299 AND body IS NOT NULL
                       THEN convert_from(body, 'UTF8')::jsonb ->> 'customer_id' END = ANY($2::text[])""",
        [f"/v1/complaints/{i}/%" for i in ids], list(customer_ids))
    # Rows the relay set aside are never published; pending ones are the bus's and go out as written.
    await conn.execute(
        """UPDATE outbox SET payload = ''::bytea
            WHERE failed_at IS NOT NULL
              AND EXISTS (SELECT 1 FROM unnest($1::text[]) i WHERE position(convert_to(i, 'UTF8') IN payload) > 0)""",
        ids + list(customer_ids))
    return Erased(ids, sorted(paths))


async def erased_documents(conn: asyncpg.Connection, paths: Sequence[str]) -> list[str]:
    """Of these document paths, those whose row says erased (the files to delete)."""
    rows = await conn.fetch("SELECT path FROM documents WHERE path = ANY($1::text[]) AND erased_at IS NOT NULL",
                            list(paths))
    return sorted(r["path"] for r in rows)


# ---------------------------------------------------------------------------------------
# Reading for people


@dataclass(frozen=True)
class CaseFilter:
    state: str | None = None
    level: int | None = None
    department: str | None = None
    breached: bool | None = None
    category: str | None = None
    severity: str | None = None
    assignee: str | None = None
    vins: list[str] | None = None
    text: str | None = None
    filed_from: datetime | None = None
    filed_before: datetime | None = None
    # a scoped agent's regions and dealers (shared.http.SCOPE_SQL; both None: every case)
    regions: list[str] | None = None
    dealers: list[str] | None = None
    open: bool | None = None  # True: the states still worked (OPEN_STATES); False: resolved or closed

    @property
    def narrowed(self) -> bool:
        """Some filter narrows the list (the scope aside)."""
        return any(v is not None for v in (self.state, self.level, self.department, self.breached, self.category,
                                           self.severity, self.assignee, self.vins, self.text, self.filed_from,
                                           self.filed_before, self.open))


_LIST_COLUMNS = (
    "complaint_id", "complaint_ref", "customer_id", "vin", "channel", "category", "severity", "department", "state",
    "round", "assignee", "level", "filed_at", "ack_due_at", "resolve_due_at", "next_due_at", "breached",
    "part_category", "satisfied", "confirmation", "dealer_id", "region", "updated_at",
)


# The deadline the case waits on now: acknowledging an opened (or reopened) case, resolving one in
# hand; none once resolved. Passed or not (a missed one stays first in the worklist).
_DUE_AT = """CASE WHEN state IN ('opened', 'reopened') THEN ack_due_at
                  WHEN state IN ('acknowledged', 'assigned', 'pending_customer') THEN resolve_due_at END"""
# The list's sort keys: columns of list_cases' inner query (shared.api keyset paging needs NOT NULL
# values: a case without a deadline, `deadline_key`, sorts after every deadline, as the year 9999).
CASE_SORTS = {
    "filed_at": SortKey("filed_at", "timestamptz"),
    "updated_at": SortKey("updated_at", "timestamptz"),
    "deadline": SortKey("deadline_key", "timestamptz"),
    "level": SortKey("level", "int"),
}
# The open states (domain.OPEN_STATES) as SQL; a literal, so the SQL is constant text.
_OPEN = "state IN ('acknowledged', 'assigned', 'opened', 'pending_customer', 'reopened')"
assert _OPEN == "state IN (" + ", ".join(f"'{s}'" for s in sorted(OPEN_STATES)) + ")", "OPEN_STATES changed"


# A scoped agent's cases (shared.http.SCOPE_SQL): in list_cases with the scope as $12, $13; in
# case_in_scope as $2, $3.
_LISTED_IN_SCOPE = SCOPE_SQL.format(region="region", dealer="dealer_id", regions="$12", dealers="$13")
_CASE_IN_SCOPE = SCOPE_SQL.format(region="region", dealer="dealer_id", regions="$2", dealers="$3")


async def list_cases(
    conn: asyncpg.Connection, f: CaseFilter, *, sort: Sort, cursor: dict[str, Any] | None, limit: int,
) -> list[dict[str, Any]]:
    """A page of cases in `sort` order after `cursor` (limit + 1 rows: shared.api.make_page cuts
    them); each row with its `deadline_key` (the sort value of `deadline`)."""
    where = """($1::text IS NULL OR state = $1) AND ($2::int IS NULL OR level = $2)
               AND ($3::text IS NULL OR department = $3) AND ($4::boolean IS NULL OR breached = $4)
               AND ($5::text IS NULL OR category = $5) AND ($6::text IS NULL OR severity = $6)
               AND ($7::text IS NULL OR assignee = $7) AND ($8::text[] IS NULL OR vin = ANY($8))
               AND ($9::text IS NULL OR strpos(lower(complaint_ref || ' ' || description || ' ' ||
                    coalesce(customer_id, '') || ' ' || coalesce(vin, '')), lower($9)) > 0)
               AND ($10::timestamptz IS NULL OR filed_at >= $10) AND ($11::timestamptz IS NULL OR filed_at < $11)
               AND """ + _LISTED_IN_SCOPE + f" AND ($14::boolean IS NULL OR ({_OPEN}) = $14)"
    params = (f.state, f.level, f.department, f.breached, f.category, f.severity, f.assignee, f.vins, f.text,
              f.filed_from, f.filed_before, f.regions, f.dealers, f.open)
    page = keyset(sort, "complaint_id", cursor, first_param=len(params) + 1)
    rows = await conn.fetch(
        f"""SELECT * FROM (SELECT {", ".join(_LIST_COLUMNS)}, {_DUE_AT} AS due_at,
                                  coalesce({_DUE_AT}, '9999-12-31 00:00:00+00'::timestamptz) AS deadline_key
                             FROM cases WHERE {where}) c
             WHERE {page.where} ORDER BY {page.order_by} LIMIT ${len(params) + len(page.params) + 1}""",
        *params, *page.params, limit + 1,
    )
    return [dict(r) for r in rows]


async def category_counts(conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime) -> dict[str, int]:
    """The complaints filed in [starts_at, ends_at) by category."""
    rows = await conn.fetch("""SELECT category, count(*) AS n FROM cases WHERE filed_at >= $1 AND filed_at < $2
                                GROUP BY category""", starts_at, ends_at)
    return {r["category"]: int(r["n"]) for r in rows}


async def document(conn: asyncpg.Connection, complaint_id: str, document_id: str) -> Document | None:
    row = await conn.fetchrow(
        "SELECT * FROM documents WHERE complaint_id = $1 AND document_id = $2", complaint_id, document_id
    )
    return _document(row) if row else None


# ---------------------------------------------------------------------------------------
# KPIs and the weekly report


async def kpi_counts(conn: asyncpg.Connection) -> dict[str, Any]:
    open_levels = ", ".join(
        f"count(*) FILTER (WHERE state = ANY($1::text[]) AND level = {i}) AS open_{name}"
        for i, name in enumerate(LEVELS)
    )
    row = await conn.fetchrow(
        f"""SELECT c.*, r.*, x.* FROM
              (SELECT count(*) AS cases, {open_levels},
                      count(*) FILTER (WHERE round > 0) AS reopened_cases FROM cases) c,
              (SELECT count(*) FILTER (WHERE ack_breached) AS ack_breaches,
                      count(*) FILTER (WHERE resolve_breached) AS resolve_breaches,
                      count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved_rounds,
                      count(*) FILTER (WHERE resolved_at IS NOT NULL AND NOT resolve_breached) AS resolved_within_sla,
                      count(DISTINCT complaint_id) FILTER (WHERE resolved_at IS NOT NULL) AS resolved_cases,
                      avg(ack_seconds) AS mean_ack_seconds, avg(resolve_seconds) AS mean_resolve_seconds,
                      avg(ack_working_seconds) AS mean_ack_working_seconds,
                      avg(resolve_working_seconds) AS mean_resolve_working_seconds
                 FROM case_rounds) r,
              (SELECT count(*) AS escalations FROM escalations) x""",
        list(OPEN_STATES),
    )
    return dict(row) if row else {}


async def week_rows(
    conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime,
) -> tuple[list[CaseRow], list[FactRow], list[RoundRow]]:
    """The cases a week touched (filed, stepped, due or still open), their facts in the week
    and their rounds."""
    cases = await conn.fetch(
        """SELECT complaint_id, category, department, state, filed_at FROM cases
            WHERE state = ANY($3::text[]) OR (filed_at >= $1 AND filed_at < $2)
               OR complaint_id IN (SELECT complaint_id FROM case_history WHERE at >= $1 AND at < $2)
               OR complaint_id IN (SELECT complaint_id FROM case_rounds
                                    WHERE (ack_due_at >= $1 AND ack_due_at < $2)
                                       OR (resolve_due_at >= $1 AND resolve_due_at < $2))""",
        starts_at, ends_at, list(OPEN_STATES),
    )
    ids = [r["complaint_id"] for r in cases]
    facts = await conn.fetch(
        """SELECT complaint_id, kind, at, detail FROM case_history
            WHERE complaint_id = ANY($1::text[]) AND at >= $2 AND at < $3""",
        ids, starts_at, ends_at,
    )
    rounds = await conn.fetch(
        """SELECT complaint_id, round, ack_due_at, resolve_due_at, acknowledged_at, resolved_at, ack_breached,
                  resolve_breached, ack_seconds, resolve_seconds, ack_working_seconds, resolve_working_seconds
             FROM case_rounds WHERE complaint_id = ANY($1::text[])""",
        ids,
    )
    return (
        [CaseRow(**dict(r)) for r in cases],
        [FactRow(r["complaint_id"], r["kind"], r["at"], dict(r["detail"] or {})) for r in facts],
        [RoundRow(**dict(r)) for r in rounds],
    )


async def due_rounds(
    conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime, *, region: str | None = None,
    dealer_id: str | None = None, department: str | None = None,
) -> list[DueRound]:
    """The rounds with an SLA step (acknowledge or resolve) due in [starts_at, ends_at), of the
    cases of a region, dealer and department if given."""
    rows = await conn.fetch(
        """SELECT r.complaint_id, c.complaint_ref, r.round, c.department, c.severity, c.state, c.dealer_id,
                  c.region, r.ack_due_at, r.resolve_due_at, r.acknowledged_at, r.resolved_at, r.ack_breached,
                  r.resolve_breached
             FROM case_rounds r JOIN cases c ON c.complaint_id = r.complaint_id
            WHERE ((r.ack_due_at >= $1 AND r.ack_due_at < $2) OR (r.resolve_due_at >= $1 AND r.resolve_due_at < $2))
              AND ($3::text IS NULL OR c.region = $3) AND ($4::text IS NULL OR c.dealer_id = $4)
              AND ($5::text IS NULL OR c.department = $5)
            ORDER BY r.complaint_id, r.round""",
        starts_at, ends_at, region, dealer_id, department,
    )
    return [DueRound(**dict(r)) for r in rows]


async def case_in_scope(conn: asyncpg.Connection, complaint_id: str, regions: list[str] | None,
                        dealers: list[str] | None) -> bool:
    """The case's region or dealer is in the scope (shared.http.SCOPE_SQL)."""
    return bool(await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM cases WHERE complaint_id = $1 AND {_CASE_IN_SCOPE})",
        complaint_id, regions, dealers))


async def case_department(conn: asyncpg.Connection, complaint_id: str) -> str | None:
    """The department a case is routed to (None: no such case)."""
    return await conn.fetchval("SELECT department FROM cases WHERE complaint_id = $1", complaint_id)  # type: ignore[no-any-return]
