"""Audit fixtures: a fresh audit schema per test on the backend CI selects (PDG_TEST_DB), plus helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

import audit
from common import clock
from common.actor import Actor
from gmcrypto.keys import Keyring

from . import _db

BACKEND = os.environ.get("PDG_TEST_DB", "sqlite")

ALICE = Actor(
    principal="ent:alice", role="enterprise", org="ENT-1", request_id="req-1", client_addr="10.0.0.7"
)
BOB = Actor(principal="ent:bob", role="enterprise", org="ENT-2", request_id="req-2", client_addr="10.0.0.8")


def make_engine(backend: str, tmp_path: Path) -> Engine:
    if backend == "postgresql":
        _db.ensure_pg_database()
        engine = _db.pg_engine()
    else:
        engine = _db.sqlite_engine(str(tmp_path / "audit.db"))
    _db.reset(engine)
    return engine


@pytest.fixture
def audit_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(BACKEND, tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def fixed_clock() -> Iterator[list[datetime]]:
    """A settable clock; tests move `now[0]`. Each read advances it by one millisecond."""
    now = [datetime(2025, 3, 1, 2, 0, tzinfo=UTC)]

    def tick() -> datetime:
        now[0] += timedelta(milliseconds=1)
        return now[0]

    clock.set_clock(tick)
    yield now
    clock.set_clock(None)


def append(engine: Engine, n: int, actor: Actor = ALICE, **kw: object) -> None:
    """n records in one transaction."""
    with Session(engine) as s:
        for i in range(n):
            fields = {
                "action": "dataset:read_open",
                "resource_type": "dataset",
                "resource_id": "pop.residents",
                "allowed": True,
                "outcome": {"rows": i, "bytes": 10 * i},
            }
            fields.update(kw)
            audit.record(s, actor=actor, **fields)  # type: ignore[arg-type]
        s.commit()


def checkpoint(engine: Engine, keyring: Keyring) -> audit.Checkpoint:
    from audit.checkpoints import sign_checkpoint

    with Session(engine, expire_on_commit=False) as s:
        cp = sign_checkpoint(s, keyring)
        s.commit()
        return cp
