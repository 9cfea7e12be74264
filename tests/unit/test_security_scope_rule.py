"""Issue 19: the one scope rule follow-up, complaints and the notifier hold a scoped agent to
(shared/http.py): a record is theirs by its region or its dealer; unscoped people see everything."""

from __future__ import annotations

from shared.http import SCOPE_SQL, Principal, outside_scope

EAST = Principal(role="agent", subject="wang.fang", regions=("east",))
DEALER = Principal(role="agent", subject="li.qiang", dealers=("D007",))


def test_a_scoped_agent_covers_their_regions_and_dealers_only() -> None:
    assert EAST.covers("east", None) and EAST.covers("east", "D999")
    assert not EAST.covers("west", "D007") and not EAST.covers(None, None)
    assert DEALER.covers("west", "D007") and not DEALER.covers("west", "D008") and not DEALER.covers(None, None)
    assert EAST.scope_params() == (["east"], []) and DEALER.scope_params() == ([], ["D007"])


def test_unscoped_people_and_other_roles_see_everything() -> None:
    for who in (Principal(role="agent", subject="agent-01"), Principal(role="supervisor", subject="liu.yang"),
                Principal(role="supervisor", subject="s", regions=("east",))):  # only agents carry a scope
        assert not who.scoped and who.covers(None, None) and who.covers("west", "D1")
        assert who.scope_params() == (None, None)


def test_the_sql_condition_takes_the_scope_as_parameters_and_the_refusal_names_it() -> None:
    condition = SCOPE_SQL.format(region="c.region", dealer="c.dealer_id", regions="$4", dealers="$5")
    assert condition == ("(($4::text[] IS NULL AND $5::text[] IS NULL) OR c.region = ANY($4::text[]) "
                         "OR c.dealer_id = ANY($5::text[]))")
    refused = outside_scope(EAST, "case X")
    assert refused.status_code == 403 and "case X is outside your scope" in refused.detail and "east" in refused.detail
