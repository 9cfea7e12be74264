"""One conversation per customer: which open follow-ups are worked on one call, who holds the
customer, how the queue groups them (services/followup/conversation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.followup.config import FollowUpRules
from services.followup.conversation import (
    conversation_of,
    duplicates,
    group_queue,
    held_by_another,
    joins,
    members,
    missing_outcomes,
)

NOW = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAYS = FollowUpRules().conversation_days


def f(fid: str, *, customer: str = "C1", starts: float = -1, ends: float = 3, status: str = "due",
      claimed_by: str | None = None, claim_minutes: float | None = None, kind: str = "first_visit",
      call_id: str | None = None) -> dict:
    return {"followup_id": fid, "customer_id": customer, "kind": kind, "status": status,
            "due_from": NOW + timedelta(days=starts), "due_by": NOW + timedelta(days=ends),
            "claimed_by": claimed_by, "call_id": call_id,
            "claim_expires_at": NOW + timedelta(minutes=claim_minutes) if claim_minutes is not None else None}


def test_what_is_due_joins_and_invitations_due_within_three_days_join_early() -> None:
    assert DAYS == 3
    assert joins(f("a", starts=-10, ends=-2), NOW, DAYS), "overdue: still called"
    assert joins(f("b", starts=0), NOW, DAYS), "due from now"
    for kind in ("maintenance_reminder", "campaign_call", "lost_customer"):
        assert joins(f("c", starts=3, ends=5, status="scheduled", kind=kind), NOW, DAYS), "starts on the third day"
        assert not joins(f("d", starts=3.01, ends=5, status="scheduled", kind=kind), NOW, DAYS), "later: its own days"
    assert not joins(f("e", status="completed"), NOW, DAYS), "done: nothing to call"
    assert not joins(f("f", status="expired"), NOW, DAYS)


def test_calls_tied_to_a_moment_are_never_brought_forward() -> None:
    for kind in ("first_visit", "second_visit", "complaint_confirmation", "feedback_answer", "feedback_confirmation"):
        assert not joins(f("a", starts=0.1, ends=5, status="scheduled", kind=kind), NOW, DAYS), kind
        assert joins(f("b", starts=-0.1, ends=5, kind=kind), NOW, DAYS), kind


def test_zero_days_keeps_only_the_follow_ups_due_now() -> None:
    assert joins(f("a", starts=0, kind="campaign_call"), NOW, 0)
    assert not joins(f("b", starts=0.5, status="scheduled", kind="campaign_call"), NOW, 0)


def test_members_come_in_the_queue_order_then_by_due_by() -> None:
    rows = [f("reminder", starts=1, ends=9, kind="maintenance_reminder", status="scheduled"),
            f("campaign", starts=-1, ends=1, kind="campaign_call"),
            f("visit", starts=-2, ends=2, kind="first_visit"),
            f("second", starts=1, ends=8, kind="second_visit", status="scheduled"),
            f("lost", starts=20, ends=34, kind="lost_customer", status="scheduled")]
    assert [m["followup_id"] for m in members(rows, NOW, DAYS, first=["visit"])] == ["visit", "campaign", "reminder"]


def test_a_claim_by_another_agent_holds_the_whole_customer_until_it_expires() -> None:
    rows = [f("a"), f("b", claimed_by="agent-02", claim_minutes=5)]
    held = held_by_another(rows, "agent-01", NOW)
    assert held is not None and held["followup_id"] == "b" and held["claimed_by"] == "agent-02"
    assert held_by_another(rows, "agent-02", NOW) is None, "the holder calls on"
    expired = [f("a"), f("b", claimed_by="agent-02", claim_minutes=-1)]
    assert held_by_another(expired, "agent-01", NOW) is None, "an expired claim holds nobody"


def test_a_conversation_says_who_holds_it_and_under_which_call() -> None:
    rows = [f("a", claimed_by="agent-01", claim_minutes=10, call_id="call-1"),
            f("b", claimed_by="agent-01", claim_minutes=10, call_id="call-1")]
    talk = conversation_of("C1", rows, NOW, DAYS)
    assert talk.claimed_by == "agent-01" and talk.call_id == "call-1"
    assert talk.claim_expires_at == NOW + timedelta(minutes=10)
    assert talk.followup_ids == ["a", "b"]


def test_the_queue_gives_one_entry_per_customer_in_the_order_of_their_first_call() -> None:
    # the queue's order: C2's campaign call, C1's first visit, C2's reminder, C3's first visit
    callable_ = [f("c2-campaign", customer="C2", kind="campaign_call"), f("c1-visit"),
                 f("c2-reminder", customer="C2", kind="maintenance_reminder"), f("c3-visit", customer="C3")]
    open_rows = {
        "C1": [f("c1-visit"), f("c1-reminder", starts=2, ends=12, kind="maintenance_reminder", status="scheduled"),
               f("c1-lost", starts=30, ends=44, kind="lost_customer", status="scheduled")],
        "C2": [f("c2-campaign", customer="C2", kind="campaign_call"),
               f("c2-reminder", customer="C2", kind="maintenance_reminder")],
        "C3": [f("c3-visit", customer="C3"), f("c3-confirm", customer="C3", kind="complaint_confirmation",
                                               claimed_by="agent-02", claim_minutes=3)],
    }
    talks = group_queue(callable_, open_rows, NOW, DAYS, "agent-01")
    assert [(t.customer_id, t.followup_ids) for t in talks] == [
        ("C2", ["c2-campaign", "c2-reminder"]),
        ("C1", ["c1-visit", "c1-reminder"]),  # the reminder due in two days joins; the lost call does not
    ], "C3 is being called by agent-02: not offered"
    theirs = group_queue(callable_, open_rows, NOW, DAYS, "agent-02")
    assert [t.customer_id for t in theirs] == ["C2", "C1", "C3"]
    assert theirs[2].claimed_by == "agent-02" and theirs[2].followup_ids == ["c3-visit", "c3-confirm"]


def test_every_follow_up_of_the_claim_needs_its_outcome_once() -> None:
    assert missing_outcomes(["a", "b", "c"], ["a", "c"]) == ["b"]
    assert missing_outcomes(["a"], ["a", "b"]) == []
    assert duplicates(["a", "b", "a", "c", "b"]) == ["a", "b"]
    assert duplicates(["a", "b"]) == []
