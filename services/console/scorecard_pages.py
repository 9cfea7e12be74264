"""Dealer scorecards (supervisors) and the receipts analysed (agents and supervisors), from the
console's read model, so a replay of the log gives the same figures. Each page also answers as
JSON (`format=json`, the same figures; the receipts as a cursor page, their weekly summary at
/receipts/weeks) and as CSV/XLSX; a malformed filter is a 422 that says how to write it (a
problem naming the query parameter for JSON, docs/api-convention.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from services.console import scorecard_store as sql
from services.console.clients import Person
from services.console.i18n import DISPLAY_ZONE, N_
from services.console.pages import DESK, Refused, audit, locale_of, render, role, rules
from services.console.scorecards import (
    TESTED,
    ReceiptWeek,
    Scorecard,
    ScorecardRules,
    Test,
    network,
    receipts_by_week,
    scorecards,
)
from shared.api import Page, Sort, SortKey, decode_cursor, keyset, make_page, sort_param
from shared.db import acquire
from shared.http import runtime_of
from shared.timeutil import month_span

SUPERVISORS = ("supervisor",)
FORMATS = ("html", "json", "csv", "xlsx")
RECEIPT_DAYS = 28  # the receipts' default period: the four weeks up to today
MONTH_HINT = N_("Write the month like 2026-11.")


class BadFilter(ValueError):
    """A filter the person must write otherwise (the message says how; `field`: the query parameter)."""

    def __init__(self, message: str, field: str = "month") -> None:
        super().__init__(message)
        self.field = field


def bad_filter(exc: BadFilter) -> HTTPException:
    """The JSON answer's 422: a problem naming the query parameter (shared.api renders it)."""
    return HTTPException(422, [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}])


def scorecard_rules(request: Request) -> ScorecardRules:
    r = rules(request)
    return ScorecardRules(target=r.scorecard_target, confidence=r.scorecard_confidence,
                          repeat_days=r.repeat_repair_days)


def this_month(now: datetime) -> str:
    return now.astimezone(DISPLAY_ZONE).strftime("%Y-%m")


def month_span_of(month: str) -> tuple[datetime, datetime]:
    try:
        if len(month) != 7:
            raise ValueError(month)
        return month_span(month, DISPLAY_ZONE.key)
    except ValueError:
        raise BadFilter(MONTH_HINT) from None


def months_before(month: str, n: int) -> list[str]:
    """`n` months ending with `month`, oldest first."""
    start, _ = month_span_of(month)
    out = [month]
    for _ in range(n - 1):
        start = (start - timedelta(days=1)).replace(day=1)
        out.insert(0, start.strftime("%Y-%m"))
    return out


def days(since: str, until: str, now: datetime, default_days: int) -> tuple[datetime, datetime]:
    """The days from `since` to `until` (both included, Shanghai) as [start, end)."""
    today = now.astimezone(DISPLAY_ZONE).date()
    try:
        last = date.fromisoformat(until) if until else today
        first = date.fromisoformat(since) if since else last - timedelta(days=default_days - 1)
    except ValueError:
        raise BadFilter(N_("Write the period's days as 2026-11-01."), "since" if since else "until") from None
    if first > last:
        raise BadFilter(N_("The period's first day must not be after its last day."), "since")
    return (datetime.combine(first, time(0), DISPLAY_ZONE),
            datetime.combine(last + timedelta(days=1), time(0), DISPLAY_ZONE))


def rating(value: str, name: str) -> int | None:
    if not value.strip():
        return None
    if value.strip() not in ("1", "2", "3", "4", "5"):
        raise BadFilter(N_("A rating is a whole number from 1 to 5."), name)
    return int(value)


# -- figures as JSON ----------------------------------------------------------------------------------


def test_json(t: Test | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"successes": t.successes, "trials": t.trials, "misses": t.trials - t.successes, "rate": t.rate,
            "target": t.target, "confidence": t.confidence, "p_value": t.p_value, "below_target": t.below_target,
            "flagged": t.flagged}


def card_json(c: Scorecard) -> dict[str, Any]:
    return {
        "dealer_id": c.dealer_id, "month": c.month, "visits": c.visits,
        "return_visit_reach": test_json(c.reach), "satisfaction": test_json(c.satisfaction),
        "parts_accuracy": test_json(c.parts),
        "complaints": c.complaints, "complaint_rate_per_100_visits": c.complaint_rate,
        "repeat_repairs": c.repeat_repairs, "repeat_repairs_per_100_visits": c.repeat_rate,
        "receipts": {"count": c.receipts, "rated": c.rated, "mean_rating": c.mean_rating,
                     "good_share": c.good_rating_share},
        "flags": c.flags,
    }


def week_json(w: ReceiptWeek) -> dict[str, Any]:
    return {"dealer_id": w.dealer_id or None, "week": w.week, "receipts": w.receipts, "rated": w.rated,
            "mean_rating": w.mean_rating, "good": w.good, "good_share": w.good_share, "poor": w.poor,
            "with_comments": w.with_comments}


def receipt_json(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items() if k != "customer_name"}


# The receipts' JSON answer is a cursor page (shared.api, docs/api-convention.md): newest first by default.
RECEIPT_SORT = sort_param({"returned_at": SortKey("returned_at", "timestamptz")}, default="-returned_at")
RECEIPT_LIMIT, RECEIPT_MAX = 50, 200


def receipt_page(request: Request) -> tuple[int, dict[str, Any] | None]:
    """The page's `limit` and `cursor` from the query (a 422 problem naming the one that is wrong)."""
    text = request.query_params.get("limit", str(RECEIPT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= RECEIPT_MAX:
        raise HTTPException(422, [{"loc": ["query", "limit"], "msg": f"limit is a whole number from 1 to {RECEIPT_MAX}",
                                   "type": "less_than_equal"}])
    cursor = request.query_params.get("cursor")
    return int(text), decode_cursor(cursor) if cursor else None


def receipts_json_page(found: list[dict[str, Any]], sort: Sort, cursor: dict[str, Any] | None,
                       limit: int) -> Page[dict[str, Any]]:
    """The receipts after `cursor` in `sort` order (the same keyset rule as the services' lists)."""
    def key(r: dict[str, Any]) -> tuple[datetime, str]:
        return r["returned_at"], r["receipt_id"]

    rows = sorted(found, key=key, reverse=sort.descending)
    after = keyset(sort, "receipt_id", cursor, 1).params
    if after:
        mark = (datetime.fromisoformat(after[0]), after[1])
        rows = [r for r in rows if (key(r) < mark if sort.descending else key(r) > mark)]
    page = make_page(rows[:limit + 1], limit, sort, key)
    return Page[dict[str, Any]](items=[receipt_json(r) for r in page.items], next_cursor=page.next_cursor,
                                limit=limit)


# -- rows for the files (CSV/XLSX), as on the screen -------------------------------------------------


def _cell(value: float | None, digits: int = 4) -> float | str:
    return "" if value is None else round(value, digits)


def card_rows(cards: list[Scorecard]) -> list[list[Any]]:
    rows = []
    for c in cards:
        row: list[Any] = [c.dealer_id, c.month, c.visits]
        for t in (c.reach, c.satisfaction, c.parts):
            row += ["", "", "", ""] if t is None else [t.successes, t.trials, _cell(t.rate), _cell(t.p_value, 6)]
        row += [c.complaints, _cell(c.complaint_rate, 2), c.repeat_repairs, _cell(c.repeat_rate, 2), c.receipts,
                _cell(c.mean_rating, 2), ", ".join(c.flags)]
        rows.append(row)
    return rows


def card_header(gettext: Any) -> list[str]:
    header = [gettext("Dealer"), gettext("Month"), gettext("Visits")]
    for name in (gettext("return-visit reach"), gettext("satisfaction"), gettext("parts-shipment accuracy")):
        header += [f"{name}: {gettext('met')}", f"{name}: {gettext('of')}", name, f"{name}: p"]
    return header + [gettext("Complaints"), gettext("Complaints per 100 visits"), gettext("Repeat repairs"),
                     gettext("Repeat repairs per 100 visits"), gettext("Receipts"), gettext("Mean rating"),
                     gettext("Flagged on")]


@dataclass
class Month:
    month: str
    cards: list[Scorecard]
    network: dict[str, float | None]


async def month_cards(request: Request, month: str) -> Month:
    start, end = month_span_of(month)
    r = scorecard_rules(request)
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        inputs = await sql.month_inputs(conn, start, end, r.repeat_days)
    cards = scorecards(month, DISPLAY_ZONE, rules=r, **inputs)
    return Month(month, cards, network(cards))


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/dealers/scorecards")
    async def scorecards_page(request: Request, month: str = "", format: str = "html",
                              person: Person = Depends(role(*SUPERVISORS))) -> Response:
        month = month.strip() or this_month(runtime_of(request).clock.now())
        if format not in FORMATS:
            raise Refused(N_("No such report."), status=404)
        try:
            found = await month_cards(request, month)
        except BadFilter as exc:
            if format == "json":
                raise bad_filter(exc) from None
            raise Refused(str(exc), status=422) from None
        await audit(request, person, "read_report", subject="dealer-scorecards", month=month, format=format)
        r = scorecard_rules(request)
        if format == "json":
            return JSONResponse({"month": month, "target": r.target, "confidence": r.confidence,
                                 "tested": list(TESTED), "network": found.network,
                                 "dealers": [card_json(c) for c in found.cards],
                                 "flagged": [c.dealer_id for c in found.cards if c.flags]})
        env = runtime_of(request).deps.templates[locale_of(request, person)]
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            return exported(f"aftersales-dealer-scorecards-{month}", format, card_header(env.filters["message"]),
                            card_rows(found.cards))
        return render(request, "scorecards.html", person, month=month, cards=found.cards, network=found.network,
                      rules=r, alpha=1 - r.confidence, query=urlencode({"month": month}))

    @r.get("/dealers/{dealer_id}/scorecard")
    async def dealer_page(request: Request, dealer_id: str, month: str = "", format: str = "html",
                          person: Person = Depends(role(*SUPERVISORS))) -> Response:
        month = month.strip() or this_month(runtime_of(request).clock.now())
        try:
            months = months_before(month, 6)
            history = [await month_cards(request, m) for m in months]
        except BadFilter as exc:
            if format == "json":
                raise bad_filter(exc) from None
            raise Refused(str(exc), status=422) from None
        trend = [next((c for c in h.cards if c.dealer_id == dealer_id), None) for h in history]
        card = trend[-1]
        start, end = month_span_of(month)
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            complaints = await sql.complaints(conn, start, end, dealer_id)
            lines = [line for line in await sql.lines(conn, start, end, dealer_id) if line["kinds"]]
            low = await sql.receipts(conn, sql.ReceiptQuery(dealer_id=dealer_id, start=start, end=end, rating_max=3))
        await audit(request, person, "read_report", subject=f"dealer-scorecard:{dealer_id}", month=month)
        if format == "json":
            return JSONResponse({
                "dealer_id": dealer_id, "month": month, "scorecard": card_json(card) if card else None,
                "months": [{"month": m, "scorecard": card_json(c) if c else None} for m, c in zip(months, trend, strict=True)],
                "complaints": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in c.items()}
                               for c in complaints],
                "discrepant_lines": [{**{k: v for k, v in line.items() if k != "shipped_at"},
                                      "shipped_at": line["shipped_at"].isoformat()} for line in lines],
                "repeat_repairs": [{"vin": x.vin, "item_code": x.item_code, "first_order": x.first_order,
                                    "repeat_order": x.repeat_order, "first_at": x.first_at.isoformat(),
                                    "repeat_at": x.repeat_at.isoformat()} for x in (card.repeats if card else [])],
            })
        r = scorecard_rules(request)
        return render(request, "dealer_scorecard.html", person, dealer_id=dealer_id, month=month, card=card,
                      trend=list(zip(months, trend, strict=True)), complaints=complaints, lines=lines, low=low, rules=r,
                      alpha=1 - r.confidence)

    def receipt_filters(request: Request, dealer: str, since: str, until: str, rating_min: str, rating_max: str,
                        q: str) -> tuple[sql.ReceiptQuery, datetime, datetime]:
        """The receipts' filters (BadFilter saying which one to write otherwise)."""
        start, end = days(since, until, runtime_of(request).clock.now(), RECEIPT_DAYS)
        low, high = rating(rating_min, "rating_min"), rating(rating_max, "rating_max")
        if low is not None and high is not None and low > high:
            raise BadFilter(N_("The lowest rating must not be above the highest."), "rating_min")
        return (sql.ReceiptQuery(dealer_id=dealer or None, start=start, end=end, rating_min=low, rating_max=high,
                                 text=q or None), start, end)

    async def found_receipts(request: Request, query: sql.ReceiptQuery) -> list[dict[str, Any]]:
        runtime = runtime_of(request)
        assert runtime.pool is not None
        async with acquire(runtime.pool) as conn:
            return await sql.receipts(conn, query, limit=None)

    @r.get("/receipts")
    async def receipts_page(request: Request, dealer: str = "", since: str = "", until: str = "",
                            rating_min: str = "", rating_max: str = "", q: str = "", format: str = "html",
                            person: Person = Depends(role(*DESK))) -> Response:
        dealer, q = dealer.strip(), q.strip()
        if format not in FORMATS:
            raise Refused(N_("No such report."), status=404)
        runtime = runtime_of(request)
        try:
            query, start, end = receipt_filters(request, dealer, since, until, rating_min, rating_max, q)
            if format == "json":  # the API's cursor page (shared.api): checked before anything is read
                sort = RECEIPT_SORT(sort=request.query_params.get("sort", "-returned_at"))
                limit, cursor = receipt_page(request)
        except BadFilter as exc:
            if format == "json":
                raise bad_filter(exc) from None
            raise Refused(str(exc), status=422) from None
        found = await found_receipts(request, query)
        await audit(request, person, "search_receipts", subject="receipts", dealer=dealer or None, q=q or None,
                    format=format)
        if format == "json":
            return JSONResponse(jsonable_encoder(receipts_json_page(found, sort, cursor, limit)))
        weeks = receipts_by_week(sql.receipt_rows(found), DISPLAY_ZONE, scorecard_rules(request).good_rating)
        shown = found[:200]
        first, last = start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()
        params = {k: v for k, v in (("dealer", dealer), ("since", first), ("until", last), ("rating_min", rating_min),
                                    ("rating_max", rating_max), ("q", q)) if v}
        if format in ("csv", "xlsx"):
            from services.console.supervisor_pages import exported

            gettext = runtime.deps.templates[locale_of(request, person)].filters["message"]
            header = [gettext("Receipt"), gettext("Returned"), gettext("Dealer"), gettext("Rating"),
                      gettext("Comments"), gettext("Repair order"), gettext("VIN"), gettext("Customer id")]
            return exported("aftersales-receipts", format, header, [
                [x["receipt_id"], x["returned_at"].isoformat(), x["dealer_id"] or "", x["rating"] or "",
                 x["comments"] or "", x["repair_order_id"], x["vin"], x["customer_id"] or ""] for x in found])
        return render(request, "receipts.html", person, receipts=shown, count=len(found), weeks=weeks, dealer=dealer,
                      since=first, until=last, rating_min=rating_min, rating_max=rating_max, q=q,
                      query=urlencode(params))

    @r.get("/receipts/weeks")
    async def receipt_weeks(request: Request, dealer: str = "", since: str = "", until: str = "",
                            rating_min: str = "", rating_max: str = "", q: str = "",
                            person: Person = Depends(role(*DESK))) -> Response:
        """The receipts' weekly summary as JSON (the receipts themselves: GET /receipts?format=json)."""
        dealer, q = dealer.strip(), q.strip()
        try:
            query, start, end = receipt_filters(request, dealer, since, until, rating_min, rating_max, q)
        except BadFilter as exc:
            raise bad_filter(exc) from None
        found = await found_receipts(request, query)
        await audit(request, person, "search_receipts", subject="receipt-weeks", dealer=dealer or None, q=q or None,
                    format="json")
        weeks = receipts_by_week(sql.receipt_rows(found), DISPLAY_ZONE, scorecard_rules(request).good_rating)
        return JSONResponse({"dealer": dealer or None, "since": start.date().isoformat(),
                             "until": (end - timedelta(days=1)).date().isoformat(), "receipts": len(found),
                             "weeks": [week_json(w) for w in weeks]})

    return r
