"""audit.merkle against an independent verifier (gmssl SM3, recursive RFC definitions)."""

from __future__ import annotations

import pytest

from audit import merkle

from . import indep

LEAVES = [indep.leaf(f"record {i}".encode()) for i in range(70)]
ROOTS = {n: indep.mth(LEAVES[:n]) for n in range(0, 34)}


def test_hashes_use_rfc6962_domain_separation_over_sm3() -> None:
    assert merkle.leaf_hash(b"abc") == indep.gmssl_h(b"\x00abc") == indep.h(b"\x00abc")
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == indep.h(b"\x01" + b"L" * 32 + b"R" * 32)
    # GB/T 32905 example 1: SM3("abc")
    assert indep.h(b"") == merkle.EMPTY_ROOT
    assert indep.gmssl_h(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 70])
def test_root_matches_the_recursive_definition(n: int) -> None:
    assert merkle.root(LEAVES[:n]) == indep.mth(LEAVES[:n])


def test_every_inclusion_proof_checks_independently() -> None:
    for n in range(1, 34):
        mth = merkle.list_range(LEAVES[:n])
        root = ROOTS[n]
        for m in range(n):
            path = merkle.inclusion_path(m, n, mth)
            assert indep.verify_inclusion(LEAVES[m], m, n, path, root), (m, n)
            merkle.verify_inclusion(LEAVES[m], m, n, path, root)
            assert not indep.verify_inclusion(LEAVES[(m + 1) % n], m, n, path, root) or n == 1


def test_every_consistency_proof_checks_independently() -> None:
    for n in range(1, 34):
        mth = merkle.list_range(LEAVES[:n])
        new_root = ROOTS[n]
        for m in range(1, n + 1):
            proof = merkle.consistency_path(m, n, mth)
            old_root = ROOTS[m]
            assert indep.verify_consistency(m, n, old_root, new_root, proof), (m, n)
            merkle.verify_consistency(m, n, old_root, new_root, proof)


def test_tampered_proofs_fail_in_both_verifiers() -> None:
    n, m = 21, 13
    mth = merkle.list_range(LEAVES[:n])
    root = ROOTS[n]
    path = merkle.inclusion_path(m, n, mth)
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not indep.verify_inclusion(LEAVES[m], m, n, bad, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(LEAVES[m], m, n, bad, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(LEAVES[m], m, n, [*path, path[0]], root)
    proof = merkle.consistency_path(6, n, mth)
    old_root = ROOTS[6]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not indep.verify_consistency(6, n, old_root, root, bad)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(6, n, old_root, root, bad)
    # A "rewritten" old tree (one leaf changed) is not consistent with the new one.
    forged = indep.mth([LEAVES[0], indep.leaf(b"forged"), *LEAVES[2:6]])
    assert not indep.verify_consistency(6, n, forged, root, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(6, n, forged, root, proof)


def test_impossible_sizes_are_refused() -> None:
    mth = merkle.list_range(LEAVES[:5])
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_path(5, 5, mth)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_path(6, 5, mth)
