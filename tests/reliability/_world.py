"""A realistic gateway for the reliability tests: the sample libraries published small, a principal per role.

Built once per module (publishing takes seconds), on the backend the suite runs on (PDG_TEST_DB).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from common.actor import Actor
from tests.conftest import BACKEND, ORG_KIND, PG_ADMIN_URL, Who, _pg_url

ROLES = ("public", "department", "operator", "enterprise", "auditor", "admin")
# Small editions: enough rows for pages, filters and downloads, quick to publish.
SAMPLE_ROWS = {"population": 300, "legal_person": 200, "geospatial": 200, "certificate": 200}
DEPARTMENTS = ("510100-GA", "510100-SCJG", "510100-GH", "510100-ZWFW")


@dataclass
class World:
    state: Any
    app: Any
    data_dir: Path
    who: dict[str, Who | None]  # role -> principal (None for the anonymous public)
    datasets: list[str] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        w = self.who[role]
        return w.headers if w is not None else {}


@contextmanager
def database(template: str | None, tmp: Path) -> Iterator[str]:
    """A fresh migrated database cloned from the session template (PostgreSQL: migrated anew without
    one); yields its URL."""
    if BACKEND == "sqlite":
        path = tmp / "gateway.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    name = f"pdg_rel_{uuid.uuid4().hex[:10]}"
    # pre-ping: a test may restart PostgreSQL under this engine's pooled connection
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        if template:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        else:  # a database of its own, migrated here (no session template to share)
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            from gateway import db

            engine = db.make_engine(_pg_url(name))
            db.upgrade(engine)
            engine.dispose()
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def principal(engine: Any, role: str, org: str) -> Who:
    """A principal of `role` in `org` (the organisation is created when missing)."""
    from sqlmodel import select

    import identity
    from gateway.db import unit_of_work

    system = Actor.system("tests")
    with unit_of_work(engine) as s:
        if s.exec(select(identity.Organisation).where(identity.Organisation.code == org)).first() is None:
            identity.create_organisation(s, actor=system, code=org, name=f"测试{org}", kind=ORG_KIND[role])
        p, token = identity.create_principal(s, actor=system, org_code=org, role=role, name=f"{role} of {org}")
    return Who(actor=Actor(principal=p.code, role=role, org=org, name=p.name), token=token)


def populate(state: Any, *, rows: dict[str, int] | None = None) -> tuple[dict[str, Who | None], list[str]]:
    """Principals for every role and the sample libraries published; returns (who, dataset codes)."""
    from catalog import demo_data
    from gateway.db import unit_of_work

    who: dict[str, Who | None] = {"public": None}
    for org in DEPARTMENTS:
        w = principal(state.engine, "department", org)
        who.setdefault("department", w)  # 510100-GA: owns the population library
    who["operator"] = principal(state.engine, "operator", "510100-YY")
    who["enterprise"] = principal(state.engine, "enterprise", "91510100REL")
    who["auditor"] = principal(state.engine, "auditor", "510100-SJ")
    who["admin"] = principal(state.engine, "admin", "510100-XXZX")
    codes = demo_data.load(
        uow=lambda: unit_of_work(state.engine),
        data_dir=state.data_dir,
        keyring=state.keyring,
        rows=rows or SAMPLE_ROWS,
    )
    return who, codes


def settings_for(tmp: Path, db_url: str, **limits: Any) -> Any:
    from gateway.settings import Limits, Settings

    return Settings(
        env="test",
        data_dir=tmp / "var",
        database_url=db_url,
        keys_dir=tmp / "keys",
        limits=Limits(**limits),
        sandbox_warm=False,  # tests start sandbox workers when they need them
    )
