"""Tracking owners on the real broker and database (intake and followup): customers get an owner
by the rules when they first appear (CustomerOwnerAssigned on aftersales.followup); a supervisor
changes a customer's owner and assigns an open call to an agent (events on the topic, bad input
refused and nothing changed); the new owner's queue shows the customer first, the assigned call
waits for its agent; a replay of the log gives the same rule-made owners."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aftersales.replay import replay
from services.followup import owners
from services.followup.owners import OwnerRules, owner_by_rules, owner_rules
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    manual_clock,
    publish,
    queue_item,
    working_day,
)
from tools.simulate import Fleet

pytestmark = [pytest.mark.infra, pytest.mark.dates]

T0 = day_at(10, days=working_day())  # inside calling hours on a calling day
AGENTS = {"agent": "agent-01", "agent2": "agent-02"}


def _owner_events(records: list) -> list[dict]:
    return [r.data for r in records if r.event_type == "CustomerOwnerAssigned"]


async def test_a_supervisor_reassigns_a_customer_and_a_call_and_the_new_owner_sees_them_first(ns: Namespace) -> None:
    log_from = datetime.now(UTC) - timedelta(seconds=5)  # log time (Kafka's wall clock), for the replay
    clock = manual_clock(T0)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=1616)
        vehicles = [fleet.vehicle(T0 - timedelta(days=300)) for _ in range(4)]
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in vehicles])
        async with TopicReader(ns.settings, "aftersales.intake") as canonical:
            await canonical.wait_for(count("VehicleSold", 4), timeout=60)
        await publish(ns.settings, "upstream.dms", [fleet.pickup(v, T0 - timedelta(days=4, hours=i))
                                                    for i, v in enumerate(vehicles)])
        customers = {v.customer.customer_id: v for v in vehicles}
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: len({e["customer_id"] for e in _owner_events(rs)}) >= 4, timeout=60,
                                 settle=1.0)
        # one owner per customer, by the rules (the shipped owners.yaml: by region), named by the system
        first = {e["customer_id"]: e for e in _owner_events(topic.records)}
        assert set(first) == set(customers)
        for customer_id, event in first.items():
            expected = owner_by_rules(owner_rules(), customers[customer_id].customer.region, None)
            assert (event["owner"], event["source"], event["assigned_by"], event["previous_owner"]) == \
                (expected.owner, expected.source, "system", None)
        assert len(_owner_events(topic.records)) == 4, "a customer seen again keeps the owner: no second event"

        service = stack["followup"]
        async with api(service, "supervisor") as supervisor, api(service, "agent") as agent1, \
                api(service, "agent2") as agent2:
            by_token = {"agent": agent1, "agent2": agent2}
            moved = vehicles[0]
            moved_id = moved.customer.customer_id
            old_owner = first[moved_id]["owner"]
            new_token = "agent2" if old_owner == "agent-01" else "agent"
            new_owner = AGENTS[new_token]
            visit = await queue_item(by_token[new_token], "first_visit", vin=moved.vin, timeout=60)

            # refused: an agent may not, no reason, an unknown agent id, an unknown customer: nothing changes
            path = f"/v1/customers/{moved_id}/owner"
            assert (await agent1.put(path, json={"owner": new_owner, "reason": "x"})).status_code == 403
            blank = await supervisor.put(path, json={"owner": new_owner, "reason": "  "})
            assert blank.status_code == 422 and "reason" in blank.text
            bad = await supervisor.put(path, json={"owner": "agent 02; drop", "reason": "moved"})
            assert bad.status_code == 422 and "owner" in bad.text
            unknown = await supervisor.put("/v1/customers/nobody/owner", json={"owner": new_owner, "reason": "r"})
            assert unknown.status_code == 404 and "nobody" in unknown.text
            assert (await supervisor.get(path)).json()["owner"] == old_owner

            changed = await supervisor.put(path, json={"owner": new_owner, "reason": "客户要求更换跟踪业务员"})
            assert changed.status_code == 200, changed.text
            assert changed.json()["previous_owner"] == old_owner and changed.json()["source"] == "supervisor"
            again = await supervisor.put(path, json={"owner": new_owner, "reason": "twice"})
            assert again.status_code == 409
            record = (await supervisor.get(path)).json()
            assert (record["owner"], record["source"], record["assigned_by"]) == (new_owner, "supervisor",
                                                                                   "supervisor-01")
            assert record["rule_owner"] == old_owner  # what the rules gave stays beside the supervisor's choice
            assert [h["owner"] for h in record["history"]] == [old_owner, new_owner]

            # the new owner's queue: their customers' calls (now this one too) first, marked as theirs
            queue = (await by_token[new_token].get("/v1/queue")).json()["items"]
            ours = [i for i in queue if i["mine"]]
            assert queue[:len(ours)] == ours, "all of my calls before the others'"
            [entry] = [i for i in queue if i["customer_id"] == moved_id]
            assert entry["mine"] is True and entry["owner"] == new_owner and entry in ours
            before = (await by_token["agent" if new_token == "agent2" else "agent2"].get("/v1/queue")).json()
            [was] = [i for i in before["items"] if i["customer_id"] == moved_id]
            assert was["mine"] is False, "no longer the old owner's"

            # a supervisor assigns another customer's open call to the old owner's colleague
            other = next(v for v in vehicles if v.customer.customer_id != moved_id)
            call = await queue_item(agent1, "first_visit", vin=other.vin, timeout=30)
            assign = f"/v1/followups/{call['followup_id']}/assign"
            assert (await agent1.post(assign, json={"agent": "agent-01", "reason": "r"})).status_code == 403
            assert (await supervisor.post("/v1/followups/nope/assign",
                                          json={"agent": "agent-01", "reason": "r"})).status_code == 404
            assigned = await supervisor.post(assign, json={"agent": "agent-02", "reason": "speaks the dialect"})
            assert assigned.status_code == 200, assigned.text
            queue2 = (await agent2.get("/v1/queue")).json()["items"]
            ours = [i["followup_id"] for i in queue2 if i["mine"]]
            assert call["followup_id"] in ours and queue2[0]["mine"]
            # another agent does not see it and may not take it while it is not overdue
            queue1 = (await agent1.get("/v1/queue")).json()["items"]
            assert call["followup_id"] not in [i["followup_id"] for i in queue1]
            taken = await agent1.post(f"/v1/followups/{call['followup_id']}/claim")
            assert taken.status_code == 409 and "assigned to agent-02" in taken.text
            # once overdue and unclaimed, anyone may take it
            clock.set(datetime.fromisoformat(call["due_by"]) + timedelta(hours=1))
            late = await agent1.post(f"/v1/followups/{call['followup_id']}/claim")
            assert late.status_code == 200 and late.json()["claimed_by"] == "agent-01", late.text
            assert visit["customer_id"] == moved_id

        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: any(r.event_type == "FollowUpAssigned" for r in rs), timeout=30,
                                 settle=0.5)
        by_supervisor = [e for e in _owner_events(topic.records) if e["source"] == "supervisor"]
        assert [(e["customer_id"], e["owner"], e["previous_owner"], e["assigned_by"], e["reason"])
                for e in by_supervisor] == [(moved_id, new_owner, old_owner, "supervisor-01", "客户要求更换跟踪业务员")]
        [assignment] = [r for r in topic.records if r.event_type == "FollowUpAssigned"]
        assert assignment.record.key.decode() == other.customer.customer_id  # keyed by the customer
        assert (assignment.data["followup_id"], assignment.data["agent"], assignment.data["previous_agent"],
                assignment.data["assigned_by"]) == (call["followup_id"], "agent-02", None, "supervisor-01")
    finally:
        await stack.stop()

    # the owners the rules gave come back the same from the log alone
    report = await replay(ns.settings, "followup", log_from, datetime.now(UTC) + timedelta(seconds=5))
    assert report.differences == [], report.differences
    assert report.compared.get("tracking owners the rules gave") == 4, report.compared


async def test_a_dealer_rule_moves_a_rule_made_owner_once_but_never_a_supervisors_choice(
        ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    # the dealer D999 has its own agent; every region goes to agent-01
    rules = OwnerRules(default="agent-09", dealers={"D999": "agent-07"},
                       regions={r: "agent-01" for r in ("east", "south", "north", "west", "central")})
    monkeypatch.setattr(owners, "owner_rules", lambda: rules)
    clock = manual_clock(T0)
    stack = await Stack(ns, clock, services=("intake", "followup")).start()
    try:
        fleet = Fleet(seed=1617)
        followed, chosen = (fleet.vehicle(T0 - timedelta(days=200)) for _ in range(2))
        await publish(ns.settings, "upstream.sales", [fleet.sale(v) for v in (followed, chosen)])
        service = stack["followup"]
        async with api(service, "supervisor") as supervisor:
            async def owner(v: object) -> dict:
                response = await supervisor.get(f"/v1/customers/{v.customer.customer_id}/owner")  # type: ignore[attr-defined]
                return response.json() if response.status_code == 200 else {}

            for v in (followed, chosen):
                for _ in range(150):
                    if (await owner(v)).get("owner"):
                        break
                    await asyncio.sleep(0.2)
                assert (await owner(v))["source"] == "rule:region"
            changed = await supervisor.put(f"/v1/customers/{chosen.customer.customer_id}/owner",
                                           json={"owner": "agent-02", "reason": "老客户，固定由李强跟进"})
            assert changed.status_code == 200, changed.text

            # both come to the rule dealer for a service
            visits = [fleet.pickup(v, T0 - timedelta(days=1, hours=i)) for i, v in enumerate((followed, chosen))]
            for visit in visits:
                visit["data"]["dealer_id"] = "D999"
            await publish(ns.settings, "upstream.dms", visits)
            for _ in range(150):
                if (await owner(chosen)).get("rule_source") == "rule:dealer" and \
                        (await owner(followed)).get("source") == "rule:dealer":
                    break
                await asyncio.sleep(0.2)
            moved, kept = await owner(followed), await owner(chosen)
            assert (moved["owner"], moved["source"], moved["dealer_id"]) == ("agent-07", "rule:dealer", "D999")
            assert [(h["owner"], h["previous_owner"], h["source"]) for h in moved["history"]] == [
                ("agent-01", None, "rule:region"), ("agent-07", "agent-01", "rule:dealer")]
            assert (kept["owner"], kept["source"]) == ("agent-02", "supervisor")  # the supervisor's choice stays
            assert (kept["rule_owner"], kept["rule_source"]) == ("agent-07", "rule:dealer")

            # a second visit at another dealer changes nothing: the dealer rule has spoken
            again = fleet.pickup(followed, T0 - timedelta(hours=2))
            await publish(ns.settings, "upstream.dms", [again])
        async with TopicReader(ns.settings, "aftersales.followup") as topic:
            await topic.wait_for(lambda rs: sum(1 for r in rs if r.event_type == "FollowUpScheduled"
                                                and r.data["kind"] == "first_visit") >= 3, timeout=60, settle=1.0)
        events = [(e["customer_id"], e["owner"], e["previous_owner"], e["source"]) for e in _owner_events(topic.records)]
        followed_id, chosen_id = followed.customer.customer_id, chosen.customer.customer_id
        assert [e for e in events if e[0] == followed_id] == [
            (followed_id, "agent-01", None, "rule:region"), (followed_id, "agent-07", "agent-01", "rule:dealer")]
        assert [e for e in events if e[0] == chosen_id] == [
            (chosen_id, "agent-01", None, "rule:region"), (chosen_id, "agent-02", "agent-01", "supervisor")]
    finally:
        await stack.stop()


async def test_a_merged_files_owner_moves_to_the_file_kept_unless_it_has_its_own(ns: Namespace) -> None:
    """Intake merges two files of one customer (CustomerUpdated.merged_customer_ids): the file kept
    keeps its own owner; a file kept without one takes the retired file's; the retired file's
    owner row is gone and its owner history is the kept file's."""
    from services.followup import store
    from tests.support import db

    stack = await Stack(ns, manual_clock(T0), services=("followup",)).start()
    try:
        conn = await db(ns, "followup")
        try:
            rows = [("C-OLD-1", "agent-02", "supervisor"), ("C-OLD-2", "agent-02", "rule:region"),
                    ("C-KEPT-2", "agent-01", "rule:region")]
            for customer_id, owner, source in rows:
                await conn.execute(
                    "INSERT INTO customer_owners (customer_id, owner, source, reason, assigned_by, assigned_at) "
                    "VALUES ($1, $2, $3, 'test', 'system', $4)", customer_id, owner, source, T0)
                await conn.execute(
                    "INSERT INTO customer_owner_changes (customer_id, owner, source, reason, assigned_by, assigned_at) "
                    "VALUES ($1, $2, $3, 'test', 'system', $4)", customer_id, owner, source, T0)
            async with conn.transaction():
                await store.retire_customers(conn, {"C-OLD-1": "C-KEPT-1", "C-OLD-2": "C-KEPT-2"})
            owners_now = {r["customer_id"]: (r["owner"], r["source"])
                          for r in await conn.fetch("SELECT customer_id, owner, source FROM customer_owners")}
            assert owners_now == {"C-KEPT-1": ("agent-02", "supervisor"), "C-KEPT-2": ("agent-01", "rule:region")}
            changes = sorted((r["customer_id"], r["owner"])
                             for r in await conn.fetch("SELECT customer_id, owner FROM customer_owner_changes"))
            assert changes == [("C-KEPT-1", "agent-02"), ("C-KEPT-2", "agent-01"), ("C-KEPT-2", "agent-02")]
        finally:
            await conn.close()
    finally:
        await stack.stop()
