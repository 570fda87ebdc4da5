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
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
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


# SM4 in `cryptography` holds the GIL, so threads do not decrypt in parallel: a read of many chunks hands
# half of them to one helper process (the gateway's own, never a sandbox worker) and opens the other half
# here meanwhile. Below this many chunks the round trip is not worth it.
PARALLEL_MIN_CHUNKS = 4
_helper_lock = threading.Lock()
_helper: ProcessPoolExecutor | None = None
_helper_ready: Future[None] | None = None


def start_helper() -> None:
    """Start the decryption helper process in the background (idempotent); reads use it once it is up."""
    global _helper, _helper_ready
    with _helper_lock:
        if _helper is None and (os.cpu_count() or 1) > 1:
            _helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            _helper_ready = _helper.submit(_noop)


def wait_helper(timeout: float = 60.0) -> bool:
    """Start the helper and wait until it can take work (warm-up, tests); False if it could not start."""
    start_helper()
    with _helper_lock:
        ready = _helper_ready
    if ready is None:
        return False
    try:
        ready.result(timeout)
    except Exception:
        return False
    return True


def stop_helper() -> None:
    global _helper, _helper_ready
    with _helper_lock:
        pool, _helper, _helper_ready = _helper, None, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _ready_helper() -> ProcessPoolExecutor | None:
    """The helper if it has started (a read never waits for it to start), else None and start it."""
    with _helper_lock:
        pool, ready = _helper, _helper_ready
    if pool is None:
        start_helper()
        return None
    if ready is None or not ready.done() or ready.exception() is not None:
        return None
    return pool


def _noop() -> None:
    return None


def _open_in_helper(
    path: str, key: bytes, prefix: bytes, chunk: int, body: int, count: int, indices: list[int]
) -> list[bytes]:
    """Runs in the helper process: open these chunks of the file (each authenticated) and return them."""
    alg = _stream.algorithms.SM4(key)
    step = chunk + _stream.TAG_SIZE
    out = []
    with open(path, "rb") as f:
        for index in indices:
            f.seek(body + index * step)
            data = _stream.read_full(f, step)
            final = index == count - 1
            if not final and len(data) != step:
                raise DecryptionFailed("stream is truncated")
            out.append(_stream.decrypt_chunk(alg, prefix, index, final, data))
    return out


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
            self._path = os.fspath(path)
            self._raw_key = bytes(unwrap(wrapped))
            self._key = _stream.algorithms.SM4(self._raw_key)
            body = os.fstat(self._f.fileno()).st_size - self._body
            step = self._chunk + _stream.TAG_SIZE
            self._count = max(1, -(-body // step))
            self._plain: dict[int, bytes] = {}  # opened chunks, by index
            self.helper_chunks = 0  # how many of them the helper process opened
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
        self._raw_key = b""

    def prefetch(self, spans: Iterable[tuple[int, int]]) -> None:
        """Open every chunk these (offset, length) spans touch, half of them in the helper process when
        there are enough; later reads of the spans then decrypt nothing."""
        wanted = sorted(
            {i for off, n in spans if n > 0 for i in range(off // self._chunk, (off + n - 1) // self._chunk + 1)}
            - set(self._plain)
        )
        pool = _ready_helper() if len(wanted) >= PARALLEL_MIN_CHUNKS else None
        if pool is None:
            for i in wanted:
                self._open(i)
            return
        mine, theirs = wanted[: len(wanted) // 2], wanted[len(wanted) // 2 :]
        args = (self._path, self._raw_key, self._prefix, self._chunk, self._body, self._count, theirs)
        future = pool.submit(_open_in_helper, *args)
        for i in mine:
            self._open(i)
        try:
            opened = future.result()
            self.helper_chunks += len(opened)
        except DecryptionFailed:
            raise
        except Exception:  # the helper died or could not run: open the rest here
            opened = [self._open(i) for i in theirs]
        self._plain.update(zip(theirs, opened, strict=True))

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
