"""SM3 (GB/T 32905) hashing and HMAC-SM3, backed by `cryptography` (OpenSSL)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

DIGEST_SIZE = 32


def digest(data: bytes) -> bytes:
    """SM3 of `data` (32 bytes)."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def hexdigest(data: bytes) -> str:
    return digest(data).hex()


class Hasher:
    """Incremental SM3 for streams."""

    def __init__(self) -> None:
        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.copy().finalize()

    def hexdigest(self) -> str:
        return self.digest().hex()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC-SM3 (32 bytes)."""
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def hmac_verify(key: bytes, data: bytes, tag: bytes) -> bool:
    """Constant-time check of an HMAC-SM3 tag."""
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    try:
        h.verify(tag)
    except Exception:
        return False
    return True
