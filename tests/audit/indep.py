"""An independent RFC 6962/9162 verifier for the tests: recursive definitions, SM3 from `cryptography`.

It deliberately shares no code with audit.merkle or gmcrypto (own SM3 call, different algorithms);
`gmssl_h` (pure-Python SM3) cross-checks the hash itself.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from gmssl import func, sm3


def h(data: bytes) -> bytes:
    d = hashes.Hash(hashes.SM3())
    d.update(data)
    return d.finalize()


def gmssl_h(data: bytes) -> bytes:
    return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))


def leaf(data: bytes) -> bytes:
    return h(b"\x00" + data)


def node(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 by its recursive definition."""
    if not leaves:
        return h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = k_of(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def root_from_path(leaf_hash: bytes, m: int, n: int, path: list[bytes]) -> bytes:
    """Rebuild the root from an audit path by mirroring PATH(m, D[n]) (last element = top sibling)."""
    if n == 1:
        if path:
            raise ValueError("path too long")
        return leaf_hash
    if not path:
        raise ValueError("path too short")
    k = k_of(n)
    *rest, top = path
    if m < k:
        return node(root_from_path(leaf_hash, m, k, rest), top)
    return node(top, root_from_path(leaf_hash, m - k, n - k, rest))


def roots_from_consistency(m: int, n: int, old_root: bytes, proof: list[bytes]) -> tuple[bytes, bytes]:
    """(old root, new root) rebuilt by mirroring SUBPROOF(m, D[n], true)."""

    def sub(m: int, n: int, proof: list[bytes], whole: bool) -> tuple[bytes, bytes]:
        if m == n:
            if whole:
                if proof:
                    raise ValueError("proof too long")
                return old_root, old_root
            if len(proof) != 1:
                raise ValueError("bad proof length")
            return proof[0], proof[0]
        if not proof:
            raise ValueError("proof too short")
        k = k_of(n)
        *rest, last = proof
        if m <= k:
            old, new = sub(m, k, rest, whole)
            return old, node(new, last)
        old, new = sub(m - k, n - k, rest, False)
        return node(last, old), node(last, new)

    return sub(m, n, proof, True)


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    try:
        old, new = roots_from_consistency(m, n, old_root, proof)
    except ValueError:
        return False
    return old == old_root and new == new_root


def verify_inclusion(leaf_hash: bytes, m: int, n: int, path: list[bytes], root: bytes) -> bool:
    try:
        return root_from_path(leaf_hash, m, n, path) == root
    except ValueError:
        return False
