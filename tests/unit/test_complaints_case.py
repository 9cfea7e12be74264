"""The complaint case aggregate: opening, filing twice, handling steps, escalation
announcements and the customer's confirmation — plain Python, no infrastructure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from services.complaints.commands import view_escalations
from services.complaints.config import ComplaintRules
from services.complaints.domain import Case, IllegalTransition, Intake, Refused, complaint_id_for
from services.complaints.tables import Tables, load_tables

T0 = datetime.fromisoformat("2026-11-20T10:00:00+08:00")
H, D = timedelta(hours=1), timedelta(days=1)
# The aggregate on the continuous (24/7) clock, so offsets read as hours and days; the working
# calendar's clock is tested in test_complaints_sla_calendar.py.
RULES = ComplaintRules(sla={s: {"clock": "continuous"} for s in ("low", "medium", "high")})
TABLES: Tables = load_tables(RULES.classification_file, RULES.routing_file, RULES.directory_file)


def intake(ref: str = "CRM-1", *, filed_at: datetime = T0, description: str = "前减震异响，过减速带咯噔响",
           source: str = "aftersales.intake") -> Intake:
    return Intake(complaint_ref=ref, customer_id="CUST-1", phone=None, vin="LJ1EEAUU5N0123456", channel="hotline",
                  description=description, filed_at=filed_at, followup_id=None, source=source)


def open_case(filing: Intake | None = None, *, category: str | None = None, rules: ComplaintRules = RULES) -> Case:
    filing = filing or intake()
    c = TABLES.classify(filing.description, category=category)
    return Case.open(filing, c, rules.sla.for_severity(c.severity), now=filing.filed_at,
                     correlation_id=uuid.uuid4())


def handled(case: Case, until: str, *, at: datetime = T0 + H) -> Case:
    """Walk the case through the lifecycle up to `until` (acknowledged, assigned, resolved)."""
    steps = [("acknowledge", {}), ("assign", {"assignee": "agent-01"}), ("resolve", {"resolution": "replaced"})]
    for action, detail in steps:
        case.act(action, at=at, now=at, actor="agent-01", **detail)
        if case.state == until:
            break
    case.outgoing.clear()
    return case


def types(case: Case) -> list[str]:
    return [o.event_type for o in case.outgoing]


# -- opening ------------------------------------------------------------------------------


def test_a_new_case_publishes_its_opening_with_the_deadlines() -> None:
    case = open_case()
    assert case.complaint_id == complaint_id_for("CRM-1") == open_case().complaint_id
    opened = case.outgoing[0]
    assert opened.event_type == "ComplaintOpened" and opened.occurred_at == T0
    assert (opened.data.ack_due_at, opened.data.resolve_due_at) == (T0 + 4 * H, T0 + 2 * D)
    assert (opened.data.category, opened.data.department, opened.data.round) == (
        "product_quality", "quality_inspection", 0)


def test_the_opening_carries_the_dealer_and_region_the_filing_named() -> None:
    from dataclasses import replace

    opened = open_case(replace(intake(), dealer_id="D007", region="east")).outgoing[0].data
    assert (opened.dealer_id, opened.region) == ("D007", "east")  # the dealer scorecards count it there
    unnamed = open_case().outgoing[0].data
    assert (unnamed.dealer_id, unnamed.region) == (None, None)


def test_a_product_quality_case_naming_a_part_reports_the_defect_to_quality() -> None:
    case = open_case()
    assert types(case) == ["ComplaintOpened", "PartDefectReported"]
    defect = case.outgoing[1].data
    assert (defect.category, defect.failure_mode, defect.reported_by) == (
        "front_shock_absorber", "abnormal_noise", "complaint")
    assert defect.batch is None and defect.supplier_id is None  # unknown here: quality resolves them
    assert defect.complaint_id == case.complaint_id and defect.vin == "LJ1EEAUU5N0123456"


def test_other_categories_and_product_complaints_without_a_part_report_no_defect() -> None:
    assert types(open_case(intake(description="服务态度很差"))) == ["ComplaintOpened"]
    assert types(open_case(intake(description="车子质量不行，到处都是问题"))) == ["ComplaintOpened"]
    assert types(open_case(category="price")) == ["ComplaintOpened"]


def test_the_same_complaint_filed_later_is_noted_and_filed_earlier_moves_the_clock() -> None:
    case = open_case()
    case.outgoing.clear()
    assert case.file_again(intake(filed_at=T0 + H, source="aftersales.followup"), T0 + 2 * H) is False
    assert case.history[-1].kind == "note" and case.figures.current.started_at == T0
    assert case.file_again(intake(filed_at=T0 - 3 * H), T0 + 2 * H) is True
    assert case.figures.current.ack_due_at == T0 + H
    assert case.outgoing == []  # nothing new to publish: it is one case


def test_a_second_filing_fills_in_what_the_first_did_not_know() -> None:
    call = intake(source="aftersales.followup")
    call.vin = None
    case = open_case(call)
    case.file_again(intake(filed_at=T0 + H), T0 + H)
    assert case.vin == "LJ1EEAUU5N0123456"
    assert case.history[-1].detail["learned"] == {"vin": "LJ1EEAUU5N0123456"}


# -- handling steps ---------------------------------------------------------------------


def test_each_step_publishes_its_event_and_a_pause_moves_the_clock() -> None:
    case = handled(open_case(), "assigned")
    case.act("pend", at=T0 + 2 * H, now=T0 + 2 * H, actor="agent-01", reason="waiting for photos")
    case.act("resume", at=T0 + 12 * H, now=T0 + 12 * H, actor="agent-01")
    assert types(case) == ["ComplaintPended", "ComplaintResumed"]
    pended, resumed = case.outgoing
    assert pended.data.reason == "waiting for photos"
    assert resumed.data.resolve_due_at == T0 + 2 * D + 10 * H, "the deadline moved by the 10 paused hours"
    assert case.figures.current.resolve_due_at == T0 + 2 * D + 10 * H
    case.outgoing.clear()
    case.act("resolve", at=T0 + D, now=T0 + D, actor="agent-01", resolution="shock absorber replaced")
    [resolved] = case.outgoing
    assert resolved.event_type == "ComplaintResolved"
    assert resolved.data.pauses == [(T0 + 2 * H, T0 + 12 * H)]


@pytest.mark.parametrize(("action", "detail", "needs"), [
    ("assign", {"assignee": "  "}, "assignee"),
    ("pend", {"reason": ""}, "reason"),
    ("resolve", {"resolution": " "}, "resolution text"),
])
def test_steps_that_need_words_refuse_without_them(action: str, detail: dict, needs: str) -> None:
    case = handled(open_case(), "acknowledged" if action == "assign" else "assigned")
    with pytest.raises(Refused, match=needs):
        case.act(action, at=T0 + 2 * H, now=T0 + 2 * H, actor="agent-01", **detail)


def test_an_illegal_step_is_refused_and_changes_nothing() -> None:
    case = open_case()
    with pytest.raises(IllegalTransition, match="allowed action is: acknowledge"):
        case.act("resolve", at=T0 + H, now=T0 + H, actor="agent-01", resolution="x")
    assert case.state == "opened" and [f.kind for f in case.history] == ["filed"]


def test_a_step_may_be_back_dated_but_not_into_the_future_nor_behind_the_last_step() -> None:
    case = open_case()
    with pytest.raises(Refused, match="in the future"):
        case.act("acknowledge", at=T0 + 2 * H, now=T0 + H, actor="a")
    with pytest.raises(Refused, match="before the case's last step"):
        case.act("acknowledge", at=T0 - H, now=T0 + H, actor="a")
    case.act("acknowledge", at=T0 + 3 * H, now=T0 + 5 * H, actor="a")  # recorded late, happened in time
    assert not case.figures.ack_breached and case.figures.level == 0


# -- escalations ----------------------------------------------------------------------------


def test_an_escalation_is_announced_once_with_the_person_who_holds_the_role() -> None:
    case = open_case()
    case.outgoing.clear()
    assert case.announce_due(T0 + 3 * H, TABLES.person_for) == []
    [step] = case.announce_due(T0 + 4 * H, TABLES.person_for)
    assert case.announce_due(T0 + 5 * H, TABLES.person_for) == []
    [escalated] = case.outgoing
    assert escalated.event_type == "ComplaintEscalated" and escalated.occurred_at == T0 + 4 * H
    assert {k: getattr(escalated.data, k) for k in ("level", "level_name", "role", "person", "breach")} == {
        "level": 1, "level_name": "supervisor", "role": "supervisor", "person": "qi-supervisor-01",
        "breach": "acknowledge"}
    assert escalated.data.next_deadline == T0 + 2 * D
    assert case.next_wakeup() == T0 + 2 * D


def test_a_case_found_days_late_announces_every_level_due_at_once_each_once() -> None:
    case = open_case()
    steps = case.announce_due(T0 + 5 * D, TABLES.person_for)
    assert [(s.level, s.role) for s in steps] == [(1, "supervisor"), (2, "department_head"), (3, "superior_leader")]
    escalations = [o for o in case.outgoing if o.event_type == "ComplaintEscalated"]
    assert len({o.discriminator for o in escalations}) == 3
    assert escalations[-1].data.person == "aftersales-director-01"  # the default holder
    assert case.next_wakeup() is None


def test_nothing_is_announced_once_resolved_even_if_the_timer_comes_late() -> None:
    case = handled(open_case(), "resolved", at=T0 + H)
    assert case.announce_due(T0 + 10 * D, TABLES.person_for) == [] and case.next_wakeup() is None


# -- the customer's confirmation -----------------------------------------------------------


def confirm(case: Case, *, outcome: str = "reached", satisfied: bool | None = None, satisfaction: int | None = None,
            at: datetime = T0 + 3 * D, rules: ComplaintRules = RULES) -> str:
    return case.confirm(outcome=outcome, satisfied=satisfied, satisfaction=satisfaction, at=at, now=at,
                        followup_id="FU-9", rules=rules)


def test_a_satisfied_customer_closes_the_case_and_files_its_documents() -> None:
    case = handled(open_case(), "resolved")
    assert confirm(case, satisfied=True) == "closed"
    [closed] = case.outgoing
    assert closed.event_type == "ComplaintClosed"
    assert (closed.data.satisfied, closed.data.confirmation, closed.data.documents) == (True, "confirmed", 1)
    assert case.state == "closed" and case.closed_at == T0 + 3 * D


def test_an_unhappy_customer_reopens_the_case_with_new_deadlines() -> None:
    case = handled(open_case(), "resolved")
    assert confirm(case, satisfied=False) == "reopened"
    [reopened] = case.outgoing
    assert reopened.event_type == "ComplaintReopened" and reopened.data.round == 1
    assert (reopened.data.ack_due_at, reopened.data.resolve_due_at) == (T0 + 3 * D + 4 * H, T0 + 5 * D)
    assert case.state == "reopened" and case.resolution is None


@pytest.mark.parametrize(("score", "result"), [(5, "closed"), (4, "closed"), (3, "reopened"), (1, "reopened")])
def test_a_score_without_a_yes_or_no_counts_as_satisfied_from_four_of_five(score: int, result: str) -> None:
    assert confirm(handled(open_case(), "resolved"), satisfaction=score) == result


@pytest.mark.parametrize("outcome", ["unreachable", "wrong_number"])
def test_a_customer_never_reached_closes_the_case_as_unconfirmed(outcome: str) -> None:
    case = handled(open_case(), "resolved")
    assert confirm(case, outcome=outcome) == "closed"
    assert case.state == "closed" and case.satisfied is None and case.confirmation == outcome


def test_the_rules_can_keep_an_unconfirmed_case_resolved_for_a_supervisor() -> None:
    rules = ComplaintRules(unreachable_confirmation="keep_resolved")
    case = handled(open_case(), "resolved")
    assert confirm(case, outcome="unreachable", rules=rules) == "kept_resolved"
    assert case.state == "resolved" and case.outgoing == []


def test_a_reached_call_without_an_answer_leaves_the_decision_to_a_supervisor() -> None:
    case = handled(open_case(), "resolved")
    assert confirm(case) == "undecided" and case.state == "resolved"


def test_a_confirmation_older_than_the_latest_resolution_changes_nothing() -> None:
    case = handled(open_case(), "resolved", at=T0 + 2 * D)
    assert confirm(case, satisfied=False, at=T0 + D) == "ignored_stale" and case.state == "resolved"


def test_an_unhappy_answer_reopens_a_case_a_supervisor_had_closed_and_a_happy_one_is_noted() -> None:
    case = handled(open_case(), "resolved")
    case.act("close", at=T0 + 2 * D, now=T0 + 2 * D, actor="supervisor-01", confirmation="closed_by_supervisor")
    assert confirm(case, satisfied=True) == "ignored_closed"
    assert confirm(case, satisfied=False) == "reopened" and case.state == "reopened"


def test_a_back_dated_step_after_an_announcement_keeps_the_figures_true_and_never_repeats_the_level() -> None:
    case = open_case()
    case.announce_due(T0 + 4 * H, TABLES.person_for)  # the timer ran before the acknowledgement was known
    case.act("acknowledge", at=T0 + 3 * H, now=T0 + 5 * H, actor="agent-01")
    assert not case.figures.ack_breached and case.figures.level == 0
    [announced] = view_escalations(case)
    assert (announced["level"], announced["still_due"]) == (1, False)
    # At the resolve deadline the supervisor level is due again by the history: not re-announced;
    # the next level follows at its own deadline.
    case.outgoing.clear()
    assert case.announce_due(T0 + 2 * D, TABLES.person_for) == []
    assert case.next_wakeup() == T0 + 3 * D
    [step] = case.announce_due(T0 + 3 * D, TABLES.person_for)
    assert (step.level, step.role) == (2, "department_head")
