"""Benchmark: publish the population library from CSV (UTF-8 and GBK) end to end, GX-only alongside.

    flock /work/bench.lock .venv/bin/python bench/bench_publish.py --rows 100000 1000000 5000000

Each (rows, encoding) runs in a fresh child process (peak memory is per run). The child builds a
gateway state on a fresh SQLite database, registers the population library as a department and calls
`catalog.publish.publish` — the function the upload route runs — with a stage hook: ingest (sniff,
decode, conform, Parquet), quality (fast path), digest (SM3), open edition (masking, Parquet),
encrypt (SM4-GCM at rest), go-live (rename + version row) and commit (transaction + audit). The
population library is registered with open type `unconditional` so that every stage runs (its demo
registration is `conditional`, which skips the open edition). A sampler thread reads RSS every 5 ms
and keeps the peak of each stage; `ru_maxrss` gives the whole publish's peak.

Then, in the same child, GX-only validates the same plan (`publish.tag_checks` + the schema) on the
same rows; GX is imported first and its import time reported apart, so "GX-only" is validation alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ORG = "510100-GA"


class Peak:
    """Samples this process's RSS; `stage()` starts a new stage and returns the last one's peak."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.rss()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def stage(self) -> float:
        last = max(self.peak, self.rss())
        self.peak = self.rss()
        return last / 2**20


def _world(tmp: Path):  # type: ignore[no-untyped-def]
    """A migrated SQLite gateway with one department principal; returns (state, actor)."""
    import identity
    from common.actor import Actor
    from gateway import db
    from gateway.settings import Settings
    from gateway.state import build_state

    url = f"sqlite:///{tmp / 'gateway.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    st = build_state(
        Settings(env="test", data_dir=tmp / "var", database_url=url, keys_dir=tmp / "keys")
    )
    system = Actor.system("bench")
    with db.unit_of_work(st.engine) as s:
        identity.create_organisation(s, actor=system, code=ORG, name="成都市公安局", kind="department")
        p, _ = identity.create_principal(s, actor=system, org_code=ORG, role="department", name="bench")
    return st, Actor(principal=p.code, role="department", org=ORG, name=p.name)


def child(csv_path: str, rows: int, gx_only: bool) -> dict:
    from catalog import demo_data, publish, service
    from catalog.fields import Schema
    from gateway.db import unit_of_work

    out: dict = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        st, actor = _world(tmp)
        body = demo_data.registration("population").model_copy(update={"open_type": "unconditional"})
        with unit_of_work(st.engine) as s:
            ds = service.register(s, actor=actor, data=body)
            code, grade, suite = ds.code, ds.grade, ds.suite_json
        peak = Peak()
        stages: dict[str, dict[str, float]] = {}
        last = [time.perf_counter()]

        def on_stage(name: str) -> None:
            now = time.perf_counter()
            stages[name] = {"s": now - last[0], "peak_mb": peak.stage()}
            last[0] = now

        t0 = last[0] = time.perf_counter()
        peak.stage()
        v = publish.publish(
            lambda: unit_of_work(st.engine),
            actor=actor,
            code=code,
            upload=publish.Upload(path=Path(csv_path), fmt="csv"),
            data_dir=st.data_dir,
            keyring=st.keyring,
            on_stage=on_stage,
        )
        on_stage("commit")
        out["publish_s"] = time.perf_counter() - t0
        out["publish_peak_mb"] = max(x["peak_mb"] for x in stages.values())
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["stages"] = stages
        out.update(encoding=v.encoding, encrypted=v.encrypted, open_rows=v.open_rows, grade=grade)
        out["quality_score"] = v.quality_score
        if v.open_rows is not None:  # the row store builds in the background: time until it is ready
            from catalog import reader, storage

            path = storage.open_path(st.data_dir, code, v.number)
            while not reader.is_ready(path):
                time.sleep(0.02)
            out["row_store_bg_s"] = time.perf_counter() - last[0]
            out["row_store_bg_peak_mb"] = peak.stage()
        out["checks"] = len(v.quality["checks"])
        if gx_only:
            out.update(_gx_only(csv_path, Schema.parse(body_schema(body)), suite, tmp, peak))
        st.engine.dispose()
    return out


def body_schema(body) -> dict:  # type: ignore[no-untyped-def]
    return {"fields": [f.model_dump() for f in body.fields], "key": body.key}


def _gx_only(csv_path: str, schema, suite, tmp: Path, peak: Peak) -> dict:  # type: ignore[no-untyped-def]
    """GX alone on the same rows and plan; the rows are re-ingested untimed, GX imported untimed."""
    import pyarrow.parquet as pq

    from catalog import publish
    from catalog.ingest import ingest
    from catalog.quality import gx as gxmod
    from catalog.quality import run_gx_only

    t = time.perf_counter()
    gxmod.gx()
    out: dict = {"gx_import_s": time.perf_counter() - t}
    dest = tmp / "gx.parquet"
    ingest(csv_path, schema=schema, dest_parquet=dest)
    df = pq.read_table(dest).to_pandas(date_as_object=False)
    peak.stage()
    t = time.perf_counter()
    g = run_gx_only(df, schema=schema, tag_checks=publish.tag_checks(schema), suite_json=suite)
    out["gx_s"] = time.perf_counter() - t
    out["gx_peak_mb"] = peak.stage()
    out["gx_checks"] = len(g.checks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--encodings", nargs="+", default=["utf-8", "gbk"])
    ap.add_argument("--no-gx-above", type=int, default=5_000_000, help="skip GX-only above this many rows")
    ap.add_argument("--out", default=str(ROOT / "bench/results/publish.md"))
    ap.add_argument("--json", default=None, help="also write the raw results here")
    ap.add_argument("--from-json", nargs="+", default=None, help="only render --out from --json files of past runs")
    ap.add_argument("--child", nargs=3, metavar=("CSV", "ROWS", "GX"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.from_json:
        runs = [json.loads(Path(f).read_text()) for f in a.from_json]
        results = [dict(r, run=i + 1) for i, run in enumerate(runs) for r in run["results"]]
        write_md(results, [run["meta"] for run in runs], Path(a.out))
        return
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.child[2] == "1")))
        return
    from catalog import samples

    results = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for rows in a.rows:
            s = samples.generate("population", rows, seed=20240601)
            for enc in a.encodings:
                path = Path(tmp) / f"pop_{rows}_{enc}.csv"
                samples.write(s, path, encoding=enc)
                gx = "1" if rows <= a.no_gx_above else "0"
                load = os.getloadavg()[0]
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), str(rows), gx],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr)
                    raise SystemExit(f"child failed for {rows} rows {enc}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r.update(csv_mb=path.stat().st_size / 2**20, enc=enc, load1=load)
                results.append(r)
                print(json.dumps(r), flush=True)
                path.unlink()
            del s
    meta = {
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "wall_s": time.perf_counter() - started,
    }
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    write_md(results, [meta], Path(a.out))


STAGES = ("ingest", "quality", "digest", "open_edition", "encrypt", "go_live", "commit")


def write_md(results: list[dict], metas: list[dict], out: Path) -> None:
    runs = "; ".join(
        f"run {i + 1}: 1-min load average {m['load_before']:.2f} before, {m['load_after']:.2f} after, "
        f"{m['wall_s'] / 60:.1f} min"
        for i, m in enumerate(metas)
    )
    lines = [
        "# Publishing the population library end to end (bench/bench_publish.py)",
        "",
        f"Machine: {os.cpu_count()} cores, shared with other work while measured; "
        f"Python {sys.version.split()[0]}; {runs}.",
        "",
        "`catalog.publish.publish` (what `POST /datasets/{code}/versions` runs after streaming the body",
        "to disk) on a fresh SQLite gateway: the population library (9 fields, G3) registered with open",
        "type `unconditional` so every stage runs. Stages: ingest = sniff + decode + conformance +",
        "Parquet; quality = the fast path over the plan; digest = SM3 of the Parquet; open edition =",
        "public masking + Parquet; encrypt = SM4-GCM at rest; go-live = rename + version row; commit =",
        "transaction + audit. Peak = the highest RSS of the process (sampled every 5 ms) during the stage.",
        "\"Row store ready +s\" = after publish returned, until the background build of the open edition's",
        "SQLite row store finished (pages are served from the Parquet by DuckDB meanwhile); not in publish s.",
        "\"load\" = the 1-min load average when the run started (2 cores; above 2 means CPU contention).",
        "",
        "## End to end",
        "",
        "| run | rows | CSV | MB | load | publish s | rows/s | peak MB | quality s | quality rows/s "
        "| GX-only s | GX rows/s | quality speed-up | row store ready +s | its peak MB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, q = r["rows"], r["stages"]["quality"]["s"]
        gx = r.get("gx_s")
        gx_cols = f"{gx:.2f} | {n / gx:,.0f} | {gx / q:.1f}×" if gx else "— | — | — (skipped)"
        lines.append(
            f"| {r.get('run', 1)} | {n:,} | {r['enc']} | {r['csv_mb']:.0f} | {r['load1']:.2f} | {r['publish_s']:.2f} "
            f"| {n / r['publish_s']:,.0f} | {r['publish_peak_mb']:.0f} | {q:.2f} | {n / q:,.0f} | {gx_cols} "
            f"| {r.get('row_store_bg_s', 0):.1f} | {r.get('row_store_bg_peak_mb', 0):.0f} |"
        )
    lines += [
        "",
        "## Per stage: seconds / peak MB",
        "",
        "| run | rows | CSV | " + " | ".join(STAGES) + " |",
        "|---:|---:|---|" + "---:|" * len(STAGES),
    ]
    for r in results:
        cells = []
        for name in STAGES:
            st = r["stages"].get(name)
            cells.append(f"{st['s']:.2f} / {st['peak_mb']:.0f}" if st else "—")
        lines.append(f"| {r.get('run', 1)} | {r['rows']:,} | {r['enc']} | " + " | ".join(cells) + " |")
    imports = [r["gx_import_s"] for r in results if "gx_import_s" in r]
    if imports:
        lines += ["", f"GX import (once per process, excluded above): {min(imports):.1f}–{max(imports):.1f} s."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
