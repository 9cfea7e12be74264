"""The contact projection is written a batch at a time: a customer's facts in one batch end as
they would have one event at a time (the newest by world time wins, an older one fills gaps)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.notifier import store
from shared.db import acquire
from tests.support import Namespace, Stack, day_at, manual_clock

pytestmark = [pytest.mark.infra]

NOON = day_at(12)
CONSENT = {"sms": True, "email": True, "letter": True}


def _fact(customer_id: str, hours: int, **fields: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "name": None, "phone": None, "email": None, "address": None,
            "locale": "zh-CN", "timezone": "Asia/Shanghai", "consent": CONSENT,
            "updated_at": NOON + timedelta(hours=hours), **fields}


async def test_a_customers_facts_in_one_batch_merge_as_they_would_one_at_a_time(ns: Namespace) -> None:
    stack = await Stack(ns, manual_clock(NOON), services=("notifier",)).start(consume=False, workers=False)
    try:
        assert stack["notifier"].pool is not None
        async with acquire(stack["notifier"].pool) as conn:
            await store.merge_contacts(conn, [_fact("C-1", 0, name="王伟", phone="+8613800138001",
                                                    address="old road 9")])
            await store.merge_contacts(conn, [
                _fact("C-1", 2, address="new road 1", locale="en"),  # an address change
                _fact("C-2", 1, name="Anna Berger", phone="+8613800138002"),
                _fact("C-1", 1, phone="+8613800138009", email="wang.wei@example.cn"),  # older, read late
                _fact("C-1", 3, name="王伟 (Wang Wei)", locale="en"),
            ])
            rows = {r["customer_id"]: dict(r) for r in await conn.fetch("SELECT * FROM contacts")}
    finally:
        await stack.stop()
    assert {k: rows["C-1"][k] for k in ("name", "phone", "email", "address", "locale", "updated_at")} == {
        "name": "王伟 (Wang Wei)", "phone": "+8613800138001", "email": "wang.wei@example.cn",
        "address": "new road 1", "locale": "en", "updated_at": NOON + timedelta(hours=3),
    }, "newest by world time wins; the late, older fact only fills the e-mail the contact lacked"
    assert (rows["C-2"]["name"], rows["C-2"]["consent"]) == ("Anna Berger", CONSENT)
