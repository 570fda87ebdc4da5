"""Experiments end to end: through the API and the CLI, counts equal the audit log, the proof verifies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import Invalid
from datarange import definition
from tests.conftest import audit_rows

API = "/api/v1/range"
SAMPLE = Path(definition.samples()["market_supervision"]).read_text()


def _wait(client, who, run_id: str) -> dict:
    for _ in range(600):
        r = client.get(f"{API}/experiments/{run_id}", headers=who.headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed"):
            return r.json()
        time.sleep(0.1)
    raise AssertionError("experiment did not finish")


def test_sample_runs_through_the_api_and_counts_equal_the_audit_log(client, engine, make_principal):
    op = make_principal("operator", org="OPERATOR-1")
    ent = make_principal("enterprise", org="ENT-X")
    assert (
        client.post(f"{API}/experiments", json={"sample": "market_supervision"}, headers=ent.headers).status_code == 403
    )
    r = client.post(f"{API}/experiments", json={"sample": "market_supervision"}, headers=op.headers)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    status = _wait(client, op, run_id)
    assert status["status"] == "done", status
    rep = client.get(f"{API}/experiments/{run_id}/report", headers=op.headers).json()
    assert rep["expectations"]["baseline"]["failed"] == rep["expectations"]["scenario"]["failed"] == []
    # the scenario opened the participants' emergency reads, and nothing else changed
    assert {(d["task"], d["baseline"], d["scenario"]) for d in rep["differences"]} == {
        ("inspect", "denied", "allowed"), ("tax_check", "denied", "allowed"),
    }  # fmt: skip
    rows = audit_rows(engine, experiment=run_id)
    assert len(rows) == sum(d["records"] for d in rep["decisions"].values())
    for name, scn in (("baseline", None), ("scenario", "market_supervision")):
        d = rep["decisions"][name]
        mine = [x for x in rows if x.scenario == scn]
        assert (d["allowed"], d["denied"]) == (sum(x.allowed for x in mine), sum(not x.allowed for x in mine))
    # every decision made in the scenario pass carries the scenario id; the baseline pass none
    reads = [x for x in rows if x.action == "dataset:read_shared" and x.allowed and x.outcome.get("emergency")]
    assert len(reads) == 2 and {x.scenario for x in reads} == {"market_supervision"}
    assert all(x.reasons == ["scenario.market_supervision.share_legal_person"] for x in reads)
    # the what-if replay names the overlay rule for every difference
    assert rep["whatif"]["differences"] >= 2
    assert all(d["scenario"]["reasons"] == ["scenario.market_supervision.share_legal_person"]
               for d in rep["whatif"]["differs"])  # fmt: skip
    proof = rep["proof"]
    assert proof["records"] == [x.seq for x in rows]
    assert len(proof["inclusion_proofs"]) == len(rows)
    html = client.get(f"{API}/experiments/{run_id}/report.html", headers=op.headers)
    assert html.status_code == 200 and "<svg" in html.text
    assert not any(x in html.text for x in ("<script", "<link", "src=", "href=", "@import"))  # self-contained
    auditor = make_principal("auditor", org="AUDIT-1")
    assert client.get(f"{API}/experiments/{run_id}", headers=auditor.headers).status_code == 200


def test_cli_runs_a_sample_and_the_proof_bundle_verifies(settings, state, tmp_path, monkeypatch):
    from gateway import cli
    from gateway.settings import get_settings

    monkeypatch.setenv("PDG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PDG_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("PDG_KEYS_DIR", str(settings.keys_path))
    monkeypatch.setenv("PDG_ENV", "test")
    get_settings.cache_clear()
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(cli.app, ["range", "run", str(definition.samples()["market_supervision"]), "--out", str(out)])
    get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "2 tasks differed" in r.output
    assert {"report.json", "report.html", "audit-export.zip", "gateway-public.pem"} <= {p.name for p in out.iterdir()}
    v = runner.invoke(
        cli.app, ["audit", "verify", str(out / "audit-export.zip"), "--public-key", str(out / "gateway-public.pem")]
    )
    assert v.exit_code == 0 and v.output.startswith("OK"), v.output


@pytest.mark.parametrize(
    "text, fix",
    [
        ("name: x", "name"),
        ("- just a list", "YAML mapping"),
        (SAMPLE.replace("as: 510100-SWJ", "as: NOBODY"), "NOBODY"),
        (SAMPLE.replace("request: ask", "request: later"), "earlier request"),
    ],
)  # fmt: skip
def test_bad_definitions_say_what_to_fix(text, fix):
    with pytest.raises(Invalid) as e:
        definition.parse(text)
    assert fix in e.value.detail


def test_every_sample_is_valid_and_names_a_known_scenario():
    from policies.engine import get_engine

    names = {definition.parse(p.read_text()).scenario for p in definition.samples().values()}
    assert names == set(get_engine().scenarios)
