"""The portal's session cookie: the API token sealed (SM4-GCM) under a key derived from the app secret.

The cookie is stateless: it carries {token, csrf, expiry} sealed with a key derived by HMAC-SM3 from
`state.secret_key`, so the browser holds neither a readable token nor anything it can forge. The cookie
is HttpOnly (no script reads it), SameSite=Lax, Secure when TLS is terminated in front of the gateway.
Every visitor, signed in or not, gets one so that even the sign-in form carries a CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass

from gmcrypto import aead
from gmcrypto.errors import DecryptionFailed
from gmcrypto.sm3 import hmac_sm3

COOKIE = "pdg_session"
LANG_COOKIE = "pdg_lang"
MAX_AGE = 8 * 3600  # a working day; the token's own expiry still applies on every request
_AAD = b"pdg-web-session-v1"
_KEY_ID = "web-session"


@dataclass(frozen=True)
class WebSession:
    """What the cookie holds: the token (None when anonymous), the CSRF token and the expiry (epoch s)."""

    token: str | None
    csrf: str
    expires: int

    @property
    def signed_in(self) -> bool:
        return self.token is not None


def _key(secret_key: bytes) -> bytes:
    # A separate key per purpose: the secret also signs cursors, so never use it directly here.
    return hmac_sm3(secret_key, b"pdg web session key")[: aead.KEY_SIZE]


def new_session(token: str | None = None, *, now: float | None = None) -> WebSession:
    """A fresh session (with a fresh CSRF token): at first visit, at sign-in and at sign-out."""
    return WebSession(token=token, csrf=secrets.token_urlsafe(24), expires=int((now or time.time()) + MAX_AGE))


def seal(session: WebSession, secret_key: bytes) -> str:
    """The cookie value."""
    body = json.dumps({"t": session.token, "c": session.csrf, "e": session.expires}).encode()
    blob = aead.seal(_key(secret_key), body, aad=_AAD, key_id=_KEY_ID)
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def unseal(value: str | None, secret_key: bytes, *, now: float | None = None) -> WebSession | None:
    """The session in a cookie value, or None when it is missing, forged, tampered with or expired."""
    if not value or len(value) > 4096:
        return None
    try:
        blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(aead.open_sealed(_key(secret_key), blob, aad=_AAD, key_id=_KEY_ID))
        session = WebSession(token=data["t"], csrf=str(data["c"]), expires=int(data["e"]))
    except (DecryptionFailed, binascii.Error, ValueError, KeyError, TypeError):
        return None
    if session.expires <= (now or time.time()):
        return None
    return session


def csrf_ok(session: WebSession | None, submitted: str | None) -> bool:
    """The submitted CSRF token equals the session's (constant-time)."""
    return bool(session and submitted) and secrets.compare_digest(session.csrf, str(submitted))
