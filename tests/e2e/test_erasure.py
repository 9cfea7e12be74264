"""Erasure across the platform (issue 19): a supervisor erases a customer through intake's API;
afterwards no service's tables hold the customer's name, phone, e-mail, address or complaint
text, a control customer filed the same way is still found wherever it was, the counts stay, a
second car sold to the customer before the erasure and delivered late is filed with nothing
personal, a replay of every service's log into a scratch database restores nothing of the
customer, and nothing the services logged names either customer. The canonical topics, kept for
ever, hold every personal value sealed (no customer's value readable in the records as stored);
opened with the keyring, the control's values are still there and the erased customer's are
not, since the erasure destroyed her key (crypto-shredding, shared/keyring.py). (The complaints' documents on
disk: tests/integration/test_complaints_erasure.py.)"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from aftersales.replay import read_log, replay
from shared import keyring
from shared.db import with_database
from shared.events import CANONICAL_TOPICS
from tests.privacy_scan import find_in_schema
from tests.support import (
    Namespace,
    Stack,
    TopicReader,
    api,
    count,
    day_at,
    eventually,
    manual_clock,
    publish,
    working_day,
)
from tools.simulate import Customer, Fleet

pytestmark = pytest.mark.infra

SERVICES = ("intake", "followup", "complaints", "quality", "notifier", "console")
D = working_day()
T0 = day_at(10, days=D)
# the namespace's topics are the test's own: a replay over every log time re-drives all of them
WHOLE_LOG = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _person(fleet: Fleet, name: str, phone: str, address: str, email: str) -> Customer:
    return dataclasses.replace(fleet.customer(), name=name, phone=phone, address=address, email=email)


def _values(c: Customer, complaint: str) -> dict[str, str]:
    # the phone as its national digits: a substring of every form a service may keep (+86…, 138…)
    assert c.email is not None
    return {"name": c.name, "phone": c.phone.removeprefix("+86"), "email": c.email, "address": c.address,
            "complaint": complaint}


async def _scan(ns: Namespace, values: dict[str, str], database: str | None = None) -> dict[str, set[str]]:
    """Per service schema, the kinds of value (name, phone, …) found in it."""
    url = ns.settings.database_url if database is None else with_database(ns.settings.database_url, database)
    conn = await asyncpg.connect(url)
    try:
        by_value = {v: k for k, v in values.items()}
        found: dict[str, set[str]] = {}
        for schema in SERVICES:
            hits = await find_in_schema(conn, schema, values.values())
            found[schema] = {by_value[hit.rsplit(": ", 1)[1]] for hit in hits}
        return found
    finally:
        await conn.close()


async def _topics_holding(ns: Namespace, values: dict[str, str], *, opened: bool) -> dict[str, set[str]]:
    """Per canonical topic, the kinds of value found in its records: as stored, or opened with
    the keyring as a consumer reads them."""
    topics = [ns.topic(t) for t in CANONICAL_TOPICS]
    records = await read_log(ns.settings, topics, until_ms=2**62)
    contents = [r.value for r in records]
    if opened:
        contents = await keyring.open_at(ns.settings.database_url, contents)
    found: dict[str, set[str]] = {t: set() for t in CANONICAL_TOPICS}
    for record, value in zip(records, contents, strict=True):
        text = orjson.dumps(orjson.loads(value)).decode()  # non-ASCII as itself, whatever the producer wrote
        found[record.topic.removeprefix(ns.prefix)] |= {kind for kind, v in values.items() if v in text}
    return found


async def _schemas_holding(ns: Namespace, value: str) -> set[str]:
    conn = await asyncpg.connect(ns.settings.database_url)
    try:
        return {schema for schema in SERVICES if await find_in_schema(conn, schema, [value])}
    finally:
        await conn.close()


async def _counts(ns: Namespace) -> dict[str, int]:
    conn = await asyncpg.connect(ns.settings.database_url)
    try:
        return {
            "intake.visits": await conn.fetchval("SELECT count(*) FROM intake.visits"),
            "intake.vehicles": await conn.fetchval("SELECT count(*) FROM intake.vehicles"),
            "followup.followups": await conn.fetchval("SELECT count(*) FROM followup.followups"),
            "complaints.cases": await conn.fetchval("SELECT count(*) FROM complaints.cases"),
            "console.customers": await conn.fetchval("SELECT count(*) FROM console.customers"),
        }
    finally:
        await conn.close()


async def test_an_erased_customer_is_found_nowhere_and_a_replay_restores_nothing(
        ns: Namespace, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    clock = manual_clock(T0)
    fleet = Fleet(seed=4711)
    erased = _person(fleet, "欧阳抹除", "+8613811112222", "徐汇区抹除路101号", "erase.me@example.cn")
    kept = _person(fleet, "司马留存", "+8613933334444", "徐汇区留存路202号", "keep.me@example.cn")
    texts = {erased.customer_id: "欧阳抹除投诉：天窗漏水，电话13811112222",
             kept.customer_id: "司马留存投诉：天窗漏水，电话13933334444"}
    erased_values, kept_values = _values(erased, texts[erased.customer_id]), _values(kept, texts[kept.customer_id])
    stack = await Stack(ns, clock, services=SERVICES).start()
    try:
        vins: dict[str, str] = {}
        for person in (erased, kept):
            vehicle = fleet.vehicle(day_at(0, days=-200), customer=person)
            vins[person.customer_id] = vehicle.vin
            await publish(ns.settings, "upstream.sales", [fleet.sale(vehicle)])
            await publish(ns.settings, "upstream.dms", [fleet.pickup(vehicle, day_at(9, days=D - 4))])
            await publish(ns.settings, "upstream.crm", [
                fleet.complaint(person, day_at(9, days=D - 1), texts[person.customer_id], vin=vehicle.vin)])
        async with TopicReader(ns.settings, "aftersales.complaints") as complaints:
            await complaints.wait_for(count("ComplaintOpened", 2), timeout=60)

        # every service has taken in both files: the kinds found for one are found for the other
        async def both_filed() -> bool:
            e, k = await _scan(ns, erased_values), await _scan(ns, kept_values)
            return e == k and all(k[s] for s in ("intake", "complaints", "notifier", "console"))
        await eventually(both_filed, what="both customers filed by every service")
        before = await _scan(ns, kept_values)
        holding_first_car = await _schemas_holding(ns, vins[erased.customer_id])
        sold_to = {"intake", "quality", "console"}  # the services that file a sale's car
        assert sold_to <= holding_first_car
        counts = await _counts(ns)
        # the topics: sealed as stored; opened, both customers' values where the services put them
        assert await _topics_holding(ns, {**erased_values, **{f"kept {k}": v for k, v in kept_values.items()}},
                                     opened=False) == {t: set() for t in CANONICAL_TOPICS}
        on_topics = await _topics_holding(ns, kept_values, opened=True)
        assert await _topics_holding(ns, erased_values, opened=True) == on_topics
        assert {"name", "phone", "address"} <= on_topics["aftersales.intake"], on_topics
        assert "complaint" in on_topics["aftersales.complaints"], on_topics

        async with api(stack["intake"], "supervisor") as supervisor:
            response = await supervisor.post(f"/v1/customers/{erased.customer_id}/erasure",
                                             json={"reason": "客户依《个人信息保护法》第47条申请删除 (ticket PIPL-0001)"})
            assert response.status_code == 201, response.text
        assert response.json()["customer_id"] == erased.customer_id

        async def gone() -> bool:
            return not any((await _scan(ns, erased_values)).values())
        await eventually(gone, what="the erased customer gone from every schema")
        assert await _scan(ns, kept_values) == before  # the control is still found wherever it was
        assert await _counts(ns) == counts

        # the sales system delivers, late, a second car sold to C before the erasure: it is filed
        # everywhere a car is (its VIN found where the first one is), with nothing personal of C
        second = fleet.vehicle(day_at(0, days=-150), customer=erased)
        await publish(ns.settings, "upstream.sales", [fleet.sale(second)])

        async def second_car_filed() -> bool:
            return await _schemas_holding(ns, second.vin) >= sold_to
        try:
            await eventually(second_car_filed, what="the late car filed")
        except AssertionError:
            found = await _schemas_holding(ns, second.vin)
            raise AssertionError(f"the second car is in {found}, the first in {holding_first_car}") from None
        assert not any((await _scan(ns, erased_values)).values())
        # her key is destroyed: nothing of hers opens on any topic; the control's still does
        assert not any((await _topics_holding(ns, erased_values, opened=True)).values())
        assert await _topics_holding(ns, kept_values, opened=True) == on_topics
    finally:
        await stack.stop()

    # a replay of each service's whole log, kept in a scratch database, restores nothing of C
    for service in SERVICES:
        if service == "console":
            continue  # the console is rebuilt, not replayed (its rebuild test covers erasure)
        report = await replay(ns.settings, service, *WHOLE_LOG, keep=True)
        assert report.scratch_database is not None and report.records_replayed > 0
        conn = await asyncpg.connect(with_database(ns.settings.database_url, report.scratch_database))
        try:
            assert await find_in_schema(conn, service, erased_values.values()) == [], service
            assert bool(await find_in_schema(conn, service, kept_values.values())) == bool(before[service]), service
        finally:
            await conn.close()
            admin = await asyncpg.connect(with_database(ns.settings.database_url, "postgres"))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{report.scratch_database}" WITH (FORCE)')
            finally:
                await admin.close()
    # the services' logs (structlog through logging, and anything written to the process's
    # stdout/stderr) name the customers by id only
    logged = capfd.readouterr()
    records = caplog.text + "\n".join(str(r.msg) for r in caplog.records)
    assert "CustomerErased" in records or "customer erased" in records  # the log was captured
    for value in (*erased_values.values(), *kept_values.values()):
        assert value not in logged.out and value not in logged.err and value not in records, value
