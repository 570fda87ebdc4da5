"""Export packages: round trips, and every tampering (flip, truncation, reorder, swap, extension,
wrong or foreign keys) is rejected with InvalidPackage and never yields wrong plaintext."""

import base64
import io
import os
from datetime import UTC, datetime

import pytest

from common import clock
from gmcrypto import _stream
from gmcrypto.errors import InvalidPackage
from gmcrypto.keys import Keyring
from gmcrypto.package import HEADER, TRAILER_SIZE, Manifest, open_package, seal_package, verify_package
from gmcrypto.sm2 import PrivateKey
from gmcrypto.wrap import unwrap_key

REFS = {"grant": "g-17", "query": "q-42", "dataset": "population/v3"}
CHUNK = 16
DATA = bytes(range(40))  # three chunks of 16, 16 and 8 bytes


@pytest.fixture(scope="module")
def gateway() -> Keyring:
    return Keyring.generate()


@pytest.fixture(scope="module")
def enterprise() -> PrivateKey:
    return PrivateKey.generate()


def _seal(gateway, enterprise, data=DATA, chunk=CHUNK, refs=REFS) -> tuple[bytes, Manifest]:
    out = io.BytesIO()
    m = seal_package(io.BytesIO(data), out, recipient=enterprise.public_key(), signer=gateway,
                     references=refs, chunk_size=chunk)  # fmt: skip
    return out.getvalue(), m


def _open(blob, gateway, enterprise) -> bytes:
    out = io.BytesIO()
    open_package(io.BytesIO(blob), out, private=enterprise, trusted=gateway.public_keys)
    return out.getvalue()


@pytest.fixture(scope="module")
def small(gateway, enterprise) -> bytes:
    return _seal(gateway, enterprise)[0]


class _Trickle(io.RawIOBase):
    """A pipe-like source: short reads, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n, 7)
        chunk, self._data = bytes(self._data[:n]), self._data[n:]
        return chunk


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 32, 1000])
def test_round_trip_sizes(gateway, enterprise, size):
    data = os.urandom(size)
    blob, m = _seal(gateway, enterprise, data)
    assert m.total_length == size and m.chunk_count == max(1, -(-size // CHUNK))
    assert _open(blob, gateway, enterprise) == data
    assert size < 16 or data not in blob  # short strings can occur in random bytes by chance


def test_manifest_is_signed_and_describes_the_package(gateway, enterprise):
    clock.set_clock(lambda: datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    try:
        blob, m = _seal(gateway, enterprise)
    finally:
        clock.set_clock(None)
    v = verify_package(io.BytesIO(blob), [gateway.public_key])
    assert v == m and v.references == REFS and v.created == "2026-03-01T08:00:00Z"
    assert v.signer_key_id == gateway.signing_key.key_id
    assert v.recipient_key_id == enterprise.key_id
    assert (v.format_version, v.cipher, v.chunk_size, v.chunk_count, v.total_length) == (
        1,
        "SM4-GCM",
        16,
        3,
        40,
    )
    assert len(v.payload_sm3) == 64 and v.signature


def test_streaming_from_a_pipe_like_source(gateway, enterprise):
    data = os.urandom(5000)
    out = io.BytesIO()
    seal_package(_Trickle(data), out, recipient=enterprise.public_key(), signer=gateway.signing_key,
                 references={}, chunk_size=1024)  # fmt: skip
    assert _open(out.getvalue(), gateway, enterprise) == data


def test_package_files_by_path(gateway, enterprise, tmp_path):
    blob, m = _seal(gateway, enterprise)
    (tmp_path / "p.pdgpkg").write_bytes(blob)
    assert verify_package(tmp_path / "p.pdgpkg", gateway.public_keys) == m
    with pytest.raises(InvalidPackage):
        verify_package(tmp_path / "missing.pdgpkg", gateway.public_keys)


def test_every_single_byte_flip_is_rejected_and_never_yields_wrong_plaintext(small, gateway, enterprise):
    for i in range(len(small)):
        bad = bytearray(small)
        bad[i] ^= 0x01
        with pytest.raises(InvalidPackage):
            verify_package(io.BytesIO(bytes(bad)), gateway.public_keys)
        out = io.BytesIO()
        with pytest.raises(InvalidPackage):
            open_package(io.BytesIO(bytes(bad)), out, private=enterprise, trusted=gateway.public_keys)
        # Whatever reached dst before the failure was authenticated: a true prefix, never altered bytes.
        assert DATA.startswith(out.getvalue()), i


def test_every_truncation_is_rejected(small, gateway, enterprise):
    for n in range(len(small)):
        with pytest.raises(InvalidPackage):
            verify_package(io.BytesIO(small[:n]), gateway.public_keys)
        with pytest.raises(InvalidPackage):
            _open(small[:n], gateway, enterprise)


def _chunks(blob: bytes) -> tuple[bytes, list[bytes], bytes]:
    step = CHUNK + _stream.TAG_SIZE
    payload_end = len(HEADER) + 2 * step + 8 + _stream.TAG_SIZE
    body = blob[len(HEADER) : payload_end]
    return blob[: len(HEADER)], [body[:step], body[step : 2 * step], body[2 * step :]], blob[payload_end:]


def test_reordered_chunks_are_rejected(small, gateway, enterprise):
    head, (c0, c1, c2), tail = _chunks(small)
    for bad in (head + c1 + c0 + c2 + tail, head + c0 + c0 + c2 + tail):
        with pytest.raises(InvalidPackage):
            verify_package(io.BytesIO(bad), gateway.public_keys)
        with pytest.raises(InvalidPackage):
            _open(bad, gateway, enterprise)


def test_extension_and_removal_of_chunks_are_rejected(small, gateway, enterprise):
    head, (c0, c1, c2), tail = _chunks(small)
    for bad in (head + c0 + c1 + c1 + c2 + tail, head + c0 + c2 + tail, small + b"\0" * 16, small + small):
        with pytest.raises(InvalidPackage):
            _open(bad, gateway, enterprise)


def test_swapped_manifest_is_rejected(gateway, enterprise):
    a, _ = _seal(gateway, enterprise, os.urandom(40))
    b, _ = _seal(gateway, enterprise, os.urandom(40))
    head, chunks_a, _ = _chunks(a)
    _, _, tail_b = _chunks(b)
    swapped = head + b"".join(chunks_a) + tail_b
    with pytest.raises(InvalidPackage):
        verify_package(io.BytesIO(swapped), gateway.public_keys)
    with pytest.raises(InvalidPackage):
        _open(swapped, gateway, enterprise)


def test_recipient_cannot_substitute_a_payload_under_the_gateway_signature(gateway, enterprise):
    # The recipient knows the data key, so could re-encrypt chunks; the signed SM3 payload digest catches it.
    blob, m = _seal(gateway, enterprise)
    dk = unwrap_key(base64.b64decode(m.wrapped_key), enterprise)
    forged = io.BytesIO()
    prefix = HEADER + bytes.fromhex(m.package_id)
    _stream.encrypt_stream(dk, prefix, io.BytesIO(b"X" * 40), forged, CHUNK)
    head, _, tail = _chunks(blob)
    bad = head + forged.getvalue() + tail
    with pytest.raises(InvalidPackage, match="digest"):
        verify_package(io.BytesIO(bad), gateway.public_keys)
    with pytest.raises(InvalidPackage, match="digest"):
        _open(bad, gateway, enterprise)


def test_wrong_private_key_is_rejected(small, gateway):
    with pytest.raises(InvalidPackage, match="is for key"):
        _open(small, gateway, PrivateKey.generate())


def test_untrusted_or_forged_signer_is_rejected(small, gateway, enterprise):
    other = Keyring.generate()
    with pytest.raises(InvalidPackage, match="not trusted"):
        verify_package(io.BytesIO(small), other.public_keys)
    # An attacker re-signs a package with their own key: a valid signature, but not by a trusted key.
    forged, _ = _seal(other, enterprise)
    with pytest.raises(InvalidPackage, match="not trusted"):
        _open(forged, gateway, enterprise)


def test_packages_signed_before_a_rotation_still_verify(enterprise):
    ring = Keyring.generate()
    blob, m = _seal(ring, enterprise)
    ring.rotate_signing_key()
    assert verify_package(io.BytesIO(blob), ring.public_keys) == m
    with pytest.raises(InvalidPackage):
        verify_package(io.BytesIO(blob), [ring.public_key])  # only the new key: not trusted


def test_not_a_package(gateway, enterprise):
    for junk in (b"", b"PK\x03\x04" + os.urandom(100), HEADER + b"\0" * 40):
        with pytest.raises(InvalidPackage):
            verify_package(io.BytesIO(junk), gateway.public_keys)
    assert TRAILER_SIZE == 16


def test_bad_arguments_are_refused(gateway, enterprise):
    with pytest.raises(ValueError):
        _seal(gateway, enterprise, refs={"grant": object()})
    with pytest.raises(ValueError):
        _seal(gateway, enterprise, chunk=8)
    with pytest.raises(ValueError):
        verify_package(io.BytesIO(b""), [])
