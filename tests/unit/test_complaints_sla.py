"""The SLA calculator: deadlines, breaches and the escalation ladder as a pure function of the
case's history — pauses, reopening, late and back-dated facts, and each level's timing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.config import SlaPolicy
from services.complaints.sla import SlaFact, compute, instant_after
from tests.support import TEST_NOW

pytestmark = pytest.mark.dates

T0 = TEST_NOW  # the filing; every other moment is an offset from it
H, D = timedelta(hours=1), timedelta(days=1)
# The method on the continuous (24/7) clock; the working calendar's clock is tested apart
# (test_complaints_sla_calendar.py). Acknowledge 4 h, resolve 2 d, supervisor 1 d, department head 1 d.
POLICY = SlaPolicy(clock="continuous")
FAR = T0 + 30 * D


def facts(*steps: tuple[str, timedelta]) -> list[SlaFact]:
    """Facts recorded in the given order (seq), each at T0 + offset."""
    return [SlaFact(kind, T0 + offset, seq) for seq, (kind, offset) in enumerate(steps, start=1)]


def ladder(figures) -> list[tuple[int, timedelta, str]]:
    return [(s.level, s.due - T0, s.deadline) for s in figures.steps]


# -- deadlines and the ladder --------------------------------------------------------------


def test_deadlines_count_from_the_filing() -> None:
    figures = compute(facts(("filed", 0 * H)), POLICY, T0)
    assert figures.current.ack_due_at == T0 + 4 * H
    assert figures.current.resolve_due_at == T0 + 2 * D
    assert figures.level == 0 and not figures.breaches()


def test_never_acknowledged_climbs_supervisor_at_4h_department_head_at_2d_superior_leader_a_day_later() -> None:
    figures = compute(facts(("filed", 0 * H)), POLICY, FAR)
    assert ladder(figures) == [(1, 4 * H, "acknowledge"), (2, 2 * D, "resolve"), (3, 3 * D, "level")]
    assert [s.next_due - T0 if s.next_due else None for s in figures.steps] == [2 * D, 3 * D, None]
    assert [(s.level_name, s.role, s.breach) for s in figures.steps] == [
        ("supervisor", "supervisor", "acknowledge"), ("department head", "department_head", "resolve"),
        ("superior leader", "superior_leader", "resolve"),
    ]
    assert [b for _, b, _ in figures.breaches()] == ["acknowledge", "resolve"]


def test_acknowledged_in_time_but_unresolved_climbs_one_level_per_deadline_from_the_resolve_deadline() -> None:
    figures = compute(facts(("filed", 0 * H), ("acknowledged", 1 * H), ("assigned", 2 * H)), POLICY, FAR)
    assert ladder(figures) == [(1, 2 * D, "resolve"), (2, 3 * D, "level"), (3, 4 * D, "level")]
    assert not figures.ack_breached and figures.resolve_breached


def test_each_level_has_its_own_configurable_deadline() -> None:
    policy = SlaPolicy(clock="continuous", acknowledge_within=2 * H, resolve_within=D, supervisor_within=12 * H,
                       department_head_within=6 * H)
    figures = compute(facts(("filed", 0 * H), ("acknowledged", H)), policy, FAR)
    assert ladder(figures) == [(1, D, "resolve"), (2, D + 12 * H, "level"), (3, D + 18 * H, "level")]
    figures = compute(facts(("filed", 0 * H)), policy, FAR)
    assert ladder(figures) == [(1, 2 * H, "acknowledge"), (2, D, "resolve"), (3, D + 6 * H, "level")]


def test_the_level_as_of_now_follows_the_clock() -> None:
    history = facts(("filed", 0 * H))
    levels = {offset: compute(history, POLICY, T0 + offset).level
              for offset in (3 * H, 4 * H, 47 * H, 2 * D, 3 * D - timedelta(seconds=1), 3 * D, 10 * D)}
    assert levels == {3 * H: 0, 4 * H: 1, 47 * H: 1, 2 * D: 2, 3 * D - timedelta(seconds=1): 2, 3 * D: 3, 10 * D: 3}


def test_a_late_acknowledgement_is_still_a_breach() -> None:
    figures = compute(facts(("filed", 0 * H), ("acknowledged", 5 * H)), POLICY, 6 * H + T0)
    assert figures.ack_breached and figures.level == 1
    assert figures.current.ack_seconds == (5 * H).total_seconds()


def test_acknowledging_at_the_deadline_instant_is_on_time() -> None:
    figures = compute(facts(("filed", 0 * H), ("acknowledged", 4 * H)), POLICY, T0 + D)
    assert not figures.ack_breached and not figures.steps[0].deadline == "acknowledge"


# -- resolution -----------------------------------------------------------------------------


def test_resolution_cancels_the_escalations_still_pending() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", 5 * H), ("assigned", 6 * H), ("resolved", 2 * D - H))
    figures = compute(history, POLICY, FAR)
    assert ladder(figures) == [(1, 4 * H, "acknowledge")]
    assert figures.ack_breached and not figures.resolve_breached
    assert figures.next_wakeup({(0, 1)}) is None


def test_resolving_at_the_deadline_instant_is_on_time_and_a_moment_later_is_not() -> None:
    on_time = compute(facts(("filed", 0 * H), ("acknowledged", H), ("resolved", 2 * D)), POLICY, FAR)
    late = compute(facts(("filed", 0 * H), ("acknowledged", H), ("resolved", 2 * D + timedelta(seconds=1))),
                   POLICY, FAR)
    assert not on_time.resolve_breached and not on_time.steps
    assert late.resolve_breached and ladder(late) == [(1, 2 * D, "resolve")]


def test_a_resolution_after_a_level_deadline_keeps_the_levels_reached_before_it() -> None:
    figures = compute(facts(("filed", 0 * H), ("resolved", 3 * D + H)), POLICY, FAR)
    assert [s.level for s in figures.steps] == [1, 2, 3]
    figures = compute(facts(("filed", 0 * H), ("resolved", 3 * D - H)), POLICY, FAR)
    assert [s.level for s in figures.steps] == [1, 2]


# -- pending_customer ---------------------------------------------------------------------


def test_time_pending_the_customer_does_not_count() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("assigned", 2 * H), ("pended", 10 * H),
                    ("resumed", 20 * H))
    figures = compute(history, POLICY, FAR)
    assert figures.current.resolve_due_at == T0 + 2 * D + 10 * H
    assert ladder(figures) == [(1, 2 * D + 10 * H, "resolve"), (2, 3 * D + 10 * H, "level"),
                               (3, 4 * D + 10 * H, "level")]
    assert figures.current.pauses == ((T0 + 10 * H, T0 + 20 * H),)


def test_while_paused_the_next_deadlines_are_unknown_and_nothing_escalates() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("assigned", 2 * H), ("pended", 10 * H))
    figures = compute(history, POLICY, FAR)
    assert figures.current.paused and figures.current.resolve_due_at is None
    assert figures.steps == () and figures.next_wakeup(set()) is None
    # The acknowledge deadline, passed before the pause, stays known.
    assert figures.current.ack_due_at == T0 + 4 * H


def test_several_pauses_add_up_and_resolution_ends_an_open_pause() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("assigned", H), ("pended", 5 * H), ("resumed", 8 * H),
                    ("pended", 30 * H), ("resumed", 40 * H), ("pended", 50 * H), ("resolved", 70 * H))
    figures = compute(history, POLICY, FAR)
    r = figures.current
    assert r.pauses == ((T0 + 5 * H, T0 + 8 * H), (T0 + 30 * H, T0 + 40 * H), (T0 + 50 * H, T0 + 70 * H))
    # 48 h of active time: 5 + 22 + 10 h before the third pause, the last 11 h after it.
    assert r.resolve_due_at == T0 + 81 * H
    # 70 h on the wall, 33 h of it paused: resolved within 37 h of active time, before its deadline.
    assert r.resolve_seconds == (37 * H).total_seconds() and not figures.resolve_breached


def test_a_pause_that_covers_a_deadline_moves_it_past_the_pause() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("assigned", H), ("pended", 47 * H),
                    ("resumed", 60 * H))
    figures = compute(history, POLICY, FAR)
    assert figures.current.resolve_due_at == T0 + 61 * H


def test_a_resume_without_a_pause_and_a_second_pend_are_ignored() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("resumed", 2 * H), ("pended", 3 * H),
                    ("pended", 4 * H), ("resumed", 5 * H))
    assert compute(history, POLICY, FAR).current.pauses == ((T0 + 3 * H, T0 + 5 * H),)


def test_instant_after_skips_pauses_and_stops_at_an_open_one() -> None:
    pauses = [(T0 + H, T0 + 2 * H), (T0 + 5 * H, None)]
    assert instant_after(T0, H, pauses) == T0 + H  # reached exactly as the pause starts
    assert instant_after(T0, 2 * H, pauses) == T0 + 3 * H
    assert instant_after(T0, 4 * H, pauses) == T0 + 5 * H
    assert instant_after(T0, 4 * H + timedelta(seconds=1), pauses) is None


# -- reopening ------------------------------------------------------------------------------


def test_reopening_restarts_the_clocks_and_the_ladder() -> None:
    history = facts(("filed", 0 * H), ("resolved", 3 * D + H), ("reopened", 4 * D))
    figures = compute(history, POLICY, T0 + 4 * D + H)
    first, second = figures.rounds
    assert [s.level for s in first.steps] == [1, 2, 3]
    assert second.started_at == T0 + 4 * D
    assert (second.ack_due_at, second.resolve_due_at) == (T0 + 4 * D + 4 * H, T0 + 6 * D)
    assert figures.level == 0 and not figures.ack_breached  # a fresh round starts at the handler
    assert ladder(figures)[3:] == [(1, 4 * D + 4 * H, "acknowledge"), (2, 6 * D, "resolve"), (3, 7 * D, "level")]
    assert [(r, b) for r, b, _ in figures.breaches()] == [(0, "acknowledge"), (0, "resolve")]
    assert figures.next_wakeup({(0, 1), (0, 2), (0, 3)}) == T0 + 4 * D + 4 * H


def test_facts_before_a_reopening_belong_to_the_earlier_round() -> None:
    history = facts(("filed", 0 * H), ("acknowledged", H), ("assigned", H), ("resolved", D), ("reopened", 2 * D),
                    ("acknowledged", 2 * D + 5 * H))
    first, second = compute(history, POLICY, FAR).rounds
    assert first.acknowledged_at == T0 + H and second.acknowledged_at == T0 + 2 * D + 5 * H
    assert not first.breached("acknowledge", FAR) and second.breached("acknowledge", FAR)


# -- late, out-of-order, replayed -----------------------------------------------------------


def test_an_acknowledgement_back_dated_before_the_deadline_gives_the_in_order_figures() -> None:
    in_order = facts(("filed", 0 * H), ("acknowledged", 3 * H), ("assigned", 3 * H))
    # Recorded at 5 h (after the 4 h deadline had passed on the wall clock), back-dated to 3 h.
    late = [SlaFact("filed", T0, 1), SlaFact("assigned", T0 + 3 * H, 2), SlaFact("acknowledged", T0 + 3 * H, 3)]
    now = T0 + 5 * H
    assert compute(late, POLICY, now).rounds == compute(in_order, POLICY, now).rounds
    assert not compute(late, POLICY, now).ack_breached


def test_a_complaint_filed_days_ago_and_delivered_now_is_as_breached_as_if_it_had_come_in_time() -> None:
    now = T0 + 5 * D
    figures = compute(facts(("filed", 0 * H)), POLICY, now)
    assert figures.level == 3 and [s.due - T0 for s in figures.due_steps()] == [4 * H, 2 * D, 3 * D]


def test_an_earlier_filing_through_another_channel_moves_the_start_of_the_clock() -> None:
    history = [SlaFact("filed", T0 + 2 * H, 1), SlaFact("filed", T0, 2)]
    figures = compute(history, POLICY, T0 + 3 * H)
    assert figures.current.started_at == T0 and figures.current.ack_due_at == T0 + 4 * H


_KINDS = ("acknowledged", "assigned", "pended", "resumed", "resolved", "reopened", "closed", "filed")


@st.composite
def histories(draw: st.DrawFn) -> list[SlaFact]:
    steps = draw(st.lists(st.tuples(st.sampled_from(_KINDS), st.integers(0, 10 * 24 * 60)), max_size=14))
    recorded = [("filed", 0), *steps]
    return [SlaFact(kind, T0 + timedelta(minutes=m), seq) for seq, (kind, m) in enumerate(recorded, start=1)]


@settings(max_examples=300, deadline=None)
@given(history=histories(), order=st.randoms(use_true_random=False), now_minutes=st.integers(0, 20 * 24 * 60))
def test_any_arrival_order_gives_the_same_figures(history: list[SlaFact], order, now_minutes: int) -> None:
    """Replays, redeliveries and out-of-order arrival: the same facts, the same figures."""
    shuffled = list(history)
    order.shuffle(shuffled)
    now = T0 + timedelta(minutes=now_minutes)
    assert compute(shuffled, POLICY, now) == compute(history, POLICY, now)


@settings(max_examples=300, deadline=None)
@given(history=histories(), now_minutes=st.integers(0, 20 * 24 * 60))
def test_the_ladder_only_climbs_one_level_at_a_time_and_never_after_the_clock_stopped(
    history: list[SlaFact], now_minutes: int,
) -> None:
    figures = compute(history, POLICY, T0 + timedelta(minutes=now_minutes))
    for r in figures.rounds:
        assert [s.level for s in r.steps] == list(range(1, len(r.steps) + 1))
        assert [s.due for s in r.steps] == sorted(s.due for s in r.steps)
        stops = [t for t in (r.resolved_at, r.ended_at) if t is not None]
        assert all(s.due < min(stops) for s in r.steps) if stops else True
