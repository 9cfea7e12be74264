"""The short-lived tokens the console signs for the person signed in (EdDSA JWTs). Every
service verifies them with the console's public key (shared/http.py), so what the person
does there is recorded under their name."""

from __future__ import annotations

import time
from collections.abc import Sequence

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from shared.http import CONSOLE_AUDIENCE, CONSOLE_ISSUER, CONSOLE_TOKEN_MAX_SECONDS, ConsoleKeyError, decode_ed25519_key


def signing_key(text: str) -> Ed25519PrivateKey:
    """The console's private key from AFTERSALES_CONSOLE_SIGNING_KEY (PEM or base64 raw)."""
    if not text.strip():
        raise ConsoleKeyError("AFTERSALES_CONSOLE_SIGNING_KEY is not set; `aftersales infra up` puts a key pair in "
                              ".local/secrets.env, or make one with `aftersales console keys`")
    if text.strip().startswith("-----BEGIN"):
        key = load_pem_private_key(text.strip().encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConsoleKeyError("AFTERSALES_CONSOLE_SIGNING_KEY is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(decode_ed25519_key(text, "AFTERSALES_CONSOLE_SIGNING_KEY"))


def person_token(key: Ed25519PrivateKey, person: str, role: str, minutes: float, *, now: float | None = None,
                 department: str | None = None, regions: Sequence[str] = (), dealers: Sequence[str] = ()) -> str:
    """A token for one person and role, valid `minutes` (at most 15); a department person's
    names the department (the services show them only its cases). Its times are wall time:
    a security window, not business time."""
    issued = int(now if now is not None else time.time())
    lifetime = min(int(minutes * 60), CONSOLE_TOKEN_MAX_SECONDS)
    claims = {"iss": CONSOLE_ISSUER, "aud": CONSOLE_AUDIENCE, "sub": person, "role": role, "iat": issued,
              "exp": issued + lifetime}
    if department:
        claims["department"] = department
    if regions:  # an agent's scope (their account's regions and dealers): the services hold them to it
        claims["regions"] = list(regions)
    if dealers:
        claims["dealers"] = list(dealers)
    return jwt.encode(claims, key, algorithm="EdDSA")
