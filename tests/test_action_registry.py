"""Walk the action registry: every named action, driven once through the API, leaves exactly one record.

For each action an allowed call and (where a wrong caller is easy to pick) a denied call are made; the
audit log must gain exactly one record for that action and caller each time, with the right decision.
The registry is the source of truth: an action added to policies/actions.py without a step here fails.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import identity
from common.actor import Actor
from gateway.db import unit_of_work
from policies.actions import ACTIONS
from sandbox import exports
from tests.conftest import audit_rows
from tests.sandbox._world import API, GEO, POP, apply, approve_all, sandbox_runner, world  # noqa: F401

BY_DISTRICT = ("select household_address_code as district, gender, count(*) as people "
               "from population group by household_address_code, gender")


def _count(engine, action, who) -> tuple[int, int]:
    rows = [r for r in audit_rows(engine, action=action) if r.principal == who.actor.principal]
    return sum(r.allowed for r in rows), sum(not r.allowed for r in rows)


def test_every_registered_action_is_decided_and_recorded_exactly_once(world, make_principal, monkeypatch):  # noqa: F811
    w = world
    c = w.client
    engine = w.state.engine
    admin = make_principal("admin", org="510100-XXZX")
    auditor = make_principal("auditor", org="510100-SJ")
    public = type(w.ga)(actor=Actor.public(), token="")
    monkeypatch.setattr(exports, "REVIEW_ROWS", 3)
    done: set[str] = set()

    def step(action, who, call, *, allowed=True):
        before = _count(engine, action, who)
        resp = call()
        if resp is not None:
            ok = 200 <= resp.status_code < 300
            assert ok == allowed, (action, resp.status_code, resp.text[:300])
        after = _count(engine, action, who)
        expected = (before[0] + 1, before[1]) if allowed else (before[0], before[1] + 1)
        assert after == expected, (action, "allowed" if allowed else "denied", before, after)
        done.add(action)
        return resp

    def H(who):
        return who.headers if who.token else {}

    # identity
    step("organisation:create", admin, lambda: c.post("/api/v1/admin/organisations", headers=H(admin),
                                                      json={"code": "ORG-W1", "name": "某局", "kind": "department"}))
    step("organisation:create", w.ga, lambda: c.post("/api/v1/admin/organisations", headers=H(w.ga),
                                                     json={"code": "ORG-W2", "name": "某局", "kind": "department"}),
         allowed=False)
    r = step("principal:create", admin, lambda: c.post("/api/v1/admin/principals", headers=H(admin),
                                                        json={"org": "ORG-W1", "role": "department", "name": "n"}))
    new_principal, new_token = r.json()["principal"], r.json()["token"]
    step("principal:create", w.ent, lambda: c.post("/api/v1/admin/principals", headers=H(w.ent),
                                                    json={"org": "ORG-W1", "role": "admin", "name": "x"}),
         allowed=False)

    def issue():
        with unit_of_work(engine) as s:
            identity.issue_token(s, actor=admin.actor, principal_code=new_principal, expires_in=timedelta(days=1))
    step("token:issue", admin, issue)
    step("token:revoke", admin, lambda: c.delete(f"/api/v1/admin/tokens/{new_token.split('_')[1]}",
                                                 headers=H(admin)))
    step("enterprise:onboard", w.ent, lambda: c.post(f"{API}/enterprises", headers=H(w.ent), json={
        "code": "ENT-X", "name": "x", "sm2_public_key_pem": w.ent_key.public_key().to_pem().decode()}),
        allowed=False)
    step("enterprise:onboard", w.operator, lambda: c.post(f"{API}/enterprises", headers=H(w.operator), json={
        "code": "ENT-X", "name": "某公司", "sm2_public_key_pem": w.ent_key.public_key().to_pem().decode()}))
    step("enterprise:list", w.ent, lambda: c.get(f"{API}/enterprises", headers=H(w.ent)), allowed=False)
    r = step("enterprise:list", w.operator, lambda: c.get(f"{API}/enterprises", headers=H(w.operator)))
    assert "ENT-X" in [e["code"] for e in r.json()]

    # catalog
    from catalog import demo_data, samples

    body = demo_data.registration("legal_person").model_dump(mode="json")
    step("dataset:register", w.ent, lambda: c.post("/api/v1/catalog/datasets", json=body, headers=H(w.ent)),
         allowed=False)
    scjg = make_principal("department", org="510100-SCJG")
    step("dataset:register", scjg, lambda: c.post("/api/v1/catalog/datasets", json=body, headers=H(scjg)))
    step("dataset:update", scjg, lambda: c.patch(f"/api/v1/catalog/datasets/{body['code']}",
                                                 json={"keywords": ["法人"]}, headers=H(scjg)))
    step("dataset:update", w.ga, lambda: c.patch(f"/api/v1/catalog/datasets/{body['code']}",
                                                 json={"keywords": ["x"]}, headers=H(w.ga)), allowed=False)
    csv = samples.generate("legal_person", 60).frame.to_csv(index=False).encode()
    step("dataset:publish", scjg, lambda: c.post(f"/api/v1/catalog/datasets/{body['code']}/versions", content=csv,
                                                 headers={**H(scjg), "content-type": "text/csv"}))
    step("dataset:publish", w.ga, lambda: c.post(f"/api/v1/catalog/datasets/{body['code']}/versions", content=csv,
                                                 headers={**H(w.ga), "content-type": "text/csv"}), allowed=False)
    step("dataset:read_metadata", w.ent, lambda: c.get(f"/api/v1/catalog/datasets/{POP}", headers=H(w.ent)))
    step("dataset:read_quality", scjg, lambda: c.get(f"/api/v1/catalog/datasets/{body['code']}/versions/1/quality",
                                                     headers=H(scjg)))
    step("dataset:read_quality", w.ent, lambda: c.get(f"/api/v1/catalog/datasets/{POP}/versions/1/quality",
                                                      headers=H(w.ent)), allowed=False)
    step("dataset:read_open", w.ent, lambda: c.get(f"/api/v1/open/datasets/{GEO}/rows", headers=H(w.ent)))
    step("dataset:read_open", w.ent, lambda: c.get(f"/api/v1/open/datasets/{POP}/rows", headers=H(w.ent)),
         allowed=False)

    # sharing: an unconditional share is granted at once, then read
    r = c.post(f"{API}/shares", headers=H(w.other), json={"dataset": GEO, "columns": ["poi_id", "name"],
                                                          "purpose": "emergency_planning", "purpose_text": "应急规划",
                                                          "duration_days": 7})
    assert r.status_code == 201, r.text
    share_grant = r.json()["grant_id"]
    step("dataset:read_shared", w.other, lambda: c.get(f"{API}/shares/{share_grant}/rows", headers=H(w.other)))

    # sandbox: request, deny, approve, query, export, review, download, revoke
    step("request:create", w.ent, lambda: c.post(f"{API}/requests", headers=H(w.ent), json={
        "columns": {POP: ["gender", "household_address_code"]}, "purpose": "district_statistics",
        "purpose_text": "统计", "duration_days": 30}))
    denied_req = w.get(w.ent, "/requests").json()[0]
    step("request:deny", w.ga, lambda: w.post(w.ga, f"/requests/{denied_req['id']}/decision",
                                              {"decision": "deny", "reason": "not needed"}))
    req = apply(w, {POP: ["gender", "household_address_code"]})
    step("request:approve", w.ent, lambda: w.post(w.ent, f"/requests/{req['id']}/decision",
                                                  {"decision": "approve"}), allowed=False)
    grant_id = approve_all(w, req)
    r = step("workspace:query", w.ent, lambda: w.post(w.ent, f"/workspaces/{grant_id}/queries", {"sql": BY_DISTRICT}))
    qid = r.json()["id"]
    r = step("export:create", w.ent, lambda: w.post(w.ent, f"/queries/{qid}/export", {"format": "csv"}))
    eid = r.json()["id"]
    step("export:review", w.ent, lambda: w.post(w.ent, f"/exports/{eid}/review", {"decision": "release"}),
         allowed=False)
    step("export:review", w.operator, lambda: w.post(w.operator, f"/exports/{eid}/review",
                                                     {"decision": "release", "reason": "aggregates"}))
    step("export:download", w.ent, lambda: c.get(f"{API}/exports/{eid}", headers=H(w.ent)))
    step("grant:revoke", w.ga, lambda: w.post(w.ga, f"/grants/{grant_id}/revoke", {"reason": "project ended"}))

    # audit
    step("audit:search", auditor, lambda: c.get("/api/v1/audit/events", headers=H(auditor)))
    step("audit:search", w.ent, lambda: c.get("/api/v1/audit/events", headers=H(w.ent)), allowed=False)
    step("audit:checkpoint", auditor, lambda: c.post("/api/v1/audit/checkpoints", headers=H(auditor)))
    step("audit:export", auditor, lambda: c.get("/api/v1/audit/export", headers=H(auditor)))
    step("alert:read", auditor, lambda: c.get("/api/v1/audit/alerts", headers=H(auditor)))

    # data range
    step("scenario:activate", w.ent, lambda: c.post("/api/v1/range/scenarios/market_supervision/activate",
                                                    json={}, headers=H(w.ent)), allowed=False)
    step("scenario:activate", w.operator, lambda: c.post("/api/v1/range/scenarios/market_supervision/activate",
                                                         json={"reason": "drill"}, headers=H(w.operator)))
    step("scenario:deactivate", w.operator, lambda: c.post("/api/v1/range/scenarios/market_supervision/deactivate",
                                                           json={"reason": "drill over"}, headers=H(w.operator)))
    step("experiment:read", w.operator, lambda: c.get("/api/v1/range/experiments", headers=H(w.operator)))
    step("experiment:run", w.ent, lambda: c.post("/api/v1/range/experiments", json={"sample": "market_supervision"},
                                                 headers=H(w.ent)), allowed=False)
    assert public  # anonymous callers are covered by the open-data and catalog tests

    missing = set(ACTIONS) - done - {"experiment:run"}
    assert not missing, f"actions with no step in this walk: {sorted(missing)}"
    # experiment:run allowed starts a long background run; its allowed path is covered in tests/datarange.
    assert any(r.allowed for r in audit_rows(engine, action="dataset:read_open"))


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_is_declared_in_the_cedar_schema(action):
    from policies.engine import POLICY_DIR

    assert f'"{action}"' in (POLICY_DIR / "schema.cedarschema").read_text(encoding="utf-8")
