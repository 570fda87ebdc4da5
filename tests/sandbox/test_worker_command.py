"""`pdg sandbox worker`: one job file in, one Arrow result out; hostile SQL refused there too."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from gateway.commands.sandbox import app


def _job(tmp_path, sql):
    table = pa.table({"district": ["510104"] * 12 + ["510105"] * 3, "gender": ["男", "女", "男"] * 5})
    pq.write_table(table, tmp_path / "pop.parquet")
    job = {
        "sql": sql,
        "tables": {"population": str(tmp_path / "pop.parquet")},
        "granted": {"population": ["district", "gender"]},
        "limits": {"timeout_s": 20, "threads": 1},
        "result": str(tmp_path / "result.arrow"),
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    return tmp_path / "job.json"


def test_worker_runs_a_job_and_writes_the_result(tmp_path):
    job = _job(tmp_path, "select district, count(*) as n from population group by district order by district")
    out = CliRunner().invoke(app, ["worker", "--job", str(job)])
    assert out.exit_code == 0, out.output
    with pa.ipc.open_stream(pa.OSFile(str(tmp_path / "result.arrow"))) as reader:
        assert reader.read_all().to_pylist() == [{"district": "510104", "n": 12}, {"district": "510105", "n": 3}]


def test_worker_refuses_hostile_sql_and_writes_nothing(tmp_path):
    job = _job(tmp_path, "select * from read_csv('/etc/passwd')")
    out = CliRunner().invoke(app, ["worker", "--job", str(job)])
    assert out.exit_code == 1 and "refused" in out.output
    assert not (tmp_path / "result.arrow").exists()


def test_worker_rejects_a_malformed_job(tmp_path):
    (tmp_path / "job.json").write_text("{not json")
    out = CliRunner().invoke(app, ["worker", "--job", str(tmp_path / "job.json")])
    assert out.exit_code == 2 and "not a query job" in out.output
