"""Sandbox end to end (guard + worker run + output control) vs plain DuckDB on the same 1M-row Parquet."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.budget import GrantBudget
from sandbox.output_control import OutputRules, check_output, plan_query
from sandbox.runner import Limits, ParquetBytes, ParquetFile, SandboxRunner
from sandbox.sqlguard import guard

ROWS = 1_000_000
REPEATS = 5
QUERIES = {
    "count by district and age band": (
        "select district_code, (2025 - year(birth_date)) // 10 * 10 as age_band, count(*) as n "
        "from population group by 1, 2"
    ),
    "population joined with certificates": (
        "select p.district_code, c.cert_type, count(*) as n from population p "
        "join certificates c on p.id_number = c.holder_id group by 1, 2"
    ),
}
GRANTED = {
    "population": {"id_number", "gender", "birth_date", "district_code"},
    "certificates": {"cert_no", "holder_id", "cert_type"},
}
IDENTITY = {"population": "id_number", "certificates": "holder_id"}
TAGS = {
    "population": {"id_number": "id_number", "birth_date": "birth_date"},
    "certificates": {"holder_id": "id_number"},
}


def make(dir_: Path) -> dict[str, Path]:
    rng = np.random.default_rng(8)
    ids = np.char.add("5101", np.char.zfill(np.arange(ROWS).astype(str), 14))
    pop = pa.table(
        {
            "id_number": ids,
            "person_name": np.char.add("n", np.arange(ROWS).astype(str)),
            "gender": rng.choice(["F", "M"], ROWS),
            "birth_date": (np.datetime64("1940-01-01") + rng.integers(0, 30000, ROWS)).astype(
                "datetime64[D]"
            ),
            "district_code": rng.choice([f"5101{i:02d}" for i in range(4, 20)], ROWS),
        }
    )
    n_cert = ROWS // 2
    certs = pa.table(
        {
            "cert_no": np.char.add("C", np.arange(n_cert).astype(str)),
            "holder_id": ids[rng.integers(0, ROWS, n_cert)],
            "cert_type": rng.choice(["business_licence", "driving_licence", "marriage", "degree"], n_cert),
        }
    )
    paths = {"population": dir_ / "population.parquet", "certificates": dir_ / "certificates.parquet"}
    pq.write_table(pop, paths["population"])
    pq.write_table(certs, paths["certificates"])
    return paths


def plain(paths: dict[str, Path], sql: str) -> float:
    con = duckdb.connect()
    con.execute("set threads = 2")
    for name, p in paths.items():
        con.execute(f"create view {name} as select * from read_parquet('{p}')")
    t = time.perf_counter()
    con.sql(sql).fetch_arrow_table()
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def sandboxed(runner: SandboxRunner, sources: dict, sql: str) -> tuple[float, dict[str, float]]:
    t = time.perf_counter()
    g = guard(sql, GRANTED)
    rules = OutputRules(max_rows=10_000)
    # population.id_number is unique (as the registered schema declares and the quality gate enforces)
    plan = plan_query(g, rules=rules, identity_column_per_table=IDENTITY, field_tags=TAGS,
                      unique_identity=frozenset({"population"}))
    t_guard = time.perf_counter() - t
    res = runner.run(plan.sql, sources, columns={t: GRANTED[t] for t in sources})
    t_run = time.perf_counter() - t - t_guard
    d = check_output(
        res,
        g,
        rules=rules,
        identity_column_per_table=IDENTITY,
        field_tags=TAGS,
        grant_budget=GrantBudget(max_queries=10**6, max_released_cells=10**9),
    )
    assert d.released, d.reasons
    total = time.perf_counter() - t
    return total, {
        "guard": t_guard,
        "run": t_run,
        "duckdb": res.run_ms / 1000,
        "check": total - t_guard - t_run,
    }


def main() -> None:
    out = [
        "# Sandbox benchmark",
        "",
        f"{ROWS:,} population rows, {ROWS // 2:,} certificates; median of {REPEATS} "
        "runs, same process, same Parquet files; 2 DuckDB threads on both sides.",
        "",
    ]
    with tempfile.TemporaryDirectory() as d, SandboxRunner(Limits(timeout_s=60, memory_mb=4096)) as runner:
        paths = make(Path(d))
        runner.warm_up()
        kinds = {
            "file": {n: ParquetFile(str(p)) for n, p in paths.items()},
            "bytes": {n: ParquetBytes(p.read_bytes()) for n, p in paths.items()},
        }
        out += [
            "| query | source | plain DuckDB ms | sandbox ms | ratio | guard+plan | worker (load+run) | "
            "DuckDB in worker | output control |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, sql in QUERIES.items():
            plain(paths, sql)
            base = statistics.median(plain(paths, sql) for _ in range(REPEATS))
            for kind, sources in kinds.items():
                sandboxed(runner, sources, sql)
                runs = [sandboxed(runner, sources, sql) for _ in range(REPEATS)]
                tot = statistics.median(r[0] for r in runs)
                parts = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
                out.append(
                    f"| {label} | {kind} | {base * 1000:.0f} | {tot * 1000:.0f} | {tot / base:.2f}x | "
                    f"{parts['guard'] * 1000:.0f} | {parts['run'] * 1000:.0f} | "
                    f"{parts['duckdb'] * 1000:.0f} | {parts['check'] * 1000:.1f} |"
                )
                print(out[-1], flush=True)
    text = "\n".join(out) + "\n"
    if "--write" in sys.argv:
        Path(__file__).with_name("results").joinpath("sandbox.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
