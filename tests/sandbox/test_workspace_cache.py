"""The query service with warm tables: each grant gets its own load, repeat queries are served warm,
revocation and expiry drop a grant's tables, a newly published version is loaded, never served stale.
Every query still passes the decision point and is audited, warm or not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catalog import publish, samples
from common import clock
from gateway.db import unit_of_work
from sandbox import queries, workspaces
from sandbox.runner import Limits, SandboxRunner
from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import POP, apply, approve_all

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures

GENDER = "select gender, count(*) as n from population group by gender"


@pytest.fixture
def fresh_runner(sandbox_runner):
    """A runner of this test's own, so no other test's warm tables are in it."""
    runner = SandboxRunner(Limits(timeout_s=5.0, memory_mb=256, threads=1, max_rows=5000), cache_mb=64)
    queries._RUNNER = runner
    yield runner
    runner.close()
    queries._RUNNER = sandbox_runner


@pytest.fixture
def loads(monkeypatch):
    """How often the service decrypted (columns of) a dataset version into memory."""
    calls: list[str] = []
    real = workspaces.VersionRef.columns

    def counting(self, columns, **kw):
        calls.append(f"{self.code}/v{self.number}")
        return real(self, columns, **kw)

    monkeypatch.setattr(workspaces.VersionRef, "columns", counting)
    return calls


def _query(w, grant_id, sql=GENDER):
    return w.post(w.ent, f"/workspaces/{grant_id}/queries", {"sql": sql})


def test_each_grant_loads_its_own_tables_and_repeats_are_warm(world, fresh_runner, loads):
    w = world
    a = approve_all(w, apply(w, {POP: ["gender"]}))
    b = approve_all(w, apply(w, {POP: ["gender"]}))
    first = _query(w, a)
    assert first.status_code == 201 and first.json()["decision"] == "released"
    assert _query(w, a).json()["result"] == first.json()["result"]
    assert loads == [f"{POP}/v1"]  # the repeat was served warm
    assert _query(w, b).json()["result"] == first.json()["result"]
    assert loads == [f"{POP}/v1", f"{POP}/v1"]  # grant B never reads grant A's warm table
    assert fresh_runner.cached_grants() == {a, b}
    started = [r for r in audit_rows(w.state.engine, action="workspace:query") if r.outcome.get("stage") == "started"]
    assert len(started) == 3  # warm or not, every query was decided and logged


def test_revocation_drops_the_grants_tables(world, fresh_runner, loads):
    w = world
    a = approve_all(w, apply(w, {POP: ["gender"]}))
    b = approve_all(w, apply(w, {POP: ["gender"]}))
    _query(w, a), _query(w, b)
    r = w.post(w.ga, f"/grants/{a}/revoke", {"reason": "purpose ended"})
    assert r.status_code == 200, r.text
    assert fresh_runner.cached_grants() == {b}
    assert _query(w, a).status_code == 403
    assert len(loads) == 2


def test_expired_grant_is_dropped_at_the_next_query(world, fresh_runner, loads):
    w = world
    short = approve_all(w, apply(w, {POP: ["gender"]}, days=1))
    long = approve_all(w, apply(w, {POP: ["gender"]}, days=30))
    _query(w, short), _query(w, long)
    assert fresh_runner.cached_grants() == {short, long}
    later = clock.now() + timedelta(days=2)
    clock.set_clock(lambda: later)
    try:
        assert _query(w, long).status_code == 201
        assert fresh_runner.cached_grants() == {long}
        assert _query(w, short).status_code == 403
    finally:
        clock.set_clock(None)


def test_new_version_is_loaded_not_served_stale(world, fresh_runner, loads, tmp_path):
    w = world
    g = approve_all(w, apply(w, {POP: ["gender"]}))
    before = _query(w, g).json()
    path = tmp_path / "population-v2.csv"
    samples.generate("population", 120).frame.to_csv(path, index=False)
    publish.publish(
        lambda: unit_of_work(w.state.engine),
        actor=w.ga.actor,
        code=POP,
        upload=publish.Upload(path=path, fmt="csv"),
        data_dir=w.state.data_dir,
        keyring=w.state.keyring,
    )
    after = _query(w, g).json()
    assert loads == [f"{POP}/v1", f"{POP}/v2"]
    assert (before["versions"], after["versions"]) == ({POP: 1}, {POP: 2})
    assert (before["rows_scanned"], after["rows_scanned"]) == (300, 120)
    assert {k[2] for k in fresh_runner.cached_keys()} == {2}  # the old version's table is gone


def test_opening_the_workspace_preloads_so_the_first_query_is_warm(world, fresh_runner, loads):
    w = world
    a = approve_all(w, apply(w, {POP: ["gender"]}))
    assert w.get(w.ent, f"/workspaces/{a}").status_code == 200
    fresh_runner.wait_preloads()
    assert loads == [f"{POP}/v1", f"{POP}/v1"]  # the preview's columns, then the preload
    assert fresh_runner.cached_grants() == {a}
    first = _query(w, a)
    assert first.status_code == 201 and first.json()["decision"] == "released"
    assert len(loads) == 2  # served warm
    opened = [r for r in audit_rows(w.state.engine, action="workspace:query") if "preload" in r.outcome]
    assert [r.outcome["preload"] for r in opened] == [[POP]]


def test_a_preloaded_grant_is_dropped_when_revoked(world, fresh_runner, loads):
    w = world
    a = approve_all(w, apply(w, {POP: ["gender"]}))
    w.get(w.ent, f"/workspaces/{a}")
    fresh_runner.wait_preloads()
    assert fresh_runner.cached_grants() == {a}
    assert w.post(w.ga, f"/grants/{a}/revoke", {"reason": "purpose ended"}).status_code == 200
    assert fresh_runner.cached_grants() == set()
    assert w.get(w.ent, f"/workspaces/{a}").status_code == 403  # refused: nothing is preloaded again
    fresh_runner.wait_preloads()
    assert fresh_runner.cached_grants() == set()
