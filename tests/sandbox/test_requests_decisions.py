"""Requests and their decisions: who may decide when, no self-approval, reasons, closed data, onboarding."""

from __future__ import annotations

from gmcrypto.sm2 import PrivateKey
from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import CERT, CLOSED, POP, apply

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures


def _decide(w, who, req_id, decision, reason=""):
    return w.post(who, f"/requests/{req_id}/decision", {"decision": decision, "reason": reason})


def test_each_owning_department_then_the_operator(world):
    w = world
    req = apply(w, {POP: ["gender"], CERT: ["cert_type"]})
    assert req["owners"] == ["510100-GA", "510100-ZWFW"]
    early = _decide(w, w.operator, req["id"], "approve")
    assert early.status_code == 409 and "510100-GA" in early.json()["detail"]
    assert _decide(w, w.ga, req["id"], "approve").json()["state"] == "submitted"  # ZWFW still to decide
    assert _decide(w, w.ga, req["id"], "approve").status_code == 409  # once per department
    assert _decide(w, w.zwfw, req["id"], "approve").json()["state"] == "dept_approved"
    done = _decide(w, w.operator, req["id"], "approve").json()
    assert done["state"] == "active" and done["grant_id"]
    assert [d["org"] for d in done["decisions"]] == ["510100-GA", "510100-ZWFW", "OPERATOR-1"]
    ws = w.get(w.ent, f"/workspaces/{done['grant_id']}").json()
    assert {t["table"] for t in ws["tables"]} == {"population", "certificate"}
    records = audit_rows(w.state.engine, action="request:approve")
    approvals = [r for r in records if r.allowed and "error" not in r.outcome]
    assert [r.outcome["error"] for r in records if "error" in r.outcome] == ["conflict", "conflict"]
    assert {r.dataset for r in approvals} == {POP, CERT} and len(approvals) == 4  # 2 departments + operator x2


def test_self_approval_and_strangers_are_refused_and_audited(world):
    w = world
    req = apply(w, {POP: ["gender"]})
    own = _decide(w, w.ent, req["id"], "approve")
    assert own.status_code == 403 and own.headers["content-type"].startswith("application/problem+json")
    rows = [r for r in audit_rows(w.state.engine, action="request:approve") if not r.allowed]
    assert rows and "hard.no_self_approval" in rows[-1].reasons
    assert _decide(w, w.zwfw, req["id"], "approve").status_code == 403  # not the owner
    assert _decide(w, w.other, req["id"], "deny", "not mine").status_code == 403
    assert w.get(w.ent, "/requests").json()[0]["state"] == "submitted"  # nothing changed


def test_deny_needs_a_reason_and_ends_the_request(world):
    w = world
    req = apply(w, {POP: ["gender"]})
    assert _decide(w, w.ga, req["id"], "deny").status_code == 422
    r = _decide(w, w.ga, req["id"], "deny", "purpose does not need personal data")
    assert r.status_code == 200 and r.json()["state"] == "denied"
    assert r.json()["decisions"][-1]["reason"] == "purpose does not need personal data"
    assert _decide(w, w.operator, req["id"], "approve").status_code == 409
    req2 = apply(w, {POP: ["gender"]})
    _decide(w, w.ga, req2["id"], "approve")
    assert _decide(w, w.operator, req2["id"], "deny", "no contract on file").json()["state"] == "denied"
    denials = audit_rows(w.state.engine, action="request:deny")
    assert [r.outcome.get("error") for r in denials] == ["invalid", None, None]  # the reasonless try is logged


def test_closed_data_and_bad_requests_are_refused(world):
    w = world
    body = {"columns": {CLOSED: ["gender"]}, "purpose": "stats", "purpose_text": "统计", "duration_days": 10}
    r = w.post(w.ent, "/requests", body)
    assert r.status_code == 403
    assert "hard.closed_not_opened" in audit_rows(w.state.engine, action="request:create")[-1].reasons
    bad = [
        ({**body, "columns": {POP: ["no_such_column"]}}, 422),
        ({**body, "columns": {POP: []}}, 422),
        ({**body, "columns": {"510100-XX-0404": ["a"]}}, 404),
        ({**body, "columns": {POP: ["gender"]}, "purpose": "Bad Purpose!"}, 422),
        ({**body, "columns": {POP: ["gender"]}, "duration_days": 0}, 422),
    ]
    for payload, status in bad:
        assert w.post(w.ent, "/requests", payload).status_code == status, payload
    assert w.post(w.operator, "/requests", {**body, "columns": {POP: ["gender"]}}).status_code == 403


def test_onboarding_validates_the_key_and_only_the_operator_onboards(world):
    w = world
    pem = PrivateKey.generate().public_key().to_pem().decode()
    ok = w.post(w.operator, "/enterprises", {"code": "ENT-TWO", "name": "第二家企业", "sm2_public_key_pem": pem})
    assert ok.status_code == 201 and ok.json()["token"] is None and len(ok.json()["key_id"]) == 32
    again = w.post(
        w.operator,
        "/enterprises",
        {"code": "ENT-TWO", "name": "第二家企业", "status": "suspended", "sm2_public_key_pem": pem},
    )
    assert again.status_code == 201 and again.json()["status"] == "suspended"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for key in (p256, "not a key", pem.replace("A", "B", 3)):
        r = w.post(w.operator, "/enterprises", {"code": "ENT-BAD", "name": "x", "sm2_public_key_pem": key})
        assert r.status_code == 422 and "SM2" in r.json()["detail"]
    assert w.post(w.ent, "/enterprises", {"code": "ENT-X", "name": "x", "sm2_public_key_pem": pem}).status_code == 403
    assert (
        w.post(w.operator, "/enterprises", {"code": "510100-GA", "name": "x", "sm2_public_key_pem": pem}).status_code
        == 409
    )
