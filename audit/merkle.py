"""RFC 6962 / RFC 9162 Merkle trees over SM3: roots, inclusion and consistency proofs, and their checks.

leaf = SM3(0x00 || data), node = SM3(0x01 || left || right), the empty tree's root is SM3(""). Proof
generation takes `mth(start, end)`, a function returning the hash of leaves [start, end), so the same
algorithms run over an in-memory list or over the database (with cached subtrees).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gmcrypto import sm3

Range = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof does not verify, or its sizes are impossible."""


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf (the record's canonical bytes)."""
    return sm3.digest(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node."""
    return sm3.digest(b"\x01" + left + right)


EMPTY_ROOT = sm3.digest(b"")


def split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of 2**k leaf hashes, level by level (no recursion, few Python calls)."""
    level = list(hashes)
    digest = sm3.digest
    while len(level) > 1:
        level = [digest(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def root(hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash of a list of leaf hashes (RFC 9162 MTH), iteratively."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    # Split n into its perfect subtrees left to right (the bits of n), then fold them from the right.
    parts: list[bytes] = []
    start = 0
    for bit in reversed(range(n.bit_length())):
        size = 1 << bit
        if n & size:
            parts.append(perfect_root(hashes[start : start + size]))
            start += size
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def list_range(hashes: Sequence[bytes]) -> Range:
    """An `mth` function over an in-memory list of leaf hashes."""
    return lambda start, end: root(hashes[start:end])


def inclusion_path(index: int, size: int, mth: Range) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]): the audit path from leaf `index` up to the root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    # Walk down from the root, collecting the sibling at each split; the RFC lists them bottom-up.
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_path(old_size: int, new_size: int, mth: Range) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]): shows the old tree is a prefix of the new one."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"cannot prove size {old_size} against size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    m, start, end, whole = old_size, 0, new_size, True
    while m != end - start:
        k = split(end - start)
        if m <= k:
            proof.append(mth(start + k, end))
            end = start + k
        else:
            proof.append(mth(start, start + k))
            m -= k
            start += k
            whole = False
    if not whole:
        proof.append(mth(start, end))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError unless `leaf` sits at `index` in the tree with that root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != expected_root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError unless the old tree is a prefix of the new tree."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"cannot prove size {old_size} against size {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    items = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        items.insert(0, old_root)
    if not items:
        raise ProofError("consistency proof is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError("consistency proof does not match the two roots")
