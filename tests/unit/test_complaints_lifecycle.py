"""The complaint lifecycle state machine: every legal transition and every illegal one."""

from __future__ import annotations

import itertools

import pytest

from services.complaints.domain import ACTIONS, STATES, TRANSITIONS, IllegalTransition, next_state

LEGAL = {
    ("opened", "acknowledge"): "acknowledged",
    ("acknowledged", "assign"): "assigned",
    ("assigned", "assign"): "assigned",
    ("assigned", "pend"): "pending_customer",
    ("assigned", "resolve"): "resolved",
    ("pending_customer", "resume"): "assigned",
    ("pending_customer", "resolve"): "resolved",
    ("resolved", "close"): "closed",
    ("resolved", "reopen"): "reopened",
    ("closed", "reopen"): "reopened",
    ("reopened", "acknowledge"): "acknowledged",
}
ILLEGAL = [pair for pair in itertools.product(STATES, ACTIONS) if pair not in LEGAL]


def test_the_table_is_exactly_the_documented_lifecycle() -> None:
    assert {(s, a): t for s, actions in TRANSITIONS.items() for a, t in actions.items()} == LEGAL
    assert set(TRANSITIONS) == set(STATES)


@pytest.mark.parametrize(("state", "action"), sorted(LEGAL))
def test_a_legal_transition_moves_to_its_target(state: str, action: str) -> None:
    assert next_state(state, action) == LEGAL[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_an_illegal_transition_is_refused_naming_what_is_allowed(state: str, action: str) -> None:
    with pytest.raises(IllegalTransition) as refused:
        next_state(state, action)
    allowed = sorted(a for (s, a) in LEGAL if s == state)
    assert refused.value.allowed == allowed
    message = str(refused.value)
    assert f"cannot {action} a case that is {state}" in message
    assert all(a in message.split(":")[-1] for a in allowed)


def test_every_state_can_be_left_and_every_state_is_reachable_from_opened() -> None:
    reachable, frontier = {"opened"}, ["opened"]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(STATES)
    assert all(TRANSITIONS[s] for s in STATES)  # no dead end: a closed case can still be reopened


def test_unknown_states_and_actions_are_named() -> None:
    with pytest.raises(ValueError, match="unknown action 'escalate'"):
        next_state("opened", "escalate")
    with pytest.raises(ValueError, match="unknown state 'lost'"):
        next_state("lost", "acknowledge")
