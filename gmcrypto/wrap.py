"""Wrap a data key to an SM2 public key (SM2 encryption, GM/T 0009 DER C1C3C2) and unwrap it."""

from __future__ import annotations

from gmcrypto.aead import KEY_SIZE
from gmcrypto.errors import DecryptionFailed, InvalidKey
from gmcrypto.sm2 import PrivateKey, PublicKey


def wrap_key(data_key: bytes, recipient: PublicKey) -> bytes:
    """SM2-encrypt a 16-byte SM4 data key to `recipient`."""
    if not isinstance(data_key, bytes | bytearray) or len(data_key) != KEY_SIZE:
        raise InvalidKey("data keys are 16 bytes")
    return recipient.encrypt(bytes(data_key))


def unwrap_key(blob: bytes, private: PrivateKey) -> bytes:
    """Recover the data key; DecryptionFailed if the blob is not for this key, altered, or not a data key."""
    key = private.decrypt(blob)
    if len(key) != KEY_SIZE:
        raise DecryptionFailed("wrapped blob does not hold a data key")
    return key
