"""Staff accounts: argon2id password hashes, the lock-out rule, session and CSRF tokens.
The rules are pure functions; the store keeps the rows."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.console.config import ConsoleRules

ROLES = ("agent", "supervisor", "quality", "department")
MIN_PASSWORD = 10
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A hash to check against when the user does not exist, so both cases take the same time.
_DUMMY = _hasher.hash("no such account, same work")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password has {len(password)} characters; use at least {MIN_PASSWORD}")
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Attempt:
    """What a sign-in attempt leads to."""

    ok: bool
    locked: bool
    failed_attempts: int
    locked_until: datetime | None


def after_attempt(matched: bool, failed_before: int, locked_until: datetime | None, now: datetime,
                  rules: ConsoleRules) -> Attempt:
    """A locked account refuses even the right password until the lock ends; the wrong
    password for the `lock_after_failures`-th time in a row locks it."""
    if locked_until is not None and locked_until > now:
        return Attempt(False, True, failed_before, locked_until)
    failed_before = 0 if locked_until is not None else failed_before  # a lock that ended starts afresh
    if matched:
        return Attempt(True, False, 0, None)
    failed = failed_before + 1
    if failed >= rules.lock_after_failures:
        return Attempt(False, True, failed, now + timedelta(minutes=rules.lock_minutes))
    return Attempt(False, False, failed, None)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def session_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
