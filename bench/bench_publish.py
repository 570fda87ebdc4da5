"""Benchmark: ingest + quality of the population library from CSV (UTF-8 and GBK), with GX-only alongside.

    .venv/bin/python bench/bench_publish.py --rows 100000 1000000 [5000000]

Each (rows, encoding) runs in a fresh child process so peak memory is per run; a sampler thread reads
RSS every 10 ms and records the peak of each stage. GX is imported before the timed stages (its
import time is reported separately), so "GX-only" is validation time alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAG_CHECKS = {
    "id_number": [{"check": "gb11643"}, {"check": "unique"}],
    "usc_code": [{"check": "gb32100", "severity": "warn"}],
    "phone": [{"check": "phone_cn"}],
    "admin_code": [{"check": "admin_division"}],
    "birth_date": [{"check": "date_valid", "not_future": True}],
    "date": [{"check": "date_valid"}],
    "geo_point": [{"check": "coord_china"}],
}


class Peak:
    """Samples this process's RSS; `stage()` resets the running peak."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def stage(self) -> None:
        self.peak = self.rss()


def child(csv_path: str, rows: int, gx_only: bool) -> dict:
    from catalog import samples
    from catalog.ingest import ingest
    from catalog.quality import gx as gxmod
    from catalog.quality import run_gx_only, run_quality

    peak = Peak()
    schema = samples.schema_for("population")
    out: dict = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "v.parquet"
        peak.stage()
        t = time.perf_counter()
        res = ingest(csv_path, schema=schema, dest_parquet=dest)
        out["ingest_s"] = time.perf_counter() - t
        out["ingest_peak_mb"] = peak.peak / 2**20
        out["encoding"] = res.encoding
        peak.stage()
        t = time.perf_counter()
        rep = run_quality(dest, schema=schema, tag_checks=TAG_CHECKS)
        out["quality_s"] = time.perf_counter() - t
        out["quality_peak_mb"] = peak.peak / 2**20
        out["checks"] = len(rep.checks)
        out["verdict"] = rep.verdict
        if gx_only:
            t = time.perf_counter()
            gxmod.gx()
            out["gx_import_s"] = time.perf_counter() - t
            import pyarrow.parquet as pq

            df = pq.read_table(dest).to_pandas(date_as_object=False)
            peak.stage()
            t = time.perf_counter()
            g = run_gx_only(df, schema=schema, tag_checks=TAG_CHECKS)
            out["gx_s"] = time.perf_counter() - t
            out["gx_peak_mb"] = peak.peak / 2**20
            out["gx_checks"] = len(g.checks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--encodings", nargs="+", default=["utf-8", "gbk"])
    ap.add_argument("--no-gx-above", type=int, default=2_000_000, help="skip GX-only above this many rows")
    ap.add_argument("--out", default=str(ROOT / "bench/results/publish.md"))
    ap.add_argument("--child", nargs=3, metavar=("CSV", "ROWS", "GX"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.child[2] == "1")))
        return
    from catalog import samples

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in a.rows:
            s = samples.generate("population", rows, seed=20240601)
            for enc in a.encodings:
                path = Path(tmp) / f"pop_{rows}_{enc}.csv"
                samples.write(s, path, encoding=enc)
                gx = "1" if rows <= a.no_gx_above else "0"
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), str(rows), gx],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                )
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["csv_mb"] = path.stat().st_size / 2**20
                r["enc"] = enc
                results.append(r)
                print(json.dumps(r), flush=True)
                path.unlink()
            del s
    write_md(results, Path(a.out))


def write_md(results: list[dict], out: Path) -> None:
    lines = [
        "# Ingest + quality of the population library (bench/bench_publish.py)",
        "",
        f"Machine: {os.cpu_count()} cores, shared with other work while measured; "
        f"Python {sys.version.split()[0]}.",
        "Quality = the fast path over the same plan GX-only validates: schema-implied checks",
        "(not_null ×5, unique, in_set) + tag checks (gb11643, phone_cn, admin_division, date_valid).",
        "GX-only = that plan as GX 1.x built-in expectations (check digits become shape regexes,",
        "so GX does *less* work than the fast path); the GX import is excluded from its time.",
        "",
        "| rows | CSV | MB | ingest s | ingest rows/s | ingest peak MB | quality s | quality rows/s "
        "| quality peak MB | GX-only s | GX rows/s | speed-up | GX peak MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = r["rows"]
        gx = r.get("gx_s")
        gx_cols = f"{gx:.2f} | {n / gx:,.0f} | {gx / r['quality_s']:.1f}×" if gx else "— | — | —"
        lines.append(
            f"| {n:,} | {r['enc']} | {r['csv_mb']:.0f} | {r['ingest_s']:.2f} | {n / r['ingest_s']:,.0f} "
            f"| {r['ingest_peak_mb']:.0f} | {r['quality_s']:.2f} | {n / r['quality_s']:,.0f} "
            f"| {r['quality_peak_mb']:.0f} | {gx_cols} | {r.get('gx_peak_mb', 0):.0f} |"
        )
    imports = [r["gx_import_s"] for r in results if "gx_import_s" in r]
    if imports:
        lines += ["", f"GX import (once per process): {min(imports):.1f}–{max(imports):.1f} s."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
