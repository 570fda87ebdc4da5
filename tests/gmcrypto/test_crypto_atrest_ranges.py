"""Random access to files at rest: a range decrypts only the chunks it touches, each authenticated; a cut,
extended, reordered or moved file fails."""

import os
import random

import pytest

from gmcrypto.errors import DecryptionFailed
from gmcrypto.keys import Keyring

CHUNK = 64


def _sealed(tmp_path, ring, data, aad=b"ds:people/v1"):
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    ring.encrypt_file(src, dst, aad=aad, chunk_size=CHUNK)
    return dst


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_ranges_equal_the_plaintext_and_open_only_their_chunks(tmp_path, size):
    ring, data = Keyring.generate(), os.urandom(size)
    with ring.open_file(_sealed(tmp_path, ring, data), aad=b"ds:people/v1") as r:
        assert r.size == size and r.chunks_opened == 1  # the final chunk, opened to trust the size
        rng = random.Random(size)
        for _ in range(50):
            a = rng.randrange(size + 1)
            b = rng.randrange(a, size + 1)
            assert r.read(a, b - a) == data[a:b]
        with pytest.raises(ValueError):
            r.read(max(0, size - 1), 2)
    if size >= 5 * CHUNK:
        with ring.open_file(_sealed(tmp_path, ring, data), aad=b"ds:people/v1") as r:
            assert r.read(CHUNK + 3, CHUNK) == data[CHUNK + 3 : 2 * CHUNK + 3]
            assert r.chunks_opened == 3  # chunks 1 and 2, and the final one


def test_cut_extended_reordered_flipped_or_moved_files_fail(tmp_path):
    ring = Keyring.generate()
    blob = _sealed(tmp_path, ring, os.urandom(200), aad=b"a").read_bytes()
    header = 12 + int.from_bytes(blob[10:12], "big")
    step = CHUNK + 16
    on_open = {
        "truncated-at-chunk": blob[: header + 2 * step],
        "truncated-mid": blob[:-3],
        "extended": blob + blob[header : header + step],
        "flipped-final": blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:],
        "not-a-file": b"PAR1" + blob[4:],
    }
    for name, bad in on_open.items():
        (tmp_path / name).write_bytes(bad)
        with pytest.raises(DecryptionFailed):
            ring.open_file(tmp_path / name, aad=b"a")
    with pytest.raises(DecryptionFailed):
        ring.open_file(tmp_path / "sealed", aad=b"b")  # moved to another dataset/version
    reordered = blob[:header] + blob[header + step : header + 2 * step] + blob[header : header + step]
    (tmp_path / "reordered").write_bytes(reordered + blob[header + 2 * step :])
    with ring.open_file(tmp_path / "reordered", aad=b"a") as r, pytest.raises(DecryptionFailed):
        r.read(0, 1)
    flipped = bytearray(blob)
    flipped[header + step + 3] ^= 1  # inside chunk 1
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with ring.open_file(tmp_path / "flipped", aad=b"a") as r:
        r.read(0, CHUNK)  # chunk 0 is intact
        with pytest.raises(DecryptionFailed):
            r.read(CHUNK, 1)
