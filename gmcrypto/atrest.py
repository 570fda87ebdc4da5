"""Files encrypted at rest (e.g. catalog Parquet): chunked SM4-GCM under a fresh data key wrapped by a KEK.

Layout (big-endian):

    b"PDGF" | version u8 (= 1) | 0 u8 | chunk_size u32 | len(wrapped) u16 | wrapped data key (aead blob)
    then the chunk stream of gmcrypto._stream with AAD prefix = that header || len(aad) u32 || aad

The caller's `aad` (e.g. b"dataset:people/v3") ties a file to its place, so swapping two encrypted
files is detected. Wrapping and unwrapping go through callables so the Keyring stays in charge of KEKs.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from gmcrypto import _stream
from gmcrypto.aead import new_data_key
from gmcrypto.errors import DecryptionFailed

MAGIC = b"PDGF"
VERSION = 1
_FIXED = 12


def _prefix(header: bytes, aad: bytes) -> bytes:
    return header + len(aad).to_bytes(4, "big") + aad


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, *, wrap: Callable[[bytes], bytes], aad: bytes, chunk_size: int
) -> int:
    """Encrypt src to dst with a fresh data key; returns the plaintext length."""
    data_key = new_data_key()
    wrapped = wrap(data_key)
    header = (
        MAGIC
        + bytes([VERSION, 0])
        + chunk_size.to_bytes(4, "big")
        + len(wrapped).to_bytes(2, "big")
        + wrapped
    )
    dst.write(header)
    _count, total = _stream.encrypt_stream(data_key, _prefix(header, aad), src, dst, chunk_size)
    return total


def decrypt_stream(src: BinaryIO, dst: BinaryIO, *, unwrap: Callable[[bytes], bytes], aad: bytes) -> int:
    """Decrypt what encrypt_stream wrote; DecryptionFailed on any mismatch. Returns the length."""
    fixed = _stream.read_full(src, _FIXED)
    if len(fixed) != _FIXED or fixed[:4] != MAGIC or fixed[4] != VERSION:
        raise DecryptionFailed("not an encrypted data file (or an unknown version)")
    chunk_size = int.from_bytes(fixed[6:10], "big")
    wlen = int.from_bytes(fixed[10:12], "big")
    wrapped = _stream.read_full(src, wlen)
    if len(wrapped) != wlen or not 16 <= chunk_size <= _stream.MAX_CHUNK:
        raise DecryptionFailed("encrypted data file header is damaged")
    data_key = unwrap(wrapped)
    return _stream.decrypt_stream(data_key, _prefix(fixed + wrapped, aad), src, dst, chunk_size)


@contextlib.contextmanager
def _reader(src: Path | BinaryIO) -> Iterator[BinaryIO]:
    """Open a path (and close it after) or pass an open stream through untouched."""
    if isinstance(src, str | os.PathLike):
        with Path(src).open("rb") as f:
            yield f
    else:
        yield src


def _atomic_output(dst: Path) -> tuple[BinaryIO, str]:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    return os.fdopen(fd, "wb"), tmp


def encrypt_file(
    src: Path | BinaryIO,
    dst: Path | BinaryIO,
    *,
    wrap: Callable[[bytes], bytes],
    aad: bytes = b"",
    chunk_size: int = _stream.DEFAULT_CHUNK,
) -> int:
    """Encrypt a file or stream; a Path destination appears atomically (temp file, fsync, rename)."""
    with _reader(src) as fin:
        if not isinstance(dst, str | os.PathLike):
            return encrypt_stream(fin, dst, wrap=wrap, aad=aad, chunk_size=chunk_size)
        out, tmp = _atomic_output(Path(dst))
        try:
            with out:
                n = encrypt_stream(fin, out, wrap=wrap, aad=aad, chunk_size=chunk_size)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return n


def decrypt_file_to_bytes(
    src: Path | BinaryIO, *, unwrap: Callable[[bytes], bytes], aad: bytes = b""
) -> bytes:
    """Decrypt into memory only (what the sandbox does): nothing plaintext touches the disk."""
    buf = io.BytesIO()
    with _reader(src) as fin:
        decrypt_stream(fin, buf, unwrap=unwrap, aad=aad)
    return buf.getvalue()


class RangeReader:
    """Random access to the plaintext of a file at rest: decrypts only the chunks a byte range covers.

    Chunks are independent (each has its own nonce, AAD and tag), so any subset can be opened. The final
    chunk is opened here, on open: it is authenticated with the final flag at the position the file's
    length implies, so a file cut or extended at any point fails before `size` is trusted.
    """

    def __init__(self, path: Path, *, unwrap: Callable[[bytes], bytes], aad: bytes = b"") -> None:
        self._f = Path(path).open("rb")  # noqa: SIM115 - closed by close() / the context manager
        try:
            fixed = _stream.read_full(self._f, _FIXED)
            if len(fixed) != _FIXED or fixed[:4] != MAGIC or fixed[4] != VERSION:
                raise DecryptionFailed("not an encrypted data file (or an unknown version)")
            self._chunk = int.from_bytes(fixed[6:10], "big")
            wlen = int.from_bytes(fixed[10:12], "big")
            wrapped = _stream.read_full(self._f, wlen)
            if len(wrapped) != wlen or not 16 <= self._chunk <= _stream.MAX_CHUNK:
                raise DecryptionFailed("encrypted data file header is damaged")
            self._body = _FIXED + wlen
            self._prefix = _prefix(fixed + wrapped, aad)
            self._key = _stream.algorithms.SM4(bytes(unwrap(wrapped)))
            body = os.fstat(self._f.fileno()).st_size - self._body
            step = self._chunk + _stream.TAG_SIZE
            self._count = max(1, -(-body // step))
            self._plain: dict[int, bytes] = {}  # opened chunks, by index
            last = self._open(self._count - 1)
            self.size = (self._count - 1) * self._chunk + len(last)
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()
        self._plain.clear()

    def _open(self, index: int) -> bytes:
        got = self._plain.get(index)
        if got is None:
            step = self._chunk + _stream.TAG_SIZE
            self._f.seek(self._body + index * step)
            data = _stream.read_full(self._f, step)
            final = index == self._count - 1
            if not final and len(data) != step:
                raise DecryptionFailed("stream is truncated")
            got = self._plain[index] = _stream.decrypt_chunk(self._key, self._prefix, index, final, data)
        return got

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext bytes [offset, offset + length), every chunk they touch authenticated first."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError("range outside the file")
        if length == 0:
            return b""
        first, last = offset // self._chunk, (offset + length - 1) // self._chunk
        joined = b"".join(self._open(i) for i in range(first, last + 1))
        start = offset - first * self._chunk
        return joined[start : start + length]

    @property
    def chunks_opened(self) -> int:
        return len(self._plain)

    @property
    def bytes_opened(self) -> int:
        """Plaintext bytes decrypted so far (whole chunks)."""
        return sum(len(c) for c in self._plain.values())
