"""Tracking owners' rules (services/followup/owners.py): dealer, then region, then the default; a
finer rule moves a rule-made owner, never a supervisor's; a call assigned to an agent waits for
them until it is overdue; the queue's "mine"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.followup.owners import Choice, OwnerRules, OwnerRulesError, claim_refusal, mine, owner_by_rules, replaces

RULES = OwnerRules(default="agent-09", dealers={"D001": "agent-03"}, regions={"east": "agent-01", "south": "agent-02"})
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_the_dealer_rule_wins_over_the_region_and_the_region_over_the_default() -> None:
    assert owner_by_rules(RULES, "east", "D001") == Choice("agent-03", "rule:dealer", "dealer D001")
    assert owner_by_rules(RULES, "east", "D777") == Choice("agent-01", "rule:region", "region east")
    assert owner_by_rules(RULES, "south", None) == Choice("agent-02", "rule:region", "region south")
    assert owner_by_rules(RULES, "west", None) == Choice("agent-09", "rule:default", "default owner")
    assert owner_by_rules(RULES, None, None).owner == "agent-09"


def test_a_finer_rule_moves_a_rule_made_owner_but_never_a_supervisors_choice() -> None:
    dealer = owner_by_rules(RULES, "east", "D001")
    region = owner_by_rules(RULES, "east", None)
    assert replaces(None, region)  # a new customer
    assert replaces("rule:default", region) and replaces("rule:region", dealer)
    assert not replaces("rule:region", region)  # the same rule again: no change
    assert not replaces("rule:dealer", region)  # a coarser rule never moves a finer one
    assert not replaces("supervisor", dealer)


def test_a_call_is_mine_when_assigned_to_me_or_my_customers_and_assigned_to_nobody_else() -> None:
    assert mine("agent-01", owner="agent-01", assigned_to=None)
    assert mine("agent-01", owner="agent-02", assigned_to="agent-01")
    assert not mine("agent-01", owner="agent-01", assigned_to="agent-02")  # the supervisor moved this call
    assert not mine("agent-01", owner=None, assigned_to=None)


def _call(**overrides: object) -> dict[str, object]:
    return {"followup_id": "f-1", "assigned_to": "agent-02", "claimed_by": None, "claim_expires_at": None,
            "due_by": NOW + timedelta(days=2)} | overrides


def test_a_call_assigned_to_another_agent_waits_for_them_until_it_is_overdue_and_unclaimed() -> None:
    refusal = claim_refusal(_call(), "agent-01", NOW, supervisor=False)
    assert refusal is not None and "assigned to agent-02" in refusal and "overdue" in refusal
    assert claim_refusal(_call(), "agent-02", NOW, supervisor=False) is None  # the assigned agent
    assert claim_refusal(_call(), "agent-01", NOW, supervisor=True) is None  # a supervisor may
    assert claim_refusal(_call(assigned_to=None), "agent-01", NOW, supervisor=False) is None
    overdue = _call(due_by=NOW - timedelta(hours=1))
    assert claim_refusal(overdue, "agent-01", NOW, supervisor=False) is None
    held = overdue | {"claimed_by": "agent-02", "claim_expires_at": NOW + timedelta(minutes=10)}
    assert claim_refusal(held, "agent-01", NOW, supervisor=False) is not None


def test_the_shipped_rules_file_loads_and_names_an_owner_for_every_simulated_region() -> None:
    rules = OwnerRules.load()
    assert rules.default
    for region in ("east", "south", "north", "west", "central"):
        assert owner_by_rules(rules, region, None).source == "rule:region"


@pytest.mark.parametrize(("document", "names"), [
    ({"dealers": {}}, "default must be an agent id"),
    ({"default": "agent 01"}, "default must be an agent id"),
    ({"default": "agent-01", "regions": {"east": 7}}, "regions.east must be an agent id"),
    ({"default": "agent-01", "regions": ["east"]}, "regions must map a region"),
    ({"default": "agent-01", "teams": {}}, "unknown key(s) teams"),
    ("agent-01", "expected a mapping"),
])
def test_a_bad_rules_file_is_refused_naming_the_entry(document: object, names: str) -> None:
    with pytest.raises(OwnerRulesError, match=names.replace("(", r"\(").replace(")", r"\)")):
        OwnerRules.parse(document)


def test_the_rules_file_can_be_replaced_by_another(tmp_path: Path) -> None:
    path = tmp_path / "owners.yaml"
    path.write_text("default: agent-07\ndealers:\n  D002: agent-05\n", encoding="utf-8")
    rules = OwnerRules.load(path)
    assert owner_by_rules(rules, "east", "D002").owner == "agent-05"
    assert owner_by_rules(rules, "east", None) == Choice("agent-07", "rule:default", "default owner")
