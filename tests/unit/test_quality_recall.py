"""From alert to recall, the rules (services/quality/recall.py): which batch a confirmed alert
recalls, the campaign's dates, how a workshop visit reads for a recalled vehicle, reports from
inspected vehicles kept apart, progress per dealer; and the notifier's recall letter rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.notifier.rules import load_rules
from services.quality.domain import Cell
from services.quality.recall import (
    NotRecallable,
    OpenRecall,
    Target,
    VisitItem,
    after_inspection,
    campaign_dates,
    campaign_id_for,
    in_parts,
    progress_by_dealer,
    read_visit,
    recall_target,
)
from tests.support import TEST_NOW

BATCH = Cell("batch", "controller", batch="B2609-CTRL-7")
SUPPLIER = Cell("supplier_model", "controller", supplier_id="SUP-B", model="EV-3")


def test_a_batch_alert_recalls_its_batch_from_every_supplier() -> None:
    assert recall_target(BATCH, None) == Target("controller", "B2609-CTRL-7", None)
    assert recall_target(BATCH, "B2609-CTRL-7") == Target("controller", "B2609-CTRL-7", None)


def test_another_batch_named_on_a_batch_alert_is_refused() -> None:
    with pytest.raises(NotRecallable, match="not the alert's batch"):
        recall_target(BATCH, "B2609-CTRL-8")


def test_a_supplier_model_alert_needs_the_batch_and_recalls_it_from_that_supplier_only() -> None:
    with pytest.raises(NotRecallable, match="send `batch`"):
        recall_target(SUPPLIER, None)
    assert recall_target(SUPPLIER, "B7") == Target("controller", "B7", "SUP-B")


def test_a_large_recall_is_announced_in_parts_of_at_most_5000_vins_in_their_order() -> None:
    vins = [f"V{i:05d}" for i in range(12_001)]
    parts = in_parts(vins)
    assert [len(p) for p in parts] == [5000, 5000, 2001] and sum(parts, []) == vins
    assert in_parts([]) == [] and in_parts(["V1"]) == [["V1"]]


def test_one_campaign_id_per_alert() -> None:
    assert campaign_id_for("A-1") == campaign_id_for("A-1") != campaign_id_for("A-2")


def test_the_campaign_starts_14_days_after_the_confirmation_so_the_calls_are_due_at_once() -> None:
    start, end = campaign_dates(TEST_NOW, None, None, 14, 90)
    assert start == TEST_NOW + timedelta(days=14) and end == start + timedelta(days=90)
    given = TEST_NOW + timedelta(days=30)
    assert campaign_dates(TEST_NOW, given, None, 14, 90) == (given, given + timedelta(days=90))


def test_campaign_dates_in_the_past_or_inverted_are_refused() -> None:
    with pytest.raises(NotRecallable, match="in the past"):
        campaign_dates(TEST_NOW, TEST_NOW - timedelta(days=1), None, 14, 90)
    with pytest.raises(NotRecallable, match="must be after"):
        campaign_dates(TEST_NOW, TEST_NOW + timedelta(days=3), TEST_NOW + timedelta(days=2), 14, 90)


RC = OpenRecall("RC-A1", "controller", inspected=False, replaced=False)
OTHER = OpenRecall("RC-A2", "motor", inspected=False, replaced=False)


def test_an_item_with_the_campaign_code_marks_the_vehicle_inspected_and_with_the_category_replaced() -> None:
    assert [(f.campaign_id, f.inspected, f.replaced) for f in read_visit(
        "repair", [VisitItem("RC-A1:inspect")], [RC, OTHER])] == [("RC-A1", True, False)]
    assert [(f.campaign_id, f.replaced) for f in read_visit(
        "recall", [VisitItem("RC-A1"), VisitItem("RC-A1:replace", "controller")], [RC, OTHER])] == [("RC-A1", True)]


def test_a_code_that_only_starts_like_the_campaign_id_is_not_it() -> None:
    assert read_visit("repair", [VisitItem("RC-A10")], [RC]) == []


def test_a_recall_visit_without_the_code_counts_for_the_one_recall_still_short_of_inspection() -> None:
    found = read_visit("recall", [VisitItem("LAB-1", "controller")], [RC])
    assert [(f.campaign_id, f.inspected, f.replaced) for f in found] == [("RC-A1", True, True)]
    # two recalls pending: the visit does not say which, so it counts for none
    assert read_visit("recall", [VisitItem("LAB-1")], [RC, OTHER]) == []
    # an ordinary visit without the code is no inspection
    assert read_visit("maintenance", [VisitItem("OIL", "controller")], [RC]) == []


def test_a_report_after_the_vehicles_inspection_in_a_recall_of_that_category_is_kept_apart() -> None:
    inspected = [("controller", TEST_NOW)]
    assert after_inspection("controller", TEST_NOW + timedelta(days=1), inspected)
    assert not after_inspection("controller", TEST_NOW - timedelta(days=1), inspected)
    assert not after_inspection("motor", TEST_NOW + timedelta(days=1), inspected)
    assert not after_inspection("controller", TEST_NOW, [])


def test_progress_counts_each_step_per_dealer_with_its_share() -> None:
    at = TEST_NOW
    vehicles = [
        {"dealer_id": "DLR-002", "reached_at": at, "booked_at": at, "inspected_at": at, "replaced_at": at},
        {"dealer_id": "DLR-001", "reached_at": at, "booked_at": None, "inspected_at": None, "replaced_at": None},
        {"dealer_id": "DLR-001", "reached_at": None, "booked_at": None, "inspected_at": at, "replaced_at": None},
        {"dealer_id": None, "reached_at": None, "booked_at": None, "inspected_at": None, "replaced_at": None},
    ]
    p = progress_by_dealer(vehicles)
    assert [d["dealer_id"] for d in p["by_dealer"]] == ["DLR-001", "DLR-002", None]
    first = p["by_dealer"][0]
    assert [first[k] for k in ("vehicles", "reached", "booked", "inspected", "replaced")] == [2, 1, 0, 1, 0]
    assert first["rates"] == {"reached": 0.5, "booked": 0.0, "inspected": 0.5, "replaced": 0.0}
    assert p["total"]["vehicles"] == 4 and p["total"]["inspected"] == 2 and p["total"]["replaced"] == 1
    assert progress_by_dealer([])["total"]["rates"]["reached"] is None


def test_the_notifier_writes_a_recall_letter_to_each_owner_called_and_nothing_for_other_campaigns() -> None:
    table = load_rules(Path("services/notifier/rules.yaml"))
    recall = {"customer_id": "C-1", "campaign_id": "RC-A1", "campaign_kind": "recall", "vin": "V"}
    [rule] = table.matching("CampaignCallScheduled", "aftersales.followup", recall)
    assert (rule.id, rule.channel, rule.recipient, rule.delay_td) == ("recall_notice", "letter", "customer",
                                                                      timedelta(0))
    assert table.matching("CampaignCallScheduled", "aftersales.followup",
                          {**recall, "campaign_kind": "free_inspection_week"}) == []
    for locale in ("zh-CN", "en"):
        assert Path(f"services/notifier/templates/{locale}/recall_notice.letter.j2").is_file()


class _RecordingConnection:
    """Records the SQL the early warning's store functions send (no database in unit tests)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    async def fetchrow(self, sql: str, *args: object) -> dict[str, object]:
        self.sql.append(sql)
        return {"times": [], "latest": None}

    async def fetchval(self, sql: str, *args: object) -> list[float]:
        self.sql.append(sql)
        return []

    async def fetch(self, sql: str, *args: object) -> list[dict[str, object]]:
        self.sql.append(sql)
        return []


async def test_the_early_warning_counts_no_report_of_a_vehicle_inspected_before_it_and_keeps_them_apart() -> None:
    # The rule is recall.after_inspection's (same vehicle, same part category, inspected at or
    # before the report) as a SQL condition; the cell's evidence and its reports for the tests
    # exclude it, the alert's "after_inspection" list selects it. The database behaviour is
    # shown by tests/integration/test_quality_recall_api.py (a report of an inspected vehicle
    # is not counted in the batch's open alert, one of a vehicle not inspected is).
    from services.quality import store

    rule = " ".join(store.AFTER_INSPECTION.split())
    assert "rv.vin = r.vin" in rule and "rc.category = r.category" in rule
    assert "rv.inspected_at <= r.reported_at" in rule
    cell = Cell("batch", "controller", batch="B1")
    conn = _RecordingConnection()
    await store.cell_evidence(conn, cell, None, TEST_NOW)  # type: ignore[arg-type]
    await store.cell_reports(conn, cell, None, TEST_NOW)  # type: ignore[arg-type]
    await store.cell_reports(conn, cell, None, TEST_NOW, after_inspection=True)  # type: ignore[arg-type]
    evidence, counted, apart = (" ".join(sql.split()) for sql in (conn.sql[0], conn.sql[2], conn.sql[3]))
    assert f"NOT {rule}" in evidence and f"NOT {rule}" in counted
    assert rule in apart and f"NOT {rule}" not in apart
