"""The auditor's API over HTTP: search, proofs checked independently, export verified offline."""

from __future__ import annotations

import zipfile

import pytest
from typer.testing import CliRunner

from gateway.commands.audit import app as audit_cli
from tests.audit import indep


@pytest.fixture
def auditor(make_principal):
    return make_principal("auditor", org="510100-SJ")


@pytest.fixture
def activity(client, make_principal):
    """Some allowed and denied actions in the log."""
    dept = make_principal("department", org="510100-GA")
    ent = make_principal("enterprise", org="91510100ENT")
    client.get("/api/v1/me", headers=dept.headers)
    client.post(
        "/api/v1/admin/organisations",
        json={"code": "X-1", "name": "x", "kind": "department"},
        headers=ent.headers,
    )  # denied
    return {"dept": dept, "ent": ent}


def test_auditor_searches_and_filters_denials(client, auditor, activity):
    r = client.get("/api/v1/audit/events", params={"decision": "denied"}, headers=auditor.headers)
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert rows and all(not x["allowed"] for x in rows)
    assert any(x["action"] == "organisation:create" and x["principal"] == activity["ent"].actor.principal for x in rows)
    agg = client.get("/api/v1/audit/aggregates", headers=auditor.headers).json()
    assert agg["per_action"]["organisation:create"] >= 1


def test_non_auditors_cannot_read_the_log_and_are_recorded(client, auditor, activity):
    r = client.get("/api/v1/audit/events", headers=activity["ent"].headers)
    assert r.status_code == 403
    assert client.get("/api/v1/audit/events").status_code == 401
    mine = client.get(
        "/api/v1/audit/events",
        params={"principal": activity["ent"].actor.principal, "action": "audit:search"},
        headers=auditor.headers,
    ).json()
    assert [x["allowed"] for x in mine["data"]] == [False]


def test_inclusion_and_consistency_proofs_check_out_independently(client, auditor, activity):
    first = client.post("/api/v1/audit/checkpoints", headers=auditor.headers).json()
    client.get("/api/v1/me", headers=activity["dept"].headers)
    second = client.post("/api/v1/audit/checkpoints", headers=auditor.headers).json()
    assert second["tree_size"] > first["tree_size"]
    for seq in (1, first["tree_size"], second["tree_size"]):
        proof = client.get(f"/api/v1/audit/proofs/{seq}", headers=auditor.headers).json()
        assert proof["tree_size"] == second["tree_size"]
        assert indep.verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            seq - 1,
            proof["tree_size"],
            [bytes.fromhex(p) for p in proof["path"]],
            bytes.fromhex(second["root_hash"]),
        )
    cons = client.get(
        "/api/v1/audit/proofs/consistency",
        params={"old_size": first["tree_size"], "new_size": second["tree_size"]},
        headers=auditor.headers,
    ).json()
    assert indep.verify_consistency(
        first["tree_size"],
        second["tree_size"],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        [bytes.fromhex(p) for p in cons["path"]],
    )


def test_export_verifies_offline_and_tampering_is_named(client, auditor, activity, tmp_path):
    client.post("/api/v1/audit/checkpoints", headers=auditor.headers)
    r = client.get("/api/v1/audit/export", headers=auditor.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    export = tmp_path / "log.zip"
    export.write_bytes(r.content)
    key = tmp_path / "gateway.pem"
    key.write_text(client.get("/api/v1/audit/public-key").text)
    runner = CliRunner()
    ok = runner.invoke(audit_cli, ["verify", str(export), "--public-key", str(key)])
    assert ok.exit_code == 0, ok.output
    # change one byte inside record 2 and repackage
    with zipfile.ZipFile(export) as z:
        members = {n: z.read(n) for n in z.namelist()}
    lines = members["records.jsonl"].split(b"\n")
    lines[1] = (
        lines[1].replace(b'"allowed":true', b'"allowed":fals', 1)
        if b'"allowed":true' in lines[1]
        else lines[1][:-3] + b"X" + lines[1][-2:]
    )
    members["records.jsonl"] = b"\n".join(lines)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    failed = runner.invoke(audit_cli, ["verify", str(bad), "--public-key", str(key)])
    assert failed.exit_code == 1 and "record 2" in failed.output
    via_api = client.post("/api/v1/audit/verify", content=bad.read_bytes(), headers=auditor.headers).json()
    assert via_api["ok"] is False and via_api["first_bad_seq"] == 2


def test_housekeeping_signs_and_raises_repeated_denial_alerts(client, auditor, activity, state):
    from datetime import timedelta

    from common import clock
    from gateway.db import unit_of_work
    from oversight.service import housekeeping

    for _ in range(6):
        client.get("/api/v1/audit/events", headers=activity["ent"].headers)

    def uow(read=False):
        return unit_of_work(state.engine, read=read)

    since = clock.now() - timedelta(hours=1)
    done = housekeeping(uow, keyring=state.keyring, interval=timedelta(seconds=0), since=since)
    assert done["checkpoint"] and done["alerts"] >= 1
    # the next run reads only what is new for per-record rules, and raises nothing twice
    again = housekeeping(uow, keyring=state.keyring, interval=timedelta(hours=1), since=since, after_seq=done["seen"])
    assert again["alerts"] == 0 and again["checkpoint"] is None and again["seen"] > done["seen"]
    listed = client.get("/api/v1/audit/alerts", headers=auditor.headers).json()
    assert any(a["rule"] == "repeated_denials" and a["principal"] == activity["ent"].actor.principal for a in listed)
