"""Open-data engine vs Datasette on the same 1M-row table, same machine, same run (issue 7).

Steps (all on 127.0.0.1, every loop bounded by the peer harness's counts and timeouts):
  1. peer generator -> pop.csv + pop.db (1M rows, seed 20240601), Parquet open edition with _row
  2. derived row store build time; sqlite3 -csv and in-process lower bound export rates
  3. Datasette (separate venv, `datasette serve`, one process, as in the peer README) under the harness
  4. bench/open_app.py under uvicorn --workers 2 under the same harness
  5. 10M-row Parquet (the 1M table repeated) streamed as CSV through the app: rows/s and RSS

  .venv/bin/python bench/bench_open.py --work /tmp/openbench --datasette-venv /tmp/openbench/dsvenv
Writes <work>/ds.json, <work>/open.json, <work>/open10m.json, <work>/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(os.environ.get("PEER_DIR", ROOT.parent / "shared" / "bench" / "peer"))
PY = sys.executable


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def wait_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_parquet(csv: Path, out: Path, repeat: int = 1) -> None:
    """The open edition as the catalog should write it: _row 1-based, sorted, 64k-row groups, zstd."""
    import duckdb

    con = duckdb.connect(config={"threads": 1})  # one thread keeps file order for row_number()
    types = "{'person_id':'VARCHAR','household_address_code':'VARCHAR','phone':'VARCHAR'}"
    src = f"read_csv('{csv}', types={types})"
    if repeat > 1:
        src = f"(SELECT t.* FROM {src} t, range({repeat}) r)"
    con.execute(
        f"COPY (SELECT row_number() OVER ()::BIGINT AS _row, * FROM {src}) TO '{out}' "
        "(FORMAT parquet, ROW_GROUP_SIZE 65536, COMPRESSION zstd)"
    )


def harness(label: str, base: str, pid: int, out: Path, args: list[str]) -> dict:
    cmd = [PY, str(PEER / "bench_http.py"), "--base-url", base, "--label", label, "--pid", str(pid)]
    run(cmd + args + ["--out", str(out)], stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/openbench")
    ap.add_argument("--datasette-venv", default="/tmp/openbench/dsvenv")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-datasette", action="store_true")
    ap.add_argument("--skip-10m", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    csv, db, pq1, pq10 = work / "pop.csv", work / "pop.db", work / "pop.parquet", work / "pop10m.parquet"
    summary: dict = {}
    if not db.exists():
        run(
            [
                PY,
                str(PEER / "gen_population.py"),
                "--rows",
                str(a.rows),
                "--seed",
                "20240601",
                "--csv",
                str(csv),
                "--sqlite",
                str(db),
            ]
        )
    if not pq1.exists():
        make_parquet(csv, pq1)
    sys.path.insert(0, str(ROOT))
    from catalog import reader

    t0 = time.perf_counter()
    reader.prepare(pq1)
    summary["row_store_build_s"] = round(time.perf_counter() - t0, 2)
    summary["sizes_mb"] = {p.name: round(p.stat().st_size / 1e6, 1) for p in (csv, db, pq1)}
    summary["sizes_mb"]["row_store"] = round(Path(str(pq1) + ".rows.sqlite").stat().st_size / 1e6, 1)

    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        run(["sqlite3", "-csv", "-header", str(db), "SELECT * FROM people"], stdout=null)
    summary["sqlite3_csv_rows_per_s"] = round(a.rows / (time.perf_counter() - t0))

    common = [
        "--expected-rows",
        str(a.rows),
        "--phases",
        "stream,pages,extra,load,filter",
        "--requests",
        "60",
        "--filter-requests",
        "30",
        "--load-seconds",
        "20",
        "--load-concurrency",
        "16",
        "--timeout",
        "60",
        "--repeat",
        str(a.repeat),
    ]
    if not a.skip_datasette:
        ds = subprocess.Popen(
            [
                str(Path(a.datasette_venv) / "bin" / "datasette"),
                "serve",
                str(db),
                "-h",
                "127.0.0.1",
                "-p",
                "8001",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_up("http://127.0.0.1:8001/-/versions.json")
            harness(
                "datasette",
                "http://127.0.0.1:8001",
                ds.pid,
                work / "ds.json",
                [
                    "--csv-path",
                    "/pop/people.csv?_stream=on&_size=max",
                    "--page-path",
                    "/pop/people.json?_size=100",
                    "--seek-path",
                    "/pop/people.json?_size=max&_nocount=1&_nofacet=1",
                    "--next-key",
                    "next",
                    "--next-param",
                    "_next",
                    "--rows-key",
                    "rows",
                    "--filter",
                    "by_code=/pop/people.json?household_address_code=511700&_size=100",
                    "--extra",
                    "lean_first=/pop/people.json?_size=100&_nocount=1&_nofacet=1",
                    "--load-path",
                    "/pop/people.json?_size=100&_nocount=1&_nofacet=1",
                    *common,
                ],
            )
        finally:
            stop(ds)

    if not a.skip_10m and not pq10.exists():
        make_parquet(csv, pq10, repeat=10)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPEN_DATASETS=f"people={pq1},big={pq10}")
    app = subprocess.Popen(
        [
            PY,
            "-m",
            "uvicorn",
            "bench.open_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            "8002",
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_up("http://127.0.0.1:8002/open/people.json?_size=1")
        harness(
            "open",
            "http://127.0.0.1:8002",
            app.pid,
            work / "open.json",
            [
                "--csv-path",
                "/open/people.csv",
                "--page-path",
                "/open/people.json?_size=100",
                "--seek-path",
                "/open/people.json?_size=1000",
                "--next-key",
                "links.next",
                "--next-param",
                "_cursor",
                "--rows-key",
                "data",
                "--filter",
                "by_code=/open/people.json?household_address_code=511700&_size=100",
                "--filter",
                "by_code_sorted=/open/people.json?household_address_code=511700&_sort=-birth_date&_size=100",
                "--extra",
                "count=/open/people.json?_size=100&_count=1&household_address_code=511700",
                *common,
            ],
        )
        if not a.skip_10m:
            harness(
                "open-10m",
                "http://127.0.0.1:8002",
                app.pid,
                work / "open10m.json",
                [
                    "--csv-path",
                    "/open/big.csv",
                    "--expected-rows",
                    str(10 * a.rows),
                    "--phases",
                    "stream",
                    "--timeout",
                    "600",
                ],
            )
    finally:
        stop(app)
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
