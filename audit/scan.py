"""The fast path of offline verification: check a chunk of records.jsonl in bulk and hash its Merkle levels.

`scan(data)` takes whole export lines and answers one question — is every line in it good? — while
computing what the verifier needs from it: the leaf hashes, the hashes of every complete aligned subtree
inside the chunk, and the stored chain hash at a few requested records. Chunks are independent, so the
verifier runs them in parallel processes and stitches the results (`merge_levels`).

"Good" here is strictly narrower than what the sequential checker (verify._check_records) accepts: the
line layout, lowercase hex, `…,"seq":N,"time":"<27 chars>","v":1}` at the end of each record, N equal to
the first line's seq plus the line's position, SM3(0x00 || record) equal to the stored leaf, and
SM3(chain of the line before || leaf) equal to the stored chain (the first line's chain is checked by the
caller, which knows the line before). A chunk that is not good is re-read by the sequential checker, which
names the first bad record; so this module decides speed only, never a verdict.

Per line the Python work is three SM3 calls on primed states; layout, hex and seq checks are numpy
gathers over the whole chunk.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from gmcrypto import sm3

from . import canonical

_C, _L, _R = canonical.CHAIN_AT, canonical.LEAF_AT, canonical.RECORD_AT
_TAIL_TIME = b',"time":"'
_TAIL_END = b'","v":1}}'  # end of the record (v is the last key) and of the line object
_TIME_LEN = 27  # YYYY-MM-DDTHH:MM:SS.ffffffZ
_TAIL = len(_TAIL_TIME) + _TIME_LEN + len(_TAIL_END)  # bytes after the seq digits, up to the newline
_SEQ_KEY = b',"seq":'
_FIRST = itemgetter(0)
_STATE_TYPE = type(sm3.state())
_COPY, _UPDATE, _DIGEST = _STATE_TYPE.copy, _STATE_TYPE.update, _STATE_TYPE.digest
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)
_HEX = np.full(256, 255, np.uint8)  # lowercase hex digit -> value; anything else -> 255
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


@dataclass
class Chunk:
    """What one chunk contributes; `ok` False means "re-check this chunk sequentially"."""

    ok: bool
    offset: int = 0  # byte offset of the chunk's first line in records.jsonl
    count: int = 0  # lines in the chunk
    first_seq: int = -1  # seq read from the first line
    first_leaf: bytes = b""  # SM3 leaf computed for the first line
    first_chain: bytes = b""  # chain hash stored on the first line
    last_chain: bytes = b""  # chain hash stored on the last line
    levels: list[tuple[int, bytes]] = field(default_factory=list)  # per level: (first node index, hashes)
    marks: dict[int, bytes] = field(default_factory=dict)  # stored chain hash at requested seqs


def _seq_of(rec: bytes) -> int:
    # Canonical records sort their keys, so the top-level "seq" is the last one (only "time" and "v",
    # whose values cannot hold an unescaped quote, follow it); nested outcome keys come earlier.
    at = rec.rfind(b',"seq":')
    end = rec.find(b",", at + 7)
    try:
        return int(rec[at + 7 : end]) if at > 0 and end > 0 else -1
    except ValueError:
        return -1


def _digests(state: Any, messages: list[bytes]) -> list[bytes]:
    """SM3 of `state`'s prefix + each message.

    Written as C-level maps (copy the primed state, feed each message, take the digests) instead of a
    Python loop: no bytecode runs per hash, which is much of the cost for short messages.
    """
    hashes = list(map(_COPY, repeat(state, len(messages))))
    deque(map(_UPDATE, hashes, messages), maxlen=0)
    return list(map(_DIGEST, hashes))


def _split64(blob: bytes | memoryview) -> list[bytes]:
    """Consecutive 64-byte pieces of `blob` (whose length is a multiple of 64), sliced in C."""
    return list(map(_FIRST, struct.iter_unpack("64s", blob)))


def _gather(arr: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """arr[at[i] : at[i] + width] for every i, as an (n, width) array (rows of a strided window view:
    one copy per row, no (n, width) index array)."""
    return np.lib.stride_tricks.sliding_window_view(arr, width)[at]


def _matches(block: np.ndarray, expected: bytes) -> bool:
    return bool((block == np.frombuffer(expected, np.uint8)).all())


def _unhex(block: np.ndarray) -> bytes | None:
    """(n, 64) lowercase hex digits as n*32 bytes joined; None if any is not a lowercase hex digit."""
    nibbles = _HEX[block]
    if (nibbles == 255).any():
        return None
    return ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).tobytes()


def _seqs_follow(tail: np.ndarray, first: int) -> bool:
    """Each row of `tail` (the last bytes of a line) ends with `,"seq":<first+i>,"time":"<27 chars, no
    quote>","v":1}}` (vectorised; row i is line i)."""
    t = tail.shape[1]
    if not (
        _matches(tail[:, t - _TAIL : t - _TAIL + len(_TAIL_TIME)], _TAIL_TIME)
        and _matches(tail[:, t - len(_TAIL_END) :], _TAIL_END)
        and not (tail[:, t - _TAIL + len(_TAIL_TIME) : t - len(_TAIL_END)] == ord('"')).any()
    ):
        return False
    seqs = np.arange(first, first + len(tail), dtype=np.int64)
    width = np.searchsorted(_POWERS, seqs, side="right") + 1  # decimal digits of each seq
    for w in map(int, np.unique(width)):  # a handful of digit counts per chunk
        rows = np.flatnonzero(width == w)
        want = np.empty((len(rows), w + len(_SEQ_KEY)), np.uint8)
        want[:, : len(_SEQ_KEY)] = np.frombuffer(_SEQ_KEY, np.uint8)
        for p in range(w):
            want[:, len(_SEQ_KEY) + w - 1 - p] = (seqs[rows] // 10**p) % 10 + ord("0")
        if not (tail[rows, t - _TAIL - w - len(_SEQ_KEY) : t - _TAIL] == want).all():
            return False
    return True


def build_levels(leaves: bytes, first_index: int) -> list[tuple[int, bytes]]:
    """Every complete aligned subtree inside leaves [first_index, first_index + n): per level, the index
    of its first node and the node hashes joined (level 0 = the leaves themselves)."""
    one = sm3.state(b"\x01")
    levels = [(first_index, leaves)]
    start, blob = first_index, leaves
    while len(blob) >= 64:
        skip = 32 if start & 1 else 0  # an odd first node has its sibling outside: no parent here
        pairs = (len(blob) - skip) // 64
        out = _digests(one, _split64(memoryview(blob)[skip : skip + 64 * pairs]))
        if not out:
            break
        start, blob = (start + 1) >> 1, b"".join(out)
        levels.append((start, blob))
    return levels


def scan(data: bytes, offset: int = 0, want: Iterable[int] = ()) -> Chunk:
    """Check whole lines `data` (each ending in a newline); see the module doc for what "ok" means."""
    if not data:
        return Chunk(True, offset)
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    n = len(ends)
    if n == 0 or ends[-1] != len(data) - 1:
        return Chunk(False, offset)
    starts = np.empty(n, np.int64)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    first_seq = _seq_of(data[_R : int(ends[0]) - 1])
    bad = Chunk(False, offset, n, first_seq)
    tail_len = _TAIL + len(_SEQ_KEY) + len(str(first_seq + n))  # through the widest seq's key
    if first_seq < 1 or int((ends - starts).min()) < _R + 2 + tail_len:
        return bad
    head = _gather(arr, starts, _R)  # everything before the record: fixed layout
    if not (
        _matches(head[:, :_C], canonical.LINE_HEAD)
        and _matches(head[:, _C + 64 : _L], canonical.LINE_MID)
        and _matches(head[:, _L + 64 :], canonical.LINE_REC)
        and _seqs_follow(_gather(arr, ends - tail_len, tail_len), first_seq)
    ):
        return bad
    chains, stored_leaves = _unhex(head[:, _C : _C + 64]), _unhex(head[:, _L : _L + 64])
    if chains is None or stored_leaves is None:
        return bad
    # Leaves: SM3(0x00 || record), the record being the line between `"record":` and the final `}`.
    records = list(map(data.__getitem__, map(slice, (starts + _R).tolist(), (ends - 1).tolist())))
    leaves = _digests(sm3.state(b"\x00"), records)
    leaf_blob = b"".join(leaves)
    if leaf_blob != stored_leaves:
        return bad
    # Chain: SM3(stored chain of line i-1 || leaf i) must be the stored chain of line i (i >= 1 here).
    pairs = np.empty((n, 64), np.uint8)
    pairs[1:, :32] = np.frombuffer(chains, np.uint8).reshape(n, 32)[:-1]
    pairs[:, 32:] = np.frombuffer(leaf_blob, np.uint8).reshape(n, 32)
    links = _digests(sm3.state(), _split64(pairs[1:].tobytes()))
    if b"".join(links) != chains[32:]:
        return bad
    marks = {q: chains[(q - first_seq) * 32 : (q - first_seq + 1) * 32] for q in want if 0 <= q - first_seq < n}
    return Chunk(
        True,
        offset,
        n,
        first_seq,
        leaves[0],
        chains[:32],
        chains[-32:],
        build_levels(leaf_blob, first_seq - 1),
        marks,
    )


def read_lines(path: str, start: int, end: int) -> tuple[int, bytes]:
    """The lines of a file that start at a byte in [start, end), whole: (offset of the first, bytes)."""
    base = max(0, start - 1)  # from the byte before `start`: a line starts there if that is a newline
    with open(path, "rb") as f:
        f.seek(base)
        want = end - base + (1 << 16)  # read ahead to finish the last line
        buf = f.read(want)
        begin = 0 if start == 0 else buf.find(b"\n") + 1
        if start > 0 and not 0 < begin <= end - start:
            return start, b""  # no line starts in [start, end)
        stop = buf.find(b"\n", end - 1 - base) + 1  # the end of the line holding byte end-1
        if stop == 0 and len(buf) == want:  # a line longer than the read-ahead: read on to its end
            parts = [buf]
            while (more := f.read(1 << 20)) and (cut := more.find(b"\n")) < 0:
                parts.append(more)
            parts.append(more[: cut + 1] if more else b"")
            buf = b"".join(parts)
        return base + begin, buf[begin : stop or len(buf)]


def scan_file(path: str, start: int, end: int, want: tuple[int, ...]) -> Chunk:
    """scan() over the lines of `path` that start in [start, end) (what a worker process runs)."""
    offset, data = read_lines(path, start, end)
    return scan(data, offset, want)


def merge_levels(chunks: list[Chunk], lo: int, hi: int) -> list[bytes]:
    """Levels over leaves [lo, hi) from consecutive chunks: level L holds the nodes
    [ceil(lo / 2**L), hi // 2**L) joined; nodes that straddle two chunks are hashed here."""
    merged = [b"".join(c.levels[0][1] for c in chunks if c.levels)]
    level = 1
    while (stop := hi >> level) > (first := -(-lo >> level)):
        below, below_first = merged[-1], -(-lo >> (level - 1))
        parts: list[bytes] = []
        pos = first
        for c in chunks:
            if len(c.levels) > level and c.levels[level][1]:
                start, blob = c.levels[level]
                parts.extend(_parents(below, below_first, pos, start))
                parts.append(blob)
                pos = start + len(blob) // 32
        parts.extend(_parents(below, below_first, pos, stop))
        merged.append(b"".join(parts))
        level += 1
    return merged


def _parents(below: bytes, below_first: int, start: int, stop: int) -> list[bytes]:
    """Hashes of nodes [start, stop) of a level from the joined level below (first node below_first)."""
    if stop <= start:
        return []
    at = (2 * start - below_first) * 32
    return _digests(sm3.state(b"\x01"), _split64(below[at : at + 64 * (stop - start)]))
