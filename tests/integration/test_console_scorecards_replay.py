"""The dealer scorecards are reproducible by replay: built live from intake's events (shipments,
discrepancies, visits with a repeat repair, receipts), then the console's read model is emptied
and replayed from the log (services/console/rebuild.py), and the month's scorecards and the
receipts' weeks come out the same, figure for figure (real Kafka and Postgres)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.console import scorecard_store as sql
from services.console.i18n import DISPLAY_ZONE
from services.console.rebuild import rebuild
from services.console.scorecard_pages import card_json, week_json
from services.console.scorecards import ScorecardRules, receipts_by_week, scorecards
from shared.timeutil import month_span
from tests.console_support import console_stack, eventually, keyed_ns
from tests.e2e.test_console_browser import _db
from tests.support import Namespace, manual_clock, publish
from tools.simulate import CST, Fleet

pytestmark = pytest.mark.infra
__all__ = ["keyed_ns"]  # the fixture, used by name

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=CST)
NOV = datetime(2026, 11, 2, 9, 0, tzinfo=CST)
ALL_IN = ("SELECT (SELECT count(*) FROM shipment_lines) = 60 AND (SELECT count(*) FROM shipment_discrepancies) = 4"
          " AND (SELECT count(*) FROM visits) = 3 AND (SELECT count(*) FROM receipts) = 2")


async def _figures(ns: Namespace) -> dict[str, Any]:
    start, end = month_span("2026-11", DISPLAY_ZONE.key)
    conn = await _db(ns, "console")
    try:
        await eventually(lambda: conn.fetchval(ALL_IN), what="the month's events in the read model")
        inputs = await sql.month_inputs(conn, start, end, 30)
    finally:
        await conn.close()
    cards = scorecards("2026-11", DISPLAY_ZONE, rules=ScorecardRules(), **inputs)
    return {"cards": [card_json(c) for c in cards],
            "weeks": [week_json(w) for w in receipts_by_week(inputs["receipts"], DISPLAY_ZONE)]}


async def test_the_scorecards_after_a_replay_are_the_ones_the_live_events_built(keyed_ns: Namespace) -> None:
    ns = keyed_ns  # the console's signing key pair, so people's tokens can be signed
    fleet = Fleet(seed=777)
    shipments = [fleet.shipment("D-A", NOV + timedelta(days=i), lines=20) for i in range(2)]
    shipments.append(fleet.shipment("D-B", NOV + timedelta(days=5), lines=20))
    misses = [fleet.discrepancy(shipments[0], n, "damaged", NOV + timedelta(days=1)) for n in (1, 2, 3)]
    misses.append(fleet.discrepancy(shipments[2], 4, "late", NOV + timedelta(days=6)))
    car = fleet.vehicle(datetime(2025, 3, 1, tzinfo=CST))
    car.dealer_id = "D-A"
    first = fleet.pickup(car, NOV + timedelta(days=1), service_type="repair")
    again = fleet.pickup(car, NOV + timedelta(days=8), service_type="warranty")
    other = fleet.pickup(fleet.vehicle(datetime(2025, 3, 1, tzinfo=CST)), NOV + timedelta(days=9))

    clock = manual_clock(NOW)
    stack = await console_stack(ns, clock, services=("intake",)).start()
    try:
        await publish(ns.settings, "upstream.erp", [*shipments, *misses])
        await publish(ns.settings, "upstream.sales", [fleet.sale(car)])
        await publish(ns.settings, "upstream.dms", [first, again, other])
        await publish(ns.settings, "upstream.dms", [fleet.receipt(first, NOV + timedelta(days=2), 2, "异响没修好"),
                                                    fleet.receipt(again, NOV + timedelta(days=9), 5, "这次好了")])
        live = await _figures(ns)
    finally:
        await stack.stop()
    by_dealer = {c["dealer_id"]: c for c in live["cards"]}
    assert by_dealer["D-A"]["parts_accuracy"]["misses"] == 3 and by_dealer["D-A"]["repeat_repairs"] == 1
    assert by_dealer["D-B"]["parts_accuracy"]["misses"] == 1

    emptied = await rebuild(ns.settings)
    assert emptied["shipment_lines"] == 60 and emptied["shipment_discrepancies"] == 4
    stack = await console_stack(ns, clock, services=()).start()
    try:
        assert await _figures(ns) == live, "the replayed read model gives the same scorecards"
    finally:
        await stack.stop()
