"""Offline verification of an export: leaf hashes, the chain, every checkpoint's root and SM2 signature.

Needs only the export and the gateway's public key(s); never the database. Stops at the first problem
and names the record (seq) — or the checkpoint — where it is.
"""

from __future__ import annotations

import binascii
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gmcrypto import sm3
from gmcrypto.errors import InvalidSignature
from gmcrypto.sm2 import PublicKey

from . import canonical, merkle, scan
from .checkpoints import checkpoint_text, text_digest
from .export import FORMAT

_C, _L, _R = canonical.CHAIN_AT, canonical.LEAF_AT, canonical.RECORD_AT
CHUNK_BYTES = 8 << 20  # records.jsonl is checked in chunks of about this size (~12,000 records)
POOL_MIN_BYTES = 32 << 20  # smaller exports (~50,000 records) are checked in-process: a pool costs more


@dataclass(frozen=True)
class VerifyResult:
    """`ok`, or the first bad record (`first_bad_seq`) / checkpoint and what failed (`problem`)."""

    ok: bool
    records: int = 0
    checkpoints: int = 0
    first_bad_seq: int | None = None
    checkpoint_id: int | None = None
    problem: str = ""

    def __bool__(self) -> bool:
        return self.ok


class _Bad(Exception):
    def __init__(self, problem: str, seq: int | None = None, checkpoint: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.seq, self.checkpoint = problem, seq, checkpoint


@contextmanager
def _members(path: Path) -> Iterator[Any]:
    """open(name) over a directory export or a .zip export."""
    if path.is_dir():
        yield lambda name: (path / name).open("rb")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            yield zf.open
    else:
        raise _Bad(f"{path} is neither an export directory nor a .zip export")


def _read_json(open_: Any, name: str) -> Any:
    try:
        with open_(name) as f:
            return json.loads(f.read())
    except (OSError, KeyError):
        raise _Bad(f"the export has no {name}") from None
    except ValueError:
        raise _Bad(f"{name} is not valid JSON") from None


def _check_records(lines: IO[bytes], first: int, last: int, start_chain: bytes) -> tuple[list[bytes], dict[int, bytes]]:
    """Recompute leaf hashes and the chain; returns the leaves and the chain value after each seq."""
    digest, unhex = sm3.digest, binascii.unhexlify
    head, mid, rec_mark = canonical.LINE_HEAD, canonical.LINE_MID, canonical.LINE_REC
    leaves: list[bytes] = []
    chains: dict[int, bytes] = {first - 1: start_chain}
    prev, seq = start_chain, first
    for line in lines:
        if seq > last:
            raise _Bad(f"an extra record follows record {last} (the manifest says the export ends there)", seq)
        if not (
            line.startswith(head)
            and line[_C + 64 : _L] == mid
            and line[_L + 64 : _R] == rec_mark
            and line.endswith(b"}\n")
        ):
            raise _Bad("the line is not an export record line", seq)
        rec = line[_R:-2]
        found = scan._seq_of(rec)
        if found < 0:
            raise _Bad("the record has no readable seq (its bytes were altered)", seq)
        if found != seq:
            what = "is missing" if found > seq else "was inserted or moved"
            raise _Bad(f"found record {found} where record {seq} belongs: a record {what}", seq)
        leaf = digest(b"\x00" + rec)
        try:
            stored_leaf, stored_chain = unhex(line[_L : _L + 64]), unhex(line[_C : _C + 64])
        except binascii.Error:
            raise _Bad("the stored hashes are not hex", seq) from None
        if leaf != stored_leaf:
            raise _Bad("the record's bytes do not match its leaf hash (the record was altered)", seq)
        prev = digest(prev + leaf)
        if prev != stored_chain:
            raise _Bad("the chain hash does not follow from the previous record (altered, removed or reordered)", seq)
        leaves.append(leaf)
        chains[seq] = prev
        seq += 1
    if seq <= last:
        raise _Bad(f"the export ends before record {seq} (the manifest says it runs to {last})", seq)
    return leaves, chains


class _Tree:
    """MTH over the exported leaves [lo, hi) plus the boundary nodes shipped for one checkpoint.

    `levels[L]` holds the hashes of the complete aligned subtrees of 2**L leaves inside [lo, hi), from
    node ceil(lo / 2**L) on (scan.merge_levels); the MTH recursion only ever asks for such subtrees.
    """

    def __init__(self, levels: list[bytes], lo: int, hi: int) -> None:
        self.levels, self.lo, self.hi = levels, lo, hi

    def perfect(self, start: int, size: int) -> bytes:
        level = size.bit_length() - 1
        at = ((start >> level) - (-(-self.lo >> level))) * 32
        return self.levels[level][at : at + 32]

    def mth(self, start: int, end: int, nodes: Mapping[tuple[int, int], bytes]) -> bytes:
        if end <= self.lo or start >= self.hi:
            node = nodes.get((start, end))
            if node is None:
                raise _Bad(f"the proof node for records {start + 1}..{end} is missing")
            return node
        n = end - start
        if self.lo <= start and end <= self.hi and n & (n - 1) == 0 and start % n == 0:
            return self.perfect(start, n)
        if n == 1:
            raise _Bad("the proof nodes overlap the exported records")
        k = merkle.split(n)
        return merkle.node_hash(self.mth(start, start + k, nodes), self.mth(start + k, end, nodes))


def _keys(public_keys: Mapping[str, PublicKey] | Iterable[PublicKey]) -> dict[str, PublicKey]:
    if isinstance(public_keys, Mapping):
        return dict(public_keys)
    return {k.key_id: k for k in public_keys}


def _check_checkpoints(
    cps: Any, keys: dict[str, PublicKey], tree: _Tree, chains: dict[int, bytes], first: int, last: int
) -> int:
    if not isinstance(cps, list) or not cps:
        raise _Bad("checkpoints.json holds no checkpoints")
    good_size, prev = first - 1, None
    for raw in cps:
        cid = raw.get("id") if isinstance(raw, dict) else None
        try:
            cp = _Obj(raw)
            size = cp.tree_size
            assert isinstance(size, int) and isinstance(cid, int)
            text = checkpoint_text(cp).encode()
            signature = bytes.fromhex(cp.signature)
            nodes = {(int(a), int(b)): bytes.fromhex(h) for a, b, h in raw["nodes"]}
            root, chain = bytes.fromhex(cp.root_hash), bytes.fromhex(cp.chain_hash)
        except (AssertionError, KeyError, TypeError, ValueError, AttributeError):
            raise _Bad("the checkpoint is malformed", None, cid) from None
        key = keys.get(cp.key_id)
        if key is None:
            raise _Bad(f"signed by key {cp.key_id!r}, which is not among the given public keys", None, cid)
        try:
            key.verify(signature, text)
        except InvalidSignature:
            raise _Bad("the SM2 signature does not verify (the checkpoint was altered)", None, cid) from None
        if prev is not None and (cid != prev.id + 1 or cp.prev_id != prev.id or cp.prev_digest != text_digest(prev)):
            raise _Bad(f"does not link to checkpoint {prev.id} (a checkpoint was removed or replaced)", None, cid)
        if prev is not None and size < prev.tree_size:
            raise _Bad("the tree shrank since the previous checkpoint", None, cid)
        if size < first:
            raise _Bad(f"covers no exported record (size {size} < {first})", None, cid)
        suspect = max(first, good_size + 1)
        if tree.mth(0, size, nodes) != root:
            raise _Bad(
                f"the Merkle root of records 1..{size} does not match the signed checkpoint {cid}: a record "
                f"from {suspect} to {min(size, last)} differs from what was signed",
                suspect,
                cid,
            )
        if size <= last and chains.get(size) != chain:
            raise _Bad(f"the chain hash after record {size} does not match signed checkpoint {cid}", suspect, cid)
        good_size, prev = size, cp
    if good_size < last:
        raise _Bad(f"records after {good_size} are not covered by a signed checkpoint", good_size + 1)
    return len(cps)


class _Obj:
    """Attribute view of a checkpoint dict (what checkpoint_text expects)."""

    id: int
    tree_size: int
    root_hash: str
    chain_hash: str
    time: str
    key_id: str
    prev_id: int
    prev_digest: str
    signature: str

    def __init__(self, raw: dict[str, Any]) -> None:
        for k in (
            "id",
            "tree_size",
            "root_hash",
            "chain_hash",
            "time",
            "key_id",
            "prev_id",
            "prev_digest",
            "signature",
        ):
            setattr(self, k, raw[k])
        if not isinstance(self.time, str):
            raise TypeError("time")


def _tasks(path: Path, open_: Any, chunk_bytes: int, want: tuple[int, ...]) -> Iterator[tuple[Any, ...]]:
    """(function, *args) per chunk of records.jsonl: byte ranges of a file that workers read themselves,
    or, inside a .zip, decompressed blocks cut at a line end."""
    if path.is_dir():
        file = path / "records.jsonl"
        size = file.stat().st_size
        for start in range(0, size, chunk_bytes):
            yield scan.scan_file, str(file), start, min(size, start + chunk_bytes), want
        return
    with open_("records.jsonl") as f:
        offset, rest = 0, b""
        while block := f.read(chunk_bytes):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield scan.scan, data[:cut], offset, want
                offset, rest = offset + cut, data[cut:]
            else:
                rest = data
        if rest:
            yield scan.scan, rest, offset, want


def _run(tasks: Iterator[tuple[Any, ...]], workers: int) -> Iterator[scan.Chunk]:
    """Results in task order; with workers > 1 from a process pool, at most 2 tasks per worker in flight."""
    if workers <= 1:
        for fn, *args in tasks:
            yield fn(*args)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: list[Future[scan.Chunk]] = []
        for fn, *args in tasks:
            pending.append(pool.submit(fn, *args))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _default_workers(path: Path, open_: Any, chunk_bytes: int) -> int:
    """One process per available core for big exports; small ones run in-process."""
    try:
        size = (path / "records.jsonl").stat().st_size if path.is_dir() else 0
        if not path.is_dir():
            with zipfile.ZipFile(path) as zf:
                size = zf.getinfo("records.jsonl").file_size
    except (OSError, KeyError, zipfile.BadZipFile):
        return 1
    if size < POOL_MIN_BYTES or not hasattr(os, "sched_getaffinity"):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), size // chunk_bytes))


def _records(
    path: Path, open_: Any, manifest: tuple[int, int, bytes], want: tuple[int, ...], workers: int, chunk_bytes: int
) -> tuple[list[bytes], dict[int, bytes], int]:
    """Check every record line; returns the Merkle levels over the exported leaves, the chain hash at
    `want` seqs (and before the first record), and the record count. Raises _Bad at the first bad record.

    The chunks are checked in bulk (audit.scan) and stitched here: each must start with the next seq and
    chain on from the previous one. From the first chunk that does not pass, the sequential checker takes
    over and names the record; it starts there, because everything before was proven good.
    """
    first, last, start_chain = manifest
    try:
        chunks = list(_run(_tasks(path, open_, chunk_bytes, want), workers))
    except (OSError, KeyError):
        raise _Bad("the export has no records.jsonl", first) from None
    seq, prev, resume = first, start_chain, None
    for i, c in enumerate(chunks):
        if c.count == 0 and c.ok:
            continue
        if not c.ok or c.first_seq != seq or sm3.digest(prev + c.first_leaf) != c.first_chain:
            resume = i
            break
        seq, prev = seq + c.count, c.last_chain
    if resume is None and seq == last + 1:
        chains = {first - 1: start_chain}
        for c in chunks:
            chains.update(c.marks)
        return scan.merge_levels(chunks, first - 1, last), chains, last - first + 1
    if resume is None:  # every chunk is good but the count is off: records are missing or extra at the end
        resume = max((i for i, c in enumerate(chunks) if c.count), default=0)
        seq, prev = (chunks[resume].first_seq, _chain_before(chunks, resume, start_chain)) if chunks else (first, prev)
    offset = chunks[resume].offset if chunks else 0
    with open_("records.jsonl") as lines:
        lines.seek(offset)
        _check_records(lines, seq, last, prev)
    # The sequential checker accepts a few spellings the bulk check does not (e.g. uppercase hex):
    # check everything sequentially then, as verification always did.
    with open_("records.jsonl") as lines:
        leaves, chains = _check_records(lines, first, last, start_chain)
    return [level for _, level in scan.build_levels(b"".join(leaves), first - 1)], chains, len(leaves)


def _chain_before(chunks: list[scan.Chunk], i: int, start_chain: bytes) -> bytes:
    return next((c.last_chain for c in reversed(chunks[:i]) if c.count), start_chain)


def verify_export(
    path: str | Path,
    public_keys: Mapping[str, PublicKey] | Iterable[PublicKey],
    *,
    workers: int | None = None,
    chunk_bytes: int | None = None,
) -> VerifyResult:
    """Verify an export directory or .zip offline; returns ok or the first bad record and what failed.

    `workers` processes check chunks of `chunk_bytes` in parallel (default: one per core for exports of
    more than one chunk); the verdict does not depend on either.
    """
    keys, checked, path = _keys(public_keys), 0, Path(path)
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        with _members(path) as open_:
            manifest = _read_json(open_, "manifest.json")
            cps = _read_json(open_, "checkpoints.json")
            try:
                assert manifest["format"] == FORMAT
                first, last = manifest["first_seq"], manifest["last_seq"]
                assert isinstance(first, int) and isinstance(last, int) and 1 <= first <= last
                assert manifest["records"] == last - first + 1 and len(manifest) == 5
                start_chain = bytes.fromhex(manifest["start_chain"])
                assert len(start_chain) == 32
            except (AssertionError, KeyError, TypeError, ValueError):
                raise _Bad(f"manifest.json is not a {FORMAT} manifest") from None
            if workers is None:
                workers = _default_workers(path, open_, chunk_bytes)
            want = tuple(_checkpoint_sizes(cps, first, last))
            levels, chains, checked = _records(path, open_, (first, last, start_chain), want, workers, chunk_bytes)
            n_cps = _check_checkpoints(cps, keys, _Tree(levels, first - 1, last), chains, first, last)
    except _Bad as bad:
        return VerifyResult(False, checked, 0, bad.seq, bad.checkpoint, bad.problem)
    return VerifyResult(True, checked, n_cps)


def _checkpoint_sizes(cps: Any, first: int, last: int) -> Iterator[int]:
    """The tree sizes of checkpoints inside the export: the chain hash is compared there."""
    for raw in cps if isinstance(cps, list) else ():
        size = raw.get("tree_size") if isinstance(raw, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and first <= size <= last:
            yield size
