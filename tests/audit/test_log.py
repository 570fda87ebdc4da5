"""Appends, canonical bytes, the database guards, checkpoints and proofs from the stored log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

import audit
from audit import checkpoints
from audit.models import AuditRecord, Checkpoint
from common.errors import Conflict, Invalid
from gmcrypto.errors import InvalidSignature

from . import indep
from .conftest import ALICE, BOB, append, checkpoint, make_engine


def _canonical(row: AuditRecord) -> bytes:
    """The documented canonical record, rebuilt here from the column values (docs/audit.md)."""
    obj = {
        "v": 1,
        "seq": row.seq,
        "time": row.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "principal": row.principal,
        "org": row.org,
        "role": row.role,
        "action": row.action,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "dataset": row.dataset,
        "dataset_version": row.dataset_version,
        "allowed": row.allowed,
        "reasons": json.loads(row.reasons),
        "policy_version": row.policy_version,
        "scenario": row.scenario,
        "experiment": row.experiment,
        "purpose": row.purpose,
        "request_id": row.request_id,
        "client_addr": row.client_addr,
        "outcome": json.loads(row.outcome),
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_records_form_one_gap_free_chain_over_documented_bytes(audit_engine, fixed_clock) -> None:
    with Session(audit_engine) as s:
        e1 = audit.record(
            s,
            actor=ALICE,
            action="dataset:read_open",
            resource_type="dataset",
            resource_id="pop.residents",
            allowed=True,
            reasons=["open-read"],
            policy_version="p7",
            outcome={"rows": 3, "sha": "ab" * 4, "名称": "人口"},
            dataset_version=2,
        )
        e2 = audit.record(
            s,
            actor=BOB,
            action="workspace:query",
            resource_type="query",
            resource_id="q-9",
            allowed=False,
            reasons=["no-grant"],
            scenario="flood",
            experiment="exp-1",
            purpose="研究",
            dataset="legal.persons",
        )
        s.commit()
    assert (e1.seq, e2.seq) == (1, 2)
    assert e1.dataset == "pop.residents" and e2.dataset == "legal.persons"
    with Session(audit_engine) as s:
        rows = s.exec(select(AuditRecord).order_by(AuditRecord.seq)).all()
        prev = bytes(32)
        for row in rows:
            leaf = indep.leaf(_canonical(row))
            assert row.leaf_hash == leaf.hex()
            prev = indep.h(prev + leaf)
            assert row.chain_hash == prev.hex()
        assert rows[1].request_id == "req-2" and rows[1].client_addr == "10.0.0.8" and rows[1].org == "ENT-2"
        assert rows[1].allowed is False and json.loads(rows[1].reasons) == ["no-grant"]


def test_a_rolled_back_append_leaves_no_gap(audit_engine) -> None:
    append(audit_engine, 2)
    with Session(audit_engine) as s:
        audit.record(s, actor=ALICE, action="x:y", resource_type="dataset", resource_id="d", allowed=True)
        s.rollback()
    append(audit_engine, 1)
    with Session(audit_engine) as s:
        assert s.exec(select(AuditRecord.seq).order_by(AuditRecord.seq)).all() == [1, 2, 3]


@pytest.mark.parametrize(
    "kw",
    [
        {"allowed": "yes"},
        {"outcome": {"rows": float("nan")}},
        {"outcome": {"blob": "x" * 5000}},
        {"outcome": ["not", "an", "object"]},
        {"reasons": [1, 2]},
        {"action": ""},
        {"resource_id": "r" * 301},
        {"dataset_version": "3"},
    ],
)
def test_bad_input_is_a_domain_error(audit_engine, kw) -> None:
    fields = {"action": "dataset:read_open", "resource_type": "dataset", "resource_id": "d", "allowed": True}
    fields.update(kw)
    with Session(audit_engine) as s, pytest.raises(Invalid):
        audit.record(s, actor=ALICE, **fields)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_refuses_update_and_delete(backend, tmp_path: Path, keyring) -> None:
    engine = make_engine(backend, tmp_path)
    try:
        append(engine, 3)
        checkpoint(engine, keyring)
        for stmt in (
            "UPDATE audit_record SET principal = 'mallory' WHERE seq = 2",
            "DELETE FROM audit_record WHERE seq = 3",
            "UPDATE audit_checkpoint SET tree_size = 1",
            "DELETE FROM audit_checkpoint",
        ):
            with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(stmt))
        if backend == "postgresql":
            with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("TRUNCATE audit_record"))
        with Session(engine) as s:
            assert s.exec(select(AuditRecord.principal).where(AuditRecord.seq == 2)).one() == "ent:alice"
            assert len(s.exec(select(AuditRecord)).all()) == 3
    finally:
        engine.dispose()


def test_checkpoints_are_signed_linked_and_prove_inclusion(audit_engine, keyring) -> None:
    append(audit_engine, 300)
    cp1 = checkpoint(audit_engine, keyring)
    append(audit_engine, 333, actor=BOB)
    cp2 = checkpoint(audit_engine, keyring)
    key = keyring.public_keys[cp2.key_id]
    for cp in (cp1, cp2):
        key.verify(bytes.fromhex(cp.signature), checkpoints.checkpoint_text(cp).encode())
    assert (
        cp2.prev_id == cp1.id and cp2.prev_digest == indep.h(checkpoints.checkpoint_text(cp1).encode()).hex()
    )
    with Session(audit_engine) as s:
        leaves = [bytes.fromhex(h) for h in s.exec(select(AuditRecord.leaf_hash).order_by(AuditRecord.seq))]
        assert indep.mth(leaves[:300]).hex() == cp1.root_hash and indep.mth(leaves).hex() == cp2.root_hash
        for seq in (1, 2, 255, 256, 257, 300, 512, 633):
            p = checkpoints.inclusion_proof(s, seq)
            assert (p.tree_size, p.checkpoint_id, p.root_hash) == (633, cp2.id, cp2.root_hash)
            assert indep.verify_inclusion(
                leaves[seq - 1],
                seq - 1,
                633,
                [bytes.fromhex(x) for x in p.path],
                bytes.fromhex(cp2.root_hash),
            )
        old = checkpoints.inclusion_proof(s, 17, tree_size=300)
        assert old.checkpoint_id == cp1.id and old.root_hash == cp1.root_hash
        c = checkpoints.consistency_proof(s, cp1.tree_size, cp2.tree_size)
        assert (c.old_root, c.new_root) == (cp1.root_hash, cp2.root_hash)
        assert indep.verify_consistency(
            300,
            633,
            bytes.fromhex(cp1.root_hash),
            bytes.fromhex(cp2.root_hash),
            [bytes.fromhex(x) for x in c.path],
        )
        with pytest.raises(InvalidSignature):
            key.verify(bytes.fromhex(cp1.signature), checkpoints.checkpoint_text(cp2).encode())


def test_consistency_fails_after_a_rewrite(audit_engine, keyring) -> None:
    append(audit_engine, 600)
    old = checkpoint(audit_engine, keyring)
    append(audit_engine, 50)
    # An administrator with the database rewrites history: drops the guards, changes a record's hashes
    # and the cached subtrees so the tree recomputes from the new leaves.
    with audit_engine.begin() as conn:
        _db_drop_guards(conn)
        conn.execute(
            text("UPDATE audit_record SET principal = 'nobody', leaf_hash = :h WHERE seq = 10"),
            {"h": "00" * 32},
        )
        conn.execute(text("DELETE FROM audit_subtree"))
    with Session(audit_engine) as s:
        c = checkpoints.consistency_proof(s, old.tree_size, 650)
        assert c.old_root != old.root_hash  # the rewritten past no longer has the signed root
        assert not indep.verify_consistency(
            600,
            650,
            bytes.fromhex(old.root_hash),
            bytes.fromhex(c.new_root),
            [bytes.fromhex(x) for x in c.path],
        )


def _db_drop_guards(conn) -> None:
    from audit.ddl import drop_guards

    drop_guards(conn)


def test_proofs_need_a_signed_checkpoint_and_valid_sizes(audit_engine, keyring) -> None:
    append(audit_engine, 5)
    with Session(audit_engine) as s:
        with pytest.raises(Conflict):
            checkpoints.inclusion_proof(s, 1)
        with pytest.raises(Invalid):
            checkpoints.consistency_proof(s, 3, 9)
    checkpoint(audit_engine, keyring)
    append(audit_engine, 5)
    with Session(audit_engine) as s:
        from common.errors import NotFound

        with pytest.raises(NotFound):
            checkpoints.inclusion_proof(s, 7)  # after the latest checkpoint
        assert checkpoints.inclusion_proof(s, 7, tree_size=10).checkpoint_id is None


def test_checkpoint_if_due_signs_only_when_new_records_and_interval_passed(
    audit_engine, keyring, fixed_clock
) -> None:
    from datetime import timedelta

    with Session(audit_engine) as s:
        assert checkpoints.checkpoint_if_due(s, keyring, interval=timedelta(minutes=5)) is None
    append(audit_engine, 3)
    with Session(audit_engine) as s:
        assert checkpoints.checkpoint_if_due(s, keyring, interval=timedelta(minutes=5)) is not None
        s.commit()
    append(audit_engine, 1)
    with Session(audit_engine) as s:
        assert checkpoints.checkpoint_if_due(s, keyring, interval=timedelta(minutes=5)) is None
        fixed_clock[0] += timedelta(minutes=6)
        cp = checkpoints.checkpoint_if_due(s, keyring, interval=timedelta(minutes=5))
        assert cp is not None and cp.tree_size == 4 and cp.id == 2
        s.commit()
        assert len(s.exec(select(Checkpoint)).all()) == 2
