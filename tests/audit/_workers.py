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


def group_write(url: str, worker: int, threads: int, each: int) -> int:
    """`threads` request threads, each handing `each` entries one at a time to the gateway's group
    committer (as read requests do), in a fresh gateway engine in this process."""
    import threading

    from gateway.db import _write_pending_audit, make_engine

    engine = make_engine(url)

    def requests(t: int) -> None:
        actor = Actor(principal=f"ent:w{worker}", role="enterprise", org=f"ENT-{worker}", request_id=f"w{worker}")
        for i in range(each):
            entry = {"action": "dataset:read_open", "resource_type": "dataset", "resource_id": f"{worker}-{t}-{i}"}
            _write_pending_audit(engine, [{"actor": actor, "allowed": True, **entry}])

    ts = [threading.Thread(target=requests, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    engine.dispose()
    return threads * each
