"""Opaque keyset cursors, bound to one query shape and one dataset version, signed with HMAC-SM3.

A cursor is `base64url(payload) "." base64url(tag)`. The payload is compact JSON holding the
sort-key values of the last row served (SQLite-native values: str, int, float, None) plus short
fingerprints of the query shape and version, used only to say *why* a cursor is refused. The tag
covers the payload and the full shape and version, so a cursor replayed against another filter,
sort or version fails verification even if the fingerprints were edited to match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac  # stdlib compare_digest only: the MAC itself is gmcrypto's HMAC-SM3
import json
from typing import Any

from common.errors import BadRequest
from gmcrypto.sm3 import hmac_sm3

_DOMAIN = b"pdg-open-rows-cursor-v1\x00"
_TAG_BYTES = 16  # truncated HMAC-SM3 (RFC 2104 allows >= half the output); keeps URLs short
MAX_CURSOR_CHARS = 4096
_RESTART = "; drop _cursor and start again from the first page"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fingerprint(text: str) -> str:
    # Not a secret: only lets us tell "other query" from "tampered" in the error message.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _mac_input(payload: bytes, version: str, shape: str) -> bytes:
    v, s = version.encode("utf-8"), shape.encode("utf-8")
    return _DOMAIN + len(v).to_bytes(4, "big") + v + len(s).to_bytes(4, "big") + s + payload


def encode_cursor(key: bytes, *, version: str, shape: str, values: list[Any]) -> str:
    """Sign the sort-key values of the last row served into an opaque cursor string."""
    if len(key) < 16:
        raise ValueError("cursor key must be at least 16 bytes")
    body = {"k": values, "q": _fingerprint(shape), "d": _fingerprint(version)}
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    tag = hmac_sm3(key, _mac_input(payload, version, shape))[:_TAG_BYTES]
    return _b64e(payload) + "." + _b64e(tag)


def decode_cursor(key: bytes, token: str, *, version: str, shape: str, arity: int) -> list[Any]:
    """Verify a cursor for this version and query shape and return its `arity` key values.

    Raises BadRequest for anything malformed, altered, or made for another query or version.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_CURSOR_CHARS:
        raise BadRequest("_cursor is empty or too long" + _RESTART)
    head, dot, tail = token.partition(".")
    try:
        payload, tag = _b64d(head), _b64d(tail)
    except (binascii.Error, ValueError):
        raise BadRequest("_cursor is not a cursor this server issued" + _RESTART) from None
    if not dot or len(tag) != _TAG_BYTES:
        raise BadRequest("_cursor is truncated or malformed" + _RESTART)
    expected = hmac_sm3(key, _mac_input(payload, version, shape))[:_TAG_BYTES]
    if not hmac.compare_digest(expected, tag):
        raise BadRequest(_why_refused(payload, version, shape))
    body = json.loads(payload)  # signed by us, so well-formed
    values = body.get("k")
    if not isinstance(values, list) or len(values) != arity:
        raise BadRequest("_cursor does not fit this query's sort" + _RESTART)
    return values


def _why_refused(payload: bytes, version: str, shape: str) -> str:
    """Best-effort reason from the unauthenticated fingerprints; never trusted for acceptance."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        if body.get("d") not in (None, _fingerprint(version)):
            return "_cursor belongs to another version of this dataset" + _RESTART
        if body.get("q") not in (None, _fingerprint(shape)):
            return "_cursor was issued for different filters or sort" + _RESTART
    return "_cursor is invalid or was altered" + _RESTART
