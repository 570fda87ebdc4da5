"""SM4-GCM sealing of small messages (RFC 8998 parameters) with a self-describing header.

Sealed blob = header || ciphertext || tag, where

    header = b"PDGS" | version (1 byte, = 1) | len(key_id) (1 byte) | key_id (ASCII) | nonce (12 bytes)

The whole header is bound as associated data (before the caller's `aad`), so neither the key id nor
the nonce can be swapped. Nonces are random: at most ~2^32 seals per key keeps the collision chance
negligible, which is why data keys are per object and KEKs wrap only 16-byte data keys.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gmcrypto.errors import DecryptionFailed, InvalidKey

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
_MAGIC = b"PDGS"
_VERSION = 1


def new_data_key() -> bytes:
    """A fresh random 128-bit SM4 key."""
    return os.urandom(KEY_SIZE)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise InvalidKey("SM4 keys are 16 bytes")


def _header(key_id: str, nonce: bytes) -> bytes:
    kid = key_id.encode("ascii")
    if not 0 < len(kid) < 256:
        raise ValueError("key_id must be 1..255 ASCII characters")
    return _MAGIC + bytes([_VERSION, len(kid)]) + kid + nonce


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Raw SM4-GCM: ciphertext || tag. Internal building block; callers use seal()."""
    enc = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    out = enc.update(plaintext) + enc.finalize()
    return out + enc.tag


def gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    """Raw SM4-GCM open of ciphertext || tag; DecryptionFailed on any mismatch."""
    if len(data) < TAG_SIZE:
        raise DecryptionFailed("ciphertext too short")
    dec = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce, bytes(data[-TAG_SIZE:]))).decryptor()
    dec.authenticate_additional_data(aad)
    out = dec.update(bytes(data[:-TAG_SIZE]))
    try:
        return out + dec.finalize()
    except InvalidTag:
        raise DecryptionFailed("ciphertext, key or associated data do not match") from None


def seal(key: bytes, plaintext: bytes, *, aad: bytes = b"", key_id: str) -> bytes:
    """Encrypt and authenticate `plaintext` (and `aad`) under `key`; the blob names `key_id`."""
    _check_key(key)
    header = _header(key_id, os.urandom(NONCE_SIZE))
    return header + gcm_encrypt(key, header[-NONCE_SIZE:], bytes(plaintext), header + bytes(aad))


def _split(blob: bytes) -> tuple[bytes, str, bytes, bytes]:
    """(header, key_id, nonce, ciphertext||tag) or DecryptionFailed if the blob is malformed."""
    blob = bytes(blob)
    if len(blob) < 6 or blob[:4] != _MAGIC or blob[4] != _VERSION:
        raise DecryptionFailed("not a sealed SM4-GCM blob (or an unknown version)")
    end = 6 + blob[5] + NONCE_SIZE
    if len(blob) < end + TAG_SIZE:
        raise DecryptionFailed("sealed blob is truncated")
    try:
        key_id = blob[6 : 6 + blob[5]].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionFailed("sealed blob has a malformed key id") from None
    return blob[:end], key_id, blob[end - NONCE_SIZE : end], blob[end:]


def key_id_of(blob: bytes) -> str:
    """The key id a sealed blob names, so the caller can pick the key (not authenticated until opened)."""
    return _split(blob)[1]


def open_sealed(key: bytes, blob: bytes, *, aad: bytes = b"", key_id: str | None = None) -> bytes:
    """Authenticate and decrypt a sealed blob; DecryptionFailed on any mismatch (key, aad, key id, bytes)."""
    _check_key(key)
    header, kid, nonce, body = _split(blob)
    if key_id is not None and kid != key_id:
        raise DecryptionFailed("sealed under another key id")
    return gcm_decrypt(key, nonce, body, header + bytes(aad))


open_ = open_sealed
