"""API token format: `pdg_<token id>_<secret>`, 256 random bits of secret, stored as SM3(secret)."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from gmcrypto import sm3

_TOKEN_RE = re.compile(r"^pdg_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewToken:
    token_id: str
    secret_hash: str
    plaintext: str  # shown once to the holder; never stored or logged


def new_token() -> NewToken:
    """A fresh token: 80-bit public id for lookup, 256-bit secret."""
    token_id = "".join(
        secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789") for _ in range(16)
    )
    secret = secrets.token_urlsafe(32)  # 43 chars, 256 bits
    return NewToken(token_id, sm3.hexdigest(secret.encode()), f"pdg_{token_id}_{secret}")


def parse(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed token, or None."""
    m = _TOKEN_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of the secret's hash with the stored one."""
    return hmac.compare_digest(sm3.hexdigest(secret.encode()), stored_hash)
