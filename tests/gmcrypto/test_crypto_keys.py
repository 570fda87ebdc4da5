"""Keyring: first-run creation, reload, rotation, Secrets/env loading, envelope encryption, files at rest."""

import base64
import io
import os
import stat

import pytest

from gmcrypto import aead
from gmcrypto.errors import DecryptionFailed, InvalidKey, InvalidSignature
from gmcrypto.keys import Keyring, kek_id
from gmcrypto.sm2 import PrivateKey


def test_first_run_creates_private_files_then_reloads_the_same_keys(tmp_path):
    d = tmp_path / "keys"
    ring = Keyring.load_or_create(d)
    files = [p for p in d.iterdir() if not p.name.startswith(".")]
    assert {p.suffix for p in files} == {".json", ".pem", ".b64"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    again = Keyring.load_or_create(d)
    assert again.signing_key.key_id == ring.signing_key.key_id and again.kek_id == ring.kek_id
    key_id, sig = ring.sign(b"checkpoint")
    again.verify(key_id, sig, b"checkpoint")


def test_signing_rotation_keeps_old_signatures_verifiable_and_destroys_the_old_private_key(tmp_path):
    d = tmp_path / "keys"
    ring = Keyring.load_or_create(d)
    old_id, old_sig = ring.sign(b"m")
    new_id = ring.rotate_signing_key()
    assert new_id != old_id and ring.sign(b"m")[0] == new_id
    reloaded = Keyring.load_or_create(d)
    assert reloaded.signing_key.key_id == new_id
    reloaded.verify(old_id, old_sig, b"m")
    assert set(reloaded.public_keys) == {old_id, new_id}
    assert not (d / f"signing-{old_id}.key.pem").exists()
    with pytest.raises(InvalidSignature):
        reloaded.verify(new_id, old_sig, b"m")
    with pytest.raises(InvalidSignature):
        reloaded.verify("0" * 32, old_sig, b"m")


def test_kek_rotation_keeps_old_data_keys_unwrappable(tmp_path):
    d = tmp_path / "keys"
    ring = Keyring.load_or_create(d)
    dk = aead.new_data_key()
    old_blob = ring.wrap_data_key(dk)
    old_kek = ring.kek_id
    assert ring.rotate_kek() != old_kek
    new_blob = ring.wrap_data_key(dk)
    assert aead.key_id_of(new_blob) == ring.kek_id
    reloaded = Keyring.load_or_create(d)
    assert reloaded.unwrap_data_key(old_blob) == dk == reloaded.unwrap_data_key(new_blob)


def test_wrapped_data_keys_fail_closed():
    ring = Keyring.generate()
    blob = ring.wrap_data_key(bytes(16))
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        ring.unwrap_data_key(bytes(bad))
    with pytest.raises(DecryptionFailed):
        Keyring.generate().unwrap_data_key(blob)  # another gateway's KEK id is unknown here
    with pytest.raises(InvalidKey):
        ring.wrap_data_key(b"short")


def test_from_pem_for_kubernetes_secrets():
    key = PrivateKey.generate()
    old = PrivateKey.generate()
    kek, old_kek = os.urandom(16), os.urandom(16)
    ring = Keyring.from_pem(
        key.to_pem(),
        base64.b64encode(kek).decode(),
        retired_public_pems=[old.public_key().to_pem()],
        retired_keks=[base64.b64encode(old_kek)],
    )
    assert ring.signing_key.key_id == key.key_id and ring.kek_id == kek_id(kek)
    ring.verify(old.key_id, old.sign(b"x"), b"x")
    by_old = Keyring.from_pem(key.to_pem(), old_kek)
    assert ring.unwrap_data_key(by_old.wrap_data_key(bytes(16))) == bytes(16)
    with pytest.raises(InvalidKey):
        Keyring.from_pem(key.to_pem(), "not base64!")
    with pytest.raises(InvalidKey):
        Keyring.from_pem(key.to_pem(), base64.b64encode(b"too short"))


def test_corrupt_keys_directory_is_a_clear_error(tmp_path):
    d = tmp_path / "keys"
    ring = Keyring.load_or_create(d)
    (d / f"signing-{ring.signing_key.key_id}.key.pem").write_bytes(b"garbage")
    with pytest.raises(InvalidKey):
        Keyring.load_or_create(d)


def test_repr_has_ids_only():
    ring = Keyring.generate()
    assert ring.kek_id in repr(ring) and "PRIVATE" not in repr(ring)


# --- files at rest --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_file_round_trip_in_memory(size):
    ring = Keyring.generate()
    data = os.urandom(size)
    out = io.BytesIO()
    assert ring.encrypt_file(io.BytesIO(data), out, aad=b"ds:people/v1", chunk_size=64) == size
    out.seek(0)
    assert ring.decrypt_file_to_bytes(out, aad=b"ds:people/v1") == data


def test_file_paths_are_written_atomically_and_decrypt_after_kek_rotation(tmp_path):
    ring = Keyring.load_or_create(tmp_path / "keys")
    src = tmp_path / "v1.parquet"
    src.write_bytes(b"PAR1" + os.urandom(5000) + b"PAR1")
    dst = tmp_path / "v1.parquet.sm4"
    ring.encrypt_file(src, dst, aad=b"v1", chunk_size=1024)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".v1")] == []
    ring.rotate_kek()
    assert ring.decrypt_file_to_bytes(dst, aad=b"v1") == src.read_bytes()
    streamed = io.BytesIO()
    with dst.open("rb") as f:
        ring.decrypt_file(f, streamed, aad=b"v1")
    assert streamed.getvalue() == src.read_bytes()


def test_file_tampering_truncation_extension_and_swapping_fail():
    ring = Keyring.generate()
    out = io.BytesIO()
    ring.encrypt_file(io.BytesIO(os.urandom(200)), out, aad=b"a", chunk_size=64)
    blob = out.getvalue()
    header = 12 + int.from_bytes(blob[10:12], "big")
    step = 64 + 16
    cases = {
        "flip": blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:],
        "truncated-at-chunk": blob[: header + 2 * step],
        "truncated-mid": blob[:-3],
        "extended": blob + blob[header : header + step],
        "reordered": blob[:header] + blob[header + step : header + 2 * step] + blob[header : header + step]
        + blob[header + 2 * step :],
        "not-a-file": b"PAR1" + blob[4:],
    }  # fmt: skip
    for name, bad in cases.items():
        with pytest.raises(DecryptionFailed):
            ring.decrypt_file_to_bytes(io.BytesIO(bad), aad=b"a")
        assert name
    with pytest.raises(DecryptionFailed):
        ring.decrypt_file_to_bytes(io.BytesIO(blob), aad=b"b")  # a file moved to another dataset/version
