"""Chunked SM4-GCM streams (the STREAM construction) shared by export packages and files at rest.

Chunk i of a stream under a fresh data key is SM4-GCM with

    nonce = i (8 bytes, big-endian) || final (4 bytes, big-endian: 1 for the last chunk, else 0)
    aad   = prefix || i (8 bytes, big-endian) || final (1 byte)

and is written as ciphertext || 16-byte tag. Every chunk but the last holds exactly `chunk_size`
plaintext bytes; the last holds 0..chunk_size (an empty input is one empty final chunk). Binding the
index and the final flag into nonce and AAD makes reordering, truncation at a chunk boundary and
extension fail authentication. Nonces are deterministic, which is safe only because every stream
uses its own random data key: never call these functions twice with one key.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gmcrypto.errors import DecryptionFailed

TAG_SIZE = 16
DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 16 << 20


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(8, "big") + (1 if final else 0).to_bytes(4, "big")


def _aad(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def read_full(src: BinaryIO, n: int) -> bytes:
    """Read exactly n bytes unless EOF comes first (pipes and sockets return short reads)."""
    data = src.read(n)
    if data is None:
        data = b""
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class BackgroundSM3:
    """SM3 over a sequence of buffers, computed on a helper thread so it overlaps with SM4.

    hashlib's OpenSSL binding releases the GIL on large updates (cryptography's Hash does not), so
    on two cores sealing runs at the SM4 rate instead of SM4 + SM3 in series. At most one update is
    in flight, which bounds memory to two chunks.
    """

    def __init__(self) -> None:
        try:
            self._h: Any = hashlib.new("sm3")
            self._threaded = True
        except ValueError:  # pragma: no cover - Python built against an OpenSSL without SM3
            self._h = hashes.Hash(hashes.SM3())
            self._threaded = False
        self._pool = ThreadPoolExecutor(max_workers=1) if self._threaded else None
        self._pending: Future[None] | None = None

    def update(self, data: bytes | memoryview) -> None:
        """Queue `data` (must not be mutated until the next update() or digest() returns)."""
        if self._pool is None:
            self._h.update(data)
            return
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._h.update, data)

    def digest(self) -> bytes:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            return self._h.digest()
        return self._h.finalize()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def encrypt_stream(
    key: bytes,
    prefix: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    chunk_size: int,
    digest: BackgroundSM3 | None = None,
) -> tuple[int, int]:
    """Encrypt src to dst in chunks; returns (chunk_count, plaintext_length). Feeds ciphertext to digest."""
    sm4 = algorithms.SM4(bytes(key))
    bufs = [bytearray(chunk_size + 15), bytearray(chunk_size + 15)]  # double buffer for the hash thread
    cur = read_full(src, chunk_size)
    index = total = 0
    while True:
        nxt = read_full(src, chunk_size) if len(cur) == chunk_size else b""
        final = not nxt
        enc = Cipher(sm4, modes.GCM(_nonce(index, final))).encryptor()
        enc.authenticate_additional_data(_aad(prefix, index, final))
        buf = bufs[index & 1]
        n = enc.update_into(cur, buf)
        enc.finalize()
        buf[n : n + TAG_SIZE] = enc.tag
        view = memoryview(buf)[: n + TAG_SIZE]
        dst.write(view)
        if digest is not None:
            digest.update(view)
        total += len(cur)
        index += 1
        if final:
            return index, total
        cur = nxt


def decrypt_chunk(key_alg: algorithms.SM4, prefix: bytes, index: int, final: bool, data: bytes) -> bytes:
    """Authenticate then return one chunk's plaintext; DecryptionFailed if anything is off."""
    if len(data) < TAG_SIZE:
        raise DecryptionFailed("chunk too short")
    dec = Cipher(key_alg, modes.GCM(_nonce(index, final), data[-TAG_SIZE:])).decryptor()
    dec.authenticate_additional_data(_aad(prefix, index, final))
    out = dec.update(memoryview(data)[:-TAG_SIZE])
    try:
        dec.finalize()
    except InvalidTag:
        raise DecryptionFailed("chunk does not authenticate") from None
    return out


def decrypt_stream(
    key: bytes,
    prefix: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    chunk_size: int,
    *,
    chunk_count: int | None = None,
    digest: BackgroundSM3 | None = None,
) -> int:
    """Decrypt a chunked stream; each chunk reaches dst only after its tag verified. Returns length.

    With chunk_count the stream is exactly that many chunks (the package's manifest says so); without
    it the end of src marks the final chunk (files at rest), and the final flag catches truncation.
    """
    sm4 = algorithms.SM4(bytes(key))
    step = chunk_size + TAG_SIZE
    cur = read_full(src, step)
    index = total = 0
    while True:
        if chunk_count is not None:
            final = index == chunk_count - 1
            nxt = b""
        else:
            nxt = read_full(src, step) if len(cur) == step else b""
            final = not nxt
        if (not final and len(cur) != step) or len(cur) < TAG_SIZE:
            raise DecryptionFailed("stream is truncated")
        if digest is not None:
            digest.update(cur)
        plain = decrypt_chunk(sm4, prefix, index, final, cur)
        dst.write(plain)
        total += len(plain)
        index += 1
        if final:
            return total
        cur = nxt if chunk_count is None else read_full(src, step)
