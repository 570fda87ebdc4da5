"""Throughput of a mixed read/write workload on one, two, then three gateway replicas (issue 10).

Same run, same PostgreSQL database, same shared data and keys directories: replicas are real `pdg serve`
processes (one uvicorn worker each) on loopback ports, started one more per step. Load: wrk, 16
connections in all, split evenly over the replicas (a client-side stand-in for a Service), each
connection cycling through ten requests —

    4 × catalog search          GET  /api/v1/catalog/datasets?q=…            (anonymous)
    3 × open row page           GET  /api/v1/open/datasets/GEO/rows?_size=50 (anonymous, audited)
    1 × whole download          GET  /api/v1/open/datasets/GEO/download.csv  (anonymous, audited)
    2 × metadata change         PATCH /api/v1/catalog/datasets/GEO           (department token, audited write)

— for `--seconds` per step after a 3 s warm-up. Afterwards the audit log is checked to be one gap-free
chain. Bounded: 3 steps × (3 + seconds) s plus start-up; loopback only; every process is ended.

  .venv/bin/python bench/bench_replicas.py --seconds 20 --connections 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog import demo_data, samples  # noqa: E402
from gmcrypto.keys import Keyring  # noqa: E402
from tests.scale.cluster import Cluster, auth, fresh_database  # noqa: E402

GEO = "510100-KJ-0001"
LUA = r"""
local token = os.getenv("BENCH_TOKEN")
local geo = os.getenv("BENCH_GEO")
local kinds = os.getenv("BENCH_KINDS")
local reqs = {}
local function add(kind, m, p, h, b)
  if string.find("," .. kinds .. ",", "," .. kind .. ",", 1, true) then table.insert(reqs, wrk.format(m, p, h, b)) end
end
local jh = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
add("search", "GET", "/api/v1/catalog/datasets?q=%E4%BA%BA%E5%8F%A3")
add("rows", "GET", "/api/v1/open/datasets/" .. geo .. "/rows?_size=50")
add("write", "PATCH", "/api/v1/catalog/datasets/" .. geo, jh, '{"description_en": "points of interest (bench)"}')
add("search", "GET", "/api/v1/catalog/datasets?q=poi")
add("rows", "GET", "/api/v1/open/datasets/" .. geo .. "/rows?_size=50&_sort=-lat")
add("search", "GET", "/api/v1/catalog/datasets")
add("download", "GET", "/api/v1/open/datasets/" .. geo .. "/download.csv")
add("rows", "GET", "/api/v1/open/datasets/" .. geo .. "/rows?_size=50&category=%E5%8C%BB%E9%99%A2")
add("write", "PATCH", "/api/v1/catalog/datasets/" .. geo, jh, '{"description_en": "points of interest"}')
add("search", "GET", "/api/v1/catalog/datasets?category=geospatial")
local i = 0
local counts = {}
function init(args) i = math.random(0, #reqs - 1) end
request = function() i = (i % #reqs) + 1; return reqs[i] end
response = function(status) counts[status] = (counts[status] or 0) + 1 end
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, '
    .. '"p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of these processes and their children so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole host from /proc/stat: how much of the 2 cores anything used."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return float(sum(f) - idle), float(sum(f))


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the host (its sessions serve other users too: a rough figure)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def setup_world(c: Cluster, url: str) -> str:
    """First admin with the CLI; a department; two datasets with versions. Returns the department token."""
    http = httpx.Client(timeout=120)
    admin = c.make_principal("admin", "ADMIN-1", "admin")
    for code, kind in (("510100-GH", "department"), ("510100-GA", "department")):
        r = http.post(f"{url}/api/v1/admin/organisations", json={"code": code, "name": code, "kind": kind},
                      headers=auth(admin))  # fmt: skip
        assert r.status_code == 201, r.text
    tokens = {}
    for org in ("510100-GH", "510100-GA"):
        r = http.post(f"{url}/api/v1/admin/principals", json={"org": org, "role": "department", "name": org},
                      headers=auth(admin))  # fmt: skip
        assert r.status_code == 201, r.text
        tokens[org] = r.json()["token"]
    worlds = (("geospatial", "510100-GH", 2000, ("address",)), ("population", "510100-GA", 500, ()))
    for library, org, rows, drop in worlds:
        body = demo_data.registration(library)
        if drop:
            body = body.model_copy(update={"fields": [f for f in body.fields if f.name not in drop]})
        r = http.post(f"{url}/api/v1/catalog/datasets", json=body.model_dump(mode="json"), headers=auth(tokens[org]))
        assert r.status_code == 201, r.text
        data = samples.generate(library, rows, seed=7).frame.drop(columns=list(drop)).to_csv(index=False).encode()
        r = http.post(f"{url}/api/v1/catalog/datasets/{body.code}/versions", content=data,
                      headers={**auth(tokens[org]), "Content-Type": "text/csv"})  # fmt: skip
        assert r.status_code == 201, r.text
    http.close()
    return tokens["510100-GH"]


def wrk(urls: list[str], connections: int, seconds: int, script: Path, token: str, kinds: str) -> list[dict]:
    """One wrk per replica at once, connections split evenly; returns each one's summary."""
    share = [connections // len(urls) + (1 if i < connections % len(urls) else 0) for i in range(len(urls))]
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_GEO": GEO, "BENCH_KINDS": kinds}
    procs = [
        subprocess.Popen(
            ["wrk", "-t1", f"-c{n}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for url, n in zip(urls, share, strict=True)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=seconds + 60)
        out.append(json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--kinds", default="search,rows,download,write", help="request kinds in the mix")
    a = ap.parse_args()
    limits = {"PDG_LIMITS__ANONYMOUS_PER_MINUTE": "100000000", "PDG_LIMITS__TOKEN_PER_MINUTE": "100000000"}
    rows = []
    with fresh_database("pdg_bench") as db, tempfile.TemporaryDirectory(prefix="pdg-bench-") as root:
        c = Cluster(Path(root), db, extra_env={**limits, "PDG_CHECKPOINT_INTERVAL_SECONDS": "300"})
        Keyring.load_or_create(c.keys_dir)
        script = Path(root) / "mix.lua"
        script.write_text(LUA)
        try:
            (first,) = c.start(1)
            token = setup_world(c, first)
            for n in range(1, a.replicas + 1):
                if n > 1:
                    c.start(1)
                wrk(c.urls, a.connections, 3, script, token, a.kinds)  # warm-up: caches, connection pools
                pids, pg = [p.pid for p in c.procs], postgres_pids()
                cpu0, pg0, host0, t0 = cpu_seconds(pids), cpu_seconds(pg), host_cpu(), time.monotonic()
                kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                res = wrk(c.urls, a.connections, a.seconds, script, token, a.kinds)
                wall, cpu = time.monotonic() - t0, cpu_seconds(pids) - cpu0
                pg_cpu, host1 = cpu_seconds(pg) - pg0, host_cpu()
                host_busy = (host1[0] - host0[0]) / max(host1[1] - host0[1], 1) * (os.cpu_count() or 1)
                kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the finished wrk processes
                wrk_cpu = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
                total = sum(r["requests"] for r in res)
                dur = max(r["duration_us"] for r in res) / 1e6
                row = {
                    "replicas": n,
                    "requests": total,
                    "rps": round(total / dur, 1),
                    "p50_ms": round(sum(r["p50_ms"] * r["requests"] for r in res) / max(total, 1), 1),
                    "p99_ms_worst": round(max(r["p99_ms"] for r in res), 1),
                    "non2xx": sum(r["non2xx"] for r in res),
                    "socket_errors": sum(r["errors"] for r in res),
                    "server_cpu_s": round(cpu, 1),
                    "server_cores_busy": round(cpu / wall, 2),
                    "wrk_cores_busy": round(wrk_cpu / wall, 2),
                    "postgres_cores_busy": round(pg_cpu / wall, 2),
                    "host_cores_busy": round(host_busy, 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            engine = create_engine(db)
            with engine.connect() as conn:
                n_rec, lo, hi = conn.execute(text("SELECT count(*), min(seq), max(seq) FROM audit_record")).one()
            engine.dispose()
            print(json.dumps({"audit_records": n_rec, "gap_free": (lo, hi) == (1, n_rec)}), flush=True)
        finally:
            c.stop()
    keys = ("replicas", "rps", "p50_ms", "p99_ms_worst", "non2xx", "server_cores_busy", "postgres_cores_busy",
            "host_cores_busy")  # fmt: skip
    print(f"\nmix: {a.kinds}; {a.connections} connections; {a.seconds} s per step")
    print("| replicas | req/s | p50 ms | p99 ms (worst) | non-2xx | gateway cores | PostgreSQL cores | host cores |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        cells = [r[k] for k in keys]
        print("| " + " | ".join(str(x) for x in cells) + " |")


if __name__ == "__main__":
    main()
