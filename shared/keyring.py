"""Crypto-shredding of the canonical topics (issue 19, docs/security.md "Sealed personal fields").

The `aftersales.*` topics are kept for ever, so erasing a customer cannot delete what they hold.
Instead every personal value in an event about a customer is sealed on its way to Kafka with
that customer's own key, and erasing the customer destroys the key: the records stay, their
personal values can no longer be read by anyone, a replay included.

- **The keyring**: `keyring.customer_keys` (customer id, a 256-bit key or NULL once erased, when
  the key was made, when it was destroyed), in the services' database, created by the admin with
  the schemas (`shared/db_roles.ensure_schemas`) or by a development service that is the admin.
  Every service's role may read keys and add the key of a customer who has none; only intake may
  destroy a key (its erasure) or give an erased customer a new one (new data collected after the
  erasure, such as a second purchase).
- **Sealing**, by the outbox relay just before a record is sent (`seal_payloads`): in the event's
  data, a string under a personal key (`shared.privacy.PERSONAL_KEYS`: name, phone, e-mail,
  address, free text…) of an object that belongs to a customer (it has `customer_id`, or a
  `customer` with one; nested objects inherit it) becomes
  `sealed:v1:<base64url(customer id)>:<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>` (the
  customer id is also the associated data; base64url keeps any id free of quotes and colons).
  Under a personal key, an object's `value`, `old` and `new` strings are sealed too (a flagged
  contact, a field's change). Ids, times, codes and counts stay readable, so
  KPIs, audits and replays of counts are unaffected. An event about an erased customer that
  occurred at or before the erasure is sent with those values blank instead.
- **Opening**, by every consumer before decoding (`open_payloads`), by replay, audit and the
  tests' topic readers: each sealed value is decrypted with its customer's key; when the key is
  gone (erased) or the value does not authenticate, it reads as the empty string, which every
  service already files as "no value". The types of the events are unchanged (a sealed value is
  a string where a string was), and the outbox keeps the plain event, as the service's own
  tables hold the same values.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.privacy import PERSONAL_KEYS

PREFIX = "sealed:v1:"
MARKER = b'"' + PREFIX.encode()  # a sealed value as it appears in a record's JSON
VALUE_KEYS = frozenset({"value", "old", "new"})  # under a personal key: the values themselves
SCHEMA = "keyring"
TABLE = "keyring.customer_keys"
NONCE = 12
# Who may do what with the keys (shared/db_roles.ensure_schemas grants it).
READ_AND_ADD = ("SELECT", "INSERT")
OWNER_SERVICE = "intake"  # may also destroy a key and re-key an erased customer
OWNER_GRANTS = ("SELECT", "INSERT", "UPDATE")

_GRANT = {privilege: f"SELECT format('GRANT {privilege} ON {TABLE} TO %I', $1::text)"
          for privilege in ("SELECT", "INSERT", "UPDATE")}
_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


# ---------------------------------------------------------------------------------------
# The data walk: which strings are personal and whose


def _owner(obj: dict[str, Any], inherited: str | None) -> str | None:
    own = obj.get("customer_id")
    if isinstance(own, str) and own:
        return own
    customer = obj.get("customer")
    if isinstance(customer, dict):
        own = customer.get("customer_id")
        if isinstance(own, str) and own:
            return own
    return inherited


def transform(value: Any, change: Callable[[str, str], str], owner: str | None = None,
              personal: bool = False) -> Any:
    """`value` with every personal string of a customer replaced by `change(customer_id, text)`."""
    if isinstance(value, dict):
        here = _owner(value, owner)
        out = {}
        for key, item in value.items():
            lowered = key.lower() if isinstance(key, str) else ""
            is_personal = lowered in PERSONAL_KEYS or (personal and lowered in VALUE_KEYS)
            out[key] = transform(item, change, here, is_personal)
        return out
    if isinstance(value, list):
        return [transform(item, change, owner, personal) for item in value]
    if personal and owner and isinstance(value, str) and value and not value.startswith(PREFIX):
        return change(owner, value)
    return value


def personal_owners(value: Any) -> set[str]:
    """The customers with a personal value (to seal) in `value`."""
    found: set[str] = set()

    def note(owner: str, text: str) -> str:
        found.add(owner)
        return text

    transform(value, note)
    return found


def sealed_owners(value: Any) -> set[str]:
    """The customer ids of the sealed values anywhere in `value`."""
    found: set[str] = set()

    def visit(item: Any) -> None:
        if isinstance(item, dict):
            for v in item.values():
                visit(v)
        elif isinstance(item, list):
            for v in item:
                visit(v)
        elif isinstance(item, str) and item.startswith(PREFIX):
            owner = _token_owner(item)
            if owner:
                found.add(owner)

    visit(value)
    return found


# ---------------------------------------------------------------------------------------
# One value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(cipher: AESGCM, customer_id: str, text: str) -> str:
    nonce = os.urandom(NONCE)
    return f"{PREFIX}{_b64(customer_id.encode())}:{_b64(nonce + cipher.encrypt(nonce, text.encode(), customer_id.encode()))}"


def seal_value(customer_id: str, text: str, key: bytes) -> str:
    return _seal(AESGCM(key), customer_id, text)


def _customer_of(head: str) -> str | None:
    """The customer id a sealed value names (its first part, base64url)."""
    try:
        return _unb64(head).decode() or None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _token_owner(token: str) -> str | None:
    head, sep, _ = token[len(PREFIX):].partition(":")
    return _customer_of(head) if sep else None


def _open(cipher: AESGCM | None, owner: str, body: str) -> str:
    if cipher is None:
        return ""
    try:
        raw = _unb64(body)
        return cipher.decrypt(raw[:NONCE], raw[NONCE:], owner.encode()).decode()
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return ""


def open_value(token: str, keys: dict[str, bytes]) -> str:
    """The text of a sealed value; "" when its customer's key is gone or it does not authenticate."""
    owner = _token_owner(token)
    key = keys.get(owner) if owner else None
    return _open(AESGCM(key) if key else None, owner or "", token.rpartition(":")[2])


# ---------------------------------------------------------------------------------------
# The keyring table


_MAKING = "aftersales-keyring"  # the advisory lock held while the keyring is made


async def ensure_keyring(conn: asyncpg.Connection, grants: Mapping[str, Sequence[str]] | None = None) -> None:
    """Create the keyring (idempotent, serialised between processes) and grant each role what it
    may do with the keys (`grants`: role -> privileges); nobody else may touch it.

    The lock is the session's, taken before the transaction: a transaction that waited for it
    inside would still look the schema up in its catalogue cache from before the other process
    committed, and CREATE SCHEMA IF NOT EXISTS would then fail on the schema that process made."""
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", _MAKING)
    try:
        await _create_keyring(conn, grants or {})
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", _MAKING)


async def _create_keyring(conn: asyncpg.Connection, grants: Mapping[str, Sequence[str]]) -> None:
    async with conn.transaction():
        await conn.execute(f"""
            CREATE SCHEMA IF NOT EXISTS {SCHEMA};
            CREATE TABLE IF NOT EXISTS {TABLE} (
                customer_id text PRIMARY KEY,
                key         bytea,          -- NULL: destroyed by an erasure
                created_at  timestamptz NOT NULL DEFAULT now(),
                erased_at   timestamptz,    -- the last erasure of the customer
                CHECK (key IS NULL OR length(key) = 32));
            REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
            REVOKE ALL ON {TABLE} FROM PUBLIC""")
        for role, privileges in grants.items():
            statement = await conn.fetchval("SELECT format('GRANT USAGE ON SCHEMA %I TO %I', $1::text, $2::text)",
                                            SCHEMA, role)
            await conn.execute(statement)
            for privilege in privileges:
                await conn.execute(await conn.fetchval(_GRANT[privilege], role))


# The keys of a batch's customers, one primary-key probe each: a join from the ids (which the
# planner takes for a few rows) rather than `customer_id = ANY($1)`, which it may run as a scan of
# the whole keyring comparing every row with every id while the table's statistics are young.
_LOOKUP = f"""SELECT k.customer_id, k.key, k.erased_at FROM unnest($1::text[]) AS wanted(customer_id)
               JOIN {TABLE} k ON k.customer_id = wanted.customer_id"""


async def keyring_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE))


async def destroy_keys(conn: asyncpg.Connection, customer_ids: Sequence[str], erased_at: datetime) -> int:
    """Erasure: the customers' keys are destroyed (a row says when); returns how many were held."""
    held = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE customer_id = ANY($1::text[]) AND key IS NOT NULL",
                               list(customer_ids))
    await conn.execute(
        f"""INSERT INTO {TABLE} (customer_id, key, erased_at) SELECT unnest($1::text[]), NULL, $2
            ON CONFLICT (customer_id) DO UPDATE SET key = NULL, erased_at = EXCLUDED.erased_at""",
        list(customer_ids), erased_at)
    return int(held or 0)


async def read_keys(conn: asyncpg.Connection | asyncpg.Pool, customer_ids: Iterable[str]) -> dict[str, bytes]:
    """The live keys of these customers (an erased customer has none)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(_LOOKUP, ids)
    return {r["customer_id"]: bytes(r["key"]) for r in rows if r["key"] is not None}


@dataclass(frozen=True, slots=True)
class SealingKey:
    key: bytes | None  # None: destroyed, nothing may be sealed with it (the values go blank)
    erased_at: datetime | None  # values of events at or before it go blank


async def keys_for_sealing(conn: asyncpg.Connection, latest: dict[str, datetime], *,
                           may_rekey: bool) -> dict[str, SealingKey]:
    """Each customer's key to seal with, made when the customer has none yet. `latest`: the
    customer -> the latest time of an event to seal. An erased customer gets a new key only from
    intake (`may_rekey`) and only for an event after the erasure (new data)."""
    if not latest:
        return {}
    ids = sorted(latest)
    rows = {r["customer_id"]: r for r in await conn.fetch(
        _LOOKUP, ids)}
    missing = [c for c in ids if c not in rows]
    if missing:
        await conn.execute(
            f"INSERT INTO {TABLE} (customer_id, key) SELECT * FROM unnest($1::text[], $2::bytea[]) "
            "ON CONFLICT (customer_id) DO NOTHING",
            missing, [AESGCM.generate_key(bit_length=256) for _ in missing])
    rekey = [c for c in ids if c in rows and rows[c]["key"] is None and may_rekey
             and rows[c]["erased_at"] is not None and latest[c] > rows[c]["erased_at"]]
    if rekey:
        await conn.execute(
            f"UPDATE {TABLE} t SET key = n.key, created_at = now() FROM unnest($1::text[], $2::bytea[]) AS n(id, key) "
            "WHERE t.customer_id = n.id AND t.key IS NULL",
            rekey, [AESGCM.generate_key(bit_length=256) for _ in rekey])
    if missing or rekey:
        rows = {r["customer_id"]: r for r in await conn.fetch(
            _LOOKUP, ids)}
    return {c: SealingKey(bytes(r["key"]) if r["key"] is not None else None, r["erased_at"]) for c, r in rows.items()}


# ---------------------------------------------------------------------------------------
# Records


def _envelope(payload: bytes) -> dict[str, Any] | None:
    try:
        envelope = _json.decode(payload)
    except msgspec.DecodeError:
        return None
    return envelope if isinstance(envelope, dict) and isinstance(envelope.get("data"), dict) else None


def _occurred(envelope: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(envelope["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return None


# Every customer id a record names (a superset of the owners of its personal values; JSON
# escapes kept, decoded below), and a sealed value as a JSON string.
_CUSTOMER_ID = re.compile(rb'"customer_id":\s*"((?:[^"\\]|\\.)*)"')
_SEALED = re.compile(rb'"sealed:v1:([A-Za-z0-9_-]+):([A-Za-z0-9_-]*)"')


def _named(payload: bytes) -> set[str]:
    return {_json.decode(b'"' + m + b'"') if b"\\" in m else m.decode() for m in _CUSTOMER_ID.findall(payload)}


def _owners_in(payload: bytes) -> set[str]:
    return {owner for head, _ in _SEALED.findall(payload) if (owner := _customer_of(head.decode()))}


async def seal_payloads(conn: asyncpg.Connection, payloads: Sequence[bytes], *, may_rekey: bool) -> list[bytes]:
    """The records as they go to Kafka: each personal value sealed with its customer's key (see
    the module's docstring); a payload with nothing personal about a customer is returned as is.
    The customers' keys are found (or made) in one pass over the batch, for every customer id a
    record names."""
    todo: dict[int, tuple[dict[str, Any], datetime]] = {}
    latest: dict[str, datetime] = {}
    for i, payload in enumerate(payloads):
        named = _named(payload)
        if not named:
            continue  # nothing belongs to a customer: nothing to seal
        envelope = _envelope(payload)
        occurred = _occurred(envelope) if envelope is not None else None
        if envelope is None or occurred is None:
            continue
        for owner in named:
            latest[owner] = max(latest.get(owner, occurred), occurred)
        todo[i] = (envelope, occurred)
    if not todo:
        return list(payloads)
    keys = await keys_for_sealing(conn, latest, may_rekey=may_rekey)
    ciphers = {owner: AESGCM(held.key) for owner, held in keys.items() if held.key is not None}
    out = list(payloads)
    for i, (envelope, occurred) in todo.items():
        changed = False

        def seal(owner: str, text: str, occurred: datetime = occurred) -> str:
            nonlocal changed
            changed = True
            held, cipher = keys.get(owner), ciphers.get(owner)
            if held is None or cipher is None or (held.erased_at is not None and occurred <= held.erased_at):
                return ""  # an erased customer's value: sent blank
            return _seal(cipher, owner, text)

        data = transform(envelope["data"], seal)
        if changed:
            envelope["data"] = data
            out[i] = _encode(envelope)
    return out


async def open_payloads(conn: asyncpg.Connection | asyncpg.Pool, payloads: Sequence[bytes | None]) -> list[bytes | None]:
    """The records with every sealed value opened ("" where the key is gone), replaced in the
    record's JSON where it stands; a record with no sealed value is returned as it is."""
    owners = {o for p in payloads if p is not None and MARKER in p for o in _owners_in(p)}
    if not owners:
        return list(payloads)
    keys = await read_keys(conn, owners)
    ciphers = {owner: AESGCM(key) for owner, key in keys.items()}

    def opened(match: re.Match[bytes]) -> bytes:
        owner = _customer_of(match[1].decode()) or ""
        return _encode(_open(ciphers.get(owner), owner, match[2].decode()))

    return [_SEALED.sub(opened, p) if p is not None and MARKER in p else p for p in payloads]


async def open_at(database_url: str, payloads: Sequence[bytes | None]) -> list[bytes | None]:
    """`open_payloads` for tools and tests reading a topic: connects to the database only when a
    record holds a sealed value."""
    if not any(p is not None and MARKER in p for p in payloads):
        return list(payloads)
    conn = await asyncpg.connect(database_url)
    try:
        return await open_payloads(conn, payloads)
    finally:
        await conn.close()
