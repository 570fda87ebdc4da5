"""Concurrent writer processes leave one gap-free chain that verifies (PostgreSQL and SQLite)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from audit.export import export
from audit.models import AuditRecord
from audit.verify import verify_export

from . import _workers
from .conftest import checkpoint, make_engine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "procs", "each"),
    [pytest.param("postgresql", 4, 100, marks=pytest.mark.postgres), ("sqlite", 4, 50)],
)
def test_writer_processes_keep_one_chain(backend, procs, each, tmp_path: Path, keyring) -> None:
    engine = make_engine(backend, tmp_path)
    target = "postgresql" if backend == "postgresql" else str(tmp_path / "audit.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        done = pool.starmap(_workers.write, [(target, w, each) for w in range(procs)])
    assert sum(done) == procs * each
    with Session(engine) as s:
        rows = s.exec(select(AuditRecord.seq, AuditRecord.principal).order_by(AuditRecord.seq)).all()
    assert [r[0] for r in rows] == list(range(1, procs * each + 1))
    assert Counter(r[1] for r in rows) == {f"ent:w{w}": each for w in range(procs)}
    checkpoint(engine, keyring)
    with Session(engine) as s:
        export(s, tmp_path / "all.zip")
    result = verify_export(tmp_path / "all.zip", keyring.public_keys)
    assert result.ok and result.records == procs * each, result
    engine.dispose()
