"""What of a case's history is erased with its customer (domain.erase_detail): what a person
wrote (comment, notes, reasons, resolution, a document's title) and the phone a repeated filing
learned; the service's own notes, the ids, levels and outcomes stay."""

from __future__ import annotations

from services.complaints.domain import erase_detail


def test_what_people_wrote_is_set_to_none_and_the_keys_stay() -> None:
    assert erase_detail("comment", {"text": "王女士要求回电 13912345678"}) == {"text": None}
    assert erase_detail("pended", {"reason": "等客户发照片", "note": "已短信"}) == {"reason": None, "note": None}
    assert erase_detail("resolved", {"resolution": "上门到徐汇区更换", "note": None}) == {
        "resolution": None, "note": None}
    assert erase_detail("closed", {"satisfied": True, "confirmation": "confirmed", "followup_id": "FU-1",
                                   "note": "客户满意"}) == {
        "satisfied": True, "confirmation": "confirmed", "followup_id": "FU-1", "note": None}
    assert erase_detail("document", {"document_id": "d-1", "kind": "photo", "title": "王女士的照片"}) == {
        "document_id": "d-1", "kind": "photo", "title": None}


def test_the_services_own_notes_ids_and_figures_stay_and_a_learned_phone_goes() -> None:
    escalated = {"level": 1, "level_name": "supervisor", "role": "supervisor", "person": "sales-supervisor-01",
                 "breach": "acknowledge", "round": 0}
    assert erase_detail("escalated", escalated) == escalated
    confirmation = {"outcome": "unreachable", "satisfied": None, "satisfaction": None, "followup_id": "FU-2",
                    "note": "not reached; kept resolved"}
    assert erase_detail("confirmation", confirmation) == confirmation
    again = {"note": "filed again via aftersales.intake (filed_at 2026-11-20T08:00:00+08:00); same case",
             "source": "aftersales.intake", "followup_id": None,
             "learned": {"phone": "13912345678", "vin": "LJ1EEAUU5N0123456"}}
    assert erase_detail("note", again) == {**again, "learned": {"vin": "LJ1EEAUU5N0123456"}}
    assert erase_detail("filed", {"source": "http", "channel": "web", "followup_id": None}) == {
        "source": "http", "channel": "web", "followup_id": None}
