"""Grants at use: only granted columns, never the operator, expiry on the clock, revocation at once
(also for a query already running)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common import clock
from common.errors import Denied
from gateway.db import unit_of_work
from sandbox import grants, queries
from sandbox.models import Query
from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import POP, apply, approve_all

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures

GENDER = "select gender, count(*) as n from population group by gender"


def _query(w, who, grant_id, sql):
    return w.post(who, f"/workspaces/{grant_id}/queries", {"sql": sql})


def test_columns_roles_and_expiry_are_checked_at_every_use(world):
    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender", "household_address_code"]}, days=2))
    # A column the grant does not name is refused by the decision point, and logged.
    r = _query(w, w.ent, grant_id, "select count(distinct name) as n from population")
    assert r.status_code == 403
    denied = [x for x in audit_rows(w.state.engine, action="workspace:query") if not x.allowed]
    assert denied[-1].dataset == POP and denied[-1].principal == w.ent.actor.principal
    assert (
        _query(
            w,
            w.ent,
            grant_id,
            "select count(*) as n from population p join population q on true where p.phone = q.phone",
        ).status_code
        == 403
    )
    # SQL the guard refuses is a 422 with the reason, and logged against the grant.
    bad = _query(w, w.ent, grant_id, "select * from read_csv('/etc/passwd')")
    assert bad.status_code == 422 and "read_csv" in bad.json()["detail"]
    guard_rows = [
        x for x in audit_rows(w.state.engine, action="workspace:query") if x.outcome.get("stage") == "sqlguard"
    ]
    assert guard_rows and guard_rows[-1].outcome["error"] == "invalid"
    # The operator co-approved but never queries or looks into the workspace.
    assert _query(w, w.operator, grant_id, GENDER).status_code == 403
    assert w.get(w.operator, f"/workspaces/{grant_id}").status_code == 403
    # Another enterprise cannot use this grant.
    from gmcrypto.sm2 import PrivateKey

    pem = PrivateKey.generate().public_key().to_pem().decode()
    other = w.post(
        w.operator,
        "/enterprises",
        {"code": "ENT-OTHER", "name": "别家", "principal_name": "x", "sm2_public_key_pem": pem},
    ).json()
    assert (
        w.client.post(
            f"/api/v1/sandbox/workspaces/{grant_id}/queries",
            json={"sql": GENDER},
            headers={"Authorization": f"Bearer {other['token']}"},
        ).status_code
        == 403
    )
    assert _query(w, w.ent, grant_id, GENDER).status_code == 201
    # Two days later the grant has expired: refused with the reason, though nothing was revoked.
    later = clock.now() + timedelta(days=2, seconds=1)
    clock.set_clock(lambda: later)
    try:
        r = _query(w, w.ent, grant_id, GENDER)
        assert r.status_code == 403 and f"grant {grant_id} is expired" in r.json()["detail"]
        assert w.get(w.ent, f"/workspaces/{grant_id}").status_code == 403
        assert w.get(w.ent, "/requests").json()[0]["state"] == "expired"
    finally:
        clock.set_clock(None)


class _RevokeWhileRunning:
    """A runner that revokes the grant while the query is in the worker, then lets it finish."""

    def __init__(self, w, grant_id):
        self.w, self.grant_id = w, grant_id

    def run(self, sql, tables, **kw):
        with unit_of_work(self.w.state.engine) as s:
            grants.revoke(s, actor=self.w.ga.actor, grant_id=self.grant_id, reason="purpose ended")
        return queries.default_runner().run(sql, tables, **kw)


def test_revocation_takes_effect_at_once_also_mid_query(world):
    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender"]}))
    with pytest.raises(Denied, match="revoked"):
        queries.run_query(
            lambda: unit_of_work(w.state.engine),
            actor=w.ent.actor,
            grant_id=grant_id,
            sql=GENDER,
            keyring=w.state.keyring,
            data_dir=w.state.data_dir,
            runner=_RevokeWhileRunning(w, grant_id),  # type: ignore[arg-type]
        )
    with unit_of_work(w.state.engine) as s:
        q = s.get(Query, 1)
        assert q is not None and q.status == "denied" and q.result is None
    stages = [(x.allowed, x.outcome.get("stage")) for x in audit_rows(w.state.engine, action="workspace:query")]
    assert stages == [(True, "started"), (False, None)]
    assert [x.allowed for x in audit_rows(w.state.engine, action="grant:revoke")] == [True]
    assert w.get(w.ent, "/requests").json()[0]["state"] == "revoked"
    assert _query(w, w.ent, grant_id, GENDER).status_code == 403


def test_revoke_over_http_needs_a_right_and_a_reason(world):
    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender"]}))
    assert w.post(w.ent, f"/grants/{grant_id}/revoke", {"reason": "done"}).status_code == 403
    assert w.post(w.zwfw, f"/grants/{grant_id}/revoke", {"reason": "not ours"}).status_code == 403
    assert w.post(w.operator, f"/grants/{grant_id}/revoke", {"reason": ""}).status_code == 422
    r = w.post(w.operator, f"/grants/{grant_id}/revoke", {"reason": "contract ended"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert w.post(w.operator, f"/grants/{grant_id}/revoke", {"reason": "again"}).status_code == 409
    assert w.get(w.ent, f"/workspaces/{grant_id}").status_code == 403


def test_output_control_is_redone_when_another_query_moved_the_budget(world, monkeypatch):
    """Output control runs outside the write transaction; a budget that moved meanwhile is never overwritten."""
    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender"]}))
    real_check, calls = queries._check, []

    def check_after_a_concurrent_query(p, result, budget_before):
        calls.append(budget_before)
        if len(calls) == 1:  # another query of the same grant finishes between our read and our write
            assert _query(w, w.ent, grant_id, "select count(*) as n from population").status_code == 201
        return real_check(p, result, budget_before)

    monkeypatch.setattr(queries, "_check", check_after_a_concurrent_query)
    assert _query(w, w.ent, grant_id, GENDER).status_code == 201
    with unit_of_work(w.state.engine) as s:
        budget = grants.get(s, grant_id).budget
    assert budget["queries_used"] == 2  # both queries counted: no lost update
    assert [r["seq"] for r in budget["released"]] == [1, 2]
    # Ours on the budget as read, the other query's, then ours again inside the transaction on the moved one.
    assert [c["queries_used"] for c in calls] == [0, 0, 1]
