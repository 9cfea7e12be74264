"""Staff sign-in rules: argon2id hashes, the lock-out after five wrong passwords, and the
short-lived EdDSA tokens every service accepts for the person signed in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter

from aftersales.infra import console_key_pair
from services.console.accounts import after_attempt, hash_password, password_matches
from services.console.config import ConsoleRules
from services.console.tokens import person_token, signing_key
from shared.clock import SystemClock
from shared.http import CONSOLE_AUDIENCE, CONSOLE_ISSUER, Principal, create_app, require
from shared.runtime import ServiceDefinition
from shared.settings import Settings

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
RULES = ConsoleRules()


def test_a_password_is_stored_as_an_argon2id_hash_that_only_it_matches() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert password_matches(stored, "correct horse battery")
    assert not password_matches(stored, "correct horse batterY")
    assert not password_matches(None, "correct horse battery"), "no account matches nothing"


def test_a_short_password_is_refused_with_the_length_it_needs() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        hash_password("short")


def test_the_fifth_wrong_password_in_a_row_locks_the_account() -> None:
    failed, locked_until = 0, None
    for attempt in range(1, 6):
        outcome = after_attempt(False, failed, locked_until, NOW, RULES)
        failed, locked_until = outcome.failed_attempts, outcome.locked_until
        assert outcome.locked == (attempt == 5), attempt
    assert locked_until == NOW + timedelta(minutes=RULES.lock_minutes)


def test_a_locked_account_refuses_even_the_right_password_until_the_lock_ends() -> None:
    until = NOW + timedelta(minutes=30)
    assert not after_attempt(True, 5, until, NOW + timedelta(minutes=29), RULES).ok
    after = after_attempt(True, 5, until, NOW + timedelta(minutes=31), RULES)
    assert after.ok and after.failed_attempts == 0


def test_a_right_password_resets_the_count_of_wrong_ones() -> None:
    assert after_attempt(True, 4, None, NOW, RULES).failed_attempts == 0
    assert after_attempt(False, 0, None, NOW, RULES).failed_attempts == 1


# -- the services accept the console's tokens ----------------------------------------------------


@dataclass
class FakeRuntime:
    settings: Settings
    definition: ServiceDefinition = field(
        default_factory=lambda: ServiceDefinition(name="followup", description="test", migrations=None))
    clock: SystemClock = field(default_factory=SystemClock)  # the bad-token limit reads it

    async def readiness(self) -> dict[str, str]:
        return {}


def _service(public_key: str) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/v1/queue")
    async def queue(who: Principal = require("agent", "supervisor")) -> dict[str, str]:
        return {"role": who.role, "subject": who.subject}

    settings = Settings(api_tokens="machine-token=agent:agent-01", console_public_key=public_key)  # type: ignore[arg-type]
    app = create_app(FakeRuntime(settings), router)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _as(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/queue", headers={"Authorization": f"Bearer {token}"})


async def test_a_console_token_is_the_person_it_was_signed_for() -> None:
    private, public = console_key_pair()
    async with _service(public) as service:
        answer = await _as(service, person_token(signing_key(private), "wang.fang", "agent", 5))
    assert answer.status_code == 200
    assert answer.json() == {"role": "agent", "subject": "wang.fang"}


async def test_static_machine_tokens_keep_working_beside_console_tokens() -> None:
    _, public = console_key_pair()
    async with _service(public) as service:
        assert (await _as(service, "machine-token")).json() == {"role": "agent", "subject": "agent-01"}


async def test_a_console_token_of_a_role_the_endpoint_does_not_admit_is_403() -> None:
    private, public = console_key_pair()
    async with _service(public) as service:
        answer = await _as(service, person_token(signing_key(private), "zhao.lei", "quality", 5))
    assert answer.status_code == 403 and "'quality' may not use this endpoint" in answer.json()["detail"]


async def test_a_token_signed_by_another_key_is_refused() -> None:
    _, public = console_key_pair()
    stranger, _ = console_key_pair()
    async with _service(public) as service:
        answer = await _as(service, person_token(signing_key(stranger), "wang.fang", "supervisor", 5))
    assert answer.status_code == 401 and "not valid" in answer.json()["detail"]


def _forged(key: Ed25519PrivateKey, **claims: object) -> str:
    issued = int(time.time())
    payload = {"iss": CONSOLE_ISSUER, "aud": CONSOLE_AUDIENCE, "sub": "wang.fang", "role": "agent", "iat": issued,
               "exp": issued + 300} | claims
    return jwt.encode(payload, key, algorithm="EdDSA")


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 400}, "expired"),
    ({"exp": int(time.time()) + 3600}, "longer than 15 minutes"),
    ({"aud": "somebody-else"}, "not valid"),
    ({"iss": "a-stranger"}, "not valid"),
    ({"role": "ops"}, "is not one of agent, supervisor, quality"),
])
async def test_an_expired_long_lived_or_misaddressed_console_token_is_refused(claims: dict[str, object],
                                                                               reason: str) -> None:
    private, public = console_key_pair()
    async with _service(public) as service:
        answer = await _as(service, _forged(signing_key(private), **claims))
    assert answer.status_code == 401 and reason in answer.json()["detail"]


async def test_a_token_without_a_signature_is_refused() -> None:
    _, public = console_key_pair()
    unsigned = jwt.encode({"iss": CONSOLE_ISSUER, "aud": CONSOLE_AUDIENCE, "sub": "x", "role": "supervisor",
                           "iat": int(time.time()), "exp": int(time.time()) + 60}, None, algorithm="none")
    async with _service(public) as service:
        assert (await _as(service, unsigned)).status_code == 401


def test_the_console_never_signs_a_token_for_more_than_fifteen_minutes() -> None:
    private, public = console_key_pair()
    token = person_token(signing_key(private), "liu.yang", "supervisor", 60, now=1_800_000_000)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60
