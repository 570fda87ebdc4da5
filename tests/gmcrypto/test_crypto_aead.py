"""SM4-GCM seal/open: round trips, and every way a blob can be wrong fails with DecryptionFailed."""

import pytest

from gmcrypto import aead
from gmcrypto.errors import DecryptionFailed, InvalidKey

KEY = bytes(range(16))


def test_round_trip_with_aad_and_key_id():
    blob = aead.seal(KEY, b"secret row", aad=b"ctx", key_id="k1")
    assert aead.key_id_of(blob) == "k1"
    assert aead.open_sealed(KEY, blob, aad=b"ctx") == b"secret row"
    assert aead.open_(KEY, blob, aad=b"ctx", key_id="k1") == b"secret row"
    assert b"secret row" not in blob


def test_nonces_are_fresh():
    assert aead.seal(KEY, b"x", key_id="k") != aead.seal(KEY, b"x", key_id="k")


def test_empty_plaintext():
    assert aead.open_sealed(KEY, aead.seal(KEY, b"", key_id="k")) == b""


def test_every_byte_flip_is_detected():
    blob = aead.seal(KEY, b"0123456789", aad=b"a", key_id="kid")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x80
        with pytest.raises(DecryptionFailed):
            aead.open_sealed(KEY, bytes(bad), aad=b"a")


@pytest.mark.parametrize(
    "change",
    [
        lambda b: {"key": bytes(16), "blob": b, "aad": b"a"},
        lambda b: {"key": KEY, "blob": b, "aad": b"b"},
        lambda b: {"key": KEY, "blob": b[:-1], "aad": b"a"},
        lambda b: {"key": KEY, "blob": b + b"\0", "aad": b"a"},
        lambda b: {"key": KEY, "blob": b[:10], "aad": b"a"},
        lambda b: {"key": KEY, "blob": b"", "aad": b"a"},
    ],
    ids=["wrong-key", "wrong-aad", "truncated", "extended", "header-only", "empty"],
)
def test_mismatches_fail(change):
    args = change(aead.seal(KEY, b"payload", aad=b"a", key_id="kid"))
    with pytest.raises(DecryptionFailed):
        aead.open_sealed(args["key"], args["blob"], aad=args["aad"])


def test_expected_key_id_is_enforced():
    blob = aead.seal(KEY, b"p", key_id="kid")
    with pytest.raises(DecryptionFailed):
        aead.open_sealed(KEY, blob, key_id="other")


def test_bad_keys_and_key_ids_are_refused():
    with pytest.raises(InvalidKey):
        aead.seal(b"short", b"p", key_id="k")
    with pytest.raises(ValueError):
        aead.seal(KEY, b"p", key_id="")
    assert len(aead.new_data_key()) == 16 and aead.new_data_key() != aead.new_data_key()
