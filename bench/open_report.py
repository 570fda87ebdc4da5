"""Side-by-side table of one bench_open.py run (Datasette vs the gateway), from the JSON it wrote.

python bench/open_report.py --work /tmp/openbench     # prints Markdown rows for bench/results/open.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(path: Path) -> dict:
    return json.loads(path.read_text())["median"] if path.exists() else {}


def _lat(d: dict | None) -> str:
    if not d or d.get("p50_ms") is None:
        return "—"
    return f"{d['p50_ms']:,.1f} / {d['p99_ms']:,.1f} ms"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "—"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/openbench", type=Path)
    w = ap.parse_args().work
    ds, gw, big = _load(w / "ds.json"), _load(w / "gw.json"), _load(w / "gw10m.json")
    summary = json.loads((w / "summary.json").read_text())
    lite = summary["sqlite3_csv_rows_per_s"]
    ds_csv, gw_csv = ds["stream"]["rows_per_s"], gw["stream"]["rows_per_s"]
    ds_load, gw_load = ds["load"], gw["load"]
    rows = [
        ("whole-table CSV, rows/s", f"{ds_csv:,}", f"**{gw_csv:,}**", f"{_ratio(gw_csv, ds_csv)} (goal ≥ 10×)"),
        (
            f"CSV vs `sqlite3 -csv` on the same data ({lite:,} rows/s this run)",
            f"{ds_csv / lite:.0%}",
            f"**{gw_csv / lite:.0%}**",
            "goal ≥ 25%",
        ),
        ("CSV time to first byte", f"{ds['stream']['ttfb_ms']:,.1f} ms", f"{gw['stream']['ttfb_ms']:,.1f} ms", ""),
        ("JSON first page p50 / p99 (default page)", _lat(ds["pages"]["first"]), _lat(gw["pages"]["first"]), ""),
        (
            "JSON first page p50 / p99 (Datasette lean: `_nocount&_nofacet`)",
            _lat(ds["extra"].get("lean_first")),
            _lat(gw["pages"]["first"]) + " (always lean)",
            "",
        ),
        ("deep page at 50% p50 / p99", _lat(ds["pages"].get("deep_0.5")), _lat(gw["pages"].get("deep_0.5")), ""),
        ("deep page at 99% p50 / p99", _lat(ds["pages"].get("deep_0.99")), _lat(gw["pages"].get("deep_0.99")), ""),
        (
            "keyset crawl from the middle p50 / p99",
            _lat(ds["pages"].get("crawl_from_mid")),
            _lat(gw["pages"].get("crawl_from_mid")),
            "",
        ),
        (
            "load, lean page, 16 conn × 20 s: requests/s",
            f"{ds_load['rps']:,.1f}",
            f"**{gw_load['rps']:,.1f}**",
            f"{_ratio(gw_load['rps'], ds_load['rps'])} (goal ≥ 2×)",
        ),
        (
            "load p50 / p99",
            f"{ds_load['p50_ms']:,.1f} / {ds_load['p99_ms']:,.1f} ms",
            f"{gw_load['p50_ms']:,.1f} / {gw_load['p99_ms']:,.1f} ms",
            "lower p99 ✔" if gw_load["p99_ms"] < ds_load["p99_ms"] else "p99 not lower ✘",
        ),
        ("filter `household_address_code=511700`", _lat(ds["filter"]["by_code"]), _lat(gw["filter"]["by_code"]), ""),
        ("same filter sorted by `-birth_date`", "—", _lat(gw["filter"].get("by_code_sorted")), ""),
        ("same filter + `_count=1`", "—", _lat(gw["extra"].get("count")), ""),
    ]
    for phase in ("stream", "load"):
        a, b = ds[phase]["rss"], gw[phase]["rss"]
        rows.append(
            (
                f"server RSS during {phase} (tree: start → peak)",
                f"{a['rss_start_mib']:,.0f} → {a['rss_peak_mib']:,.0f} MiB ({a['processes']} proc)",
                f"{b['rss_start_mib']:,.0f} → {b['rss_peak_mib']:,.0f} MiB ({b['processes']} proc)",
                "",
            )
        )
    print("| measure (1M rows) | Datasette | gateway | ratio / goal |")
    print("| --- | ---: | ---: | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if big:
        s = big["stream"]
        print(
            f"\n10M CSV: {s['rows']:,} rows, {s['bytes'] / 1e9:.2f} GB in {s['seconds']} s = {s['rows_per_s']:,} rows/s"
        )
    rss = w / "gw10m_rss.json"
    if rss.exists():
        r = json.loads(rss.read_text())
        print("\n| process (10M stream) | before | peak | after | CPU s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for pid, p in r["processes"].items():
            cells = [f"{p['role']} ({pid})", p["before_mib"], p["peak_mib"], p["after_mib"], p["cpu_s_during"]]
            print("| " + " | ".join(str(c) for c in cells) + " |")
        t = r["tree"]
        print(f"| tree | {t['before_mib']} | {t['peak_mib']} | {t['after_mib']} | |")
    eng = _load(w / "engine.json")
    if eng:
        print("\n| engine only (bench/open_app.py), same run | gateway | engine only |")
        print("| --- | ---: | ---: |")
        print(f"| whole-table CSV, rows/s | {gw_csv:,} | {eng['stream']['rows_per_s']:,} |")
        print(f"| first page p50 / p99 | {_lat(gw['pages']['first'])} | {_lat(eng['pages']['first'])} |")
        print(f"| load requests/s | {gw_load['rps']:,.1f} | {eng['load']['rps']:,.1f} |")
        print(
            f"| load p50 / p99 | {gw_load['p50_ms']:,.1f} / {gw_load['p99_ms']:,.1f} ms "
            f"| {eng['load']['p50_ms']:,.1f} / {eng['load']['p99_ms']:,.1f} ms |"
        )
        print(f"| filter by code p50 / p99 | {_lat(gw['filter']['by_code'])} | {_lat(eng['filter']['by_code'])} |")
    split = summary.get("gateway", {}).get("cpu_s_1m_harness")
    if split:
        print("\nCPU seconds per process over the 1M harness run:", ", ".join(f"{k}: {v}" for k, v in split.items()))
    print(
        "\nload (1-min): start {:.2f}, after Datasette {:.2f}, after gateway {:.2f}".format(
            summary["load_1min_start"],
            summary.get("load_1min_after_datasette", float("nan")),
            summary["load_1min_after_gateway"],
        )
    )


if __name__ == "__main__":
    main()
