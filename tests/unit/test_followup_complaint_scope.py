"""A complaint raised on a return-visit call names the call's dealer and region, so the
complaints service can count it in the SLA compliance of that region and dealer."""

from __future__ import annotations

from services.followup.commands import AttemptIn, _complaints
from shared.events import canonical as c
from tests.support import TEST_NOW


def test_a_complaint_raised_on_a_call_carries_the_calls_dealer_and_region() -> None:
    followup = {"customer_id": "CUST-1", "vin": "LJ1EEAUU5N0123456", "followup_id": "F-1", "dealer_id": "D007",
                "region": "east"}
    body = AttemptIn.model_validate({
        "outcome": "reached", "satisfaction": 2,
        "complaint": {"category": "repair_quality", "description": "the noise is back"},
        "product_issue": {"part_category": "brake", "description": "the brake squeals"}})
    filed = _complaints(followup, body, "F-1:1", TEST_NOW)
    assert [(f["dealer_id"], f["region"]) for f in filed] == [("D007", "east"), ("D007", "east")]
    event = c.ComplaintFiled(**filed[0])  # the canonical event takes them as they are
    assert (event.dealer_id, event.region) == ("D007", "east")
