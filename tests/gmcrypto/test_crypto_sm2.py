"""SM2 recipe behaviour: keys, PEM, key ids, signatures, encryption, and rejection of bad keys."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gmcrypto.errors import DecryptionFailed, InvalidKey, InvalidSignature
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.wrap import unwrap_key, wrap_key


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def test_sign_verify_and_reject_other_data_and_keys(key):
    sig = key.sign(b"record 1")
    key.public_key().verify(sig, b"record 1")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, b"record 2")
    with pytest.raises(InvalidSignature):
        PrivateKey.generate().public_key().verify(sig, b"record 1")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(b"\x30\x00", b"record 1")


def test_signatures_are_randomised_der(key):
    a, b = key.sign(b"m"), key.sign(b"m")
    assert a != b  # a fresh k each time: a repeated k would reveal the private key
    assert a[0] == 0x30 and len(a) <= 72


def test_pem_round_trip_and_stable_key_id(key):
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = PrivateKey.from_pem(pem)
    assert again.key_id == key.key_id
    pub = PublicKey.from_pem(key.public_key().to_pem())
    assert pub == key.public_key() and pub.key_id == key.key_id
    assert PublicKey.from_der(pub.to_der()).key_id == key.key_id
    assert len(key.key_id) == 32 and int(key.key_id, 16) >= 0


def test_encrypted_pem_needs_the_password(key):
    pem = key.to_pem(b"s3cret")
    assert b"ENCRYPTED" in pem
    assert PrivateKey.from_pem(pem, b"s3cret").key_id == key.key_id
    with pytest.raises(InvalidKey):
        PrivateKey.from_pem(pem, b"wrong")


def test_encrypt_decrypt_and_tamper(key):
    ct = key.public_key().encrypt(b"0123456789abcdef")
    assert key.decrypt(ct) == b"0123456789abcdef"
    for i in (5, len(ct) // 2, len(ct) - 1):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(DecryptionFailed):
            key.decrypt(bytes(bad))
    with pytest.raises(DecryptionFailed):
        PrivateKey.generate().decrypt(ct)


def test_wrap_unwrap_data_key(key):
    dk = bytes(range(16))
    blob = wrap_key(dk, key.public_key())
    assert unwrap_key(blob, key) == dk
    with pytest.raises(DecryptionFailed):
        unwrap_key(blob, PrivateKey.generate())
    with pytest.raises(InvalidKey):
        wrap_key(b"short", key.public_key())


def _p256_pems() -> tuple[bytes, bytes]:
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv, pub


def test_keys_of_another_curve_are_rejected():
    priv, pub = _p256_pems()
    with pytest.raises(InvalidKey):
        PrivateKey.from_pem(priv)
    with pytest.raises(InvalidKey):
        PublicKey.from_pem(pub)


def test_garbage_and_off_curve_points_are_rejected(key):
    with pytest.raises(InvalidKey):
        PublicKey.from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidKey):
        PrivateKey.from_pem(b"not a key")
    raw = bytes.fromhex("04" + "11" * 64)  # (x, y) not on the SM2 curve
    with pytest.raises(InvalidKey):
        PublicKey.from_der(raw)
    der = bytearray(key.public_key().to_der())
    der[-1] ^= 0x01  # move y off the curve inside a well-formed SubjectPublicKeyInfo
    with pytest.raises(InvalidKey):
        PublicKey.from_der(bytes(der))


def test_encrypt_refuses_bulk_data(key):
    with pytest.raises(ValueError):
        key.public_key().encrypt(b"x" * 5000)
    with pytest.raises(ValueError):
        key.public_key().encrypt(b"")


def test_repr_never_shows_secrets(key):
    assert "PRIVATE" not in repr(key) and key.key_id in repr(key)
