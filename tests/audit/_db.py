"""Audit test engines: SQLite (WAL, BEGIN IMMEDIATE, as the gateway writes) and PostgreSQL."""

from __future__ import annotations

import os
import uuid

import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import audit.models  # noqa: F401  (registers the tables)
from audit.ddl import install_guards

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
# One database per test run (inherited by the writer processes through the environment), so two runs
# on one PostgreSQL server — two developers, or CI beside a session — never write into each other's log.
# Keyed by xdist worker too: two workers of one run must not create the same tables side by side.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
PG_DB = os.environ.setdefault(f"PDG_AUDIT_TEST_DB_{_WORKER}", f"pdg_audit_test_{_WORKER}_{uuid.uuid4().hex[:8]}")
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"
AUDIT_TABLES = [t for name, t in SQLModel.metadata.tables.items() if name.startswith("audit_")]


def ensure_pg_database(name: str = PG_DB) -> None:
    """Create our own database once, so other helpers' tests never clash with ours."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def sqlite_engine(path: str, synchronous: str = "NORMAL") -> Engine:
    """A file SQLite engine in WAL mode whose transactions start with BEGIN IMMEDIATE."""
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")
        dbapi_conn.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def pg_engine() -> Engine:
    return create_engine(PG_URL)


def reset(engine: Engine) -> None:
    """Fresh audit tables with the append-only guards."""
    SQLModel.metadata.drop_all(engine, tables=AUDIT_TABLES)
    SQLModel.metadata.create_all(engine, tables=AUDIT_TABLES)
    with engine.begin() as conn:
        install_guards(conn)
