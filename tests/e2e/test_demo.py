"""`aftersales demo`, shortened to six days of a small network, in its own namespace: the five
services as processes on the real broker and database, their clock driven through the clock
file, people working through the APIs. The figures it prints must agree with what was done."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from shared.settings import PROCESSES
from tests.support import API_TOKENS, TEST_NOW, Namespace
from tools import demo
from tools.sandbox import free_port

pytestmark = [pytest.mark.infra, pytest.mark.dates]


async def test_a_short_demo_month_runs_through_the_services_and_reports_consistent_kpis(ns: Namespace) -> None:
    ports = {name: free_port() for name in PROCESSES}  # the five services and the console
    settings = ns.settings.model_copy(update={f"{name}_port": port for name, port in ports.items()})
    env = ns.env(AFTERSALES_API_TOKENS=API_TOKENS,
                 **{f"AFTERSALES_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    # ~9 units in the bad controller batch failing at 6 a unit-month: a handful of reports in six days
    # and six days give a dealer few parts lines (their discrepancies come 1-3 days after the
    # shipment), so the badly shipping dealer misses 30 % of lines here: flagged whatever the calendar
    # does to the draws (at 15 % it was not, with the days before 1 October)
    # The six days lie in one month (the scorecards count that month's visits): a test moment in a
    # month's first days runs the last six days of the month before.
    until = TEST_NOW.date()
    if (until - timedelta(days=6)).month != (until - timedelta(days=1)).month:
        until = until.replace(day=1)
    plan = demo.Plan(days=6, vehicles=400, dealers=5, pickups_per_day=16, complaints_per_day=2,
                     bad_batch_rate=6.0, poor_shipping_discrepancy_per_line=0.3, seed=20261129,
                     until=until)
    try:
        figures = await demo.run(plan, settings=settings, env=env, bring_up=False)
        # the console's demo accounts can sign in (their passwords are printed with the console's URL)
        assert {role for _, _, role, _ in figures["sign_ins"]} == {"agent", "supervisor", "quality"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['console']}") as browser:
            page = await browser.get("/sign-in")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            user, _, _, password = figures["sign_ins"][0]
            signed = await browser.post("/sign-in", data={"username": user, "password": password,
                                                          "csrf_token": token})
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            home = await browser.get("/")  # each role lands on its own page: an agent on the desk
            assert home.status_code == 303 and home.headers["location"] == "/desk"
    finally:
        assert demo.stop_services(settings), "the demo's services were not running at the end"

    traffic, followup, complaints = figures["traffic"], figures["followup"], figures["complaints"]
    assert traffic["VehicleSold"] == 400 + traffic["deliveries in the month"] and traffic["deliveries in the month"] > 0
    # every delivery and consultation of the month has its first call; the inbound calls are on the register
    by_reason = followup["first_visits_by_reason"]
    assert by_reason["VehicleSold"]["scheduled"] == traffic["deliveries in the month"]
    assert by_reason["ConsultationRecorded"]["scheduled"] == traffic["ConsultationRecorded"] > 0
    assert sum(followup["inbound_calls"].values()) == traffic["inbound calls taken"]
    assert traffic["VehiclePickedUp"] > 50 and traffic["ComplaintFiled"] > 0 and traffic["CampaignAnnounced"] == 1

    # every call the simulated agents made is in the follow-up service's figures, per agent
    assert traffic["calls"] > 0
    assert sum(a["calls"] for a in followup["calls_per_agent"].values()) == traffic["calls"]
    assert set(followup["calls_per_agent"]) == {"agent-01", "agent-02"}
    assert followup["scored_calls"] == traffic["reached"]  # every reached call was scored
    assert followup["satisfaction_rate"] is not None

    # every category the demo counts is reported, zero included (a month without a complaint
    # raised on a call still says 0)
    assert set(demo.UPSTREAM_TYPES + demo.OFFICE_WORK) <= set(traffic)

    # each CRM complaint, and each complaint or product issue raised on a call, became a case
    assert complaints["cases"] == (traffic["ComplaintFiled"] + traffic["complaints from calls"]
                                   + traffic["product issues from calls"] + traffic["serious items filed as complaints"])

    # the dissatisfaction loop: low scores and requests opened feedback items, each answered one by its
    # owner or the supervisor through the API (or on the call), and the departments were told in writing
    items = figures["feedback_items"]
    assert items["opened"] > 0
    assert items["complaints"] >= traffic["serious items filed as complaints"]  # and those raised on the call
    assert traffic["feedback items answered"] == items["answered_in_time"] + items["answered_late"] \
        - items["answered_on_call"]
    assert items["department_notices_sent"] == items["departments_notified"] > 0

    # the bad controller batch raised an early warning that the quality department handled
    bad = [a for a in figures["alerts"]["alerts"] if a["cell"].get("batch") == figures["bad_batch"]]
    assert bad, f"no alert for the bad batch {figures['bad_batch']}: {figures['alerts']}"
    assert bad[0]["state"] in {"acknowledged", "closed"}

    # the dealer scorecards (the console's read model): the dealer whose warehouse ships badly is
    # flagged; its parts lines agree with the quality service's own count, dealer by dealer
    cards = figures["scorecards"]
    month = plan.middle().strftime("%Y-%m")  # the month the six days mostly fell in (not always TEST_NOW's)
    assert cards["month"] == month and "parts_accuracy" in cards["dealers"]["D002"]["flags"], cards
    assert not any("parts_accuracy" in c["flags"] for d, c in cards["dealers"].items() if d != "D002"), cards
    console_lines = {d: (c["parts"]["lines"], c["parts"]["lines"] - c["parts"]["accurate"])
                     for d, c in cards["dealers"].items() if c["parts"]}
    assert console_lines == {d: (q["lines"], q["discrepant_lines"]) for d, q in cards["quality_parts_by_dealer"].items()}
    assert sum(c["visits"] for c in cards["dealers"].values()) == traffic["VehiclePickedUp"]

    # the three malformed records were dead-lettered, each with its reason
    assert sum(figures["dead_letters"].values()) == 3
    assert figures["notifications"].get("sms sent", 0) > 0

    # the month's rectification measure: recorded, its owner reminded on the due date, verified at the
    # month's end as the service's exact test of the complaint rate says
    [measure] = figures["measures"]["items"]
    assert traffic["measures recorded"] == traffic["measures verified"] == 1
    assert measure["status"] == "verified" and measure["reminded_at"] is not None, measure
    effect = measure["effect"]
    assert effect["before"]["visits"] > 0 and effect["after"]["visits"] > 0, effect
    assert measure["verification"]["verdict"] == ("effective" if effect["change"] == "decreased" else "not_effective")

    # the month's work summary, as the console assembles it: every target with its result, the
    # complaint categories adding up to the month's complaints, the measure with its effect
    summary = figures["monthly_summary"]
    assert summary["month"] == month
    assert [t["name"] for t in summary["targets"]] == [
        "warranty_return_visit_rate", "reach_rate", "satisfaction_rate", "feedback_answered_in_time",
        "complaint_sla_compliance", "parts_accuracy"]
    parts_target = next(t for t in summary["targets"] if t["name"] == "parts_accuracy")
    assert parts_target["target"] == 0.98 and parts_target["out_of"] > 0
    assert summary["complaints"] == sum(c["count"] for c in summary["categories"])
    assert [(m["measure_id"], m["change"]) for m in summary["measures"]] == [(measure["measure_id"], effect["change"])]

    # and the services are back on wall time
    assert json.loads(demo.clock_file(settings).read_text())["offset_seconds"] == 0
