"""The keyring on the real server (shared/keyring.py): a customer's key is made when a value of
theirs is first sealed, opens it again, and once an erasure destroys it nothing sealed with it
opens; an erased customer's later events are sent blank, except intake's new data after the
erasure, which gets a new key that does not open the old values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from shared import keyring
from tests.support import Namespace

pytestmark = pytest.mark.infra
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
async def conn(ns: Namespace) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(ns.settings.database_url)
    await keyring.ensure_keyring(connection)  # made with the schemas already; again changes nothing
    try:
        yield connection
    finally:
        await connection.close()


def _event(name: str, at: datetime, customer_id: str = "C-1") -> bytes:
    return orjson.dumps({"event_id": "6f1c7d3e-5a0b-4b8e-9d6a-2f4e8c1b7a90", "event_type": "CustomerUpdated",
                         "occurred_at": at.isoformat(), "source": "intake", "key": customer_id,
                         "data": {"customer_id": customer_id, "name": name, "region": "east"}})


def _data(payload: bytes | None) -> dict[str, object]:
    assert payload is not None
    return orjson.loads(payload)["data"]  # type: ignore[no-any-return]


async def test_a_sealed_value_opens_until_the_erasure_destroys_the_key(conn: asyncpg.Connection) -> None:
    plain = [_event("王芳", T0), _event("李雷", T0, "C-2"), b"not json", _event("", T0)]
    sealed = await keyring.seal_payloads(conn, plain, may_rekey=False)
    assert b"\xe7\x8e\x8b" not in sealed[0] and keyring.sealed_owners(_data(sealed[0])) == {"C-1"}
    assert sealed[2:] == plain[2:]  # not an envelope, nothing personal: as they were
    assert await conn.fetchval("SELECT count(*) FROM keyring.customer_keys WHERE key IS NOT NULL") == 2
    opened = await keyring.open_payloads(conn, [*sealed, None])
    assert [_data(p)["name"] for p in opened[:2]] == ["王芳", "李雷"] and opened[4] is None

    odd = _event("韩梅梅", T0, 'C:"3\\')  # an id JSON escapes: found, sealed and opened all the same
    [odd_sealed] = await keyring.seal_payloads(conn, [odd], may_rekey=False)
    assert "韩梅梅".encode() not in odd_sealed and (await keyring.open_payloads(conn, [odd_sealed]))[0] == odd

    assert await keyring.destroy_keys(conn, ["C-1"], T0 + timedelta(hours=1)) == 1
    opened = await keyring.open_payloads(conn, sealed[:2])
    assert [_data(p)["name"] for p in opened] == ["", "李雷"]  # the control still opens


async def test_after_an_erasure_only_intakes_new_data_gets_a_new_key(conn: asyncpg.Connection) -> None:
    old = (await keyring.seal_payloads(conn, [_event("王芳", T0)], may_rekey=True))[0]
    erased_at = T0 + timedelta(hours=1)
    await keyring.destroy_keys(conn, ["C-1"], erased_at)
    later = T0 + timedelta(hours=2)
    # another service still holding her name, or an event from before the erasure: sent blank
    assert _data((await keyring.seal_payloads(conn, [_event("王芳", later)], may_rekey=False))[0])["name"] == ""
    assert _data((await keyring.seal_payloads(conn, [_event("王芳", erased_at)], may_rekey=True))[0])["name"] == ""
    assert await conn.fetchval("SELECT key FROM keyring.customer_keys WHERE customer_id = 'C-1'") is None
    # intake files new data collected after the erasure (a second purchase): a new key
    new = (await keyring.seal_payloads(conn, [_event("王芳二", later)], may_rekey=True))[0]
    assert _data(new)["name"].startswith(keyring.PREFIX)  # type: ignore[union-attr]
    opened = await keyring.open_payloads(conn, [old, new])
    assert [_data(p)["name"] for p in opened] == ["", "王芳二"]  # the new key does not open the old value


async def test_replicas_starting_together_make_the_keyring_once_and_none_fails(ns: Namespace) -> None:
    """Replicas of a development service (no role of its own) start at once in a database
    without a keyring: each makes it if missing, none fails on the schema the other made."""
    admin = await asyncpg.connect(ns.settings.database_url)
    replicas = [await asyncpg.connect(ns.settings.database_url) for _ in range(4)]
    pids = [c.get_server_pid() for c in replicas]
    try:
        for _ in range(5):
            await admin.execute("DROP SCHEMA IF EXISTS keyring CASCADE")
            # each replica has already looked at the catalogue, as a starting service has (migrations)
            await asyncio.gather(*(c.fetchval("SELECT to_regclass('keyring.customer_keys')") for c in replicas))
            await asyncio.gather(*(keyring.ensure_keyring(c) for c in replicas))
            assert all([await keyring.keyring_exists(c) for c in replicas])
            assert await admin.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'keyring'") == 1
            # and the session lock was given back by each
            assert await admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY($1::int[])", pids) == 0
    finally:
        for c in (admin, *replicas):
            await c.close()
