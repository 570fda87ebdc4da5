"""The whole sandbox flow over HTTP — apply, approve, workspace, query, output control, export, review,
download — and the package opened by an independent implementation (gmalg, gmssl, cryptography)."""

# mypy: disable-error-code="arg-type,call-overload"
# (Cryptodome's DER objects are typed loosely; the values are checked by the assertions.)
from __future__ import annotations

import base64
import csv
import io
import json

import gmalg
from Cryptodome.Util.asn1 import DerOctetString, DerSequence
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import func as gmssl_func
from gmssl import sm3 as gmssl_sm3

from sandbox import exports
from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import POP, apply, approve_all

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures

BY_DISTRICT = (
    "select household_address_code as district, gender, count(*) as people "
    "from population group by household_address_code, gender"
)
UID = b"1234567812345678"
SIGN_CONTEXT = b"pdg.package.manifest.v1\x00"


def _scalar(pem: bytes) -> bytes:
    """The SM2 private scalar from PKCS#8 PEM, parsed with Cryptodome's ASN.1 (not gmcrypto)."""
    der = base64.b64decode("".join(pem.decode().strip().splitlines()[1:-1]))
    info = DerSequence().decode(der)
    ec_priv = DerSequence().decode(DerOctetString().decode(info[2]).payload)
    return DerOctetString().decode(ec_priv[1]).payload.rjust(32, b"\0")


def _point(public_der: bytes) -> bytes:
    return public_der[-65:]  # SubjectPublicKeyInfo ends with the BIT STRING 04 || x || y


def open_independently(pkg: bytes, *, gateway_public_der: bytes, private_pem: bytes) -> tuple[dict, bytes]:
    """Parse, verify and decrypt a package following docs/crypto.md only."""
    assert pkg[:8] == b"PDGPKG\x00\x01" and pkg[-8:] == b"PDGPKEND"
    mlen, slen = int.from_bytes(pkg[-16:-12], "big"), int.from_bytes(pkg[-12:-8], "big")
    end = len(pkg) - 16
    manifest_raw, sig = pkg[end - slen - mlen : end - slen], pkg[end - slen : end]
    manifest = json.loads(manifest_raw)
    seq = DerSequence().decode(sig)
    r, s = int(seq[0]).to_bytes(32, "big"), int(seq[1]).to_bytes(32, "big")
    verifier = gmalg.SM2(pk=_point(gateway_public_der), uid=UID)
    assert verifier.verify(SIGN_CONTEXT + manifest_raw, r, s)
    assert not verifier.verify(SIGN_CONTEXT + manifest_raw + b" ", r, s)
    payload = pkg[8 : end - slen - mlen]
    assert gmssl_sm3.sm3_hash(gmssl_func.bytes_to_list(payload)) == manifest["payload_sm3"]
    wrapped = DerSequence().decode(base64.b64decode(manifest["wrapped_key"]))
    raw = (
        b"\x04"
        + int(wrapped[0]).to_bytes(32, "big")
        + int(wrapped[1]).to_bytes(32, "big")
        + DerOctetString().decode(wrapped[2]).payload
        + DerOctetString().decode(wrapped[3]).payload
    )
    data_key = gmalg.SM2(sk=_scalar(private_pem)).decrypt(raw)
    assert len(data_key) == 16
    prefix = b"PDGPKG\x00\x01" + bytes.fromhex(manifest["package_id"])
    out, pos, size = b"", 0, manifest["chunk_size"]
    for i in range(manifest["chunk_count"]):
        final = i == manifest["chunk_count"] - 1
        n = (manifest["total_length"] - i * size if final else size) + 16
        chunk, pos = payload[pos : pos + n], pos + n
        nonce = i.to_bytes(8, "big") + int(final).to_bytes(4, "big")
        dec = Cipher(algorithms.SM4(data_key), modes.GCM(nonce, chunk[-16:])).decryptor()
        dec.authenticate_additional_data(prefix + i.to_bytes(8, "big") + bytes([final]))
        out += dec.update(chunk[:-16]) + dec.finalize()
    assert pos == len(payload)
    return manifest, out


def test_whole_flow_over_http_with_review_and_independent_opening(world, monkeypatch):
    w = world
    monkeypatch.setattr(exports, "REVIEW_ROWS", 3)  # this small result must wait for the operator
    req = apply(w, {POP: ["gender", "household_address_code", "birth_date"]})
    assert req["state"] == "submitted" and req["owners"] == ["510100-GA"]
    todo = w.get(w.ga, "/requests", scope="to_decide").json()
    assert [r["id"] for r in todo] == [req["id"]]
    assert w.get(w.operator, "/requests", scope="to_decide").json() == []  # departments first
    grant_id = approve_all(w, req)
    mine = w.get(w.ent, "/requests").json()
    assert mine[0]["state"] == "active" and [d["role"] for d in mine[0]["decisions"]] == ["department", "operator"]

    ws = w.get(w.ent, f"/workspaces/{grant_id}").json()
    table = ws["tables"][0]
    assert table["table"] == "population" and table["rows"] == 300
    assert {c["name"] for c in table["columns"]} == {"gender", "household_address_code", "birth_date"}
    assert len(table["preview"]) == 10 and all(len(r["birth_date"]) == 4 for r in table["preview"])

    r = w.post(w.ent, f"/workspaces/{grant_id}/queries", {"sql": BY_DISTRICT})
    assert r.status_code == 201, r.text
    q = r.json()
    assert q["decision"] == "released" and q["rows_scanned"] == 300
    assert any("suppressed" in reason for reason in q["reasons"])  # small districts never leave
    assert all(row[2] >= 10 for row in q["result"]["rows"])
    assert q["columns"] == [f"{POP}.gender", f"{POP}.household_address_code"]
    assert w.get(w.ent, f"/queries/{q['id']}").json()["result"] == q["result"]

    e = w.post(w.ent, f"/queries/{q['id']}/export", {"format": "csv"}).json()
    assert e["state"] == "pending_review"
    assert w.client.get(f"/api/v1/sandbox/exports/{e['id']}", headers=w.ent.headers).status_code == 409
    own = w.post(w.ent, f"/exports/{e['id']}/review", {"decision": "release"})
    assert own.status_code == 403  # the requester never reviews its own export
    assert [x["id"] for x in w.get(w.operator, "/exports").json()] == [e["id"]]
    rel = w.post(w.operator, f"/exports/{e['id']}/review", {"decision": "release", "reason": "aggregates only"})
    assert rel.status_code == 200 and rel.json()["state"] == "released"

    pkg = w.client.get(f"/api/v1/sandbox/exports/{e['id']}", headers=w.ent.headers)
    assert pkg.status_code == 200 and pkg.headers["x-package-sm3"] == e["digest"]
    assert w.client.get(f"/api/v1/sandbox/exports/{e['id']}", headers=w.operator.headers).status_code == 403
    manifest, plain = open_independently(
        pkg.content, gateway_public_der=w.state.keyring.public_key.to_der(), private_pem=w.ent_key.to_pem()
    )
    assert manifest["references"]["query"] == q["id"] and manifest["references"]["org"] == "ENT-DEMO"
    rows = list(csv.reader(io.StringIO(plain.decode("utf-8"))))
    assert rows[0] == ["district", "gender", "people"]
    assert [[a, b, int(c)] for a, b, c in rows[1:]] == q["result"]["rows"]

    for action in (
        "enterprise:onboard",
        "request:create",
        "request:approve",
        "workspace:query",
        "export:create",
        "export:review",
        "export:download",
    ):
        assert any(x.allowed for x in audit_rows(w.state.engine, action=action)), action
    # the decision is one `workspace:query` record; the result is its `query:result` effect record
    runs = [x for x in audit_rows(w.state.engine, action="workspace:query") if x.outcome.get("stage") == "started"]
    assert len(runs) == 1
    finished = [x for x in audit_rows(w.state.engine, action="query:result") if x.outcome.get("stage") == "finished"]
    assert finished[0].outcome["sql_digest"] == q["sql_digest"] and finished[0].outcome["rows_scanned"] == 300
    assert finished[0].outcome["output_control"] == "released" and finished[0].dataset == POP
    created = audit_rows(w.state.engine, action="export:create")[0]
    assert created.outcome["digest"] == e["digest"]
    denied = [x for x in audit_rows(w.state.engine, action="export:review") if not x.allowed]
    assert denied and denied[0].principal == w.ent.actor.principal


def test_parquet_export_below_threshold_is_released_at_once(world):
    import pyarrow.parquet as pq

    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender"]}))
    q = w.post(
        w.ent,
        f"/workspaces/{grant_id}/queries",
        {"sql": "select gender, count(*) as n from population group by gender"},
    ).json()
    e = w.post(w.ent, f"/queries/{q['id']}/export", {"format": "parquet"}).json()
    assert e["state"] == "released"
    pkg = w.client.get(f"/api/v1/sandbox/exports/{e['id']}", headers=w.ent.headers).content
    _, plain = open_independently(
        pkg, gateway_public_der=w.state.keyring.public_key.to_der(), private_pem=w.ent_key.to_pem()
    )
    table = pq.read_table(io.BytesIO(plain))
    assert sorted(table.column("gender").to_pylist()) == ["女", "男"]
    assert (w.state.data_dir / "exports").is_dir() and not list((w.state.data_dir / "exports").glob(".tmp-*"))


def test_output_control_refusal_is_shown_with_reasons_and_budget_is_kept(world):
    w = world
    grant_id = approve_all(w, apply(w, {POP: ["gender", "birth_date"]}))
    r = w.post(w.ent, f"/workspaces/{grant_id}/queries", {"sql": "select birth_date from population"})
    assert r.status_code == 201
    q = r.json()
    assert q["decision"] == "refused" and q["result"] is None
    assert any("row-level" in reason for reason in q["reasons"])
    assert w.post(w.ent, f"/queries/{q['id']}/export", {}).status_code == 409
    w.post(
        w.ent,
        f"/workspaces/{grant_id}/queries",
        {"sql": "select gender, count(*) as n from population group by gender"},
    )
    listed = w.get(w.ent, f"/workspaces/{grant_id}/queries").json()
    assert [x["decision"] for x in listed] == ["released", "refused"]
    from gateway.db import unit_of_work
    from sandbox import grants as grants_mod

    with unit_of_work(w.state.engine) as s:
        g = grants_mod.get(s, grant_id)
        assert g.budget["queries_used"] == 1 and g.budget["cells_released"] == 4
