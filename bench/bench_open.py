"""The gateway's open-data routes vs Datasette on the same 1M-row table, same machine, same run (issue 7).

Steps (all on 127.0.0.1, every loop bounded by the peer harness's counts and timeouts):
  1. peer generator -> pop.csv + pop.db (1M rows, seed 20240601); pop10m.csv = the 1M rows repeated 10x
  2. both CSVs published through the gateway's real publish path (bench/open_gateway.py; once per
     work dir); the bench waits for each version's row store (catalog.reader.prepare) before serving
  3. `sqlite3 -csv` export rate of pop.db (the ">= 25%" reference)
  4. Datasette (separate venv, `datasette serve`, one process, as in the peer README) under the harness
  5. `pdg serve` (python -m gateway.cli serve, PDG_WORKERS=2, default log level, anonymous and token
     rate limits lifted to 10^8/min so the load phase measures serving, not 429s) under the same
     harness on /api/v1/open/datasets/{code}/rows and /download.csv, anonymously
  6. the 10M version streamed as CSV through /download.csv: rows/s and RSS of every process of the
     server (master, each worker, any sandbox worker) sampled every 0.2 s
  7. optional (--engine-app): bench/open_app.py, the engine without the gateway (a lower bound)

  flock /work/bench.lock .venv/bin/python bench/bench_open.py --work /tmp/openbench
Writes <work>/ds.json, gw.json, gw10m.json, gw10m_rss.json, summary.json (and engine*.json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(os.environ.get("PEER_DIR", ROOT.parent / "shared" / "bench" / "peer"))
PY = sys.executable
sys.path.insert(0, str(ROOT / "bench"))

import open_gateway  # noqa: E402

GW_PORT, DS_PORT, ENGINE_PORT = 8003, 8001, 8002
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def wait_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (its workers too), SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def harness(label: str, base: str, pid: int, out: Path, args: list[str]) -> dict:
    cmd = [PY, str(PEER / "bench_http.py"), "--base-url", base, "--label", label, "--pid", str(pid)]
    run(cmd + args + ["--out", str(out)], stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


# ---------------------------------------------------------------- per-process RSS
def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(root: int) -> list[int]:
    seen, todo = [], [root]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def _stat(pid: int) -> tuple[int, int] | None:
    """(RSS bytes, CPU ticks user+system) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * PAGE
    except OSError:
        return None
    return rss, int(fields[11]) + int(fields[12])


def _label(pid: int, root: int) -> str:
    """master; worker (a uvicorn worker: the master's child); sandbox-worker (a worker's child)."""
    if pid == root:
        return "master"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as fh:
            ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return "gone"
    if "resource_tracker" in cmd:
        return "resource-tracker"
    return "worker" if ppid == root else "sandbox-worker"


class RssSampler:
    """Samples RSS and CPU of every process under `root` every `interval` s in a thread."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.samples: list[tuple[float, dict[int, tuple[int, int]]]] = []
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            snap = {p: s for p in _tree(self.root) if (s := _stat(p)) is not None}
            self.samples.append((time.monotonic() - self.t0, snap))
            self._stop.wait(self.interval)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.t0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        """Per process and for the tree: RSS before / peak during / after the marked stream, MiB."""
        start, end = self.marks["start"], self.marks["end"]
        pids = sorted({p for _, snap in self.samples for p in snap})
        mib = 1 / (1024 * 1024)

        def phase(pid: int | None, lo: float, hi: float) -> list[int]:
            vals = []
            for t, snap in self.samples:
                if lo <= t <= hi:
                    if pid is None:
                        vals.append(sum(r for r, _ in snap.values()))
                    elif pid in snap:
                        vals.append(snap[pid][0])
            return vals

        def cpu(pid: int, at: float) -> int:
            best = 0
            for t, snap in self.samples:
                if t <= at and pid in snap:
                    best = snap[pid][1]
            return best

        procs = {}
        for pid in pids:
            before, during, after = phase(pid, 0, start), phase(pid, start, end), phase(pid, end, 1e9)
            if not during:
                continue
            procs[str(pid)] = {
                "role": _label(pid, self.root),
                "before_mib": round(before[-1] * mib, 1) if before else None,
                "peak_mib": round(max(during) * mib, 1),
                "after_mib": round(after[-1] * mib, 1) if after else None,
                "cpu_s_during": round((cpu(pid, end) - cpu(pid, start)) / TICK, 2),
            }
        workers = {p: v for p, v in procs.items() if v["role"] == "worker"}
        serving = max(workers, key=lambda p: workers[p]["cpu_s_during"]) if workers else None
        if serving:
            procs[serving]["role"] = "worker (serving the stream)"
        tb, td, ta = phase(None, 0, start), phase(None, start, end), phase(None, end, 1e9)
        return {
            "interval_s": self.interval,
            "samples": len(self.samples),
            "serving_pid": serving,
            "processes": procs,
            "tree": {
                "before_mib": round(tb[-1] * mib, 1) if tb else None,
                "peak_mib": round(max(td) * mib, 1) if td else None,
                "after_mib": round(ta[-1] * mib, 1) if ta else None,
            },
        }


# ---------------------------------------------------------------- servers
COMMON = [
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
]


def bench_datasette(a, work: Path, db: Path, rows: int) -> None:
    ds = subprocess.Popen(
        [str(Path(a.datasette_venv) / "bin" / "datasette"), "serve", str(db), "-h", "127.0.0.1", "-p", str(DS_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(f"http://127.0.0.1:{DS_PORT}/-/versions.json")
        harness(
            "datasette",
            f"http://127.0.0.1:{DS_PORT}",
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
                "--expected-rows",
                str(rows),
                "--repeat",
                str(a.repeat),
                *COMMON,
            ],
        )
    finally:
        stop_group(ds)


def gateway_env(data_dir: Path, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDG_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PDG_ENV": "development",
            "PDG_DATA_DIR": str(data_dir),
            "PDG_HOST": "127.0.0.1",
            "PDG_PORT": str(GW_PORT),
            "PDG_WORKERS": str(workers),
            # lifted for the bench only: the defaults (600/min anonymous) would answer most of the
            # load phase with 429 from one address
            "PDG_LIMITS__ANONYMOUS_PER_MINUTE": "100000000",
            "PDG_LIMITS__TOKEN_PER_MINUTE": "100000000",
        }
    )
    return env


def bench_gateway(a, work: Path, data_dir: Path, rows: int, with_10m: bool) -> dict:
    log = open(work / "gw-server.log", "wb")  # noqa: SIM115 - the server owns it until it stops
    gw = subprocess.Popen(
        [PY, "-m", "gateway.cli", "serve"],
        cwd=ROOT,
        env=gateway_env(data_dir, a.workers),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{GW_PORT}"
    api = f"/api/v1/open/datasets/{open_gateway.CODE_1M}"
    out: dict = {}
    try:
        wait_up(base + "/health")
        wait_up(base + api + "/rows?_size=1")
        time.sleep(2)  # let both workers finish start-up before the idle reading
        out["idle"] = {
            str(p): {"role": _label(p, gw.pid), "rss_mib": round(s[0] / 2**20, 1)}
            for p in _tree(gw.pid)
            if (s := _stat(p)) is not None
        }
        if not a.skip_1m:
            cpu0 = {p: s[1] for p in _tree(gw.pid) if (s := _stat(p)) is not None}
            harness(
                "gateway",
                base,
                gw.pid,
                work / "gw.json",
                [
                    "--csv-path",
                    api + "/download.csv",
                    "--page-path",
                    api + "/rows?_size=100",
                    "--seek-path",
                    api + "/rows?_size=1000",
                    "--next-key",
                    "links.next",
                    "--next-param",
                    "_cursor",
                    "--rows-key",
                    "data",
                    "--filter",
                    f"by_code={api}/rows?household_address_code=511700&_size=100",
                    "--filter",
                    f"by_code_sorted={api}/rows?household_address_code=511700&_sort=-birth_date&_size=100",
                    "--extra",
                    f"count={api}/rows?_size=100&_count=1&household_address_code=511700",
                    "--expected-rows",
                    str(rows),
                    "--repeat",
                    str(a.repeat),
                    *COMMON,
                ],
            )
            # how the work split between the workers (uvicorn's workers share one listening socket)
            out["cpu_s_1m_harness"] = {
                f"{_label(p, gw.pid)} {p}": round((s[1] - cpu0.get(p, 0)) / TICK, 2)
                for p in _tree(gw.pid)
                if (s := _stat(p)) is not None
            }
        if with_10m:
            time.sleep(3)
            with RssSampler(gw.pid, 0.2) as sampler:
                time.sleep(2)
                sampler.mark("start")
                harness(
                    "gateway-10m",
                    base,
                    gw.pid,
                    work / "gw10m.json",
                    [
                        "--csv-path",
                        f"/api/v1/open/datasets/{open_gateway.CODE_10M}/download.csv",
                        "--expected-rows",
                        str(10 * rows),
                        "--phases",
                        "stream",
                        "--timeout",
                        "600",
                        "--pause",
                        "0",
                    ],
                )
                sampler.mark("end")
                time.sleep(3)
            out["rss_10m"] = sampler.report()
            (work / "gw10m_rss.json").write_text(json.dumps(out["rss_10m"], indent=2))
    finally:
        stop_group(gw)
        log.close()
    return out


def bench_engine_app(a, work: Path, published: dict, rows: int) -> None:
    """The engine without the gateway (no auth, audit, middleware): a lower bound for the routes."""
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OPEN_DATASETS=f"people={published[open_gateway.CODE_1M]['open_path']}",
    )
    app = subprocess.Popen(
        [
            PY,
            "-m",
            "uvicorn",
            "bench.open_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(ENGINE_PORT),
            "--workers",
            str(a.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_up(f"http://127.0.0.1:{ENGINE_PORT}/open/people.json?_size=1")
        harness(
            "engine",
            f"http://127.0.0.1:{ENGINE_PORT}",
            app.pid,
            work / "engine.json",
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
                "--expected-rows",
                str(rows),
                "--repeat",
                str(a.repeat),
                *COMMON,
            ],
        )
    finally:
        stop_group(app)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/openbench")
    ap.add_argument("--datasette-venv", default="/tmp/openbench/dsvenv")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-datasette", action="store_true")
    ap.add_argument("--skip-1m", action="store_true", help="only the 10M stream (memory)")
    ap.add_argument("--skip-10m", action="store_true")
    ap.add_argument("--engine-app", action="store_true", help="also run bench/open_app.py (lower bound)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    csv, db, csv10 = work / "pop.csv", work / "pop.db", work / "pop10m.csv"
    if not db.exists():
        run([PY, str(PEER / "gen_population.py"), "--rows", str(a.rows), "--seed", "20240601",
             "--csv", str(csv), "--sqlite", str(db)])  # fmt: skip
    if not a.skip_10m and not csv10.exists():
        with open(csv) as src, open(csv10, "w") as dst:
            header = src.readline()
            body = src.read()
            dst.write(header)
            for _ in range(10):
                dst.write(body)
    published = open_gateway.publish_all(work / "gw", csv, None if a.skip_10m else csv10)
    summary: dict = {"published": published, "load_1min_start": os.getloadavg()[0]}

    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        run(["sqlite3", "-csv", "-header", str(db), "SELECT * FROM people"], stdout=null)
    summary["sqlite3_csv_rows_per_s"] = round(a.rows / (time.perf_counter() - t0))

    if not a.skip_datasette:
        bench_datasette(a, work, db, a.rows)
        summary["load_1min_after_datasette"] = os.getloadavg()[0]
    summary["gateway"] = bench_gateway(a, work, work / "gw", a.rows, with_10m=not a.skip_10m)
    summary["load_1min_after_gateway"] = os.getloadavg()[0]
    if a.engine_app:
        bench_engine_app(a, work, published, a.rows)
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
