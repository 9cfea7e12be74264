"""Sealing personal fields for the topics (shared/keyring.py): which values are sealed and whose
key seals them, and that a value opens only with its customer's key."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest

from shared.keyring import PREFIX, open_payloads, open_value, personal_owners, seal_value, sealed_owners, transform

KEYS = {"C-1": os.urandom(32), "C-2": os.urandom(32)}


def _seal(owner: str, text: str) -> str:
    return seal_value(owner, text, KEYS[owner])


def test_a_sale_seals_the_customers_contact_and_plate_and_leaves_ids_times_and_parts() -> None:
    sale = {"sale_id": "S-1", "vin": "LSVAU2180N2183294", "sold_at": "2026-11-20T10:00:00+08:00",
            "dealer_id": "D-1", "region": "east", "plate": "沪A12345",
            "customer": {"customer_id": "C-1", "name": "王芳", "phone": "+8613811112222", "address": "上海",
                         "email": "w@example.cn", "region": "east", "consent": {"sms": True}},
            "parts": [{"category": "brake", "part_no": "BP-1", "batch": "B1", "supplier_id": "S1"}]}
    sealed = transform(sale, _seal)
    for field in ("name", "phone", "address", "email"):
        assert sealed["customer"][field].startswith(PREFIX) and sealed_owners(sealed["customer"][field]) == {"C-1"}
    assert sealed["plate"].startswith(PREFIX)  # the sale belongs to its customer
    assert {k: sealed[k] for k in ("sale_id", "vin", "sold_at", "dealer_id", "region", "parts")} == {
        k: sale[k] for k in ("sale_id", "vin", "sold_at", "dealer_id", "region", "parts")}
    assert sealed["customer"]["customer_id"] == "C-1" and sealed["customer"]["consent"] == {"sms": True}
    assert personal_owners(sale) == {"C-1"} and sealed_owners(sealed) == {"C-1"}
    opened = transform(sealed, lambda owner, token: token)  # sealed values are not sealed twice
    assert opened == sealed


def test_changes_and_flagged_contacts_seal_their_values_not_their_reasons_or_times() -> None:
    update = {"customer_id": "C-2", "phone": "+8613933334444",
              "changes": {"phone": {"old": "+8613900000000", "new": "+8613933334444"},
                          "consent": {"old": True, "new": False}},
              "contact_flags": {"email": {"value": "bad@@x", "reason": "not an e-mail address",
                                          "flagged_at": "2026-11-20T10:00:00+08:00"}}}
    sealed = transform(update, _seal)
    assert sealed["changes"]["phone"]["old"].startswith(PREFIX) and sealed["changes"]["phone"]["new"].startswith(PREFIX)
    assert sealed["changes"]["consent"] == {"old": True, "new": False}
    flag = sealed["contact_flags"]["email"]
    assert flag["value"].startswith(PREFIX)
    assert (flag["reason"], flag["flagged_at"]) == ("not an e-mail address", "2026-11-20T10:00:00+08:00")


def test_nothing_is_sealed_without_a_customer_or_when_blank() -> None:
    shipment = {"shipment_id": "SH-1", "notes": "短发两件", "lines": [{"line_no": 1, "part_no": "BP-1"}]}
    assert transform(shipment, _seal) == shipment
    blank = {"customer_id": "C-1", "name": "", "phone": None}
    assert transform(blank, _seal) == blank


def test_a_value_opens_with_its_customers_key_only() -> None:
    token = seal_value("C-1", "欧阳抹除", KEYS["C-1"])
    assert "欧阳抹除" not in token and token != seal_value("C-1", "欧阳抹除", KEYS["C-1"])  # a fresh nonce each time
    assert open_value(token, KEYS) == "欧阳抹除"
    assert open_value(token, {"C-2": KEYS["C-2"]}) == ""  # the key destroyed: unreadable
    assert open_value(token, {"C-1": KEYS["C-2"]}) == ""  # another key does not authenticate
    other = seal_value("C-2", "x", KEYS["C-2"])
    moved = other.rpartition(":")[0] + ":" + token.rpartition(":")[2]  # the customer id is the associated data
    assert open_value(moved, {"C-2": KEYS["C-1"]}) == ""


class _Keys:
    """What open_payloads reads keys through (a connection or pool): fetch."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys

    async def fetch(self, _sql: str, ids: list[str]) -> list[dict[str, object]]:
        return [{"customer_id": c, "key": self.keys[c]} for c in ids if c in self.keys]


def test_a_record_opens_in_place_whatever_its_customer_id_holds() -> None:
    odd = 'C:"7\\x'  # a colon, a quote and a backslash: the id is base64url in the token
    keys = {odd: os.urandom(32), "C-1": KEYS["C-1"]}
    data = {"customer_id": odd, "name": "王\"芳", "notes": ["a", "b"], "region": "east"}
    sealed = transform(data, lambda owner, text: seal_value(owner, text, keys[owner]))
    assert sealed_owners(sealed) == {odd} and '"' not in sealed["name"] and "\\" not in sealed["name"]
    record = orjson.dumps({"event_type": "X", "data": sealed})
    [opened, untouched, missing] = asyncio.run(open_payloads(_Keys(keys), [record, b"plain", None]))  # type: ignore[arg-type]
    assert orjson.loads(opened)["data"] == data and (untouched, missing) == (b"plain", None)
    [erased] = asyncio.run(open_payloads(_Keys({}), [record]))  # type: ignore[arg-type]
    assert orjson.loads(erased)["data"] == {**data, "name": "", "notes": ["", ""]}


@pytest.mark.parametrize("token", [f"{PREFIX}", f"{PREFIX}Qy0x", f"{PREFIX}Qy0x:!!!", f"{PREFIX}Qy0x:AAAA", f"{PREFIX}!:AAAA"])
def test_a_damaged_sealed_value_reads_as_empty(token: str) -> None:
    assert open_value(token, KEYS) == ""
