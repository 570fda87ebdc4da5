"""The request-side group commit: callers lead commits in turn, across threads and processes, and each
returns only once its own entry is in the one gap-free chain."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from audit.export import export
from audit.models import AuditRecord
from audit.verify import verify_export
from gateway import db as gdb

from . import _db, _workers
from .conftest import ALICE, checkpoint, make_engine


def _url(backend: str, tmp_path: Path) -> str:
    return _db.PG_URL if backend == "postgresql" else f"sqlite:///{tmp_path / 'audit.db'}"


def _entry(rid: str) -> dict:
    return {"actor": ALICE, "action": "dataset:read_open", "resource_type": "dataset", "resource_id": rid,
            "allowed": True}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def test_threads_in_several_processes_leave_one_chain(backend, tmp_path: Path, keyring) -> None:
    engine = make_engine(backend, tmp_path)
    procs, threads, each = 3, 8, 25
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        done = pool.starmap(_workers.group_write, [(_url(backend, tmp_path), w, threads, each) for w in range(procs)])
    assert sum(done) == procs * threads * each
    with Session(engine) as s:
        rows = s.exec(select(AuditRecord.seq, AuditRecord.resource_id).order_by(AuditRecord.seq)).all()
    assert [r[0] for r in rows] == list(range(1, procs * threads * each + 1))
    every = [f"{w}-{t}-{i}" for w in range(procs) for t in range(threads) for i in range(each)]
    assert Counter(r[1] for r in rows) == Counter(every)
    checkpoint(engine, keyring)
    with Session(engine) as s:
        export(s, tmp_path / "all.zip")
    assert verify_export(tmp_path / "all.zip", keyring.public_keys).ok
    engine.dispose()


def test_a_failing_entry_fails_only_its_own_caller(audit_engine, monkeypatch) -> None:
    import audit.log

    real, real_after = audit.log.append, audit.log.append_after_commit

    def refuse(items) -> None:
        if any(i.row["resource_id"] == "bad" for i in items):
            raise RuntimeError("refused by the database")

    def append(session, items):
        refuse(items)
        return real(session, items)

    def append_after_commit(pg, items, seq, chain):  # PostgreSQL's path after a commit of its own
        refuse(items)
        return real_after(pg, items, seq, chain)

    monkeypatch.setattr(audit.log, "append", append)
    monkeypatch.setattr(audit.log, "append_after_commit", append_after_commit)
    engine = gdb.make_engine(str(audit_engine.url))
    gdb._write_pending_audit(engine, [_entry("first")])  # on PostgreSQL the next batches take the one-trip path
    start, errors = threading.Barrier(8), {}

    def request(rid: str) -> None:
        start.wait()
        try:
            gdb._write_pending_audit(engine, [_entry(rid)])
        except RuntimeError as exc:
            errors[rid] = str(exc)

    ts = [threading.Thread(target=request, args=(rid,)) for rid in ["bad", *map(str, range(7))]]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == {"bad": "refused by the database"}
    with Session(audit_engine) as s:
        assert sorted(s.exec(select(AuditRecord.resource_id)).all()) == sorted(["first", *map(str, range(7))])
    engine.dispose()


def test_sqlite_audit_commits_of_several_processes_queue_on_one_turn(tmp_path: Path) -> None:
    """Another process holding the writers' turn (flock on `<db>-audit.lock`) holds commits back until it
    lets go; they then go through at once (not after a busy-handler sleep)."""
    engine = make_engine("sqlite", tmp_path)
    gw = gdb.make_engine(str(engine.url))
    fd = os.open(f"{tmp_path / 'audit.db'}-audit.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's committer would
    done = threading.Event()
    t = threading.Thread(target=lambda: (gdb._write_pending_audit(gw, [_entry("x")]), done.set()))
    t.start()
    assert not done.wait(0.5)
    with Session(engine) as s:
        assert s.exec(select(AuditRecord.seq)).all() == []
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    assert done.wait(30)
    t.join()
    with Session(engine) as s:
        assert s.exec(select(AuditRecord.resource_id)).all() == ["x"]
    gw.dispose()
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_commits_after_the_remembered_head_only_while_it_is_the_head(tmp_path: Path, keyring,
                                                                                monkeypatch) -> None:  # fmt: skip
    """After a commit of its own, the group commit appends in one round trip after the head it remembers;
    the database checks that head (seq and hash) in the same pipeline. Another writer's append, or a
    remembered head that is wrong, makes it fall back to reading the head under the lock: the chain holds."""
    import audit.log

    engine = make_engine("postgresql", tmp_path)
    gw = gdb.make_engine(str(engine.url))
    seen: list[tuple[str, str]] = []
    real = audit.log.append_after_commit

    def one_round_trip(pg, items, seq, chain):
        rid = items[0].row["resource_id"]
        try:
            rows = real(pg, items, seq, chain)
        except audit.log.StaleHead:
            seen.append((rid, "stale"))
            raise
        seen.append((rid, "ok"))
        return rows

    monkeypatch.setattr(audit.log, "append_after_commit", one_round_trip)
    gdb._write_pending_audit(gw, [_entry("a")])  # reads the head (nothing remembered yet)
    gdb._write_pending_audit(gw, [_entry("b")])
    with Session(engine) as s:  # another writer: an effect's own transaction
        audit.log.record(s, **_entry("c"))
        s.commit()
    gdb._write_pending_audit(gw, [_entry("d")])
    committer = gdb._committer(gw)
    seq, _ = committer._head
    committer._head = (seq, bytes(32))  # right place, wrong hash: must not be chained onto
    gdb._write_pending_audit(gw, [_entry("e")])
    gdb._write_pending_audit(gw, [_entry("f")])
    assert seen == [("b", "ok"), ("d", "stale"), ("e", "stale"), ("f", "ok")]
    with Session(engine) as s:
        rows = s.exec(select(AuditRecord.seq, AuditRecord.resource_id).order_by(AuditRecord.seq)).all()
    assert [tuple(r) for r in rows] == list(enumerate("abcdef", start=1))
    checkpoint(engine, keyring)
    with Session(engine) as s:
        export(s, tmp_path / "all.zip")
    assert verify_export(tmp_path / "all.zip", keyring.public_keys).ok
    gw.dispose()
    engine.dispose()
