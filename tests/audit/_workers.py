"""Writer processes for the concurrency tests (importable by spawned children)."""

from __future__ import annotations

from sqlmodel import Session

import audit
from common.actor import Actor

from . import _db


def write(url_or_path: str, worker: int, n: int) -> int:
    """n appends, one transaction each (as n requests would), from a fresh engine in this process."""
    engine = _db.pg_engine() if url_or_path == "postgresql" else _db.sqlite_engine(url_or_path)
    actor = Actor(principal=f"ent:w{worker}", role="enterprise", org=f"ENT-{worker}", request_id=f"w{worker}")
    for i in range(n):
        with Session(engine) as s:
            audit.record(
                s,
                actor=actor,
                action="workspace:query",
                resource_type="query",
                resource_id=f"q-{worker}-{i}",
                allowed=i % 7 != 0,
                outcome={"rows": i},
            )
            s.commit()
    engine.dispose()
    return n
