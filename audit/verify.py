"""Offline verification of an export: leaf hashes, the chain, every checkpoint's root and SM2 signature.

Needs only the export and the gateway's public key(s); never the database. Stops at the first problem
and names the record (seq) — or the checkpoint — where it is.
"""

from __future__ import annotations

import binascii
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gmcrypto import sm3
from gmcrypto.errors import InvalidSignature
from gmcrypto.sm2 import PublicKey

from . import canonical, merkle
from .checkpoints import checkpoint_text, text_digest
from .export import FORMAT

_C, _L, _R = canonical.CHAIN_AT, canonical.LEAF_AT, canonical.RECORD_AT
_SMALL = 256  # subtrees up to this many leaves are hashed level by level without memoising


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


def _seq_of(rec: bytes) -> int:
    # Canonical records sort their keys, so the top-level "seq" is the last one (only "time" and "v",
    # whose values cannot hold an unescaped quote, follow it); nested outcome keys come earlier.
    at = rec.rfind(b',"seq":')
    end = rec.find(b",", at + 7)
    try:
        return int(rec[at + 7 : end]) if at > 0 and end > 0 else -1
    except ValueError:
        return -1


def _check_records(
    lines: IO[bytes], first: int, last: int, start_chain: bytes
) -> tuple[list[bytes], dict[int, bytes]]:
    """Recompute leaf hashes and the chain; returns the leaves and the chain value after each seq."""
    digest, unhex = sm3.digest, binascii.unhexlify
    head, mid, rec_mark = canonical.LINE_HEAD, canonical.LINE_MID, canonical.LINE_REC
    leaves: list[bytes] = []
    chains: dict[int, bytes] = {first - 1: start_chain}
    prev, seq = start_chain, first
    for line in lines:
        if seq > last:
            raise _Bad(
                f"an extra record follows record {last} (the manifest says the export ends there)", seq
            )
        if not (
            line.startswith(head)
            and line[_C + 64 : _L] == mid
            and line[_L + 64 : _R] == rec_mark
            and line.endswith(b"}\n")
        ):
            raise _Bad("the line is not an export record line", seq)
        rec = line[_R:-2]
        found = _seq_of(rec)
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
            raise _Bad(
                "the chain hash does not follow from the previous record (altered, removed or reordered)", seq
            )
        leaves.append(leaf)
        chains[seq] = prev
        seq += 1
    if seq <= last:
        raise _Bad(f"the export ends before record {seq} (the manifest says it runs to {last})", seq)
    return leaves, chains


class _Tree:
    """MTH over the exported leaves plus the boundary nodes shipped for one checkpoint."""

    def __init__(self, leaves: list[bytes], offset: int) -> None:
        self.leaves, self.lo, self.hi = leaves, offset, offset + len(leaves)
        self.memo: dict[tuple[int, int], bytes] = {}

    def perfect(self, start: int, size: int) -> bytes:
        if size <= _SMALL:
            return merkle.perfect_root(self.leaves[start - self.lo : start - self.lo + size])
        key = (start, size)
        value = self.memo.get(key)
        if value is None:
            half = size // 2
            value = self.memo[key] = merkle.node_hash(
                self.perfect(start, half), self.perfect(start + half, half)
            )
        return value

    def mth(self, start: int, end: int, nodes: Mapping[tuple[int, int], bytes]) -> bytes:
        if end <= self.lo or start >= self.hi:
            node = nodes.get((start, end))
            if node is None:
                raise _Bad(f"the proof node for records {start + 1}..{end} is missing")
            return node
        n = end - start
        if self.lo <= start and end <= self.hi and n & (n - 1) == 0:
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
        if prev is not None and (
            cid != prev.id + 1 or cp.prev_id != prev.id or cp.prev_digest != text_digest(prev)
        ):
            raise _Bad(
                f"does not link to checkpoint {prev.id} (a checkpoint was removed or replaced)", None, cid
            )
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
            raise _Bad(
                f"the chain hash after record {size} does not match signed checkpoint {cid}", suspect, cid
            )
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


def verify_export(
    path: str | Path, public_keys: Mapping[str, PublicKey] | Iterable[PublicKey]
) -> VerifyResult:
    """Verify an export directory or .zip offline; returns ok or the first bad record and what failed."""
    keys, checked = _keys(public_keys), 0
    try:
        with _members(Path(path)) as open_:
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
            try:
                lines = open_("records.jsonl")
            except (OSError, KeyError):
                raise _Bad("the export has no records.jsonl", first) from None
            with lines:
                leaves, chains = _check_records(lines, first, last, start_chain)
            checked = len(leaves)
            n_cps = _check_checkpoints(cps, keys, _Tree(leaves, first - 1), chains, first, last)
    except _Bad as bad:
        return VerifyResult(False, checked, 0, bad.seq, bad.checkpoint, bad.problem)
    return VerifyResult(True, checked, n_cps)
