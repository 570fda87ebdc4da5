"""Mixed load on loopback with wrk: catalog search, row pages, downloads, sandbox queries, audit search.

Rising concurrency (10 → 50 → 100 → 200 clients, 15 s each, 60 s in all) against a real `pdg serve`
(SQLite, or a fresh PostgreSQL database; 2 workers); per endpoint: requests/s, p50, p99, errors; the
server's memory sampled each second.

    .venv/bin/python bench/load/run.py [--stage-seconds 15] [--workers 2] [--out bench/results/load.json]
                                       [--database sqlite|postgresql]

Needs `wrk` (apt-get install wrk). Not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability._server import Server
from tests.reliability._world import populate, settings_for

STAGES = (10, 50, 100, 200)
GEO, POP = "510100-KJ-0001", "510100-RK-0001"
ROWS = {"population": 5000, "legal_person": 3000, "geospatial": 2000, "certificate": 3000}
LUA = """
wrk.method = "{method}"
wrk.body = {body}
{headers}
local errors = 0
response = function(status, headers, body)
  if status >= 400 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {{"requests": %d, "p50_ms": %.2f, "p99_ms": %.2f, '
    .. '"socket_errors": %d, "non2xx": %d}}\\n',
    summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def _lua(method: str, headers: dict[str, str], body: str | None) -> str:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return LUA.format(method=method, body=json.dumps(body) if body else "nil", headers=lines)


def setup(
    tmp: Path, workers: int, url: str | None = None
) -> tuple[Server, dict[str, tuple[str, str, dict[str, str], str | None]]]:
    """A populated gateway (SQLite in `tmp`, or the database at `url`) and the five endpoints of the mix."""
    from gateway import db
    from gateway.state import build_state

    url = url or f"sqlite:///{tmp / 'gateway.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    settings = settings_for(tmp, url)
    state = build_state(settings)
    who, _ = populate(state, rows=ROWS)
    state.engine.dispose()
    env = {"PDG_WORKERS": str(workers), "PDG_SANDBOX_WARM": "true"}  # as deployed
    server = Server(settings.data_dir, url, settings.keys_path, extra_env=env)
    server.start()
    grant, ent = _grant(server, who)
    auditor = who["auditor"].headers  # type: ignore[union-attr]
    sql = json.dumps({"sql": "select gender, count(*) as n from population group by gender"})
    mix = {
        "catalog_search": ("GET", "/api/v1/catalog/datasets?q=%E4%BA%BA%E5%8F%A3", {}, None),
        "row_page": ("GET", f"/api/v1/open/datasets/{GEO}/rows?_size=100", {}, None),
        "download_csv": ("GET", f"/api/v1/open/datasets/{GEO}/download.csv", {}, None),
        "sandbox_query": (
            "POST",
            f"/api/v1/sandbox/workspaces/{grant}/queries",
            {**ent, "Content-Type": "application/json"},
            sql,
        ),
        "audit_search": ("GET", "/api/v1/audit/events?limit=50", auditor, None),
    }
    return server, mix


def _grant(server: Server, who: dict) -> tuple[int, dict[str, str]]:
    from gmcrypto.sm2 import PrivateKey

    op, dept = who["operator"].headers, who["department"].headers
    with httpx.Client(base_url=server.url, timeout=60) as c:
        key = PrivateKey.generate().public_key().to_pem().decode()
        r = c.post(
            "/api/v1/sandbox/enterprises",
            headers=op,
            json={"code": "ENT-LOAD", "name": "压测企业", "principal_name": "analyst", "sm2_public_key_pem": key},
        )
        ent = {"Authorization": f"Bearer {r.json()['token']}"}
        r = c.post(
            "/api/v1/sandbox/requests",
            headers=ent,
            json={
                "columns": {POP: ["gender"]},
                "purpose": "district_statistics",
                "purpose_text": "人口按性别统计，用于压测",
                "duration_days": 30,
                "intended_outputs": ["counts by gender"],
            },
        )
        rid = r.json()["id"]
        c.post(f"/api/v1/sandbox/requests/{rid}/decision", headers=dept, json={"decision": "approve"})
        r = c.post(f"/api/v1/sandbox/requests/{rid}/decision", headers=op, json={"decision": "approve", "reason": "ok"})
        return int(r.json()["grant_id"]), ent


ROLES = ("master", "gateway_workers", "sandbox_workers", "other")


def _rss_kb(pgid: int) -> dict[str, int]:
    """RSS of the server's process group by role: the supervisor, its uvicorn workers, their sandbox workers."""
    procs: dict[int, tuple[int, int, str]] = {}  # pid -> (ppid, rss kB, command line)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            procs[int(pid)] = (int(fields["PPid"]), int(fields.get("VmRSS", "0 kB").split()[0]), cmd)
        except (OSError, KeyError, ValueError, ProcessLookupError):
            continue
    out = dict.fromkeys(ROLES, 0)
    for pid, (ppid, rss, cmd) in procs.items():
        if pid == pgid:
            role = "master"
        elif "resource_tracker" in cmd:
            role = "other"
        elif ppid == pgid:
            role = "gateway_workers"
        elif procs.get(ppid, (0,))[0] == pgid:
            role = "sandbox_workers"
        else:
            role = "other"
        out[role] += rss
    out["total"] = sum(out[r] for r in ROLES)
    return out


def run(stage_seconds: int, workers: int, out: Path | None, database: str = "sqlite") -> dict:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pdg-load-")))
        url = None
        if database == "postgresql":
            from tests.scale.cluster import fresh_database

            url = stack.enter_context(fresh_database("pdg_load"))  # dropped afterwards
        server, mix = setup(tmp, workers, url)
        assert server.proc is not None
        pgid = server.proc.pid
        memory: list[tuple[float, dict[str, int]]] = []
        starts: list[float] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                memory.append((round(time.monotonic() - t0, 1), _rss_kb(pgid)))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: dict = {"stages": [], "workers": workers, "stage_seconds": stage_seconds, "database": database}
        try:
            for clients in STAGES:
                starts.append(round(time.monotonic() - t0, 1))
                per = max(1, clients // len(mix))
                procs = {}
                for name, (method, path, headers, body) in mix.items():
                    script = tmp / f"{name}.lua"
                    script.write_text(_lua(method, headers, body))
                    procs[name] = subprocess.Popen(
                        [
                            "wrk",
                            "-t1",
                            f"-c{per}",
                            f"-d{stage_seconds}s",
                            "--timeout",
                            "30s",
                            "-s",
                            str(script),
                            server.url + path,
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                stage = {"clients": per * len(mix), "endpoints": {}}
                for name, p in procs.items():
                    text = p.communicate()[0]
                    line = next((x for x in text.splitlines() if x.startswith("RESULT ")), None)
                    res = json.loads(line[7:]) if line else {"error": text[-500:]}
                    if "requests" in res:
                        res["rps"] = round(res["requests"] / stage_seconds, 1)
                    stage["endpoints"][name] = res
                results["stages"].append(stage)
                print(json.dumps(stage, ensure_ascii=False), flush=True)
        finally:
            stop.set()
            sampler.join()
            server.stop()
        results["memory_kb"] = memory
        # Per role: at the start, the peak, at the end, and the peak of each stage (stable = stops rising).
        bounds = [*starts, memory[-1][0] + 1]

        def stage_max(role: str, k: int) -> int:
            return max((m[role] for t, m in memory if bounds[k] <= t < bounds[k + 1]), default=0) // 1024

        results["memory_summary_mb"] = {
            role: {
                "start": round(memory[0][1][role] / 1024, 1),
                "max": round(max(m[role] for _, m in memory) / 1024, 1),
                "end": round(memory[-1][1][role] / 1024, 1),
                "stage_max": [stage_max(role, k) for k in range(len(starts))],
            }
            for role in (*ROLES[:3], "total")
        }
        print(json.dumps(results["memory_summary_mb"]), flush=True)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stage-seconds", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/load.json"))
    ap.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite", help="postgresql: a fresh DB on 127.0.0.1"
    )
    a = ap.parse_args()
    run(a.stage_seconds, a.workers, a.out, a.database)


if __name__ == "__main__":
    main()
