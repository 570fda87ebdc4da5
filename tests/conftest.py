"""Shared fixtures. The same suite runs on SQLite and on PostgreSQL: set PDG_TEST_DB=postgresql.

Each test that asks for `engine` gets its own freshly migrated database, cloned from a template that
is migrated once per session (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from common.actor import Actor

BACKEND = os.environ.get("PDG_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("PDG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {BACKEND}"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated template database; yields its URL (SQLite) or name (PostgreSQL)."""
    from gateway import db

    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("tmpl") / "template.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()  # the last connection to close checkpoints the WAL into the file
        yield str(path)
        return
    name = f"pdg_tmpl_{_worker()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = db.make_engine(_pg_url(name))
    db.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_worker_db(db_template: str) -> Iterator[str]:
    """PostgreSQL: one database per xdist worker, cloned from the template once."""
    if BACKEND == "sqlite":
        yield ""
        return
    name = f"pdg_w_{_worker()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"'))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_pg(name: str) -> None:
    """Empty every table of the worker's database and put the migration stamp back.

    Replica mode switches the append-only triggers off for this one session only; it is how a test
    harness, never the gateway, gets a clean log. Much faster than CREATE DATABASE per test.
    """
    from gateway import db

    engine = create_engine(_pg_url(name), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        conn.execute(text("SET session_replication_role = replica"))
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": db.head_revision()})
    engine.dispose()


@pytest.fixture
def db_url(db_template: str, pg_worker_db: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for this test."""
    if BACKEND == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copyfile(db_template, path)
        yield f"sqlite:///{path}"
        return
    _reset_pg(pg_worker_db)
    yield _pg_url(pg_worker_db)


@pytest.fixture
def settings(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    from gateway.settings import Settings

    return Settings(
        env="test",
        data_dir=tmp_path / "var",
        database_url=db_url,
        keys_dir=tmp_path / "keys",
        sandbox_warm=False,  # tests that need a sandbox worker start one; not one per app
    )


@pytest.fixture
def state(settings):  # type: ignore[no-untyped-def]
    from gateway.state import build_state
    from policies.guard import set_scenario_provider

    st = build_state(settings)
    yield st
    set_scenario_provider(None)  # the provider reads this test's database, which is about to go
    st.engine.dispose()


@pytest.fixture
def engine(state):  # type: ignore[no-untyped-def]
    return state.engine


@pytest.fixture
def app(settings, state):  # type: ignore[no-untyped-def]
    from gateway.app import create_app

    return create_app(settings, state=state)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@dataclass
class Who:
    """A principal made for a test: its actor and its bearer header."""

    actor: Actor
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


ORG_KIND = {
    "department": "department",
    "operator": "operator",
    "enterprise": "enterprise",
    "auditor": "audit_office",
    "admin": "admin",
}


@pytest.fixture
def make_principal(engine):  # type: ignore[no-untyped-def]
    """Factory: make_principal("department", org="510100-GA") -> Who (creates the org when missing)."""
    import identity
    from gateway.db import unit_of_work

    def make(
        role: str, org: str | None = None, *, name: str | None = None, org_name: str | None = None
    ) -> Who:
        org = org or f"{role[:3].upper()}-{uuid.uuid4().hex[:6]}"
        system = Actor.system("tests")
        with unit_of_work(engine) as s:
            from sqlmodel import select

            if s.exec(select(identity.Organisation).where(identity.Organisation.code == org)).first() is None:
                identity.create_organisation(
                    s, actor=system, code=org, name=org_name or f"测试{org}", kind=ORG_KIND[role]
                )
            p, token = identity.create_principal(
                s, actor=system, org_code=org, role=role, name=name or f"{role} of {org}"
            )
        return Who(actor=Actor(principal=p.code, role=role, org=org, name=p.name), token=token)

    return make


@dataclass
class AuditRow:
    seq: int
    principal: str
    action: str
    allowed: bool
    reasons: list
    outcome: dict
    scenario: str | None
    experiment: str | None
    dataset: str | None


def audit_rows(engine, **filters) -> list[AuditRow]:  # type: ignore[no-untyped-def]
    """Every audit record matching `filters` (AuditQuery fields), oldest first, outcome decoded."""
    import json

    from audit.search import AuditQuery, search
    from gateway.db import unit_of_work

    rows: list = []
    before = None
    with unit_of_work(engine) as s:
        while True:
            page = search(s, AuditQuery(**filters, before_seq=before, limit=500))
            rows.extend(page.items)
            if len(page.items) < 500:
                break
            before = page.items[-1].seq
    rows.sort(key=lambda r: r.seq)
    return [
        AuditRow(
            r.seq,
            r.principal,
            r.action,
            r.allowed,
            json.loads(r.reasons),
            json.loads(r.outcome),
            r.scenario,
            r.experiment,
            r.dataset,
        )
        for r in rows
    ]
